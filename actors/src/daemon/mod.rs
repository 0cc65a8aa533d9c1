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
pub mod metrics;
pub mod store;

pub use self::config::{load_config, DaemonError, DaemonSettings};
use crate::daemon::metrics::{Gauges, MeteredInstructor, Metrics};
use crate::daemon::store::{read_journal_from, SearchRow, Status, Store, StoreError, StoredEvent};
use crate::eval::cancel::Cancel;
use crate::eval::fair::{EvalGate, FairScheduler};
use crate::messages::{
    CancelAll, CancelSearch, EventMsg, SearchEnded, StartSearch, StopSearches, SyncStore,
};
use crate::search::supervisor::instructor_for;
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
    /// Searches waiting for a run slot (`daemon.max_queued_searches` bounds new ones).
    queued: AtomicUsize,
    /// Open event streams, all together and per client address.
    streams: Mutex<HashMap<IpAddr, usize>>,
    /// The first store error of each search (shown with its status; the store may be what
    /// failed, so this lives in memory).
    store_errors: DashMap<String, String>,
    /// A search's final status the store could not take: shown instead of the stored one.
    lost_status: DashMap<String, (Status, String)>,
    /// The bound address, set once the server has bound (the API checks `Host` against it).
    pub(crate) bound: OnceLock<SocketAddr>,
}

/// An open event stream, counted until it is dropped (when the client disconnects or the
/// stream ends).
pub struct StreamSlot {
    shared: Arc<Shared>,
    client: IpAddr,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.shared.lock_streams();
        if let Some(n) = open.get_mut(&self.client) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.client);
            }
        }
    }
}

/// Keys of `llm` a submitted search may set; the rest (endpoint, key variable, limits, prices,
/// the local server) are the operator's. Backend and model are further limited to
/// `daemon.allowed_llms`.
const LLM_KEYS: &[&str] = &["backend", "model", "temperature", "seed", "response_format"];

/// Whether a journal entry is a cancelled evaluation: no result, neither stored nor resumed.
fn is_cancelled(e: &MemoryEntry) -> bool {
    matches!(&e.status, EvalStatus::Failed { kind, .. } if kind == crate::eval::evaluator::CANCELLED)
}

/// Rewrites a search's journal before it resumes, atomically (`ists::jsonl::rewrite`): a torn
/// last line (logged by the reader) and the entries of evaluations cut short by a cancel are
/// dropped, so the resumed search evaluates those candidates again.
fn clean_journal(path: &Path) -> Result<(), String> {
    let raw = match std::fs::read(path) {
        Ok(raw) => raw,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let entries: Vec<MemoryEntry> = ists::jsonl::read(path)?;
    let kept: Vec<MemoryEntry> = entries.into_iter().filter(|e| !is_cancelled(e)).collect();
    let mut clean = Vec::new();
    for e in &kept {
        clean.extend(serde_json::to_vec(e).map_err(|e| e.to_string())?);
        clean.push(b'\n');
    }
    if clean != raw {
        tracing::info!(journal = %path.display(), kept = kept.len(), "journal cleaned before resuming");
        ists::jsonl::rewrite(path, &kept)?;
    }
    Ok(())
}

/// Keys a submitted search may not set: paths stay inside the daemon's data directory, and
/// the instructor endpoint and key variable stay the operator's (a search naming another
/// endpoint could send it the value of any environment variable). `llm` is limited further
/// (see [`LLM_KEYS`]).
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
        self.notifier(id).send_modify(|v| *v = v.wrapping_add(1));
    }

    fn lock_streams(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        // A poisoned lock only means a panic elsewhere while holding it; the counts stay usable.
        self.streams.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs store work on a blocking thread: SQLite waits on disk and locks, which must not
    /// stall the async threads that serve every other request.
    pub async fn db<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || f(&me.store))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// Remembers (and logs) a store error of search `id`; the first one is shown with its status.
    fn store_failed(&self, id: &str, msg: String) {
        tracing::error!(search = %id, "store: {msg}");
        self.store_errors.entry(id.to_string()).or_insert(msg);
    }

    /// The first store error of a search, if any.
    pub fn store_error(&self, id: &str) -> Option<String> {
        self.store_errors.get(id).map(|e| e.value().clone())
    }

    /// A search as the API shows it: the stored row, with a final status the store could not
    /// take in its place.
    pub async fn search_row(self: &Arc<Self>, id: &str) -> Result<Option<SearchRow>, StoreError> {
        let key = id.to_string();
        let mut row = self.db(move |st| st.get(&key)).await?;
        self.overlay(row.as_mut(), id);
        Ok(row)
    }

    /// A search's status (with a final status the store could not take).
    pub async fn status(self: &Arc<Self>, id: &str) -> Result<Option<Status>, StoreError> {
        if let Some(lost) = self.lost_status.get(id) {
            return Ok(Some(lost.0));
        }
        let key = id.to_string();
        self.db(move |st| st.status(&key)).await
    }

    /// Counts a new event stream from `client`; refused past the daemon's and the client's
    /// limits. The slot is released when dropped.
    pub fn open_stream(self: &Arc<Self>, client: IpAddr) -> Result<StreamSlot, DaemonError> {
        let mut open = self.lock_streams();
        let total: usize = open.values().sum();
        if total >= self.daemon.max_event_streams {
            return Err(DaemonError::TooMany(format!(
                "too many open event streams (daemon.max_event_streams = {})",
                self.daemon.max_event_streams
            )));
        }
        let mine = open.entry(client).or_insert(0);
        if *mine >= self.daemon.max_event_streams_per_client {
            return Err(DaemonError::TooMany(format!(
                "too many open event streams from {client} (daemon.max_event_streams_per_client = {})",
                self.daemon.max_event_streams_per_client
            )));
        }
        *mine += 1;
        Ok(StreamSlot {
            shared: self.clone(),
            client,
        })
    }

    /// Whether the instructor of `s` is the daemon's own or one `daemon.allowed_llms` names.
    fn check_llm(&self, s: &Settings) -> Result<(), String> {
        let base = &self.base.llm;
        let backend = format!("{:?}", s.llm.backend).to_lowercase();
        let own = s.llm.backend == base.backend && s.llm.model == base.model;
        let listed = self
            .daemon
            .allowed_llms
            .iter()
            .any(|a| match a.split_once(':') {
                Some((b, m)) => *b == backend && *m == s.llm.model,
                None => *a == backend && (s.llm.model == base.model || a == "offline"),
            });
        if own || listed {
            return Ok(());
        }
        let mut allowed = vec![format!(
            "{}:{}",
            format!("{:?}", base.backend).to_lowercase(),
            base.model
        )];
        allowed.extend(self.daemon.allowed_llms.iter().cloned());
        Err(format!(
            "llm.backend: {backend}:{} is not among this daemon's allowed_llms ({})",
            s.llm.model,
            allowed.join(", ")
        ))
    }

    /// The per-search limits of this daemon and its instructor choice, over settings that
    /// already validate; used at submission and again at resume.
    fn check_limits(&self, s: &Settings) -> Result<(), String> {
        if s.search.budget > self.daemon.max_budget {
            return Err(format!(
                "search.budget: {} exceeds this daemon's limit of {}",
                s.search.budget, self.daemon.max_budget
            ));
        }
        if s.search.in_flight > self.daemon.max_in_flight {
            return Err(format!(
                "search.in_flight: {} exceeds this daemon's limit of {}",
                s.search.in_flight, self.daemon.max_in_flight
            ));
        }
        // Reserved keys are refused at submission; a stored search must still hold the
        // daemon's own endpoint and key variable.
        if s.llm.base_url != self.base.llm.base_url || s.llm.key_env != self.base.llm.key_env {
            return Err("llm.base_url: set by the daemon's configuration, not by a search".into());
        }
        self.check_llm(s)
    }

    /// A stored search's settings checked again before it resumes (the limits may have
    /// changed since it was submitted): the message names the key at fault.
    fn recheck(&self, config: serde_json::Value) -> Result<Settings, String> {
        let s: Settings =
            serde_json::from_value(config).map_err(|e| format!("stored config unreadable: {e}"))?;
        s.validate()
            .map_err(|e| format!("stored config no longer valid: {e}"))?;
        self.check_limits(&s)
            .map_err(|e| format!("stored config no longer valid: {e}"))?;
        Ok(s)
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
        if let Some(llm) = obj.get("llm").and_then(|l| l.as_object()) {
            if let Some(k) = llm.keys().find(|k| !LLM_KEYS.contains(&k.as_str())) {
                return Err(DaemonError::BadRequest(format!(
                    "llm.{k}: set by the daemon's configuration, not by a search"
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
        // `from_json_over` validates: every setting within its range, the key named.
        let mut s = settings::from_json_over(&self.base, config)
            .map_err(|e| DaemonError::BadRequest(e.to_string()))?;
        self.check_limits(&s).map_err(DaemonError::BadRequest)?;
        s.runs_dir = self.runs_dir.clone();
        Ok(s)
    }

    /// Stores a validated search as queued and starts it; returns its id.
    pub async fn submit(
        self: &Arc<Self>,
        config: &serde_json::Value,
    ) -> Result<String, DaemonError> {
        let settings = self.validate(config)?;
        // A place in the queue is taken here, atomically, and handed to the search's task
        // (which gives it up once it runs): concurrent submissions cannot overshoot.
        let max = self.daemon.max_queued_searches;
        if self
            .queued
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max).then_some(n + 1)
            })
            .is_err()
        {
            return Err(DaemonError::TooMany(format!(
                "too many queued searches (daemon.max_queued_searches = {max})"
            )));
        }
        let place = QueuedGuard(&self.queued);
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        let id = format!("s{millis:x}{n:04x}");
        let full = serde_json::to_value(&settings).map_err(StoreError::from)?;
        let (key, budget) = (id.clone(), settings.search.budget);
        self.db(move |st| st.insert_search(&key, &full, budget))
            .await?;
        self.manager
            .send(StartSearch {
                id: id.clone(),
                settings,
            })
            .await
            .map_err(|_| DaemonError::ShuttingDown)?
            .map_err(|_| DaemonError::ShuttingDown)?;
        // The task holds the place now.
        place.hand_on();
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
                let terminal = match st.shared.status(&st.id).await {
                    Ok(s) => s.is_none_or(Status::is_terminal),
                    Err(e) => {
                        st.ended = true;
                        return Some((Err(e), st));
                    }
                };
                let (key, last) = (st.id.clone(), st.last);
                match st
                    .shared
                    .db(move |db| db.events_after(&key, last, 256))
                    .await
                {
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
    pub async fn render_metrics(self: &Arc<Self>) -> String {
        let searches = self.db(|st| st.count_by_status()).await.unwrap_or_default();
        self.metrics.render(&Gauges {
            queue_depth: self.scheduler.queue_depth(),
            busy_seconds: self.scheduler.busy_seconds(),
            searches,
        })
    }

    /// The run directory of search `id` (an id the API has already checked).
    pub fn run_dir(&self, id: &str) -> PathBuf {
        self.runs_dir.join(id)
    }

    /// A search as the API shows it, read on the calling thread (for embedders; the API uses
    /// [`Shared::search_row`]).
    pub fn search(&self, id: &str) -> Result<Option<SearchRow>, StoreError> {
        let mut row = self.store.get(id)?;
        self.overlay(row.as_mut(), id);
        Ok(row)
    }

    /// A final status the store could not take, shown in place of the stored one.
    fn overlay(&self, row: Option<&mut SearchRow>, id: &str) {
        if let (Some(r), Some(lost)) = (row, self.lost_status.get(id)) {
            r.status = lost.0;
            r.error = Some(lost.1.clone());
        }
    }
}

/// Writes a search's events to the store and mirrors its journal (a subscriber: the search's
/// actors do not know it exists). Store work runs on a blocking thread while the writer waits
/// for it (`ctx.wait`), so events are stored in the order they were published.
struct StoreWriter {
    shared: Arc<Shared>,
    id: String,
    journal: PathBuf,
    offset: u64,
}

impl StoreWriter {
    /// Mirrors the journal from `offset` (when `sync`) and stores `event`, off the async
    /// threads; the receiver completes once both are done.
    fn store(
        &mut self,
        ctx: &mut Context<Self>,
        sync: bool,
        event: Option<EventMsg>,
    ) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        let (shared, id, journal) = (self.shared.clone(), self.id.clone(), self.journal.clone());
        let mut offset = self.offset;
        let work = tokio::task::spawn_blocking(move || {
            let mut errors = Vec::new();
            if sync {
                match read_journal_from(&journal, offset) {
                    Ok((entries, next)) => {
                        // A cancelled evaluation measured nothing: it is not a candidate.
                        let kept: Vec<MemoryEntry> =
                            entries.into_iter().filter(|e| !is_cancelled(e)).collect();
                        match shared.store.record_entries(&id, &kept) {
                            Ok(_) => offset = next,
                            Err(e) => errors.push(format!("storing candidates: {e}")),
                        }
                    }
                    Err(e) => errors.push(format!("reading the journal: {e}")),
                }
            }
            if let Some(msg) = &event {
                if let Err(e) = shared.store.apply_event(&id, msg) {
                    errors.push(format!("storing event {}: {e}", msg.seq));
                }
            }
            (offset, errors)
        });
        ctx.wait(work.into_actor(self).map(move |r, act, _| {
            match r {
                Ok((offset, errors)) => {
                    act.offset = offset;
                    for e in errors {
                        act.shared.store_failed(&act.id, e);
                    }
                }
                Err(e) => act.shared.store_failed(&act.id, format!("store task: {e}")),
            }
            act.shared.wake(&act.id);
            let _ = tx.send(());
        }));
        rx
    }
}

impl Actor for StoreWriter {
    type Context = Context<Self>;
}

impl Handler<EventMsg> for StoreWriter {
    type Result = ();
    fn handle(&mut self, msg: EventMsg, ctx: &mut Context<Self>) {
        use crate::messages::Event;
        // The journal line is synced before the event is published: mirror it first, so a
        // client that sees the event finds the candidate.
        let sync = matches!(
            msg.event,
            Event::Evaluated { .. }
                | Event::Promoted { .. }
                | Event::Failed {
                    candidate: Some(_),
                    ..
                }
        );
        self.shared.metrics.observe(&msg.event);
        // Nothing waits for this one: the writer's own mailbox keeps the order.
        drop(self.store(ctx, sync, Some(msg)));
    }
}

impl Handler<SyncStore> for StoreWriter {
    type Result = ResponseFuture<()>;
    fn handle(&mut self, _: SyncStore, ctx: &mut Context<Self>) -> Self::Result {
        let done = self.store(ctx, true, None);
        Box::pin(async move {
            let _ = done.await;
        })
    }
}

/// A search the manager runs: how to ask it to stop, and its evaluations' cancellation.
struct Running {
    stop: watch::Sender<Stop>,
    cancel: Cancel,
}

/// Starts, cancels and drains the searches of a daemon.
pub struct SearchManager {
    shared: Option<Arc<Shared>>,
    stops: HashMap<String, Running>,
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

/// The text of a panic's payload.
fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into())
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
        let cancel = Cancel::new();
        self.stops.insert(
            msg.id.clone(),
            Running {
                stop: tx,
                cancel: cancel.clone(),
            },
        );
        let me = ctx.address();
        let id = msg.id.clone();
        let task = actix::spawn(async move {
            let run =
                std::panic::AssertUnwindSafe(run_one(&shared, &msg.id, msg.settings, rx, cancel));
            if let Err(p) = run.catch_unwind().await {
                // The search would otherwise stay `running` for ever, its event stream open.
                let why = format!(
                    "internal error: the search task panicked: {}",
                    panic_text(&*p)
                );
                tracing::error!(search = %msg.id, "{why}");
                set_final(&shared, &msg.id, Status::Failed, Some(why), None).await;
            }
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
            Some(r) => {
                r.stop.send_modify(|s| {
                    if *s == Stop::No {
                        *s = Stop::Cancel
                    }
                });
                // Evaluations in flight stop at their next step, not after their budget.
                r.cancel.set();
                true
            }
            None => false,
        }
    }
}

impl Handler<CancelAll> for SearchManager {
    type Result = ();
    fn handle(&mut self, _: CancelAll, _: &mut Context<Self>) {
        for r in self.stops.values() {
            r.cancel.set();
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
        for r in self.stops.values() {
            r.stop.send_modify(|s| {
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

/// Stores a search's final status, retrying a store that fails for a moment; when it keeps
/// failing, the status is kept in memory and shown in its place (with the store's error), so
/// the search does not stay `running` to its clients.
async fn set_final(
    shared: &Arc<Shared>,
    id: &str,
    status: Status,
    error: Option<String>,
    summary: Option<String>,
) {
    let mut last = String::new();
    for attempt in 0..3 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let (key, e, sm) = (id.to_string(), error.clone(), summary.clone());
        match shared
            .db(move |st| st.set_status(&key, status, e.as_deref(), sm.as_deref()))
            .await
        {
            Ok(()) => {
                shared.lost_status.remove(id);
                return;
            }
            Err(e) => last = e.to_string(),
        }
    }
    shared.store_failed(id, format!("storing the final status: {last}"));
    let why = match error {
        Some(e) => format!("{e} (and the store failed: {last})"),
        None => format!("the store failed: {last}"),
    };
    let status = if status.is_terminal() {
        status
    } else {
        Status::Failed
    };
    shared.lost_status.insert(id.to_string(), (status, why));
}

/// A search's place in the queue (`Shared::queued`), taken by whoever sends `StartSearch` and
/// given up when dropped: by the search's task once it runs or stops, by the sender when the
/// start fails.
struct QueuedGuard<'a>(&'a AtomicUsize);

impl QueuedGuard<'_> {
    /// Leaves the place taken: the search's task holds it now (and gives it up).
    fn hand_on(self) {
        std::mem::forget(self);
    }
}

impl Drop for QueuedGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Runs one search to its end, a cancel or a shutdown, keeping its status in the store.
async fn run_one(
    shared: &Arc<Shared>,
    id: &str,
    mut settings: Settings,
    rx: watch::Receiver<Stop>,
    cancel: Cancel,
) {
    // Run directories live under this daemon's data directory, whatever was stored.
    settings.runs_dir = shared.runs_dir.clone();
    let stopped = |mut rx: watch::Receiver<Stop>| async move {
        let _ = rx.wait_for(|s| *s != Stop::No).await;
    };
    // Wait as `queued` for one of the daemon's search slots.
    let permit = {
        let _queued = QueuedGuard(&shared.queued);
        tokio::select! {
            p = shared.running.clone().acquire_owned() => p.ok(),
            _ = stopped(rx.clone()) => None,
        }
    };
    let Some(_permit) = permit else {
        if *rx.borrow() == Stop::Cancel {
            set_final(
                shared,
                id,
                Status::Cancelled,
                Some("cancelled".into()),
                None,
            )
            .await;
        }
        return;
    };
    let key = id.to_string();
    if let Err(e) = shared
        .db(move |st| st.set_status(&key, Status::Running, None, None))
        .await
    {
        shared.store_failed(id, e.to_string());
    }
    let run_dir = shared.runs_dir.join(id);
    let resume = run_dir
        .join("config.json")
        .exists()
        .then(|| run_dir.clone());
    let journal = run_dir.join("journal.jsonl");
    if resume.is_some() {
        let path = journal.clone();
        let cleaned = tokio::task::spawn_blocking(move || clean_journal(&path))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r);
        if let Err(e) = cleaned {
            let why = format!("cannot resume: journal: {e}");
            set_final(shared, id, Status::Failed, Some(why), None).await;
            return;
        }
    }
    let key = id.to_string();
    let first_seq = match shared.db(move |st| st.last_seq(&key)).await {
        Ok(n) => n,
        Err(e) => {
            set_final(shared, id, Status::Failed, Some(e.to_string()), None).await;
            return;
        }
    };
    let writer = StoreWriter {
        shared: shared.clone(),
        id: id.to_string(),
        journal,
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
            cancel,
            max_candidate_bytes: Some(shared.daemon.max_candidate_bytes),
        }),
        ..SearchOptions::default()
    };
    let result = run_search(settings, opts, stopped(rx.clone())).await;
    let _ = writer.send(SyncStore).await;
    let stop = *rx.borrow();
    match result {
        Ok(summary) => {
            let json = serde_json::to_string(&summary).ok();
            match (&summary.stopped, stop) {
                (None, _) => set_final(shared, id, Status::Completed, None, json).await,
                // Drained on shutdown: stays running, resumed at the next start.
                (Some(_), Stop::Shutdown) => {}
                (Some(_), Stop::Cancel) => {
                    set_final(
                        shared,
                        id,
                        Status::Cancelled,
                        Some("cancelled".into()),
                        json,
                    )
                    .await
                }
                (Some(why), Stop::No) => {
                    set_final(shared, id, Status::Failed, Some(why.clone()), json).await
                }
            }
        }
        Err(e) => set_final(shared, id, Status::Failed, Some(e.to_string()), None).await,
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
    /// The data directory's lock, held while the daemon runs.
    _lock: std::fs::File,
}

/// Takes the exclusive lock of the data directory (`daemon.lock`, holding the pid): two daemons
/// on one directory would resume the same searches into the same journals.
fn lock_data_dir(dir: &Path) -> Result<std::fs::File, DaemonError> {
    use std::io::{Read, Seek, Write};
    let path = dir.join("daemon.lock");
    let err = |e: &dyn std::fmt::Display| DaemonError::DataDir {
        path: dir.display().to_string(),
        msg: format!("{}: {e}", path.display()),
    };
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| err(&e))?;
    // flock: released by the kernel when the process dies however it dies (kill -9 included),
    // so a stale file never blocks a restart.
    #[cfg(unix)]
    match rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => {
            let mut pid = String::new();
            let _ = f.read_to_string(&mut pid);
            return Err(DaemonError::Locked {
                path: dir.display().to_string(),
                pid: pid.trim().to_string(),
            });
        }
        Err(e) => return Err(err(&std::io::Error::from(e))),
    }
    f.set_len(0)
        .and_then(|_| f.rewind())
        .and_then(|_| write!(f, "{}", std::process::id()))
        .and_then(|_| f.sync_all())
        .map_err(|e| err(&e))?;
    Ok(f)
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
