//! The memory one candidate's training needs, estimated from its architecture and the shapes
//! before anything is allocated, so a caller (the daemon) can refuse a candidate that would
//! exhaust the host or the card instead of aborting the process inside an allocation.
//!
//! The estimate is an upper bound of the order of magnitude, not a measurement: it counts the
//! activations each operator keeps for the backward pass (attention maps included, which grow
//! with the square of the sensors or the steps), twice (their gradients), and the parameters
//! four times (weights, gradients and Adam's two moments), in 32-bit floats.
//!
//! The same count ranks designs by what one optimizer step of theirs costs ([`StepCost`]), so
//! a search paid in seconds can weigh a design's cost before training it.

use crate::model::{ModelConfig, ModelShape};
use crate::space::{Arch, Op, SpatialOp, TemporalOp};

/// Estimated peak bytes of training `arch` with batches of `batch` samples and of scoring it
/// with batches of `eval_batch` (the larger of the two phases). Saturates instead of wrapping.
pub fn training_bytes(
    arch: &Arch,
    shape: ModelShape,
    cfg: &ModelConfig,
    batch: usize,
    eval_batch: usize,
) -> u128 {
    // As built: the joint space's width; its stacked blocks multiply the wiring's share.
    let cfg = &cfg.as_built(arch);
    let train = activations(arch, shape, cfg, batch as u128, true).saturating_mul(2);
    let eval = activations(arch, shape, cfg, eval_batch as u128, false);
    let params = params(arch, shape, cfg).saturating_mul(4);
    train.max(eval).saturating_add(params).saturating_mul(4)
}

/// The relative cost of one optimizer step of a design on a task's shapes: the floats its
/// forward pass keeps for the backward pass over one training batch, as built (the joint
/// space's width and stacked blocks). A ranking, not a time: on the committed search journals
/// it orders designs by measured seconds per step at Kendall tau 0.54-0.66 (METR-LA week,
/// chickenpox, PedalMe), against 0.37-0.46 for the parameter count (BENCHMARKS.md, "A prior
/// that pays for its designs"). Attention over the sensors is what makes it depend on the
/// task: its maps grow with the square of the sensors.
#[derive(Debug, Clone)]
pub struct StepCost {
    shape: ModelShape,
    cfg: ModelConfig,
    batch: usize,
}

impl StepCost {
    /// The cost of steps of `batch` samples, with `cfg`'s widths, on data of `shape`.
    pub fn new(shape: ModelShape, cfg: ModelConfig, batch: usize) -> StepCost {
        StepCost { shape, cfg, batch }
    }

    /// The cost of one training step of `arch` (larger costs more; comparable only with
    /// other designs under the same `StepCost`).
    pub fn of(&self, arch: &Arch) -> f64 {
        let cfg = self.cfg.as_built(arch);
        activations(arch, self.shape, &cfg, self.batch.max(1) as u128, true) as f64
    }
}

fn dim(v: i64) -> u128 {
    v.max(1) as u128
}

/// Floats kept for the backward pass over one batch of `b` samples (with dropout's masks when
/// `training`).
fn activations(arch: &Arch, shape: ModelShape, cfg: &ModelConfig, b: u128, training: bool) -> u128 {
    let (c, n, t) = (dim(cfg.hidden), dim(shape.nodes), dim(shape.input_len));
    let (k, heads) = (dim(cfg.order), dim(cfg.heads));
    let act = b.saturating_mul(c).saturating_mul(n).saturating_mul(t);
    let spatial = |s: SpatialOp| match s {
        SpatialOp::MixGc => act.saturating_mul(k + 2),
        SpatialOp::Dgcn => act.saturating_mul(2 * k + 2),
        // Scores and softmax over the sensors, per head and step.
        SpatialOp::STrans => act.saturating_mul(4).saturating_add(
            b.saturating_mul(heads)
                .saturating_mul(t)
                .saturating_mul(n)
                .saturating_mul(n)
                .saturating_mul(2),
        ),
    };
    let temporal = |op: TemporalOp| match op {
        TemporalOp::LinearAttn => act.saturating_mul(5),
        TemporalOp::Gdcc => act.saturating_mul(4),
        TemporalOp::TTrans => act.saturating_mul(4).saturating_add(
            b.saturating_mul(heads)
                .saturating_mul(n)
                .saturating_mul(t)
                .saturating_mul(t)
                .saturating_mul(2),
        ),
    };
    let mut total = b
        .saturating_mul(t)
        .saturating_mul(n)
        .saturating_mul(dim(shape.in_features))
        .saturating_add(act);
    // `model.dropout` keeps a mask the size of each operator edge's output.
    let dropout = training && cfg.dropout > 0.0;
    let mask = if dropout { act } else { 0 };
    for e in &arch.edges {
        let edge = match e.op {
            Op::Zero | Op::Identity => 0,
            Op::Spatial(s) => spatial(s).saturating_add(mask),
            Op::Temporal(op) => temporal(op).saturating_add(mask),
            Op::Cell(cell) => spatial(cell.spatial)
                .saturating_add(temporal(cell.temporal))
                .saturating_add(act)
                .saturating_add(mask),
        };
        total = total.saturating_add(edge.saturating_mul(arch.blocks() as u128));
    }
    // Per node: the sum of its edges and its normalization; then the output head.
    let nodes = (arch.nodes * arch.blocks()) as u128;
    let head_hidden = b.saturating_mul(dim(cfg.end_hidden)).saturating_mul(n);
    let head = act
        .saturating_add(head_hidden)
        .saturating_add(if dropout { head_hidden } else { 0 })
        .saturating_add(b.saturating_mul(dim(shape.horizon)).saturating_mul(n));
    // `model.highway` reads a reordered copy of the inputs and adds one forecast-sized output.
    let highway = if cfg.highway {
        b.saturating_mul(t)
            .saturating_mul(n)
            .saturating_mul(dim(shape.in_features))
            .saturating_add(b.saturating_mul(dim(shape.horizon)).saturating_mul(n))
    } else {
        0
    };
    total
        .saturating_add(highway)
        .saturating_add(act.saturating_mul(2).saturating_mul(nodes))
        .saturating_add(head)
}

/// An upper bound of the trainable scalars.
fn params(arch: &Arch, shape: ModelShape, cfg: &ModelConfig) -> u128 {
    let (c, n, t) = (dim(cfg.hidden), dim(shape.nodes), dim(shape.input_len));
    let k = dim(cfg.order);
    // Projections of one operator (query, key, value, output, gates; one per adjacency power),
    // and an adaptive adjacency's node embeddings.
    let op = c
        .saturating_mul(c)
        .saturating_mul(2 * k + 6)
        .saturating_add(n.saturating_mul(dim(cfg.embed)).saturating_mul(2));
    let edges = (arch.edges.len() * arch.blocks()) as u128;
    let head = c
        .saturating_mul(t)
        .saturating_mul(dim(cfg.end_hidden))
        .saturating_add(dim(cfg.end_hidden).saturating_mul(dim(shape.horizon)));
    let highway = if cfg.highway {
        dim(shape.in_features)
            .saturating_mul(t)
            .saturating_add(1)
            .saturating_mul(dim(shape.horizon))
    } else {
        0
    };
    op.saturating_mul(2)
        .saturating_mul(edges)
        .saturating_add(head)
        .saturating_add(highway)
        .saturating_add(dim(shape.in_features).saturating_mul(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::{ArchSpec, EdgeSpec, SpaceKind};

    /// A chain of three cells with these operators.
    fn arch(spatial: &str, temporal: &str) -> Arch {
        let spec = ArchSpec {
            space: None,
            nodes: None,
            edges: (0..3)
                .map(|i| EdgeSpec {
                    from: i,
                    to: i + 1,
                    op: "STT".into(),
                    spatial: Some(spatial.into()),
                    temporal: Some(temporal.into()),
                })
                .collect(),
            hyper: None,
        };
        Arch::from_spec(&spec, SpaceKind::Ists).unwrap()
    }

    #[test]
    fn attention_grows_with_the_square_of_the_sensors_and_nothing_wraps() {
        let cfg = ModelConfig::default();
        let shape = |nodes| ModelShape {
            nodes,
            in_features: 2,
            input_len: 12,
            horizon: 12,
        };
        let a = arch("s_trans", "gdcc");
        let small = training_bytes(&a, shape(200), &cfg, 32, 128);
        let large = training_bytes(&a, shape(2000), &cfg, 32, 128);
        assert!(small > 1 << 20, "{small}");
        // Ten times the sensors: about a hundred times the attention maps.
        assert!(large > 50 * small, "{small} -> {large}");
        let huge = ModelConfig {
            hidden: i64::MAX,
            ..ModelConfig::default()
        };
        assert_eq!(
            training_bytes(&a, shape(i64::MAX), &huge, usize::MAX, usize::MAX),
            u128::MAX
        );
    }

    /// Wider, stacked and attention-over-sensors designs cost more per step; the learning-rate
    /// factor costs nothing; on a graph with ten times the sensors, sensor attention's share
    /// of the cost grows.
    #[test]
    fn step_cost_follows_width_blocks_and_attention() {
        use crate::space::Hyper;
        let shape = |nodes| ModelShape {
            nodes,
            in_features: 2,
            input_len: 12,
            horizon: 12,
        };
        let with = |a: &Arch, hidden, blocks, lr_scale| Arch {
            hyper: Some(Hyper {
                hidden,
                blocks,
                lr_scale,
            }),
            ..a.clone()
        };
        let cost = StepCost::new(shape(200), ModelConfig::default(), 16);
        let conv = arch("dgcn", "gdcc");
        let base = cost.of(&with(&conv, 8, 1, 1.0));
        assert!(base > 0.0);
        assert!(cost.of(&with(&conv, 16, 1, 1.0)) > 1.9 * base);
        assert!(cost.of(&with(&conv, 8, 2, 1.0)) > 1.5 * base);
        assert_eq!(cost.of(&with(&conv, 8, 1, 4.0)), base);
        let att = arch("s_trans", "gdcc");
        let ratio = |nodes| {
            let c = StepCost::new(shape(nodes), ModelConfig::default(), 16);
            c.of(&with(&att, 8, 1, 1.0)) / c.of(&with(&conv, 8, 1, 1.0))
        };
        assert!(ratio(200) > 1.0, "{}", ratio(200));
        assert!(
            ratio(2000) > 3.0 * ratio(200),
            "{} -> {}",
            ratio(200),
            ratio(2000)
        );
    }

    #[test]
    fn dropout_adds_its_masks_to_training_only() {
        let shape = ModelShape {
            nodes: 50,
            in_features: 2,
            input_len: 12,
            horizon: 12,
        };
        let a = arch("dgcn", "gdcc");
        let plain = ModelConfig::default();
        let dropped = ModelConfig {
            dropout: 0.3,
            ..ModelConfig::default()
        };
        let act = |cfg: &ModelConfig, training| activations(&a, shape, cfg, 8, training);
        // One mask per operator edge (three cells) and one for the head's hidden layer, of
        // the default widths (hidden 32, end_hidden 128).
        let (c, n, t) = (32u128, 50u128, 12u128);
        assert_eq!(
            act(&dropped, true) - act(&plain, true),
            3 * 8 * c * n * t + 8 * 128 * n
        );
        assert_eq!(act(&dropped, false), act(&plain, false));
        assert!(
            training_bytes(&a, shape, &dropped, 8, 8) > training_bytes(&a, shape, &plain, 8, 8)
        );
    }
}
