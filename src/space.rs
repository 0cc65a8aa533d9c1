//! The search space: architectures as DAGs of cells, their JSON form, validation with errors that
//! name the field, canonical form and stable hash, and seeded sampling, mutation and crossover.
//!
//! # JSON form (what the instructor is asked to produce)
//! ```json
//! {"space": "ists", "nodes": 4, "edges": [
//!   {"from": 0, "to": 1, "op": "STT", "spatial": "mix_gc", "temporal": "linear_attn"},
//!   {"from": 1, "to": 2, "op": "TTS"},
//!   {"from": 0, "to": 3, "op": "identity"},
//!   {"from": 2, "to": 3, "op": "STP", "temporal": "gdcc"}]}
//! ```
//! Node 0 is the embedded input, node `nodes-1` is the output; every other node sums the outputs
//! of its incoming edges. Edges go from a lower to a higher node index. In the `ists` space an edge
//! is a cell (`STT` spatial-then-temporal, `TTS` temporal-then-spatial, `STP` both in parallel,
//! summed) whose `spatial`/`temporal` operators default to `mix_gc`/`linear_attn`, or `identity`,
//! or `zero`. In the `autocts` space an edge is one operator: `gdcc`, `dgcn`, `t_trans`,
//! `s_trans`, `skip` (alias `identity`) or `none` (alias `zero`).

pub use crate::hyper::{Hyper, HyperSpace};
use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;

/// Number of nodes (hidden states) of an architecture, input and output included.
pub const DEFAULT_NODES: usize = 4;

/// Errors found while reading or validating an architecture. Each names the field at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ArchError {
    #[error("architecture JSON is malformed: {0}")]
    Json(String),
    #[error("space: unknown search space '{0}' (known: ists, autocts)")]
    UnknownSpace(String),
    #[error("nodes: the {space} space has {expected} nodes, got {got}")]
    NodeCount {
        space: SpaceKind,
        expected: usize,
        got: usize,
    },
    #[error("edges: the architecture is empty (no edges other than zero)")]
    Empty,
    #[error(
        "edges[{edge}].{field}: unknown operator '{name}' (the {space} space allows: {allowed})"
    )]
    UnknownOp {
        edge: usize,
        field: &'static str,
        name: String,
        space: SpaceKind,
        allowed: String,
    },
    #[error("edges[{edge}].{field}: only cell edges (STT, TTS, STP) take a {field} operator, not '{op}'")]
    FieldNotAllowed {
        edge: usize,
        field: &'static str,
        op: String,
    },
    #[error("edges[{edge}].{field}: node {node} does not exist (nodes are 0..{last})")]
    NodeOutOfRange {
        edge: usize,
        field: &'static str,
        node: i64,
        last: usize,
    },
    #[error("edges[{edge}]: duplicate edge {from}->{to} (already edges[{first}])")]
    DuplicateEdge {
        edge: usize,
        first: usize,
        from: usize,
        to: usize,
    },
    #[error("edges: cycle through nodes {}", fmt_path(.0))]
    Cycle(Vec<usize>),
    #[error("edges[{edge}]: edge {from}->{to} goes to an earlier node; edges must go from a lower to a higher node index")]
    BackwardEdge { edge: usize, from: usize, to: usize },
    /// The message names the nodes the input does reach, so a repair knows where an edge to the
    /// output can start.
    #[error(
        "edges: output node {output} is not reachable from input node 0 through non-zero edges \
         ({})",
        fmt_fix(.reachable, *.output)
    )]
    OutputUnreachable {
        output: usize,
        reachable: Vec<usize>,
    },
    /// A design's hyperparameters out of bounds or not offered; the message names the field.
    #[error("{0}")]
    Hyper(String),
}

/// The way out of an unreachable output: where an edge to it can start.
fn fmt_fix(reachable: &[usize], output: usize) -> String {
    match reachable {
        [] | [_] => {
            format!("node 0 reaches no other node; add an edge from node 0 to node {output}")
        }
        [rest @ .., last] => format!(
            "node 0 reaches nodes {} and {last}; add an edge from one of them to node {output}",
            rest.iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn fmt_path(nodes: &[usize]) -> String {
    nodes
        .iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join("->")
}

/// Which operator set an architecture draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpaceKind {
    /// The ISTS paper's space: spatial-temporal cells in a fixed order, identity, zero.
    Ists,
    /// The AutoCTS/AutoCTS+ operator set: one operator per edge.
    Autocts,
}

impl fmt::Display for SpaceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SpaceKind::Ists => "ists",
            SpaceKind::Autocts => "autocts",
        })
    }
}

impl std::str::FromStr for SpaceKind {
    type Err = ArchError;
    fn from_str(s: &str) -> Result<Self, ArchError> {
        match s.to_ascii_lowercase().as_str() {
            "ists" => Ok(SpaceKind::Ists),
            "autocts" => Ok(SpaceKind::Autocts),
            _ => Err(ArchError::UnknownSpace(s.to_string())),
        }
    }
}

/// The order in which a cell applies its spatial and temporal operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CellOrder {
    /// Spatial then temporal.
    Stt,
    /// Temporal then spatial.
    Tts,
    /// Spatial and temporal in parallel, outputs summed.
    Stp,
}

/// Spatial operators (mix information across sensors).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SpatialOp {
    /// Mixed-order (MixHop-style) graph convolution over adjacency powers 0..K.
    MixGc,
    /// Diffusion graph convolution with forward/backward transitions and an adaptive adjacency.
    Dgcn,
    /// Spatial transformer: attention over nodes at each time step.
    STrans,
}

/// Temporal operators (mix information across time steps).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TemporalOp {
    /// POLLA-style linear attention over time (elu+1 feature map, O(T)).
    LinearAttn,
    /// Gated dilated causal convolution.
    Gdcc,
    /// Temporal transformer: full softmax attention over time.
    TTrans,
}

/// A spatial-temporal cell of the `ists` space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cell {
    pub order: CellOrder,
    pub spatial: SpatialOp,
    pub temporal: TemporalOp,
}

/// What one edge computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    Cell(Cell),
    Spatial(SpatialOp),
    Temporal(TemporalOp),
    Identity,
    Zero,
}

impl CellOrder {
    pub const ALL: [CellOrder; 3] = [CellOrder::Stt, CellOrder::Tts, CellOrder::Stp];
    pub fn name(self) -> &'static str {
        match self {
            CellOrder::Stt => "STT",
            CellOrder::Tts => "TTS",
            CellOrder::Stp => "STP",
        }
    }
}

impl SpatialOp {
    pub const ALL: [SpatialOp; 3] = [SpatialOp::MixGc, SpatialOp::Dgcn, SpatialOp::STrans];
    pub fn name(self) -> &'static str {
        match self {
            SpatialOp::MixGc => "mix_gc",
            SpatialOp::Dgcn => "dgcn",
            SpatialOp::STrans => "s_trans",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.name() == s)
    }
}

impl TemporalOp {
    pub const ALL: [TemporalOp; 3] = [TemporalOp::LinearAttn, TemporalOp::Gdcc, TemporalOp::TTrans];
    pub fn name(self) -> &'static str {
        match self {
            TemporalOp::LinearAttn => "linear_attn",
            TemporalOp::Gdcc => "gdcc",
            TemporalOp::TTrans => "t_trans",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.name() == s)
    }
}

impl Op {
    /// The `op` field as written in JSON for this space.
    pub fn name(&self, space: SpaceKind) -> &'static str {
        match (self, space) {
            (Op::Cell(c), _) => c.order.name(),
            (Op::Spatial(s), _) => s.name(),
            (Op::Temporal(t), _) => t.name(),
            (Op::Identity, SpaceKind::Ists) => "identity",
            (Op::Identity, SpaceKind::Autocts) => "skip",
            (Op::Zero, SpaceKind::Ists) => "zero",
            (Op::Zero, SpaceKind::Autocts) => "none",
        }
    }

    /// A short label for tables and logs, e.g. `STT(mix_gc,linear_attn)`.
    pub fn label(&self, space: SpaceKind) -> String {
        match self {
            Op::Cell(c) => format!(
                "{}({},{})",
                c.order.name(),
                c.spatial.name(),
                c.temporal.name()
            ),
            other => other.name(space).to_string(),
        }
    }
}

impl SpaceKind {
    /// The `op` values this space accepts (aliases excluded).
    pub fn op_names(self) -> &'static [&'static str] {
        match self {
            SpaceKind::Ists => &["STT", "TTS", "STP", "identity", "zero"],
            SpaceKind::Autocts => &["gdcc", "dgcn", "t_trans", "s_trans", "skip", "none"],
        }
    }

    /// Every non-zero edge choice of this space (what sampling draws from).
    pub fn choices(self) -> Vec<Op> {
        match self {
            SpaceKind::Ists => {
                let mut v = Vec::new();
                for order in CellOrder::ALL {
                    for spatial in SpatialOp::ALL {
                        for temporal in TemporalOp::ALL {
                            v.push(Op::Cell(Cell {
                                order,
                                spatial,
                                temporal,
                            }));
                        }
                    }
                }
                v.push(Op::Identity);
                v
            }
            SpaceKind::Autocts => vec![
                Op::Temporal(TemporalOp::Gdcc),
                Op::Spatial(SpatialOp::Dgcn),
                Op::Temporal(TemporalOp::TTrans),
                Op::Spatial(SpatialOp::STrans),
                Op::Identity,
            ],
        }
    }

    fn parse_op(self, s: &str) -> Option<Op> {
        let cell = |order| {
            Op::Cell(Cell {
                order,
                spatial: SpatialOp::MixGc,
                temporal: TemporalOp::LinearAttn,
            })
        };
        match self {
            SpaceKind::Ists => match s {
                "STT" | "stt" => Some(cell(CellOrder::Stt)),
                "TTS" | "tts" => Some(cell(CellOrder::Tts)),
                "STP" | "stp" => Some(cell(CellOrder::Stp)),
                "identity" | "skip" => Some(Op::Identity),
                "zero" | "none" => Some(Op::Zero),
                _ => None,
            },
            SpaceKind::Autocts => match s {
                "gdcc" => Some(Op::Temporal(TemporalOp::Gdcc)),
                "dgcn" => Some(Op::Spatial(SpatialOp::Dgcn)),
                "t_trans" => Some(Op::Temporal(TemporalOp::TTrans)),
                "s_trans" => Some(Op::Spatial(SpatialOp::STrans)),
                "skip" | "identity" => Some(Op::Identity),
                "none" | "zero" => Some(Op::Zero),
                _ => None,
            },
        }
    }

    /// One line per operator, for prompts and `--help`-style listings.
    pub fn catalog(self) -> Vec<(&'static str, &'static str)> {
        let mut v = match self {
            SpaceKind::Ists => vec![
                ("STT", "cell: spatial operator, then temporal operator on its output"),
                ("TTS", "cell: temporal operator, then spatial operator on its output"),
                ("STP", "cell: spatial and temporal operators in parallel on the same input, outputs summed"),
                ("identity", "passes the hidden state through unchanged"),
                ("zero", "no connection (same as omitting the edge)"),
            ],
            SpaceKind::Autocts => vec![
                ("gdcc", "gated dilated causal convolution over time (kernel 2), tanh*sigmoid gate"),
                ("dgcn", "diffusion graph convolution, K=2, forward/backward transitions plus a learned adaptive adjacency"),
                ("t_trans", "temporal transformer: multi-head softmax attention over the time steps of each sensor"),
                ("s_trans", "spatial transformer: multi-head softmax attention over sensors at each time step"),
                ("skip", "identity: passes the hidden state through unchanged"),
                ("none", "no connection"),
            ],
        };
        if self == SpaceKind::Ists {
            v.extend([
                ("spatial=mix_gc", "mixed-order (MixHop) graph convolution over adjacency powers 0..K, one linear map per power, concatenated and projected (default)"),
                ("spatial=dgcn", "diffusion graph convolution with forward/backward transitions plus a learned adaptive adjacency"),
                ("spatial=s_trans", "softmax attention over sensors at each time step"),
                ("temporal=linear_attn", "linear attention over time, elu+1 feature map, O(T) cost (default)"),
                ("temporal=gdcc", "gated dilated causal convolution over time"),
                ("temporal=t_trans", "full softmax attention over time"),
            ]);
        }
        v
    }
}

/// One edge of a validated architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Edge {
    pub from: usize,
    pub to: usize,
    pub op: Op,
}

/// A validated architecture. Build it with [`Arch::from_json`] or [`Arch::from_spec`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arch {
    pub space: SpaceKind,
    pub nodes: usize,
    pub edges: Vec<Edge>,
    /// The joint space's hyperparameters; None: the configured model and training settings.
    pub hyper: Option<Hyper>,
}

/// The serde form of an edge, as written by users and LLMs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeSpec {
    pub from: i64,
    pub to: i64,
    pub op: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spatial: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temporal: Option<String>,
}

impl EdgeSpec {
    /// A stable text key of the edge (its ends, operator and cell parts), for comparing
    /// decisions without validating them.
    pub fn key(&self) -> String {
        format!(
            "{}>{}:{}:{}:{}",
            self.from,
            self.to,
            self.op,
            self.spatial.as_deref().unwrap_or(""),
            self.temporal.as_deref().unwrap_or("")
        )
    }
}

/// The key of a set of edges, whatever their order: equal for the same decisions.
pub fn edges_key<'a>(edges: impl IntoIterator<Item = &'a EdgeSpec>) -> String {
    let mut keys: Vec<String> = edges.into_iter().map(EdgeSpec::key).collect();
    keys.sort();
    keys.join(";")
}

/// The serde form of an architecture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub space: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<usize>,
    pub edges: Vec<EdgeSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hyper: Option<Hyper>,
}

impl Arch {
    /// Parses and validates the JSON form. `default_space` applies when the JSON names none.
    pub fn from_json(text: &str, default_space: SpaceKind) -> Result<Arch, ArchError> {
        let spec: ArchSpec =
            serde_json::from_str(text).map_err(|e| ArchError::Json(e.to_string()))?;
        Arch::from_spec(&spec, default_space)
    }

    /// Validates the serde form. Checks run in an order that gives the most precise message:
    /// node count, each edge's fields, duplicates, cycles, backward edges, emptiness, reachability.
    pub fn from_spec(spec: &ArchSpec, default_space: SpaceKind) -> Result<Arch, ArchError> {
        let space = match &spec.space {
            Some(s) => s.parse()?,
            None => default_space,
        };
        let nodes = spec.nodes.unwrap_or(DEFAULT_NODES);
        if nodes != DEFAULT_NODES {
            return Err(ArchError::NodeCount {
                space,
                expected: DEFAULT_NODES,
                got: nodes,
            });
        }
        let mut edges = Vec::with_capacity(spec.edges.len());
        for (i, e) in spec.edges.iter().enumerate() {
            let node = |field: &'static str, v: i64| -> Result<usize, ArchError> {
                if v < 0 || v as usize >= nodes {
                    Err(ArchError::NodeOutOfRange {
                        edge: i,
                        field,
                        node: v,
                        last: nodes - 1,
                    })
                } else {
                    Ok(v as usize)
                }
            };
            let from = node("from", e.from)?;
            let to = node("to", e.to)?;
            let unknown = |field, name: &str, allowed: String| ArchError::UnknownOp {
                edge: i,
                field,
                name: name.to_string(),
                space,
                allowed,
            };
            let mut op = space
                .parse_op(e.op.trim())
                .ok_or_else(|| unknown("op", &e.op, space.op_names().join(", ")))?;
            match &mut op {
                Op::Cell(cell) => {
                    if let Some(s) = &e.spatial {
                        cell.spatial = SpatialOp::parse(s.trim()).ok_or_else(|| {
                            unknown("spatial", s, names(SpatialOp::ALL.map(|o| o.name())))
                        })?;
                    }
                    if let Some(t) = &e.temporal {
                        cell.temporal = TemporalOp::parse(t.trim()).ok_or_else(|| {
                            unknown("temporal", t, names(TemporalOp::ALL.map(|o| o.name())))
                        })?;
                    }
                }
                _ => {
                    for (field, v) in [("spatial", &e.spatial), ("temporal", &e.temporal)] {
                        if v.is_some() {
                            return Err(ArchError::FieldNotAllowed {
                                edge: i,
                                field,
                                op: e.op.clone(),
                            });
                        }
                    }
                }
            }
            if let Some(first) = edges
                .iter()
                .position(|x: &Edge| x.from == from && x.to == to)
            {
                return Err(ArchError::DuplicateEdge {
                    edge: i,
                    first,
                    from,
                    to,
                });
            }
            edges.push(Edge { from, to, op });
        }
        if let Some(cycle) = find_cycle(nodes, &edges) {
            return Err(ArchError::Cycle(cycle));
        }
        if let Some((i, e)) = edges.iter().enumerate().find(|(_, e)| e.from >= e.to) {
            return Err(ArchError::BackwardEdge {
                edge: i,
                from: e.from,
                to: e.to,
            });
        }
        if edges.iter().all(|e| e.op == Op::Zero) {
            return Err(ArchError::Empty);
        }
        if let Some(h) = &spec.hyper {
            h.check().map_err(ArchError::Hyper)?;
        }
        let arch = Arch {
            space,
            nodes,
            edges,
            hyper: spec.hyper,
        };
        let reached = arch.reachable_from_input();
        if !reached[nodes - 1] {
            return Err(ArchError::OutputUnreachable {
                output: nodes - 1,
                reachable: (0..nodes).filter(|&n| reached[n]).collect(),
            });
        }
        Ok(arch)
    }

    /// The serde form (as written, not canonicalized).
    pub fn to_spec(&self) -> ArchSpec {
        ArchSpec {
            space: Some(self.space.to_string()),
            nodes: Some(self.nodes),
            edges: self
                .edges
                .iter()
                .map(|e| {
                    let (spatial, temporal) = match e.op {
                        Op::Cell(c) => (
                            Some(c.spatial.name().to_string()),
                            Some(c.temporal.name().to_string()),
                        ),
                        _ => (None, None),
                    };
                    EdgeSpec {
                        from: e.from as i64,
                        to: e.to as i64,
                        op: e.op.name(self.space).to_string(),
                        spatial,
                        temporal,
                    }
                })
                .collect(),
            hyper: self.hyper,
        }
    }

    /// Compact JSON of the serde form.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.to_spec()).unwrap_or_default()
    }

    /// The output node index.
    pub fn output(&self) -> usize {
        self.nodes - 1
    }

    fn reachable_from_input(&self) -> Vec<bool> {
        let mut seen = vec![false; self.nodes];
        seen[0] = true;
        // Edges go forward, so one pass in order of `from` suffices.
        let mut sorted: Vec<&Edge> = self.edges.iter().filter(|e| e.op != Op::Zero).collect();
        sorted.sort_by_key(|e| e.from);
        for e in sorted {
            if seen[e.from] {
                seen[e.to] = true;
            }
        }
        seen
    }

    fn reaches_output(&self) -> Vec<bool> {
        let mut seen = vec![false; self.nodes];
        seen[self.nodes - 1] = true;
        let mut sorted: Vec<&Edge> = self.edges.iter().filter(|e| e.op != Op::Zero).collect();
        sorted.sort_by_key(|e| std::cmp::Reverse(e.to));
        for e in sorted {
            if seen[e.to] {
                seen[e.from] = true;
            }
        }
        seen
    }

    /// The canonical form: zero edges and edges on no input-to-output path removed, intermediate
    /// nodes relabelled to the smallest spelling, edges sorted. Two spellings of the same
    /// computation give equal canonical forms.
    pub fn canonical(&self) -> Arch {
        let fwd = self.reachable_from_input();
        let bwd = self.reaches_output();
        let live: Vec<Edge> = self
            .edges
            .iter()
            .filter(|e| e.op != Op::Zero && fwd[e.from] && bwd[e.to])
            .copied()
            .collect();
        let inner: Vec<usize> = (1..self.nodes - 1).collect();
        let mut best: Option<Vec<(usize, usize, Op)>> = None;
        for perm in permutations(&inner) {
            // perm[k] is the new label of node inner[k].
            let relabel = |n: usize| {
                if n == 0 || n == self.nodes - 1 {
                    n
                } else {
                    perm[n - 1]
                }
            };
            let mut key: Vec<(usize, usize, Op)> = live
                .iter()
                .map(|e| (relabel(e.to), relabel(e.from), e.op))
                .collect();
            if key.iter().any(|(to, from, _)| from >= to) {
                continue;
            }
            key.sort();
            if best.as_ref().is_none_or(|b| key < *b) {
                best = Some(key);
            }
        }
        let edges = best
            .unwrap_or_default()
            .into_iter()
            .map(|(to, from, op)| Edge { from, to, op })
            .collect();
        Arch {
            space: self.space,
            nodes: self.nodes,
            edges,
            hyper: self.hyper,
        }
    }

    /// Stable 64-bit FNV-1a hash of the canonical JSON, as 16 hex digits. Stable across
    /// platforms and releases (it does not use `std`'s randomized hasher).
    pub fn hash(&self) -> String {
        fnv1a_hex(&self.canonical().to_json())
    }

    /// A one-line human summary: `0->1 STT(mix_gc,linear_attn); 1->3 identity`, then
    /// ` | hidden 16, 2 blocks, lr x0.5` for a design of the joint space.
    pub fn summary(&self) -> String {
        let wiring = self
            .edges
            .iter()
            .map(|e| format!("{}->{} {}", e.from, e.to, e.op.label(self.space)))
            .collect::<Vec<_>>()
            .join("; ");
        match &self.hyper {
            Some(h) => format!("{wiring} | {}", h.label()),
            None => wiring,
        }
    }

    /// The learning-rate factor of every training of this design (1 outside the joint space).
    pub fn lr_scale(&self) -> f64 {
        self.hyper.map_or(1.0, |h| h.lr_scale)
    }

    /// Stacked copies of the wiring (1 outside the joint space).
    pub fn blocks(&self) -> usize {
        self.hyper.map_or(1, |h| h.blocks.max(1) as usize)
    }

    /// Samples into `archs` until it holds `n` architectures with distinct hashes (the ones
    /// already there count and stay first): the candidate lists of `fidelity` and `bench gpu`.
    pub fn fill_distinct<R: Rng>(
        space: SpaceKind,
        hyper: &HyperSpace,
        archs: &mut Vec<Arch>,
        n: usize,
        rng: &mut R,
    ) {
        while archs.len() < n {
            let a = Arch::sample_in(space, hyper, rng);
            if archs.iter().all(|b| b.hash() != a.hash()) {
                archs.push(a);
            }
        }
    }

    /// Draws a random valid architecture: each node gets one to three incoming edges from
    /// earlier nodes with random operators.
    pub fn sample<R: Rng>(space: SpaceKind, rng: &mut R) -> Arch {
        let choices = space.choices();
        let nodes = DEFAULT_NODES;
        let mut edges = Vec::new();
        for to in 1..nodes {
            let mut sources: Vec<usize> = (0..to).collect();
            sources.shuffle(rng);
            let k = rng.gen_range(1..=to.min(2));
            for &from in sources.iter().take(k) {
                let op = choices[rng.gen_range(0..choices.len())];
                edges.push(Edge { from, to, op });
            }
        }
        Arch {
            space,
            nodes,
            edges,
            hyper: None,
        }
        .canonical()
    }

    /// [`Arch::sample`] in the joint space: the wiring, then a setting drawn from `hyper`
    /// (none when it is inactive, so an architecture-only search draws exactly as before).
    pub fn sample_in<R: Rng>(space: SpaceKind, hyper: &HyperSpace, rng: &mut R) -> Arch {
        let mut a = Arch::sample(space, rng);
        a.hyper = hyper.sample(rng);
        a
    }

    /// [`Arch::mutate`] in the joint space: one change of the wiring or, with probability 1/3
    /// when the space offers other settings, one step of one hyperparameter.
    pub fn mutate_in<R: Rng>(&self, hyper: &HyperSpace, rng: &mut R) -> Arch {
        if let Some(h) = &self.hyper {
            if hyper.is_active() && rng.gen_range(0..3) == 0 {
                if let Some(next) = hyper.mutate(h, rng) {
                    return Arch {
                        hyper: Some(next),
                        ..self.clone()
                    };
                }
            }
        }
        self.mutate(rng)
    }

    /// [`Arch::neighbours`] (hyperparameters kept), then every design one hyperparameter step
    /// away (wiring kept).
    pub fn neighbours_in(&self, hyper: &HyperSpace) -> Vec<Arch> {
        let mut out = self.neighbours();
        if let Some(h) = &self.hyper {
            for next in hyper.neighbours(h) {
                out.push(Arch {
                    hyper: Some(next),
                    ..self.clone()
                });
            }
        }
        out
    }

    /// A valid neighbour differing from `self`: one operator changed, one cell part changed,
    /// one edge added or one edge removed. Falls back to a fresh sample after bounded tries.
    pub fn mutate<R: Rng>(&self, rng: &mut R) -> Arch {
        let own = self.hash();
        let choices = self.space.choices();
        for _ in 0..64 {
            let mut edges = self.edges.clone();
            match rng.gen_range(0..4) {
                0 if !edges.is_empty() => {
                    let i = rng.gen_range(0..edges.len());
                    edges[i].op = choices[rng.gen_range(0..choices.len())];
                }
                1 if !edges.is_empty() => {
                    let i = rng.gen_range(0..edges.len());
                    if let Op::Cell(c) = &mut edges[i].op {
                        match rng.gen_range(0..3) {
                            0 => c.order = *CellOrder::ALL.choose(rng).unwrap_or(&c.order),
                            1 => c.spatial = *SpatialOp::ALL.choose(rng).unwrap_or(&c.spatial),
                            _ => c.temporal = *TemporalOp::ALL.choose(rng).unwrap_or(&c.temporal),
                        }
                    }
                }
                2 => {
                    let to = rng.gen_range(1..self.nodes);
                    let from = rng.gen_range(0..to);
                    if !edges.iter().any(|e| e.from == from && e.to == to) {
                        let op = choices[rng.gen_range(0..choices.len())];
                        edges.push(Edge { from, to, op });
                    }
                }
                _ if edges.len() > 1 => {
                    let i = rng.gen_range(0..edges.len());
                    edges.remove(i);
                }
                _ => {}
            }
            let cand = Arch {
                space: self.space,
                nodes: self.nodes,
                edges,
                hyper: self.hyper,
            };
            if cand.is_valid() && cand.hash() != own {
                return cand.canonical();
            }
        }
        Arch {
            hyper: self.hyper,
            ..Arch::sample(self.space, rng)
        }
    }

    /// Crossover: each non-input node takes its incoming edges from one parent or the other.
    /// Returns `None` when no valid child differing from both parents was found.
    pub fn crossover<R: Rng>(&self, other: &Arch, rng: &mut R) -> Option<Arch> {
        if self.space != other.space || self.nodes != other.nodes {
            return None;
        }
        let (ha, hb) = (self.hash(), other.hash());
        for _ in 0..16 {
            let mut edges = Vec::new();
            for to in 1..self.nodes {
                let parent = if rng.gen_bool(0.5) { self } else { other };
                edges.extend(parent.edges.iter().filter(|e| e.to == to).copied());
            }
            let hyper = match (&self.hyper, &other.hyper) {
                (Some(a), Some(b)) => Some(HyperSpace::cross(a, b, rng)),
                (a, b) => a.or(*b),
            };
            let child = Arch {
                space: self.space,
                nodes: self.nodes,
                edges,
                hyper,
            };
            if child.is_valid() {
                let h = child.hash();
                if h != ha && h != hb {
                    return Some(child.canonical());
                }
            }
        }
        None
    }

    fn is_valid(&self) -> bool {
        Arch::from_spec(&self.to_spec(), self.space).is_ok()
    }

    /// Every valid design one change away, in a fixed order (so a repair prompt can name "the
    /// nearest unexplored variation" reproducibly): each edge's operator replaced by another
    /// choice, each edge removed, each missing edge added with each choice. Canonical, distinct,
    /// never `self`.
    pub fn neighbours(&self) -> Vec<Arch> {
        let choices = self.space.choices();
        let own = self.hash();
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        let mut push = |edges: Vec<Edge>| {
            let cand = Arch {
                space: self.space,
                nodes: self.nodes,
                edges,
                hyper: self.hyper,
            };
            if cand.is_valid() {
                let cand = cand.canonical();
                let h = cand.hash();
                if h != own && seen.insert(h) {
                    out.push(cand);
                }
            }
        };
        for i in 0..self.edges.len() {
            for op in &choices {
                if *op != self.edges[i].op {
                    let mut edges = self.edges.clone();
                    edges[i].op = *op;
                    push(edges);
                }
            }
        }
        for i in 0..self.edges.len() {
            let mut edges = self.edges.clone();
            edges.remove(i);
            push(edges);
        }
        for to in 1..self.nodes {
            for from in 0..to {
                if self.edges.iter().any(|e| e.from == from && e.to == to) {
                    continue;
                }
                for op in &choices {
                    let mut edges = self.edges.clone();
                    edges.push(Edge { from, to, op: *op });
                    push(edges);
                }
            }
        }
        out
    }

    /// How different two designs are, in `[0, 2]`: the Jaccard distance of their wiring
    /// features (each edge with its ends and operator, and each operator kind used: `STT`,
    /// `mix_gc`, `gdcc`, ...), plus the share of the joint space's hyperparameters that differ
    /// (a design without any counts as differing in all of them from one with them). The
    /// features of the wiring are sets, so two designs sharing no edge still come closer when
    /// they use the same kinds of operator.
    pub fn distance(&self, other: &Arch) -> f64 {
        let (x, y) = (self.wiring_features(), other.wiring_features());
        let union = x.union(&y).count();
        let wiring = if union == 0 {
            0.0
        } else {
            1.0 - x.intersection(&y).count() as f64 / union as f64
        };
        let hyper = match (&self.hyper, &other.hyper) {
            (None, None) => 0.0,
            (Some(a), Some(b)) => {
                let differ = (a.hidden != b.hidden) as u8
                    + (a.blocks != b.blocks) as u8
                    + (a.lr_scale != b.lr_scale) as u8;
                f64::from(differ) / 3.0
            }
            _ => 1.0,
        };
        wiring + hyper
    }

    /// The choices a design makes, as named features: its wiring's (each edge with its ends
    /// and operator, each operator kind used) and, in the joint space, its width, depth and
    /// learning-rate factor (`hidden=16`, `blocks=2`, `lr_scale=4`). What a
    /// [`ChoiceEffects`] surrogate learns from.
    pub fn choice_features(&self) -> BTreeSet<String> {
        let mut f = self.wiring_features();
        if let Some(h) = &self.hyper {
            f.insert(format!("hidden={}", h.hidden));
            f.insert(format!("blocks={}", h.blocks));
            f.insert(format!("lr_scale={}", h.lr_scale));
        }
        f
    }

    /// Each edge with its ends and operator, and each operator kind used (`STT`, `mix_gc`,
    /// `gdcc`, ...), zero edges left out.
    fn wiring_features(&self) -> BTreeSet<String> {
        let mut f: BTreeSet<String> = self
            .edges
            .iter()
            .filter(|e| e.op != Op::Zero)
            .map(|e| format!("{}>{}:{}", e.from, e.to, e.op.label(self.space)))
            .collect();
        f.extend(
            self.op_counts()
                .into_iter()
                .map(|(k, _)| format!("uses:{k}")),
        );
        f
    }

    /// Max-min diverse sampling, the exploration rule of space-filling designs: of `pool`
    /// uniform draws ([`Arch::sample_in`]), the first one whose nearest design in `seen` is
    /// farthest away ([`Arch::distance`]), among those `accept` admits (e.g. not yet known).
    /// With nothing seen it is the first admitted draw; None when no draw is admitted.
    pub fn sample_diverse_in<R: Rng>(
        space: SpaceKind,
        hyper: &HyperSpace,
        seen: &[Arch],
        pool: usize,
        accept: impl Fn(&Arch) -> bool,
        rng: &mut R,
    ) -> Option<Arch> {
        let mut best: Option<(f64, Arch)> = None;
        for _ in 0..pool.max(1) {
            let cand = Arch::sample_in(space, hyper, rng);
            if !accept(&cand) {
                continue;
            }
            let nearest = seen
                .iter()
                .map(|s| cand.distance(s))
                .fold(f64::INFINITY, f64::min);
            if best.as_ref().is_none_or(|(d, _)| nearest > *d) {
                best = Some((nearest, cand));
            }
        }
        best.map(|(_, a)| a)
    }

    /// Number of operators of each kind, for statistics (`STT`, `mix_gc`, `gdcc`, ...).
    pub fn op_counts(&self) -> Vec<(String, usize)> {
        let mut counts = std::collections::BTreeMap::<String, usize>::new();
        for e in &self.edges {
            match e.op {
                Op::Cell(c) => {
                    for k in [c.order.name(), c.spatial.name(), c.temporal.name()] {
                        *counts.entry(k.to_string()).or_default() += 1;
                    }
                }
                Op::Zero => {}
                other => {
                    *counts
                        .entry(other.name(self.space).to_string())
                        .or_default() += 1
                }
            }
        }
        counts.into_iter().collect()
    }
}

fn names<const N: usize>(v: [&str; N]) -> String {
    v.join(", ")
}

/// Returns one cycle (as a closed node path) if the edges contain any, self-loops included.
fn find_cycle(nodes: usize, edges: &[Edge]) -> Option<Vec<usize>> {
    // Depth-first search with colours; small graphs, so recursion depth is no concern.
    fn dfs(
        u: usize,
        adj: &[BTreeSet<usize>],
        colour: &mut [u8],
        stack: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        colour[u] = 1;
        stack.push(u);
        for &v in &adj[u] {
            if colour[v] == 1 {
                let start = stack.iter().position(|&x| x == v).unwrap_or(0);
                let mut cyc = stack[start..].to_vec();
                cyc.push(v);
                return Some(cyc);
            }
            if colour[v] == 0 {
                if let Some(c) = dfs(v, adj, colour, stack) {
                    return Some(c);
                }
            }
        }
        stack.pop();
        colour[u] = 2;
        None
    }
    let mut adj = vec![BTreeSet::new(); nodes];
    for e in edges {
        adj[e.from].insert(e.to);
    }
    let mut colour = vec![0u8; nodes];
    for s in 0..nodes {
        if colour[s] == 0 {
            if let Some(c) = dfs(s, &adj, &mut colour, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

fn permutations(items: &[usize]) -> Vec<Vec<usize>> {
    if items.len() <= 1 {
        return vec![items.to_vec()];
    }
    let mut out = Vec::new();
    for i in 0..items.len() {
        let mut rest = items.to_vec();
        let x = rest.remove(i);
        for mut p in permutations(&rest) {
            p.insert(0, x);
            out.push(p);
        }
    }
    out
}

/// The 64-bit FNV-1a hash of `text` as 16 hex digits: stable across runs and builds (a design's
/// hash, and other on-disk keys).
pub fn fnv1a_hex(text: &str) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in text.as_bytes() {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

/// A main-effects surrogate of a search's memory bank: each choice a design can make
/// ([`Arch::choice_features`]) is worth the mean value of the scored designs that made it,
/// shrunk towards the mean of all of them by one pseudo-design (so a choice seen once does not
/// count as much as one seen often); a design's estimate is the sum of its choices' worths
/// relative to that mean (choices never seen add nothing). Values are whatever the caller ranks
/// by, lower = better (the guided optimization stage gives each design its position in the
/// memory bank as a share). Unlike a distance to the nearest designs, it learns what one choice
/// does across wirings: in a joint space, that a learning-rate factor fails wherever it was tried.
#[derive(Debug, Clone)]
pub struct ChoiceEffects {
    mean: f64,
    worth: std::collections::HashMap<String, f64>,
}

impl ChoiceEffects {
    /// Fits the surrogate to scored designs (none: every estimate is 0).
    pub fn fit(scored: &[(Arch, f64)]) -> ChoiceEffects {
        let mean = if scored.is_empty() {
            0.0
        } else {
            scored.iter().map(|(_, v)| v).sum::<f64>() / scored.len() as f64
        };
        let mut sums: std::collections::HashMap<String, (f64, f64)> = Default::default();
        for (a, v) in scored {
            for f in a.choice_features() {
                let e = sums.entry(f).or_insert((0.0, 0.0));
                e.0 += v;
                e.1 += 1.0;
            }
        }
        let worth = sums
            .into_iter()
            .map(|(f, (sum, n))| (f, (sum + mean) / (n + 1.0) - mean))
            .collect();
        ChoiceEffects { mean, worth }
    }

    /// The estimated value of a design, relative to the mean of the scored ones.
    pub fn estimate(&self, a: &Arch) -> f64 {
        a.choice_features()
            .iter()
            .filter_map(|f| self.worth.get(f))
            .sum()
    }

    /// The mean value of the scored designs the surrogate was fitted to.
    pub fn mean(&self) -> f64 {
        self.mean
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn parse(s: &str) -> Result<Arch, ArchError> {
        Arch::from_json(s, SpaceKind::Ists)
    }

    #[test]
    fn parses_the_documented_example() {
        let a = parse(
            r#"{"space":"ists","nodes":4,"edges":[
            {"from":0,"to":1,"op":"STT","spatial":"mix_gc","temporal":"linear_attn"},
            {"from":1,"to":2,"op":"TTS"},{"from":0,"to":3,"op":"identity"},
            {"from":2,"to":3,"op":"STP","temporal":"gdcc"}]}"#,
        )
        .unwrap();
        assert_eq!(a.edges.len(), 4);
        assert_eq!(
            a.edges[3].op,
            Op::Cell(Cell {
                order: CellOrder::Stp,
                spatial: SpatialOp::MixGc,
                temporal: TemporalOp::Gdcc
            })
        );
        // Round trip through JSON keeps the architecture.
        assert_eq!(parse(&a.to_json()).unwrap(), a);
    }

    #[test]
    fn each_invalid_kind_has_its_message() {
        let cases: &[(&str, &str)] = &[
            (r#"{"edges":[{"from":0,"to":3,"op":"conv"}]}"#,
             "edges[0].op: unknown operator 'conv' (the ists space allows: STT, TTS, STP, identity, zero)"),
            (r#"{"edges":[{"from":0,"to":3,"op":"STT","spatial":"gcn"}]}"#,
             "edges[0].spatial: unknown operator 'gcn' (the ists space allows: mix_gc, dgcn, s_trans)"),
            (r#"{"nodes":5,"edges":[{"from":0,"to":3,"op":"STT"}]}"#,
             "nodes: the ists space has 4 nodes, got 5"),
            (r#"{"edges":[{"from":0,"to":1,"op":"STT"},{"from":2,"to":1,"op":"TTS"},{"from":1,"to":3,"op":"STT"}]}"#,
             "edges[1]: edge 2->1 goes to an earlier node; edges must go from a lower to a higher node index"),
            (r#"{"edges":[{"from":1,"to":2,"op":"STT"},{"from":2,"to":1,"op":"TTS"},{"from":0,"to":3,"op":"STT"}]}"#,
             "edges: cycle through nodes 1->2->1"),
            (r#"{"edges":[{"from":0,"to":1,"op":"STT"},{"from":1,"to":2,"op":"TTS"}]}"#,
             "edges: output node 3 is not reachable from input node 0 through non-zero edges (node 0 reaches nodes 0, 1 and 2; add an edge from one of them to node 3)"),
            (r#"{"edges":[{"from":1,"to":3,"op":"STT"},{"from":0,"to":2,"op":"zero"}]}"#,
             "edges: output node 3 is not reachable from input node 0 through non-zero edges (node 0 reaches no other node; add an edge from node 0 to node 3)"),
            (r#"{"edges":[]}"#, "edges: the architecture is empty (no edges other than zero)"),
            (r#"{"edges":[{"from":0,"to":3,"op":"zero"}]}"#, "edges: the architecture is empty (no edges other than zero)"),
            (r#"{"edges":[{"from":0,"to":7,"op":"STT"}]}"#, "edges[0].to: node 7 does not exist (nodes are 0..3)"),
            (r#"{"edges":[{"from":0,"to":3,"op":"STT"},{"from":0,"to":3,"op":"TTS"}]}"#,
             "edges[1]: duplicate edge 0->3 (already edges[0])"),
            (r#"{"edges":[{"from":0,"to":3,"op":"identity","temporal":"gdcc"}]}"#,
             "edges[0].temporal: only cell edges (STT, TTS, STP) take a temporal operator, not 'identity'"),
            (r#"{"space":"nasbench","edges":[]}"#, "space: unknown search space 'nasbench' (known: ists, autocts)"),
        ];
        for (json, msg) in cases {
            let err = parse(json).expect_err(json);
            assert_eq!(err.to_string(), *msg, "for {json}");
        }
        assert!(matches!(parse("{\"edges\": ["), Err(ArchError::Json(_))));
        let err = Arch::from_json(
            r#"{"edges":[{"from":0,"to":3,"op":"STT"}]}"#,
            SpaceKind::Autocts,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("autocts space allows: gdcc, dgcn"),
            "{err}"
        );
    }

    #[test]
    fn two_spellings_hash_equal() {
        let a = parse(
            r#"{"edges":[{"from":0,"to":1,"op":"STT"},{"from":0,"to":2,"op":"TTS"},
            {"from":1,"to":3,"op":"identity"},{"from":2,"to":3,"op":"STP"},{"from":0,"to":3,"op":"zero"}]}"#,
        )
        .unwrap();
        // Same graph: nodes 1 and 2 swapped, edges reordered, defaults explicit, alias used,
        // the zero edge omitted.
        let b = parse(
            r#"{"space":"ists","nodes":4,"edges":[{"from":1,"to":3,"op":"STP"},
            {"from":2,"to":3,"op":"skip"},{"from":0,"to":2,"op":"STT","spatial":"mix_gc","temporal":"linear_attn"},
            {"from":0,"to":1,"op":"TTS"}]}"#,
        )
        .unwrap();
        assert_eq!(a.hash(), b.hash());
        assert_eq!(a.canonical(), b.canonical());
        let c = parse(r#"{"edges":[{"from":0,"to":1,"op":"STT"},{"from":1,"to":3,"op":"STT"}]}"#)
            .unwrap();
        assert_ne!(a.hash(), c.hash());
        // A dead-end edge does not change the computation, so not the hash either.
        let d = parse(r#"{"edges":[{"from":0,"to":1,"op":"STT"},{"from":1,"to":3,"op":"STT"},{"from":0,"to":2,"op":"TTS"}]}"#)
            .unwrap();
        assert_eq!(c.hash(), d.hash());
    }

    #[test]
    fn sampling_mutation_crossover_are_valid_and_seeded() {
        for space in [SpaceKind::Ists, SpaceKind::Autocts] {
            let mut rng = ChaCha8Rng::seed_from_u64(7);
            let mut rng2 = ChaCha8Rng::seed_from_u64(7);
            let mut seen = BTreeSet::new();
            for _ in 0..50 {
                let a = Arch::sample(space, &mut rng);
                assert_eq!(a, Arch::sample(space, &mut rng2));
                assert!(a.is_valid(), "{}", a.to_json());
                seen.insert(a.hash());
                let m = a.mutate(&mut rng);
                let _ = a.mutate(&mut rng2);
                assert!(m.is_valid());
                assert_ne!(m.hash(), a.hash());
                let b = Arch::sample(space, &mut rng);
                let _ = Arch::sample(space, &mut rng2);
                if let Some(c) = a.crossover(&b, &mut rng) {
                    assert!(c.is_valid());
                }
                let _ = a.crossover(&b, &mut rng2);
            }
            assert!(seen.len() > 30, "sampling is not diverse: {}", seen.len());
        }
    }

    #[test]
    fn neighbours_are_valid_distinct_single_changes_in_a_fixed_order() {
        let a = Arch::from_json(
            r#"{"edges":[{"from":0,"to":1,"op":"STT"},{"from":1,"to":3,"op":"identity"}]}"#,
            SpaceKind::Ists,
        )
        .unwrap();
        let n = a.neighbours();
        assert_eq!(n, a.neighbours(), "deterministic");
        let hashes: std::collections::HashSet<String> = n.iter().map(|x| x.hash()).collect();
        assert_eq!(hashes.len(), n.len(), "distinct");
        assert!(!hashes.contains(&a.hash()));
        // At most 2 edges x 27 other choices + 4 missing edges x 28 choices (no removal is
        // valid: the output would be unreachable); designs whose canonical forms coincide
        // count once.
        assert!(
            n.len() > 2 * 27 && n.len() <= 2 * 27 + 4 * 28,
            "{}",
            n.len()
        );
        assert!(n.iter().all(|x| {
            let d = x.edges.len() as i64 - a.edges.len() as i64;
            d.abs() <= 1
        }));
    }

    #[test]
    fn joint_space_designs_carry_hyperparameters_through_json_hash_and_changes() {
        let wiring = r#""edges":[{"from":0,"to":1,"op":"STT"},{"from":1,"to":3,"op":"identity"}]"#;
        let plain = Arch::from_json(&format!("{{{wiring}}}"), SpaceKind::Ists).unwrap();
        let j = Arch::from_json(
            &format!(r#"{{{wiring},"hyper":{{"hidden":16,"blocks":2,"lr_scale":0.5}}}}"#),
            SpaceKind::Ists,
        )
        .unwrap();
        assert_eq!(plain.hyper, None);
        assert_ne!(
            plain.hash(),
            j.hash(),
            "hyperparameters are part of the design"
        );
        assert_eq!(j.canonical().hyper, j.hyper);
        assert_eq!(Arch::from_json(&j.to_json(), SpaceKind::Ists).unwrap(), j);
        assert!(
            !plain.to_json().contains("hyper"),
            "wiring-only JSON unchanged"
        );
        assert!(
            j.summary().ends_with(" | hidden 16, 2 blocks, lr x0.5"),
            "{}",
            j.summary()
        );
        assert_eq!((j.blocks(), j.lr_scale()), (2, 0.5));
        assert_eq!((plain.blocks(), plain.lr_scale()), (1, 1.0));
        for (hyper, msg) in [
            (
                r#"{"hidden":16,"blocks":0,"lr_scale":1}"#,
                "hyper.blocks must be within 1..=8",
            ),
            (
                r#"{"hidden":16,"blocks":1,"lr_scale":-1}"#,
                "hyper.lr_scale must be within",
            ),
            (
                r#"{"hidden":16,"blocks":1,"lr_scale":1,"depth":3}"#,
                "unknown field `depth`",
            ),
        ] {
            let err = Arch::from_json(&format!(r#"{{{wiring},"hyper":{hyper}}}"#), SpaceKind::Ists)
                .unwrap_err()
                .to_string();
            assert!(err.contains(msg), "{err}");
        }

        let hs = HyperSpace {
            hidden: vec![8, 16],
            blocks: vec![1, 2],
            lr_scale: vec![0.5, 1.0],
        }
        .resolved(32);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let mut settings = std::collections::HashSet::new();
        for _ in 0..60 {
            let a = Arch::sample_in(SpaceKind::Ists, &hs, &mut rng);
            hs.admit(a.hyper.as_ref()).unwrap();
            settings.insert(a.hyper.map(|h| h.label()));
            let m = a.mutate_in(&hs, &mut rng);
            hs.admit(m.hyper.as_ref()).unwrap();
            assert!(m.is_valid());
            assert_ne!(m.hash(), a.hash());
            let b = Arch::sample_in(SpaceKind::Ists, &hs, &mut rng);
            if let Some(c) = a.crossover(&b, &mut rng) {
                hs.admit(c.hyper.as_ref()).unwrap();
            }
        }
        assert_eq!(settings.len(), hs.size(), "every setting is drawn");
        let n = j.neighbours_in(&hs);
        assert_eq!(n.len(), j.neighbours().len() + 3);
        assert!(n[..n.len() - 3].iter().all(|x| x.hyper == j.hyper));
        // An inactive hyperparameter space draws exactly what the wiring-only sampler draws.
        let mut a = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let mut b = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        assert_eq!(
            Arch::sample_in(SpaceKind::Ists, &HyperSpace::default(), &mut a),
            Arch::sample(SpaceKind::Ists, &mut b)
        );
    }

    #[test]
    fn choice_effects_learn_what_one_choice_does_across_wirings() {
        let hs = HyperSpace {
            hidden: vec![8],
            blocks: vec![1],
            lr_scale: vec![0.25, 4.0],
        };
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let with_lr = |a: &Arch, lr: f64| {
            let mut a = a.clone();
            a.hyper = Some(Hyper {
                hidden: 8,
                blocks: 1,
                lr_scale: lr,
            });
            a
        };
        let w: Vec<Arch> = (0..6)
            .map(|_| Arch::sample_in(SpaceKind::Ists, &hs, &mut rng))
            .collect();
        assert_eq!(ChoiceEffects::fit(&[]).estimate(&w[0]), 0.0);
        // Three wirings scored 0 at factor 4, three others 1 at factor 0.25.
        let scored: Vec<(Arch, f64)> = (0..3)
            .map(|i| (with_lr(&w[i], 4.0), 0.0))
            .chain((3..6).map(|i| (with_lr(&w[i], 0.25), 1.0)))
            .collect();
        let e = ChoiceEffects::fit(&scored);
        assert_eq!(e.mean(), 0.5);
        // The factor alone: seen 3 times at 0 -> (0 + 0.5) / 4 - 0.5 = -0.375; at 0.25: +0.375.
        let lr_only = |lr: f64| {
            let mut a = with_lr(&w[0], lr);
            a.edges.clear();
            e.estimate(&a)
        };
        assert!((lr_only(4.0) + 0.375).abs() < 1e-12);
        assert!((lr_only(0.25) - 0.375).abs() < 1e-12);
        // A good wiring moved to the bad factor is estimated worse than it was at the good one.
        for good in &w[..3] {
            assert!(e.estimate(&with_lr(good, 0.25)) > e.estimate(&with_lr(good, 4.0)));
        }
        // A choice never scored adds nothing.
        let mut unseen = with_lr(&w[0], 4.0);
        unseen.edges.clear();
        unseen.hyper.as_mut().unwrap().hidden = 64;
        assert_eq!(
            e.worth["blocks=1"], 0.0,
            "made by every design: no information"
        );
        assert!((e.estimate(&unseen) + 0.375).abs() < 1e-12);
    }

    #[test]
    fn distance_counts_wiring_features_and_differing_hyperparameters() {
        let wiring = r#""edges":[{"from":0,"to":1,"op":"STT"},{"from":1,"to":3,"op":"identity"}]"#;
        let with = |hyper: &str| {
            Arch::from_json(&format!(r#"{{{wiring},"hyper":{hyper}}}"#), SpaceKind::Ists).unwrap()
        };
        let a = with(r#"{"hidden":16,"blocks":2,"lr_scale":0.5}"#);
        let b = with(r#"{"hidden":16,"blocks":1,"lr_scale":4}"#);
        let plain = Arch::from_json(&format!("{{{wiring}}}"), SpaceKind::Ists).unwrap();
        assert_eq!(a.distance(&a), 0.0);
        assert!(
            (a.distance(&b) - 2.0 / 3.0).abs() < 1e-12,
            "two of three differ"
        );
        assert_eq!(a.distance(&b), b.distance(&a));
        assert_eq!(a.distance(&plain), 1.0, "no hyperparameters against some");
        let other = Arch::from_json(
            r#"{"edges":[{"from":0,"to":3,"op":"TTS","spatial":"dgcn","temporal":"gdcc"}]}"#,
            SpaceKind::Ists,
        )
        .unwrap();
        let d = plain.distance(&other);
        assert!(d > 0.5 && d <= 1.0, "{d}");
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for _ in 0..50 {
            let (x, y) = (
                Arch::sample(SpaceKind::Ists, &mut rng),
                Arch::sample(SpaceKind::Ists, &mut rng),
            );
            let d = x.distance(&y);
            assert!((0.0..=1.0).contains(&d), "{d}");
            assert_eq!(d, y.distance(&x));
        }
    }

    /// Max-min sampling covers the space sooner than uniform sampling: over many seeds, its
    /// first three designs hold more distinct hyperparameter values (and all three
    /// learning-rate factors more often), and lie farther from each other.
    #[test]
    fn diverse_sampling_covers_the_choices_before_repeating_them() {
        let hs = HyperSpace {
            hidden: vec![4, 8, 16, 32],
            blocks: vec![1, 2],
            lr_scale: vec![0.25, 1.0, 4.0],
        };
        // (distinct values over the three hyperparameters, all factors held, nearest pair).
        let first_three = |diverse: bool, seed: u64| {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let mut seen: Vec<Arch> = Vec::new();
            for _ in 0..3 {
                let a = if diverse {
                    Arch::sample_diverse_in(SpaceKind::Ists, &hs, &seen, 32, |_| true, &mut rng)
                        .unwrap()
                } else {
                    Arch::sample_in(SpaceKind::Ists, &hs, &mut rng)
                };
                seen.push(a);
            }
            let hy: Vec<Hyper> = seen.iter().map(|a| a.hyper.unwrap()).collect();
            let distinct =
                |f: &dyn Fn(&Hyper) -> String| hy.iter().map(f).collect::<BTreeSet<String>>().len();
            let lrs = distinct(&|h| h.lr_scale.to_string());
            let values =
                lrs + distinct(&|h| h.hidden.to_string()) + distinct(&|h| h.blocks.to_string());
            let nearest = (0..3)
                .flat_map(|i| (i + 1..3).map(move |j| (i, j)))
                .map(|(i, j)| seen[i].distance(&seen[j]))
                .fold(f64::INFINITY, f64::min);
            (values, lrs == 3, nearest)
        };
        let total = |diverse: bool| {
            (0..40)
                .map(|s| first_three(diverse, s))
                .fold((0, 0, 0.0), |acc, (v, all, d)| {
                    (acc.0 + v, acc.1 + all as usize, acc.2 + d)
                })
        };
        let (d, u) = (total(true), total(false));
        // Three draws hold at most 3 + 3 + 2 = 8 distinct values.
        assert!(
            d.0 >= 280 && d.0 > u.0 + 40,
            "distinct values: diverse {} uniform {}",
            d.0,
            u.0
        );
        assert!(
            d.1 >= 2 * u.1,
            "all factors: diverse {} uniform {}",
            d.1,
            u.1
        );
        assert!(
            d.2 > u.2 * 1.2,
            "nearest pair: diverse {} uniform {}",
            d.2,
            u.2
        );
        // Candidates the caller refuses are never returned; none admitted gives None.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let only = |a: &Arch| a.hyper.is_some_and(|h| h.hidden == 32);
        let a = Arch::sample_diverse_in(SpaceKind::Ists, &hs, &[], 64, only, &mut rng).unwrap();
        assert_eq!(a.hyper.unwrap().hidden, 32);
        assert!(
            Arch::sample_diverse_in(SpaceKind::Ists, &hs, &[], 8, |_| false, &mut rng).is_none()
        );
    }
}
