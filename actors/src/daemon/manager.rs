//! The search manager: starts, cancels and drains the daemon's searches, each run to its end (a
//! cancel or a shutdown) with its status kept in the store.

use super::*;

/// A search the manager runs: how to ask it to stop, and its evaluations' cancellation.
pub(super) struct Running {
    pub(super) stop: watch::Sender<Stop>,
    pub(super) cancel: Cancel,
}

/// Starts, cancels and drains the searches of a daemon.
pub struct SearchManager {
    pub(super) shared: Option<Arc<Shared>>,
    pub(super) stops: HashMap<String, Running>,
    pub(super) tasks: HashMap<String, tokio::task::JoinHandle<()>>,
    pub(super) stopping: bool,
}

impl Actor for SearchManager {
    type Context = Context<Self>;
}

/// Hands the manager its shared state (which holds the manager's own address).
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Init(pub(super) Arc<Shared>);

impl Handler<Init> for SearchManager {
    type Result = ();
    fn handle(&mut self, msg: Init, _: &mut Context<Self>) {
        self.shared = Some(msg.0);
    }
}

/// The text of a panic's payload.
pub(super) fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
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
pub(super) async fn set_final(
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
pub(super) struct QueuedGuard<'a>(pub(super) &'a AtomicUsize);

impl QueuedGuard<'_> {
    /// Leaves the place taken: the search's task holds it now (and gives it up).
    pub(super) fn hand_on(self) {
        std::mem::forget(self);
    }
}

impl Drop for QueuedGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Runs one search to its end, a cancel or a shutdown, keeping its status in the store.
pub(super) async fn run_one(
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
    // Submitters cannot name a prior (`search.prior` is reserved); the operator's base may.
    let prior = match load_prior(&settings) {
        Ok(p) => p,
        Err(e) => {
            set_final(shared, id, Status::Failed, Some(e.to_string()), None).await;
            return;
        }
    };
    let instructor = MeteredInstructor::new(
        instructor_for(&settings, prior.clone()),
        shared.metrics.clone(),
    )
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
        prior,
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
