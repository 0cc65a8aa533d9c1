//! Device agreement and speed: the same architecture, data and seed run on two devices (for
//! `ists bench gpu`: `cuda:0` against `cpu`), forward outputs and proxy scores compared within
//! tolerances, and the proxy time per candidate measured on each.

use crate::error::{Error, Result};
use crate::model::ModelConfig;
use crate::space::Arch;
use crate::train::{proxy_eval, spread, ProxyConfig, TrainData, Trained};
use serde::{Deserialize, Serialize};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Relative tolerances of [`compare`]. Why they are not 1e-6: cuDNN convolutions use TF32 on
/// Ampere and later by default (10-bit mantissa, about 5e-4 relative per op), and a short
/// training run amplifies per-step differences, so the proxy score gets the widest bound.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Tolerance {
    /// Of the untrained model's forecasts: max |a - b| / max |a|.
    pub forward: f64,
    /// Of the first training loss (same weights, same batch).
    pub first_loss: f64,
    /// Of the proxy's validation MAE after the whole budget.
    pub val_mae: f64,
}

impl Default for Tolerance {
    fn default() -> Self {
        Tolerance {
            forward: 5e-3,
            first_loss: 5e-3,
            val_mae: 5e-2,
        }
    }
}

/// What [`compare`] measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Agreement {
    pub reference: String,
    pub other: String,
    pub forward_max_abs: f64,
    pub forward_rel: f64,
    /// First training loss on (reference, other).
    pub first_loss: (f64, f64),
    pub first_loss_rel: f64,
    /// Proxy validation MAE on (reference, other); None when a run did not finish.
    pub val_mae: (Option<f64>, Option<f64>),
    pub val_mae_rel: f64,
    pub tolerance: Tolerance,
    /// One line per bound exceeded; empty when the devices agree.
    pub failures: Vec<String>,
}

impl Agreement {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / a.abs().max(f64::MIN_POSITIVE)
}

fn device_name(d: Device) -> String {
    match d {
        Device::Cpu => "cpu".into(),
        Device::Cuda(i) => format!("cuda:{i}"),
        other => format!("{other:?}"),
    }
}

/// The untrained model's de-normalized forecasts for a few validation samples, on the CPU.
fn forward(arch: &Arch, data: &TrainData, model: &ModelConfig, seed: u64) -> Result<Tensor> {
    let trained = Trained::build(arch, data, model, seed)?;
    let (pred, _) = trained.predict(data, &spread(&data.val, 16), 16)?;
    Ok(pred.f_to_device(Device::Cpu)?.f_to_kind(Kind::Double)?)
}

/// Runs `arch` on both copies of the data (one per device) with the same seed: forecasts of
/// the freshly built model, then the whole proxy. The reference's values are the denominators
/// of the relative errors.
pub fn compare(
    arch: &Arch,
    reference: &TrainData,
    other: &TrainData,
    model: &ModelConfig,
    proxy: &ProxyConfig,
    tol: Tolerance,
) -> Result<Agreement> {
    let fa = forward(arch, reference, model, proxy.seed)?;
    let fb = forward(arch, other, model, proxy.seed)?;
    let max_abs = fa.f_sub(&fb)?.f_abs()?.f_max()?.f_double_value(&[])?;
    let scale = fa.f_abs()?.f_max()?.f_double_value(&[])?;
    let forward_rel = max_abs / scale.max(f64::MIN_POSITIVE);
    let ra = proxy_eval(arch, reference, model, proxy)?;
    let rb = proxy_eval(arch, other, model, proxy)?;
    let first_loss_rel = rel(ra.first_loss, rb.first_loss);
    let val_mae_rel = match (ra.val_mae, rb.val_mae) {
        (Some(a), Some(b)) => rel(a, b),
        _ => f64::NAN,
    };
    let mut failures = Vec::new();
    // A NaN (a run that diverged on one device only) is outside every bound.
    let within = |x: f64, bound: f64| x.is_finite() && x <= bound;
    if !within(forward_rel, tol.forward) {
        failures.push(format!(
            "forecasts of the untrained model differ by {forward_rel:.3e} relative (bound {:.1e})",
            tol.forward
        ));
    }
    if !within(first_loss_rel, tol.first_loss) {
        failures.push(format!(
            "first training loss {} vs {} differs by {first_loss_rel:.3e} relative (bound {:.1e})",
            ra.first_loss, rb.first_loss, tol.first_loss
        ));
    }
    if !within(val_mae_rel, tol.val_mae) {
        failures.push(format!(
            "proxy validation MAE {:?} ({:?}) vs {:?} ({:?}) differs by {val_mae_rel:.3e} relative (bound {:.1e})",
            ra.val_mae, ra.status, rb.val_mae, rb.status, tol.val_mae
        ));
    }
    Ok(Agreement {
        reference: device_name(reference.device),
        other: device_name(other.device),
        forward_max_abs: max_abs,
        forward_rel,
        first_loss: (ra.first_loss, rb.first_loss),
        first_loss_rel,
        val_mae: (ra.val_mae, rb.val_mae),
        val_mae_rel,
        tolerance: tol,
        failures,
    })
}

/// Proxy time per candidate on one device.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Timing {
    pub device: String,
    /// libtorch intra-op threads (what matters on the CPU).
    pub threads: i32,
    /// The first evaluation, not counted below: CUDA context, cuDNN handles, allocator growth.
    pub warmup_seconds: f64,
    /// One per candidate, in order.
    pub seconds: Vec<f64>,
    pub val_mae: Vec<Option<f64>>,
}

impl Timing {
    /// Median seconds per candidate (NaN for none).
    pub fn median(&self) -> f64 {
        crate::stats::median(&self.seconds).unwrap_or(f64::NAN)
    }

    pub fn mean(&self) -> f64 {
        self.seconds.iter().sum::<f64>() / self.seconds.len().max(1) as f64
    }
}

/// Times the proxy of each of `archs` on the device of `data` after one warm-up evaluation of
/// the first.
/// The proxy ends by reading the validation MAE back to the host, which waits for the device,
/// so wall time is the device's time.
pub fn time_proxy(
    archs: &[Arch],
    data: &TrainData,
    model: &ModelConfig,
    proxy: &ProxyConfig,
) -> Result<Timing> {
    let first = archs
        .first()
        .ok_or_else(|| Error::Config("time_proxy needs at least one architecture".into()))?;
    let t0 = Instant::now();
    proxy_eval(first, data, model, proxy)?;
    let warmup_seconds = t0.elapsed().as_secs_f64();
    let mut seconds = Vec::new();
    let mut val_mae = Vec::new();
    for a in archs {
        let t = Instant::now();
        let r = proxy_eval(a, data, model, proxy)?;
        seconds.push(t.elapsed().as_secs_f64());
        val_mae.push(r.val_mae);
    }
    Ok(Timing {
        device: device_name(data.device),
        threads: tch::get_num_threads(),
        warmup_seconds,
        seconds,
        val_mae,
    })
}
