//! The GRU baseline of T-GCN's table, trained by us: one GRU reads each sensor's input window
//! on its own (weights shared by all sensors, no graph), and a linear head maps its last state
//! to all forecast steps at once. It is the "temporal only" row next to the searched models:
//! whatever a design gains over it comes from space (the graph) or from a better temporal
//! operator.
//!
//! Training follows [`crate::train::train_full`]: the same batches, the loss of
//! [`TrainConfig::loss`] (masked MAE or squared error) on de-normalized values, Adam with L2
//! decay and clipping, the learning-rate schedule of [`TrainConfig`], early stopping on that
//! loss's validation metric with the best-validation weights restored.
//! Only the model differs; it is not an [`crate::space::Arch`], so it has its own loop here.

use crate::error::{Error, Result};
use crate::ops::TResult;
use crate::train::{build_seeded, epoch_order, spread, Adam, EpochLog, TrainConfig, TrainData};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::time::Instant;
use tch::nn::{self, Init};
use tch::Tensor;

/// The GRU baseline's own sizes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GruConfig {
    /// Width of the GRU state.
    pub hidden: i64,
}

impl Default for GruConfig {
    fn default() -> Self {
        // T-GCN's GRU baseline (its PyTorch port's command line) uses 100 units; 64 trains in
        // minutes on one core and is not the bottleneck on 207 sensors of one week.
        GruConfig { hidden: 64 }
    }
}

/// One GRU layer over each sensor's window, and a linear head to every forecast step.
#[derive(Debug)]
pub struct GruForecaster {
    /// `[w_ih, w_hh, b_ih, b_hh]` in libtorch's layout (gates r, z, n stacked), so the fused
    /// `gru` kernel runs the whole sequence.
    weights: Vec<Tensor>,
    head_w: Tensor,
    head_b: Tensor,
    hidden: i64,
    horizon: i64,
}

impl GruForecaster {
    /// Builds the layers under `vs` for inputs of `in_features` and `horizon` forecast steps.
    /// Initialized as torch.nn.GRU and nn.Linear are: uniform in +-1/sqrt(fan).
    pub fn new(
        vs: &nn::Path,
        in_features: i64,
        horizon: i64,
        cfg: GruConfig,
    ) -> TResult<GruForecaster> {
        let h = cfg.hidden.max(1);
        let u = |fan: i64| {
            let b = 1.0 / (fan as f64).sqrt();
            Init::Uniform { lo: -b, up: b }
        };
        let weights = vec![
            vs.f_var("weight_ih_l0", &[3 * h, in_features], u(h))?,
            vs.f_var("weight_hh_l0", &[3 * h, h], u(h))?,
            vs.f_var("bias_ih_l0", &[3 * h], u(h))?,
            vs.f_var("bias_hh_l0", &[3 * h], u(h))?,
        ];
        Ok(GruForecaster {
            weights,
            head_w: vs.f_var("head_weight", &[horizon, h], u(h))?,
            head_b: vs.f_var("head_bias", &[horizon], u(h))?,
            hidden: h,
            horizon,
        })
    }

    /// `x` `[B, T_in, N, F]` (z-scored inputs) to z-scored forecasts `[B, H, N]`.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> TResult<Tensor> {
        let s = x.size();
        let (b, t, n, f) = (s[0], s[1], s[2], s[3]);
        // Every sensor of every sample is one sequence: [B * N, T, F].
        let seq = x
            .f_permute([0, 2, 1, 3])?
            .f_contiguous()?
            .f_reshape([b * n, t, f])?;
        let h0 = Tensor::f_zeros([1, b * n, self.hidden], (x.kind(), x.device()))?;
        let (_, last) = seq.f_gru(&h0, &self.weights, true, 1, 0.0, train, false, true)?;
        let out = last
            .f_squeeze_dim(0)?
            .f_linear(&self.head_w, Some(&self.head_b))?; // [B * N, H]
        out.f_reshape([b, n, self.horizon])?.f_permute([0, 2, 1])
    }
}

/// What training the GRU baseline left.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GruReport {
    pub params: i64,
    pub epochs_run: usize,
    /// The epoch whose weights were kept (best validation MAE, or RMSE when training on
    /// squared error).
    pub best_epoch: usize,
    /// Validation MAE of that epoch.
    pub best_val_mae: f64,
    pub history: Vec<EpochLog>,
    pub seconds: f64,
    /// With `refit`: the epochs of the refit on training and validation windows whose model
    /// was handed back (the first training's best epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refit_epochs: Option<usize>,
}

/// A trained GRU baseline.
pub struct TrainedGru {
    pub vs: nn::VarStore,
    pub model: GruForecaster,
    pub report: GruReport,
}

impl TrainedGru {
    /// De-normalized forecasts `[S, H, N]` for the samples `starts`, in data units.
    pub fn predict(&self, data: &TrainData, starts: &[i64], batch: usize) -> Result<Tensor> {
        predict(&self.model, data, starts, batch)
    }
}

fn predict(
    model: &GruForecaster,
    data: &TrainData,
    starts: &[i64],
    batch: usize,
) -> Result<Tensor> {
    let mut out = Vec::new();
    tch::no_grad(|| -> Result<()> {
        for chunk in starts.chunks(batch.max(1)) {
            let (x, _) = data.batch(chunk)?;
            out.push(denorm(data, &model.forward_t(&x, false)?)?);
        }
        Ok(())
    })?;
    if out.is_empty() {
        return Err(Error::Config(
            "prediction over an empty set of samples".into(),
        ));
    }
    Ok(Tensor::f_cat(&out, 0)?)
}

fn denorm(data: &TrainData, z: &Tensor) -> TResult<Tensor> {
    z.f_mul_scalar(data.std)?.f_add_scalar(data.mean)
}

/// Copies of every variable, by name (the best weights so far).
type Snapshot = Vec<(String, Tensor)>;

fn snapshot(vs: &nn::VarStore) -> Result<Snapshot> {
    vs.variables()
        .into_iter()
        .map(|(k, t)| {
            let mut c = t.f_zeros_like()?;
            tch::no_grad(|| c.f_copy_(&t))?;
            Ok((k, c))
        })
        .collect()
}

fn restore(vs: &nn::VarStore, snap: &[(String, Tensor)]) -> Result<()> {
    let vars = vs.variables();
    tch::no_grad(|| -> Result<()> {
        for (k, t) in snap {
            if let Some(dst) = vars.get(k) {
                dst.shallow_clone().f_copy_(t)?;
            }
        }
        Ok(())
    })
}

/// Trains the GRU baseline on `data` as [`crate::train::train_full`] trains a design (seeded by
/// `cfg.seed`), keeping the weights of the best validation epoch.
pub fn train_gru(
    data: &TrainData,
    gru: GruConfig,
    cfg: &TrainConfig,
    on_epoch: &mut dyn FnMut(&EpochLog),
) -> Result<TrainedGru> {
    if data.train.is_empty() || data.val.is_empty() {
        return Err(Error::Config(format!(
            "dataset {}: the GRU baseline needs non-empty train and validation splits",
            data.name
        )));
    }
    let started = Instant::now();
    let (vs, model) = build(data, gru, cfg.seed)?;
    let params: i64 = vs
        .trainable_variables()
        .iter()
        .map(|t| t.numel() as i64)
        .sum();
    let mut opt = Adam::new(&vs, cfg.lr, cfg.weight_decay, cfg.clip)?;
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let val_idx = spread(&data.val, 0);
    let mut history = Vec::new();
    let mut best: Option<((f64, f64), usize, Snapshot)> = None;
    let mut since_best = 0;
    for epoch in 1..=cfg.epochs.max(1) {
        let t0 = Instant::now();
        let (sum, per_epoch) =
            epoch_over(&model, &mut opt, data, &data.train, cfg, epoch, &mut rng)?;
        let pred = predict(&model, data, &val_idx, cfg.eval_batch_size)?;
        let (_, y) = data.batch(&val_idx)?;
        let log = EpochLog::measure(
            epoch,
            sum / per_epoch.max(1) as f64,
            &pred,
            &y,
            data.null,
            cfg.loss,
            t0.elapsed().as_secs_f64(),
        )?;
        let (score, val_mae) = (cfg.loss.criterion(&log), log.val_mae);
        on_epoch(&log);
        history.push(log);
        if !score.is_finite() {
            break;
        }
        if best.as_ref().is_none_or(|(b, _, _)| score < b.0) {
            best = Some(((score, val_mae), epoch, snapshot(&vs)?));
            since_best = 0;
        } else {
            since_best += 1;
            if since_best >= cfg.patience.max(1) {
                break;
            }
        }
    }
    let Some(((_, best_val_mae), best_epoch, snap)) = best else {
        return Err(Error::Config(format!(
            "GRU baseline: no epoch finished with a finite validation {}",
            cfg.loss.metric()
        )));
    };
    restore(&vs, &snap)?;
    let (mut vs, mut model, mut refit_epochs) = (vs, model, None);
    if cfg.refit {
        // As `train_full` refits a design: a fresh model, the same seed and schedule, the
        // training and validation windows, the epochs validation chose.
        let windows = data.refit_windows();
        let (vs2, model2) = build(data, gru, cfg.seed)?;
        let mut opt = Adam::new(&vs2, cfg.lr, cfg.weight_decay, cfg.clip)?;
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        for epoch in 1..=best_epoch {
            epoch_over(&model2, &mut opt, data, &windows, cfg, epoch, &mut rng)?;
        }
        (vs, model, refit_epochs) = (vs2, model2, Some(best_epoch));
    }
    let report = GruReport {
        params,
        epochs_run: history.len(),
        best_epoch,
        best_val_mae,
        history,
        seconds: started.elapsed().as_secs_f64(),
        refit_epochs,
    };
    Ok(TrainedGru { vs, model, report })
}

/// A freshly initialized GRU baseline, seeded.
fn build(data: &TrainData, gru: GruConfig, seed: u64) -> Result<(nn::VarStore, GruForecaster)> {
    // Seeded under the same process-wide lock as a design's build: a parallel build (another
    // thread, another test) cannot draw from libtorch's generator between the seed and the
    // weights, and the weights move to the data's device fallibly.
    build_seeded(seed, data.device, |root| {
        GruForecaster::new(root, data.shape.in_features, data.shape.horizon, gru)
    })
}

/// One epoch over the windows starting in `windows`, shuffled by `rng`: the sum of the batch
/// losses and the batch count. A divergence is an error.
fn epoch_over(
    model: &GruForecaster,
    opt: &mut Adam,
    data: &TrainData,
    windows: &std::ops::Range<usize>,
    cfg: &TrainConfig,
    epoch: usize,
    rng: &mut ChaCha8Rng,
) -> Result<(f64, usize)> {
    let order = epoch_order(windows, cfg, rng);
    let batches = order.chunks(cfg.batch_size.max(1));
    let per_epoch = batches.len();
    let mut sum = 0.0;
    for (i, b) in batches.enumerate() {
        opt.lr = cfg.lr_at((epoch - 1) * per_epoch + i, per_epoch);
        let (x, y) = data.batch(b)?;
        let pred = denorm(data, &model.forward_t(&x, true)?)?;
        let loss = cfg.loss.of(&pred, &y, data.null)?;
        let value = loss.f_double_value(&[])?;
        if !value.is_finite() {
            return Err(Error::Config(format!(
                "GRU baseline diverged at epoch {epoch}, batch {i} (loss {value})"
            )));
        }
        opt.zero_grad()?;
        loss.f_backward()?;
        opt.step()?;
        sum += value;
    }
    Ok((sum, per_epoch))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::metrics::masked_mae;
    use tch::Device;

    #[test]
    fn forecasts_every_step_of_every_sensor_and_keeps_the_best_epoch() {
        let p = crate::protocol::tests::wave();
        let data = TrainData::new(&p, Device::Cpu).unwrap();
        let cfg = TrainConfig {
            epochs: 6,
            batch_size: 32,
            lr: 1e-2,
            patience: 10,
            ..TrainConfig::default()
        };
        let mut logs = Vec::new();
        let trained = train_gru(&data, GruConfig { hidden: 8 }, &cfg, &mut |e| {
            logs.push(e.val_mae)
        })
        .unwrap();
        assert_eq!(logs.len(), 6);
        let r = &trained.report;
        // 3 gates x (8 x 2 inputs + 8 x 8 + 2 x 8 biases) + head 12 x 8 + 12.
        assert_eq!(r.params, 3 * (8 * 2 + 8 * 8 + 16) + 12 * 8 + 12);
        let best = logs.iter().cloned().fold(f64::INFINITY, f64::min);
        assert_eq!(r.best_val_mae, best);
        assert!(best < logs[0], "training did not improve: {logs:?}");
        // The restored weights are the best epoch's: they score its validation MAE again.
        let idx = spread(&data.val, 0);
        let pred = trained.predict(&data, &idx, 64).unwrap();
        assert_eq!(pred.size(), vec![idx.len() as i64, 12, 4]);
        let (_, y) = data.batch(&idx).unwrap();
        let again = masked_mae(&pred, &y, data.null).unwrap().double_value(&[]);
        assert!((again - best).abs() < 1e-9, "{again} vs {best}");
    }

    /// A refit trains the same first run (same epochs, same choice), then hands back another
    /// model: trained the chosen number of epochs on training and validation windows.
    #[test]
    fn a_refit_trains_the_chosen_epochs_again_on_training_and_validation() {
        let p = crate::protocol::tests::wave();
        let data = TrainData::new(&p, Device::Cpu).unwrap();
        let cfg = TrainConfig {
            epochs: 4,
            batch_size: 32,
            lr: 1e-2,
            patience: 10,
            ..TrainConfig::default()
        };
        let gru = GruConfig { hidden: 8 };
        let plain = train_gru(&data, gru, &cfg, &mut |_| {}).unwrap();
        let refit_cfg = TrainConfig {
            refit: true,
            ..cfg.clone()
        };
        let refit = train_gru(&data, gru, &refit_cfg, &mut |_| {}).unwrap();
        assert_eq!(plain.report.refit_epochs, None);
        let losses = |h: &[EpochLog]| -> Vec<(f64, f64)> {
            h.iter().map(|e| (e.train_loss, e.val_mae)).collect()
        };
        assert_eq!(losses(&refit.report.history), losses(&plain.report.history));
        assert_eq!(refit.report.refit_epochs, Some(plain.report.best_epoch));
        let idx = spread(&data.test, 0);
        let (a, b) = (
            plain.predict(&data, &idx, 64).unwrap(),
            refit.predict(&data, &idx, 64).unwrap(),
        );
        let diff = (a - b).abs().max().double_value(&[]);
        assert!(
            diff > 1e-4,
            "the refitted model forecasts as the first one: {diff}"
        );
    }
}
