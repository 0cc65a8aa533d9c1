//! The daemon's store: SQLite in WAL mode holding searches, candidates, evaluations and events.
//! Candidates and evaluations mirror the search's journal (the journal stays the source of
//! truth and is synced before an event announces a result), with `(search_id, candidate)` as
//! key so a candidate is stored once however often the journal is re-read. Events carry the
//! search's own sequence number, continued across restarts, which SSE clients resume from.
//!
//! Longer than the ~400 lines aimed at: the SQLite schema and every query that touches it stay
//! together, so a schema change is reviewed against all its uses.

use crate::messages::{Event, EventMsg};
use ists::memory::MemoryEntry;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("journal {path}: {msg}")]
    Journal { path: String, msg: String },
    #[error("serialization: {0}")]
    Json(#[from] serde_json::Error),
    /// The blocking thread a store call ran on failed (a panic inside it).
    #[error("store task: {0}")]
    Task(String),
}

/// Where a search is in its life. `Queued` and `Running` searches are resumed at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Queued,
    Running,
    Completed,
    Cancelled,
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Running => "running",
            Status::Completed => "completed",
            Status::Cancelled => "cancelled",
            Status::Failed => "failed",
        }
    }
    fn parse(s: &str) -> Status {
        match s {
            "queued" => Status::Queued,
            "running" => Status::Running,
            "completed" => Status::Completed,
            "cancelled" => Status::Cancelled,
            _ => Status::Failed,
        }
    }
    /// A finished search: nothing more will happen to it.
    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Completed | Status::Cancelled | Status::Failed)
    }
}

/// One search as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SearchRow {
    pub id: String,
    pub status: Status,
    pub created_ms: i64,
    pub stage: Option<String>,
    pub budget: usize,
    pub evaluated: usize,
    pub progress: f64,
    pub best: Option<BestRow>,
    pub tokens: Tokens,
    /// Why the search failed or stopped early.
    pub error: Option<String>,
    /// The instructor back end, `backend` or `backend:model` (the dashboard's list shows it).
    pub llm: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct BestRow {
    pub candidate: usize,
    pub score: f64,
    pub hash: String,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Tokens {
    pub prompt: u64,
    pub completion: u64,
}

/// One evaluated candidate.
#[derive(Debug, Clone, Serialize)]
pub struct CandidateRow {
    pub candidate: usize,
    pub hash: String,
    pub arch: serde_json::Value,
    pub stage: String,
    pub status: serde_json::Value,
    pub score: Option<f64>,
    pub seconds: f64,
    pub params: i64,
}

/// A stored event, as replayed to SSE clients.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub seq: u64,
    pub kind: String,
    pub json: String,
}

/// The database. One connection for writes and one for reads (WAL lets them run together).
pub struct Store {
    write: Mutex<Connection>,
    read: Mutex<Connection>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS searches (
    id TEXT PRIMARY KEY,
    config TEXT NOT NULL,
    status TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    budget INTEGER NOT NULL,
    stage TEXT,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    summary TEXT
);
CREATE TABLE IF NOT EXISTS candidates (
    search_id TEXT NOT NULL REFERENCES searches(id),
    candidate INTEGER NOT NULL,
    hash TEXT NOT NULL,
    arch TEXT NOT NULL,
    stage TEXT NOT NULL,
    PRIMARY KEY (search_id, candidate),
    UNIQUE (search_id, hash)
);
CREATE TABLE IF NOT EXISTS evaluations (
    search_id TEXT NOT NULL,
    candidate INTEGER NOT NULL,
    status TEXT NOT NULL,
    score REAL,
    seconds REAL NOT NULL,
    params INTEGER NOT NULL,
    PRIMARY KEY (search_id, candidate),
    FOREIGN KEY (search_id, candidate) REFERENCES candidates(search_id, candidate)
);
CREATE TABLE IF NOT EXISTS events (
    search_id TEXT NOT NULL REFERENCES searches(id),
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    json TEXT NOT NULL,
    PRIMARY KEY (search_id, seq)
);
";

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The offline instructor has no model worth naming; an endpoint's model is what tells two
/// searches apart.
fn llm_label(backend: Option<String>, model: Option<String>) -> String {
    match (backend, model) {
        (Some(b), Some(m)) if b != "offline" && !m.is_empty() => format!("{b}:{m}"),
        (Some(b), _) => b,
        (None, _) => "unknown".into(),
    }
}

/// A count as SQLite's integer, saturating instead of wrapping to a negative number.
fn clamp_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn lock(m: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    // A panic while holding the lock leaves SQLite itself consistent (transactions roll back).
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Store {
    /// Opens (or creates) the database at `path`, in WAL mode.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let open = || -> Result<Connection, StoreError> {
            let c = Connection::open(path)?;
            c.busy_timeout(std::time::Duration::from_secs(10))?;
            // WAL + NORMAL: a commit survives a killed process (not a power cut, which would
            // need FULL); the run directory's journal is fsynced and re-synced at start anyway.
            let mode: String =
                c.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
            if !mode.eq_ignore_ascii_case("wal") {
                tracing::warn!("SQLite kept journal mode {mode} instead of WAL");
            }
            c.pragma_update(None, "synchronous", "NORMAL")?;
            c.pragma_update(None, "foreign_keys", "ON")?;
            Ok(c)
        };
        let write = open()?;
        write.execute_batch(SCHEMA)?;
        let read = open()?;
        Ok(Store {
            write: Mutex::new(write),
            read: Mutex::new(read),
        })
    }

    /// The journal mode in force (`wal`), for checks.
    pub fn journal_mode(&self) -> Result<String, StoreError> {
        Ok(lock(&self.read).query_row("PRAGMA journal_mode", [], |r| r.get(0))?)
    }

    pub fn insert_search(
        &self,
        id: &str,
        config: &serde_json::Value,
        budget: usize,
    ) -> Result<(), StoreError> {
        lock(&self.write).execute(
            "INSERT INTO searches (id, config, status, created_ms, budget) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![id, config.to_string(), Status::Queued.as_str(), now_ms(), budget as i64],
        )?;
        Ok(())
    }

    pub fn set_status(
        &self,
        id: &str,
        status: Status,
        error: Option<&str>,
        summary: Option<&str>,
    ) -> Result<(), StoreError> {
        lock(&self.write).execute(
            "UPDATE searches SET status = ?2, error = COALESCE(?3, error), summary = COALESCE(?4, summary) WHERE id = ?1",
            params![id, status.as_str(), error, summary],
        )?;
        Ok(())
    }

    /// Searches to resume at start (queued or running when the daemon stopped), oldest first.
    pub fn unfinished(&self) -> Result<Vec<(String, serde_json::Value)>, StoreError> {
        let c = lock(&self.read);
        let mut st = c.prepare(
            "SELECT id, config FROM searches WHERE status IN ('queued', 'running') ORDER BY created_ms, id",
        )?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, config) = row?;
            out.push((id, serde_json::from_str(&config)?));
        }
        Ok(out)
    }

    /// The highest event number stored for a search (0 when none).
    pub fn last_seq(&self, id: &str) -> Result<u64, StoreError> {
        let n: Option<i64> = lock(&self.read).query_row(
            "SELECT MAX(seq) FROM events WHERE search_id = ?1",
            params![id],
            |r| r.get(0),
        )?;
        Ok(n.unwrap_or(0) as u64)
    }

    /// Stores an event and what it changes about the search, in one transaction.
    pub fn apply_event(&self, id: &str, msg: &EventMsg) -> Result<(), StoreError> {
        let json = serde_json::to_string(&msg.event)?;
        let kind = serde_json::to_value(&msg.event)?
            .get("event")
            .and_then(|v| v.as_str())
            .unwrap_or("event")
            .to_string();
        let mut c = lock(&self.write);
        let tx = c.transaction()?;
        // OR IGNORE: a replayed event (same number) is the same event, applied once.
        let inserted = tx.execute(
            "INSERT OR IGNORE INTO events (search_id, seq, kind, json) VALUES (?1, ?2, ?3, ?4)",
            params![id, msg.seq as i64, kind, json],
        )?;
        match &msg.event {
            _ if inserted == 0 => {}
            Event::Started { budget, .. } => {
                tx.execute(
                    "UPDATE searches SET budget = ?2 WHERE id = ?1",
                    params![id, *budget as i64],
                )?;
            }
            Event::StageSwitched { to, .. } => {
                tx.execute(
                    "UPDATE searches SET stage = ?2 WHERE id = ?1",
                    params![id, serde_json::to_value(to)?.as_str().unwrap_or("")],
                )?;
            }
            Event::Tokens { usage } => {
                tx.execute(
                    // Clamped to SQLite's integers: an overflowing sum would turn into a float.
                    "UPDATE searches SET prompt_tokens = MIN(prompt_tokens + ?2, 9223372036854775807), completion_tokens = MIN(completion_tokens + ?3, 9223372036854775807) WHERE id = ?1",
                    params![id, clamp_i64(usage.prompt_tokens), clamp_i64(usage.completion_tokens)],
                )?;
            }
            _ => {}
        }
        tx.commit()?;
        Ok(())
    }

    /// Mirrors journal entries (idempotent: entries already stored are skipped).
    pub fn record_entries(&self, id: &str, entries: &[MemoryEntry]) -> Result<usize, StoreError> {
        let mut c = lock(&self.write);
        let tx = c.transaction()?;
        let mut added = 0;
        for e in entries {
            let stage = serde_json::to_value(e.stage)?;
            let n = tx.execute(
                "INSERT OR IGNORE INTO candidates (search_id, candidate, hash, arch, stage) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    id,
                    e.id as i64,
                    e.hash,
                    serde_json::to_string(&e.arch)?,
                    stage.as_str().unwrap_or("")
                ],
            )?;
            // A promotion (a higher rung of the same candidate) replaces the stored score: the
            // store shows each candidate at the highest fidelity it reached, as the bank does.
            let insert = match e.rung {
                0 => "INSERT OR IGNORE INTO evaluations (search_id, candidate, status, score, seconds, params) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                _ => "INSERT OR REPLACE INTO evaluations (search_id, candidate, status, score, seconds, params) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            };
            tx.execute(
                insert,
                params![
                    id,
                    e.id as i64,
                    serde_json::to_string(&e.status)?,
                    e.score,
                    e.seconds,
                    e.params
                ],
            )?;
            added += n;
        }
        tx.commit()?;
        Ok(added)
    }

    pub fn status(&self, id: &str) -> Result<Option<Status>, StoreError> {
        Ok(lock(&self.read)
            .query_row(
                "SELECT status FROM searches WHERE id = ?1",
                params![id],
                |r| r.get::<_, String>(0),
            )
            .optional()?
            .map(|s| Status::parse(&s)))
    }

    pub fn get(&self, id: &str) -> Result<Option<SearchRow>, StoreError> {
        let c = lock(&self.read);
        let row = c
            .query_row(
                "SELECT id, status, created_ms, stage, budget, prompt_tokens, completion_tokens, error,
                        (SELECT COUNT(*) FROM evaluations e WHERE e.search_id = s.id),
                        json_extract(config, '$.llm.backend'), json_extract(config, '$.llm.model')
                 FROM searches s WHERE id = ?1",
                params![id],
                |r| {
                    let budget = r.get::<_, i64>(4)?.max(0) as usize;
                    let evaluated = r.get::<_, i64>(8)?.max(0) as usize;
                    Ok(SearchRow {
                        id: r.get(0)?,
                        status: Status::parse(&r.get::<_, String>(1)?),
                        created_ms: r.get(2)?,
                        stage: r.get(3)?,
                        budget,
                        evaluated,
                        progress: if budget == 0 {
                            0.0
                        } else {
                            (evaluated as f64 / budget as f64).min(1.0)
                        },
                        best: None,
                        tokens: Tokens {
                            prompt: r.get::<_, i64>(5)?.max(0) as u64,
                            completion: r.get::<_, i64>(6)?.max(0) as u64,
                        },
                        error: r.get(7)?,
                        llm: llm_label(r.get(9)?, r.get(10)?),
                    })
                },
            )
            .optional()?;
        let Some(mut row) = row else {
            return Ok(None);
        };
        row.best = c
            .query_row(
                "SELECT e.candidate, e.score, c.hash FROM evaluations e
                 JOIN candidates c ON c.search_id = e.search_id AND c.candidate = e.candidate
                 WHERE e.search_id = ?1 AND e.score IS NOT NULL ORDER BY e.score, e.candidate LIMIT 1",
                params![id],
                |r| {
                    Ok(BestRow {
                        candidate: r.get::<_, i64>(0)?.max(0) as usize,
                        score: r.get(1)?,
                        hash: r.get(2)?,
                    })
                },
            )
            .optional()?;
        if row.stage.is_none() {
            row.stage = Some("exploration".into());
        }
        Ok(Some(row))
    }

    /// The stored summary of a finished search (with its final training reports, if any).
    pub fn summary(&self, id: &str) -> Result<Option<serde_json::Value>, StoreError> {
        let text: Option<Option<String>> = lock(&self.read)
            .query_row(
                "SELECT summary FROM searches WHERE id = ?1",
                params![id],
                |r| r.get(0),
            )
            .optional()?;
        Ok(match text.flatten() {
            Some(t) => Some(serde_json::from_str(&t)?),
            None => None,
        })
    }

    /// Every search, newest first, at most `limit`.
    pub fn list(&self, limit: usize) -> Result<Vec<SearchRow>, StoreError> {
        let ids: Vec<String> = {
            let c = lock(&self.read);
            let mut st =
                c.prepare("SELECT id FROM searches ORDER BY created_ms DESC, id DESC LIMIT ?1")?;
            let rows = st.query_map(params![limit as i64], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        let mut out = Vec::new();
        for id in ids {
            if let Some(r) = self.get(&id)? {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// Candidates in id order, a page at a time; also the total.
    pub fn candidates(
        &self,
        id: &str,
        offset: usize,
        limit: usize,
    ) -> Result<(usize, Vec<CandidateRow>), StoreError> {
        let c = lock(&self.read);
        let total: i64 = c.query_row(
            "SELECT COUNT(*) FROM candidates WHERE search_id = ?1",
            params![id],
            |r| r.get(0),
        )?;
        let mut st = c.prepare(
            "SELECT c.candidate, c.hash, c.arch, c.stage, e.status, e.score, e.seconds, e.params
             FROM candidates c JOIN evaluations e ON e.search_id = c.search_id AND e.candidate = c.candidate
             WHERE c.search_id = ?1 ORDER BY c.candidate LIMIT ?2 OFFSET ?3",
        )?;
        let rows = st.query_map(params![id, limit as i64, offset as i64], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, Option<f64>>(5)?,
                r.get::<_, f64>(6)?,
                r.get::<_, i64>(7)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (candidate, hash, arch, stage, status, score, seconds, params) = row?;
            out.push(CandidateRow {
                candidate: candidate.max(0) as usize,
                hash,
                arch: serde_json::from_str(&arch)?,
                stage,
                status: serde_json::from_str(&status)?,
                score,
                seconds,
                params,
            });
        }
        Ok((total.max(0) as usize, out))
    }

    /// Events with a number above `after`, in order, at most `limit`.
    pub fn events_after(
        &self,
        id: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let c = lock(&self.read);
        let mut st = c.prepare(
            "SELECT seq, kind, json FROM events WHERE search_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
        )?;
        let rows = st.query_map(params![id, after as i64, limit as i64], |r| {
            Ok(StoredEvent {
                seq: r.get::<_, i64>(0)?.max(0) as u64,
                kind: r.get(1)?,
                json: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Searches by status, for the metrics.
    pub fn count_by_status(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let c = lock(&self.read);
        let mut st = c.prepare("SELECT status, COUNT(*) FROM searches GROUP BY status")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)?.max(0) as u64)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// Reads the complete lines of a journal from byte `offset`; returns the entries and the
/// offset after the last complete line (a line being written is left for the next call).
pub fn read_journal_from(path: &Path, offset: u64) -> Result<(Vec<MemoryEntry>, u64), StoreError> {
    use std::io::{Read, Seek, SeekFrom};
    let err = |e: &dyn std::fmt::Display| StoreError::Journal {
        path: path.display().to_string(),
        msg: e.to_string(),
    };
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), offset)),
        Err(e) => return Err(err(&e)),
    };
    f.seek(SeekFrom::Start(offset)).map_err(|e| err(&e))?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).map_err(|e| err(&e))?;
    let Some(end) = buf.iter().rposition(|&b| b == b'\n') else {
        return Ok((Vec::new(), offset));
    };
    let mut out = Vec::new();
    for line in buf[..end].split(|&b| b == b'\n') {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        // The journal, not the store, is the record: a line the mirror cannot read is logged
        // and skipped, so every line after it is still stored (an error here would stall the
        // mirror at this offset for good).
        match serde_json::from_slice(line) {
            Ok(e) => out.push(e),
            Err(e) => tracing::warn!(journal = %path.display(), "skipping an unreadable line: {e}"),
        }
    }
    Ok((out, offset + end as u64 + 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::Usage;

    #[test]
    fn events_and_entries_are_stored_once_and_read_back_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(&tmp.path().join("db.sqlite")).unwrap();
        assert_eq!(store.journal_mode().unwrap(), "wal");
        store
            .insert_search("s1", &serde_json::json!({"search": {"budget": 3}}), 3)
            .unwrap();
        for seq in [1, 2, 2, 3] {
            let event = if seq == 2 {
                Event::Tokens {
                    usage: Usage {
                        prompt_tokens: 10,
                        completion_tokens: 2,
                        cached_tokens: 0,
                    },
                }
            } else {
                Event::Proposed {
                    proposal: seq as usize,
                    mode: "cot".into(),
                }
            };
            store.apply_event("s1", &EventMsg { seq, event }).unwrap();
        }
        let ev = store.events_after("s1", 0, 10).unwrap();
        assert_eq!(ev.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(ev[1].kind, "tokens");
        assert_eq!(store.last_seq("s1").unwrap(), 3);
        assert_eq!(store.events_after("s1", 2, 10).unwrap().len(), 1);
        let row = store.get("s1").unwrap().unwrap();
        assert_eq!(row.tokens.prompt, 10, "a replayed event was counted twice");
        assert_eq!(row.status, Status::Queued);
        assert!(store.get("nope").unwrap().is_none());
    }
}
