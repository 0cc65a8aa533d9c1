//! Full softmax multi-head attention over time (temporal transformer) and over nodes (spatial
//! transformer). The spatial one costs O(N^2) per time step: on large graphs prefer MixGC/DGCN.

use super::{merge_heads, split_heads, Conv, OpDims, StOp, TResult};
use tch::nn::{self, Init};
use tch::{Kind, Tensor};

/// Multi-head scaled dot-product attention along one axis of `[B, C, N, T]`.
#[derive(Debug)]
struct Mha {
    q: Conv,
    k: Conv,
    v: Conv,
    out: Conv,
    heads: i64,
}

impl Mha {
    fn new(vs: &nn::Path, dims: OpDims) -> TResult<Mha> {
        let c = dims.channels;
        Ok(Mha {
            q: Conv::pointwise(&(vs / "q"), c, c)?,
            k: Conv::pointwise(&(vs / "k"), c, c)?,
            v: Conv::pointwise(&(vs / "v"), c, c)?,
            out: Conv::pointwise(&(vs / "out"), c, c)?,
            heads: dims.heads,
        })
    }

    /// `over_time`: attend across T for each node; else across N for each time step.
    fn forward(&self, x: &Tensor, with_pos: &Tensor, over_time: bool) -> TResult<Tensor> {
        let q = split_heads(&self.q.forward(with_pos)?, self.heads)?; // [B,H,D,N,T]
        let k = split_heads(&self.k.forward(with_pos)?, self.heads)?;
        let v = split_heads(&self.v.forward(x)?, self.heads)?;
        let d = q.size()[2] as f64;
        let (score_eq, mix_eq) = if over_time {
            ("bhdnt,bhdns->bhnts", "bhnts,bhdns->bhdnt")
        } else {
            ("bhdnt,bhdmt->bhtnm", "bhtnm,bhdmt->bhdnt")
        };
        let att = Tensor::f_einsum(score_eq, &[&q, &k], None::<i64>)?
            .f_mul_scalar(1.0 / d.sqrt())?
            .f_softmax(-1, Kind::Float)?;
        let y = Tensor::f_einsum(mix_eq, &[&att, &v], None::<i64>)?;
        self.out.forward(&merge_heads(&y)?)
    }
}

/// Temporal transformer: softmax attention over the time steps of each sensor.
#[derive(Debug)]
pub struct TemporalAttention {
    mha: Mha,
    pos: Tensor,
}

impl TemporalAttention {
    pub fn new(vs: &nn::Path, dims: OpDims) -> TResult<TemporalAttention> {
        Ok(TemporalAttention {
            mha: Mha::new(vs, dims)?,
            pos: vs.f_var(
                "pos",
                &[1, dims.channels, 1, dims.steps],
                Init::Randn {
                    mean: 0.0,
                    stdev: 0.02,
                },
            )?,
        })
    }
}

impl StOp for TemporalAttention {
    fn forward_t(&self, x: &Tensor, _train: bool) -> TResult<Tensor> {
        self.mha.forward(x, &x.f_add(&self.pos)?, true)
    }
}

/// Spatial transformer: softmax attention over sensors at each time step, with a learned node
/// embedding so that attention can tell sensors apart.
#[derive(Debug)]
pub struct SpatialAttention {
    mha: Mha,
    node: Tensor,
}

impl SpatialAttention {
    pub fn new(vs: &nn::Path, dims: OpDims, nodes: i64) -> TResult<SpatialAttention> {
        Ok(SpatialAttention {
            mha: Mha::new(vs, dims)?,
            node: vs.f_var(
                "node_embed",
                &[1, dims.channels, nodes, 1],
                Init::Randn {
                    mean: 0.0,
                    stdev: 0.02,
                },
            )?,
        })
    }
}

impl StOp for SpatialAttention {
    fn forward_t(&self, x: &Tensor, _train: bool) -> TResult<Tensor> {
        self.mha.forward(x, &x.f_add(&self.node)?, false)
    }
}
