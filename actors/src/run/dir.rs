//! The run directory: config snapshot, every prompt and reply, the journal, the event log,
//! `best.json`, `summary.json` and the final training reports. JSON files are replaced
//! atomically (write, then rename) so a kill never leaves half a file. `run.lock` keeps a
//! second process from resuming a run that one is running ([`RunLock`]).

use crate::messages::{EventMsg, Prompt};
use actix::prelude::*;
use serde::Serialize;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub struct RunDir {
    pub path: PathBuf,
    /// 1 for a fresh run, +1 at every resume (prefixes prompt file names).
    pub session: usize,
    /// Wall seconds the earlier sessions spent up to their last journal write
    /// ([`earlier_seconds()`]): a resumed search's summary counts them, so its `seconds` is the
    /// whole search's time, not only this session's. 0 for a fresh run.
    pub earlier_seconds: f64,
}

/// Whether `path` is a run directory that a resume or a report can read: it exists and holds
/// the settings snapshot every run writes first (`config.json`). The error says which is
/// missing, so a mistyped path is not reported as a run with nothing in it.
pub fn check_run_dir(path: &Path) -> Result<(), String> {
    if !path.is_dir() {
        return Err("no such directory".into());
    }
    if !path.join("config.json").is_file() {
        return Err(
            "not a run directory: it has no config.json, the settings snapshot every \
             run writes first"
                .into(),
        );
    }
    Ok(())
}

impl RunDir {
    /// Creates `runs_dir/<name>` (a timestamped name when None).
    pub fn create(runs_dir: &Path, name: Option<&str>) -> std::io::Result<RunDir> {
        let name = match name {
            Some(n) => n.to_string(),
            None => {
                let secs = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis())
                    .unwrap_or(0);
                format!("run-{secs}")
            }
        };
        let path = runs_dir.join(name);
        std::fs::create_dir_all(&path)?;
        RunDir::open(&path)
    }

    /// Opens an existing run directory (resume), counting a new session. The session line
    /// records when the session started and when the journal was last written before it
    /// (`session N started=<unix s> journal=<unix s or ->`), from which [`earlier_seconds()`]
    /// recovers the productive time of the sessions before.
    pub fn open(path: &Path) -> std::io::Result<RunDir> {
        for sub in ["prompts", "replies"] {
            std::fs::create_dir_all(path.join(sub))?;
        }
        let sessions = path.join("sessions.log");
        let before = std::fs::read_to_string(&sessions).unwrap_or_default();
        let previous = before.lines().count();
        let unix = |t: std::time::SystemTime| {
            t.duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .ok()
        };
        let journal = std::fs::metadata(path.join("journal.jsonl"))
            .and_then(|m| m.modified())
            .ok()
            .and_then(unix);
        let line = format!(
            "session {} started={:.3} journal={}",
            previous + 1,
            unix(std::time::SystemTime::now()).unwrap_or(0.0),
            journal.map_or("-".to_string(), |t| format!("{t:.3}"))
        );
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&sessions)?;
        writeln!(f, "{line}")?;
        Ok(RunDir {
            path: path.to_path_buf(),
            session: previous + 1,
            earlier_seconds: earlier_seconds(&format!("{before}{line}\n")),
        })
    }

    pub fn journal(&self) -> PathBuf {
        self.path.join("journal.jsonl")
    }

    /// Writes `name` atomically.
    pub fn write_json<T: Serialize>(&self, name: &str, value: &T) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(value).map_err(std::io::Error::other)?;
        let tmp = self.path.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text)?;
        std::fs::rename(tmp, self.path.join(name))
    }

    /// Logs a prompt; a failure to log is reported but does not stop the search.
    pub fn write_prompt(&self, tag: &str, p: &Prompt) {
        let text: String = p
            .messages
            .iter()
            .map(|m| format!("### {}\n{}\n\n", m.role, m.content))
            .collect();
        if let Err(e) = std::fs::write(self.path.join("prompts").join(format!("{tag}.md")), text) {
            tracing::warn!("cannot log prompt {tag}: {e}");
        }
    }

    pub fn write_reply(&self, tag: &str, text: &str) {
        if let Err(e) = std::fs::write(self.path.join("replies").join(format!("{tag}.md")), text) {
            tracing::warn!("cannot log reply {tag}: {e}");
        }
    }
}

/// Takes an exclusive lock on `path` (created if missing) and writes this process's id into it:
/// `Ok(Ok(file))` while the returned file is open, `Ok(Err(pid))` when another process holds
/// it (its pid as it wrote it). `flock`, so the kernel releases it when the holder dies however
/// it dies (kill -9 included) and a stale file never blocks a restart.
pub fn lock_exclusive(path: &Path) -> std::io::Result<Result<std::fs::File, String>> {
    use std::io::{Read, Seek};
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    #[cfg(unix)]
    match rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => {
            let mut pid = String::new();
            let _ = f.read_to_string(&mut pid);
            return Ok(Err(pid.trim().to_string()));
        }
        Err(e) => return Err(e.into()),
    }
    f.set_len(0)?;
    f.rewind()?;
    write!(f, "{}", std::process::id())?;
    f.sync_all()?;
    Ok(Ok(f))
}

/// A run directory's lock (`run.lock`), held while a search runs in it: two processes resuming
/// one run (two `ists baseline` processes over overlapping seeds, a second `ists search
/// --resume`) would append to the same journal and event log and train the same final models.
#[derive(Debug)]
pub struct RunLock {
    _file: std::fs::File,
}

impl RunLock {
    /// Locks the run directory `dir` (which must exist), or says which process holds it.
    pub fn take(dir: &Path) -> std::io::Result<RunLock> {
        match lock_exclusive(&dir.join("run.lock"))? {
            Ok(file) => Ok(RunLock { _file: file }),
            Err(pid) => Err(std::io::Error::new(
                std::io::ErrorKind::WouldBlock,
                format!(
                    "in use by another process (pid {pid}); a run directory is resumed by one \
                     process at a time"
                ),
            )),
        }
    }
}

/// The productive wall seconds of every session but the last in a `sessions.log`: session k
/// counts from its start to the journal's last write as session k + 1 found it (0 when the
/// journal did not change during session k, e.g. a session killed before its first evaluation
/// ended). Time after a session's last journal write produced nothing the run kept, so it is
/// not counted. Lines without the times (written before they were recorded) count 0.
pub fn earlier_seconds(log: &str) -> f64 {
    let field = |line: &str, key: &str| -> Option<f64> {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| v.is_finite())
    };
    let lines: Vec<&str> = log.lines().collect();
    lines
        .windows(2)
        .filter_map(|w| {
            let started = field(w[0], "started=")?;
            let written = field(w[1], "journal=")?;
            Some((written - started).max(0.0))
        })
        .sum()
}

/// One request of a proposal as logged: the prompt and the instructor's reply (either may be
/// missing, e.g. a prompt whose request failed). The reply is untrusted text.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Exchange {
    pub tag: String,
    pub prompt: Option<String>,
    pub reply: Option<String>,
}

/// Longest text returned per file: a runaway reply must not become a huge HTTP response.
pub const EXCHANGE_MAX_BYTES: usize = 256 * 1024;

/// A tag as the stage actor writes it: `s{session}-p{proposal:04}-` then lowercase letters,
/// digits and dashes. Anything else in the directories is not ours and is never served.
fn is_tag(name: &str) -> bool {
    name.starts_with('s')
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn read_capped(path: &Path) -> std::io::Result<String> {
    let bytes = std::fs::read(path)?;
    let cut = &bytes[..bytes.len().min(EXCHANGE_MAX_BYTES)];
    let mut text = String::from_utf8_lossy(cut).into_owned();
    if bytes.len() > EXCHANGE_MAX_BYTES {
        text.push_str("\n[... truncated]");
    }
    Ok(text)
}

/// The prompts and replies of proposal `proposal` of session `session` in the run directory
/// `run`, in tag order (attempts, or tree-of-thought steps). The file names are built here from
/// two numbers, never taken from a client.
pub fn read_exchanges(run: &Path, session: u32, proposal: u32) -> std::io::Result<Vec<Exchange>> {
    let prefix = format!("s{session}-p{proposal:04}-");
    let mut by_tag = std::collections::BTreeMap::<String, Exchange>::new();
    for (sub, is_prompt) in [("prompts", true), ("replies", false)] {
        let dir = match std::fs::read_dir(run.join(sub)) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in dir {
            let entry = entry?;
            let name = entry.file_name();
            let Some(tag) = name.to_str().and_then(|n| n.strip_suffix(".md")) else {
                continue;
            };
            if !tag.starts_with(&prefix) || !is_tag(tag) || !entry.file_type()?.is_file() {
                continue;
            }
            let text = read_capped(&entry.path())?;
            let ex = by_tag.entry(tag.to_string()).or_insert_with(|| Exchange {
                tag: tag.to_string(),
                prompt: None,
                reply: None,
            });
            if is_prompt {
                ex.prompt = Some(text);
            } else {
                ex.reply = Some(text);
            }
        }
    }
    Ok(by_tag.into_values().collect())
}

/// Subscriber that appends every event to `events.jsonl`.
pub struct EventLog {
    file: std::fs::File,
}

impl EventLog {
    pub fn open(run: &RunDir) -> std::io::Result<EventLog> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(run.path.join("events.jsonl"))?;
        Ok(EventLog { file })
    }
}

impl Actor for EventLog {
    type Context = Context<Self>;
}

impl Handler<EventMsg> for EventLog {
    type Result = ();
    fn handle(&mut self, msg: EventMsg, _: &mut Context<Self>) {
        if let Ok(line) = serde_json::to_string(&msg) {
            if let Err(e) = writeln!(self.file, "{line}") {
                tracing::warn!("cannot log event: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exchanges_pair_prompts_and_replies_of_one_proposal_only() {
        let tmp = tempfile::tempdir().unwrap();
        let run = tmp.path();
        for sub in ["prompts", "replies"] {
            std::fs::create_dir_all(run.join(sub)).unwrap();
        }
        let w = |sub: &str, name: &str, text: &str| {
            std::fs::write(run.join(sub).join(name), text).unwrap()
        };
        w("prompts", "s1-p0002-a0.md", "P0");
        w("replies", "s1-p0002-a0.md", "R0 <script>");
        w("prompts", "s1-p0002-a1.md", "P1");
        w("replies", "s1-p0020-a0.md", "other proposal");
        w("replies", "s2-p0002-a0.md", "other session");
        w("replies", "s1-p0002-a0.md.bak", "not a tag");
        w("replies", "s1-p0002-A0.md", "not our grammar");
        let got = read_exchanges(run, 1, 2).unwrap();
        let tags: Vec<_> = got.iter().map(|e| e.tag.as_str()).collect();
        assert_eq!(tags, ["s1-p0002-a0", "s1-p0002-a1"]);
        assert_eq!(got[0].prompt.as_deref(), Some("P0"));
        assert_eq!(got[0].reply.as_deref(), Some("R0 <script>"));
        assert_eq!(got[1].reply, None);
        std::fs::write(
            run.join("replies/s1-p0002-a1.md"),
            "x".repeat(EXCHANGE_MAX_BYTES + 10),
        )
        .unwrap();
        let got = read_exchanges(run, 1, 2).unwrap();
        let long = got[1].reply.as_deref().unwrap();
        assert!(long.ends_with("[... truncated]") && long.len() < EXCHANGE_MAX_BYTES + 40);
        assert!(read_exchanges(&run.join("missing"), 1, 2)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn earlier_sessions_count_up_to_their_last_journal_write() {
        // Session 1 ran 100..160 with its last evaluation at 150; session 2 started at 200 and
        // was killed before any evaluation ended (the journal still at 150); session 3 found
        // the journal as session 2 left it. Old lines without times count nothing.
        let log = "session 1 started=100.0 journal=-\n\
                   session 2 started=200.0 journal=150.0\n\
                   session 3 started=300.0 journal=150.0\n";
        assert_eq!(earlier_seconds(log), 50.0);
        let log = "session 1 started=100.0 journal=-\nsession 2 started=400 journal=350.5\n";
        assert_eq!(earlier_seconds(log), 250.5);
        assert_eq!(earlier_seconds("session 1\nsession 2\n"), 0.0);
        assert_eq!(earlier_seconds("session 1 started=100.0 journal=-\n"), 0.0);
        assert_eq!(earlier_seconds(""), 0.0);
    }

    #[test]
    fn a_run_directory_is_locked_by_one_holder_at_a_time() {
        let tmp = tempfile::tempdir().unwrap();
        let run = RunDir::create(tmp.path(), Some("r")).unwrap();
        let held = RunLock::take(&run.path).unwrap();
        let pid = std::fs::read_to_string(run.path.join("run.lock")).unwrap();
        assert_eq!(pid, std::process::id().to_string());
        // flock locks belong to an open file, so a second open in this process is refused as
        // another process's would be, and the message names the holder.
        let err = RunLock::take(&run.path).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock);
        assert!(err.to_string().contains(&format!("pid {pid}")), "{err}");
        drop(held);
        RunLock::take(&run.path).unwrap();
    }

    #[test]
    fn a_resumed_run_directory_counts_its_earlier_session() {
        let tmp = tempfile::tempdir().unwrap();
        let first = RunDir::create(tmp.path(), Some("r")).unwrap();
        assert_eq!((first.session, first.earlier_seconds), (1, 0.0));
        std::thread::sleep(std::time::Duration::from_millis(30));
        std::fs::write(first.journal(), "{}\n").unwrap();
        let second = RunDir::open(&first.path).unwrap();
        assert_eq!(second.session, 2);
        assert!(
            second.earlier_seconds >= 0.02 && second.earlier_seconds < 60.0,
            "{}",
            second.earlier_seconds
        );
        let log = std::fs::read_to_string(first.path.join("sessions.log")).unwrap();
        assert!(log.lines().all(|l| l.contains("started=")), "{log}");
    }
}
