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
            // The sender is only dropped after being granted (or when the scheduler goes away,
            // in which case there is nothing left to wait for either).
            let _ = rx.await;
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

impl Drop for Permit {
    fn drop(&mut self) {
        let micros = self.since.elapsed().as_micros() as u64;
        self.scheduler
            .busy_micros
            .fetch_add(micros, Ordering::Relaxed);
        self.scheduler.release();
    }
}

/// What a search's evaluator pool needs to take part in the fair share.
#[derive(Clone)]
pub struct EvalGate {
    pub scheduler: Arc<FairScheduler>,
    pub search: String,
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
