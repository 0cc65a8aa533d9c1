//! The forecasting model of an architecture: input projection, the DAG of cells, output head.
//!
//! Input `[B, T_in, N, F]`, output `[B, horizon, N, 1]` (z-scored target; the trainer
//! de-normalizes). Inside, hidden states are `[B, C, N, T_in]` (see [`crate::ops`]).

use crate::ops::{
    channel_norm, Conv, DiffusionGcn, GatedDilatedConv, GraphSupports, LinearAttention, MixGc,
    OpDims, SpatialAttention, StOp, TResult, TemporalAttention,
};
use crate::space::{Arch, CellOrder, Op, SpatialOp, TemporalOp};
use serde::{Deserialize, Serialize};
use tch::{nn, Device, Kind, Tensor};

/// Model sizes (the search space fixes the topology; these fix the widths).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// Channels of every hidden state.
    pub hidden: i64,
    /// Width of the output head's hidden layer.
    pub end_hidden: i64,
    /// Attention heads (must divide `hidden`).
    pub heads: i64,
    /// Highest adjacency power (MixGC) and diffusion steps (DGCN).
    pub order: i64,
    /// Node embedding width of the adaptive adjacency.
    pub embed: i64,
    /// Dropout probability while training, on every operator edge's output and on the output
    /// head's hidden layer (Graph WaveNet drops 0.3 of its graph convolutions' outputs); 0, the
    /// default, builds the same model as before the setting existed.
    pub dropout: f64,
    /// A linear autoregressive highway beside the network (LSTNet's "highway"): each forecast
    /// step also gets a linear function of the node's own inputs (all steps and features,
    /// shared by the nodes). It starts at zero, so the model begins as the one without it, and
    /// it can learn "the last value plus a correction" directly, where the network has to
    /// carry the last value through its nonlinear layers. Off by default: on Los-loop it did
    /// not lower test RMSE (BENCHMARKS.md).
    pub highway: bool,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            hidden: 32,
            end_hidden: 128,
            heads: 4,
            order: 2,
            embed: 10,
            dropout: 0.0,
            highway: false,
        }
    }
}

impl ModelConfig {
    /// Checks the widths; the error names the key at fault.
    pub fn validate(&self) -> crate::Result<()> {
        self.check().map_err(crate::Error::Setting)
    }

    /// The widths `arch` is built with: its own `hyper.hidden` in the joint space, these
    /// otherwise. Errs (naming `hyper.hidden`) when the heads do not divide the design's width.
    pub fn for_arch(&self, arch: &Arch) -> crate::Result<ModelConfig> {
        if let Some(h) = &arch.hyper {
            if self.heads < 1 || h.hidden % self.heads != 0 {
                return Err(crate::Error::Setting(format!(
                    "hyper.hidden ({}) must be a multiple of model.heads ({})",
                    h.hidden, self.heads
                )));
            }
        }
        Ok(self.as_built(arch))
    }

    /// The widths `arch` is built with, unchecked (infallible, for estimates such as the
    /// memory footprint): [`ModelConfig::for_arch`] without the heads check.
    pub fn as_built(&self, arch: &Arch) -> ModelConfig {
        match &arch.hyper {
            Some(h) => ModelConfig {
                hidden: h.hidden,
                ..self.clone()
            },
            None => self.clone(),
        }
    }

    fn check(&self) -> Result<(), String> {
        for (k, v) in [
            ("hidden", self.hidden),
            ("end_hidden", self.end_hidden),
            ("heads", self.heads),
            ("order", self.order),
            ("embed", self.embed),
        ] {
            if v < 1 {
                return Err(format!("model.{k} must be >= 1, got {v}"));
            }
        }
        if self.hidden % self.heads != 0 {
            return Err(format!(
                "model.heads ({}) must divide model.hidden ({})",
                self.heads, self.hidden
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(format!(
                "model.dropout must be >= 0 and < 1, got {}",
                self.dropout
            ));
        }
        Ok(())
    }
}

/// The shapes a model is built for.
#[derive(Debug, Clone, Copy)]
pub struct ModelShape {
    pub nodes: i64,
    pub in_features: i64,
    pub input_len: i64,
    pub horizon: i64,
}

impl ModelShape {
    /// The shapes of a prepared data set: its sensors, input features and windows.
    pub fn of(p: &crate::data::Prepared) -> ModelShape {
        ModelShape {
            nodes: p.n as i64,
            in_features: p.in_features as i64,
            input_len: p.input_len as i64,
            horizon: p.output_len as i64,
        }
    }
}

#[derive(Debug)]
enum Spatial {
    MixGc(MixGc),
    Dgcn(DiffusionGcn),
    STrans(SpatialAttention),
}

#[derive(Debug)]
enum Temporal {
    LinearAttn(LinearAttention),
    Gdcc(GatedDilatedConv),
    TTrans(TemporalAttention),
}

impl Spatial {
    fn new(vs: &nn::Path, op: SpatialOp, dims: OpDims, graph: &GraphSupports) -> TResult<Spatial> {
        Ok(match op {
            SpatialOp::MixGc => Spatial::MixGc(MixGc::new(&(vs / "mix_gc"), dims, graph)?),
            SpatialOp::Dgcn => Spatial::Dgcn(DiffusionGcn::new(&(vs / "dgcn"), dims, graph)?),
            SpatialOp::STrans => {
                Spatial::STrans(SpatialAttention::new(&(vs / "s_trans"), dims, graph.nodes)?)
            }
        })
    }
    fn op(&self) -> &dyn StOp {
        match self {
            Spatial::MixGc(m) => m,
            Spatial::Dgcn(m) => m,
            Spatial::STrans(m) => m,
        }
    }
}

impl Temporal {
    fn new(vs: &nn::Path, op: TemporalOp, dims: OpDims, dilation: i64) -> TResult<Temporal> {
        Ok(match op {
            TemporalOp::LinearAttn => {
                Temporal::LinearAttn(LinearAttention::new(&(vs / "linear_attn"), dims)?)
            }
            TemporalOp::Gdcc => {
                Temporal::Gdcc(GatedDilatedConv::new(&(vs / "gdcc"), dims, dilation)?)
            }
            TemporalOp::TTrans => {
                Temporal::TTrans(TemporalAttention::new(&(vs / "t_trans"), dims)?)
            }
        })
    }
    fn op(&self) -> &dyn StOp {
        match self {
            Temporal::LinearAttn(m) => m,
            Temporal::Gdcc(m) => m,
            Temporal::TTrans(m) => m,
        }
    }
}

/// What one edge computes, built.
#[derive(Debug)]
enum EdgeModule {
    Cell {
        order: CellOrder,
        spatial: Spatial,
        temporal: Temporal,
    },
    Spatial(Spatial),
    Temporal(Temporal),
    Identity,
}

impl EdgeModule {
    fn forward_t(&self, x: &Tensor, train: bool) -> TResult<Tensor> {
        match self {
            EdgeModule::Cell {
                order,
                spatial,
                temporal,
            } => {
                let (s, t) = (spatial.op(), temporal.op());
                match order {
                    CellOrder::Stt => t.forward_t(&s.forward_t(x, train)?, train),
                    CellOrder::Tts => s.forward_t(&t.forward_t(x, train)?, train),
                    CellOrder::Stp => s.forward_t(x, train)?.f_add(&t.forward_t(x, train)?),
                }
            }
            EdgeModule::Spatial(s) => s.op().forward_t(x, train),
            EdgeModule::Temporal(t) => t.op().forward_t(x, train),
            EdgeModule::Identity => Ok(x.shallow_clone()),
        }
    }
}

/// A spatial-temporal forecaster for one architecture.
#[derive(Debug)]
pub struct StModel {
    input: Conv,
    /// The wiring's edges, once per stacked block (one block outside the joint space).
    blocks: Vec<Vec<(usize, usize, EdgeModule)>>,
    nodes: usize,
    head_hidden: Conv,
    head_out: Conv,
    /// `model.highway`: inputs `[T_in * F]` to the horizon, per node.
    highway: Option<Conv>,
    shape: ModelShape,
    channels: i64,
    dropout: f64,
}

impl StModel {
    /// Builds the model's layers under `vs`. Zero edges are not built. `cfg` gives the widths
    /// as built (see [`ModelConfig::for_arch`]); `arch.blocks()` copies of the wiring are
    /// stacked, the first under the names a single block has always had.
    pub fn new(
        vs: &nn::Path,
        arch: &Arch,
        shape: ModelShape,
        cfg: &ModelConfig,
        graph: &GraphSupports,
    ) -> TResult<StModel> {
        let dims = OpDims {
            channels: cfg.hidden,
            steps: shape.input_len,
            heads: cfg.heads,
            order: cfg.order,
            embed: cfg.embed,
        };
        let c = cfg.hidden;
        let input = Conv::pointwise(&(vs / "input"), shape.in_features, c)?;
        let mut blocks = Vec::with_capacity(arch.blocks());
        for b in 0..arch.blocks() {
            let block = if b == 0 {
                vs.clone()
            } else {
                vs / format!("block_{b}")
            };
            blocks.push(Self::block(&block, arch, dims, graph)?);
        }
        let head_hidden =
            Conv::pointwise(&(vs / "head_hidden"), c * shape.input_len, cfg.end_hidden)?;
        let head_out = Conv::pointwise(&(vs / "head_out"), cfg.end_hidden, shape.horizon)?;
        // Built last and at zero, so it draws no random numbers: every other layer starts as it
        // does without the highway, and so does the forecast.
        let highway = if cfg.highway {
            Some(Conv::zeros(
                &(vs / "highway"),
                shape.in_features * shape.input_len,
                shape.horizon,
            )?)
        } else {
            None
        };
        Ok(StModel {
            input,
            blocks,
            nodes: arch.nodes,
            head_hidden,
            head_out,
            highway,
            shape,
            channels: c,
            dropout: cfg.dropout,
        })
    }

    /// One copy of the wiring's edges under `vs`.
    fn block(
        vs: &nn::Path,
        arch: &Arch,
        dims: OpDims,
        graph: &GraphSupports,
    ) -> TResult<Vec<(usize, usize, EdgeModule)>> {
        let mut edges = Vec::new();
        for e in &arch.edges {
            let p = vs / format!("edge_{}_{}", e.from, e.to);
            // Deeper edges get wider dilations, as in Graph WaveNet's stacked layers.
            let dilation = 1i64 << (e.to.saturating_sub(1)).min(4);
            let m = match e.op {
                Op::Zero => continue,
                Op::Identity => EdgeModule::Identity,
                Op::Cell(cell) => EdgeModule::Cell {
                    order: cell.order,
                    spatial: Spatial::new(&p, cell.spatial, dims, graph)?,
                    temporal: Temporal::new(&p, cell.temporal, dims, dilation)?,
                },
                Op::Spatial(s) => EdgeModule::Spatial(Spatial::new(&p, s, dims, graph)?),
                Op::Temporal(t) => EdgeModule::Temporal(Temporal::new(&p, t, dims, dilation)?),
            };
            edges.push((e.from, e.to, m));
        }
        Ok(edges)
    }

    /// `[B, T_in, N, F] -> [B, horizon, N, 1]`.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> TResult<Tensor> {
        let b = x.size()[0];
        let mut h = self.input.forward(&x.f_permute([0, 3, 2, 1])?)?; // [B,C,N,T]
        for block in &self.blocks {
            h = self.block_forward(block, h, train)?;
        }
        let z = h
            .f_relu()?
            .f_permute([0, 1, 3, 2])? // [B,C,T,N]
            .f_reshape([b, self.channels * self.shape.input_len, 1, self.shape.nodes])?
            .f_permute([0, 1, 3, 2])?; // [B,C*T,N,1]
        let hidden = self.drop(self.head_hidden.forward(&z)?.f_relu()?, train)?;
        let y = self.head_out.forward(&hidden)?; // [B,H,N,1]
        match &self.highway {
            None => Ok(y),
            Some(highway) => {
                let lags = x
                    .f_permute([0, 1, 3, 2])? // [B,T,F,N]
                    .f_reshape([
                        b,
                        self.shape.input_len * self.shape.in_features,
                        self.shape.nodes,
                    ])?
                    .f_unsqueeze(-1)?; // [B,T*F,N,1]
                y.f_add(&highway.forward(&lags)?)
            }
        }
    }

    /// Dropout while training (`model.dropout`); the tensor itself otherwise.
    fn drop(&self, x: Tensor, train: bool) -> TResult<Tensor> {
        if train && self.dropout > 0.0 {
            x.f_dropout(self.dropout, true)
        } else {
            Ok(x)
        }
    }

    /// One block: the DAG over input `h0`, its output node plus `h0` (a residual, so stacked
    /// blocks train as easily as one).
    fn block_forward(
        &self,
        edges: &[(usize, usize, EdgeModule)],
        h0: Tensor,
        train: bool,
    ) -> TResult<Tensor> {
        let mut states: Vec<Option<Tensor>> = (0..self.nodes).map(|_| None).collect();
        states[0] = Some(h0.shallow_clone());
        for node in 1..self.nodes {
            let mut acc: Option<Tensor> = None;
            for (from, _, m) in edges.iter().filter(|(_, to, _)| *to == node) {
                let Some(src) = &states[*from] else { continue };
                let y = m.forward_t(src, train)?;
                // An identity edge carries its input on unchanged, as a skip does.
                let y = match m {
                    EdgeModule::Identity => y,
                    _ => self.drop(y, train)?,
                };
                acc = Some(match acc {
                    None => y,
                    Some(a) => a.f_add(&y)?,
                });
            }
            // Normalizing each node keeps sums of several edges at a stable scale, which the
            // short proxy budget needs to compare architectures fairly.
            states[node] = match acc {
                Some(a) => Some(channel_norm(&a)?),
                None => None,
            };
        }
        match &states[self.nodes - 1] {
            Some(h) => h.f_add(&h0),
            None => Ok(h0),
        }
    }
}

/// Trainable parameters of one spatial and one temporal operator alone at these widths, for
/// the prompt's operator table (a cell's edge holds its spatial's plus its temporal's; an
/// edge into node `k` has the same count at every dilation).
pub fn operator_params(
    spatial: SpatialOp,
    temporal: TemporalOp,
    cfg: &ModelConfig,
    steps: i64,
    graph: &GraphSupports,
) -> TResult<(i64, i64)> {
    let dims = OpDims {
        channels: cfg.hidden,
        steps,
        heads: cfg.heads,
        order: cfg.order,
        embed: cfg.embed,
    };
    let vs = nn::VarStore::new(Device::Cpu);
    Spatial::new(&vs.root(), spatial, dims, graph)?;
    let s = param_count(&vs);
    let vt = nn::VarStore::new(Device::Cpu);
    Temporal::new(&vt.root(), temporal, dims, 1)?;
    Ok((s, param_count(&vt)))
}

/// Number of trainable scalars in a var store.
pub fn param_count(vs: &nn::VarStore) -> i64 {
    vs.trainable_variables()
        .iter()
        .map(|t| t.numel() as i64)
        .sum()
}

/// Builds the graph supports from a weighted adjacency `[n, n]` (row-major).
pub fn graph_supports(adj: &[f32], n: usize, device: Device) -> TResult<GraphSupports> {
    use crate::data::graph::{add_self_loops, sym_norm, transition};
    let with_loops = add_self_loops(adj, n);
    let mut transposed = vec![0f32; n * n];
    for i in 0..n {
        for j in 0..n {
            transposed[j * n + i] = adj[i * n + j];
        }
    }
    let t = |v: Vec<f32>| -> TResult<Tensor> {
        Tensor::f_from_slice(&v)?
            .f_reshape([n as i64, n as i64])?
            .f_to_kind(Kind::Float)?
            .f_to_device(device)
    };
    Ok(GraphSupports {
        sym: t(sym_norm(&with_loops, n))?,
        forward: t(transition(&with_loops, n))?,
        backward: t(transition(&add_self_loops(&transposed, n), n))?,
        nodes: n as i64,
    })
}
