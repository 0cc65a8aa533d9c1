//! Turns a `RawDataset` into model-ready arrays: chronological
//! train/val/test sample splits, z-score scalers fitted on the training
//! steps only, the time-of-day and historical-average features, and a
//! printable summary.

use std::fmt;
use std::ops::Range;

use serde::{Deserialize, Serialize};

use super::graph::{density, edge_count};
use super::{DataError, RawDataset};

/// How to window and split a data set.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PrepareConfig {
    /// Input window length (steps).
    pub input_len: usize,
    /// Horizon (steps) predicted after the input window.
    pub output_len: usize,
    /// Train, val, test ratios of the samples; must sum to 1.
    pub split: [f64; 3],
    /// Append the time-of-day fraction as the last input feature.
    pub time_of_day: bool,
    /// Append two per-sensor historical-average features after the selected ones: the mean of
    /// the target at the step's slot of the day, and at the slot `output_len` steps later (a
    /// step as far ahead as the horizon: with `input_len = output_len`, input position `i`
    /// carries the usual value of target step `i`), both in the target's z-scores. Fitted on
    /// the steps the training windows read; a step inside that range leaves its own value out,
    /// so training sees the feature as validation and test do: built from other days only. Off by default (`scripts/ha_feature_probe.py` measured
    /// the information; BENCHMARKS.md says what it does to trained models).
    pub historical_average: bool,
    /// Take the historical-average inputs over the days of the step's own type only, weekdays
    /// (Monday to Friday) or weekends, falling back to all days where its type has no other
    /// value at that slot: a Tuesday's usual 5 pm is a weekday's, not the mean of a week that
    /// holds a weekend. Needs `historical_average` and the data's calendar (the data spec's
    /// `start`); assumes `steps_per_day` is a day. Off by default
    /// (`scripts/ha_feature_probe.py --start` measures the information).
    pub day_type: bool,
    /// Feature index the model predicts.
    pub target_feature: usize,
    /// Input feature indices; default `[target_feature]`.
    pub input_features: Option<Vec<usize>>,
}

impl Default for PrepareConfig {
    fn default() -> Self {
        PrepareConfig {
            input_len: 12,
            output_len: 12,
            split: [0.7, 0.1, 0.2],
            time_of_day: true,
            historical_average: false,
            day_type: false,
            target_feature: 0,
            input_features: None,
        }
    }
}

/// z-score parameters.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct Scaler {
    pub mean: f32,
    pub std: f32,
}

impl Scaler {
    /// Smallest std used, so a constant series does not divide by zero.
    pub const STD_FLOOR: f32 = 1e-6;

    /// Fits on `values`, skipping entries equal to `null`. `None` when no
    /// value remains.
    pub fn fit<'a>(values: impl IntoIterator<Item = &'a f32>, null: Option<f32>) -> Option<Scaler> {
        let (mut n, mut sum, mut sq) = (0u64, 0f64, 0f64);
        for v in values {
            if null == Some(*v) {
                continue;
            }
            let x = f64::from(*v);
            n += 1;
            sum += x;
            sq += x * x;
        }
        if n == 0 {
            return None;
        }
        let mean = sum / n as f64;
        let var = (sq / n as f64 - mean * mean).max(0.0);
        Some(Scaler {
            mean: mean as f32,
            std: (var.sqrt() as f32).max(Self::STD_FLOOR),
        })
    }
    pub fn transform(&self, x: f32) -> f32 {
        (x - self.mean) / self.std
    }
    pub fn inverse(&self, z: f32) -> f32 {
        z * self.std + self.mean
    }
    pub fn transform_slice(&self, xs: &mut [f32]) {
        xs.iter_mut().for_each(|x| *x = self.transform(*x));
    }
    pub fn inverse_slice(&self, zs: &mut [f32]) {
        zs.iter_mut().for_each(|z| *z = self.inverse(*z));
    }
}

/// Ranges of sample start indices. A sample starting at `s` reads steps
/// `s..s+input_len` and predicts `s+input_len..s+input_len+output_len`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Splits {
    pub train: Range<usize>,
    pub val: Range<usize>,
    pub test: Range<usize>,
}

impl Splits {
    /// Chronological split of `num_samples` by `ratios` (train, val, test),
    /// rounded like DCRNN: train and test are rounded, val takes the rest.
    pub fn new(num_samples: usize, ratios: [f64; 3]) -> Splits {
        let num = num_samples as f64;
        let train = ((num * ratios[0]).round() as usize).min(num_samples);
        let test = ((num * ratios[2]).round() as usize).min(num_samples - train);
        let val = num_samples - train - test;
        Splits {
            train: 0..train,
            val: train..train + val,
            test: train + val..num_samples,
        }
    }
    pub fn num_samples(&self) -> usize {
        self.test.end
    }

    /// One past the last series step that the training samples read, inputs and targets, for
    /// samples spanning `window` steps, capped at the series length `t`. A statistic fitted on
    /// the steps before it sees no step that only validation or test samples read.
    pub fn fitted_steps_end(&self, window: usize, t: usize) -> usize {
        (self.train.end + window).saturating_sub(1).min(t)
    }
}

/// Model-ready data.
#[derive(Clone, Debug)]
pub struct Prepared {
    pub name: String,
    pub t: usize,
    pub n: usize,
    /// Selected input features, plus 2 with the historical average, plus 1 with the time of day.
    pub in_features: usize,
    /// `[t, n, in_features]`: z-scored selected features, then the historical average (at the
    /// step's slot, then `output_len` steps later), then time of day.
    pub inputs: Vec<f32>,
    /// One scaler per selected input feature (same order).
    pub input_scalers: Vec<Scaler>,
    /// `[t, n]` raw target feature; null values kept (masked in the loss).
    pub target: Vec<f32>,
    /// Target scaler: models predict z-scores, de-normalized with this.
    pub scaler: Scaler,
    pub null_value: Option<f32>,
    pub splits: Splits,
    pub input_len: usize,
    pub output_len: usize,
    /// `[n, n]` weighted adjacency.
    pub adj: Vec<f32>,
    pub steps_per_day: usize,
}

impl Prepared {
    /// Steps a sample starting at `s` reads as input.
    pub fn input_steps(&self, s: usize) -> Range<usize> {
        s..s + self.input_len
    }
    /// Steps a sample starting at `s` predicts.
    pub fn target_steps(&self, s: usize) -> Range<usize> {
        s + self.input_len..s + self.input_len + self.output_len
    }
    /// Steps touched by the samples in `samples` (inputs and targets).
    pub fn steps_of(&self, samples: &Range<usize>) -> Range<usize> {
        if samples.is_empty() {
            return samples.start..samples.start;
        }
        samples.start..samples.end - 1 + self.input_len + self.output_len
    }
    /// The same series restricted to `nodes` (in that order): inputs, targets and the
    /// adjacency among them. Scalers stay those of the whole set, so values keep their units.
    /// Used by proxies that train on a subset of the graph for more steps at equal cost.
    pub fn subset_nodes(&self, nodes: &[usize]) -> Result<Prepared, DataError> {
        if let Some(&bad) = nodes.iter().find(|&&v| v >= self.n) {
            return Err(DataError::Config {
                msg: format!(
                    "{}: node {bad} out of range (the set has {} nodes)",
                    self.name, self.n
                ),
            });
        }
        let (n, f) = (self.n, self.in_features);
        let mut inputs = Vec::with_capacity(self.t * nodes.len() * f);
        let mut target = Vec::with_capacity(self.t * nodes.len());
        for t in 0..self.t {
            for &v in nodes {
                let at = (t * n + v) * f;
                inputs.extend_from_slice(&self.inputs[at..at + f]);
                target.push(self.target[t * n + v]);
            }
        }
        let adj = nodes
            .iter()
            .flat_map(|&a| nodes.iter().map(move |&b| self.adj[a * n + b]))
            .collect();
        Ok(Prepared {
            name: format!("{} ({} of {} nodes)", self.name, nodes.len(), n),
            n: nodes.len(),
            inputs,
            target,
            adj,
            ..self.clone()
        })
    }

    /// Share of target entries equal to the null value.
    pub fn missing_ratio(&self) -> f64 {
        missing_ratio(&self.target, self.null_value)
    }

    pub fn summary(&self) -> DataSummary {
        let split = |name: &'static str, r: &Range<usize>| SplitSummary {
            split: name,
            samples: r.len(),
            steps: self.steps_of(r),
        };
        DataSummary {
            name: self.name.clone(),
            t: self.t,
            n: self.n,
            in_features: self.in_features,
            input_len: self.input_len,
            output_len: self.output_len,
            steps_per_day: self.steps_per_day,
            missing_ratio: self.missing_ratio(),
            splits: vec![
                split("train", &self.splits.train),
                split("val", &self.splits.val),
                split("test", &self.splits.test),
            ],
            scaler: self.scaler,
            edges: edge_count(&self.adj, self.n),
            density: density(&self.adj, self.n),
        }
    }
}

/// Share of `values` equal to `null` (0 when `null` is `None` or empty).
pub fn missing_ratio(values: &[f32], null: Option<f32>) -> f64 {
    match null {
        Some(nv) if !values.is_empty() => {
            values.iter().filter(|v| **v == nv).count() as f64 / values.len() as f64
        }
        _ => 0.0,
    }
}

/// One split's line in the summary.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct SplitSummary {
    pub split: &'static str,
    pub samples: usize,
    /// Steps covered by the split's inputs and targets.
    pub steps: Range<usize>,
}

/// What a run should log about its data.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct DataSummary {
    pub name: String,
    pub t: usize,
    pub n: usize,
    pub in_features: usize,
    pub input_len: usize,
    pub output_len: usize,
    pub steps_per_day: usize,
    /// Share of target entries that are null (missing).
    pub missing_ratio: f64,
    pub splits: Vec<SplitSummary>,
    pub scaler: Scaler,
    /// Non-zero off-diagonal adjacency entries.
    pub edges: usize,
    /// `edges / (n * (n - 1))`.
    pub density: f64,
}

impl fmt::Display for DataSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "data set        {}", self.name)?;
        writeln!(f, "steps x nodes   {} x {}", self.t, self.n)?;
        writeln!(
            f,
            "window          {} in -> {} out, {} input feature(s), {} steps/day",
            self.input_len, self.output_len, self.in_features, self.steps_per_day
        )?;
        writeln!(f, "missing target  {:.2}%", self.missing_ratio * 100.0)?;
        writeln!(
            f,
            "target scaler   mean {:.4}, std {:.4}",
            self.scaler.mean, self.scaler.std
        )?;
        writeln!(
            f,
            "graph           {} edges, density {:.4}",
            self.edges, self.density
        )?;
        writeln!(f, "{:<8} {:>8}  steps", "split", "samples")?;
        for s in &self.splits {
            writeln!(
                f,
                "{:<8} {:>8}  {}..{}",
                s.split, s.samples, s.steps.start, s.steps.end
            )?;
        }
        Ok(())
    }
}

/// Windows, splits and normalizes a raw data set.
pub fn prepare(raw: &RawDataset, cfg: &PrepareConfig) -> Result<Prepared, DataError> {
    let sig = &raw.signal;
    let (t, n, f) = (sig.t, sig.n, sig.f);
    if cfg.input_len == 0 || cfg.output_len == 0 {
        return Err(DataError::config(
            "input_len and output_len must be at least 1",
        ));
    }
    if cfg.split.iter().any(|r| !r.is_finite() || *r < 0.0)
        || (cfg.split.iter().sum::<f64>() - 1.0).abs() > 1e-6
    {
        return Err(DataError::config(format!(
            "split ratios {:?} must be non-negative and sum to 1",
            cfg.split
        )));
    }
    if raw.steps_per_day == 0 {
        return Err(DataError::config("steps_per_day must be at least 1"));
    }
    if sig.values.len() != t * n * f || raw.graph.adj.len() != n * n || raw.graph.n != n {
        return Err(DataError::config(format!(
            "data set `{}` is inconsistent: signal {t}x{n}x{f} with {} values, graph of {} nodes with {} entries",
            raw.name,
            sig.values.len(),
            raw.graph.n,
            raw.graph.adj.len()
        )));
    }
    if cfg.target_feature >= f {
        return Err(DataError::config(format!(
            "target_feature {} but the data set has {f} feature(s)",
            cfg.target_feature
        )));
    }
    let features = cfg
        .input_features
        .clone()
        .unwrap_or_else(|| vec![cfg.target_feature]);
    if features.is_empty() {
        return Err(DataError::config("input_features is empty"));
    }
    if let Some(bad) = features.iter().find(|k| **k >= f) {
        return Err(DataError::config(format!(
            "input feature {bad} but the data set has {f} feature(s)"
        )));
    }

    let window = cfg.input_len + cfg.output_len;
    let num_samples = (t + 1).saturating_sub(window);
    let splits = Splits::new(num_samples, cfg.split);
    for (name, r, ratio) in [
        ("train", &splits.train, cfg.split[0]),
        ("val", &splits.val, cfg.split[1]),
        ("test", &splits.test, cfg.split[2]),
    ] {
        if r.is_empty() {
            // Steps needed so that round(num * ratio) >= 1 for this split.
            let need_samples = if ratio > 0.0 {
                (0.5 / ratio).ceil() as usize
            } else {
                0
            };
            let hint = if ratio > 0.0 {
                format!(
                    "needs about {} steps (at least {need_samples} samples of {window} steps each)",
                    need_samples + window - 1
                )
            } else {
                "its ratio is 0".to_string()
            };
            return Err(DataError::EmptySplit {
                dataset: raw.name.clone(),
                split: name,
                msg: format!(
                    "{t} steps give {num_samples} samples of {} in + {} out; {hint}",
                    cfg.input_len, cfg.output_len
                ),
            });
        }
    }

    // The scaler sees only the steps the training inputs read (DCRNN fits
    // on x_train), so nothing from val/test leaks into the normalization.
    let train_steps = 0..splits.train.end - 1 + cfg.input_len;
    let column = |k: usize| {
        let range = train_steps.clone();
        sig.values
            .chunks_exact(f)
            .skip(range.start * n)
            .take(range.len() * n)
            .map(move |row| &row[k])
    };
    let fit = |k: usize| -> Result<Scaler, DataError> {
        Scaler::fit(column(k), raw.null_value).ok_or_else(|| DataError::EmptySplit {
            dataset: raw.name.clone(),
            split: "train",
            msg: format!(
                "feature {k} has only null values ({:?}) in training steps {}..{}",
                raw.null_value, train_steps.start, train_steps.end
            ),
        })
    };
    let scaler = fit(cfg.target_feature)?;
    let input_scalers = features
        .iter()
        .map(|k| {
            if *k == cfg.target_feature {
                Ok(scaler)
            } else {
                fit(*k)
            }
        })
        .collect::<Result<Vec<Scaler>, DataError>>()?;

    let target: Vec<f32> = sig
        .values
        .chunks_exact(f)
        .map(|row| row[cfg.target_feature])
        .collect();
    let day_types = if cfg.day_type {
        if !cfg.historical_average {
            return Err(DataError::config(
                "data.prepare.day_type splits the historical-average inputs by day type: \
                 it needs data.prepare.historical_average = true",
            ));
        }
        let first_weekday = raw.first_weekday.ok_or_else(|| {
            DataError::config(format!(
                "data.prepare.day_type needs the calendar day of the first step of `{}`: \
                 give its data spec a `start` date (YYYY-MM-DD)",
                raw.name
            ))
        })?;
        Some(DayTypes {
            first_weekday,
            steps_per_day: raw.steps_per_day,
        })
    } else {
        None
    };
    let slot_means = cfg.historical_average.then(|| {
        // The steps the training windows read, as the historical-average baseline fits.
        let fit_end = splits.fitted_steps_end(window, t);
        SlotMeans::fit(
            &target,
            n,
            raw.steps_per_day,
            fit_end,
            raw.null_value,
            day_types,
        )
    });
    let in_features =
        features.len() + 2 * usize::from(cfg.historical_average) + usize::from(cfg.time_of_day);
    let mut inputs = Vec::with_capacity(t * n * in_features);
    for (idx, row) in sig.values.chunks_exact(f).enumerate() {
        let (step, node) = (idx / n, idx % n);
        for (k, sc) in features.iter().zip(&input_scalers) {
            inputs.push(sc.transform(row[*k]));
        }
        if let Some(m) = &slot_means {
            inputs.push(scaler.transform(m.at(&target, step, node, scaler.mean)));
            inputs.push(scaler.transform(m.at(&target, step + cfg.output_len, node, scaler.mean)));
        }
        if cfg.time_of_day {
            inputs.push((step % raw.steps_per_day) as f32 / raw.steps_per_day as f32);
        }
    }

    Ok(Prepared {
        name: raw.name.clone(),
        t,
        n,
        in_features,
        inputs,
        input_scalers,
        target,
        scaler,
        null_value: raw.null_value,
        splits,
        input_len: cfg.input_len,
        output_len: cfg.output_len,
        adj: raw.graph.adj.clone(),
        steps_per_day: raw.steps_per_day,
    })
}

/// Which steps are weekdays: the calendar of `data.prepare.day_type`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DayTypes {
    /// The first step's day of the week, 0 for Monday.
    pub(crate) first_weekday: u8,
    pub(crate) steps_per_day: usize,
}

impl DayTypes {
    /// 0 for a weekday, 1 for a Saturday or Sunday.
    fn of(&self, step: usize) -> usize {
        let day = step / self.steps_per_day.max(1) + usize::from(self.first_weekday);
        usize::from(day % 7 >= 5)
    }
}

/// Per-sensor means of the target by slot of the day over the fitted steps `0..fit_end`: the
/// historical-average features here, and the historical-average baseline
/// (`crate::baselines::historical_average`).
pub(crate) struct SlotMeans {
    n: usize,
    period: usize,
    fit_end: usize,
    null: Option<f32>,
    /// `[period, n]` sums and counts of the valid values.
    sum: Vec<f64>,
    count: Vec<u32>,
    /// With day types, `[2, period, n]` sums and counts by day type (weekday, weekend): what
    /// `mean` answers first.
    by_type: Option<(DayTypes, Vec<f64>, Vec<u32>)>,
    /// `[n]` the same over all slots: the fallback for a slot with no other value.
    total: Vec<f64>,
    total_count: Vec<u32>,
}

impl SlotMeans {
    /// Fits on `target` (`[t, n]`, raw values) over steps `0..fit_end`, skipping null and
    /// non-finite values; with `day_types`, also by day type (what `mean` answers first).
    pub(crate) fn fit(
        target: &[f32],
        n: usize,
        period: usize,
        fit_end: usize,
        null: Option<f32>,
        day_types: Option<DayTypes>,
    ) -> Self {
        let period = period.max(1);
        let mut m = SlotMeans {
            n,
            period,
            fit_end,
            null,
            sum: vec![0.0; period * n],
            count: vec![0; period * n],
            by_type: day_types.map(|t| (t, vec![0.0; 2 * period * n], vec![0; 2 * period * n])),
            total: vec![0.0; n],
            total_count: vec![0; n],
        };
        for step in 0..fit_end {
            let typed = m.by_type.as_ref().map(|(t, _, _)| t.of(step) * period * n);
            for j in 0..n {
                let v = target[step * n + j];
                if m.valid(v) {
                    let k = (step % period) * n + j;
                    m.sum[k] += f64::from(v);
                    m.count[k] += 1;
                    m.total[j] += f64::from(v);
                    m.total_count[j] += 1;
                    if let (Some(base), Some((_, sum, count))) = (typed, m.by_type.as_mut()) {
                        sum[base + k] += f64::from(v);
                        count[base + k] += 1;
                    }
                }
            }
        }
        m
    }

    fn valid(&self, v: f32) -> bool {
        v.is_finite() && self.null != Some(v)
    }

    /// The mean of sensor `j` at `step`'s slot, leaving `step`'s own value out when it was
    /// fitted; the sensor's mean over all fitted slots (also without it) where the slot has no
    /// other value, and `fallback` where the sensor has none at all. `step` may lie past the
    /// series (a slot is all it needs).
    fn at(&self, target: &[f32], step: usize, j: usize, fallback: f32) -> f32 {
        let own = (step < self.fit_end)
            .then(|| target[step * self.n + j])
            .filter(|v| self.valid(*v))
            .map(f64::from);
        self.mean(step, j, own).unwrap_or(fallback)
    }

    /// The mean of sensor `j` at `step`'s slot without the fitted value `leave_out` (if any),
    /// taken over the days of `step`'s type first where day types are on; else its mean over
    /// all fitted slots without it; `None` where no other value is left.
    pub(crate) fn mean(&self, step: usize, j: usize, leave_out: Option<f64>) -> Option<f32> {
        let (own_sum, own_count) = leave_out.map_or((0.0, 0), |v| (v, 1));
        let k = (step % self.period) * self.n + j;
        if let Some((types, sum, count)) = &self.by_type {
            // A fitted step's own value is counted under its own type.
            let kt = types.of(step) * self.period * self.n + k;
            if count[kt] > own_count {
                return Some(((sum[kt] - own_sum) / f64::from(count[kt] - own_count)) as f32);
            }
        }
        if self.count[k] > own_count {
            return Some(((self.sum[k] - own_sum) / f64::from(self.count[k] - own_count)) as f32);
        }
        if self.total_count[j] > own_count {
            return Some(
                ((self.total[j] - own_sum) / f64::from(self.total_count[j] - own_count)) as f32,
            );
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Graph, Signal};
    use std::path::PathBuf;

    fn raw(t: usize, n: usize, f: usize, values: Vec<f32>, null: Option<f32>) -> RawDataset {
        RawDataset {
            name: "toy".into(),
            signal: Signal { values, t, n, f },
            graph: Graph {
                n,
                adj: (0..n * n)
                    .map(|k| if k % (n + 1) == 0 { 1.0 } else { 0.5 })
                    .collect(),
                node_ids: None,
            },
            signal_path: PathBuf::from("toy.npz"),
            graph_path: PathBuf::from("toy.csv"),
            steps_per_day: 4,
            null_value: null,
            first_weekday: None,
        }
    }

    fn ramp(t: usize, n: usize, f: usize) -> Vec<f32> {
        (0..t * n * f).map(|i| (i + 1) as f32).collect()
    }

    #[test]
    fn split_counts_like_dcrnn() {
        // METR-LA: 34272 steps, 12 + 12 => 34249 samples; DCRNN's 23974 / 3425 / 6850.
        let s = Splits::new(34249, [0.7, 0.1, 0.2]);
        assert_eq!(
            (s.train.len(), s.val.len(), s.test.len()),
            (23974, 3425, 6850)
        );
        assert_eq!(
            (s.train.start, s.val.start, s.test.start, s.test.end),
            (0, 23974, 27399, 34249)
        );
        let cfg = PrepareConfig::default();
        let p = prepare(&raw(123, 2, 1, ramp(123, 2, 1), None), &cfg).unwrap();
        // 123 - 24 + 1 = 100 samples: 70 / 10 / 20.
        assert_eq!(
            p.splits,
            Splits {
                train: 0..70,
                val: 70..80,
                test: 80..100
            }
        );
        let p = prepare(
            &raw(123, 2, 1, ramp(123, 2, 1), None),
            &PrepareConfig {
                split: [0.6, 0.2, 0.2],
                ..cfg.clone()
            },
        )
        .unwrap();
        assert_eq!(
            p.splits,
            Splits {
                train: 0..60,
                val: 60..80,
                test: 80..100
            }
        );
    }

    #[test]
    fn windows_cover_the_series_exactly() {
        let cfg = PrepareConfig {
            input_len: 3,
            output_len: 2,
            ..Default::default()
        };
        let p = prepare(&raw(54, 1, 1, ramp(54, 1, 1), None), &cfg).unwrap();
        assert_eq!(p.splits.num_samples(), 50);
        assert_eq!(p.input_steps(0), 0..3);
        assert_eq!(p.target_steps(0), 3..5);
        let last = p.splits.test.end - 1;
        assert_eq!(p.target_steps(last).end, p.t);
        assert_eq!(p.steps_of(&p.splits.test), p.splits.test.start..p.t);
        // Consecutive splits' first samples follow on.
        assert_eq!(p.splits.val.start, p.splits.train.end);
        // The fitted steps end where the last training sample's targets end.
        let last_train = p.splits.train.end - 1;
        assert_eq!(
            p.splits.fitted_steps_end(5, p.t),
            p.target_steps(last_train).end
        );
        assert_eq!(p.splits.fitted_steps_end(5, 20), 20);
    }

    #[test]
    fn a_node_subset_keeps_its_series_and_edges() {
        let (t, n) = (30, 3);
        let cfg = PrepareConfig {
            input_len: 2,
            output_len: 2,
            ..Default::default()
        };
        let p = prepare(&raw(t, n, 1, ramp(t, n, 1), None), &cfg).unwrap();
        let s = p.subset_nodes(&[2, 0]).unwrap();
        assert_eq!((s.n, s.t, s.in_features), (2, p.t, p.in_features));
        let f = p.in_features;
        for step in [0, 7, t - 1] {
            assert_eq!(s.target[step * 2], p.target[step * n + 2]);
            assert_eq!(s.target[step * 2 + 1], p.target[step * n]);
            assert_eq!(
                s.inputs[step * 2 * f..(step * 2 + 1) * f],
                p.inputs[(step * n + 2) * f..(step * n + 3) * f]
            );
        }
        assert_eq!(
            s.adj,
            vec![p.adj[2 * n + 2], p.adj[2 * n], p.adj[2], p.adj[0]]
        );
        assert_eq!(s.scaler, p.scaler, "values keep the whole set's units");
        let err = p.subset_nodes(&[0, 3]).unwrap_err().to_string();
        assert!(err.contains("node 3 out of range"), "{err}");
    }

    #[test]
    fn scaler_uses_only_training_steps() {
        let (t, n) = (100, 2);
        let cfg = PrepareConfig {
            input_len: 4,
            output_len: 4,
            ..Default::default()
        };
        let base = ramp(t, n, 1);
        let p0 = prepare(&raw(t, n, 1, base.clone(), None), &cfg).unwrap();
        // 93 samples: train 0..65, training inputs read steps 0..68.
        assert_eq!(p0.splits.train, 0..65);
        let train_vals: Vec<f32> = base[..68 * n].to_vec();
        let expect = Scaler::fit(&train_vals, None).unwrap();
        assert_eq!(p0.scaler, expect);
        // A huge value in the test part (or just past the training inputs) changes nothing.
        for step in [p0.splits.test.start + 5, 68] {
            let mut v = base.clone();
            v[step * n] = 1e6;
            let p = prepare(&raw(t, n, 1, v, None), &cfg).unwrap();
            assert_eq!(p.scaler, p0.scaler, "step {step}");
            // ...but it is in the raw target.
            assert_eq!(p.target[step * n], 1e6);
        }
        // The last training input step does count.
        let mut v = base.clone();
        v[67 * n] = 1e6;
        assert_ne!(
            prepare(&raw(t, n, 1, v, None), &cfg).unwrap().scaler,
            p0.scaler
        );
    }

    #[test]
    fn nulls_are_ignored_and_kept_in_target() {
        let (t, n) = (40, 2);
        let mut v = vec![10.0f32; t * n];
        v[1] = 0.0;
        v[3] = 0.0;
        v[5] = 20.0;
        let cfg = PrepareConfig {
            input_len: 2,
            output_len: 2,
            ..Default::default()
        };
        let p = prepare(&raw(t, n, 1, v.clone(), Some(0.0)), &cfg).unwrap();
        let expect = Scaler::fit(v[..27 * n].iter().filter(|x| **x != 0.0), None).unwrap();
        assert_eq!(p.scaler, expect);
        assert!(p.scaler.mean > 10.0);
        assert_eq!(p.target[1], 0.0);
        assert!((p.missing_ratio() - 2.0 / 80.0).abs() < 1e-12);
        // All-null training part.
        let mut z = vec![0.0f32; t * n];
        z[t * n - 1] = 5.0;
        let e = prepare(&raw(t, n, 1, z, Some(0.0)), &cfg).unwrap_err();
        assert!(
            matches!(e, DataError::EmptySplit { split: "train", .. }),
            "{e}"
        );
        assert!(e.to_string().contains("toy"));
    }

    #[test]
    fn time_of_day_and_feature_layout() {
        let (t, n, f) = (30, 2, 3);
        let cfg = PrepareConfig {
            input_len: 2,
            output_len: 2,
            target_feature: 2,
            input_features: Some(vec![2, 0]),
            ..Default::default()
        };
        let values = ramp(t, n, f);
        let p = prepare(&raw(t, n, f, values.clone(), None), &cfg).unwrap();
        assert_eq!(p.in_features, 3);
        assert_eq!(p.inputs.len(), t * n * 3);
        assert_eq!(p.input_scalers.len(), 2);
        assert_eq!(p.input_scalers[0], p.scaler);
        assert_ne!(p.input_scalers[1], p.scaler);
        for step in 0..t {
            for node in 0..n {
                let row = &p.inputs[(step * n + node) * 3..(step * n + node + 1) * 3];
                let src = &values[(step * n + node) * f..(step * n + node + 1) * f];
                assert!((row[0] - p.scaler.transform(src[2])).abs() < 1e-6);
                assert!((p.input_scalers[1].inverse(row[1]) - src[0]).abs() < 1e-3);
                // steps_per_day = 4: 0, 0.25, 0.5, 0.75, 0, ...
                assert_eq!(row[2], (step % 4) as f32 / 4.0);
                assert_eq!(p.target[step * n + node], src[2]);
            }
        }
        let no_tod = PrepareConfig {
            time_of_day: false,
            ..cfg
        };
        assert_eq!(
            prepare(&raw(t, n, f, values, None), &no_tod)
                .unwrap()
                .in_features,
            2
        );
    }

    #[test]
    fn historical_average_leaves_out_its_own_step_and_sees_no_test_value() {
        // steps_per_day = 4; 40 steps, 2 + 2 windows: 37 samples, train 0..26, so the fit
        // covers steps 0..29 (what training windows read).
        let (t, n) = (40, 2);
        let values: Vec<f32> = (0..t * n)
            .map(|i| ((i / n) as f32 * 1.7).sin() * 10.0 + 50.0 + (i % n) as f32 * 20.0)
            .collect();
        let cfg = PrepareConfig {
            input_len: 2,
            output_len: 2,
            historical_average: true,
            ..Default::default()
        };
        let p = prepare(&raw(t, n, 1, values.clone(), Some(0.0)), &cfg).unwrap();
        assert_eq!(p.splits.train, 0..26);
        assert_eq!(p.in_features, 4, "value, two averages, time of day");
        let fit_end = 29;
        // The mean of node j's fitted values at `step`'s slot, other than `step` itself.
        let usual = |v: &[f32], step: usize, j: usize| {
            let others: Vec<f64> = (0..fit_end)
                .filter(|&s| s % 4 == step % 4 && s != step && v[s * n + j] != 0.0)
                .map(|s| f64::from(v[s * n + j]))
                .collect();
            (others.iter().sum::<f64>() / others.len() as f64) as f32
        };
        let feature = |p: &Prepared, step: usize, j: usize, k: usize| {
            p.scaler.inverse(p.inputs[(step * n + j) * 4 + k])
        };
        for step in 0..t {
            for j in 0..n {
                assert!(
                    (feature(&p, step, j, 1) - usual(&values, step, j)).abs() < 1e-3,
                    "step {step} node {j}"
                );
                assert!(
                    (feature(&p, step, j, 2) - usual(&values, step + 2, j)).abs() < 1e-3,
                    "step {step} node {j}, two steps ahead"
                );
                assert_eq!(p.inputs[(step * n + j) * 4 + 3], (step % 4) as f32 / 4.0);
            }
        }
        // A value past the fit changes no average; a fitted one changes its slot's averages
        // at every other step, never its own step's.
        let averages = |p: &Prepared| -> Vec<f32> {
            p.inputs
                .chunks_exact(4)
                .flat_map(|r| [r[1], r[2]])
                .collect()
        };
        let mut v = values.clone();
        v[35 * n] = 1e4;
        let q = prepare(&raw(t, n, 1, v, Some(0.0)), &cfg).unwrap();
        assert_eq!(averages(&q), averages(&p));
        let mut v = values.clone();
        v[9 * n] = 1e4;
        let q = prepare(&raw(t, n, 1, v, Some(0.0)), &cfg).unwrap();
        assert_ne!(q.scaler, p.scaler);
        let usual_of = |p: &Prepared, step: usize| feature(p, step, 0, 1);
        assert!((usual_of(&q, 9) - usual(&values, 9, 0)).abs() < 1e-3);
        assert!(usual_of(&q, 13) > 1000.0 && usual_of(&q, 37) > 1000.0);
        // Nulls are skipped; a slot whose only fitted value is the step's own falls back to the
        // node's mean over the other fitted steps.
        let mut v = vec![10.0f32; t * n];
        for s in (1..fit_end).step_by(4).skip(1) {
            v[s * n] = 0.0;
        }
        v[n] = 30.0;
        let q = prepare(&raw(t, n, 1, v.clone(), Some(0.0)), &cfg).unwrap();
        assert!((usual_of(&q, 1) - 10.0).abs() < 1e-3, "{}", usual_of(&q, 1));
        assert!((usual_of(&q, 5) - 30.0).abs() < 1e-3, "{}", usual_of(&q, 5));
        assert!((usual_of(&q, 33) - 30.0).abs() < 1e-3);
        // Off by default: the layout of every earlier run.
        assert!(!PrepareConfig::default().historical_average);
    }

    #[test]
    fn day_type_averages_over_the_days_of_the_steps_own_type() {
        // steps_per_day = 4, three weeks from a Thursday: days 2, 3, 9, 10, 16 and 17 are a
        // weekend. A weekday's slot follows one pattern, a weekend's another, plus a little
        // noise so that each mean leaving its own step out differs from the next.
        let (t, n, first) = (84, 2, 3u8);
        let weekend = |step: usize| (step / 4 + 3) % 7 >= 5;
        let values: Vec<f32> = (0..t * n)
            .map(|i| {
                let (step, j) = (i / n, i % n);
                let base = if weekend(step) { 60.0 } else { 40.0 };
                base + (step % 4) as f32 * 3.0 + j as f32 * 10.0 + ((i as f32) * 0.77).sin()
            })
            .collect();
        let cfg = PrepareConfig {
            input_len: 2,
            output_len: 2,
            historical_average: true,
            day_type: true,
            ..Default::default()
        };
        let mut r = raw(t, n, 1, values.clone(), Some(0.0));
        r.first_weekday = Some(first);
        let p = prepare(&r, &cfg).unwrap();
        let fit_end = p.splits.fitted_steps_end(4, t);
        assert!(fit_end > 11 * 4 && fit_end < t, "the fit holds both types");
        // The mean over fitted steps of the same slot and day type, other than `step`.
        let usual = |step: usize, j: usize| {
            let others: Vec<f64> = (0..fit_end)
                .filter(|&s| s % 4 == step % 4 && weekend(s) == weekend(step) && s != step)
                .map(|s| f64::from(values[s * n + j]))
                .collect();
            (others.iter().sum::<f64>() / others.len() as f64) as f32
        };
        let feature =
            |step: usize, j: usize, k: usize| p.scaler.inverse(p.inputs[(step * n + j) * 4 + k]);
        for step in 0..t {
            for j in 0..n {
                let (now, ahead) = (feature(step, j, 1), feature(step, j, 2));
                assert!((now - usual(step, j)).abs() < 1e-3, "step {step} node {j}");
                assert!(
                    (ahead - usual(step + 2, j)).abs() < 1e-3,
                    "step {step} node {j}"
                );
            }
        }
        // The pooled means differ: they mix both types.
        let pooled = prepare(
            &r,
            &PrepareConfig {
                day_type: false,
                ..cfg.clone()
            },
        )
        .unwrap();
        assert!((pooled.scaler.inverse(pooled.inputs[1]) - feature(0, 0, 1)).abs() > 1.0);
        // A type with no other value at a slot falls back to the pooled slot. Fitted here:
        // Thursday, Friday, Saturday (steps 8..12) and Sunday's first two slots only.
        let mut short = raw(18, n, 1, values[..18 * n].to_vec(), Some(0.0));
        short.first_weekday = Some(first);
        let q = prepare(&short, &cfg).unwrap();
        assert_eq!(q.splits.fitted_steps_end(4, 18), 14);
        let q_usual = |step: usize| q.scaler.inverse(q.inputs[step * n * 4 + 1]);
        assert!(
            (q_usual(9) - values[13 * n]).abs() < 1e-3,
            "Sunday's slot 1"
        );
        let weekdays = (values[2 * n] + values[6 * n]) / 2.0;
        assert!(
            (q_usual(10) - weekdays).abs() < 1e-3,
            "no other weekend slot 2"
        );
        // Errors name the setting that is missing.
        let e = prepare(
            &r,
            &PrepareConfig {
                historical_average: false,
                ..cfg.clone()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("historical_average = true"), "{e}");
        r.first_weekday = None;
        let e = prepare(&r, &cfg).unwrap_err().to_string();
        assert!(e.contains("`start` date") && e.contains("toy"), "{e}");
        assert!(!PrepareConfig::default().day_type);
    }

    #[test]
    fn config_and_empty_split_errors() {
        let r = raw(30, 1, 1, ramp(30, 1, 1), None);
        let bad = PrepareConfig {
            split: [0.5, 0.1, 0.2],
            ..Default::default()
        };
        assert!(matches!(
            prepare(&r, &bad).unwrap_err(),
            DataError::Config { .. }
        ));
        let bad = PrepareConfig {
            split: [1.2, -0.2, 0.0],
            ..Default::default()
        };
        assert!(matches!(
            prepare(&r, &bad).unwrap_err(),
            DataError::Config { .. }
        ));
        let bad = PrepareConfig {
            target_feature: 1,
            ..Default::default()
        };
        assert!(matches!(
            prepare(&r, &bad).unwrap_err(),
            DataError::Config { .. }
        ));
        // 30 steps, 24-step windows: 7 samples -> train 5, test 1, val 1... fine;
        // 25 steps: 2 samples -> val and test cannot both be filled.
        let e = prepare(
            &raw(25, 1, 1, ramp(25, 1, 1), None),
            &PrepareConfig::default(),
        )
        .unwrap_err();
        match &e {
            DataError::EmptySplit {
                split,
                dataset,
                msg,
            } => {
                assert_eq!(dataset, "toy");
                assert!(*split == "val" || *split == "test", "{split}");
                assert!(msg.contains("needs about"), "{msg}");
            }
            other => panic!("expected EmptySplit, got {other}"),
        }
        // Fewer steps than one window.
        let e = prepare(
            &raw(10, 1, 1, ramp(10, 1, 1), None),
            &PrepareConfig::default(),
        )
        .unwrap_err();
        assert!(
            matches!(e, DataError::EmptySplit { split: "train", .. }),
            "{e}"
        );
        assert!(e.to_string().contains("0 samples"), "{e}");
    }

    #[test]
    fn summary_reports_everything() {
        let p = prepare(
            &raw(123, 3, 1, ramp(123, 3, 1), None),
            &PrepareConfig::default(),
        )
        .unwrap();
        let s = p.summary();
        assert_eq!((s.t, s.n, s.in_features), (123, 3, 2));
        assert_eq!(s.edges, 6);
        assert!((s.density - 1.0).abs() < 1e-12);
        assert_eq!(s.splits[0].samples, 70);
        assert_eq!(s.splits[0].steps, 0..93);
        assert_eq!(s.splits[2].steps, 80..123);
        let text = s.to_string();
        assert!(
            text.contains("toy") && text.contains("train") && text.contains("0..93"),
            "{text}"
        );
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["splits"][1]["samples"], 10);
    }

    #[test]
    fn scaler_roundtrip_and_floor() {
        let s = Scaler::fit(&[5.0, 5.0], None).unwrap();
        assert_eq!(s.std, Scaler::STD_FLOOR);
        let s = Scaler {
            mean: 2.0,
            std: 4.0,
        };
        assert_eq!(s.transform(10.0), 2.0);
        assert_eq!(s.inverse(2.0), 10.0);
        let mut v = [10.0, 2.0];
        s.transform_slice(&mut v);
        s.inverse_slice(&mut v);
        assert_eq!(v, [10.0, 2.0]);
        assert!(Scaler::fit(&[0.0], Some(0.0)).is_none());
    }

    #[test]
    fn real_metr_la_week_prepares() {
        let spec = crate::data::DataSpec::builtin("metr-la-week", &crate::data::bundled_data_dir())
            .unwrap();
        let raw = crate::data::load(&spec).unwrap();
        let p = prepare(&raw, &PrepareConfig::default()).unwrap();
        // 2016 - 24 + 1 = 1993 samples: 1395 / 199 / 399.
        assert_eq!(
            (
                p.splits.train.len(),
                p.splits.val.len(),
                p.splits.test.len()
            ),
            (1395, 199, 399)
        );
        assert_eq!(p.missing_ratio(), 0.0);
        assert!(
            p.scaler.mean > 40.0 && p.scaler.mean < 70.0,
            "{:?}",
            p.scaler
        );
        assert_eq!(p.summary().n, 207);
    }
}
