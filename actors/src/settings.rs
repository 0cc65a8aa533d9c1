//! Loading settings: the embedded `config/default.toml`, then an optional file, then
//! `ISTS__SECTION__KEY` environment overrides, layered with the `config` crate and validated
//! with errors that name the key.

use config::{Config, Environment, File, FileFormat};
use ists::config::Settings;
use std::path::Path;
use strsim::osa_distance;

/// The defaults compiled into the binary (the same file as `config/default.toml`).
pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");

/// Errors while loading settings.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("config file {path}: {msg}")]
    File { path: String, msg: String },
    #[error("settings: {0}")]
    Invalid(String),
}

/// Reads a settings file and checks its syntax alone, so an error names this file.
pub fn read_file(p: &Path) -> Result<toml::Table, SettingsError> {
    if !p.exists() {
        return Err(SettingsError::File {
            path: p.display().to_string(),
            msg: "no such file".into(),
        });
    }
    let text = std::fs::read_to_string(p).map_err(|e| SettingsError::File {
        path: p.display().to_string(),
        msg: e.to_string(),
    })?;
    toml::from_str::<toml::Table>(&text).map_err(|e| SettingsError::File {
        path: p.display().to_string(),
        msg: e.to_string(),
    })
}

/// Layers defaults, `file` (if given) and the environment.
pub fn load(file: Option<&Path>) -> Result<Settings, SettingsError> {
    let table = file.map(read_file).transpose()?;
    load_table(table.as_ref(), file)
}

/// Layers defaults, an already read file (`label` names it in errors) and the environment.
pub fn load_table(
    table: Option<&toml::Table>,
    file: Option<&Path>,
) -> Result<Settings, SettingsError> {
    let mut b = Config::builder().add_source(File::from_str(DEFAULT_TOML, FileFormat::Toml));
    if let Some(t) = table {
        let text = toml::to_string(t).map_err(|e| SettingsError::Invalid(e.to_string()))?;
        b = b.add_source(File::from_str(&text, FileFormat::Toml));
    }
    b = b.add_source(
        Environment::with_prefix("ISTS")
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true),
    );
    let cfg = b
        .build()
        .map_err(|e| SettingsError::Invalid(e.to_string()))?;
    let settings: Settings = cfg.clone().try_deserialize().map_err(|e| {
        let where_ = file
            .map(|p| format!(" (in {} or the environment)", p.display()))
            .unwrap_or_default();
        SettingsError::Invalid(format!("{}{where_}", explain(&cfg, e)))
    })?;
    settings
        .validate()
        .map_err(|e| SettingsError::Invalid(e.to_string()))?;
    Ok(settings)
}

/// A settings error as serde words it, with the key's path, where it says more than the
/// `config` crate does: for a misspelt choice the crate names no choices (`enum PriorCost does
/// not have variant constructor cheap`), serde lists them (`unknown variant `cheap`, expected
/// `ignore` or `matched``). Only the message changes: what loads is what the crate loads.
fn explain(cfg: &Config, e: config::ConfigError) -> String {
    let crate_says = e.to_string();
    if !crate_says.contains("variant") {
        return with_hint(crate_says);
    }
    let serde_says = cfg
        .clone()
        .try_deserialize::<serde_json::Value>()
        .ok()
        .and_then(|value| serde_path_to_error::deserialize::<_, Settings>(value).err());
    with_hint(serde_says.map_or(crate_says, at_path))
}

/// A serde error with the path of the key at fault (`search.budget: invalid type ...`); the
/// bare message where the fault is the whole document.
fn at_path(e: serde_path_to_error::Error<serde_json::Error>) -> String {
    let path = e.path().to_string();
    if path == "." {
        e.into_inner().to_string()
    } else {
        format!("{path}: {}", e.into_inner())
    }
}

/// serde's "unknown field `budgett`, expected one of `space`, `budget`, ..." (or "unknown
/// variant") with the nearest expected name added when one is near, so that a typo does not
/// send the user through a list of twenty names: `...; did you mean `budget`?`.
fn with_hint(message: String) -> String {
    match nearest_expected(&message) {
        Some(name) => format!("{message}; did you mean `{name}`?"),
        None => message,
    }
}

/// The expected name nearest to the unknown one in a serde message, if it is within a third of
/// the longer name's length in edits (at least one): near enough to be a typo, not a guess.
/// Edits are insertions, deletions, substitutions and swaps of two neighbours (the
/// optimal-string-alignment distance), the typos people make.
fn nearest_expected(message: &str) -> Option<&str> {
    let (_, rest) = message
        .split_once("unknown field `")
        .or_else(|| message.split_once("unknown variant `"))?;
    let (given, rest) = rest.split_once('`')?;
    let (_, expected) = rest.split_once("expected")?;
    // The `config` crate appends "for key `search`"; that key is not a choice.
    let expected = expected.split(" for key ").next().unwrap_or(expected);
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|name| (osa_distance(given, name), name))
        .filter(|&(d, name)| d <= (given.chars().count().max(name.chars().count()) / 3).max(1))
        .min_by_key(|&(d, _)| d)
        .map(|(_, name)| name)
}

/// Parses settings from a JSON value (the daemon's request body), over the defaults.
pub fn from_json(value: &serde_json::Value) -> Result<Settings, SettingsError> {
    let cfg = Config::builder()
        .add_source(File::from_str(DEFAULT_TOML, FileFormat::Toml))
        .add_source(File::from_str(&value.to_string(), FileFormat::Json))
        .build()
        .map_err(|e| SettingsError::Invalid(e.to_string()))?;
    let s: Settings = cfg
        .clone()
        .try_deserialize()
        .map_err(|e| SettingsError::Invalid(explain(&cfg, e)))?;
    s.validate()
        .map_err(|e| SettingsError::Invalid(e.to_string()))?;
    Ok(s)
}

/// Parses settings from a JSON object layered over `base` (objects merge key by key, anything
/// else replaces). Errors name the field at fault, e.g. `search.budget: invalid type ...`.
pub fn from_json_over(
    base: &Settings,
    value: &serde_json::Value,
) -> Result<Settings, SettingsError> {
    let mut merged =
        serde_json::to_value(base).map_err(|e| SettingsError::Invalid(e.to_string()))?;
    merge(&mut merged, value);
    let s: Settings = serde_path_to_error::deserialize(merged)
        .map_err(|e| SettingsError::Invalid(with_hint(at_path(e))))?;
    s.validate()
        .map_err(|e| SettingsError::Invalid(e.to_string()))?;
    Ok(s)
}

fn merge(into: &mut serde_json::Value, over: &serde_json::Value) {
    match (into, over) {
        (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
            for (k, v) in b {
                match a.get_mut(k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        a.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (slot, v) => *slot = v.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The error `load` gives for a settings file (`bad.toml`) holding `text`.
    fn file_error(text: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("bad.toml");
        std::fs::write(&f, text).unwrap();
        load(Some(&f)).unwrap_err().to_string()
    }

    /// A misspelt choice in a file names the key, the value and the choices there are.
    #[test]
    fn a_misspelt_choice_lists_the_choices() {
        let e = file_error("[search]\nprior_cost = \"cheap\"\n");
        assert!(
            e.contains("search.prior_cost")
                && e.contains("cheap")
                && e.contains("ignore")
                && e.contains("matched")
                && e.contains("bad.toml"),
            "{e}"
        );
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("good.toml");
        std::fs::write(&f, "[search]\nprior_cost = \"matched\"\n").unwrap();
        let s = load(Some(&f)).unwrap();
        assert_eq!(s.search.prior_cost, ists::config::PriorCost::Matched);
        let e = from_json(&serde_json::json!({"search": {"prior_cost": "cheap"}}))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("search.prior_cost") && e.contains("matched"),
            "{e}"
        );
    }

    /// A misspelt key or choice names the nearest one there is; a value that is no near miss
    /// gets no guess.
    #[test]
    fn a_typo_gets_the_nearest_name() {
        let e = file_error("[search]\nbudgett = 3\n");
        assert!(
            e.contains("did you mean `budget`?") && e.contains("bad.toml"),
            "{e}"
        );
        let e = file_error("[search]\nprior_cost = \"matchd\"\n");
        assert!(e.contains("did you mean `matched`?"), "{e}");
        let e = file_error("[search]\nprior_cost = \"cheap\"\n");
        assert!(!e.contains("did you mean"), "{e}");
        let base = load(None).unwrap();
        let e = from_json_over(&base, &serde_json::json!({"proxy": {"stesp": 3}}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("did you mean `steps`?"), "{e}");
        assert_eq!(osa_distance("budgett", "budget"), 1);
        assert_eq!(osa_distance("stesp", "steps"), 1);
        assert_eq!(osa_distance("", "abc"), 3);
    }

    #[test]
    fn json_over_base_names_the_field_at_fault() {
        let base = load(None).unwrap();
        let s = from_json_over(&base, &serde_json::json!({"search": {"budget": 5}})).unwrap();
        assert_eq!(s.search.budget, 5);
        assert_eq!(s.search.in_flight, base.search.in_flight);
        let e = from_json_over(&base, &serde_json::json!({"search": {"budget": "x"}}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("search.budget"), "{e}");
        let e = from_json_over(&base, &serde_json::json!({"search": {"budgt": 1}}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("budgt"), "{e}");
        let e = from_json_over(&base, &serde_json::json!({"search": {"budget": 0}}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("search.budget"), "{e}");
        let s = from_json_over(
            &base,
            &serde_json::json!({"search": {"exploration": "diverse"}}),
        )
        .unwrap();
        assert_eq!(s.search.exploration, ists::config::Exploration::Diverse);
        assert_eq!(base.search.exploration, ists::config::Exploration::Sample);
        let e = from_json_over(
            &base,
            &serde_json::json!({"search": {"exploration": "wide"}}),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("search.exploration") && e.contains("diverse"),
            "{e}"
        );
        // Prior-ranked exploration needs the banks it ranks by.
        let e = from_json_over(
            &base,
            &serde_json::json!({"search": {"exploration": "prior"}}),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("search.prior"), "{e}");
        let s = from_json_over(
            &base,
            &serde_json::json!({"search": {"exploration": "prior", "prior": ["a.jsonl"]}}),
        )
        .unwrap();
        assert_eq!(s.search.exploration, ists::config::Exploration::Prior);
        assert_eq!(s.search.prior, vec![std::path::PathBuf::from("a.jsonl")]);
        assert!(base.search.prior.is_empty());
        let s = from_json_over(
            &base,
            &serde_json::json!({"search": {"optimization": "guided"}}),
        )
        .unwrap();
        assert_eq!(s.search.optimization, ists::config::Optimization::Guided);
        assert_eq!(base.search.optimization, ists::config::Optimization::Mutate);
        let e = from_json_over(
            &base,
            &serde_json::json!({"search": {"optimization": "bayes"}}),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("search.optimization") && e.contains("guided"),
            "{e}"
        );
        let s = from_json_over(
            &base,
            &serde_json::json!({"final": {"train": {"loss": "mse"}}}),
        )
        .unwrap();
        assert_eq!(s.final_train.train.loss, ists::train::Loss::Mse);
        assert_eq!(base.final_train.train.loss, ists::train::Loss::Mae);
        let e = from_json_over(
            &base,
            &serde_json::json!({"final": {"train": {"loss": "huber"}}}),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("final.train.loss") && e.contains("mse"), "{e}");
    }

    #[test]
    fn devices_all_is_valid_and_resolves_to_the_cpu_without_a_gpu() {
        let base = load(Some(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../config/gpu-check.toml"
        ))))
        .unwrap();
        assert_eq!(base.evaluators.devices, ["all"]);
        let e = from_json_over(
            &base,
            &serde_json::json!({"evaluators": {"devices": ["gpu0"]}}),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("evaluators.devices") && e.contains("gpu0"),
            "{e}"
        );
        // CI has no GPU (and the default build no CUDA): "all" falls back to the CPU.
        if !tch::Cuda::is_available() {
            let d = crate::search::supervisor::resolve_devices(&base.evaluators.devices).unwrap();
            assert_eq!(d, [tch::Device::Cpu]);
            assert_eq!(
                crate::search::supervisor::single_device(&base).unwrap(),
                tch::Device::Cpu
            );
        }
    }

    /// The Los-loop preset and its raw data.
    fn los_loop() -> (Settings, ists::data::RawDataset) {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let s = load(Some(&root.join("config/los-loop-tgcn.toml"))).unwrap();
        let spec = ists::data::DataSpec::resolve(&s.data.source, &root.join("data")).unwrap();
        let raw = ists::data::load(&spec).unwrap();
        (s, raw)
    }

    #[test]
    fn los_loop_tgcn_preset_tests_on_t_gcns_test_part() {
        let (s, raw) = los_loop();
        assert!(raw.signal_path.ends_with("T-GCN_Los-loop/los_speed.csv"));
        let p = ists::data::prepare(&raw, &s.data.prepare).unwrap();
        assert_eq!((p.t, p.input_len, p.output_len), (2016, 12, 12));
        // T-GCN keeps int(0.8 * 2016) = 1612 steps for training and windows the rest on its
        // own: the test windows are exactly those that start at step 1612 or later, and
        // validation comes out of the training part.
        assert_eq!(p.splits.test, 1612..1993);
        assert_eq!(p.splits.val.end, 1612);
        assert!(!p.splits.train.is_empty() && !p.splits.val.is_empty());
    }

    /// `ists protocol tgcn --per-horizon`: T-GCN's model of h steps out trains and validates on
    /// the windows of the 12-step preset and tests on every window starting at step 1612 or
    /// later, 2016 - 12 - h + 1 windows in all.
    #[test]
    fn los_loop_per_horizon_data_keeps_the_presets_windows() {
        let (s, raw) = los_loop();
        let base = ists::data::prepare(&raw, &s.data.prepare).unwrap();
        assert_eq!(
            (base.splits.train.clone(), base.splits.val.clone()),
            (0..1395, 1395..1612)
        );
        let all = ists::protocol::tgcn_horizon_data(&raw, &s.data.prepare, &base.splits).unwrap();
        let got: Vec<_> = all
            .iter()
            .map(|p| {
                (
                    p.output_len,
                    p.splits.train.clone(),
                    p.splits.val.clone(),
                    p.splits.test.clone(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (3, 0..1395, 1395..1612, 1612..2002),
                (6, 0..1395, 1395..1612, 1612..1999),
                (9, 0..1395, 1395..1612, 1612..1996),
                (12, 0..1395, 1395..1612, 1612..1993),
            ]
        );
        // The 12-step model's data is the preset's own; every horizon's scaler is its.
        assert_eq!(all[3].splits, base.splits);
        assert!(all
            .iter()
            .all(|p| p.scaler == base.scaler && p.input_len == 12));
    }

    #[test]
    fn a_ray_job_evaluates_where_ray_placed_it_not_on_the_heads_devices() {
        use crate::search::supervisor::single_device;
        let mut s = load(None).unwrap();
        s.evaluators.backend = ists::config::EvalBackend::Ray;
        s.evaluators.devices = vec!["cuda:3".into()];
        assert_eq!(single_device(&s).unwrap(), tch::Device::Cpu);
        s.evaluators.ray.entrypoint_num_gpus = 1.0;
        match single_device(&s) {
            Ok(d) => assert!(tch::Cuda::is_available() && d == tch::Device::Cuda(0)),
            Err(e) => assert!(e.contains("entrypoint_num_gpus"), "{e}"),
        }
    }
}
