//! The daemon: many searches at once behind an HTTP API (see [`crate::daemon::api`]), persisted in
//! SQLite (see [`crate::daemon::store`]) and resumed at start. Each search is the ordinary actor search
//! (`run_search`) with its own run directory and journal under the daemon's data directory;
//! the daemon adds a store writer subscriber, a metered instructor and a fair share of the
//! evaluator slots. Embedding: [`Daemon::start`] returns a [`DaemonHandle`]; shutdown is a
//! future given to [`DaemonHandle::run_until`].
//!
//! Hardening: every submitted setting is bounded (and checked again at resume, where a search
//! that no longer validates is marked failed instead of resumed); one daemon per data
//! directory (an exclusive lock); SQLite calls run on blocking threads; a cancel stops the
//! evaluations in flight at their next training step; a shutdown drains for
//! `daemon.shutdown_grace_secs`, then cancels; a panicking search task and a store error each
//! end in the search's status instead of a search left `running`.

pub mod api;
pub mod config;
pub mod dashboard;
mod manager;
pub mod metrics;
mod shared;
pub mod store;
mod writer;

pub use self::config::{load_config, DaemonError, DaemonSettings};
use self::manager::*;
pub use self::shared::*;
use self::writer::*;
use crate::daemon::metrics::{Gauges, MeteredInstructor, Metrics};
use crate::daemon::store::{read_journal_from, SearchRow, Status, Store, StoreError, StoredEvent};
use crate::eval::cancel::Cancel;
use crate::eval::fair::{EvalGate, FairScheduler};
use crate::messages::{
    CancelAll, CancelSearch, EventMsg, SearchEnded, StartSearch, StopSearches, SyncStore,
};
use crate::search::supervisor::{instructor_for, load_prior};
use crate::settings::{self};
use crate::{run_search, SearchOptions};
use actix::prelude::*;
use dashmap::DashMap;
use futures::FutureExt;
use futures::Stream;
use ists::config::Settings;
use ists::memory::MemoryEntry;
use ists::train::EvalStatus;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::{oneshot, watch, Semaphore};

/// Makes a per-search subscriber for every search the daemon runs (an extension point: a
/// webhook, an early-stopping rule, ...). Called on the daemon's arbiter, so it may start actors.
pub type SubscriberFactory = Arc<dyn Fn(&str) -> Recipient<EventMsg> + Send + Sync>;
/// A daemon to start: base settings for searches, the `[daemon]` section, and extensions.
pub struct Daemon {
    base: Settings,
    daemon: DaemonSettings,
    extensions: Vec<SubscriberFactory>,
}

/// A started daemon.
pub struct DaemonHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: actix_web::dev::ServerHandle,
    /// The data directory's lock, held while the daemon runs.
    _lock: std::fs::File,
}

/// Takes the exclusive lock of the data directory (`daemon.lock`, holding the pid): two daemons
/// on one directory would resume the same searches into the same journals.
fn lock_data_dir(dir: &Path) -> Result<std::fs::File, DaemonError> {
    let path = dir.join("daemon.lock");
    match crate::run::dir::lock_exclusive(&path) {
        Ok(Ok(f)) => Ok(f),
        Ok(Err(pid)) => Err(DaemonError::Locked {
            path: dir.display().to_string(),
            pid,
        }),
        Err(e) => Err(DaemonError::DataDir {
            path: dir.display().to_string(),
            msg: format!("{}: {e}", path.display()),
        }),
    }
}

impl Daemon {
    pub fn new(base: Settings, daemon: DaemonSettings) -> Daemon {
        Daemon {
            base,
            daemon,
            extensions: Vec::new(),
        }
    }

    /// Adds a subscriber made for every search (see [`SubscriberFactory`]).
    pub fn subscribe_each(mut self, f: SubscriberFactory) -> Daemon {
        self.extensions.push(f);
        self
    }

    /// Opens the store, resumes unfinished searches, binds and serves the API. Must run inside
    /// an actix system.
    pub async fn start(self) -> Result<DaemonHandle, DaemonError> {
        let d = self.daemon;
        let token = d.resolved_token();
        let ip: IpAddr = d.bind.parse().map_err(|_| {
            DaemonError::Invalid(format!("daemon.bind: not an IP address: {}", d.bind))
        })?;
        if !ip.is_loopback() && token.is_none() {
            return Err(DaemonError::InsecureBind(d.bind.clone()));
        }
        d.validate()?;
        let dir_err = |e: std::io::Error| DaemonError::DataDir {
            path: d.data_dir.display().to_string(),
            msg: e.to_string(),
        };
        let runs_dir = d.data_dir.join("runs");
        std::fs::create_dir_all(&runs_dir).map_err(dir_err)?;
        // Before the store is opened: a second daemon must not touch anything.
        let lock = lock_data_dir(&d.data_dir)?;
        let store = Store::open(&d.data_dir.join("ists.sqlite"))?;
        let manager = SearchManager {
            shared: None,
            stops: HashMap::new(),
            tasks: HashMap::new(),
            stopping: false,
        }
        .start();
        let shared = Arc::new(Shared {
            store,
            token,
            metrics: Arc::new(Metrics::default()),
            scheduler: FairScheduler::new(d.evaluator_slots),
            runs_dir,
            notify: DashMap::new(),
            running: Arc::new(Semaphore::new(d.max_concurrent_searches)),
            extensions: self.extensions,
            next_id: AtomicU64::new(0),
            manager: manager.clone(),
            queued: AtomicUsize::new(0),
            streams: Mutex::new(HashMap::new()),
            store_errors: DashMap::new(),
            lost_status: DashMap::new(),
            bound: OnceLock::new(),
            base: self.base,
            daemon: d.clone(),
        });
        let _ = manager.send(Init(shared.clone())).await;
        for (id, config) in shared.db(|st| st.unfinished()).await? {
            // The stored config is the full effective settings of the search, checked again:
            // one that no longer validates (tighter limits, or stored before they existed) is
            // failed with the reason rather than resumed into a crash.
            match shared.recheck(config) {
                Ok(settings) => {
                    tracing::info!(search = %id, "resuming");
                    // Resumed searches take their place in the queue whatever its limit.
                    shared.queued.fetch_add(1, Ordering::SeqCst);
                    let place = QueuedGuard(&shared.queued);
                    let started = manager
                        .send(StartSearch {
                            id: id.clone(),
                            settings,
                        })
                        .await;
                    if matches!(started, Ok(Ok(()))) {
                        place.hand_on();
                    }
                }
                Err(why) => {
                    tracing::warn!(search = %id, "not resumed: {why}");
                    set_final(&shared, &id, Status::Failed, Some(why), None).await;
                }
            }
        }
        let (server, addr) = crate::daemon::api::serve(shared.clone(), ip, d.port, d.workers)?;
        let _ = std::fs::write(d.data_dir.join("daemon.addr"), addr.to_string());
        Ok(DaemonHandle {
            addr,
            shared,
            server,
            _lock: lock,
        })
    }
}

impl DaemonHandle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The state shared with the API: submit, follow, cancel and read searches in-process.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Serves until `shutdown` resolves, then shuts down.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) {
        shutdown.await;
        self.shutdown().await;
    }

    /// Stops the API and drains every search: in-flight evaluations may finish (and are
    /// recorded) for `daemon.shutdown_grace_secs`; then they are cancelled (not recorded) and
    /// the searches given a few more seconds to stop. Unfinished searches resume at the next
    /// start. Returns when all have stopped, or at that last deadline (then the caller exits
    /// with them still running: their journals hold everything acknowledged).
    pub async fn shutdown(self) {
        self.server.stop(true).await;
        let grace = Duration::from_secs_f64(self.shared.daemon.shutdown_grace_secs);
        let drain = self.shared.manager.send(StopSearches);
        tokio::pin!(drain);
        if tokio::time::timeout(grace, &mut drain).await.is_err() {
            tracing::warn!(
                "shutdown grace of {}s over: cancelling the evaluations in flight",
                grace.as_secs_f64()
            );
            let _ = self.shared.manager.send(CancelAll).await;
            if tokio::time::timeout(Duration::from_secs(10), &mut drain)
                .await
                .is_err()
            {
                tracing::error!("searches still running 10 s after the cancel; stopping anyway");
            }
        }
    }
}
