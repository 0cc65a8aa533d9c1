//! Daemon counters in the Prometheus text format: candidates evaluated, failures and rejections
//! by kind, evaluator queue depth and busy time, LLM requests, latency and tokens. Plain atomics
//! (no registry crate): the set is small and fixed, and rendering it is a few lines.

use crate::messages::{Complete, Event, LlmError, Reply};
use actix::prelude::*;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

#[derive(Default)]
pub struct Metrics {
    evaluated: AtomicU64,
    events: AtomicU64,
    failures: Mutex<BTreeMap<String, u64>>,
    rejections: Mutex<BTreeMap<String, u64>>,
    llm_requests: AtomicU64,
    llm_errors: AtomicU64,
    llm_latency_micros: AtomicU64,
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
}

fn bump(m: &Mutex<BTreeMap<String, u64>>, kind: &str) {
    let mut m = m.lock().unwrap_or_else(|p| p.into_inner());
    *m.entry(kind.to_string()).or_default() += 1;
}

/// A label value with Prometheus' escapes.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Gauges read at render time from elsewhere.
pub struct Gauges {
    pub queue_depth: usize,
    pub busy_seconds: f64,
    pub searches: Vec<(String, u64)>,
}

impl Metrics {
    /// Counts what an event says happened.
    pub fn observe(&self, event: &Event) {
        self.events.fetch_add(1, Ordering::Relaxed);
        match event {
            Event::Evaluated { status, .. } => {
                self.evaluated.fetch_add(1, Ordering::Relaxed);
                match status {
                    ists::train::EvalStatus::Diverged { .. } => bump(&self.failures, "diverged"),
                    ists::train::EvalStatus::TimedOut { .. } => bump(&self.failures, "timed_out"),
                    _ => {}
                }
            }
            Event::Failed {
                candidate, kind, ..
            } => {
                if candidate.is_some() {
                    self.evaluated.fetch_add(1, Ordering::Relaxed);
                }
                bump(&self.failures, kind);
            }
            Event::Rejected { kind, .. } => bump(&self.rejections, kind),
            _ => {}
        }
    }

    pub fn evaluated(&self) -> u64 {
        self.evaluated.load(Ordering::Relaxed)
    }

    fn observe_llm(&self, secs: f64, r: &Result<Reply, LlmError>) {
        self.llm_requests.fetch_add(1, Ordering::Relaxed);
        self.llm_latency_micros
            .fetch_add((secs * 1e6) as u64, Ordering::Relaxed);
        match r {
            Ok(reply) => {
                self.prompt_tokens
                    .fetch_add(reply.usage.prompt_tokens, Ordering::Relaxed);
                self.completion_tokens
                    .fetch_add(reply.usage.completion_tokens, Ordering::Relaxed);
            }
            Err(_) => {
                self.llm_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self, g: &Gauges) -> String {
        let mut out = String::new();
        let c = |v: &AtomicU64| v.load(Ordering::Relaxed);
        let mut counter = |name: &str, help: &str, v: String| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        };
        counter(
            "ists_candidates_evaluated_total",
            "Candidates evaluated (including failed evaluations).",
            c(&self.evaluated).to_string(),
        );
        counter(
            "ists_events_total",
            "Search events published.",
            c(&self.events).to_string(),
        );
        counter(
            "ists_evaluator_busy_seconds_total",
            "Time evaluator slots were held.",
            format!("{:.6}", g.busy_seconds),
        );
        counter(
            "ists_llm_requests_total",
            "Instructor requests.",
            c(&self.llm_requests).to_string(),
        );
        counter(
            "ists_llm_errors_total",
            "Instructor requests that failed.",
            c(&self.llm_errors).to_string(),
        );
        counter(
            "ists_llm_latency_seconds_total",
            "Summed instructor latency (divide by ists_llm_requests_total for the mean).",
            format!("{:.6}", c(&self.llm_latency_micros) as f64 / 1e6),
        );
        let _ = writeln!(
            out,
            "# HELP ists_llm_tokens_total Instructor tokens by kind.\n# TYPE ists_llm_tokens_total counter\nists_llm_tokens_total{{kind=\"prompt\"}} {}\nists_llm_tokens_total{{kind=\"completion\"}} {}",
            c(&self.prompt_tokens),
            c(&self.completion_tokens)
        );
        for (name, help, map) in [
            (
                "ists_failures_total",
                "Failed evaluations and abandoned proposals by kind.",
                &self.failures,
            ),
            (
                "ists_rejections_total",
                "Rejected instructor replies by kind.",
                &self.rejections,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            let m = map.lock().unwrap_or_else(|p| p.into_inner());
            for (k, v) in m.iter() {
                let _ = writeln!(out, "{name}{{kind=\"{}\"}} {v}", label(k));
            }
        }
        let _ = writeln!(
            out,
            "# HELP ists_eval_queue_depth Evaluations waiting for an evaluator slot.\n# TYPE ists_eval_queue_depth gauge\nists_eval_queue_depth {}",
            g.queue_depth
        );
        let _ = writeln!(
            out,
            "# HELP ists_searches Searches by status.\n# TYPE ists_searches gauge"
        );
        for (status, n) in &g.searches {
            let _ = writeln!(out, "ists_searches{{status=\"{}\"}} {n}", label(status));
        }
        out
    }
}

/// Forwards instructor requests and measures them: latency, tokens, errors. It wraps whatever
/// instructor a search uses, so no instructor needs to know about metrics.
pub struct MeteredInstructor {
    inner: Recipient<Complete>,
    metrics: Arc<Metrics>,
}

impl MeteredInstructor {
    pub fn new(inner: Recipient<Complete>, metrics: Arc<Metrics>) -> MeteredInstructor {
        MeteredInstructor { inner, metrics }
    }
}

impl Actor for MeteredInstructor {
    type Context = Context<Self>;
}

impl Handler<Complete> for MeteredInstructor {
    type Result = ResponseFuture<Result<Reply, LlmError>>;
    fn handle(&mut self, msg: Complete, _: &mut Context<Self>) -> Self::Result {
        let inner = self.inner.clone();
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let t0 = Instant::now();
            let r = inner
                .send(msg)
                .await
                .unwrap_or_else(|e| Err(LlmError::Connection(e.to_string())));
            metrics.observe_llm(t0.elapsed().as_secs_f64(), &r);
            r
        })
    }
}
