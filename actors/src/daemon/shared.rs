//! What the HTTP handlers and the search tasks share: the store, the settings, the counters
//! of queued searches and open event streams, and the checks a submission passes (bounded
//! settings, reserved keys, the operator's LLM choices). Longer than the ~400 lines aimed at:
//! the submission checks and the state they guard belong together.

use super::*;

/// Why a search is asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stop {
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
    pub(super) runs_dir: PathBuf,
    pub(super) notify: DashMap<String, watch::Sender<u64>>,
    pub(super) running: Arc<Semaphore>,
    pub(super) extensions: Vec<SubscriberFactory>,
    pub(super) next_id: AtomicU64,
    pub(super) manager: Addr<SearchManager>,
    /// Searches waiting for a run slot (`daemon.max_queued_searches` bounds new ones).
    pub(super) queued: AtomicUsize,
    /// Open event streams, all together and per client address.
    pub(super) streams: Mutex<HashMap<IpAddr, usize>>,
    /// The first store error of each search (shown with its status; the store may be what
    /// failed, so this lives in memory).
    pub(super) store_errors: DashMap<String, String>,
    /// A search's final status the store could not take: shown instead of the stored one.
    pub(super) lost_status: DashMap<String, (Status, String)>,
    /// The bound address, set once the server has bound (the API checks `Host` against it).
    pub(crate) bound: OnceLock<SocketAddr>,
}

/// An open event stream, counted until it is dropped (when the client disconnects or the
/// stream ends).
pub struct StreamSlot {
    pub(super) shared: Arc<Shared>,
    pub(super) client: IpAddr,
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
pub(super) const LLM_KEYS: &[&str] =
    &["backend", "model", "temperature", "seed", "response_format"];

/// Whether a journal entry is a cancelled evaluation: no result, neither stored nor resumed.
pub(super) fn is_cancelled(e: &MemoryEntry) -> bool {
    matches!(&e.status, EvalStatus::Failed { kind, .. } if kind == crate::eval::evaluator::CANCELLED)
}

/// Rewrites a search's journal before it resumes, atomically (`ists::jsonl::rewrite`): a torn
/// last line (logged by the reader) and the entries of evaluations cut short by a cancel are
/// dropped, so the resumed search evaluates those candidates again.
pub(super) fn clean_journal(path: &Path) -> Result<(), String> {
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

/// Keys a submitted search may not set: paths stay inside the daemon's data directory (a
/// submitted `search.prior` would read any file of the daemon's host), and
/// the instructor endpoint and key variable stay the operator's (a search naming another
/// endpoint could send it the value of any environment variable). `llm` is limited further
/// (see [`LLM_KEYS`]).
pub(super) const RESERVED: &[(&str, Option<&str>)] = &[
    ("runs_dir", None),
    ("data_dir", None),
    ("prompts_dir", None),
    ("evaluators", None),
    ("data", Some("spec")),
    ("search", Some("prior")),
    ("llm", Some("base_url")),
    ("llm", Some("key_env")),
];

impl Shared {
    pub(super) fn notifier(&self, id: &str) -> watch::Sender<u64> {
        self.notify
            .entry(id.to_string())
            .or_insert_with(|| watch::channel(0).0)
            .clone()
    }

    pub(super) fn wake(&self, id: &str) {
        self.notifier(id).send_modify(|v| *v = v.wrapping_add(1));
    }

    pub(super) fn lock_streams(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
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
    pub(super) fn store_failed(&self, id: &str, msg: String) {
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
    pub(super) fn check_llm(&self, s: &Settings) -> Result<(), String> {
        let base = &self.base.llm;
        let backend = s.llm.backend.name();
        let own = s.llm.backend == base.backend && s.llm.model == base.model;
        let listed = self
            .daemon
            .allowed_llms
            .iter()
            .any(|a| match a.split_once(':') {
                Some((b, m)) => b == backend && *m == s.llm.model,
                None => *a == backend && (s.llm.model == base.model || a == "offline"),
            });
        if own || listed {
            return Ok(());
        }
        let mut allowed = vec![format!("{}:{}", base.backend.name(), base.model)];
        allowed.extend(self.daemon.allowed_llms.iter().cloned());
        Err(format!(
            "llm.backend: {backend}:{} is not among this daemon's allowed_llms ({})",
            s.llm.model,
            allowed.join(", ")
        ))
    }

    /// The per-search limits of this daemon and its instructor choice, over settings that
    /// already validate; used at submission and again at resume.
    pub(super) fn check_limits(&self, s: &Settings) -> Result<(), String> {
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
    pub(super) fn recheck(&self, config: serde_json::Value) -> Result<Settings, String> {
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
    pub(super) fn overlay(&self, row: Option<&mut SearchRow>, id: &str) {
        if let (Some(r), Some(lost)) = (row, self.lost_status.get(id)) {
            r.status = lost.0;
            r.error = Some(lost.1.clone());
        }
    }
}
