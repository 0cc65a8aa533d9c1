//! EvaluatorActor: runs the one-step-tuning proxy (and the final full training) for one device,
//! on its own `SyncArbiter` thread, so blocking tch work never runs on an async arbiter. The
//! dataset tensors are built on the worker thread, on first use. An evaluator fault (a tch
//! error, a panic inside libtorch) fails that candidate and stops the actor; the SyncArbiter
//! then builds a fresh one from the factory - that is the restart.
//!
//! Longer than the ~400 lines aimed at: the evaluator actor and the pool that routes to it share
//! the fault, cancel and fair-share rules, which are easier to check side by side.

use crate::eval::cancel::Cancel;
use crate::eval::fair::EvalGate;
use crate::messages::{EvalOutcome, Evaluate, FinalTrained, TrainFinal};
use actix::prelude::*;
use ists::data::Prepared;
use ists::ensemble::forecasts;
use ists::model::ModelConfig;
use ists::train::{
    proxy_run_until, train_full_resumable, EvalStatus, ProxyConfig, ProxyReport, TrainData,
};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What every evaluator of a search shares.
#[derive(Debug)]
pub struct EvalSetup {
    pub prepared: Arc<Prepared>,
    pub model: ModelConfig,
    pub proxy: ProxyConfig,
    pub threads: i32,
    /// Replaces the proxy by a sleep of this length and a score derived from the hash: for
    /// benchmarks of the actor system and for load tests, never for real searches.
    pub fake_cost: Option<Duration>,
    /// Fault injection for tests: this many evaluations fail (and restart the evaluator).
    pub inject_failures: Arc<AtomicUsize>,
}

pub struct EvaluatorActor {
    device: tch::Device,
    setup: Arc<EvalSetup>,
    data: Option<TrainData>,
    /// The rung-0 proxy's nodes where `proxy.node_share` is below 1 (built on first use).
    subset: Option<TrainData>,
}

impl EvaluatorActor {
    pub fn new(device: tch::Device, setup: Arc<EvalSetup>) -> EvaluatorActor {
        EvaluatorActor {
            device,
            setup,
            data: None,
            subset: None,
        }
    }

    /// The whole graph's data (final trainings, promotions).
    fn data(&mut self) -> Result<&TrainData, String> {
        self.data_for(true)
    }

    /// The data an evaluation trains on: the rung-0 proxy's node subset (`proxy.node_share`
    /// below 1, [`ists::train::proxy_subset`]) when `promotion` is false, else the whole graph.
    /// Each is built on first use, on the worker thread.
    fn data_for(&mut self, promotion: bool) -> Result<&TrainData, String> {
        let whole = promotion || self.setup.proxy.node_share >= 1.0;
        let slot = if whole {
            &mut self.data
        } else {
            &mut self.subset
        };
        if slot.is_none() {
            tch::set_num_threads(self.setup.threads.max(1));
            let part = match whole {
                true => None,
                false => Some(
                    ists::train::proxy_subset(&self.setup.prepared, &self.setup.proxy)
                        .map_err(|e| e.to_string())?
                        .ok_or("proxy.node_share below 1 gave no subset")?,
                ),
            };
            let prepared = part.as_ref().unwrap_or(&self.setup.prepared);
            *slot = Some(TrainData::new(prepared, self.device).map_err(|e| e.to_string())?);
        }
        slot.as_ref().ok_or_else(|| "no data".to_string())
    }

    /// An injected fault. On a GPU it is a real one (`provoke_oom`): the CUDA caching
    /// allocator's own out-of-memory error goes through `fault_kind` and the restart, as a
    /// candidate too big for the card would (`scripts/gpu-check.sh` relies on it).
    fn injected_fault(&self) -> (String, String) {
        if self.device.is_cuda() {
            return match provoke_oom(self.device) {
                Some((kind, message)) => (kind.to_string(), message),
                None => (
                    "injected".into(),
                    "a 4 TiB allocation succeeded on the device; no fault raised".into(),
                ),
            };
        }
        (
            "injected".into(),
            "fault injected by evaluators.inject_failures".into(),
        )
    }

    /// The fake evaluation; `None` when cancelled while it "trains" (it sleeps in slices, so a
    /// cancel stops it as promptly as a real training step would).
    fn fake(
        &self,
        arch: &ists::space::Arch,
        cost: Duration,
        steps: Option<usize>,
        cancel: Option<&Cancel>,
    ) -> Option<ProxyReport> {
        let until = std::time::Instant::now() + cost;
        loop {
            if cancel.is_some_and(Cancel::is_set) {
                return None;
            }
            let left = until.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            std::thread::sleep(left.min(Duration::from_millis(50)));
        }
        let h = u64::from_str_radix(&arch.hash(), 16).unwrap_or(0);
        // A promotion (more steps) scores a little better, as longer training does.
        let base = self.setup.proxy.steps.max(1);
        let steps = steps.unwrap_or(base);
        let gain = 0.01 * (steps as f64 / base as f64).ln();
        Some(ProxyReport {
            status: EvalStatus::Ok,
            val_mae: Some(1.0 + (h % 10_000) as f64 / 10_000.0 - gain),
            first_loss: 1.0,
            last_loss: 1.0,
            steps,
            params: 0,
            seconds: cost.as_secs_f64(),
        })
    }
}

impl Actor for EvaluatorActor {
    type Context = SyncContext<Self>;
}

/// The kind of an evaluator fault, for the failure counters: a CUDA out-of-memory is the
/// candidate's (too big for the card), other device errors are the device's.
pub fn fault_kind(message: &str) -> &'static str {
    let m = message.to_ascii_lowercase();
    if m.contains("out of memory") {
        "cuda_oom"
    } else if m.contains("cuda")
        || m.contains("cublas")
        || m.contains("cudnn")
        || m.contains("device-side")
    {
        "device_error"
    } else {
        "eval_error"
    }
}

/// Asks `device` for 4 TiB (2^40 floats), more than any card holds, and classifies the error
/// as evaluator faults are classified: a real out-of-memory, for fault injection and for
/// `ists bench gpu`. `None` when the allocation succeeded.
pub fn provoke_oom(device: tch::Device) -> Option<(&'static str, String)> {
    match tch::Tensor::f_empty([1i64 << 40], (tch::Kind::Float, device)) {
        Err(e) => {
            let message = e.to_string();
            Some((fault_kind(&message), message))
        }
        Ok(_) => None,
    }
}

fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into())
}

#[cfg(test)]
mod tests {
    #[test]
    fn faults_are_classified() {
        use super::fault_kind;
        assert_eq!(
            fault_kind("CUDA out of memory. Tried to allocate 2.00 GiB"),
            "cuda_oom"
        );
        assert_eq!(
            fault_kind("CUDA error: an illegal memory access was encountered"),
            "device_error"
        );
        assert_eq!(fault_kind("shape mismatch"), "eval_error");
    }

    /// With `proxy.node_share` below 1, a rung-0 evaluation trains on the share's nodes
    /// (exactly `proxy_subset`'s), a promotion on the whole graph.
    #[actix::test]
    async fn rung_zero_trains_on_the_node_share_and_promotions_on_the_whole_graph() {
        use super::*;
        use ists::data::{Graph, PrepareConfig, RawDataset, Signal};
        use ists::space::{Arch, SpaceKind};
        let (t, n) = (400, 6);
        let values = (0..t * n)
            .map(|i| 50.0 + 10.0 * ((i / n) as f32 / 48.0 + (i % n) as f32 * 0.3).sin())
            .collect();
        let raw = RawDataset {
            name: "wave".into(),
            signal: Signal { values, t, n, f: 1 },
            graph: Graph {
                n,
                adj: vec![1.0; n * n],
                node_ids: None,
            },
            signal_path: "mem".into(),
            graph_path: "mem".into(),
            steps_per_day: 288,
            null_value: None,
            first_weekday: None,
        };
        let prepared = ists::data::prepare(&raw, &PrepareConfig::default()).unwrap();
        let model = ModelConfig {
            hidden: 8,
            end_hidden: 16,
            ..ModelConfig::default()
        };
        let proxy = ProxyConfig {
            steps: 3,
            batch_size: 8,
            val_samples: 16,
            node_share: 0.5,
            ..ProxyConfig::default()
        };
        let arch = Arch::from_json(
            r#"{"edges":[{"from":0,"to":3,"op":"STT","spatial":"mix_gc","temporal":"gdcc"}]}"#,
            SpaceKind::Ists,
        )
        .unwrap();
        // The expected scores are computed on this thread with the actor's thread count
        // (`threads: 1` below): libtorch's sums differ in the last bits between one and
        // several intra-op threads, and the comparison is exact.
        tch::set_num_threads(1);
        let score = |p: &Prepared, steps: usize| {
            let cfg = ProxyConfig {
                steps,
                ..proxy.clone()
            };
            ists::train::proxy_eval(
                &arch,
                &TrainData::new(p, tch::Device::Cpu).unwrap(),
                &model,
                &cfg,
            )
            .unwrap()
            .val_mae
        };
        let part = ists::train::proxy_subset(&prepared, &proxy)
            .unwrap()
            .unwrap();
        let (on_part, on_whole) = (score(&part, 3), score(&prepared, 5));
        // Not what the whole graph gives at rung 0's steps: the share is what changed.
        assert_ne!(on_part, score(&prepared, 3));
        let setup = Arc::new(EvalSetup {
            prepared: Arc::new(prepared),
            model: model.clone(),
            proxy: proxy.clone(),
            threads: 1,
            fake_cost: None,
            inject_failures: Arc::new(AtomicUsize::new(0)),
        });
        let addr = SyncArbiter::start(1, move || {
            EvaluatorActor::new(tch::Device::Cpu, setup.clone())
        });
        let ask = |steps| Evaluate {
            candidate: 0,
            arch: arch.clone(),
            steps,
        };
        let rung0 = addr.send(ask(None)).await.unwrap();
        let promoted = addr.send(ask(Some(5))).await.unwrap();
        let val = |o: EvalOutcome| match o {
            EvalOutcome::Report(r) => r.val_mae,
            other => panic!("{other:?}"),
        };
        assert_eq!(val(rung0), on_part);
        assert_eq!(val(promoted), on_whole);
    }
}

/// An evaluation under the daemon: the candidate, the search's cancellation (checked at every
/// training step) and the largest estimated training memory accepted.
#[derive(Message, Debug)]
#[rtype(result = "EvalOutcome")]
pub struct EvaluateGated {
    pub eval: Evaluate,
    pub cancel: Cancel,
    pub max_bytes: Option<u64>,
}

/// The outcome of an evaluation stopped by a cancel: a failure of no candidate, which the
/// daemon neither stores nor keeps in the journal it resumes from.
pub fn cancelled() -> EvalOutcome {
    EvalOutcome::Failed {
        kind: CANCELLED.into(),
        message: "the search was cancelled".into(),
    }
}

/// The failure kind of a cancelled evaluation.
pub const CANCELLED: &str = "cancelled";

impl EvaluatorActor {
    fn evaluate(
        &mut self,
        msg: Evaluate,
        cancel: Option<&Cancel>,
        max_bytes: Option<u64>,
        ctx: &mut SyncContext<Self>,
    ) -> EvalOutcome {
        if cancel.is_some_and(Cancel::is_set) {
            return cancelled();
        }
        let injected = self
            .setup
            .inject_failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if injected {
            let (kind, message) = self.injected_fault();
            tracing::warn!(candidate = msg.candidate, %kind, detail = %message, "injected fault; restarting");
            ctx.stop();
            return EvalOutcome::Failed { kind, message };
        }
        if let Some(cost) = self.setup.fake_cost {
            return match self.fake(&msg.arch, cost, msg.steps, cancel) {
                Some(r) => EvalOutcome::Report(r),
                None => cancelled(),
            };
        }
        let setup = self.setup.clone();
        let never = AtomicBool::new(false);
        let stop = cancel.map_or(&never, Cancel::flag);
        let result = match self.data_for(msg.steps.is_some()) {
            Err(e) => Err(("data".to_string(), e)),
            Ok(data) => {
                let proxy = ProxyConfig {
                    steps: msg.steps.unwrap_or(setup.proxy.steps),
                    ..setup.proxy.clone()
                };
                if let Some(report) = too_big(&msg.arch, data, &setup.model, &proxy, max_bytes) {
                    return EvalOutcome::Report(report);
                }
                match catch_unwind(AssertUnwindSafe(|| {
                    proxy_run_until(&msg.arch, data, &setup.model, &proxy, &mut |_| {}, stop)
                })) {
                    Ok(Ok(r)) => Ok(r),
                    Ok(Err(ists::Error::Cancelled)) => return cancelled(),
                    Ok(Err(e)) => Err((fault_kind(&e.to_string()).to_string(), e.to_string())),
                    Err(p) => Err(("panic".to_string(), panic_text(p))),
                }
            }
        };
        match result {
            Ok(r) => EvalOutcome::Report(r),
            Err((kind, message)) => {
                tracing::warn!(candidate = msg.candidate, %kind, detail = %message, "evaluator fault; restarting");
                ctx.stop();
                EvalOutcome::Failed { kind, message }
            }
        }
    }
}

/// A report refusing `arch` when its estimated training memory exceeds `max_bytes`: the
/// candidate's own failure (recorded, not retried, the evaluator kept), found before anything
/// is allocated. Scoring runs in batches of 128 (`proxy_run`'s validation pass).
fn too_big(
    arch: &ists::space::Arch,
    data: &TrainData,
    model: &ModelConfig,
    proxy: &ProxyConfig,
    max_bytes: Option<u64>,
) -> Option<ProxyReport> {
    let max = max_bytes?;
    let need = ists::footprint::training_bytes(arch, data.shape, model, proxy.batch_size, 128);
    (need > u128::from(max)).then(|| ProxyReport {
        status: EvalStatus::Failed {
            kind: "too_big".into(),
            message: format!(
                "estimated training memory of {need} bytes exceeds daemon.max_candidate_bytes ({max})"
            ),
        },
        val_mae: None,
        first_loss: 0.0,
        last_loss: 0.0,
        steps: 0,
        params: 0,
        seconds: 0.0,
    })
}

impl Handler<Evaluate> for EvaluatorActor {
    type Result = MessageResult<Evaluate>;
    fn handle(&mut self, msg: Evaluate, ctx: &mut SyncContext<Self>) -> Self::Result {
        MessageResult(self.evaluate(msg, None, None, ctx))
    }
}

impl Handler<EvaluateGated> for EvaluatorActor {
    type Result = MessageResult<EvaluateGated>;
    fn handle(&mut self, msg: EvaluateGated, ctx: &mut SyncContext<Self>) -> Self::Result {
        MessageResult(self.evaluate(msg.eval, Some(&msg.cancel), msg.max_bytes, ctx))
    }
}

impl Handler<TrainFinal> for EvaluatorActor {
    type Result = Result<FinalTrained, String>;
    fn handle(&mut self, mut msg: TrainFinal, _: &mut SyncContext<Self>) -> Self::Result {
        let setup = self.setup.clone();
        let data = self.data()?;
        if let Some(report) = msg.kept.take() {
            // Kept from an earlier session: only the forecasts are computed, from the model
            // that session exported.
            let dir = msg
                .export
                .as_ref()
                .ok_or("a kept final training without its exported model")?;
            let loaded = catch_unwind(AssertUnwindSafe(|| ists::export::load(dir, data)))
                .map_err(|p| format!("panic: {}", panic_text(p)))
                .and_then(|r| r.map_err(|e| e.to_string()));
            let (trained, _, _) =
                loaded.map_err(|e| format!("loading the kept model {}: {e}", dir.display()))?;
            let forecasts = member_forecasts(&msg, &report, &trained, data);
            return Ok(FinalTrained { report, forecasts });
        }
        let model = msg.model.as_ref().unwrap_or(&setup.model);
        let never = AtomicBool::new(false);
        let stop = msg.cancel.as_ref().map_or(&never, Cancel::flag);
        let mut log = |e: &ists::train::EpochLog| {
            tracing::info!(
                candidate = msg.candidate,
                epoch = e.epoch,
                train_loss = e.train_loss,
                val_mae = e.val_mae,
                val_rmse = e.val_rmse,
                "final training"
            );
        };
        match catch_unwind(AssertUnwindSafe(|| {
            train_full_resumable(
                &msg.arch,
                data,
                model,
                &msg.config,
                &mut log,
                stop,
                msg.checkpoint.as_ref(),
            )
        })) {
            Ok(Ok((report, trained))) => {
                if let Some(dir) = &msg.export {
                    ists::export::save(dir, &trained, &msg.arch, data, model)
                        .map_err(|e| format!("exporting to {}: {e}", dir.display()))?;
                }
                let forecasts = member_forecasts(&msg, &report, &trained, data);
                Ok(FinalTrained { report, forecasts })
            }
            Ok(Err(e)) => Err(e.to_string()),
            Err(p) => Err(format!("panic: {}", panic_text(p))),
        }
    }
}

/// The best weights' forecasts, when asked for and there are best weights (an epoch
/// finished). A failure here costs the ensemble a member, not the seed.
fn member_forecasts(
    msg: &TrainFinal,
    report: &ists::train::TrainReport,
    trained: &ists::train::Trained,
    data: &ists::train::TrainData,
) -> Option<ists::ensemble::Forecasts> {
    if !msg.forecasts || report.best_epoch == 0 {
        return None;
    }
    match catch_unwind(AssertUnwindSafe(|| {
        forecasts(trained, data, msg.config.eval_batch_size)
    })) {
        Ok(Ok(f)) => Some(f),
        Ok(Err(e)) => {
            tracing::error!(candidate = msg.candidate, "forecasts for the ensemble: {e}");
            None
        }
        Err(p) => {
            tracing::error!(
                candidate = msg.candidate,
                "forecasts for the ensemble: panic: {}",
                panic_text(p)
            );
            None
        }
    }
}

/// The evaluators of a search; candidates go to the least-loaded one. Workers are
/// `Recipient<Evaluate>`s, so local evaluator actors and remote back ends (Ray) mix freely;
/// final training always runs on the local evaluators. Under a daemon, every evaluation first
/// waits for a slot of the daemon's fair share (`gate`).
#[derive(Clone)]
pub struct EvaluatorPool {
    workers: Vec<(Recipient<Evaluate>, Arc<AtomicUsize>)>,
    trainers: Vec<Addr<EvaluatorActor>>,
    /// Whether `workers` is a remote back end (else worker `i` is `trainers[i]`).
    remote: bool,
    capacity: usize,
    gate: Option<EvalGate>,
}

impl EvaluatorPool {
    /// One SyncArbiter (one thread) per device.
    pub fn start(devices: &[tch::Device], setup: Arc<EvalSetup>) -> EvaluatorPool {
        let trainers: Vec<Addr<EvaluatorActor>> = devices
            .iter()
            .map(|&d| {
                let s = setup.clone();
                SyncArbiter::start(1, move || EvaluatorActor::new(d, s.clone()))
            })
            .collect();
        let workers = trainers
            .iter()
            .map(|a| (a.clone().recipient(), Arc::new(AtomicUsize::new(0))))
            .collect();
        EvaluatorPool {
            workers,
            capacity: trainers.len(),
            trainers,
            remote: false,
            gate: None,
        }
    }

    /// Candidates go to `remote` (which runs up to `capacity` at once); the local evaluators
    /// only train the final models.
    pub fn with_remote(mut self, remote: Recipient<Evaluate>, capacity: usize) -> EvaluatorPool {
        self.workers = vec![(remote, Arc::new(AtomicUsize::new(0)))];
        self.remote = true;
        self.capacity = capacity.max(1);
        self
    }

    /// Makes every evaluation wait for a slot of a shared scheduler first.
    pub fn with_gate(mut self, gate: Option<EvalGate>) -> EvaluatorPool {
        self.gate = gate;
        self
    }

    async fn permit(&self) -> Option<crate::eval::fair::Permit> {
        match &self.gate {
            Some(g) => Some(g.scheduler.acquire(&g.search).await),
            None => None,
        }
    }

    /// How many evaluations can run at once.
    pub fn len(&self) -> usize {
        self.capacity
    }

    pub fn is_empty(&self) -> bool {
        self.capacity == 0
    }

    /// Evaluates on the least-loaded worker. A mailbox error (worker gone) is a failure.
    /// Under a gate, a cancel ends the wait for a slot at once and a local training at its
    /// next step; a remote one is abandoned (its back end's own timeout ends it).
    pub async fn evaluate(&self, msg: Evaluate) -> EvalOutcome {
        let _permit = match &self.gate {
            Some(g) => {
                if g.cancel.is_set() {
                    return cancelled();
                }
                tokio::select! {
                    p = g.scheduler.acquire(&g.search) => Some(p),
                    _ = g.cancel.cancelled() => return cancelled(),
                }
            }
            None => None,
        };
        let Some((i, (addr, load))) = self
            .workers
            .iter()
            .enumerate()
            .min_by_key(|(_, (_, load))| load.load(Ordering::SeqCst))
        else {
            return EvalOutcome::Failed {
                kind: "no_evaluator".into(),
                message: "the pool has no evaluator".into(),
            };
        };
        load.fetch_add(1, Ordering::SeqCst);
        let r = match (&self.gate, self.trainers.get(i).filter(|_| !self.remote)) {
            (Some(g), Some(local)) => {
                local
                    .send(EvaluateGated {
                        eval: msg,
                        cancel: g.cancel.clone(),
                        max_bytes: g.max_candidate_bytes,
                    })
                    .await
            }
            (Some(g), None) => tokio::select! {
                r = addr.send(msg) => r,
                _ = g.cancel.cancelled() => Ok(cancelled()),
            },
            (None, _) => addr.send(msg).await,
        };
        load.fetch_sub(1, Ordering::SeqCst);
        r.unwrap_or_else(|e| EvalOutcome::Failed {
            kind: "mailbox".into(),
            message: e.to_string(),
        })
    }

    pub async fn train_final(&self, mut msg: TrainFinal) -> Result<FinalTrained, String> {
        if let Some(g) = &self.gate {
            msg.cancel = Some(g.cancel.clone());
        }
        let _permit = self.permit().await;
        let addr = self
            .trainers
            .first()
            .ok_or_else(|| "no local evaluator for final training".to_string())?;
        addr.send(msg).await.map_err(|e| e.to_string())?
    }
}
