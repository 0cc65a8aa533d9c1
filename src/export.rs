//! Saving a trained model (architecture JSON, sizes, scaler, weights in safetensors) and
//! loading it back for prediction on data of the same shape.
//!
//! A model directory holds `arch.json` (the architecture, schema in [`crate::space`]),
//! `meta.json` ([`ExportMeta`]) and `weights.safetensors` (one tensor per parameter, named by
//! its module path, e.g. `edge_0_1.mix_gc.power0.weight`, layout `[out, in, 1, k]` for
//! convolutions). Python reads the weights with `safetensors.torch.load_file`.

use crate::error::{Error, Result};
use crate::model::ModelConfig;
use crate::space::{Arch, ArchSpec};
use crate::train::{TrainData, Trained};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Everything besides the weights needed to rebuild and use a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportMeta {
    pub dataset: String,
    pub model: ModelConfig,
    pub nodes: i64,
    pub in_features: i64,
    pub input_len: i64,
    pub horizon: i64,
    /// The target scaler: forecasts are `output * std + mean`.
    pub mean: f64,
    pub std: f64,
    pub null_value: Option<f64>,
}

fn write(path: &Path, text: String) -> Result<()> {
    std::fs::write(path, text).map_err(|e| Error::io(path, e))
}

/// Writes `dir/{arch.json, meta.json, weights.safetensors}`.
pub fn save(
    dir: &Path,
    trained: &Trained,
    arch: &Arch,
    data: &TrainData,
    model: &ModelConfig,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let meta = ExportMeta {
        dataset: data.name.clone(),
        model: model.clone(),
        nodes: data.shape.nodes,
        in_features: data.shape.in_features,
        input_len: data.shape.input_len,
        horizon: data.shape.horizon,
        mean: data.mean,
        std: data.std,
        null_value: data.null,
    };
    let json = |v: serde_json::Result<String>| v.map_err(|e| Error::Config(e.to_string()));
    write(
        &dir.join("arch.json"),
        json(serde_json::to_string_pretty(&arch.to_spec()))?,
    )?;
    write(
        &dir.join("meta.json"),
        json(serde_json::to_string_pretty(&meta))?,
    )?;
    trained.vs.save(dir.join("weights.safetensors"))?;
    Ok(())
}

/// Rebuilds the model of `dir` for `data` (which must have the exported shape) and loads its
/// weights.
pub fn load(dir: &Path, data: &TrainData) -> Result<(Trained, Arch, ExportMeta)> {
    let read = |name: &str| -> Result<String> {
        let p = dir.join(name);
        std::fs::read_to_string(&p).map_err(|e| Error::io(p, e))
    };
    let file_err = |name: &str, msg: String| Error::File {
        path: dir.join(name),
        msg,
    };
    let meta: ExportMeta = serde_json::from_str(&read("meta.json")?)
        .map_err(|e| file_err("meta.json", e.to_string()))?;
    let spec: ArchSpec = serde_json::from_str(&read("arch.json")?)
        .map_err(|e| file_err("arch.json", e.to_string()))?;
    let space = spec
        .space
        .as_deref()
        .unwrap_or("ists")
        .parse()
        .map_err(|e: crate::space::ArchError| file_err("arch.json", e.to_string()))?;
    let arch = Arch::from_spec(&spec, space).map_err(|e| file_err("arch.json", e.to_string()))?;
    let s = data.shape;
    let want = (meta.nodes, meta.in_features, meta.input_len, meta.horizon);
    let got = (s.nodes, s.in_features, s.input_len, s.horizon);
    if want != got {
        return Err(file_err(
            "meta.json",
            format!(
                "the model was exported for (nodes, in_features, input_len, horizon) = {want:?}, the data has {got:?}"
            ),
        ));
    }
    let mut trained = Trained::build(&arch, data, &meta.model, 0)?;
    trained.vs.load(dir.join("weights.safetensors"))?;
    Ok((trained, arch, meta))
}
