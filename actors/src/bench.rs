//! Benchmark of the actor system itself: a mock instructor of fixed latency L and a fake
//! evaluator of fixed cost E, to measure messaging overhead per candidate and how much the
//! pipelined search saves over a sequential propose-then-evaluate loop.

use crate::instructor::offline::OfflineInstructor;
use crate::messages::{Complete, Event, EventMsg, LlmError, Reply};
use crate::{run_search, SearchOptions};
use actix::prelude::*;
use ists::config::Settings;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Answers like the offline instructor, after a fixed delay (a stand-in for an LLM's latency).
pub struct DelayedInstructor {
    inner: Addr<OfflineInstructor>,
    latency: Duration,
}

impl DelayedInstructor {
    pub fn new(inner: Addr<OfflineInstructor>, latency: Duration) -> Self {
        DelayedInstructor { inner, latency }
    }
}

impl Actor for DelayedInstructor {
    type Context = Context<Self>;
}

impl Handler<Complete> for DelayedInstructor {
    type Result = ResponseFuture<Result<Reply, LlmError>>;
    fn handle(&mut self, msg: Complete, _: &mut Context<Self>) -> Self::Result {
        let inner = self.inner.clone();
        let latency = self.latency;
        Box::pin(async move {
            // A zero latency must not cost a timer tick (about 1 ms): skip the sleep.
            if !latency.is_zero() {
                tokio::time::sleep(latency).await;
            }
            inner
                .send(msg)
                .await
                .map_err(|e| LlmError::Connection(e.to_string()))?
        })
    }
}

/// Records the time of the first and last event of a search.
#[derive(Default)]
pub struct Clock {
    pub times: Arc<Mutex<(Option<Instant>, Option<Instant>)>>,
}

impl Actor for Clock {
    type Context = Context<Self>;
}

impl Handler<EventMsg> for Clock {
    type Result = ();
    fn handle(&mut self, msg: EventMsg, _: &mut Context<Self>) {
        if let Ok(mut t) = self.times.lock() {
            match msg.event {
                Event::Started { .. } => t.0 = Some(Instant::now()),
                Event::Finished { .. } => t.1 = Some(Instant::now()),
                _ => {}
            }
        }
    }
}

/// One measured configuration.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchRow {
    pub name: String,
    pub candidates: usize,
    pub evaluators: usize,
    pub in_flight: usize,
    pub latency_ms: u64,
    pub cost_ms: u64,
    pub wall_secs: f64,
}

/// Runs one search with the fake evaluator and the delayed instructor; wall time from the
/// Started to the Finished event (data loading excluded).
pub async fn measure(
    base: &Settings,
    name: &str,
    candidates: usize,
    evaluators: usize,
    in_flight: usize,
    latency: Duration,
    cost: Duration,
) -> Result<BenchRow, String> {
    let mut s = base.clone();
    s.search.budget = candidates;
    s.search.in_flight = in_flight;
    s.search.mode = ists::config::Mode::Cot;
    s.evaluators.devices = vec!["cpu".into(); evaluators];
    s.final_train.top_k = 0;
    let offline = OfflineInstructor::new(s.search.space, s.hyper_space(), s.search.seed).start();
    let instructor = DelayedInstructor::new(offline, latency).start();
    let clock = Clock::default();
    let times = clock.times.clone();
    let opts = SearchOptions {
        fake_cost: Some(cost),
        instructor: Some(instructor.recipient()),
        ..SearchOptions::default()
    }
    .subscribe(clock.start().recipient());
    let summary = run_search(s, opts, std::future::pending())
        .await
        .map_err(|e| e.to_string())?;
    if summary.evaluated != candidates {
        return Err(format!(
            "{name}: evaluated {} of {candidates}",
            summary.evaluated
        ));
    }
    let (a, b) = *times.lock().map_err(|e| e.to_string())?;
    let wall = match (a, b) {
        (Some(a), Some(b)) => (b - a).as_secs_f64(),
        _ => return Err(format!("{name}: missing start or finish event")),
    };
    Ok(BenchRow {
        name: name.into(),
        candidates,
        evaluators,
        in_flight,
        latency_ms: latency.as_millis() as u64,
        cost_ms: cost.as_millis() as u64,
        wall_secs: wall,
    })
}
