//! The daemon: many searches at once behind an HTTP API (see [`crate::daemon::api`]), persisted in
//! SQLite (see [`crate::daemon::store`]) and resumed at start. Each search is the ordinary actor search
//! (`run_search`) with its own run directory and journal under the daemon's data directory;
//! the daemon adds a store writer subscriber, a metered instructor and a fair share of the
//! evaluator slots. Embedding: [`Daemon::start`] returns a [`DaemonHandle`]; shutdown is a
//! future given to [`DaemonHandle::run_until`].

pub mod api;
pub mod config;
pub mod dashboard;
pub mod metrics;
pub mod store;

pub use self::config::{load_config, DaemonError, DaemonSettings};
use crate::daemon::metrics::{Gauges, MeteredInstructor, Metrics};
use crate::daemon::store::{read_journal_from, SearchRow, Status, Store, StoreError, StoredEvent};
use crate::eval::fair::{EvalGate, FairScheduler};
use crate::messages::{CancelSearch, EventMsg, SearchEnded, StartSearch, StopSearches, SyncStore};
use crate::search::supervisor::instructor_for;
use crate::settings::{self};
use crate::{run_search, SearchOptions};
use actix::prelude::*;
use dashmap::DashMap;
use futures::Stream;
use ists::config::Settings;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Semaphore};

/// Makes a per-search subscriber for every search the daemon runs (an extension point: a
/// webhook, an early-stopping rule, ...). Called on the daemon's arbiter, so it may start actors.
pub type SubscriberFactory = Arc<dyn Fn(&str) -> Recipient<EventMsg> + Send + Sync>;

/// Why a search is asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    No,
    Cancel,
    Shutdown,
}

/// What the HTTP handlers and the search tasks share.
pub struct Shared {
    pub store: Store,
    pub daemon: DaemonSettings,
    pub base: Settings,
    pub token: Option<String>,
    pub metrics: Arc<Metrics>,
    pub scheduler: Arc<FairScheduler>,
    runs_dir: PathBuf,
    notify: DashMap<String, watch::Sender<u64>>,
    running: Arc<Semaphore>,
    extensions: Vec<SubscriberFactory>,
    next_id: AtomicU64,
    manager: Addr<SearchManager>,
}

/// Keys a submitted search may not set: paths stay inside the daemon's data directory, and
/// the instructor endpoint and key variable stay the operator's (a search naming another
/// endpoint could send it the value of any environment variable).
const RESERVED: &[(&str, Option<&str>)] = &[
    ("runs_dir", None),
    ("data_dir", None),
    ("prompts_dir", None),
    ("evaluators", None),
    ("data", Some("spec")),
    ("llm", Some("base_url")),
    ("llm", Some("key_env")),
];

impl Shared {
    fn notifier(&self, id: &str) -> watch::Sender<u64> {
        self.notify
            .entry(id.to_string())
            .or_insert_with(|| watch::channel(0).0)
            .clone()
    }

    fn wake(&self, id: &str) {
        self.notifier(id).send_modify(|v| *v += 1);
    }

    /// Validates a submitted search config: JSON object, no reserved keys, a bundled dataset,
    /// settings valid over the daemon's base, within the per-search limits.
    pub fn validate(&self, config: &serde_json::Value) -> Result<Settings, DaemonError> {
        let obj = config
            .as_object()
            .ok_or_else(|| DaemonError::BadRequest("the body must be a JSON object".into()))?;
        for (key, sub) in RESERVED {
            let hit = match (obj.get(*key), sub) {
                (Some(_), None) => Some(key.to_string()),
                (Some(v), Some(s)) if v.get(*s).is_some() => Some(format!("{key}.{s}")),
                _ => None,
            };
            if let Some(field) = hit {
                return Err(DaemonError::BadRequest(format!(
                    "{field}: set by the daemon's configuration, not by a search"
                )));
            }
        }
        if let Some(src) = obj.get("data").and_then(|d| d.get("source")) {
            let name = src.as_str().unwrap_or_default();
            let known = ists::data::DataSpec::builtin_names();
            if !known.iter().any(|(n, _)| *n == name) {
                let names: Vec<&str> = known.iter().map(|(n, _)| *n).collect();
                return Err(DaemonError::BadRequest(format!(
                    "data.source: must be a bundled dataset ({})",
                    names.join(", ")
                )));
            }
        }
        let mut s = settings::from_json_over(&self.base, config)
            .map_err(|e| DaemonError::BadRequest(e.to_string()))?;
        if s.search.budget > self.daemon.max_budget {
            return Err(DaemonError::BadRequest(format!(
                "search.budget: {} exceeds this daemon's limit of {}",
                s.search.budget, self.daemon.max_budget
            )));
        }
        if s.search.in_flight > self.daemon.max_in_flight {
            return Err(DaemonError::BadRequest(format!(
                "search.in_flight: {} exceeds this daemon's limit of {}",
                s.search.in_flight, self.daemon.max_in_flight
            )));
        }
        s.runs_dir = self.runs_dir.clone();
        Ok(s)
    }

    /// Stores a validated search as queued and starts it; returns its id.
    pub async fn submit(&self, config: &serde_json::Value) -> Result<String, DaemonError> {
        let settings = self.validate(config)?;
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        let id = format!("s{millis:x}{n:04x}");
        let full = serde_json::to_value(&settings).map_err(StoreError::from)?;
        self.store
            .insert_search(&id, &full, settings.search.budget)?;
        self.manager
            .send(StartSearch {
                id: id.clone(),
                settings,
            })
            .await
            .map_err(|_| DaemonError::ShuttingDown)?
            .map_err(|_| DaemonError::ShuttingDown)?;
        Ok(id)
    }

    /// Every stored event of `id` after `after`, then each new one as it is stored; ends once
    /// the search is finished and everything was delivered. `None` items are keep-alives.
    pub fn follow(
        self: &Arc<Self>,
        id: &str,
        after: u64,
    ) -> impl Stream<Item = Result<Option<StoredEvent>, StoreError>> + use<> {
        struct St {
            shared: Arc<Shared>,
            id: String,
            last: u64,
            rx: watch::Receiver<u64>,
            buf: VecDeque<StoredEvent>,
            ended: bool,
        }
        let st = St {
            rx: self.notifier(id).subscribe(),
            shared: self.clone(),
            id: id.to_string(),
            last: after,
            buf: VecDeque::new(),
            ended: false,
        };
        futures::stream::unfold(st, |mut st| async move {
            loop {
                if let Some(e) = st.buf.pop_front() {
                    st.last = e.seq;
                    return Some((Ok(Some(e)), st));
                }
                if st.ended {
                    return None;
                }
                st.rx.borrow_and_update();
                // Status first: a search is marked finished only after its last event is
                // stored, so "finished, and nothing after `last`" means the stream is complete.
                let terminal = match st.shared.store.status(&st.id) {
                    Ok(s) => s.is_none_or(Status::is_terminal),
                    Err(e) => {
                        st.ended = true;
                        return Some((Err(e), st));
                    }
                };
                match st.shared.store.events_after(&st.id, st.last, 256) {
                    Ok(rows) if !rows.is_empty() => st.buf.extend(rows),
                    Ok(_) if terminal => return None,
                    Ok(_) => {
                        tokio::select! {
                            r = st.rx.changed() => {
                                if r.is_err() {
                                    tokio::time::sleep(Duration::from_millis(200)).await;
                                }
                            }
                            _ = tokio::time::sleep(Duration::from_secs(15)) => {
                                return Some((Ok(None), st));
                            }
                        }
                    }
                    Err(e) => {
                        st.ended = true;
                        return Some((Err(e), st));
                    }
                }
            }
        })
    }

    /// Asks a queued or running search to stop; false if it is not running here.
    pub async fn cancel(&self, id: &str) -> Result<bool, DaemonError> {
        self.manager
            .send(CancelSearch { id: id.to_string() })
            .await
            .map_err(|_| DaemonError::ShuttingDown)
    }

    /// The metrics page.
    pub fn render_metrics(&self) -> String {
        self.metrics.render(&Gauges {
            queue_depth: self.scheduler.queue_depth(),
            busy_seconds: self.scheduler.busy_seconds(),
            searches: self.store.count_by_status().unwrap_or_default(),
        })
    }

    /// The run directory of search `id` (an id the API has already checked).
    pub fn run_dir(&self, id: &str) -> PathBuf {
        self.runs_dir.join(id)
    }

    pub fn search(&self, id: &str) -> Result<Option<SearchRow>, StoreError> {
        self.store.get(id)
    }
}

/// Writes a search's events to the store and mirrors its journal (a subscriber: the search's
/// actors do not know it exists).
struct StoreWriter {
    shared: Arc<Shared>,
    id: String,
    journal: PathBuf,
    offset: u64,
}

impl StoreWriter {
    fn sync(&mut self) {
        match read_journal_from(&self.journal, self.offset) {
            Ok((entries, offset)) => match self.shared.store.record_entries(&self.id, &entries) {
                Ok(_) => self.offset = offset,
                Err(e) => tracing::error!(search = %self.id, "storing candidates: {e}"),
            },
            Err(e) => tracing::error!(search = %self.id, "reading the journal: {e}"),
        }
    }
}

impl Actor for StoreWriter {
    type Context = Context<Self>;
}

impl Handler<EventMsg> for StoreWriter {
    type Result = ();
    fn handle(&mut self, msg: EventMsg, _: &mut Context<Self>) {
        use crate::messages::Event;
        // The journal line is synced before the event is published: mirror it first, so a
        // client that sees the event finds the candidate.
        if matches!(
            msg.event,
            Event::Evaluated { .. }
                | Event::Promoted { .. }
                | Event::Failed {
                    candidate: Some(_),
                    ..
                }
        ) {
            self.sync();
        }
        self.shared.metrics.observe(&msg.event);
        if let Err(e) = self.shared.store.apply_event(&self.id, &msg) {
            tracing::error!(search = %self.id, seq = msg.seq, "storing an event: {e}");
        }
        self.shared.wake(&self.id);
    }
}

impl Handler<SyncStore> for StoreWriter {
    type Result = ();
    fn handle(&mut self, _: SyncStore, _: &mut Context<Self>) {
        self.sync();
    }
}

/// Starts, cancels and drains the searches of a daemon.
pub struct SearchManager {
    shared: Option<Arc<Shared>>,
    stops: HashMap<String, watch::Sender<Stop>>,
    tasks: HashMap<String, tokio::task::JoinHandle<()>>,
    stopping: bool,
}

impl Actor for SearchManager {
    type Context = Context<Self>;
}

/// Hands the manager its shared state (which holds the manager's own address).
#[derive(Message)]
#[rtype(result = "()")]
struct Init(Arc<Shared>);

impl Handler<Init> for SearchManager {
    type Result = ();
    fn handle(&mut self, msg: Init, _: &mut Context<Self>) {
        self.shared = Some(msg.0);
    }
}

impl Handler<StartSearch> for SearchManager {
    type Result = Result<(), String>;
    fn handle(&mut self, msg: StartSearch, ctx: &mut Context<Self>) -> Self::Result {
        let Some(shared) = self.shared.clone() else {
            return Err("not initialised".into());
        };
        if self.stopping {
            return Err("shutting down".into());
        }
        let (tx, rx) = watch::channel(Stop::No);
        self.stops.insert(msg.id.clone(), tx);
        let me = ctx.address();
        let id = msg.id.clone();
        let task = actix::spawn(async move {
            run_one(&shared, &msg.id, msg.settings, rx).await;
            shared.wake(&msg.id);
            me.do_send(SearchEnded { id: msg.id });
        });
        self.tasks.insert(id, task);
        Ok(())
    }
}

impl Handler<CancelSearch> for SearchManager {
    type Result = bool;
    fn handle(&mut self, msg: CancelSearch, _: &mut Context<Self>) -> bool {
        match self.stops.get(&msg.id) {
            Some(tx) => {
                tx.send_modify(|s| {
                    if *s == Stop::No {
                        *s = Stop::Cancel
                    }
                });
                true
            }
            None => false,
        }
    }
}

impl Handler<SearchEnded> for SearchManager {
    type Result = ();
    fn handle(&mut self, msg: SearchEnded, _: &mut Context<Self>) {
        self.stops.remove(&msg.id);
        self.tasks.remove(&msg.id);
    }
}

impl Handler<StopSearches> for SearchManager {
    type Result = ResponseFuture<()>;
    fn handle(&mut self, _: StopSearches, _: &mut Context<Self>) -> Self::Result {
        self.stopping = true;
        for tx in self.stops.values() {
            tx.send_modify(|s| {
                if *s == Stop::No {
                    *s = Stop::Shutdown
                }
            });
        }
        let tasks: Vec<_> = self.tasks.drain().map(|(_, t)| t).collect();
        Box::pin(async move {
            futures::future::join_all(tasks).await;
        })
    }
}

/// Runs one search to its end, a cancel or a shutdown, keeping its status in the store.
async fn run_one(
    shared: &Arc<Shared>,
    id: &str,
    mut settings: Settings,
    rx: watch::Receiver<Stop>,
) {
    let store = &shared.store;
    // Run directories live under this daemon's data directory, whatever was stored.
    settings.runs_dir = shared.runs_dir.clone();
    let stopped = |mut rx: watch::Receiver<Stop>| async move {
        let _ = rx.wait_for(|s| *s != Stop::No).await;
    };
    // Wait as `queued` for one of the daemon's search slots.
    let permit = tokio::select! {
        p = shared.running.clone().acquire_owned() => p.ok(),
        _ = stopped(rx.clone()) => None,
    };
    let Some(_permit) = permit else {
        if *rx.borrow() == Stop::Cancel {
            log_err(store.set_status(id, Status::Cancelled, None, None));
        }
        return;
    };
    log_err(store.set_status(id, Status::Running, None, None));
    let run_dir = shared.runs_dir.join(id);
    let resume = run_dir
        .join("config.json")
        .exists()
        .then(|| run_dir.clone());
    let first_seq = match store.last_seq(id) {
        Ok(n) => n,
        Err(e) => {
            log_err(store.set_status(id, Status::Failed, Some(&e.to_string()), None));
            return;
        }
    };
    let writer = StoreWriter {
        shared: shared.clone(),
        id: id.to_string(),
        journal: run_dir.join("journal.jsonl"),
        offset: 0,
    };
    let writer = writer.start();
    // At resume: evaluations completed before a kill are in the journal; store each once.
    let _ = writer.send(SyncStore).await;
    let mut subscribers = vec![writer.clone().recipient()];
    for f in &shared.extensions {
        subscribers.push(f(id));
    }
    let instructor = MeteredInstructor::new(instructor_for(&settings), shared.metrics.clone())
        .start()
        .recipient();
    let opts = SearchOptions {
        resume,
        name: Some(id.to_string()),
        subscribers,
        fake_cost: shared.daemon.fake_cost_ms.map(Duration::from_millis),
        instructor: Some(instructor),
        first_seq,
        gate: Some(EvalGate {
            scheduler: shared.scheduler.clone(),
            search: id.to_string(),
        }),
        ..SearchOptions::default()
    };
    let result = run_search(settings, opts, stopped(rx.clone())).await;
    let _ = writer.send(SyncStore).await;
    let stop = *rx.borrow();
    let r = match result {
        Ok(summary) => {
            let json = serde_json::to_string(&summary).ok();
            match (&summary.stopped, stop) {
                (None, _) => store.set_status(id, Status::Completed, None, json.as_deref()),
                // Drained on shutdown: stays running, resumed at the next start.
                (Some(_), Stop::Shutdown) => Ok(()),
                (Some(_), Stop::Cancel) => {
                    store.set_status(id, Status::Cancelled, Some("cancelled"), json.as_deref())
                }
                (Some(why), Stop::No) => {
                    store.set_status(id, Status::Failed, Some(why), json.as_deref())
                }
            }
        }
        Err(e) => store.set_status(id, Status::Failed, Some(&e.to_string()), None),
    };
    log_err(r);
}

fn log_err(r: Result<(), StoreError>) {
    if let Err(e) = r {
        tracing::error!("store: {e}");
    }
}

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
        for (k, v) in [
            ("daemon.max_concurrent_searches", d.max_concurrent_searches),
            ("daemon.evaluator_slots", d.evaluator_slots),
            ("daemon.max_body_bytes", d.max_body_bytes),
            ("daemon.workers", d.workers),
        ] {
            if v == 0 {
                return Err(DaemonError::Invalid(format!("{k} must be >= 1")));
            }
        }
        let dir_err = |e: std::io::Error| DaemonError::DataDir {
            path: d.data_dir.display().to_string(),
            msg: e.to_string(),
        };
        let runs_dir = d.data_dir.join("runs");
        std::fs::create_dir_all(&runs_dir).map_err(dir_err)?;
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
            base: self.base,
            daemon: d.clone(),
        });
        let _ = manager.send(Init(shared.clone())).await;
        for (id, config) in shared.store.unfinished()? {
            // The stored config is the full effective settings of the search.
            match serde_json::from_value::<Settings>(config) {
                Ok(settings) => {
                    tracing::info!(search = %id, "resuming");
                    let _ = manager
                        .send(StartSearch {
                            id: id.clone(),
                            settings,
                        })
                        .await;
                }
                Err(e) => log_err(shared.store.set_status(
                    &id,
                    Status::Failed,
                    Some(&format!("stored config unreadable: {e}")),
                    None,
                )),
            }
        }
        let (server, addr) = crate::daemon::api::serve(shared.clone(), ip, d.port, d.workers)?;
        let _ = std::fs::write(d.data_dir.join("daemon.addr"), addr.to_string());
        Ok(DaemonHandle {
            addr,
            shared,
            server,
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

    /// Stops the API, drains every search (in-flight evaluations finish and are recorded;
    /// unfinished searches resume at the next start) and returns when all have stopped.
    pub async fn shutdown(self) {
        self.server.stop(true).await;
        let _ = self.shared.manager.send(StopSearches).await;
    }
}
