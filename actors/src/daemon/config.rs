//! The daemon's configuration: the `[daemon]` section (bind address, token, data directory,
//! limits) beside the search defaults in one file, its errors, and [`load_config`].

use crate::daemon::store::StoreError;
use crate::settings::{self, SettingsError};
use config::{Config, Environment, File, FileFormat};
use ists::config::Settings;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The `[daemon]` section of the daemon's config file.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonSettings {
    /// Address to bind; anything but loopback requires a token.
    pub bind: String,
    /// Port (0 picks a free one; the bound address is printed and written to `daemon.addr`).
    pub port: u16,
    /// The bearer token itself (prefer `token_env`, which keeps it out of files).
    pub token: Option<String>,
    /// Environment variable holding the token, read when `token` is unset.
    pub token_env: String,
    /// Require the token for reads too (it is always required for mutating calls).
    pub auth_reads: bool,
    /// Holds the database and the run directories; nothing is written outside it.
    pub data_dir: PathBuf,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Searches running at once; others wait as `queued`.
    pub max_concurrent_searches: usize,
    /// Evaluations running at once, all searches together, shared round-robin.
    pub evaluator_slots: usize,
    /// Per-search limits: the largest `search.budget` and `search.in_flight` accepted.
    pub max_budget: usize,
    pub max_in_flight: usize,
    /// HTTP worker threads.
    pub workers: usize,
    /// TEST ONLY: replace the proxy evaluation by a sleep of this many milliseconds and a
    /// score derived from the architecture's hash. Never set it for real searches.
    pub fake_cost_ms: Option<u64>,
}

impl Default for DaemonSettings {
    fn default() -> Self {
        DaemonSettings {
            bind: "127.0.0.1".into(),
            port: 8470,
            token: None,
            token_env: "ISTS_DAEMON_TOKEN".into(),
            auth_reads: false,
            data_dir: "daemon-data".into(),
            max_body_bytes: 64 * 1024,
            max_concurrent_searches: 4,
            evaluator_slots: 1,
            max_budget: 1000,
            max_in_flight: 8,
            workers: 2,
            fake_cost_ms: None,
        }
    }
}

// Written by hand so the token never reaches a log line.
impl std::fmt::Debug for DaemonSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DaemonSettings")
            .field("bind", &self.bind)
            .field("port", &self.port)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("token_env", &self.token_env)
            .field("auth_reads", &self.auth_reads)
            .field("data_dir", &self.data_dir)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_concurrent_searches", &self.max_concurrent_searches)
            .field("evaluator_slots", &self.evaluator_slots)
            .field("max_budget", &self.max_budget)
            .field("max_in_flight", &self.max_in_flight)
            .field("workers", &self.workers)
            .field("fake_cost_ms", &self.fake_cost_ms)
            .finish()
    }
}

impl DaemonSettings {
    /// The token in force: `token`, else the variable `token_env` names; empty means none.
    pub fn resolved_token(&self) -> Option<String> {
        self.token
            .clone()
            .or_else(|| std::env::var(&self.token_env).ok())
            .filter(|t| !t.trim().is_empty())
    }
}

/// Errors of the daemon.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error("daemon settings: {0}")]
    Invalid(String),
    #[error(
        "refusing to bind the non-loopback address {0} without a token (set daemon.token_env)"
    )]
    InsecureBind(String),
    #[error("cannot bind {addr}: {msg}")]
    Bind { addr: String, msg: String },
    #[error("data directory {path}: {msg}")]
    DataDir { path: String, msg: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A submitted search is invalid; the message names the field.
    #[error("{0}")]
    BadRequest(String),
    #[error("the daemon is shutting down")]
    ShuttingDown,
}

/// Loads a daemon config file: search defaults at the top level (layered over
/// `config/default.toml` and `ISTS__` variables, as for `ists search`) and a `[daemon]` section
/// (with `ISTS_DAEMON__KEY` variables over it).
pub fn load_config(file: Option<&Path>) -> Result<(Settings, DaemonSettings), DaemonError> {
    let mut table = file
        .map(settings::read_file)
        .transpose()?
        .unwrap_or_default();
    let daemon_table = match table.remove("daemon") {
        Some(toml::Value::Table(t)) => t,
        Some(_) => return Err(DaemonError::Invalid("[daemon] must be a table".into())),
        None => toml::Table::new(),
    };
    let base = settings::load_table(Some(&table), file)?;
    let text = toml::to_string(&daemon_table).map_err(|e| DaemonError::Invalid(e.to_string()))?;
    let cfg = Config::builder()
        .add_source(File::from_str(&text, FileFormat::Toml))
        .add_source(
            Environment::with_prefix("ISTS_DAEMON")
                .prefix_separator("__")
                .separator("__"),
        )
        .build()
        .map_err(|e| DaemonError::Invalid(e.to_string()))?;
    let d: DaemonSettings = cfg
        .try_deserialize()
        .map_err(|e| DaemonError::Invalid(format!("daemon.{e}")))?;
    Ok((base, d))
}
