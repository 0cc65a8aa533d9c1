//! A fair share of evaluator slots between the searches of one daemon: evaluations wait for a
//! slot, and freed slots go round-robin across the searches that wait (first come first served
//! within a search), so a search with many candidates in flight cannot starve the others.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use tokio::sync::oneshot;

#[derive(Default)]
struct State {
    free: usize,
    /// Searches with at least one waiter, in the order they are served next.
    turn: VecDeque<String>,
    waiting: HashMap<String, VecDeque<oneshot::Sender<()>>>,
}

/// The slots and their waiters. Shared by every search of a daemon.
pub struct FairScheduler {
    state: Mutex<State>,
    busy_micros: AtomicU64,
}

/// Held while an evaluation runs; dropping it hands the slot to the next search in turn.
pub struct Permit {
    scheduler: Arc<FairScheduler>,
    since: Instant,
}

impl FairScheduler {
    /// `slots` evaluations may run at once (at least one).
    pub fn new(slots: usize) -> Arc<FairScheduler> {
        Arc::new(FairScheduler {
            state: Mutex::new(State {
                free: slots.max(1),
                ..State::default()
            }),
            busy_micros: AtomicU64::new(0),
        })
    }

    // A poisoned lock only means a panic elsewhere while holding it; the state stays usable.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for a slot for `search`.
    pub async fn acquire(self: &Arc<Self>, search: &str) -> Permit {
        let rx = {
            let mut st = self.lock();
            if st.free > 0 && st.turn.is_empty() {
                st.free -= 1;
                None
            } else {
                let (tx, rx) = oneshot::channel();
                let q = st.waiting.entry(search.to_string()).or_default();
                let first = q.is_empty();
                q.push_back(tx);
                if first {
                    st.turn.push_back(search.to_string());
                }
                Some(rx)
            }
        };
        if let Some(rx) = rx {
            let mut waiting = Waiting {
                rx: Some(rx),
                scheduler: self.clone(),
            };
            if let Some(rx) = waiting.rx.as_mut() {
                // The sender is only dropped after being granted (or when the scheduler goes
                // away, in which case there is nothing left to wait for either).
                let _ = rx.await;
            }
            // Received: the slot is this permit's now, not the guard's to hand on.
            waiting.rx = None;
        }
        Permit {
            scheduler: self.clone(),
            since: Instant::now(),
        }
    }

    /// Evaluations waiting for a slot, all searches together.
    pub fn queue_depth(&self) -> usize {
        self.lock().waiting.values().map(VecDeque::len).sum()
    }

    /// Total time slots were held, in seconds.
    pub fn busy_seconds(&self) -> f64 {
        self.busy_micros.load(Ordering::Relaxed) as f64 / 1e6
    }

    fn release(&self) {
        let mut st = self.lock();
        // Hand the slot to the next search in turn; a waiter that gave up (dropped receiver)
        // is skipped so the slot is never lost.
        while let Some(search) = st.turn.pop_front() {
            let Some(q) = st.waiting.get_mut(&search) else {
                continue;
            };
            let next = q.pop_front();
            let more = !q.is_empty();
            if more {
                st.turn.push_back(search.clone());
            } else {
                st.waiting.remove(&search);
            }
            if let Some(tx) = next {
                if tx.send(()).is_ok() {
                    return;
                }
            }
        }
        st.free += 1;
    }
}

/// A waiter's receiver while it waits. A waiter dropped after a slot was sent to it but before
/// it took the slot (its task aborted in between) would otherwise keep the slot for ever: on
/// drop, the receiver is closed (no later grant can reach it) and a grant already in it is
/// handed to the next waiter.
struct Waiting {
    rx: Option<oneshot::Receiver<()>>,
    scheduler: Arc<FairScheduler>,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Some(mut rx) = self.rx.take() {
            rx.close();
            if rx.try_recv().is_ok() {
                self.scheduler.release();
            }
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let micros = self.since.elapsed().as_micros() as u64;
        self.scheduler
            .busy_micros
            .fetch_add(micros, Ordering::Relaxed);
        self.scheduler.release();
    }
}

/// What a search's evaluator pool needs to take part in the fair share, and the daemon's say
/// over each evaluation: its cancellation and the largest candidate it accepts.
#[derive(Clone)]
pub struct EvalGate {
    pub scheduler: Arc<FairScheduler>,
    pub search: String,
    /// Set when the search is cancelled (or the daemon's shutdown grace is over): waiting and
    /// running evaluations stop, and none starts.
    pub cancel: crate::eval::cancel::Cancel,
    /// Candidates whose estimated training memory exceeds this many bytes are refused before
    /// anything is allocated (`ists::footprint`).
    pub max_candidate_bytes: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex as StdMutex;

    /// One search queues many evaluations before two others queue a few: with one slot, the
    /// grants alternate between the searches instead of serving the greedy one first.
    #[tokio::test]
    async fn slots_go_round_robin_across_searches() {
        let s = FairScheduler::new(1);
        let order = Arc::new(StdMutex::new(Vec::new()));
        let first = s.acquire("greedy").await;
        let mut tasks = Vec::new();
        let spawn = |name: &'static str, tasks: &mut Vec<_>| {
            let s = s.clone();
            let order = order.clone();
            tasks.push(tokio::spawn(async move {
                let _p = s.acquire(name).await;
                order.lock().unwrap().push(name);
                tokio::task::yield_now().await;
            }));
        };
        for _ in 0..6 {
            spawn("greedy", &mut tasks);
        }
        // Let the greedy waiters enqueue first.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        spawn("a", &mut tasks);
        spawn("b", &mut tasks);
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(s.queue_depth(), 8);
        drop(first);
        for t in tasks {
            t.await.unwrap();
        }
        let order = order.lock().unwrap().clone();
        assert_eq!(order.len(), 8);
        let pos = |n: &str| order.iter().position(|x| *x == n).unwrap();
        assert!(pos("a") <= 2 && pos("b") <= 2, "starved: {order:?}");
        assert_eq!(s.queue_depth(), 0);
    }

    /// The slot is sent to a waiter that is then dropped before it runs again (its task
    /// aborted between the grant and the wake-up): the slot must go on to the next waiter.
    #[tokio::test]
    async fn a_waiter_dropped_after_the_grant_hands_the_slot_on() {
        let s = FairScheduler::new(1);
        let held = s.acquire("x").await;
        let mut waiter = Box::pin(s.acquire("y"));
        assert!(futures::poll!(waiter.as_mut()).is_pending());
        assert_eq!(s.queue_depth(), 1);
        drop(held); // the slot is sent to "y"
        drop(waiter); // which never takes it
        let again = tokio::time::timeout(std::time::Duration::from_secs(2), s.acquire("z")).await;
        assert!(
            again.is_ok(),
            "the slot was lost with a granted, dropped waiter"
        );
        drop(again);
        // And it is the only slot: nothing was handed out twice.
        let one = s.acquire("a").await;
        let two = tokio::time::timeout(std::time::Duration::from_millis(200), s.acquire("b")).await;
        assert!(two.is_err(), "a slot was counted twice");
        drop(one);
    }

    #[tokio::test]
    async fn an_abandoned_waiter_does_not_lose_the_slot() {
        let s = FairScheduler::new(1);
        let held = s.acquire("x").await;
        let waiter = {
            let s = s.clone();
            tokio::spawn(async move {
                let _p = s.acquire("y").await;
            })
        };
        tokio::task::yield_now().await;
        waiter.abort();
        let _ = waiter.await;
        drop(held);
        let again = tokio::time::timeout(std::time::Duration::from_secs(2), s.acquire("z")).await;
        assert!(again.is_ok(), "the slot was lost to an abandoned waiter");
    }
}
