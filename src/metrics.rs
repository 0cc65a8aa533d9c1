//! Masked forecasting metrics (MAE, RMSE, MAPE) per horizon and averaged, computed the way the
//! DCRNN/Graph WaveNet code does: null entries of the target are masked out and the mask is
//! rescaled so that the mean is taken over valid entries only. The T-GCN protocol's five scores
//! (RMSE, MAE, accuracy, R^2, explained variance, pooled over forecast steps) are in [`tgcn`].

pub mod tgcn;

pub use tgcn::{TgcnMetricsError, TgcnScores, TgcnTable, TGCN_HORIZONS};

use crate::ops::TResult;
use serde::{Deserialize, Serialize};
use std::fmt;
use tch::{Kind, Tensor};

/// The mask of valid target entries, rescaled to mean 1 (all-null -> all zeros).
fn mask(target: &Tensor, null: Option<f64>) -> TResult<Tensor> {
    let valid = match null {
        Some(v) => target.f_ne(v)?.f_to_kind(Kind::Float)?,
        None => target.f_isfinite()?.f_to_kind(Kind::Float)?,
    };
    let mean = valid.f_mean(Kind::Float)?;
    let m = valid.f_div(&mean)?;
    zero_nan(&m)
}

fn zero_nan(t: &Tensor) -> TResult<Tensor> {
    let zeros = t.f_zeros_like()?;
    zeros.f_where_self(&t.f_isnan()?, t)
}

/// `err * mask` where the mask is positive, 0 elsewhere. Invalid entries are dropped with
/// `where`, not by zeroing NaNs afterwards: a NaN forecast at a valid entry must stay NaN so
/// that divergence is seen (zeroing every NaN, as some reference code does, hides it).
fn apply_mask(err: &Tensor, m: &Tensor) -> TResult<Tensor> {
    let valid = m.f_gt(0.0)?;
    err.f_mul(m)?.f_where_self(&valid, &err.f_zeros_like()?)
}

/// Masked mean absolute error (a scalar tensor, differentiable: the training loss).
pub fn masked_mae(pred: &Tensor, target: &Tensor, null: Option<f64>) -> TResult<Tensor> {
    let m = mask(target, null)?;
    apply_mask(&pred.f_sub(target)?.f_abs()?, &m)?.f_mean(Kind::Float)
}

/// Masked mean squared error (differentiable: the training loss of protocols scored by RMSE).
pub fn masked_mse(pred: &Tensor, target: &Tensor, null: Option<f64>) -> TResult<Tensor> {
    let m = mask(target, null)?;
    let d = pred.f_sub(target)?;
    apply_mask(&d.f_mul(&d)?, &m)?.f_mean(Kind::Float)
}

/// Masked root mean squared error.
pub fn masked_rmse(pred: &Tensor, target: &Tensor, null: Option<f64>) -> TResult<Tensor> {
    masked_mse(pred, target, null)?.f_sqrt()
}

/// Masked mean absolute percentage error, in percent. Targets that are (near) zero are also
/// masked: a percentage of zero is undefined.
pub fn masked_mape(pred: &Tensor, target: &Tensor, null: Option<f64>) -> TResult<Tensor> {
    let nonzero = target.f_abs()?.f_gt(1e-6)?.f_to_kind(Kind::Float)?;
    let m0 = mask(target, null)?.f_mul(&nonzero)?;
    let mean = m0.f_mean(Kind::Float)?;
    let m = zero_nan(&m0.f_div(&mean)?)?;
    let ape = pred.f_sub(target)?.f_abs()?.f_div(&target.f_abs()?)?;
    apply_mask(&ape, &m)?
        .f_mean(Kind::Float)?
        .f_mul_scalar(100.0)
}

/// MAE, RMSE and MAPE (percent) of one slice of forecasts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    pub mae: f64,
    pub rmse: f64,
    pub mape: f64,
}

impl Scores {
    pub fn compute(pred: &Tensor, target: &Tensor, null: Option<f64>) -> TResult<Scores> {
        Ok(Scores {
            mae: masked_mae(pred, target, null)?.f_double_value(&[])?,
            rmse: masked_rmse(pred, target, null)?.f_double_value(&[])?,
            mape: masked_mape(pred, target, null)?.f_double_value(&[])?,
        })
    }
}

/// Scores at selected horizons (1-based steps ahead) and over all horizons.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsTable {
    pub horizons: Vec<(usize, Scores)>,
    pub average: Scores,
}

/// The horizons reported by convention (3, 6, 12 steps ahead = 15, 30, 60 minutes at 5-minute
/// steps), restricted to those the forecast covers; the last one is always included.
pub fn report_horizons(horizon: usize) -> Vec<usize> {
    let mut v: Vec<usize> = [3, 6, 12].into_iter().filter(|&h| h <= horizon).collect();
    if horizon > 0 && !v.contains(&horizon) {
        v.push(horizon);
    }
    v
}

impl MetricsTable {
    /// `pred` and `target` are `[S, H, N]` (or `[S, H, N, 1]`) in the original units.
    pub fn compute(pred: &Tensor, target: &Tensor, null: Option<f64>) -> TResult<MetricsTable> {
        let horizon = pred.size()[1];
        let mut horizons = Vec::new();
        for h in report_horizons(horizon as usize) {
            let p = pred.f_select(1, h as i64 - 1)?;
            let t = target.f_select(1, h as i64 - 1)?;
            horizons.push((h, Scores::compute(&p, &t, null)?));
        }
        Ok(MetricsTable {
            horizons,
            average: Scores::compute(pred, target, null)?,
        })
    }
}

impl fmt::Display for MetricsTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "| horizon | MAE | RMSE | MAPE (%) |")?;
        writeln!(f, "|---|---:|---:|---:|")?;
        let row = |f: &mut fmt::Formatter<'_>, name: String, s: &Scores| {
            writeln!(
                f,
                "| {name} | {:.4} | {:.4} | {:.2} |",
                s.mae, s.rmse, s.mape
            )
        };
        for (h, s) in &self.horizons {
            row(f, format!("@{h}"), s)?;
        }
        row(f, "avg".to_string(), &self.average)
    }
}
