//! Classical baselines on the same split as the search: historical average (per sensor and
//! time-of-day slot, fitted on the training steps) and last value. Their forecasts are scored
//! with the same masked metrics, over exactly the test samples the models are scored on.

use crate::data::prepare::SlotMeans;
use crate::data::Prepared;
use crate::error::{Error, Result};
use crate::metrics::MetricsTable;
use std::ops::Range;
use tch::Tensor;

/// Raw targets `[S, H, N]` of the samples in `samples`.
pub fn targets(p: &Prepared, samples: &Range<usize>) -> Vec<f32> {
    let (n, tin, h) = (p.n, p.input_len, p.output_len);
    let mut out = Vec::with_capacity(samples.len() * h * n);
    for s in samples.clone() {
        for k in 0..h {
            let row = (s + tin + k) * n;
            out.extend_from_slice(&p.target[row..row + n]);
        }
    }
    out
}

/// Historical average: for each sensor and slot `step % steps_per_day`, the mean of the
/// non-null training values (the sensor's overall training mean where a slot has none).
/// Returns forecasts `[S, H, N]` for `samples`.
pub fn historical_average(p: &Prepared, samples: &Range<usize>) -> Vec<f32> {
    let n = p.n;
    // Only the steps training inputs and targets read: the end of the last training window.
    let fit_end = p.splits.fitted_steps_end(p.input_len + p.output_len, p.t);
    let means = SlotMeans::fit(&p.target, n, p.steps_per_day, fit_end, p.null_value, None);
    let mut out = Vec::with_capacity(samples.len() * p.output_len * n);
    for s in samples.clone() {
        for h in 0..p.output_len {
            let step = s + p.input_len + h;
            out.extend((0..n).map(|j| means.mean(step, j, None).unwrap_or(0.0)));
        }
    }
    out
}

/// Last value: every horizon repeats the last observed input value of each sensor.
pub fn last_value(p: &Prepared, samples: &Range<usize>) -> Vec<f32> {
    let n = p.n;
    let mut out = Vec::with_capacity(samples.len() * p.output_len * n);
    for s in samples.clone() {
        let row = (s + p.input_len - 1) * n;
        for _ in 0..p.output_len {
            out.extend_from_slice(&p.target[row..row + n]);
        }
    }
    out
}

/// Scores forecasts `[S, H, N]` against the targets of `samples`.
pub fn score(p: &Prepared, samples: &Range<usize>, forecast: &[f32]) -> Result<MetricsTable> {
    let y = targets(p, samples);
    if y.len() != forecast.len() || y.is_empty() {
        return Err(Error::Config(format!(
            "forecast has {} values, the targets {}",
            forecast.len(),
            y.len()
        )));
    }
    let shape = [samples.len() as i64, p.output_len as i64, p.n as i64];
    let yt = Tensor::f_from_slice(&y)?.f_reshape(shape)?;
    let ft = Tensor::f_from_slice(forecast)?.f_reshape(shape)?;
    Ok(MetricsTable::compute(
        &ft,
        &yt,
        p.null_value.map(|v| v as f64),
    )?)
}
