//! Ensembles of a design's seeds (`final.ensemble`): the mean of several trained models'
//! de-normalized forecasts of the same samples, scored by the very metric code of a single model
//! ([`MetricsTable::compute`], same samples, same masking).
//!
//! Memory stays bounded whatever the number of members: [`MeanForecast`] keeps one running sum
//! (f64, so that the mean of k identical forecasts is the forecast itself) and the targets of
//! the first member, never the models or every member's forecasts.

use crate::error::{Error, Result};
use crate::metrics::MetricsTable;
use crate::train::{spread, TrainData, Trained};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

/// The running mean of several models' forecasts `[S, H, N]` of the same samples.
#[derive(Debug, Default)]
pub struct MeanForecast {
    /// Sum of the members' forecasts (f64), and the kind they came in.
    sum: Option<(Tensor, Kind)>,
    /// The targets the forecasts are scored against (the first member's).
    target: Option<Tensor>,
    members: usize,
}

impl MeanForecast {
    pub fn new() -> MeanForecast {
        MeanForecast::default()
    }

    /// Why `pred` and `target` cannot join this ensemble, if they cannot: every member must
    /// forecast the same samples (forecast and targets of the same shape as the first's).
    fn check(&self, pred: &Tensor, target: &Tensor) -> Result<()> {
        if pred.size() != target.size() {
            return Err(Error::Config(format!(
                "ensemble: a forecast of shape {:?} for targets of shape {:?}",
                pred.size(),
                target.size()
            )));
        }
        match &self.target {
            Some(t) if t.size() != target.size() => Err(Error::Config(format!(
                "ensemble: member {} forecasts samples of shape {:?}, the first {:?}",
                self.members + 1,
                target.size(),
                t.size()
            ))),
            _ => Ok(()),
        }
    }

    /// Adds one member's forecast and the targets it forecasts (same samples as the first).
    pub fn add(&mut self, pred: &Tensor, target: &Tensor) -> Result<()> {
        self.check(pred, target)?;
        let pred64 = pred.f_to_kind(Kind::Double)?;
        match &mut self.sum {
            Some((sum, _)) => *sum = sum.f_add(&pred64)?,
            None => {
                self.sum = Some((pred64, pred.kind()));
                self.target = Some(target.shallow_clone());
            }
        }
        self.members += 1;
        Ok(())
    }

    /// How many forecasts were added.
    pub fn members(&self) -> usize {
        self.members
    }

    /// The mean forecast, in the members' kind.
    pub fn mean(&self) -> Result<Tensor> {
        match &self.sum {
            Some((sum, kind)) if self.members > 0 => {
                Ok(sum.f_div_scalar(self.members as f64)?.f_to_kind(*kind)?)
            }
            _ => Err(Error::Config("ensemble of no forecast".into())),
        }
    }

    /// The mean forecast's metrics, computed as a single model's (`null` masks the targets).
    pub fn metrics(&self, null: Option<f64>) -> Result<MetricsTable> {
        let mean = self.mean()?;
        let target = self
            .target
            .as_ref()
            .ok_or_else(|| Error::Config("ensemble of no forecast".into()))?;
        Ok(MetricsTable::compute(&mean, target, null)?)
    }
}

/// One trained model's de-normalized forecasts `[S, H, N]` of every validation and test sample
/// with their targets, on the CPU (so that the members' sum never holds device memory).
#[derive(Debug)]
pub struct Forecasts {
    pub val: (Tensor, Tensor),
    pub test: (Tensor, Tensor),
    /// The data's null value (what the metrics mask).
    pub null: Option<f64>,
}

/// The forecasts of `trained` on the samples its training report scores (every validation and
/// test sample).
pub fn forecasts(trained: &Trained, data: &TrainData, batch: usize) -> Result<Forecasts> {
    let split = |range: &std::ops::Range<usize>| -> Result<(Tensor, Tensor)> {
        let (p, y) = trained.predict(data, &spread(range, 0), batch)?;
        Ok((p.f_to_device(Device::Cpu)?, y.f_to_device(Device::Cpu)?))
    };
    Ok(Forecasts {
        val: split(&data.val)?,
        test: split(&data.test)?,
        null: data.null,
    })
}

/// The metrics of an ensemble: its members' seeds and the mean forecast's validation and test
/// metrics. Reported beside the members' mean ± sd, never used to choose a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnsembleMetrics {
    pub members: Vec<u64>,
    pub val: MetricsTable,
    pub test: MetricsTable,
}

/// The ensemble of a design's seeds, built one member at a time.
#[derive(Debug, Default)]
pub struct Ensemble {
    val: MeanForecast,
    test: MeanForecast,
    null: Option<f64>,
    seeds: Vec<u64>,
}

impl Ensemble {
    pub fn new() -> Ensemble {
        Ensemble::default()
    }

    /// Adds the forecasts of the member trained with `seed`.
    pub fn add(&mut self, seed: u64, f: &Forecasts) -> Result<()> {
        if !self.seeds.is_empty() && f.null != self.null {
            return Err(Error::Config(format!(
                "ensemble: seed {seed} masks null {:?}, the first member {:?}",
                f.null, self.null
            )));
        }
        // Both splits are checked before either is added: a refused member leaves no trace.
        self.val.check(&f.val.0, &f.val.1)?;
        self.test.check(&f.test.0, &f.test.1)?;
        self.val.add(&f.val.0, &f.val.1)?;
        self.test.add(&f.test.0, &f.test.1)?;
        self.null = f.null;
        self.seeds.push(seed);
        Ok(())
    }

    /// The members' seeds, in the order they were added.
    pub fn seeds(&self) -> &[u64] {
        &self.seeds
    }

    /// The ensemble's metrics; None with fewer than two members (no ensemble to speak of).
    pub fn metrics(&self) -> Result<Option<EnsembleMetrics>> {
        if self.seeds.len() < 2 {
            return Ok(None);
        }
        Ok(Some(EnsembleMetrics {
            members: self.seeds.clone(),
            val: self.val.metrics(self.null)?,
            test: self.test.metrics(self.null)?,
        }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn t(v: &[f32], shape: [i64; 3]) -> Tensor {
        Tensor::from_slice(v).reshape(shape)
    }

    fn forecasts(pred: &[f32], target: &[f32], null: Option<f64>) -> Forecasts {
        let s = [2, 3, 2];
        Forecasts {
            val: (t(pred, s), t(target, s)),
            test: (t(pred, s).f_add_scalar(1.0).unwrap(), t(target, s)),
            null,
        }
    }

    const TARGET: [f32; 12] = [
        10.0, 0.0, 12.0, 13.0, 14.0, 15.0, 16.0, 17.0, 18.0, 19.0, 20.0, 0.0,
    ];
    const A: [f32; 12] = [
        11.0, 1.0, 11.5, 14.0, 13.0, 15.5, 17.0, 16.0, 18.25, 21.0, 19.0, 3.0,
    ];
    const B: [f32; 12] = [
        9.0, 2.0, 12.5, 12.0, 16.0, 14.0, 15.0, 19.0, 17.75, 18.0, 20.5, 1.0,
    ];

    /// k identical members are the single model: the same metrics, exactly.
    #[test]
    fn identical_members_score_as_the_single_model() {
        let f = forecasts(&A, &TARGET, Some(0.0));
        for k in [2u64, 3, 5] {
            let mut e = Ensemble::new();
            for seed in 0..k {
                e.add(seed, &f).unwrap();
            }
            let m = e.metrics().unwrap().unwrap();
            assert_eq!(m.members, (0..k).collect::<Vec<_>>());
            let single_val = MetricsTable::compute(&f.val.0, &f.val.1, Some(0.0)).unwrap();
            let single_test = MetricsTable::compute(&f.test.0, &f.test.1, Some(0.0)).unwrap();
            assert_eq!(m.val, single_val, "k = {k}");
            assert_eq!(m.test, single_test, "k = {k}");
        }
    }

    /// Two different members: the metrics of their mean, computed by hand (null 0 masked).
    #[test]
    fn two_members_score_as_their_mean_by_hand() {
        let mut e = Ensemble::new();
        e.add(7, &forecasts(&A, &TARGET, Some(0.0))).unwrap();
        e.add(8, &forecasts(&B, &TARGET, Some(0.0))).unwrap();
        let m = e.metrics().unwrap().unwrap();
        assert_eq!(m.members, vec![7, 8]);
        // By hand: the mean forecast over the valid targets (all but the two zeros).
        let mean: Vec<f64> = A
            .iter()
            .zip(&B)
            .map(|(a, b)| (*a as f64 + *b as f64) / 2.0)
            .collect();
        let valid: Vec<(f64, f64)> = mean
            .iter()
            .zip(&TARGET)
            .filter(|(_, y)| **y != 0.0)
            .map(|(p, y)| (*p, *y as f64))
            .collect();
        let n = valid.len() as f64;
        let mae = valid.iter().map(|(p, y)| (p - y).abs()).sum::<f64>() / n;
        let rmse = (valid.iter().map(|(p, y)| (p - y).powi(2)).sum::<f64>() / n).sqrt();
        let mape = valid.iter().map(|(p, y)| (p - y).abs() / y).sum::<f64>() / n * 100.0;
        let close = |a: f64, b: f64| (a - b).abs() < 1e-5 * b.abs().max(1.0);
        assert!(
            close(m.val.average.mae, mae),
            "{} vs {mae}",
            m.val.average.mae
        );
        assert!(
            close(m.val.average.rmse, rmse),
            "{} vs {rmse}",
            m.val.average.rmse
        );
        assert!(
            close(m.val.average.mape, mape),
            "{} vs {mape}",
            m.val.average.mape
        );
        // Horizon 3 (the last step): samples 0 and 1 at step 3, nodes 0 and 1.
        let h3: Vec<(f64, f64)> = [4usize, 5, 10, 11]
            .iter()
            .filter(|&&i| TARGET[i] != 0.0)
            .map(|&i| (mean[i], TARGET[i] as f64))
            .collect();
        let mae3 = h3.iter().map(|(p, y)| (p - y).abs()).sum::<f64>() / h3.len() as f64;
        let (h, s) = m.val.horizons.last().unwrap();
        assert_eq!(*h, 3);
        assert!(close(s.mae, mae3), "{} vs {mae3}", s.mae);
        // The test forecasts are the validation ones + 1, the test mean too.
        let mae_test = valid.iter().map(|(p, y)| (p + 1.0 - y).abs()).sum::<f64>() / n;
        assert!(close(m.test.average.mae, mae_test));
        // And it differs from either member's.
        let single = |p: &[f32]| {
            MetricsTable::compute(&t(p, [2, 3, 2]), &t(&TARGET, [2, 3, 2]), Some(0.0))
                .unwrap()
                .average
                .mae
        };
        assert!(m.val.average.mae < single(&A) && m.val.average.mae < single(&B));
    }

    #[test]
    fn fewer_than_two_members_or_mismatched_ones_are_no_ensemble() {
        let mut e = Ensemble::new();
        assert!(e.metrics().unwrap().is_none());
        e.add(0, &forecasts(&A, &TARGET, None)).unwrap();
        assert!(e.metrics().unwrap().is_none(), "one member is no ensemble");
        let other = Forecasts {
            val: (t(&A[..6], [1, 3, 2]), t(&TARGET[..6], [1, 3, 2])),
            test: (t(&A[..6], [1, 3, 2]), t(&TARGET[..6], [1, 3, 2])),
            null: None,
        };
        let err = e.add(1, &other).unwrap_err().to_string();
        assert!(err.contains("ensemble") && err.contains("shape"), "{err}");
        let err = e
            .add(1, &forecasts(&B, &TARGET, Some(0.0)))
            .unwrap_err()
            .to_string();
        assert!(err.contains("null"), "{err}");
        assert!(MeanForecast::new().mean().is_err());
    }
}
