//! Append-only JSON-lines files (journals, study results): one reader for all of them. A last
//! line cut short by a kill was never complete, so it is dropped with a warning; a bad line
//! anywhere else is an error naming its number. Rewrites (a journal cleaned at resume) are
//! atomic.

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};

/// What belongs to results file `path`, in its folder: its name with `suffix` appended
/// (`<path>.settings.json`, `<path>.forecasts`, `<path>.journals`), so that it travels with
/// the rows.
pub fn beside(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// The records of `path` (none when the file does not exist). The error names the file and,
/// for a bad line, its 1-based number.
pub fn read<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>, String> {
    let text = match std::fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    parse(&text, path)
}

/// The records of `text`, the contents of file `path` already read (a writer that holds the
/// file open and locked reads it once), by [`read`]'s rules; `path` only names the file in
/// errors and warnings.
pub fn parse<T: DeserializeOwned>(text: &str, path: &Path) -> Result<Vec<T>, String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(r) => out.push(r),
            Err(e) if i + 1 == lines.len() => {
                tracing::warn!("{}: ignoring a truncated last line: {e}", path.display())
            }
            Err(e) => return Err(format!("{}:{}: {e}", path.display(), i + 1)),
        }
    }
    Ok(out)
}

/// Replaces `path` with `records`, one JSON line each, atomically: written to a temporary file
/// beside it, synced, renamed over it, and the directory synced. A kill at any point leaves
/// the old file or the new one whole, never a truncated mix (a plain truncate-and-write loses
/// every record when the kill falls between the two).
pub fn rewrite<T: Serialize>(path: &Path, records: &[T]) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let mut text = String::new();
    for r in records {
        text.push_str(&serde_json::to_string(r).map_err(|e| err(&e))?);
        text.push('\n');
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{}.tmp", name.unwrap_or_default()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        // The rename itself is only durable once the directory is.
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        err(&e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_last_line_is_dropped_and_a_bad_middle_line_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j.jsonl");
        assert!(read::<u32>(&p).unwrap().is_empty());
        std::fs::write(&p, "1\n\n2\n{\"a").unwrap();
        assert_eq!(read::<u32>(&p).unwrap(), vec![1, 2]);
        // A last line torn inside a multi-byte character (not UTF-8) is dropped too.
        let torn = b"1\n\"\xc3\xa9\"\n\"\xc3".to_vec();
        std::fs::write(&p, &torn).unwrap();
        assert_eq!(read::<serde_json::Value>(&p).unwrap().len(), 2);
        std::fs::write(&p, "1\nx\n3\n").unwrap();
        let err = read::<u32>(&p).unwrap_err();
        assert!(
            err.ends_with(&format!(
                "j.jsonl:2: {}",
                serde_json::from_str::<u32>("x").unwrap_err()
            )),
            "{err}"
        );
    }

    #[test]
    fn a_rewrite_replaces_the_file_whole_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j.jsonl");
        std::fs::write(&p, "1\n2\n{\"torn").unwrap();
        rewrite(&p, &[1u32, 2]).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "1\n2\n");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("j.jsonl")]);
        // A failed rewrite (no such directory) is an error naming the file, not a panic.
        let err = rewrite(&dir.path().join("no/such.jsonl"), &[1u32]).unwrap_err();
        assert!(err.contains("such.jsonl"), "{err}");
    }
}
