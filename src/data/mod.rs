//! Data layer: the error type, the in-memory dataset types, and re-exports of
//! the loaders (npy/npz, pickle, PEMS, DCRNN, T-GCN, PyG-Temporal json in all
//! its layouts), the graph normalizations and the train/val/test preparation.
//!
//! Layout convention everywhere in this module: row-major, flat `Vec<f32>`.
//! This module depends on nothing else in the crate (and not on tch) so it can
//! be tested and reused on its own.

use std::path::{Path, PathBuf};

pub mod graph;
pub mod load;
pub mod npy;
pub mod pickle;
pub mod prepare;
pub mod pyg;
pub mod spec;
pub mod synthetic;

pub use graph::{
    add_self_loops, density, edge_count, gaussian_kernel, std_dev, sym_norm, transition,
    DEFAULT_THRESHOLD,
};
pub use load::{
    load, load_distance_graph, load_pyg_json, load_tgcn, read_adjacency_csv, read_distance_csv,
    read_id_map, read_tgcn_signal, weekday_name,
};
pub use npy::{
    npz_keys, parse_npy, parse_npy_i64, read_npy, read_npz, read_npz_i64, write_npy, write_npz,
    write_npz_compressed, NpzI64,
};
pub use pickle::{parse_pickle, read_dcrnn_adj, read_pickle, PickleValue};
pub use prepare::{
    missing_ratio, prepare, DataSummary, PrepareConfig, Prepared, Scaler, SplitSummary, Splits,
};
pub use spec::{DataFormat, DataSpec};

/// Everything that can go wrong while reading or preparing data. Every
/// variant names the file (or data set) involved so a user can act on it.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{}: I/O error: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: bad format: {msg}", path.display())]
    Format { path: PathBuf, msg: String },
    #[error("{}: missing key `{key}` (keys present: {})", path.display(), present_list(.present))]
    MissingKey {
        path: PathBuf,
        key: String,
        present: Vec<String>,
    },
    #[error("{}: bad shape: {msg}", path.display())]
    Shape { path: PathBuf, msg: String },
    #[error("{}: non-finite value (NaN or Inf) at {msg}", path.display())]
    NonFinite { path: PathBuf, msg: String },
    #[error(
        "node count mismatch: signal {} has {signal_nodes} nodes but graph {} has {graph_nodes}",
        signal.display(),
        graph.display()
    )]
    NodeMismatch {
        signal: PathBuf,
        graph: PathBuf,
        signal_nodes: usize,
        graph_nodes: usize,
    },
    #[error("{}: truncated file: {msg}", path.display())]
    Truncated { path: PathBuf, msg: String },
    #[error("data set `{dataset}`: empty {split} split: {msg}")]
    EmptySplit {
        dataset: String,
        split: &'static str,
        msg: String,
    },
    #[error("unknown data set `{name}`: not a built-in name and no such file or directory (built-in: {known})")]
    UnknownDataset { name: String, known: String },
    #[error("data configuration error: {msg}")]
    Config { msg: String },
}

fn present_list(keys: &[String]) -> String {
    if keys.is_empty() {
        "none".to_string()
    } else {
        keys.join(", ")
    }
}

impl DataError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
    pub(crate) fn format(path: &Path, msg: impl Into<String>) -> Self {
        DataError::Format {
            path: path.to_path_buf(),
            msg: msg.into(),
        }
    }
    pub(crate) fn shape(path: &Path, msg: impl Into<String>) -> Self {
        DataError::Shape {
            path: path.to_path_buf(),
            msg: msg.into(),
        }
    }
    pub(crate) fn truncated(path: &Path, msg: impl Into<String>) -> Self {
        DataError::Truncated {
            path: path.to_path_buf(),
            msg: msg.into(),
        }
    }
    pub(crate) fn config(msg: impl Into<String>) -> Self {
        DataError::Config { msg: msg.into() }
    }
}

/// A node signal: `values` is `[t, n, f]` row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Signal {
    pub values: Vec<f32>,
    pub t: usize,
    pub n: usize,
    pub f: usize,
}

impl Signal {
    /// Value at step `t`, node `n`, feature `f`; `None` when out of range.
    pub fn get(&self, t: usize, n: usize, f: usize) -> Option<f32> {
        if t >= self.t || n >= self.n || f >= self.f {
            return None;
        }
        self.values.get((t * self.n + n) * self.f + f).copied()
    }
}

/// A weighted graph: `adj` is `[n, n]` row-major, 0 means no edge.
#[derive(Clone, Debug, PartialEq)]
pub struct Graph {
    pub n: usize,
    pub adj: Vec<f32>,
    pub node_ids: Option<Vec<String>>,
}

impl Graph {
    /// Weight of edge `i -> j`; `None` when out of range.
    pub fn weight(&self, i: usize, j: usize) -> Option<f32> {
        if i >= self.n || j >= self.n {
            return None;
        }
        self.adj.get(i * self.n + j).copied()
    }
}

/// A loaded, validated data set before any windowing or normalization.
#[derive(Clone, Debug)]
pub struct RawDataset {
    pub name: String,
    pub signal: Signal,
    pub graph: Graph,
    pub signal_path: PathBuf,
    pub graph_path: PathBuf,
    /// Steps per seasonal period used for the time-of-day feature: 288 for
    /// 5-minute traffic data, 52 (weeks per year) for weekly series.
    pub steps_per_day: usize,
    /// The value that marks a missing entry (`Some(0.0)` for traffic, where
    /// zeros are sensor failures); `None` for already-standardized series.
    pub null_value: Option<f32>,
    /// The day of the week of the first step, 0 for Monday to 6 for Sunday, where the data
    /// spec gives its `start` date; `None` where the calendar is unknown.
    pub first_weekday: Option<u8>,
}

/// Rejects NaN/Inf and names the first offending position as
/// `dims`-coordinates plus the flat index, so a user can find it in the file.
pub(crate) fn check_finite(
    path: &Path,
    values: &[f32],
    dims: &[usize],
    labels: &[&str],
) -> Result<(), DataError> {
    let Some(idx) = values.iter().position(|v| !v.is_finite()) else {
        return Ok(());
    };
    let mut rem = idx;
    let mut coords = vec![0usize; dims.len()];
    for k in (0..dims.len()).rev() {
        let d = dims[k].max(1);
        coords[k] = rem % d;
        rem /= d;
    }
    let parts: Vec<String> = coords
        .iter()
        .enumerate()
        .map(|(k, c)| format!("{} {c}", labels.get(k).copied().unwrap_or("dim")))
        .collect();
    let count = values.iter().filter(|v| !v.is_finite()).count();
    Err(DataError::NonFinite {
        path: path.to_path_buf(),
        msg: format!(
            "{} (flat index {idx}, value {}; {count} non-finite value(s) in total)",
            parts.join(", "),
            values[idx]
        ),
    })
}

/// The repository's bundled `data/` folder (real files used by the tests).
#[cfg(test)]
pub(crate) fn bundled_data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_finite_names_position() {
        let v = [0.0, 1.0, 2.0, 3.0, f32::NAN, 5.0];
        let err = check_finite(Path::new("x.csv"), &v, &[2, 3], &["row", "col"]).unwrap_err();
        let s = err.to_string();
        assert!(matches!(err, DataError::NonFinite { .. }));
        assert!(s.contains("x.csv") && s.contains("row 1, col 1"), "{s}");
        assert!(check_finite(Path::new("x"), &[1.0], &[1], &["i"]).is_ok());
    }

    #[test]
    fn accessors_are_bounds_checked() {
        let s = Signal {
            values: vec![1.0, 2.0],
            t: 2,
            n: 1,
            f: 1,
        };
        assert_eq!(s.get(1, 0, 0), Some(2.0));
        assert_eq!(s.get(2, 0, 0), None);
        let g = Graph {
            n: 1,
            adj: vec![1.0],
            node_ids: None,
        };
        assert_eq!(g.weight(0, 0), Some(1.0));
        assert_eq!(g.weight(0, 1), None);
    }
}
