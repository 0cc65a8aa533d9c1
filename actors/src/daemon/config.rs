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
    /// Searches waiting as `queued` at once; a submission beyond them is refused (503).
    pub max_queued_searches: usize,
    /// Event streams open at once, all clients together, and from one client address.
    pub max_event_streams: usize,
    pub max_event_streams_per_client: usize,
    /// Estimated memory of one candidate's training (weights, optimizer state, activations of
    /// one batch); a candidate above it is refused before anything is allocated.
    pub max_candidate_bytes: u64,
    /// At SIGTERM, how long evaluations in flight may finish before they are cancelled.
    pub shutdown_grace_secs: f64,
    /// Host names (`name` or `name:port`) the API answers besides the bound address (and, on
    /// loopback, `localhost`): requests naming another `Host` or `Origin` are refused (403).
    pub allowed_hosts: Vec<String>,
    /// The instructors a submission may choose, `backend` or `backend:model`; the daemon's own
    /// `[llm]` is always allowed. Endpoint and key variable are always the daemon's.
    pub allowed_llms: Vec<String>,
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
            max_queued_searches: 100,
            max_event_streams: 64,
            max_event_streams_per_client: 8,
            max_candidate_bytes: 8 << 30,
            shutdown_grace_secs: 30.0,
            allowed_hosts: Vec::new(),
            allowed_llms: Vec::new(),
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
            .field("max_queued_searches", &self.max_queued_searches)
            .field("max_event_streams", &self.max_event_streams)
            .field(
                "max_event_streams_per_client",
                &self.max_event_streams_per_client,
            )
            .field("max_candidate_bytes", &self.max_candidate_bytes)
            .field("shutdown_grace_secs", &self.shutdown_grace_secs)
            .field("allowed_hosts", &self.allowed_hosts)
            .field("allowed_llms", &self.allowed_llms)
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

    /// Checks every limit of the section, naming the key and its range.
    pub fn validate(&self) -> Result<(), DaemonError> {
        let counts: [(&str, u64, u64, u64); 11] = [
            (
                "daemon.max_body_bytes",
                self.max_body_bytes as u64,
                64,
                64 << 20,
            ),
            (
                "daemon.max_concurrent_searches",
                self.max_concurrent_searches as u64,
                1,
                1024,
            ),
            (
                "daemon.evaluator_slots",
                self.evaluator_slots as u64,
                1,
                1024,
            ),
            (
                "daemon.max_budget",
                self.max_budget as u64,
                1,
                ists::config::limits::BUDGET,
            ),
            ("daemon.max_in_flight", self.max_in_flight as u64, 1, 256),
            ("daemon.workers", self.workers as u64, 1, 256),
            (
                "daemon.max_queued_searches",
                self.max_queued_searches as u64,
                1,
                100_000,
            ),
            (
                "daemon.max_event_streams",
                self.max_event_streams as u64,
                1,
                100_000,
            ),
            (
                "daemon.max_event_streams_per_client",
                self.max_event_streams_per_client as u64,
                1,
                100_000,
            ),
            (
                "daemon.max_candidate_bytes",
                self.max_candidate_bytes,
                1 << 20,
                1 << 50,
            ),
            (
                "daemon.fake_cost_ms",
                self.fake_cost_ms.unwrap_or(0),
                0,
                3_600_000,
            ),
        ];
        for (key, v, lo, hi) in counts {
            if !(lo..=hi).contains(&v) {
                return Err(DaemonError::Invalid(format!(
                    "{key} must be within {lo}..={hi}, got {v}"
                )));
            }
        }
        if !(0.0..=3600.0).contains(&self.shutdown_grace_secs) {
            return Err(DaemonError::Invalid(format!(
                "daemon.shutdown_grace_secs must be within 0..=3600, got {}",
                self.shutdown_grace_secs
            )));
        }
        for h in &self.allowed_hosts {
            if h.is_empty() || h.len() > 253 || h.chars().any(|c| c.is_whitespace() || c == '/') {
                return Err(DaemonError::Invalid(format!(
                    "daemon.allowed_hosts: not a host name: {h:?}"
                )));
            }
        }
        for l in &self.allowed_llms {
            let backend = l.split_once(':').map_or(l.as_str(), |(b, _)| b);
            backend
                .parse::<ists::config::Backend>()
                .map_err(|e| DaemonError::Invalid(format!("daemon.allowed_llms: {e} in {l:?}")))?;
        }
        Ok(())
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
    /// Another daemon holds the data directory's lock.
    #[error("data directory {path} is in use by another daemon (pid {pid}); stop it or choose another data_dir")]
    Locked { path: String, pid: String },
    /// A limit on what clients may pile up (queued searches, open event streams).
    #[error("{0}")]
    TooMany(String),
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
