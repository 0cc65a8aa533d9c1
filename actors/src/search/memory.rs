//! MemoryActor: owns the sorted memory bank and its append-only journal (`journal.jsonl` in the
//! run directory). A record is written, flushed and synced before it is acknowledged, so a
//! killed search resumes with every completed evaluation. It follows the stage through the
//! event bus and answers prompt-building snapshots.

use crate::messages::{Event, EventMsg, GetMemory, Known, KnownSet, MemoryView, Record, Release};
use actix::prelude::*;
use ists::config::MemorySettings;
use ists::memory::{MemoryBank, MemoryEntry, Stage};
use ists::space::ArchSpec;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub struct MemoryActor {
    bank: MemoryBank,
    known: KnownSet,
    journal: File,
    path: PathBuf,
    settings: MemorySettings,
    stage: Stage,
    /// Every scored entry, best first, and the best `top.max(5)` of them: shared by every
    /// snapshot and rebuilt only when the bank changes, so a prompt costs no copy of the bank.
    all: Arc<Vec<MemoryEntry>>,
    best: Arc<Vec<MemoryEntry>>,
}

/// Reads a journal. A last line cut short by a kill was never acknowledged: it is skipped
/// (with a warning); a bad line elsewhere is an error naming the line.
pub fn read_journal(path: &Path) -> Result<Vec<MemoryEntry>, String> {
    ists::jsonl::read(path)
}

impl MemoryActor {
    /// Opens (or creates) the journal and loads its entries.
    pub fn open(
        path: &Path,
        settings: MemorySettings,
        known: KnownSet,
        stage: Stage,
    ) -> Result<(MemoryActor, Vec<MemoryEntry>), String> {
        let entries = read_journal(path)?;
        // Rewrite without a truncated tail so appends start on a clean line; atomically (temp
        // file, fsync, rename, fsync of the directory), so a kill here loses nothing.
        ists::jsonl::rewrite(path, &entries)?;
        let journal = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let mut bank = MemoryBank::new();
        for e in &entries {
            known.insert(e.hash.clone(), Known::Recorded);
            bank.insert(e.clone());
        }
        let mut actor = MemoryActor {
            bank,
            known,
            journal,
            path: path.to_path_buf(),
            settings,
            stage,
            all: Arc::default(),
            best: Arc::default(),
        };
        actor.refresh();
        Ok((actor, entries))
    }

    /// Rebuilds the shared snapshot lists after the bank changed.
    fn refresh(&mut self) {
        let all: Vec<MemoryEntry> = self.bank.best(usize::MAX).into_iter().cloned().collect();
        let top = self.settings.top.max(5);
        self.best = Arc::new(all.iter().take(top).cloned().collect());
        self.all = Arc::new(all);
    }
}

impl Actor for MemoryActor {
    type Context = Context<Self>;
}

impl Handler<GetMemory> for MemoryActor {
    type Result = MessageResult<GetMemory>;
    fn handle(&mut self, _: GetMemory, _: &mut Context<Self>) -> Self::Result {
        let s = &self.settings;
        let in_flight = self.known.iter().filter_map(|k| match k.value() {
            Known::InFlight(d) => Some(ArchSpec::clone(d)),
            Known::Recorded => None,
        });
        let (best, recent) = self.bank.shown(s.top, s.recent);
        let listed = best.iter().chain(&recent).map(|e| e.arch.clone());
        MessageResult(MemoryView {
            rendered: self.bank.render(s.top, s.recent, s.token_budget),
            avoid: in_flight.chain(listed).collect(),
            count: self.bank.len(),
            best: Arc::clone(&self.best),
            all: Arc::clone(&self.all),
            known: self.known.clone(),
            stage: self.stage,
        })
    }
}

impl Handler<Record> for MemoryActor {
    type Result = Result<bool, String>;
    fn handle(&mut self, msg: Record, _: &mut Context<Self>) -> Self::Result {
        let entry = msg.0;
        // A hash already recorded comes back only as a promotion to a higher rung.
        if !self.bank.accepts(&entry) {
            return Ok(false);
        }
        let mut line = serde_json::to_string(&entry).map_err(|e| e.to_string())?;
        line.push('\n');
        let path = self.path.display();
        self.journal
            .write_all(line.as_bytes())
            .and_then(|_| self.journal.flush())
            .and_then(|_| self.journal.sync_data())
            .map_err(|e| format!("{path}: {e}"))?;
        self.known.insert(entry.hash.clone(), Known::Recorded);
        let changed = self.bank.insert(entry);
        if changed {
            self.refresh();
        }
        Ok(changed)
    }
}

impl Handler<Release> for MemoryActor {
    type Result = ();
    fn handle(&mut self, msg: Release, _: &mut Context<Self>) {
        self.known
            .remove_if(&msg.0, |_, state| matches!(state, Known::InFlight(_)));
    }
}

impl Handler<EventMsg> for MemoryActor {
    type Result = ();
    fn handle(&mut self, msg: EventMsg, _: &mut Context<Self>) {
        if let Event::StageSwitched { to, .. } = msg.event {
            self.stage = to;
        }
    }
}

/// A scored proxy-rung entry of `arch` (tests of the memory and of the instructors).
#[cfg(test)]
pub(crate) fn scored_entry(id: usize, arch: &ists::space::Arch, score: f64) -> MemoryEntry {
    MemoryEntry {
        id,
        hash: arch.hash(),
        arch: arch.to_spec(),
        score: Some(score),
        status: ists::train::EvalStatus::Ok,
        stage: Stage::Exploration,
        params: 10,
        seconds: 0.1,
        rung: 0,
        steps: 30,
        first_loss: None,
        last_loss: None,
        reasoning: None,
        proposal: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ists::space::{Arch, SpaceKind};
    use rand::SeedableRng;

    /// A design accepted from one proposal is ruled out for the next ones at once, before its
    /// evaluation is recorded and the memory section lists it; recorded, it is listed once.
    #[actix::test]
    async fn designs_in_flight_are_avoided_before_the_memory_lists_them() {
        let dir = tempfile::tempdir().unwrap();
        let known = KnownSet::default();
        let (actor, _) = MemoryActor::open(
            &dir.path().join("journal.jsonl"),
            MemorySettings::default(),
            known.clone(),
            Stage::Exploration,
        )
        .unwrap();
        let memory = actor.start();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let [a, b, c] = [(); 3].map(|_| Arch::sample(SpaceKind::Ists, &mut rng).canonical());
        memory
            .send(Record(scored_entry(0, &a, 2.0)))
            .await
            .unwrap()
            .unwrap();
        for d in [&b, &c] {
            known.insert(d.hash(), Known::InFlight(Arc::new(d.to_spec())));
        }
        memory.send(Release(c.hash())).await.unwrap();
        let view = memory.send(GetMemory).await.unwrap();
        assert_eq!(view.avoid, [b.to_spec(), a.to_spec()], "in flight first");
        memory
            .send(Record(scored_entry(1, &b, 1.0)))
            .await
            .unwrap()
            .unwrap();
        let view = memory.send(GetMemory).await.unwrap();
        assert_eq!(
            view.avoid,
            [b.to_spec(), a.to_spec()],
            "listed once, best first"
        );
    }
}
