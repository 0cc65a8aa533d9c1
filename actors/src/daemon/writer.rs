//! The store writer: one subscriber per search that mirrors its journal and events into SQLite,
//! off the async threads and in publication order.

use super::*;

/// Writes a search's events to the store and mirrors its journal (a subscriber: the search's
/// actors do not know it exists). Store work runs on a blocking thread while the writer waits
/// for it (`ctx.wait`), so events are stored in the order they were published.
pub(super) struct StoreWriter {
    pub(super) shared: Arc<Shared>,
    pub(super) id: String,
    pub(super) journal: PathBuf,
    pub(super) offset: u64,
}

impl StoreWriter {
    /// Mirrors the journal from `offset` (when `sync`) and stores `event`, off the async
    /// threads; the receiver completes once both are done.
    pub(super) fn store(
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
