//! Operators of the search space in tch, and the building blocks they share.
//!
//! # Tensor layout (used everywhere in `ops` and `model`)
//! Hidden states are `[batch, channels, nodes, time]` (`[B, C, N, T]`), the Graph WaveNet /
//! AutoCTS convention: a 1x1 convolution is a per-(node, time) linear map over channels, a
//! `(1, k)` convolution runs along time, and graph propagation contracts the node axis.
//! Every operator maps `[B, C, N, T]` to `[B, C, N, T]` (same channels, same length) so that
//! any operator can sit on any edge and node inputs can be summed.

mod attention;
mod dgcn;
mod gdcc;
mod linear_attn;
mod mixgc;

pub use attention::{SpatialAttention, TemporalAttention};
pub use dgcn::DiffusionGcn;
pub use gdcc::GatedDilatedConv;
pub use linear_attn::LinearAttention;
pub use mixgc::MixGc;

use tch::nn::{self, Init};
use tch::{TchError, Tensor};

/// Result of tensor work: tch's error type, so `?` works on every `f_*` call.
pub type TResult<T> = Result<T, TchError>;

/// The fixed graph operators an operator may need, built once per dataset.
#[derive(Debug)]
pub struct GraphSupports {
    /// Symmetrically normalized adjacency with self-loops, `[N, N]` (MixGC).
    pub sym: Tensor,
    /// Forward random-walk transition `D^-1 A`, `[N, N]` (diffusion GCN).
    pub forward: Tensor,
    /// Backward random-walk transition `D^-1 A^T`, `[N, N]` (diffusion GCN).
    pub backward: Tensor,
    /// Number of nodes.
    pub nodes: i64,
}

impl GraphSupports {
    /// A shallow copy (shares storage) for a module to keep.
    pub fn share(&self) -> GraphSupports {
        GraphSupports {
            sym: self.sym.shallow_clone(),
            forward: self.forward.shallow_clone(),
            backward: self.backward.shallow_clone(),
            nodes: self.nodes,
        }
    }
}

/// Sizes every operator is built with.
#[derive(Debug, Clone, Copy)]
pub struct OpDims {
    /// Channels of the hidden state.
    pub channels: i64,
    /// Length of the time axis (the input window).
    pub steps: i64,
    /// Attention heads (channels must divide by it).
    pub heads: i64,
    /// Highest adjacency power of MixGC and diffusion order of the diffusion GCN.
    pub order: i64,
    /// Width of the node embeddings of the adaptive adjacency.
    pub embed: i64,
}

/// A convolution with kernel `(1, k)` along time, optional dilation. `k = 1` is the per-position
/// linear map over channels used all over the models.
#[derive(Debug)]
pub struct Conv {
    w: Tensor,
    b: Tensor,
    dilation: i64,
}

impl Conv {
    pub fn new(vs: &nn::Path, cin: i64, cout: i64, k: i64, dilation: i64) -> TResult<Conv> {
        let w = vs.f_var(
            "weight",
            &[cout, cin, 1, k],
            nn::init::DEFAULT_KAIMING_UNIFORM,
        )?;
        let bound = 1.0 / ((cin * k) as f64).sqrt();
        let b = vs.f_var(
            "bias",
            &[cout],
            Init::Uniform {
                lo: -bound,
                up: bound,
            },
        )?;
        Ok(Conv { w, b, dilation })
    }

    /// A 1x1 convolution whose weights and bias start at zero (it computes 0 until trained, and
    /// draws no random numbers).
    pub fn zeros(vs: &nn::Path, cin: i64, cout: i64) -> TResult<Conv> {
        let w = vs.f_var("weight", &[cout, cin, 1, 1], Init::Const(0.0))?;
        let b = vs.f_var("bias", &[cout], Init::Const(0.0))?;
        Ok(Conv { w, b, dilation: 1 })
    }

    /// A 1x1 convolution.
    pub fn pointwise(vs: &nn::Path, cin: i64, cout: i64) -> TResult<Conv> {
        Conv::new(vs, cin, cout, 1, 1)
    }

    /// `[B, Cin, N, T] -> [B, Cout, N, T - dilation*(k-1)]` (no padding here).
    pub fn forward(&self, x: &Tensor) -> TResult<Tensor> {
        x.f_conv2d(
            &self.w,
            Some(&self.b),
            [1, 1],
            [0, 0],
            [1, self.dilation],
            1,
        )
    }
}

/// Graph propagation: `out[b, c, m, t] = sum_n a[m, n] * x[b, c, n, t]`.
pub fn propagate(x: &Tensor, a: &Tensor) -> TResult<Tensor> {
    Tensor::f_einsum("bcnt,mn->bcmt", &[x, a], None::<i64>)
}

/// Layer normalization over the channel axis of a `[B, C, N, T]` tensor.
pub fn channel_norm(x: &Tensor) -> TResult<Tensor> {
    let c = x.size()[1];
    x.f_permute([0, 2, 3, 1])?
        .f_layer_norm([c], None::<&Tensor>, None::<&Tensor>, 1e-5, false)?
        .f_permute([0, 3, 1, 2])
}

/// Splits channels into heads: `[B, C, N, T] -> [B, H, C/H, N, T]`.
fn split_heads(x: &Tensor, heads: i64) -> TResult<Tensor> {
    let s = x.size();
    x.f_reshape([s[0], heads, s[1] / heads, s[2], s[3]])
}

/// Inverse of [`split_heads`].
fn merge_heads(x: &Tensor) -> TResult<Tensor> {
    let s = x.size();
    x.f_reshape([s[0], s[1] * s[2], s[3], s[4]])
}

/// The operators, each `[B, C, N, T] -> [B, C, N, T]`.
pub trait StOp: std::fmt::Debug {
    fn forward_t(&self, x: &Tensor, train: bool) -> TResult<Tensor>;
}
