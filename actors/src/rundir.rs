//! The run directory: config snapshot, every prompt and reply, the journal, the event log,
//! `best.json`, `summary.json` and the final training reports. JSON files are replaced
//! atomically (write, then rename) so a kill never leaves half a file.

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

    /// Opens an existing run directory (resume), counting a new session.
    pub fn open(path: &Path) -> std::io::Result<RunDir> {
        for sub in ["prompts", "replies"] {
            std::fs::create_dir_all(path.join(sub))?;
        }
        let sessions = path.join("sessions.log");
        let previous = std::fs::read_to_string(&sessions)
            .map(|s| s.lines().count())
            .unwrap_or(0);
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&sessions)?;
        writeln!(f, "session {}", previous + 1)?;
        Ok(RunDir {
            path: path.to_path_buf(),
            session: previous + 1,
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
