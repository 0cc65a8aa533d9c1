//! A search's cancellation: one flag its evaluations share. Training reads it at every step
//! (it is a plain `AtomicBool` the core understands, `ists::train::proxy_run_until`); async
//! code awaits it. Once set it stays set: a cancelled search never evaluates again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::Notify;

#[derive(Default)]
struct Inner {
    flag: AtomicBool,
    notify: Notify,
}

/// Cloned into everything that must stop when the search is cancelled.
#[derive(Clone, Default)]
pub struct Cancel(Arc<Inner>);

impl std::fmt::Debug for Cancel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cancel({})", self.is_set())
    }
}

impl Cancel {
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Cancels: every step in progress stops at its end, every waiter wakes.
    pub fn set(&self) {
        self.0.flag.store(true, Ordering::SeqCst);
        self.0.notify.notify_waiters();
    }

    pub fn is_set(&self) -> bool {
        self.0.flag.load(Ordering::SeqCst)
    }

    /// The flag itself, for blocking code that polls it.
    pub fn flag(&self) -> &AtomicBool {
        &self.0.flag
    }

    /// Resolves once cancelled (at once if already).
    pub async fn cancelled(&self) {
        loop {
            let notified = self.0.notify.notified();
            tokio::pin!(notified);
            // Registered before the check, so a `set` between the two is not missed.
            notified.as_mut().enable();
            if self.is_set() {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn waiters_wake_when_set_and_late_waiters_return_at_once() {
        let c = Cancel::new();
        let waiter = tokio::spawn({
            let c = c.clone();
            async move { c.cancelled().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        c.set();
        tokio::time::timeout(Duration::from_secs(2), waiter)
            .await
            .expect("the waiter was not woken")
            .unwrap();
        tokio::time::timeout(Duration::from_millis(100), c.cancelled())
            .await
            .expect("a late waiter must return at once");
        assert!(c.flag().load(Ordering::SeqCst));
    }
}
