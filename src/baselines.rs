//! Classical baselines on the same split as the search: historical average (per sensor and
//! time-of-day slot, fitted on the training steps) and last value. Their forecasts are scored
//! with the same masked metrics, over exactly the test samples the models are scored on.

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

fn is_null(p: &Prepared, v: f32) -> bool {
    p.null_value.is_some_and(|z| v == z) || !v.is_finite()
}

/// Historical average: for each sensor and slot `step % steps_per_day`, the mean of the
/// non-null training values (the sensor's overall training mean where a slot has none).
/// Returns forecasts `[S, H, N]` for `samples`.
pub fn historical_average(p: &Prepared, samples: &Range<usize>) -> Vec<f32> {
    let (n, period) = (p.n, p.steps_per_day.max(1));
    // Only the steps training inputs and targets read: the end of the last training window.
    let fit_end = (p.splits.train.end + p.input_len + p.output_len)
        .saturating_sub(1)
        .min(p.t);
    let mut sum = vec![0f64; period * n];
    let mut cnt = vec![0u32; period * n];
    let mut tot = vec![0f64; n];
    let mut tot_cnt = vec![0u32; n];
    for step in 0..fit_end {
        for j in 0..n {
            let v = p.target[step * n + j];
            if is_null(p, v) {
                continue;
            }
            let k = (step % period) * n + j;
            sum[k] += v as f64;
            cnt[k] += 1;
            tot[j] += v as f64;
            tot_cnt[j] += 1;
        }
    }
    let mut out = Vec::with_capacity(samples.len() * p.output_len * n);
    for s in samples.clone() {
        for h in 0..p.output_len {
            let slot = (s + p.input_len + h) % period;
            for j in 0..n {
                let k = slot * n + j;
                let v = if cnt[k] > 0 {
                    sum[k] / cnt[k] as f64
                } else if tot_cnt[j] > 0 {
                    tot[j] / tot_cnt[j] as f64
                } else {
                    0.0
                };
                out.push(v as f32);
            }
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
