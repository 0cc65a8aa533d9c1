//! The test metrics of the T-GCN protocol (Zhao et al., "T-GCN: A Temporal Graph Convolutional
//! Network for Traffic Prediction", IEEE T-ITS 2019), computed as its own code does
//! (`evaluation` in `T-GCN/T-GCN-TensorFlow/main.py` of lehaifeng/T-GCN), so our rows can stand
//! next to its published table:
//!
//! - RMSE and MAE over every entry;
//! - accuracy `1 - ||Y - Yhat||_F / ||Y||_F`;
//! - R^2 `1 - sum((y - yhat)^2) / sum((y - mean(y))^2)`, the mean taken over all entries;
//! - explained variance `1 - Var(y - yhat) / Var(y)`, population variances (numpy's `np.var`).
//!
//! "Pooled over all forecast steps": T-GCN trains one model per horizon `h` (`pre_len`) and
//! flattens its `h` outputs per sample into rows before scoring, so its 30-minute row mixes the
//! 5-, 10-, ..., 30-minute forecasts. [`TgcnTable`] applies the same definition to a model that
//! forecasts all 12 steps at once: the row for `h` pools steps 1..=h.
//!
//! T-GCN computes these on max-scaled data and multiplies RMSE and MAE back by the maximum;
//! accuracy, R^2 and explained variance do not change with a common scale, so computing all five
//! in data units (mph for Los-loop) gives the same numbers. No entry is masked: T-GCN's Los-loop
//! file is already imputed. The PyTorch port (`T-GCN-PyTorch/utils/metrics.py`) differs (R^2
//! about the mean of the *forecast*, unbiased variances); the published table comes from the
//! TensorFlow code, which is the one followed here.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The forecast horizons of T-GCN's table, in 5-minute steps (15, 30, 45 and 60 minutes).
pub const TGCN_HORIZONS: [usize; 4] = [3, 6, 9, 12];

/// Why the scores could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TgcnMetricsError {
    #[error("T-GCN metrics: {pred} forecasts for {target} targets")]
    LengthMismatch { pred: usize, target: usize },
    #[error("T-GCN metrics: no entries to score")]
    Empty,
    #[error("T-GCN metrics: forecast of {samples} samples x {steps} steps x {nodes} nodes needs {expected} values, got {got}")]
    Shape {
        samples: usize,
        steps: usize,
        nodes: usize,
        expected: usize,
        got: usize,
    },
    #[error("T-GCN metrics: horizon {horizon} is outside the forecast's 1..={steps} steps")]
    Horizon { horizon: usize, steps: usize },
}

/// The five scores of T-GCN's table for one set of forecasts. Degenerate targets give what
/// T-GCN's numpy code gives: an all-zero target makes `accuracy` NaN or -inf, a constant one
/// makes `r2` and `var` so.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TgcnScores {
    pub rmse: f64,
    pub mae: f64,
    pub accuracy: f64,
    pub r2: f64,
    /// Explained variance (T-GCN's `var`).
    pub var: f64,
}

impl TgcnScores {
    /// Scores `pred` against `target`, entry by entry, pooled over all of them. Sums are taken
    /// in f64 so that a test set of millions of f32 entries loses nothing to rounding.
    pub fn compute(pred: &[f32], target: &[f32]) -> Result<TgcnScores, TgcnMetricsError> {
        if pred.len() != target.len() {
            return Err(TgcnMetricsError::LengthMismatch {
                pred: pred.len(),
                target: target.len(),
            });
        }
        if pred.is_empty() {
            return Err(TgcnMetricsError::Empty);
        }
        let count = pred.len() as f64;
        let pairs = || {
            pred.iter()
                .zip(target)
                .map(|(p, y)| (f64::from(*p), f64::from(*y)))
        };
        let (mut sq_err, mut abs_err, mut sq_y, mut sum_y, mut sum_err) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for (p, y) in pairs() {
            let e = y - p;
            sq_err += e * e;
            abs_err += e.abs();
            sq_y += y * y;
            sum_y += y;
            sum_err += e;
        }
        let (mean_y, mean_err) = (sum_y / count, sum_err / count);
        // Second pass about the means: one-pass `E[x^2] - E[x]^2` cancels badly for speeds
        // near 60 mph with errors of a few mph.
        let (mut dev_y, mut dev_err) = (0.0, 0.0);
        for (p, y) in pairs() {
            dev_y += (y - mean_y).powi(2);
            dev_err += (y - p - mean_err).powi(2);
        }
        Ok(TgcnScores {
            rmse: (sq_err / count).sqrt(),
            mae: abs_err / count,
            accuracy: 1.0 - sq_err.sqrt() / sq_y.sqrt(),
            r2: 1.0 - sq_err / dev_y,
            // Both variances divide by the same count, which cancels.
            var: 1.0 - dev_err / dev_y,
        })
    }
}

/// T-GCN's table for one forecast: a row per horizon, each pooled over steps 1..=h.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TgcnTable {
    /// Minutes per step, for the row labels (5 for Los-loop).
    pub step_minutes: usize,
    pub rows: Vec<(usize, TgcnScores)>,
}

impl TgcnTable {
    /// `pred` and `target` are `[samples, steps, nodes]` row-major in data units; each horizon
    /// `h` in `horizons` (1-based, at most `steps`) gets the scores of steps 1..=h of every
    /// sample and node.
    pub fn compute(
        pred: &[f32],
        target: &[f32],
        (samples, steps, nodes): (usize, usize, usize),
        horizons: &[usize],
        step_minutes: usize,
    ) -> Result<TgcnTable, TgcnMetricsError> {
        let expected = samples * steps * nodes;
        for got in [pred.len(), target.len()] {
            if got != expected {
                return Err(TgcnMetricsError::Shape {
                    samples,
                    steps,
                    nodes,
                    expected,
                    got,
                });
            }
        }
        let mut rows = Vec::with_capacity(horizons.len());
        for &h in horizons {
            if h == 0 || h > steps {
                return Err(TgcnMetricsError::Horizon { horizon: h, steps });
            }
            // Steps 1..=h of each sample are its first h * nodes values.
            let take = |v: &[f32]| -> Vec<f32> {
                v.chunks_exact(steps * nodes)
                    .flat_map(|s| s[..h * nodes].iter().copied())
                    .collect()
            };
            rows.push((h, TgcnScores::compute(&take(pred), &take(target))?));
        }
        Ok(TgcnTable { step_minutes, rows })
    }
}

impl fmt::Display for TgcnTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "| horizon | RMSE | MAE | Accuracy | R2 | Var |")?;
        writeln!(f, "|---|---:|---:|---:|---:|---:|")?;
        for (h, s) in &self.rows {
            writeln!(
                f,
                "| {} min | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} |",
                h * self.step_minutes,
                s.rmse,
                s.mae,
                s.accuracy,
                s.r2,
                s.var
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn scores_match_hand_computation() {
        // Errors y - yhat: 0, -1, 1, -1. sum e^2 = 3, ||y||^2 = 30, mean y = 2.5,
        // sum (y - 2.5)^2 = 5, mean e = -0.25, Var(e) = 0.75 - 0.0625, Var(y) = 1.25.
        let s = TgcnScores::compute(&[1.0, 3.0, 2.0, 5.0], &[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert!(close(s.rmse, 0.75f64.sqrt()), "{s:?}");
        assert!(close(s.mae, 0.75), "{s:?}");
        assert!(close(s.accuracy, 1.0 - 0.1f64.sqrt()), "{s:?}");
        assert!(close(s.r2, 0.4), "{s:?}");
        assert!(close(s.var, 1.0 - 0.6875 / 1.25), "{s:?}");
        // A perfect forecast.
        let p = TgcnScores::compute(&[3.0, 4.0], &[3.0, 4.0]).unwrap();
        assert_eq!(
            (p.rmse, p.mae, p.accuracy, p.r2, p.var),
            (0.0, 0.0, 1.0, 1.0, 1.0)
        );
        // A constant bias costs R^2 but not explained variance (Var(e) = 0).
        let b = TgcnScores::compute(&[2.0, 3.0, 4.0], &[1.0, 2.0, 3.0]).unwrap();
        assert!(close(b.rmse, 1.0) && close(b.mae, 1.0) && close(b.var, 1.0));
        assert!(close(b.r2, 1.0 - 3.0 / 2.0), "{b:?}");
    }

    #[test]
    fn scores_match_tgcn_evaluation_on_a_matrix() {
        // A 3 x 4 block (rows = forecast rows, columns = nodes) with errors
        // e = y - yhat = [[0.5, -1, 0, 2], [1, 0, -0.5, 0], [0, 0, 1.5, -1]]. Expected values
        // from T-GCN's `evaluation(a, b)` formulas evaluated independently (python, f64):
        // sum e^2 = 9.75, sum |e| = 7.5, sum y = 675, sum y^2 = 38427,
        // sum (y - mean y)^2 = 458.25.
        let y = [
            60.0, 55.0, 62.0, 48.0, 58.0, 50.0, 61.0, 45.0, 63.0, 57.0, 65.0, 51.0,
        ];
        let e = [
            0.5, -1.0, 0.0, 2.0, 1.0, 0.0, -0.5, 0.0, 0.0, 0.0, 1.5, -1.0,
        ];
        let yhat: Vec<f32> = y.iter().zip(&e).map(|(y, e)| y - e).collect();
        let s = TgcnScores::compute(&yhat, &y).unwrap();
        assert!(close(s.rmse, 0.901_387_818_865_997_3), "{s:?}");
        assert!(close(s.mae, 0.625), "{s:?}");
        assert!(close(s.accuracy, 0.984_071_163_017_748_2), "{s:?}");
        assert!(close(s.r2, 0.978_723_404_255_319_1), "{s:?}");
        assert!(close(s.var, 0.979_859_974_540_825_6), "{s:?}");
    }

    #[test]
    fn errors_and_degenerate_targets() {
        assert_eq!(
            TgcnScores::compute(&[1.0], &[1.0, 2.0]).unwrap_err(),
            TgcnMetricsError::LengthMismatch { pred: 1, target: 2 }
        );
        assert_eq!(
            TgcnScores::compute(&[], &[]).unwrap_err(),
            TgcnMetricsError::Empty
        );
        // A constant target: R^2 and var are not defined (numpy gives -inf / NaN too).
        let c = TgcnScores::compute(&[1.0, 3.0], &[2.0, 2.0]).unwrap();
        assert!(close(c.rmse, 1.0) && !c.r2.is_finite() && !c.var.is_finite());
    }

    #[test]
    fn table_pools_the_first_h_steps() {
        // 2 samples x 3 steps x 2 nodes; the forecast is off by the step number at step 1..3.
        let (s, h, n) = (2, 3, 2);
        let target: Vec<f32> = (0..s * h * n).map(|i| 10.0 + i as f32).collect();
        let pred: Vec<f32> = target
            .iter()
            .enumerate()
            .map(|(i, y)| y - ((i / n) % h + 1) as f32)
            .collect();
        let t = TgcnTable::compute(&pred, &target, (s, h, n), &[1, 2, 3], 5).unwrap();
        let mae: Vec<f64> = t.rows.iter().map(|(_, r)| r.mae).collect();
        // Step 1 alone: 1; steps 1..2: 1.5; steps 1..3: 2.
        assert!(
            close(mae[0], 1.0) && close(mae[1], 1.5) && close(mae[2], 2.0),
            "{mae:?}"
        );
        assert!(close(t.rows[1].1.rmse, 2.5f64.sqrt()));
        // Row 2 pools exactly the entries of steps 1 and 2.
        let pick = |v: &[f32]| -> Vec<f32> {
            v.iter()
                .enumerate()
                .filter(|(i, _)| (i / n) % h < 2)
                .map(|(_, x)| *x)
                .collect()
        };
        assert_eq!(
            t.rows[1].1,
            TgcnScores::compute(&pick(&pred), &pick(&target)).unwrap()
        );
        let shown = t.to_string();
        assert!(
            shown.contains("| 10 min | 1.5811 | 1.5000 |") && shown.contains("| 15 min |"),
            "{shown}"
        );
        assert_eq!(
            TgcnTable::compute(&pred, &target, (s, h, n), &[4], 5).unwrap_err(),
            TgcnMetricsError::Horizon {
                horizon: 4,
                steps: 3
            }
        );
        assert!(matches!(
            TgcnTable::compute(&pred[1..], &target, (s, h, n), &[1], 5).unwrap_err(),
            TgcnMetricsError::Shape { got: 11, .. }
        ));
        assert_eq!(TGCN_HORIZONS, [3, 6, 9, 12]);
    }
}
