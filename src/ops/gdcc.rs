//! Gated dilated causal convolution (WaveNet / Graph WaveNet temporal operator):
//! `tanh(conv_f(x)) * sigmoid(conv_g(x))` with kernel 2 along time, left-padded so that the
//! output at step t sees only steps <= t and the length is kept.

use super::{Conv, OpDims, StOp, TResult};
use tch::{nn, Tensor};

#[derive(Debug)]
pub struct GatedDilatedConv {
    filter: Conv,
    gate: Conv,
    dilation: i64,
}

impl GatedDilatedConv {
    pub fn new(vs: &nn::Path, dims: OpDims, dilation: i64) -> TResult<GatedDilatedConv> {
        let c = dims.channels;
        Ok(GatedDilatedConv {
            filter: Conv::new(&(vs / "filter"), c, c, 2, dilation)?,
            gate: Conv::new(&(vs / "gate"), c, c, 2, dilation)?,
            dilation,
        })
    }
}

impl StOp for GatedDilatedConv {
    fn forward_t(&self, x: &Tensor, _train: bool) -> TResult<Tensor> {
        let padded = x.f_constant_pad_nd([self.dilation, 0])?;
        let f = self.filter.forward(&padded)?.f_tanh()?;
        let g = self.gate.forward(&padded)?.f_sigmoid()?;
        f.f_mul(&g)
    }
}
