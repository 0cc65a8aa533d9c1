//! Helpers shared by the actor-system integration tests (each test crate uses a subset).
#![allow(dead_code)]

use ists::config::Settings;
use std::path::{Path, PathBuf};

/// The workspace root, absolute (Ray jobs and spawned binaries see the same paths).
pub fn root() -> PathBuf {
    std::path::absolute(Path::new(env!("CARGO_MANIFEST_DIR")).join("..")).unwrap()
}

/// The journal entries of a run directory, in order.
pub fn journal(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("journal.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `config/tiny.toml` with runs under `runs` and the workspace's data and prompts.
pub fn tiny(runs: &Path) -> Settings {
    tch::set_num_threads(1);
    let mut s = ists_actors::settings::load(Some(&root().join("config/tiny.toml"))).unwrap();
    s.runs_dir = runs.to_path_buf();
    s.data_dir = root().join("data");
    s.prompts_dir = root().join("prompts");
    s
}
