//! Diffusion graph convolution (DCRNN / Graph WaveNet): K diffusion steps along the forward and
//! backward random-walk transitions plus a learned adaptive adjacency
//! `softmax(relu(E1 E2^T))`, which finds dependencies the road graph does not record.

use super::{propagate, Conv, GraphSupports, OpDims, StOp, TResult};
use tch::nn::{self, Init};
use tch::{Kind, Tensor};

#[derive(Debug)]
pub struct DiffusionGcn {
    e1: Tensor,
    e2: Tensor,
    forward_p: Tensor,
    backward_p: Tensor,
    order: i64,
    project: Conv,
}

impl DiffusionGcn {
    pub fn new(vs: &nn::Path, dims: OpDims, graph: &GraphSupports) -> TResult<DiffusionGcn> {
        let init = Init::Randn {
            mean: 0.0,
            stdev: 1.0,
        };
        let c = dims.channels;
        Ok(DiffusionGcn {
            e1: vs.f_var("source_embed", &[graph.nodes, dims.embed], init)?,
            e2: vs.f_var("target_embed", &[graph.nodes, dims.embed], init)?,
            forward_p: graph.forward.shallow_clone(),
            backward_p: graph.backward.shallow_clone(),
            order: dims.order,
            project: Conv::pointwise(&(vs / "project"), c * (1 + 3 * dims.order), c)?,
        })
    }
}

impl StOp for DiffusionGcn {
    fn forward_t(&self, x: &Tensor, _train: bool) -> TResult<Tensor> {
        let adaptive = self
            .e1
            .f_matmul(&self.e2.f_transpose(0, 1)?)?
            .f_relu()?
            .f_softmax(1, Kind::Float)?;
        let mut parts = vec![x.shallow_clone()];
        for support in [&self.forward_p, &self.backward_p, &adaptive] {
            let mut h = x.shallow_clone();
            for _ in 0..self.order {
                h = propagate(&h, support)?;
                parts.push(h.shallow_clone());
            }
        }
        self.project.forward(&Tensor::f_cat(&parts, 1)?)
    }
}
