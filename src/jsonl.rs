//! Append-only JSON-lines files (journals, study results): one reader for all of them. A last
//! line cut short by a kill was never complete, so it is dropped with a warning; a bad line
//! anywhere else is an error naming its number.

use serde::de::DeserializeOwned;
use std::path::Path;

/// The records of `path` (none when the file does not exist). The error names the file and,
/// for a bad line, its 1-based number.
pub fn read<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>, String> {
    let text = match std::fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
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
}
