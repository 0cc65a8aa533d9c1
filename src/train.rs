//! Training: batches cut from prepared data, masked-MAE loss on de-normalized values, Adam with
//! weight decay and gradient clipping, early stopping on validation, the one-step-tuning proxy,
//! and test metrics. Everything is seeded; on CPU with one thread, runs are bit-for-bit repeatable.

use crate::checkpoint::{Checkpoint, StateRef};
use crate::data::Prepared;
use crate::error::{Error, Result};
use crate::metrics::{masked_mae, masked_mse, masked_rmse, MetricsTable, Scores};
use crate::model::{graph_supports, param_count, ModelConfig, ModelShape, StModel};
use crate::ops::{GraphSupports, TResult};
use crate::space::{Arch, ArchSpec};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use tch::{nn, Device, Tensor};

/// Prepared data moved into tensors, with the graph supports the operators need.
#[derive(Debug)]
pub struct TrainData {
    /// `[T, N, F]`, z-scored inputs (plus time of day).
    inputs: Tensor,
    /// `[T, N]`, raw target values.
    target: Tensor,
    pub train: Range<usize>,
    pub val: Range<usize>,
    pub test: Range<usize>,
    pub mean: f64,
    pub std: f64,
    pub null: Option<f64>,
    pub shape: ModelShape,
    pub graph: GraphSupports,
    pub device: Device,
    pub name: String,
}

impl TrainData {
    pub fn new(p: &Prepared, device: Device) -> Result<TrainData> {
        let (t, n, f) = (p.t as i64, p.n as i64, p.in_features as i64);
        let inputs = Tensor::f_from_slice(&p.inputs)?
            .f_reshape([t, n, f])?
            .f_to_device(device)?;
        let target = Tensor::f_from_slice(&p.target)?
            .f_reshape([t, n])?
            .f_to_device(device)?;
        Ok(TrainData {
            inputs,
            target,
            train: p.splits.train.clone(),
            val: p.splits.val.clone(),
            test: p.splits.test.clone(),
            mean: p.scaler.mean as f64,
            std: p.scaler.std as f64,
            null: p.null_value.map(|v| v as f64),
            shape: ModelShape::of(p),
            graph: graph_supports(&p.adj, p.n, device)?,
            device,
            name: p.name.clone(),
        })
    }

    /// The windows a refit trains on ([`TrainConfig::refit`]): the training and validation
    /// windows together, everything before the test.
    pub fn refit_windows(&self) -> Range<usize> {
        self.train.start..self.val.end.max(self.train.end)
    }

    /// The samples starting at `starts`: inputs `[B, T_in, N, F]` and raw targets `[B, H, N]`.
    pub fn batch(&self, starts: &[i64]) -> TResult<(Tensor, Tensor)> {
        let tin = self.shape.input_len;
        let tout = self.shape.horizon;
        let idx = Tensor::f_from_slice(starts)?.f_to_device(self.device)?;
        // `unfold` makes a view of every window without copying; only the batch is gathered.
        let x = self
            .inputs
            .f_unfold(0, tin, 1)? // [S, N, F, Tin]
            .f_index_select(0, &idx)?
            .f_permute([0, 3, 1, 2])?;
        let total = self.target.size()[0];
        let y = self
            .target
            .f_narrow(0, tin, total - tin)?
            .f_unfold(0, tout, 1)? // [S, N, Tout]
            .f_index_select(0, &idx)?
            .f_permute([0, 2, 1])?;
        Ok((x, y))
    }

    /// De-normalized forecast `[B, H, N]` from the model's output `[B, H, N, 1]`.
    fn denorm(&self, out: &Tensor) -> TResult<Tensor> {
        out.f_squeeze_dim(-1)?
            .f_mul_scalar(self.std)?
            .f_add_scalar(self.mean)
    }
}

/// Adam (with L2 weight decay, as torch.optim.Adam) and global-norm gradient clipping, written
/// with tch's fallible ops so that a bad step is an error, not a panic. Crate-visible so the
/// GRU baseline (`crate::gru`) trains with the very same optimizer.
pub(crate) struct Adam {
    params: Vec<Tensor>,
    pub(crate) m: Vec<Tensor>,
    pub(crate) v: Vec<Tensor>,
    /// Steps taken (Adam's bias corrections depend on it).
    pub(crate) t: i32,
    pub(crate) lr: f64,
    wd: f64,
    clip: f64,
}

impl Adam {
    const B1: f64 = 0.9;
    const B2: f64 = 0.999;
    const EPS: f64 = 1e-8;

    pub(crate) fn new(vs: &nn::VarStore, lr: f64, wd: f64, clip: f64) -> TResult<Adam> {
        let params = vs.trainable_variables();
        let m = params
            .iter()
            .map(|p| p.f_zeros_like())
            .collect::<TResult<Vec<_>>>()?;
        let v = params
            .iter()
            .map(|p| p.f_zeros_like())
            .collect::<TResult<Vec<_>>>()?;
        Ok(Adam {
            params,
            m,
            v,
            t: 0,
            lr,
            wd,
            clip,
        })
    }

    pub(crate) fn zero_grad(&mut self) -> TResult<()> {
        for p in &self.params {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.f_zero_()?;
            }
        }
        Ok(())
    }

    /// One Adam step, written like torch.optim.Adam's single-tensor path: ten tensor ops per
    /// parameter (lerp for both moments, one fused addcdiv for the update), and one read back
    /// from the device per step for the clipping norm - a read per parameter would stall a GPU
    /// dozens of times a step.
    pub(crate) fn step(&mut self) -> TResult<()> {
        tch::no_grad(|| -> TResult<()> {
            self.t += 1;
            let grads: Vec<Tensor> = self.params.iter().map(|p| p.grad()).collect();
            let mut scale = 1.0;
            if self.clip > 0.0 {
                let norms = grads
                    .iter()
                    .filter(|g| g.defined())
                    .map(|g| g.f_norm())
                    .collect::<TResult<Vec<_>>>()?;
                if !norms.is_empty() {
                    let norm = Tensor::f_stack(&norms, 0)?.f_norm()?.f_double_value(&[])?;
                    if norm > self.clip {
                        scale = self.clip / (norm + 1e-6);
                    }
                }
            }
            let step = self.lr / (1.0 - Self::B1.powi(self.t));
            let bc2_sqrt = (1.0 - Self::B2.powi(self.t)).sqrt();
            for (i, grad) in grads.iter().enumerate() {
                if !grad.defined() {
                    continue;
                }
                let p = &self.params[i];
                // g = scale * grad + wd * p (L2 decay, as torch.optim.Adam's weight_decay).
                let mut g = p.f_mul_scalar(self.wd)?;
                if scale == 1.0 {
                    let _ = g.f_add_(grad)?;
                } else {
                    let _ = g.f_add_(&grad.f_mul_scalar(scale)?)?;
                }
                let _ = self.m[i].f_lerp_(&g, 1.0 - Self::B1)?;
                let _ = g.f_square_()?;
                let _ = self.v[i].f_lerp_(&g, 1.0 - Self::B2)?;
                // p -= step * m / (sqrt(v) / sqrt(bc2) + eps), as p += m / denom with the
                // negative step folded into denom (tch's addcdiv_ has no value argument).
                let mut denom = self.v[i].f_sqrt()?;
                let _ = denom.f_div_scalar_(bc2_sqrt)?;
                let _ = denom.f_add_scalar_(Self::EPS)?;
                let _ = denom.f_mul_scalar_(-1.0 / step)?;
                let _ = p.shallow_clone().f_addcdiv_(&self.m[i], &denom)?;
            }
            Ok(())
        })
    }
}

/// How an evaluation ended. Divergence and timeouts are results, not errors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum EvalStatus {
    Ok,
    Diverged {
        step: usize,
        loss: f64,
    },
    TimedOut {
        step: usize,
        seconds: f64,
    },
    /// The evaluator itself failed (not the architecture); set by the search, not the proxy.
    Failed {
        kind: String,
        message: String,
    },
}

/// The one-step-tuning proxy: a short fixed training budget, then validation masked MAE.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyConfig {
    /// Optimizer steps of training.
    pub steps: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub weight_decay: f64,
    /// Global gradient-norm clip (0 = off).
    pub clip: f64,
    /// Validation samples scored, evenly spread over the validation split (0 = all).
    pub val_samples: usize,
    /// Wall-clock limit of one evaluation, seconds (0 = none).
    pub max_seconds: f64,
    pub seed: u64,
    /// Steps of linear learning-rate warm-up from lr/warmup to lr (0 = none). Short runs with
    /// a full learning rate from step one mostly measure how fast a model starts learning.
    pub warmup: usize,
    /// The share of the graph's nodes a search's rung-0 proxy trains and is scored on: 1 is
    /// all of them; below 1, a fixed random subset of that share ([`proxy_nodes`], seeded by
    /// `seed`), the same for every candidate. Promotions to higher rungs and final trainings
    /// always use the whole graph. A step on a quarter of a large graph costs a fraction of
    /// one on all of it, so `node_share = 0.25` with four times the `steps` is the fidelity
    /// study's `subset4x` proxy, which ranks METR-LA week's designs at least as well as the
    /// whole-graph proxy at under a third of its cost (BENCHMARKS.md). On small graphs
    /// (tens of nodes) the saving is gone. Step budgets (`search.budget_steps`) count its
    /// steps as whole-graph ones; compare node shares under `search.budget_seconds`.
    pub node_share: f64,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            steps: 40,
            batch_size: 32,
            lr: 2e-3,
            weight_decay: 1e-4,
            clip: 5.0,
            val_samples: 256,
            max_seconds: 0.0,
            seed: 1,
            warmup: 0,
            node_share: 1.0,
        }
    }
}

/// The nodes a proxy with `node_share` below 1 trains on: `share` of `n` (rounded down, at
/// least 2 and at most `n`), drawn without replacement from a ChaCha stream seeded by `seed`,
/// in ascending order. `None` at a share of 1 or more (all nodes). The fidelity study's
/// `subset4x` proxy draws its quarter with this too, so a search proxy with
/// `node_share = 0.25` trains on exactly the nodes that study scored.
pub fn proxy_nodes(n: usize, share: f64, seed: u64) -> Option<Vec<usize>> {
    if share >= 1.0 {
        return None;
    }
    let mut nodes: Vec<usize> = (0..n).collect();
    nodes.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    nodes.truncate(((n as f64 * share) as usize).max(2).min(n));
    nodes.sort_unstable();
    Some(nodes)
}

/// The data a rung-0 proxy of `cfg` trains on: `None` where it is the whole of `prepared`
/// (`node_share` 1), else `prepared` restricted to [`proxy_nodes`].
pub fn proxy_subset(prepared: &Prepared, cfg: &ProxyConfig) -> Result<Option<Prepared>> {
    match proxy_nodes(prepared.n, cfg.node_share, cfg.seed) {
        None => Ok(None),
        Some(nodes) => Ok(Some(prepared.subset_nodes(&nodes)?)),
    }
}

/// What the proxy measured for one architecture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProxyReport {
    pub status: EvalStatus,
    /// Validation masked MAE in data units (None when the run did not finish).
    pub val_mae: Option<f64>,
    /// Training loss of the first and last step.
    pub first_loss: f64,
    pub last_loss: f64,
    pub steps: usize,
    pub params: i64,
    pub seconds: f64,
}

/// Full training of the final model.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    /// Adam's L2 decay. Default 1e-2, chosen on validation on chickenpox and METR-LA week
    /// (BENCHMARKS.md, "Weight decay, for the default"); the proxy keeps its own.
    pub weight_decay: f64,
    pub clip: f64,
    /// Epochs without validation improvement before stopping.
    pub patience: usize,
    /// Caps the batches of one epoch (0 = the whole training split).
    pub max_batches_per_epoch: usize,
    pub eval_batch_size: usize,
    pub seed: u64,
    /// How the learning rate moves after the warm-up: `constant`, `cosine` (down to
    /// `lr * final_lr_ratio` at the last planned epoch) or `step` (times `gamma` every
    /// `step_epochs` epochs).
    pub schedule: Schedule,
    /// Epochs of linear warm-up from `lr / warmup_epochs`-th steps to `lr` (0 = none).
    pub warmup_epochs: usize,
    /// Cosine: the last learning rate as a share of `lr` (0..=1).
    pub final_lr_ratio: f64,
    /// Step decay: epochs between decays and the factor (0 < gamma <= 1).
    pub step_epochs: usize,
    pub gamma: f64,
    /// What the training minimizes and the epoch is chosen on: `mae` (masked MAE, Graph
    /// WaveNet's loss; the default) or `mse` (masked squared error, T-GCN's loss, for
    /// protocols scored by RMSE; the epoch is then chosen on validation RMSE).
    pub loss: Loss,
    /// After early stopping has chosen the best epoch on validation, train a fresh model
    /// (same seed, same schedule) on the training and validation windows together for that
    /// many epochs, and hand back that model: the validation period, the most recent data
    /// before the test, is then learned from too, as protocols without a validation split
    /// (T-GCN's) train on everything before the test. The report keeps the first training's
    /// validation metrics (the refitted model has seen those windows) and its test metrics
    /// beside the refitted ones ([`TrainReport::refit`]). Nothing is chosen on test.
    pub refit: bool,
    /// Checkpoint averaging: with `k >= 2`, the weights of the `k` best epochs by the
    /// validation criterion are averaged at the end of training, and the average is kept when
    /// its own validation score beats the best epoch's (a choice made on validation, never on
    /// test; [`TrainReport::averaged`] says which). Averaging neighbouring solutions, as
    /// NMT's checkpoint averaging and SWA do, smooths an epoch-to-epoch noisy validation
    /// curve. 0 (the default) or 1: the best epoch's weights, as before. With `refit`, the
    /// refit still trains a fresh model and hands that back. Design trainings only: the GRU
    /// baseline keeps its best epoch.
    pub average_top: usize,
}

/// The training loss of a full training. The proxy always trains on MAE: a search ranks its
/// candidates by validation MAE whatever its final training minimizes. The final trainings
/// themselves (epoch, seed, and among `final.top_k` candidates) are chosen by this loss's
/// metric ([`Loss::criterion`], [`Loss::score`]).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Loss {
    #[default]
    Mae,
    Mse,
}

impl Loss {
    /// The differentiable loss of de-normalized forecasts against targets.
    pub fn of(self, pred: &Tensor, target: &Tensor, null: Option<f64>) -> TResult<Tensor> {
        match self {
            Loss::Mae => masked_mae(pred, target, null),
            Loss::Mse => masked_mse(pred, target, null),
        }
    }

    /// The validation score the epoch is chosen on (lower is better): the loss's own metric
    /// in the data's units (MAE, or RMSE for `mse`), read off an epoch's log.
    pub fn criterion(self, log: &EpochLog) -> f64 {
        match (self, log.val_rmse) {
            (Loss::Mse, Some(rmse)) => rmse,
            _ => log.val_mae,
        }
    }

    /// The validation RMSE an epoch's log records: only when it is the criterion, so the logs
    /// of MAE trainings (events, stored reports) stay as they were.
    fn val_rmse(self, pred: &Tensor, target: &Tensor, null: Option<f64>) -> TResult<Option<f64>> {
        match self {
            Loss::Mae => Ok(None),
            Loss::Mse => Ok(Some(masked_rmse(pred, target, null)?.f_double_value(&[])?)),
        }
    }

    /// The same criterion read off a metrics row (MAE, or RMSE for `mse`): how a search
    /// compares finished trainings, seeds and candidates alike, by what chose their epochs.
    pub fn score(self, s: &Scores) -> f64 {
        match self {
            Loss::Mae => s.mae,
            Loss::Mse => s.rmse,
        }
    }

    /// The validation metric's name (`MAE`, `RMSE`), for progress lines.
    pub fn metric(self) -> &'static str {
        match self {
            Loss::Mae => "MAE",
            Loss::Mse => "RMSE",
        }
    }
}

/// The learning-rate schedule of a full training.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    #[default]
    Constant,
    Cosine,
    Step,
}

impl TrainConfig {
    /// The learning rate at optimizer step `step` (0-based) of a training planned for `epochs`
    /// epochs of `per_epoch` steps: a linear warm-up over the first `warmup_epochs` epochs,
    /// then the schedule. Early stopping only ends the run sooner; the curve is the planned one.
    pub fn lr_at(&self, step: usize, per_epoch: usize) -> f64 {
        let per_epoch = per_epoch.max(1);
        let warm = self.warmup_epochs.saturating_mul(per_epoch);
        if step < warm {
            return self.lr * (step + 1) as f64 / warm as f64;
        }
        let total = self.epochs.saturating_mul(per_epoch).max(warm + 1);
        match self.schedule {
            Schedule::Constant => self.lr,
            Schedule::Cosine => {
                let p = ((step - warm) as f64 / (total - warm) as f64).min(1.0);
                let floor = self.lr * self.final_lr_ratio;
                floor + (self.lr - floor) * 0.5 * (1.0 + (std::f64::consts::PI * p).cos())
            }
            Schedule::Step => {
                let decays = (step - warm) / per_epoch / self.step_epochs.max(1);
                self.lr * self.gamma.powi(decays.min(10_000) as i32)
            }
        }
    }

    /// Checks the schedule's settings; the message names the key (under `final.train.`).
    pub fn check_schedule(&self) -> std::result::Result<(), String> {
        if self.warmup_epochs > self.epochs {
            return Err(format!(
                "final.train.warmup_epochs ({}) must not exceed final.train.epochs ({})",
                self.warmup_epochs, self.epochs
            ));
        }
        if !(0.0..=1.0).contains(&self.final_lr_ratio) {
            return Err(format!(
                "final.train.final_lr_ratio must be within 0..=1, got {}",
                self.final_lr_ratio
            ));
        }
        if !(self.gamma > 0.0 && self.gamma <= 1.0) {
            return Err(format!(
                "final.train.gamma must be within (0, 1], got {}",
                self.gamma
            ));
        }
        if !(1..=10_000).contains(&self.step_epochs) {
            return Err(format!(
                "final.train.step_epochs must be within 1..=10000, got {}",
                self.step_epochs
            ));
        }
        if !(self.lr.is_finite() && self.lr > 0.0 && self.lr <= 10.0) {
            return Err(format!(
                "final.train.lr must be within (0, 10], got {}",
                self.lr
            ));
        }
        Ok(())
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 30,
            batch_size: 64,
            lr: 1e-3,
            weight_decay: 1e-2,
            clip: 5.0,
            patience: 8,
            max_batches_per_epoch: 0,
            eval_batch_size: 128,
            seed: 42,
            schedule: Schedule::Constant,
            warmup_epochs: 0,
            final_lr_ratio: 0.05,
            step_epochs: 10,
            gamma: 0.5,
            loss: Loss::Mae,
            refit: false,
            average_top: 0,
        }
    }
}

/// One epoch of full training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochLog {
    pub epoch: usize,
    pub train_loss: f64,
    pub val_mae: f64,
    /// Validation RMSE, recorded when it chooses the epoch (`final.train.loss = "mse"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_rmse: Option<f64>,
    pub seconds: f64,
}

impl EpochLog {
    /// The log of an epoch from its validation forecasts and targets (de-normalized): MAE
    /// always, RMSE when `loss` chooses the epoch on it ([`Loss::criterion`]).
    pub fn measure(
        epoch: usize,
        train_loss: f64,
        pred: &Tensor,
        target: &Tensor,
        null: Option<f64>,
        loss: Loss,
        seconds: f64,
    ) -> TResult<EpochLog> {
        Ok(EpochLog {
            epoch,
            train_loss,
            val_mae: masked_mae(pred, target, null)?.f_double_value(&[])?,
            val_rmse: loss.val_rmse(pred, target, null)?,
            seconds,
        })
    }

    /// The validation scores for a progress line: `val MAE 3.1234`, with `, RMSE 5.4321` when
    /// the RMSE was recorded.
    pub fn val_text(&self) -> String {
        match self.val_rmse {
            Some(rmse) => format!("val MAE {:.4}, RMSE {rmse:.4}", self.val_mae),
            None => format!("val MAE {:.4}", self.val_mae),
        }
    }
}

/// The result of full training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainReport {
    pub dataset: String,
    pub arch: ArchSpec,
    pub params: i64,
    pub status: EvalStatus,
    pub epochs_run: usize,
    pub best_epoch: usize,
    pub history: Vec<EpochLog>,
    /// Metrics of the best weights (by the validation criterion of `TrainConfig::loss`); None if
    /// no epoch finished.
    pub val: Option<MetricsTable>,
    pub test: Option<MetricsTable>,
    pub seconds: f64,
    /// With `refit`: the refit on training and validation windows. `test` is then the
    /// refitted model's, `val` still the first training's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refit: Option<RefitReport>,
    /// With `average_top >= 2`: the averaged checkpoints and whether the average was kept
    /// (`val` and `test` are then the average's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub averaged: Option<AverageReport>,
}

impl TrainReport {
    /// The kept weights' validation score by `loss`'s metric ([`Loss::score`]), if an epoch
    /// finished: what trainings of one setting are compared by.
    pub fn val_score(&self, loss: Loss) -> Option<f64> {
        self.val.as_ref().map(|m| loss.score(&m.average))
    }
}

/// The checkpoint average of [`TrainConfig::average_top`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AverageReport {
    /// The epochs averaged, best first.
    pub epochs: Vec<usize>,
    /// The validation criterion of the average, and of the best epoch alone.
    pub val_score: f64,
    pub best_score: f64,
    /// Whether the average replaced the best epoch's weights (`val_score < best_score`).
    pub kept: bool,
}

/// The refit of [`TrainConfig::refit`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefitReport {
    /// Epochs trained: the first training's best epoch.
    pub epochs: usize,
    /// Training windows (the first training had `train`'s; the refit adds `val`'s).
    pub windows: usize,
    pub status: EvalStatus,
    /// The first training's test metrics, before the refit (None if the refit failed and
    /// `test` is still the first training's).
    pub test_before: Option<MetricsTable>,
    pub seconds: f64,
}

/// A copy of every variable, by name, sorted by name (the best weights during training).
pub(crate) type Snapshot = Vec<(String, Tensor)>;

/// Builds a model's variables with libtorch's generator seeded by `seed`, on the CPU, then
/// moves them to `device`.
///
/// libtorch's generator is process-global: seeding and initializing under one lock keeps a
/// seeded build repeatable while other threads (evaluators, parallel tests, the GRU baseline)
/// build models too. Initializing on the CPU generator, then moving, gives the same weights
/// from a seed on every device, so a candidate scores alike on cpu, cuda:0 or a Ray node's GPU.
pub(crate) fn build_seeded<M>(
    seed: u64,
    device: Device,
    init: impl FnOnce(&nn::Path) -> TResult<M>,
) -> Result<(nn::VarStore, M)> {
    static INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = INIT.lock().unwrap_or_else(|p| p.into_inner());
    tch::manual_seed(seed as i64);
    let mut vs = nn::VarStore::new(Device::Cpu);
    let model = init(&vs.root())?;
    if device != Device::Cpu {
        tch::no_grad(|| -> TResult<()> {
            for (_, mut var) in vs.variables() {
                // `variables()` hands out shallow clones: `set_data` swaps the storage the
                // model's layers share, so they follow the move.
                let moved = var.f_to_device(device)?;
                var.f_set_data(&moved)?;
            }
            Ok(())
        })?;
        // Only records the device for later variables (the data already moved, fallibly).
        vs.set_device(device);
    }
    Ok((vs, model))
}

/// A built model with its weights.
pub struct Trained {
    pub vs: nn::VarStore,
    pub model: StModel,
}

impl Trained {
    /// Builds a freshly initialized model (seeded).
    pub fn build(arch: &Arch, data: &TrainData, cfg: &ModelConfig, seed: u64) -> Result<Trained> {
        cfg.validate()?;
        // The joint space's width replaces the configured one.
        let cfg = &cfg.for_arch(arch)?;
        let (vs, model) = build_seeded(seed, data.device, |root| {
            StModel::new(root, arch, data.shape, cfg, &data.graph)
        })?;
        Ok(Trained { vs, model })
    }

    pub fn params(&self) -> i64 {
        param_count(&self.vs)
    }

    /// De-normalized forecasts and targets `[S, H, N]` for the samples in `range`.
    pub fn predict(
        &self,
        data: &TrainData,
        starts: &[i64],
        batch: usize,
    ) -> Result<(Tensor, Tensor)> {
        let mut preds = Vec::new();
        let mut ys = Vec::new();
        tch::no_grad(|| -> Result<()> {
            for chunk in starts.chunks(batch.max(1)) {
                let (x, y) = data.batch(chunk)?;
                let out = self.model.forward_t(&x, false)?;
                preds.push(data.denorm(&out)?);
                ys.push(y);
            }
            Ok(())
        })?;
        if preds.is_empty() {
            return Err(Error::Config(
                "prediction over an empty set of samples".into(),
            ));
        }
        Ok((Tensor::f_cat(&preds, 0)?, Tensor::f_cat(&ys, 0)?))
    }

    /// One optimizer step on a batch; returns the loss.
    fn train_step(
        &self,
        opt: &mut Adam,
        data: &TrainData,
        starts: &[i64],
        loss: Loss,
    ) -> Result<f64> {
        let (x, y) = data.batch(starts)?;
        let out = self.model.forward_t(&x, true)?;
        let loss = loss.of(&data.denorm(&out)?, &y, data.null)?;
        let value = loss.f_double_value(&[])?;
        if !value.is_finite() {
            return Ok(value);
        }
        opt.zero_grad()?;
        loss.f_backward()?;
        opt.step()?;
        Ok(value)
    }

    pub(crate) fn snapshot(&self) -> Result<Snapshot> {
        let mut v: Vec<(String, Tensor)> = self.vs.variables().into_iter().collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v.into_iter()
            .map(|(k, t)| {
                let mut c = t.f_zeros_like()?;
                tch::no_grad(|| c.f_copy_(&t))?;
                Ok((k, c))
            })
            .collect()
    }

    pub(crate) fn restore(&self, snap: &[(String, Tensor)]) -> Result<()> {
        let vars = self.vs.variables();
        tch::no_grad(|| -> Result<()> {
            for (k, t) in snap {
                if let Some(dst) = vars.get(k) {
                    dst.shallow_clone().f_copy_(t)?;
                }
            }
            Ok(())
        })
    }
}

/// `count` sample indices spread evenly over `range` (all of it when `count` is 0 or larger).
pub fn spread(range: &Range<usize>, count: usize) -> Vec<i64> {
    let len = range.len();
    if count == 0 || count >= len {
        return range.clone().map(|i| i as i64).collect();
    }
    (0..count)
        .map(|k| (range.start + k * len / count) as i64)
        .collect()
}

fn shuffled(range: &Range<usize>, rng: &mut ChaCha8Rng) -> Vec<i64> {
    let mut v: Vec<i64> = range.clone().map(|i| i as i64).collect();
    v.shuffle(rng);
    v
}

/// The windows of one training epoch, in the order they are trained: those starting in
/// `windows`, shuffled by `rng`, cut to `max_batches_per_epoch` batches when that is set. A
/// design's training and the GRU baseline's share it, so their epochs see the same samples.
pub(crate) fn epoch_order(
    windows: &Range<usize>,
    cfg: &TrainConfig,
    rng: &mut ChaCha8Rng,
) -> Vec<i64> {
    let mut order = shuffled(windows, rng);
    if cfg.max_batches_per_epoch > 0 {
        order.truncate(
            cfg.max_batches_per_epoch
                .saturating_mul(cfg.batch_size.max(1)),
        );
    }
    order
}

/// Runs the one-step-tuning proxy for `arch`.
pub fn proxy_eval(
    arch: &Arch,
    data: &TrainData,
    model_cfg: &ModelConfig,
    cfg: &ProxyConfig,
) -> Result<ProxyReport> {
    proxy_run(arch, data, model_cfg, cfg, &mut |_| {})
}

/// [`proxy_eval`], handing each step's training loss to `on_step` (the loss curve, for proxies
/// that extrapolate it).
pub fn proxy_run(
    arch: &Arch,
    data: &TrainData,
    model_cfg: &ModelConfig,
    cfg: &ProxyConfig,
    on_step: &mut dyn FnMut(f64),
) -> Result<ProxyReport> {
    proxy_run_until(arch, data, model_cfg, cfg, on_step, &AtomicBool::new(false))
}

/// [`proxy_run`] that stops with [`Error::Cancelled`] at the first step after `stop` is set
/// (a cancelled search: a step is the longest it waits, whatever `cfg.steps`).
pub fn proxy_run_until(
    arch: &Arch,
    data: &TrainData,
    model_cfg: &ModelConfig,
    cfg: &ProxyConfig,
    on_step: &mut dyn FnMut(f64),
    stop: &AtomicBool,
) -> Result<ProxyReport> {
    if data.train.is_empty() || data.val.is_empty() {
        return Err(Error::Config(format!(
            "dataset {}: the proxy needs non-empty train and validation splits",
            data.name
        )));
    }
    let started = Instant::now();
    // The joint space's learning-rate factor applies to every training of the design.
    let cfg = &ProxyConfig {
        lr: cfg.lr * arch.lr_scale(),
        ..cfg.clone()
    };
    let trained = Trained::build(arch, data, model_cfg, cfg.seed)?;
    let params = trained.params();
    let mut opt = Adam::new(&trained.vs, cfg.lr, cfg.weight_decay, cfg.clip)?;
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut order = Vec::new();
    let (mut first, mut last) = (f64::NAN, f64::NAN);
    let bs = cfg.batch_size.max(1);
    for step in 0..cfg.steps {
        if stop.load(Ordering::Relaxed) {
            return Err(Error::Cancelled);
        }
        if order.len() < bs {
            order = shuffled(&data.train, &mut rng);
        }
        let batch: Vec<i64> = order.split_off(order.len().saturating_sub(bs));
        if cfg.warmup > 0 {
            opt.lr = cfg.lr * ((step + 1) as f64 / cfg.warmup as f64).min(1.0);
        }
        let loss = trained.train_step(&mut opt, data, &batch, Loss::Mae)?;
        on_step(loss);
        if step == 0 {
            first = loss;
        }
        last = loss;
        let report = |status| ProxyReport {
            status,
            val_mae: None,
            first_loss: first,
            last_loss: last,
            steps: step + 1,
            params,
            seconds: started.elapsed().as_secs_f64(),
        };
        if !loss.is_finite() {
            return Ok(report(EvalStatus::Diverged { step, loss }));
        }
        let secs = started.elapsed().as_secs_f64();
        if cfg.max_seconds > 0.0 && secs > cfg.max_seconds && step + 1 < cfg.steps {
            return Ok(report(EvalStatus::TimedOut {
                step,
                seconds: secs,
            }));
        }
    }
    let (pred, y) = trained.predict(data, &spread(&data.val, cfg.val_samples), 128)?;
    let val = masked_mae(&pred, &y, data.null)?.f_double_value(&[])?;
    let status = if val.is_finite() {
        EvalStatus::Ok
    } else {
        EvalStatus::Diverged {
            step: cfg.steps,
            loss: val,
        }
    };
    Ok(ProxyReport {
        val_mae: val.is_finite().then_some(val),
        status,
        first_loss: first,
        last_loss: last,
        steps: cfg.steps,
        params,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Global gradient norm of the training loss at initialization, on one batch of `batch_size`
/// training samples (a zero-cost score: no optimizer step is taken).
pub fn grad_norm_at_init(
    arch: &Arch,
    data: &TrainData,
    model_cfg: &ModelConfig,
    batch_size: usize,
    seed: u64,
) -> Result<f64> {
    let trained = Trained::build(arch, data, model_cfg, seed)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut order = shuffled(&data.train, &mut rng);
    order.truncate(batch_size.max(1));
    let (x, y) = data.batch(&order)?;
    let out = trained.model.forward_t(&x, true)?;
    masked_mae(&data.denorm(&out)?, &y, data.null)?.f_backward()?;
    let mut sq = 0.0;
    for p in trained.vs.trainable_variables() {
        let g = p.grad();
        if g.defined() {
            sq += g.f_norm()?.f_double_value(&[])?.powi(2);
        }
    }
    Ok(sq.sqrt())
}

/// Trains `arch` fully with early stopping; returns the report and the best weights.
pub fn train_full(
    arch: &Arch,
    data: &TrainData,
    model_cfg: &ModelConfig,
    cfg: &TrainConfig,
    on_epoch: &mut dyn FnMut(&EpochLog),
) -> Result<(TrainReport, Trained)> {
    let never = AtomicBool::new(false);
    train_full_resumable(arch, data, model_cfg, cfg, on_epoch, &never, None)
}

/// [`train_full`] that stops with [`Error::Cancelled`] at the first step after `stop` is set
/// (a cancelled search does not wait for its final training to end), and with a `checkpoint`
/// keeps its state there after every epoch: started again with the same checkpoint after a
/// kill, it resumes after the last epoch kept instead of at epoch 1, going on exactly as the
/// uninterrupted training would have (see [`crate::checkpoint`]; `on_epoch` sees only the
/// epochs trained in this call). Not with `model.dropout`: such a training neither reads nor
/// writes a checkpoint. A refit (`refit`) is not checkpointed: a kill during it trains the
/// refit again, from the kept first training's end.
pub fn train_full_resumable(
    arch: &Arch,
    data: &TrainData,
    model_cfg: &ModelConfig,
    cfg: &TrainConfig,
    on_epoch: &mut dyn FnMut(&EpochLog),
    stop: &AtomicBool,
    checkpoint: Option<&Checkpoint>,
) -> Result<(TrainReport, Trained)> {
    let started = Instant::now();
    let checkpoint = checkpoint.filter(|_| model_cfg.dropout == 0.0);
    // The joint space's learning-rate factor scales the whole schedule.
    let cfg = &TrainConfig {
        lr: cfg.lr * arch.lr_scale(),
        ..cfg.clone()
    };
    let trained = Trained::build(arch, data, model_cfg, cfg.seed)?;
    let mut opt = Adam::new(&trained.vs, cfg.lr, cfg.weight_decay, cfg.clip)?;
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let val_idx = spread(&data.val, 0);
    let test_idx = spread(&data.test, 0);
    let mut history = Vec::new();
    // The best epochs so far by validation score, best first: one, or `average_top`.
    let keep = cfg.average_top.max(1);
    let mut top: Vec<(f64, usize, Snapshot)> = Vec::with_capacity(keep + 1);
    let mut status = EvalStatus::Ok;
    let mut since_best = 0;
    let (mut first, mut earlier_seconds) = (1, 0.0);
    if let Some(c) = checkpoint {
        if let Some(st) = c.load(&trained, &mut opt, data.device, cfg.epochs)? {
            first = st.epoch + 1;
            rng.set_word_pos(st.rng_word_pos);
            since_best = st.since_best;
            top = st.top;
            history = st.history;
            earlier_seconds = st.seconds;
        }
    }
    for epoch in first..=cfg.epochs {
        let t0 = Instant::now();
        let (sum, batches) = match train_epoch(
            &trained,
            &mut opt,
            data,
            &data.train,
            cfg,
            epoch,
            &mut rng,
            stop,
        )? {
            Ok(done) => done,
            Err(diverged) => {
                status = diverged;
                break;
            }
        };
        let (pred, y) = trained.predict(data, &val_idx, cfg.eval_batch_size)?;
        let log = EpochLog::measure(
            epoch,
            sum / batches.max(1) as f64,
            &pred,
            &y,
            data.null,
            cfg.loss,
            t0.elapsed().as_secs_f64(),
        )?;
        let score = cfg.loss.criterion(&log);
        on_epoch(&log);
        history.push(log);
        if !score.is_finite() {
            status = EvalStatus::Diverged {
                step: epoch * batches,
                loss: score,
            };
            break;
        }
        let improved = top.first().is_none_or(|(b, _, _)| score < *b);
        let rank = top.iter().take_while(|(s, _, _)| *s <= score).count();
        if rank < keep {
            top.insert(rank, (score, epoch, trained.snapshot()?));
            top.truncate(keep);
        }
        if improved {
            since_best = 0;
        } else {
            since_best += 1;
            if since_best >= cfg.patience.max(1) {
                break;
            }
        }
        if let Some(c) = checkpoint {
            let state = StateRef {
                epoch,
                rng_word_pos: rng.get_word_pos(),
                since_best,
                top: &top,
                history: &history,
                seconds: earlier_seconds + started.elapsed().as_secs_f64(),
            };
            // A checkpoint only saves time: one that cannot be written (a full disk) costs the
            // resume, not the training.
            if let Err(e) = c.save(&state, &trained, &opt) {
                tracing::warn!("epoch {epoch}'s checkpoint not kept: {e}");
            }
        }
    }
    let (mut val, mut test, mut best_epoch) = (None, None, 0);
    let mut averaged = None;
    if let Some((best_score, epoch, snap)) = top.first() {
        best_epoch = *epoch;
        if top.len() >= 2 {
            let snaps: Vec<&Snapshot> = top.iter().map(|(_, _, s)| s).collect();
            trained.restore(&average_snapshots(&snaps)?)?;
            let (p, y) = trained.predict(data, &val_idx, cfg.eval_batch_size)?;
            let log = EpochLog::measure(best_epoch, f64::NAN, &p, &y, data.null, cfg.loss, 0.0)?;
            let val_score = cfg.loss.criterion(&log);
            let kept = val_score < *best_score;
            averaged = Some(AverageReport {
                epochs: top.iter().map(|(_, e, _)| *e).collect(),
                val_score,
                best_score: *best_score,
                kept,
            });
            if !kept {
                trained.restore(snap)?;
            }
        } else {
            trained.restore(snap)?;
        }
        let (p, y) = trained.predict(data, &val_idx, cfg.eval_batch_size)?;
        val = Some(MetricsTable::compute(&p, &y, data.null)?);
        let (p, y) = trained.predict(data, &test_idx, cfg.eval_batch_size)?;
        test = Some(MetricsTable::compute(&p, &y, data.null)?);
    }
    drop(top);
    let mut trained = trained;
    let mut refit = None;
    if cfg.refit && best_epoch > 0 && status == EvalStatus::Ok {
        let t0 = Instant::now();
        let windows = data.refit_windows();
        let again = Trained::build(arch, data, model_cfg, cfg.seed)?;
        let mut opt = Adam::new(&again.vs, cfg.lr, cfg.weight_decay, cfg.clip)?;
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let mut refit_status = EvalStatus::Ok;
        for epoch in 1..=best_epoch {
            if let Err(diverged) =
                train_epoch(&again, &mut opt, data, &windows, cfg, epoch, &mut rng, stop)?
            {
                refit_status = diverged;
                break;
            }
        }
        let mut test_before = None;
        if refit_status == EvalStatus::Ok {
            // The refitted model is the one handed back, so `test` is its own.
            let (p, y) = again.predict(data, &test_idx, cfg.eval_batch_size)?;
            test_before = test.replace(MetricsTable::compute(&p, &y, data.null)?);
            trained = again;
        }
        refit = Some(RefitReport {
            epochs: best_epoch,
            windows: windows.len(),
            status: refit_status,
            test_before,
            seconds: t0.elapsed().as_secs_f64(),
        });
    }
    let report = TrainReport {
        dataset: data.name.clone(),
        arch: arch.to_spec(),
        params: trained.params(),
        status,
        epochs_run: history.len(),
        best_epoch,
        history,
        val,
        test,
        // A resumed training's seconds include its earlier sessions' up to the checkpoint.
        seconds: earlier_seconds + started.elapsed().as_secs_f64(),
        refit,
        averaged,
    };
    Ok((report, trained))
}

/// The element-wise mean of snapshots of one model (same names, same shapes).
fn average_snapshots(snaps: &[&Snapshot]) -> Result<Snapshot> {
    let Some(first) = snaps.first() else {
        return Ok(Vec::new());
    };
    let count = snaps.len() as f64;
    tch::no_grad(|| {
        first
            .iter()
            .enumerate()
            .map(|(i, (name, t))| {
                let mut sum = t.f_to_kind(tch::Kind::Double)?;
                for s in &snaps[1..] {
                    sum = sum.f_add(&s[i].1.f_to_kind(tch::Kind::Double)?)?;
                }
                Ok((name.clone(), sum.f_div_scalar(count)?.f_to_kind(t.kind())?))
            })
            .collect()
    })
}

/// One epoch over the windows starting in `windows`, shuffled by `rng`: the sum of the batch
/// losses and the batch count, or the status of a divergence.
#[allow(clippy::too_many_arguments)]
fn train_epoch(
    trained: &Trained,
    opt: &mut Adam,
    data: &TrainData,
    windows: &Range<usize>,
    cfg: &TrainConfig,
    epoch: usize,
    rng: &mut ChaCha8Rng,
    stop: &AtomicBool,
) -> Result<std::result::Result<(f64, usize), EvalStatus>> {
    let order = epoch_order(windows, cfg, rng);
    let batches = order.chunks(cfg.batch_size.max(1));
    let per_epoch = batches.len();
    let mut sum = 0.0;
    for (i, b) in batches.enumerate() {
        if stop.load(Ordering::Relaxed) {
            return Err(Error::Cancelled);
        }
        opt.lr = cfg.lr_at((epoch - 1) * per_epoch + i, per_epoch);
        let loss = trained.train_step(opt, data, b, cfg.loss)?;
        if !loss.is_finite() {
            return Ok(Err(EvalStatus::Diverged {
                step: (epoch - 1) * per_epoch + i,
                loss,
            }));
        }
        sum += loss;
    }
    Ok(Ok((sum, per_epoch)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    #[test]
    fn learning_rate_schedules_warm_up_then_decay_as_planned() {
        let base = TrainConfig {
            epochs: 10,
            lr: 1e-2,
            warmup_epochs: 2,
            ..TrainConfig::default()
        };
        // Warm-up: linear over 2 epochs of 5 steps, reaching lr at the last warm-up step.
        assert!((base.lr_at(0, 5) - 1e-3).abs() < 1e-12);
        assert!((base.lr_at(9, 5) - 1e-2).abs() < 1e-12);
        assert_eq!(base.lr_at(30, 5), 1e-2, "constant after the warm-up");
        let cos = TrainConfig {
            schedule: Schedule::Cosine,
            final_lr_ratio: 0.1,
            ..base.clone()
        };
        assert!(
            (cos.lr_at(10, 5) - 1e-2).abs() < 1e-12,
            "cosine starts at lr"
        );
        let mid = cos.lr_at(30, 5);
        assert!((mid - (1e-3 + 9e-3 * 0.5)).abs() < 1e-12, "{mid}");
        assert!(
            (cos.lr_at(49, 5) - 1e-3).abs() < 1e-4,
            "ends near the floor"
        );
        assert!(
            (cos.lr_at(500, 5) - 1e-3).abs() < 1e-12,
            "stays at the floor"
        );
        let step = TrainConfig {
            schedule: Schedule::Step,
            step_epochs: 3,
            gamma: 0.5,
            ..base
        };
        assert_eq!(step.lr_at(10, 5), 1e-2);
        assert_eq!(step.lr_at(24, 5), 1e-2);
        assert_eq!(step.lr_at(25, 5), 5e-3);
        assert_eq!(step.lr_at(40, 5), 2.5e-3);
        let bad = TrainConfig {
            warmup_epochs: 31,
            ..TrainConfig::default()
        };
        assert!(bad.check_schedule().unwrap_err().contains("warmup_epochs"));
        assert!(TrainConfig::default().check_schedule().is_ok());
    }

    /// `proxy.node_share`'s nodes: a seeded, sorted draw of the share (at least 2), none at 1;
    /// a proxy on them is a proxy on `subset_nodes` of those nodes, scored on them alone.
    #[test]
    fn a_node_share_draws_a_fixed_subset_and_the_proxy_trains_on_it() {
        assert_eq!(proxy_nodes(207, 1.0, 1), None);
        let q = proxy_nodes(207, 0.25, 1).unwrap();
        assert_eq!(q.len(), 51);
        assert!(q.windows(2).all(|w| w[0] < w[1]) && q[50] < 207);
        assert_eq!(proxy_nodes(207, 0.25, 1), Some(q.clone()));
        assert_ne!(proxy_nodes(207, 0.25, 2), Some(q));
        assert_eq!(proxy_nodes(4, 0.1, 1).unwrap().len(), 2);
        assert_eq!(proxy_nodes(1, 0.5, 1).unwrap(), vec![0]);
        let p = crate::protocol::tests::wave();
        let cfg = ProxyConfig {
            steps: 3,
            batch_size: 8,
            val_samples: 16,
            node_share: 0.5,
            ..ProxyConfig::default()
        };
        assert!(proxy_subset(&p, &ProxyConfig::default()).unwrap().is_none());
        let part = proxy_subset(&p, &cfg).unwrap().unwrap();
        let nodes = proxy_nodes(p.n, 0.5, cfg.seed).unwrap();
        assert_eq!((part.n, nodes.len()), (2, 2));
        assert_eq!(part.target, p.subset_nodes(&nodes).unwrap().target);
        let arch = Arch::from_json(
            r#"{"edges":[{"from":0,"to":3,"op":"STT","spatial":"mix_gc","temporal":"gdcc"}]}"#,
            crate::space::SpaceKind::Ists,
        )
        .unwrap();
        let model = ModelConfig {
            hidden: 8,
            end_hidden: 16,
            ..ModelConfig::default()
        };
        let on = |p: &Prepared| {
            proxy_eval(
                &arch,
                &TrainData::new(p, Device::Cpu).unwrap(),
                &model,
                &cfg,
            )
            .unwrap()
            .val_mae
            .unwrap()
        };
        let (whole, half) = (on(&p), on(&part));
        assert_ne!(whole, half, "scored on other nodes");
        assert_eq!(half, on(&p.subset_nodes(&nodes).unwrap()));
    }

    /// A small design on the wave data, trained `epochs` epochs at a high rate without early
    /// stopping: the setting of the refit and checkpoint-averaging tests.
    fn small_training(epochs: usize) -> (TrainData, Arch, ModelConfig, TrainConfig) {
        let p = crate::protocol::tests::wave();
        let data = TrainData::new(&p, Device::Cpu).unwrap();
        let arch = Arch::from_json(
            r#"{"edges":[{"from":0,"to":1,"op":"STT","spatial":"mix_gc","temporal":"gdcc"},{"from":1,"to":3,"op":"identity"}]}"#,
            crate::space::SpaceKind::Ists,
        )
        .unwrap();
        let model = ModelConfig {
            hidden: 8,
            end_hidden: 16,
            ..ModelConfig::default()
        };
        let cfg = TrainConfig {
            epochs,
            batch_size: 32,
            lr: 1e-2,
            patience: 10,
            ..TrainConfig::default()
        };
        (data, arch, model, cfg)
    }

    /// Each epoch's training loss and validation MAE: what two identical trainings share.
    fn losses(h: &[EpochLog]) -> Vec<(f64, f64)> {
        h.iter().map(|e| (e.train_loss, e.val_mae)).collect()
    }

    /// A refit repeats the first training exactly (same history and chosen epoch, same
    /// validation and, kept aside, test metrics), then hands back a model trained that many
    /// epochs on the training and validation windows, whose test metrics the report gives.
    #[test]
    fn a_refit_keeps_the_first_training_and_reports_the_refitted_model() {
        let (data, arch, model, cfg) = small_training(3);
        let (plain, _) = train_full(&arch, &data, &model, &cfg, &mut |_| {}).unwrap();
        assert_eq!(plain.refit, None);
        let refit_cfg = TrainConfig {
            refit: true,
            ..cfg.clone()
        };
        let (r, trained) = train_full(&arch, &data, &model, &refit_cfg, &mut |_| {}).unwrap();
        assert_eq!(losses(&r.history), losses(&plain.history));
        assert_eq!((r.best_epoch, &r.val), (plain.best_epoch, &plain.val));
        let refit = r.refit.as_ref().unwrap();
        assert_eq!(refit.status, EvalStatus::Ok);
        assert_eq!(refit.epochs, plain.best_epoch);
        assert_eq!(refit.windows, data.train.len() + data.val.len());
        assert_eq!(refit.test_before, plain.test);
        assert_ne!(r.test, plain.test, "the refitted model's test metrics");
        // The model handed back is the refitted one: its forecasts give the reported test MAE.
        let idx = spread(&data.test, 0);
        let (pred, y) = trained.predict(&data, &idx, 64).unwrap();
        let again = MetricsTable::compute(&pred, &y, data.null).unwrap();
        assert_eq!(Some(again), r.test);
    }

    /// A training killed after an epoch and started again with its checkpoint trains only the
    /// epochs after it and ends exactly as the uninterrupted training: the same losses, chosen
    /// epoch, averaged epochs, metrics and weights. A checkpoint of another training (another
    /// key) is not resumed from.
    #[test]
    fn a_training_resumed_from_its_checkpoint_ends_as_the_uninterrupted_one() {
        let (data, arch, model, cfg) = small_training(3);
        let cfg = TrainConfig {
            average_top: 2,
            ..cfg
        };
        let (plain, plain_model) = train_full(&arch, &data, &model, &cfg, &mut |_| {}).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let c = Checkpoint {
            path: dir.path().join("t.ckpt"),
            key: "this training".into(),
        };
        // Stopped during epoch 2, as a kill would: epoch 1's checkpoint is on disk.
        let stop = AtomicBool::new(false);
        let mut kill_after_1 = |e: &EpochLog| {
            if e.epoch == 1 {
                stop.store(true, Ordering::Relaxed);
            }
        };
        let killed = train_full_resumable(
            &arch,
            &data,
            &model,
            &cfg,
            &mut kill_after_1,
            &stop,
            Some(&c),
        );
        assert!(matches!(killed, Err(Error::Cancelled)));
        assert!(c.path.exists());
        let never = AtomicBool::new(false);
        let mut trained_here = Vec::new();
        let mut log = |e: &EpochLog| trained_here.push(e.epoch);
        let (r, resumed_model) =
            train_full_resumable(&arch, &data, &model, &cfg, &mut log, &never, Some(&c)).unwrap();
        assert_eq!(trained_here, [2, 3]);
        assert_eq!(losses(&r.history), losses(&plain.history));
        assert_eq!(
            (r.best_epoch, &r.averaged, &r.val, &r.test),
            (plain.best_epoch, &plain.averaged, &plain.val, &plain.test)
        );
        assert!(plain.averaged.is_some());
        let (a, b) = (
            plain_model.snapshot().unwrap(),
            resumed_model.snapshot().unwrap(),
        );
        assert_eq!(a.len(), b.len());
        for ((ka, ta), (kb, tb)) in a.iter().zip(&b) {
            assert_eq!(ka, kb);
            assert!(ta.equal(tb), "{ka} differs");
        }
        // Trains with a checkpoint that must not be resumed from: every epoch, to the same end.
        let from_scratch = |ck: &Checkpoint| {
            let mut trained_here = Vec::new();
            let mut log = |e: &EpochLog| trained_here.push(e.epoch);
            let (r, _) =
                train_full_resumable(&arch, &data, &model, &cfg, &mut log, &never, Some(ck))
                    .unwrap();
            assert_eq!(trained_here, [1, 2, 3]);
            assert_eq!((&r.val, &r.test), (&plain.val, &plain.test));
        };
        // Another training's checkpoint.
        let other = Checkpoint {
            key: "another training".into(),
            ..c.clone()
        };
        from_scratch(&other);
        // A file that is no checkpoint (torn, or anything else). The file now holds `other`'s
        // last epoch, so whole it would be resumed from.
        let whole = std::fs::read(&other.path).unwrap();
        for bad in [&whole[..whole.len() / 2], b"not a checkpoint".as_slice()] {
            std::fs::write(&other.path, bad).unwrap();
            from_scratch(&other);
        }
        // A checkpoint that cannot be written costs the resume, not the training.
        from_scratch(&Checkpoint {
            path: dir.path().join("missing/t.ckpt"),
            ..c.clone()
        });
    }

    /// Checkpoint averaging leaves the training as it was, averages the `average_top` best
    /// epochs by validation score, and keeps the average only where its own validation score
    /// is lower; the model handed back gives the reported metrics either way.
    #[test]
    fn checkpoint_averaging_is_chosen_on_validation() {
        let (data, arch, model, cfg) = small_training(5);
        let (plain, _) = train_full(&arch, &data, &model, &cfg, &mut |_| {}).unwrap();
        assert_eq!(plain.averaged, None);
        let one = TrainConfig {
            average_top: 1,
            ..cfg.clone()
        };
        let (r1, _) = train_full(&arch, &data, &model, &one, &mut |_| {}).unwrap();
        assert_eq!(
            (&r1.averaged, &r1.val, &r1.test),
            (&None, &plain.val, &plain.test)
        );
        let three = TrainConfig {
            average_top: 3,
            ..cfg.clone()
        };
        let (r, trained) = train_full(&arch, &data, &model, &three, &mut |_| {}).unwrap();
        assert_eq!(losses(&r.history), losses(&plain.history));
        assert_eq!(r.best_epoch, plain.best_epoch);
        let mut ranked: Vec<(f64, usize)> = plain
            .history
            .iter()
            .map(|e| (cfg.loss.criterion(e), e.epoch))
            .collect();
        ranked.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let a = r.averaged.clone().unwrap();
        let best3: Vec<usize> = ranked.iter().take(3).map(|(_, e)| *e).collect();
        assert_eq!(a.epochs, best3);
        assert_eq!(a.best_score, ranked[0].0);
        assert!(a.val_score.is_finite());
        assert_eq!(a.kept, a.val_score < a.best_score);
        let idx = spread(&data.val, 0);
        let (pred, y) = trained.predict(&data, &idx, 64).unwrap();
        let val = MetricsTable::compute(&pred, &y, data.null).unwrap();
        assert_eq!(Some(&val), r.val.as_ref());
        if a.kept {
            assert!(
                (val.average.mae - a.val_score).abs() < 1e-4,
                "{val:?} {a:?}"
            );
            assert_ne!(r.test, plain.test);
        } else {
            assert_eq!((&r.val, &r.test), (&plain.val, &plain.test));
        }
    }

    #[test]
    fn snapshots_average_element_wise() {
        let s = |v: &[f32]| -> Snapshot { vec![("w".into(), Tensor::from_slice(v))] };
        let (a, b, c) = (s(&[1.0, 2.0]), s(&[3.0, -2.0]), s(&[2.0, 3.0]));
        let m = average_snapshots(&[&a, &b, &c]).unwrap();
        assert_eq!(m[0].0, "w");
        assert_eq!(Vec::<f32>::try_from(&m[0].1).unwrap(), vec![2.0, 1.0]);
        assert_eq!(m[0].1.kind(), tch::Kind::Float);
    }

    /// Adam with L2 decay and global-norm clipping, computed step by step in f64, against ours
    /// (the norm grows: steps 1-2 are not clipped, 3-4 are).
    #[test]
    fn adam_matches_the_textbook_update() {
        let vs = nn::VarStore::new(Device::Cpu);
        let w = vs
            .root()
            .f_var_copy("w", &Tensor::from_slice(&[0.5f32, -1.0, 2.0, 0.0]))
            .unwrap();
        let c = [3.0f64, -4.0, 0.5, 1.0];
        let (lr, wd, clip) = (0.1, 0.01, 4.8);
        let mut opt = Adam::new(&vs, lr, wd, clip).unwrap();
        let mut p = [0.5f64, -1.0, 2.0, 0.0];
        let (mut m, mut v) = ([0.0f64; 4], [0.0f64; 4]);
        let mut clipped = 0;
        for t in 1..=4 {
            opt.zero_grad().unwrap();
            // loss = sum(c * w^2) / 2, so grad = c * w.
            let ct = Tensor::from_slice(&c.map(|x| x as f32));
            let loss = (&w * &w * &ct).sum(Kind::Float) * 0.5;
            loss.backward();
            opt.step().unwrap();
            let grad: Vec<f64> = (0..4).map(|i| c[i] * p[i]).collect();
            let norm = grad.iter().map(|g| g * g).sum::<f64>().sqrt();
            let scale = if norm > clip {
                clipped += 1;
                clip / (norm + 1e-6)
            } else {
                1.0
            };
            for i in 0..4 {
                let g = grad[i] * scale + wd * p[i];
                m[i] = 0.9 * m[i] + 0.1 * g;
                v[i] = 0.999 * v[i] + 0.001 * g * g;
                let m_hat = m[i] / (1.0 - 0.9f64.powi(t));
                let v_hat = v[i] / (1.0 - 0.999f64.powi(t));
                p[i] -= lr * m_hat / (v_hat.sqrt() + 1e-8);
            }
            let got = Vec::<f32>::try_from(&w).unwrap();
            for i in 0..4 {
                assert!(
                    (got[i] as f64 - p[i]).abs() < 1e-5,
                    "step {t}, weight {i}: {} vs {}",
                    got[i],
                    p[i]
                );
            }
        }
        assert_eq!(clipped, 2, "clipped steps");
    }
}
