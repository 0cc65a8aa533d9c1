//! Linear attention over time (POLLA's temporal operator): softmax(QK^T)V is replaced by
//! `phi(Q) (phi(K)^T V) / (phi(Q) sum_t phi(K_t))` with `phi = elu + 1`, which costs O(T)
//! instead of O(T^2) and stays positive, so the normalizer cannot vanish.

use super::{merge_heads, split_heads, Conv, OpDims, StOp, TResult};
use tch::nn::{self, Init};
use tch::Tensor;

#[derive(Debug)]
pub struct LinearAttention {
    q: Conv,
    k: Conv,
    v: Conv,
    out: Conv,
    /// Learned position embedding `[1, C, 1, T]`: attention alone is blind to time order.
    pos: Tensor,
    heads: i64,
}

impl LinearAttention {
    pub fn new(vs: &nn::Path, dims: OpDims) -> TResult<LinearAttention> {
        let c = dims.channels;
        Ok(LinearAttention {
            q: Conv::pointwise(&(vs / "q"), c, c)?,
            k: Conv::pointwise(&(vs / "k"), c, c)?,
            v: Conv::pointwise(&(vs / "v"), c, c)?,
            out: Conv::pointwise(&(vs / "out"), c, c)?,
            pos: vs.f_var(
                "pos",
                &[1, c, 1, dims.steps],
                Init::Randn {
                    mean: 0.0,
                    stdev: 0.02,
                },
            )?,
            heads: dims.heads,
        })
    }
}

impl StOp for LinearAttention {
    fn forward_t(&self, x: &Tensor, _train: bool) -> TResult<Tensor> {
        let xp = x.f_add(&self.pos)?;
        let phi = |t: Tensor| -> TResult<Tensor> { t.f_elu()?.f_add_scalar(1.0) };
        let q = phi(split_heads(&self.q.forward(&xp)?, self.heads)?)?; // [B,H,D,N,T]
        let k = phi(split_heads(&self.k.forward(&xp)?, self.heads)?)?;
        let v = split_heads(&self.v.forward(x)?, self.heads)?;
        let kv = Tensor::f_einsum("bhdnt,bhent->bhnde", &[&k, &v], None::<i64>)?;
        let ksum = k.f_sum_dim_intlist([-1i64].as_slice(), false, None)?; // [B,H,D,N]
        let denom =
            Tensor::f_einsum("bhdnt,bhdn->bhnt", &[&q, &ksum], None::<i64>)?.f_add_scalar(1e-6)?;
        let num = Tensor::f_einsum("bhdnt,bhnde->bhent", &[&q, &kv], None::<i64>)?;
        let y = num.f_div(&denom.f_unsqueeze(2)?)?;
        self.out.forward(&merge_heads(&y)?)
    }
}
