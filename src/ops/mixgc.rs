//! MixGC: mixed-order (MixHop-style) graph convolution, as in POLLA's spatial operator.
//!
//! `h_k = A^k x` for `k = 0..=K` over the symmetrically normalized adjacency with self-loops;
//! each power gets its own linear map (so the model can weigh near and far neighbourhoods
//! differently, which a plain GCN cannot), the results are concatenated and projected back.

use super::{propagate, Conv, GraphSupports, OpDims, StOp, TResult};
use tch::{nn, Tensor};

#[derive(Debug)]
pub struct MixGc {
    per_power: Vec<Conv>,
    project: Conv,
    a: Tensor,
}

impl MixGc {
    pub fn new(vs: &nn::Path, dims: OpDims, graph: &GraphSupports) -> TResult<MixGc> {
        let c = dims.channels;
        let per_power = (0..=dims.order)
            .map(|k| Conv::pointwise(&(vs / format!("power{k}")), c, c))
            .collect::<TResult<Vec<_>>>()?;
        let project = Conv::pointwise(&(vs / "project"), c * (dims.order + 1), c)?;
        Ok(MixGc {
            per_power,
            project,
            a: graph.sym.shallow_clone(),
        })
    }
}

impl StOp for MixGc {
    fn forward_t(&self, x: &Tensor, _train: bool) -> TResult<Tensor> {
        let mut h = x.shallow_clone();
        let mut parts = Vec::with_capacity(self.per_power.len());
        for (k, lin) in self.per_power.iter().enumerate() {
            if k > 0 {
                h = propagate(&h, &self.a)?;
            }
            parts.push(lin.forward(&h)?);
        }
        self.project.forward(&Tensor::f_cat(&parts, 1)?)
    }
}
