//! `DataSpec`: what a config's `[data]` table says about a data set (format
//! and file paths), the built-in bundled data sets, and auto-detection of a
//! data set's format from a file or directory path.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::DataError;

/// On-disk layout of a data set.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum DataFormat {
    /// ASTGCN/STSGCN release: `PEMS0X.npz` (`data` `[T, N, F]`) + distance csv.
    Pems,
    /// DCRNN release converted to npz (`data` `[T, N]`) + `adj_mx.pkl`.
    Dcrnn,
    /// T-GCN: speed csv (header of sensor ids) + adjacency csv.
    Tgcn,
    /// PyTorch Geometric Temporal json (edges, weights, node values).
    #[serde(alias = "pygjson", alias = "pyg")]
    PygJson,
}

impl DataFormat {
    pub(crate) fn label(self) -> &'static str {
        match self {
            DataFormat::Pems => "PEMS",
            DataFormat::Dcrnn => "DCRNN",
            DataFormat::Tgcn => "T-GCN",
            DataFormat::PygJson => "PyG-Temporal json",
        }
    }
    /// Traffic formats are 5-minute data; the PyG json sets bundled here are
    /// weekly, so their "day" is a year of 52 weeks.
    pub fn default_steps_per_day(self) -> usize {
        match self {
            DataFormat::Pems | DataFormat::Dcrnn | DataFormat::Tgcn => 288,
            DataFormat::PygJson => 52,
        }
    }
    /// Zeros are missing readings in traffic data; PyG sets are already
    /// standardized, where 0 is an ordinary value.
    pub fn default_null_value(self) -> Option<f32> {
        match self {
            DataFormat::Pems | DataFormat::Dcrnn | DataFormat::Tgcn => Some(0.0),
            DataFormat::PygJson => None,
        }
    }
}

/// What a config file's `[data]` table holds.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DataSpec {
    /// Display name.
    pub name: String,
    pub format: DataFormat,
    /// `.npz` (PEMS / DCRNN), `.csv` (T-GCN) or `.json` (PyG).
    pub signal: PathBuf,
    /// Distance csv, `adj_mx.pkl` or adjacency csv; `None` for PyG json.
    pub graph: Option<PathBuf>,
    /// Station-id list giving node order for distance csvs keyed by id.
    pub id_map: Option<PathBuf>,
    #[serde(default)]
    pub steps_per_day: Option<usize>,
    /// Overrides the format's missing-value marker.
    #[serde(default)]
    pub null_value: Option<f32>,
    /// Gaussian kernel scale for distance graphs (default: std of distances).
    #[serde(default)]
    pub sigma: Option<f32>,
    /// Kernel weights below this are dropped (default 0.1).
    #[serde(default)]
    pub threshold: Option<f32>,
    /// The calendar day of the first step, `YYYY-MM-DD`, taken to begin at midnight: what
    /// `data.prepare.day_type` reads a step's day of the week from. Unknown (`None`) unless
    /// given; the bundled METR-LA week carries its published one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
}

/// Built-in names with a one-line description, for error messages and help.
const BUILTIN: &[(&str, &str)] = &[
    (
        "metr-la-week",
        "METR-LA one week (T-GCN los_speed.csv + los_adj.csv), 2016 x 207",
    ),
    (
        "chickenpox",
        "Hungary chickenpox cases (PyG json), 521 weeks x 20 counties",
    ),
    (
        "pedalme",
        "PedalMe London deliveries (PyG json), 35 weeks x 15 zones",
    ),
];

fn known_names() -> String {
    BUILTIN
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

impl DataSpec {
    fn new(name: &str, format: DataFormat, signal: PathBuf, graph: Option<PathBuf>) -> DataSpec {
        DataSpec {
            name: name.to_string(),
            format,
            signal,
            graph,
            id_map: None,
            steps_per_day: None,
            null_value: None,
            sigma: None,
            threshold: None,
            start: None,
        }
    }

    /// The built-in data sets bundled under `data_dir` (the repo's `data/`).
    pub fn builtin(name: &str, data_dir: &Path) -> Result<DataSpec, DataError> {
        let key = name.trim().to_ascii_lowercase();
        let mut spec = match key.as_str() {
            "metr-la-week" => {
                let dir = data_dir.join("METR-LA").join("T-GCN_Los-loop");
                let mut spec = DataSpec::new(
                    "metr-la-week",
                    DataFormat::Tgcn,
                    dir.join("los_speed.csv"),
                    Some(dir.join("los_adj.csv")),
                );
                // T-GCN's Los-loop: 207 sensors "from March 1 to March 7, 2012" (the data's
                // published description, data/README.md). The file agrees: its third and
                // fourth days, a Saturday and a Sunday, are the two without a morning rush.
                spec.start = Some("2012-03-01".into());
                spec
            }
            "chickenpox" => DataSpec::new(
                "chickenpox",
                DataFormat::PygJson,
                data_dir.join("Chickenpox-Hungary").join("chickenpox.json"),
                None,
            ),
            "pedalme" => DataSpec::new(
                "pedalme",
                DataFormat::PygJson,
                data_dir.join("PedalMe-London").join("pedalme_london.json"),
                None,
            ),
            _ => {
                return Err(DataError::UnknownDataset {
                    name: name.to_string(),
                    known: known_names(),
                })
            }
        };
        spec.steps_per_day = Some(spec.format.default_steps_per_day());
        Ok(spec)
    }

    /// Descriptions of the built-in data sets, `(name, description)`.
    pub fn builtin_names() -> &'static [(&'static str, &'static str)] {
        BUILTIN
    }

    /// Detects the format of a file or directory:
    /// - a directory with `X.npz` and `X.csv` (and optionally `X.txt`) -> PEMS;
    /// - a directory with `metr-la.npz`/`pems-bay.npz` and `adj_mx*.pkl` -> DCRNN;
    /// - a directory with a `*speed*.csv` and an `*adj*.csv` -> T-GCN;
    /// - a `.json` file -> PyG json; a `.csv` file -> T-GCN with the sibling
    ///   csv that has `adj` in its name; an `.npz` file -> as its directory.
    pub fn from_path(path: &Path) -> Result<DataSpec, DataError> {
        let meta = std::fs::metadata(path).map_err(|e| DataError::io(path, e))?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        if meta.is_dir() {
            return detect_dir(path, None, &name);
        }
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        let dir = path.parent().unwrap_or(Path::new("."));
        match ext.as_str() {
            "json" => Ok(DataSpec::new(&name, DataFormat::PygJson, path.to_path_buf(), None)),
            "npz" => detect_dir(dir, Some(path), &name),
            "csv" => {
                let files = list_dir(dir)?;
                let adj = files.iter().find(|f| {
                    f.as_path() != path && is_ext(f, "csv") && file_name(f).to_ascii_lowercase().contains("adj")
                });
                match adj {
                    Some(a) if !file_name(path).to_ascii_lowercase().contains("adj") => Ok(DataSpec::new(
                        &name,
                        DataFormat::Tgcn,
                        path.to_path_buf(),
                        Some(a.clone()),
                    )),
                    _ => Err(DataError::config(format!(
                        "{}: a csv signal is read as T-GCN (header of sensor ids, one row per step) \
                         and needs a sibling adjacency csv with `adj` in its name; none found",
                        path.display()
                    ))),
                }
            }
            _ => Err(DataError::config(format!(
                "{}: cannot tell the data format; expected a directory (PEMS0X.npz + PEMS0X.csv, or \
                 metr-la.npz/pems-bay.npz + adj_mx*.pkl), a PyG-Temporal .json, or a T-GCN speed .csv",
                path.display()
            ))),
        }
    }

    /// A built-in name if it is one, otherwise a path (as given, then
    /// relative to `data_dir`).
    pub fn resolve(name_or_path: &str, data_dir: &Path) -> Result<DataSpec, DataError> {
        if BUILTIN
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name_or_path.trim()))
        {
            return DataSpec::builtin(name_or_path, data_dir);
        }
        let p = Path::new(name_or_path);
        if p.exists() {
            return DataSpec::from_path(p);
        }
        let under = data_dir.join(p);
        if p.is_relative() && under.exists() {
            return DataSpec::from_path(&under);
        }
        Err(DataError::UnknownDataset {
            name: name_or_path.to_string(),
            known: known_names(),
        })
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn is_ext(p: &Path, ext: &str) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case(ext))
}

fn list_dir(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let rd = std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))?;
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| DataError::io(dir, e))?;
        out.push(entry.path());
    }
    // Sorted so detection does not depend on directory order.
    out.sort();
    Ok(out)
}

/// Finds a sibling of `files` with stem `stem` (case-insensitive) and `ext`.
fn sibling(files: &[PathBuf], stem: &str, ext: &str) -> Option<PathBuf> {
    files
        .iter()
        .find(|f| {
            is_ext(f, ext)
                && f.file_stem()
                    .is_some_and(|s| s.to_string_lossy().eq_ignore_ascii_case(stem))
        })
        .cloned()
}

fn detect_dir(dir: &Path, npz: Option<&Path>, name: &str) -> Result<DataSpec, DataError> {
    let files = list_dir(dir)?;
    let candidates: Vec<PathBuf> = match npz {
        Some(p) => vec![p.to_path_buf()],
        None => files.iter().filter(|f| is_ext(f, "npz")).cloned().collect(),
    };
    for npz in &candidates {
        let stem = npz
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let lower = stem.to_ascii_lowercase();
        let pkls: Vec<&PathBuf> = files
            .iter()
            .filter(|f| is_ext(f, "pkl") && file_name(f).to_ascii_lowercase().starts_with("adj_mx"))
            .collect();
        if lower.contains("metr-la") || lower.contains("pems-bay") || lower.contains("pems_bay") {
            let want_bay = lower.contains("bay");
            // Prefer the pickle whose name matches the network (adj_mx_bay.pkl).
            let pkl = pkls
                .iter()
                .find(|p| file_name(p).to_ascii_lowercase().contains("bay") == want_bay)
                .or(pkls.first());
            if let Some(pkl) = pkl {
                return Ok(DataSpec::new(
                    &stem,
                    DataFormat::Dcrnn,
                    npz.clone(),
                    Some((*pkl).clone()),
                ));
            }
        }
        if let Some(csv) = sibling(&files, &stem, "csv") {
            let mut spec = DataSpec::new(&stem, DataFormat::Pems, npz.clone(), Some(csv));
            spec.id_map = sibling(&files, &stem, "txt");
            return Ok(spec);
        }
        if let Some(pkl) = pkls.first() {
            return Ok(DataSpec::new(
                &stem,
                DataFormat::Dcrnn,
                npz.clone(),
                Some((*pkl).clone()),
            ));
        }
    }
    if npz.is_none() {
        let speed = files
            .iter()
            .find(|f| is_ext(f, "csv") && file_name(f).to_ascii_lowercase().contains("speed"));
        let adj = files
            .iter()
            .find(|f| is_ext(f, "csv") && file_name(f).to_ascii_lowercase().contains("adj"));
        if let (Some(s), Some(a)) = (speed, adj) {
            return Ok(DataSpec::new(
                name,
                DataFormat::Tgcn,
                s.clone(),
                Some(a.clone()),
            ));
        }
    }
    Err(DataError::config(format!(
        "{}: cannot tell the data format; expected PEMS0X.npz with PEMS0X.csv (and optionally \
         PEMS0X.txt), metr-la.npz or pems-bay.npz with adj_mx*.pkl, or a T-GCN *speed*.csv with \
         an *adj*.csv",
        dir.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{load, write_npz};

    fn data_dir() -> PathBuf {
        crate::data::bundled_data_dir()
    }

    #[test]
    fn builtins_load() {
        let raw = load(&DataSpec::builtin("metr-la-week", &data_dir()).unwrap()).unwrap();
        assert_eq!((raw.signal.t, raw.signal.n, raw.graph.n), (2016, 207, 207));
        assert_eq!((raw.steps_per_day, raw.null_value), (288, Some(0.0)));
        assert_eq!(raw.first_weekday, Some(3), "Thursday, 2012-03-01");
        let raw = load(&DataSpec::resolve("Chickenpox", &data_dir()).unwrap()).unwrap();
        assert_eq!(raw.first_weekday, None);
        assert_eq!(
            (raw.signal.t, raw.signal.n, raw.steps_per_day),
            (521, 20, 52)
        );
        assert_eq!(raw.null_value, None);
        let raw = load(&DataSpec::builtin("pedalme", &data_dir()).unwrap()).unwrap();
        assert_eq!((raw.signal.t, raw.signal.n), (35, 15));
    }

    #[test]
    fn unknown_name_lists_known() {
        let e = DataSpec::builtin("nope", &data_dir()).unwrap_err();
        assert!(matches!(e, DataError::UnknownDataset { .. }));
        let e = DataSpec::resolve("no-such-set", &data_dir()).unwrap_err();
        let s = e.to_string();
        assert!(
            s.contains("no-such-set") && s.contains("metr-la-week, chickenpox, pedalme"),
            "{s}"
        );
    }

    #[test]
    fn detects_formats() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // PEMS directory with id map.
        let pems = d.join("p");
        std::fs::create_dir(&pems).unwrap();
        write_npz(
            &pems.join("PEMS03.npz"),
            &[("data", &[2, 1, 1], &[1.0, 2.0])],
        )
        .unwrap();
        std::fs::write(pems.join("PEMS03.csv"), "from,to,distance\n").unwrap();
        std::fs::write(pems.join("PEMS03.txt"), "1\n").unwrap();
        let s = DataSpec::from_path(&pems).unwrap();
        assert_eq!(s.format, DataFormat::Pems);
        assert_eq!(s.graph, Some(pems.join("PEMS03.csv")));
        assert_eq!(s.id_map, Some(pems.join("PEMS03.txt")));
        assert_eq!(s.name, "PEMS03");
        // The same through resolve, relative to the data dir.
        assert_eq!(DataSpec::resolve("p", d).unwrap(), s);
        // DCRNN directory: pems-bay picks adj_mx_bay.pkl.
        let dc = d.join("dc");
        std::fs::create_dir(&dc).unwrap();
        write_npz(&dc.join("pems-bay.npz"), &[("data", &[1, 1], &[1.0])]).unwrap();
        std::fs::write(dc.join("adj_mx.pkl"), b"").unwrap();
        std::fs::write(dc.join("adj_mx_bay.pkl"), b"").unwrap();
        let s = DataSpec::from_path(&dc).unwrap();
        assert_eq!(s.format, DataFormat::Dcrnn);
        assert_eq!(s.graph, Some(dc.join("adj_mx_bay.pkl")));
        let s = DataSpec::from_path(&dc.join("pems-bay.npz")).unwrap();
        assert_eq!(s.format, DataFormat::Dcrnn);
        // JSON and T-GCN csv on the bundled files.
        let s =
            DataSpec::from_path(&data_dir().join("PedalMe-London/pedalme_london.json")).unwrap();
        assert_eq!(s.format, DataFormat::PygJson);
        let s =
            DataSpec::from_path(&data_dir().join("METR-LA/T-GCN_Los-loop/los_speed.csv")).unwrap();
        assert_eq!(s.format, DataFormat::Tgcn);
        assert_eq!(
            s.graph,
            Some(data_dir().join("METR-LA/T-GCN_Los-loop/los_adj.csv"))
        );
        let s = DataSpec::from_path(&data_dir().join("METR-LA/T-GCN_Los-loop")).unwrap();
        assert_eq!(s.format, DataFormat::Tgcn);
        // A directory with nothing recognizable: Config error saying what was expected.
        let e = DataSpec::from_path(&data_dir().join("PEMS04")).unwrap_err();
        assert!(
            matches!(e, DataError::Config { .. }) && e.to_string().contains("PEMS0X.npz"),
            "{e}"
        );
    }

    #[test]
    fn spec_serde() {
        // Optional fields may be left out (a config's [data] table).
        let json = r#"{"name": "x", "format": "pyg-json", "signal": "a.json"}"#;
        let s: DataSpec = serde_json::from_str(json).unwrap();
        assert_eq!(s.format, DataFormat::PygJson);
        assert_eq!(s.sigma, None);
        let bad = r#"{"name": "x", "format": "pems", "signal": "a", "graph": null, "id_map": null, "oops": 1}"#;
        assert!(serde_json::from_str::<DataSpec>(bad).is_err());
        let back: DataSpec = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
    }
}
