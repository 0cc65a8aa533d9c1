//! Prior knowledge for a search (`search.prior`): the memory banks of earlier searches, read from
//! their journals, as one [`ChoiceEffects`] surrogate that ranks new designs before any of them
//! is scored. It stands in for what an LLM instructor is meant to bring (the paper's "knowledge"):
//! which choices tend to win, learnt on other tasks, never on the one being searched.
//!
//! Each journal is one bank: its designs are ranked as the memory bank ranks them (highest rung
//! first, then score; failed ones last), and a design's value is its position as a share (0 the
//! best, 1 the last), so banks of different tasks, metrics and scales weigh the same.

use crate::memory::{MemoryBank, MemoryEntry};
use crate::space::{Arch, ChoiceEffects, SpaceKind};
use std::path::PathBuf;

/// The surrogate fitted to earlier searches' banks, and what it was fitted to.
#[derive(Debug, Clone)]
pub struct Prior {
    effects: ChoiceEffects,
    banks: usize,
    designs: usize,
}

impl Prior {
    /// Reads each journal (`journal.jsonl` of an earlier run, or a copy of one) and fits the
    /// surrogate. Errors name the file: missing or unreadable, a bad line, a design of another
    /// space than `space`, or a bank with fewer than two scored designs (no ranking to learn).
    pub fn load(paths: &[PathBuf], space: SpaceKind) -> Result<Prior, String> {
        let mut banks = Vec::new();
        for (i, path) in paths.iter().enumerate() {
            let at = format!("search.prior[{i}] ({})", path.display());
            if !path.is_file() {
                return Err(format!("{at}: no such file"));
            }
            let entries: Vec<MemoryEntry> =
                crate::jsonl::read(path).map_err(|e| format!("{at}: {e}"))?;
            banks.push(bank_shares(&entries, space).map_err(|e| format!("{at}: {e}"))?);
        }
        Ok(Prior::fit(&banks))
    }

    /// Fits the surrogate to banks already ranked (each a list of designs and their shares).
    pub fn fit(banks: &[Vec<(Arch, f64)>]) -> Prior {
        let all: Vec<(Arch, f64)> = banks.iter().flatten().cloned().collect();
        Prior {
            effects: ChoiceEffects::fit(&all),
            banks: banks.len(),
            designs: all.len(),
        }
    }

    /// The estimated value of a design (lower = better), relative to the mean of the prior's.
    pub fn estimate(&self, a: &Arch) -> f64 {
        self.effects.estimate(a)
    }

    /// Banks and designs the surrogate was fitted to.
    pub fn size(&self) -> (usize, usize) {
        (self.banks, self.designs)
    }
}

/// One journal's designs in the memory bank's order, each with its position as a share (0 the
/// best, 1 the last; failed ones 1). A design promoted to higher rungs counts once, at its
/// highest.
pub fn bank_shares(entries: &[MemoryEntry], space: SpaceKind) -> Result<Vec<(Arch, f64)>, String> {
    let mut bank = MemoryBank::new();
    for e in entries {
        bank.insert(e.clone());
    }
    let parse = |e: &MemoryEntry| -> Result<Arch, String> {
        let a =
            Arch::from_spec(&e.arch, space).map_err(|err| format!("candidate {}: {err}", e.id))?;
        if a.space != space {
            return Err(format!(
                "candidate {} is in the '{}' space, the search's is '{}'",
                e.id, a.space, space
            ));
        }
        Ok(a)
    };
    let scored = bank.best(usize::MAX);
    if scored.len() < 2 {
        return Err(format!(
            "{} scored design(s); a prior bank needs at least 2",
            scored.len()
        ));
    }
    let last = (scored.len() - 1) as f64;
    let mut out = Vec::with_capacity(bank.len());
    for (i, e) in scored.iter().enumerate() {
        out.push((parse(e)?, i as f64 / last));
    }
    for e in bank.entries().iter().filter(|e| e.score.is_none()) {
        out.push((parse(e)?, 1.0));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::Stage;
    use crate::space::Hyper;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn entry(id: usize, a: &Arch, score: Option<f64>, rung: usize) -> MemoryEntry {
        MemoryEntry {
            id,
            hash: a.hash(),
            arch: a.to_spec(),
            score,
            status: crate::train::EvalStatus::Ok,
            stage: Stage::Exploration,
            params: 0,
            seconds: 1.0,
            rung,
            steps: 30,
            first_loss: None,
            last_loss: None,
            reasoning: None,
            proposal: None,
        }
    }

    fn with_lr(mut a: Arch, lr_scale: f64) -> Arch {
        a.hyper = Some(Hyper {
            hidden: 8,
            blocks: 1,
            lr_scale,
        });
        a
    }

    #[test]
    fn a_prior_learns_which_choice_wins_and_ranks_unseen_wirings_by_it() {
        // Ten wirings at a high learning-rate factor all beat ten at a low one, whatever the
        // wiring: the prior must prefer the high factor on wirings it never saw.
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut entries = Vec::new();
        for i in 0..10 {
            let w = Arch::sample(SpaceKind::Ists, &mut rng);
            entries.push(entry(
                2 * i,
                &with_lr(w.clone(), 4.0),
                Some(1.0 + i as f64 * 0.01),
                0,
            ));
            let v = Arch::sample(SpaceKind::Ists, &mut rng);
            entries.push(entry(
                2 * i + 1,
                &with_lr(v, 0.25),
                Some(2.0 + i as f64 * 0.01),
                0,
            ));
        }
        let shares = bank_shares(&entries, SpaceKind::Ists).unwrap();
        assert_eq!(shares.len(), 20);
        assert_eq!(shares[0].1, 0.0);
        assert_eq!(shares[19].1, 1.0);
        let prior = Prior::fit(&[shares]);
        assert_eq!(prior.size(), (1, 20));
        for _ in 0..20 {
            let fresh = Arch::sample(SpaceKind::Ists, &mut rng);
            assert!(
                prior.estimate(&with_lr(fresh.clone(), 4.0))
                    < prior.estimate(&with_lr(fresh, 0.25))
            );
        }
    }

    #[test]
    fn promotions_count_once_at_their_highest_rung_and_failures_last() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let a = Arch::sample(SpaceKind::Ists, &mut rng);
        let b = Arch::sample(SpaceKind::Ists, &mut rng);
        let c = Arch::sample(SpaceKind::Ists, &mut rng);
        let entries = vec![
            entry(0, &a, Some(3.0), 0),
            entry(1, &b, Some(2.0), 0),
            entry(2, &c, None, 0),
            // a promoted: it now ranks first although its rung-0 score was worse than b's.
            entry(0, &a, Some(2.5), 1),
        ];
        let shares = bank_shares(&entries, SpaceKind::Ists).unwrap();
        let order: Vec<(String, f64)> = shares.iter().map(|(x, s)| (x.hash(), *s)).collect();
        assert_eq!(
            order,
            vec![(a.hash(), 0.0), (b.hash(), 1.0), (c.hash(), 1.0)]
        );
    }

    #[test]
    fn bad_priors_are_refused_with_the_file_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.jsonl");
        let e = Prior::load(&[missing], SpaceKind::Ists).unwrap_err();
        assert!(
            e.contains("search.prior[0]") && e.contains("nope.jsonl") && e.contains("no such file"),
            "{e}"
        );

        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let one = dir.path().join("one.jsonl");
        let a = Arch::sample(SpaceKind::Ists, &mut rng);
        std::fs::write(
            &one,
            serde_json::to_string(&entry(0, &a, Some(1.0), 0)).unwrap() + "\n",
        )
        .unwrap();
        let e = Prior::load(&[one], SpaceKind::Ists).unwrap_err();
        assert!(e.contains("one.jsonl") && e.contains("at least 2"), "{e}");

        let bad = dir.path().join("bad.jsonl");
        std::fs::write(&bad, "{\"id\": 0}\nnot json\n{}\n").unwrap();
        let e = Prior::load(&[bad], SpaceKind::Ists).unwrap_err();
        assert!(
            e.contains("search.prior[0]") && e.contains("bad.jsonl:1"),
            "{e}"
        );

        let other = dir.path().join("other.jsonl");
        let mut text = String::new();
        for i in 0..2 {
            let x = Arch::sample(SpaceKind::Autocts, &mut rng);
            text += &(serde_json::to_string(&entry(i, &x, Some(i as f64), 0)).unwrap() + "\n");
        }
        std::fs::write(&other, text).unwrap();
        let e = Prior::load(&[other], SpaceKind::Ists).unwrap_err();
        assert!(e.contains("other.jsonl") && e.contains("autocts"), "{e}");
    }
}
