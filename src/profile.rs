//! What the instructor is told about the task before it designs: a profile of the data computed
//! from the training split only (so nothing of validation or test leaks into the prompt), and
//! the traits of each operator (what it models, its receptive field, its parameters at the
//! configured widths). A strong model reasons from these; the prompt's background section
//! renders them (`prompts/background.md`).

use crate::data::prepare::Prepared;
use crate::model::{graph_supports, operator_params, ModelConfig};
use crate::space::{SpaceKind, SpatialOp, TemporalOp};
use serde::Serialize;
use tch::Device;

/// Shape and statistics of the training split.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DataProfile {
    pub nodes: usize,
    pub steps_per_day: usize,
    /// Steps the model reads and predicts.
    pub input_len: usize,
    pub horizon: usize,
    /// Time steps in the training split.
    pub train_steps: usize,
    /// Share of training targets equal to the null value (masked in the loss).
    pub missing_share: f64,
    /// Non-zero off-diagonal entries of the adjacency over `n * (n - 1)`.
    pub graph_density: f64,
    /// Mean over sensors of the correlation between a value and the next step's: how much the
    /// recent past alone predicts.
    pub lag1_autocorr: Option<f64>,
    /// The same at a lag of one day: how strongly the series repeats daily (None when the
    /// training split is shorter than two days).
    pub daily_autocorr: Option<f64>,
    /// Mean and standard deviation of the target in data units.
    pub mean: f64,
    pub sd: f64,
}

/// Mean over sensors of the Pearson correlation between `x[t]` and `x[t + lag]` on the steps
/// `range`, skipping null values; sensors with fewer than 8 valid pairs or no variance are
/// left out. None when no sensor qualifies.
fn autocorr(p: &Prepared, range: &std::ops::Range<usize>, lag: usize) -> Option<f64> {
    if lag == 0 || range.len() <= lag {
        return None;
    }
    let valid = |v: f32| v.is_finite() && Some(v) != p.null_value;
    let (mut sum, mut count) = (0.0, 0usize);
    for node in 0..p.n {
        let (mut n, mut sa, mut sb, mut saa, mut sbb, mut sab) = (0.0f64, 0.0, 0.0, 0.0, 0.0, 0.0);
        for t in range.start..range.end - lag {
            let (a, b) = (p.target[t * p.n + node], p.target[(t + lag) * p.n + node]);
            if valid(a) && valid(b) {
                let (a, b) = (a as f64, b as f64);
                n += 1.0;
                sa += a;
                sb += b;
                saa += a * a;
                sbb += b * b;
                sab += a * b;
            }
        }
        if n < 8.0 {
            continue;
        }
        let cov = sab / n - sa / n * sb / n;
        let va = saa / n - (sa / n).powi(2);
        let vb = sbb / n - (sb / n).powi(2);
        if va > 1e-12 && vb > 1e-12 {
            sum += cov / (va * vb).sqrt();
            count += 1;
        }
    }
    (count > 0).then(|| sum / count as f64)
}

impl DataProfile {
    /// The profile of `p`'s training split.
    pub fn of(p: &Prepared) -> DataProfile {
        let range = p.steps_of(&p.splits.train);
        let range = range.start..range.end.min(p.t);
        let targets = &p.target[range.start * p.n..range.end * p.n];
        let valid: Vec<f64> = targets
            .iter()
            .filter(|v| v.is_finite() && Some(**v) != p.null_value)
            .map(|v| *v as f64)
            .collect();
        let (mean, sd) = crate::stats::mean_sd(&valid);
        let off_diagonal = (0..p.n)
            .flat_map(|i| (0..p.n).map(move |j| (i, j)))
            .filter(|&(i, j)| i != j && p.adj[i * p.n + j] != 0.0)
            .count();
        let pairs = p.n * p.n.saturating_sub(1);
        DataProfile {
            nodes: p.n,
            steps_per_day: p.steps_per_day,
            input_len: p.input_len,
            horizon: p.output_len,
            train_steps: range.len(),
            missing_share: crate::data::prepare::missing_ratio(targets, p.null_value),
            graph_density: if pairs == 0 {
                0.0
            } else {
                off_diagonal as f64 / pairs as f64
            },
            lag1_autocorr: autocorr(p, &range, 1),
            daily_autocorr: autocorr(p, &range, p.steps_per_day),
            mean,
            sd,
        }
    }

    /// Lines for the prompt's background section.
    pub fn render(&self) -> String {
        let opt = |v: Option<f64>| v.map_or_else(|| "n/a".to_string(), |v| format!("{v:.2}"));
        let days = if self.steps_per_day > 0 {
            format!(
                " ({:.1} days)",
                self.train_steps as f64 / self.steps_per_day as f64
            )
        } else {
            String::new()
        };
        format!(
            "- sensors: {}; graph density {:.3} (share of sensor pairs with an edge)\n\
             - {} steps per day; the model reads {} steps and predicts the next {}\n\
             - training split: {} steps{days}; {:.1}% of targets missing (masked)\n\
             - target mean {:.3}, sd {:.3} (data units)\n\
             - autocorrelation: next step {}, one day later {} (1 = the series repeats exactly)",
            self.nodes,
            self.graph_density,
            self.steps_per_day,
            self.input_len,
            self.horizon,
            self.train_steps,
            100.0 * self.missing_share,
            self.mean,
            self.sd,
            opt(self.lag1_autocorr),
            opt(self.daily_autocorr),
        )
    }
}

/// What an operator models, its receptive field and its parameters at the configured widths.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpTrait {
    /// The name the prompt and the schema use (`mix_gc`, `gdcc`, ...).
    pub name: &'static str,
    /// `spatial` or `temporal`.
    pub kind: &'static str,
    pub models: &'static str,
    pub receptive_field: String,
    pub params: i64,
}

/// The traits of every spatial and temporal operator at `cfg`'s widths on `p`'s graph (the
/// parameters are counted by building each operator once, on the CPU, without data).
pub fn op_traits(cfg: &ModelConfig, p: &Prepared) -> crate::Result<Vec<OpTrait>> {
    let graph = graph_supports(&p.adj, p.n, Device::Cpu)?;
    let steps = p.input_len as i64;
    let k = cfg.order;
    let mut out = Vec::new();
    for (i, s) in SpatialOp::ALL.into_iter().enumerate() {
        let t = TemporalOp::ALL[i];
        let (sp, tp) = operator_params(s, t, cfg, steps, &graph)?;
        let (models, field) = match s {
            SpatialOp::MixGc => (
                "mixed-order graph convolution on the fixed road graph",
                format!("neighbours up to {k} hops"),
            ),
            SpatialOp::Dgcn => (
                "diffusion over the road graph both ways plus a learned adaptive adjacency",
                format!("{k} diffusion steps; any sensor through the learned graph"),
            ),
            SpatialOp::STrans => (
                "softmax attention between sensors at each step",
                "every sensor, O(N^2) per step".to_string(),
            ),
        };
        out.push(OpTrait {
            name: s.name(),
            kind: "spatial",
            models,
            receptive_field: field,
            params: sp,
        });
        let (models, field) = match t {
            TemporalOp::LinearAttn => (
                "linear attention over the input steps",
                format!("all {steps} input steps, O(T)"),
            ),
            TemporalOp::Gdcc => (
                "gated causal convolution, kernel 2, dilation 1/2/4 on edges into nodes 1/2/3",
                "2 steps per layer, doubled at each deeper node".to_string(),
            ),
            TemporalOp::TTrans => (
                "softmax attention over the input steps",
                format!("all {steps} input steps, O(T^2)"),
            ),
        };
        out.push(OpTrait {
            name: t.name(),
            kind: "temporal",
            models,
            receptive_field: field,
            params: tp,
        });
    }
    Ok(out)
}

/// One line per operator for the prompt.
pub fn render_traits(traits: &[OpTrait], space: SpaceKind) -> String {
    let prefix = |kind: &str| match space {
        SpaceKind::Ists => format!("{kind}="),
        SpaceKind::Autocts => String::new(),
    };
    traits
        .iter()
        .map(|t| {
            format!(
                "- {}{}: {}; receptive field: {}; {} parameters",
                prefix(t.kind),
                t.name,
                t.models,
                t.receptive_field,
                t.params
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::prepare::{Scaler, Splits};

    /// Two sensors over four days of 8 steps: sensor 0 repeats daily exactly, sensor 1 too but
    /// shifted; one missing value.
    fn prepared() -> Prepared {
        let (t, n, day) = (32, 2, 8);
        let mut target = Vec::new();
        for s in 0..t {
            let phase = (s % day) as f32;
            target.push(10.0 + phase);
            target.push(20.0 + ((s + 3) % day) as f32);
        }
        target[5] = 0.0;
        Prepared {
            name: "toy".into(),
            t,
            n,
            in_features: 1,
            inputs: vec![0.0; t * n],
            input_scalers: vec![],
            target,
            scaler: Scaler {
                mean: 0.0,
                std: 1.0,
            },
            null_value: Some(0.0),
            splits: Splits::new(t - 4 + 1, [0.7, 0.1, 0.2]),
            input_len: 2,
            output_len: 2,
            adj: vec![0.0, 1.0, 0.0, 0.0],
            steps_per_day: day,
        }
    }

    #[test]
    fn the_profile_reads_the_training_split() {
        let p = prepared();
        let d = DataProfile::of(&p);
        assert_eq!(d.nodes, 2);
        assert_eq!(d.graph_density, 0.5);
        assert!(d.train_steps < p.t, "validation and test left out");
        let daily = d.daily_autocorr.unwrap();
        assert!(daily > 0.99, "{daily}");
        let lag1 = d.lag1_autocorr.unwrap();
        assert!(lag1 < daily, "{lag1}");
        assert!(d.missing_share > 0.0 && d.missing_share < 0.05);
        let r = d.render();
        assert!(r.contains("8 steps per day"), "{r}");
        assert!(r.contains("one day later 1.00"), "{r}");
    }

    #[test]
    fn operator_traits_count_parameters_at_the_configured_width() {
        let p = prepared();
        let small = op_traits(&ModelConfig::default(), &p).unwrap();
        assert_eq!(small.len(), 6);
        assert!(small.iter().all(|t| t.params > 0));
        let wide = op_traits(
            &ModelConfig {
                hidden: 64,
                ..ModelConfig::default()
            },
            &p,
        )
        .unwrap();
        assert!(wide.iter().zip(&small).all(|(w, s)| w.params > s.params));
        let text = render_traits(&small, SpaceKind::Ists);
        assert!(text.contains("- temporal=gdcc: gated causal"), "{text}");
    }
}
