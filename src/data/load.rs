//! Loaders for the standard benchmark formats (PEMS0X npz + distance csv,
//! DCRNN npz + `adj_mx.pkl`, T-GCN csv pair, PyG-Temporal json, the last in
//! `pyg`) into a validated `RawDataset`.

use std::path::{Path, PathBuf};

use super::graph::{gaussian_kernel, DEFAULT_THRESHOLD};
use super::npy::{read_npy, read_npz, read_npz_i64, NpzI64};
use super::pickle::read_dcrnn_adj;
pub use super::pyg::load_pyg_json;
use super::spec::{DataFormat, DataSpec};
use super::{check_finite, DataError, Graph, RawDataset, Signal};

/// Loads and validates the data set a spec describes.
pub fn load(spec: &DataSpec) -> Result<RawDataset, DataError> {
    let mut timestamps = None;
    let (signal, graph, graph_path) = match spec.format {
        DataFormat::Pems | DataFormat::Dcrnn => {
            let (signal, graph, graph_path, stamps) = load_array_format(spec)?;
            timestamps = stamps;
            (signal, graph, graph_path)
        }
        DataFormat::Tgcn => {
            let graph_path = spec.graph.clone().ok_or_else(|| {
                DataError::config(format!(
                    "data set `{}`: T-GCN format needs `graph` (the adjacency csv)",
                    spec.name
                ))
            })?;
            let (signal, graph) = load_tgcn(&spec.signal, &graph_path)?;
            (signal, graph, graph_path)
        }
        DataFormat::PygJson => {
            let (signal, graph) = load_pyg_json(&spec.signal)?;
            (signal, graph, spec.signal.clone())
        }
    };
    let steps_per_day = spec
        .steps_per_day
        .unwrap_or_else(|| spec.format.default_steps_per_day());
    if steps_per_day == 0 {
        return Err(DataError::config(format!(
            "data set `{}`: steps_per_day must be at least 1",
            spec.name
        )));
    }
    if let Some(v) = spec.null_value {
        if !v.is_finite() {
            return Err(DataError::config(format!(
                "data set `{}`: null_value must be a finite number",
                spec.name
            )));
        }
    }
    let first_weekday = spec
        .start
        .as_deref()
        .map(|date| {
            weekday(date).map_err(|why| {
                DataError::config(format!("data set `{}`: start `{date}`: {why}", spec.name))
            })
        })
        .transpose()?;
    let stamped = timestamps
        .as_deref()
        .and_then(|ns| calendar_of(ns, steps_per_day, spec));
    let first_weekday = match (first_weekday, stamped) {
        (Some(given), Some(read)) if given != read => {
            return Err(DataError::config(format!(
                "data set `{}`: start `{}` is a {} but the first of the timestamps in {} is a {}",
                spec.name,
                spec.start.as_deref().unwrap_or_default(),
                weekday_name(given),
                spec.signal.display(),
                weekday_name(read)
            )))
        }
        (given, read) => given.or(read),
    };
    tracing::debug!(
        name = %spec.name,
        t = signal.t,
        n = signal.n,
        f = signal.f,
        "loaded data set"
    );
    Ok(RawDataset {
        name: spec.name.clone(),
        signal,
        graph,
        signal_path: spec.signal.clone(),
        graph_path,
        steps_per_day,
        null_value: spec.null_value.or(spec.format.default_null_value()),
        first_weekday,
    })
}

const WEEKDAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// The English name of a day of the week, 0 for Monday to 6 for Sunday (`"?"` past 6).
pub fn weekday_name(day: u8) -> &'static str {
    WEEKDAYS.get(usize::from(day)).copied().unwrap_or("?")
}

/// Nanoseconds in a day.
const DAY_NS: i64 = 86_400_000_000_000;

/// The first step's day of the week (0 for Monday) from a signal's timestamps (nanoseconds
/// since 1970, UTC as pandas stores them), where they fit how steps are read: the first at
/// midnight and every step one day / `steps_per_day` after the last. Otherwise `None`, with
/// a warning that says why (the spec's `start` can still give the calendar).
fn calendar_of(ns: &[i64], steps_per_day: usize, spec: &DataSpec) -> Option<u8> {
    let first = *ns.first()?;
    let why = if first.rem_euclid(DAY_NS) != 0 {
        Some(format!(
            "the first step is {} s after midnight, and the time of day is read from midnight",
            first.rem_euclid(DAY_NS) / 1_000_000_000
        ))
    } else {
        let step = i64::try_from(steps_per_day)
            .ok()
            .filter(|s| DAY_NS % s == 0)
            .map(|s| DAY_NS / s);
        // Checked: a damaged file's timestamps can be any 64-bit values.
        ns.windows(2)
            .position(|w| w[1].checked_sub(w[0]) != step)
            .map(|k| {
                format!(
                    "steps {k} and {} are {} s apart, not one day / {steps_per_day}",
                    k + 1,
                    ns[k + 1].saturating_sub(ns[k]) / 1_000_000_000
                )
            })
    };
    if let Some(why) = why {
        tracing::warn!(
            "data set `{}`: the timestamps of {} give no calendar: {why}",
            spec.name,
            spec.signal.display()
        );
        return None;
    }
    Some((first.div_euclid(DAY_NS) + 3).rem_euclid(7) as u8)
}

/// The day of the week of a `YYYY-MM-DD` date in the proleptic Gregorian calendar, 0 for
/// Monday to 6 for Sunday; why not where the text is no such date.
pub(crate) fn weekday(date: &str) -> Result<u8, String> {
    let parts: Vec<&str> = date.trim().split('-').collect();
    let number = |s: &str, what: &str| {
        s.parse::<i64>()
            .map_err(|_| format!("{what} `{s}` is not a number (expected YYYY-MM-DD)"))
    };
    let [y, m, d] = parts[..] else {
        return Err("expected a date YYYY-MM-DD".into());
    };
    let (y, m, d) = (number(y, "year")?, number(m, "month")?, number(d, "day")?);
    if !(1..=9999).contains(&y) {
        return Err(format!("year {y} is not 1 to 9999"));
    }
    if !(1..=12).contains(&m) {
        return Err(format!("month {m} is not 1 to 12"));
    }
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days_in_month = match m {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if !(1..=days_in_month).contains(&d) {
        return Err(format!("day {d} is not in month {m} of {y}"));
    }
    // Days since 1970-01-01 (H. Hinnant's days_from_civil), a Thursday (3).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Ok((days + 3).rem_euclid(7) as u8)
}

/// What [`load_array_format`] reads: the signal, the graph and its path, and the DCRNN npz's
/// timestamps where they are 64-bit integers or datetimes (nanoseconds since 1970).
type ArrayFormat = (Signal, Graph, PathBuf, Option<Vec<i64>>);

/// PEMS0X and DCRNN: an npz (or npy) signal plus a distance csv or pickle, with timestamps.
fn load_array_format(spec: &DataSpec) -> Result<ArrayFormat, DataError> {
    // Configuration problems first, before any (possibly slow) reading.
    let graph_path = spec.graph.clone().ok_or_else(|| {
        DataError::config(format!(
            "data set `{}`: {} format needs `graph` (distance csv or adj_mx.pkl)",
            spec.name,
            spec.format.label()
        ))
    })?;
    let signal = read_signal_array(&spec.signal)?;
    let n = signal.n;
    let mut stamps = None;
    if spec.format == DataFormat::Dcrnn && is_ext(&spec.signal, "npz") {
        // Optional timestamps must describe the same steps as the table.
        // Optional: absent is fine, unreadable is an error.
        let timestamps = match read_npz_i64(&spec.signal, "timestamps") {
            Ok(NpzI64::Values(ns)) => {
                let shape = vec![ns.len()];
                stamps = Some(ns);
                Some(shape)
            }
            // Another dtype (floats): its shape is checked, no calendar is read.
            Ok(NpzI64::Shape(shape)) => Some(shape),
            Err(DataError::MissingKey { .. }) => None,
            Err(e) => return Err(e),
        };
        if let Some(shape) = timestamps {
            if shape.first().copied() != Some(signal.t) || shape.len() != 1 {
                return Err(DataError::shape(
                    &spec.signal,
                    format!(
                        "`timestamps` has shape {shape:?} but `data` has {} steps",
                        signal.t
                    ),
                ));
            }
        }
    }
    let graph = if is_ext(&graph_path, "pkl") || is_ext(&graph_path, "pickle") {
        let g = read_dcrnn_adj(&graph_path)?;
        if spec.id_map.is_some() {
            tracing::warn!(
                "id_map is ignored: {} carries its own sensor ids",
                graph_path.display()
            );
        }
        g
    } else {
        let ids = match &spec.id_map {
            Some(p) => {
                let ids = read_id_map(p)?;
                if ids.len() != n {
                    return Err(DataError::NodeMismatch {
                        signal: spec.signal.clone(),
                        graph: p.clone(),
                        signal_nodes: n,
                        graph_nodes: ids.len(),
                    });
                }
                Some(ids)
            }
            None => None,
        };
        let edges = read_distance_csv(&graph_path, ids.as_deref())?;
        if let Some(max) = edges.iter().map(|e| e.0.max(e.1)).max() {
            if max >= n {
                return Err(DataError::NodeMismatch {
                    signal: spec.signal.clone(),
                    graph: graph_path.clone(),
                    signal_nodes: n,
                    graph_nodes: max + 1,
                });
            }
        }
        let threshold = spec.threshold.unwrap_or(DEFAULT_THRESHOLD);
        Graph {
            n,
            adj: gaussian_kernel(&edges, n, spec.sigma, threshold, true),
            node_ids: ids,
        }
    };
    if graph.n != n {
        return Err(DataError::NodeMismatch {
            signal: spec.signal.clone(),
            graph: graph_path.clone(),
            signal_nodes: n,
            graph_nodes: graph.n,
        });
    }
    Ok((signal, graph, graph_path, stamps))
}

fn is_ext(p: &Path, ext: &str) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case(ext))
}

/// Reads the `data` array of an npz (or a bare .npy) as `[T, N, F]`; rank 2
/// `[T, N]` is taken as F = 1.
fn read_signal_array(path: &Path) -> Result<Signal, DataError> {
    let (shape, values) = if is_ext(path, "npy") {
        read_npy(path)?
    } else {
        read_npz(path, "data")?
    };
    let (t, n, f) = match shape.as_slice() {
        [t, n, f] => (*t, *n, *f),
        [t, n] => (*t, *n, 1),
        other => {
            return Err(DataError::shape(
                path,
                format!(
                    "`data` has rank {} (shape {other:?}); expected [T, N, F] or [T, N]",
                    other.len()
                ),
            ))
        }
    };
    if t == 0 || n == 0 || f == 0 {
        return Err(DataError::shape(
            path,
            format!("`data` is empty: shape {shape:?}"),
        ));
    }
    check_finite(path, &values, &[t, n, f], &["step", "node", "feature"])?;
    Ok(Signal { values, t, n, f })
}

fn csv_reader(path: &Path) -> Result<csv::Reader<std::fs::File>, DataError> {
    let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    Ok(csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(file))
}

fn csv_err(path: &Path, e: csv::Error) -> DataError {
    let line = e.position().map(|p| p.line());
    match e.into_kind() {
        csv::ErrorKind::Io(io) => DataError::io(path, io),
        other => DataError::format(
            path,
            match line {
                Some(l) => format!("line {l}: {other:?}"),
                None => format!("{other:?}"),
            },
        ),
    }
}

fn parse_num(path: &Path, line: u64, col: usize, s: &str) -> Result<f32, DataError> {
    s.parse::<f32>().map_err(|_| {
        DataError::format(
            path,
            format!("line {line}, column {}: `{s}` is not a number", col + 1),
        )
    })
}

/// Reads station ids, one per line or comma-separated (PEMS03.txt,
/// graph_sensor_ids.txt). Order defines node indices.
pub fn read_id_map(path: &Path) -> Result<Vec<String>, DataError> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
    let ids: Vec<String> = text
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if ids.is_empty() {
        return Err(DataError::format(path, "id list is empty"));
    }
    let mut seen = std::collections::HashSet::new();
    for id in &ids {
        if !seen.insert(id.as_str()) {
            return Err(DataError::format(
                path,
                format!("station id `{id}` is listed twice"),
            ));
        }
    }
    Ok(ids)
}

/// Reads a `from,to,distance` csv (optional header line). Without an id
/// map `from`/`to` are node indices; with one they are station ids mapped
/// to their position in the list, and rows naming stations outside the list
/// are skipped (as DCRNN does for its full-network distance files).
pub fn read_distance_csv(
    path: &Path,
    id_map: Option<&[String]>,
) -> Result<Vec<(usize, usize, f32)>, DataError> {
    let index: Option<std::collections::HashMap<&str, usize>> = id_map.map(|ids| {
        ids.iter()
            .enumerate()
            .map(|(i, s)| (s.as_str(), i))
            .collect()
    });
    let mut rdr = csv_reader(path)?;
    let mut edges = Vec::new();
    let mut skipped = 0usize;
    for (k, rec) in rdr.records().enumerate() {
        let rec = rec.map_err(|e| csv_err(path, e))?;
        let line = rec.position().map_or(k as u64 + 1, |p| p.line());
        if rec.iter().all(str::is_empty) {
            continue;
        }
        if rec.len() < 3 {
            return Err(DataError::format(
                path,
                format!(
                    "line {line}: expected `from,to,distance`, found {} field(s)",
                    rec.len()
                ),
            ));
        }
        // A header is a first line whose distance column is not a number.
        if k == 0 && rec[2].parse::<f32>().is_err() {
            continue;
        }
        let (from, to) = match &index {
            Some(map) => match (map.get(&rec[0]), map.get(&rec[1])) {
                (Some(a), Some(b)) => (*a, *b),
                _ => {
                    skipped += 1;
                    continue;
                }
            },
            None => {
                let node = |c: usize| -> Result<usize, DataError> {
                    rec[c].parse::<usize>().map_err(|_| {
                        DataError::format(
                            path,
                            format!(
                                "line {line}, column {}: `{}` is not a node index (give an id map for station ids)",
                                c + 1,
                                &rec[c]
                            ),
                        )
                    })
                };
                (node(0)?, node(1)?)
            }
        };
        let d = parse_num(path, line, 2, &rec[2])?;
        if !d.is_finite() {
            return Err(DataError::NonFinite {
                path: path.to_path_buf(),
                msg: format!("line {line}, column 3 (distance `{}`)", &rec[2]),
            });
        }
        if d < 0.0 {
            return Err(DataError::format(
                path,
                format!("line {line}: negative distance {d}"),
            ));
        }
        edges.push((from, to, d));
    }
    if skipped > 0 {
        tracing::warn!(
            skipped,
            "{}: skipped rows naming stations not in the id map",
            path.display()
        );
    }
    if edges.is_empty() {
        return Err(DataError::format(path, "no edges found"));
    }
    Ok(edges)
}

/// Builds the Gaussian-kernel graph of `n` nodes from a distance csv
/// (symmetric, no self-loops added); see [`gaussian_kernel`].
pub fn load_distance_graph(
    path: &Path,
    n: usize,
    id_map: Option<&[String]>,
    sigma: Option<f32>,
    threshold: Option<f32>,
) -> Result<Graph, DataError> {
    if n == 0 {
        return Err(DataError::shape(path, "graph needs at least one node"));
    }
    if let Some(ids) = id_map {
        if ids.len() != n {
            return Err(DataError::shape(
                path,
                format!("id map has {} ids but the graph has {n} nodes", ids.len()),
            ));
        }
    }
    let edges = read_distance_csv(path, id_map)?;
    if let Some(&(i, j, _)) = edges.iter().find(|e| e.0 >= n || e.1 >= n) {
        return Err(DataError::shape(
            path,
            format!(
                "edge {i} -> {j} names a node >= the node count {n} \
                 (if the csv lists station ids, give an id map)"
            ),
        ));
    }
    Ok(Graph {
        n,
        adj: gaussian_kernel(
            &edges,
            n,
            sigma,
            threshold.unwrap_or(DEFAULT_THRESHOLD),
            true,
        ),
        node_ids: id_map.map(<[String]>::to_vec),
    })
}

/// Reads a headerless numeric matrix csv; every row must have the same
/// number of fields.
fn read_matrix_csv(
    path: &Path,
    skip_header: bool,
) -> Result<(Vec<String>, usize, usize, Vec<f32>), DataError> {
    let mut rdr = csv_reader(path)?;
    let mut header = Vec::new();
    let mut values = Vec::new();
    let mut cols: Option<usize> = None;
    let mut rows = 0usize;
    for (k, rec) in rdr.records().enumerate() {
        let rec = rec.map_err(|e| csv_err(path, e))?;
        let line = rec.position().map_or(k as u64 + 1, |p| p.line());
        if rec.iter().all(str::is_empty) {
            continue;
        }
        if skip_header && k == 0 {
            header = rec.iter().map(str::to_string).collect();
            cols = Some(rec.len());
            continue;
        }
        match cols {
            Some(c) if c != rec.len() => {
                return Err(DataError::format(
                    path,
                    format!("line {line}: {} fields, expected {c}", rec.len()),
                ))
            }
            _ => cols = Some(rec.len()),
        }
        for (c, field) in rec.iter().enumerate() {
            values.push(parse_num(path, line, c, field)?);
        }
        rows += 1;
    }
    Ok((header, rows, cols.unwrap_or(0), values))
}

/// Reads a square adjacency csv without header (T-GCN `*_adj.csv`).
pub fn read_adjacency_csv(path: &Path) -> Result<Graph, DataError> {
    let (_, rows, cols, adj) = read_matrix_csv(path, false)?;
    if rows == 0 || cols == 0 {
        return Err(DataError::shape(path, "adjacency matrix is empty"));
    }
    if rows != cols {
        return Err(DataError::shape(
            path,
            format!("adjacency matrix is {rows}x{cols}, expected square"),
        ));
    }
    check_finite(path, &adj, &[rows, cols], &["row", "col"])?;
    Ok(Graph {
        n: rows,
        adj,
        node_ids: None,
    })
}

/// Reads a T-GCN speed csv: a header row of sensor ids, then one row per
/// time step. Returns the `[T, N, 1]` signal and the ids.
pub fn read_tgcn_signal(path: &Path) -> Result<(Signal, Vec<String>), DataError> {
    let (ids, t, n, values) = read_matrix_csv(path, true)?;
    if ids.is_empty() {
        return Err(DataError::shape(
            path,
            "csv is empty (no header row of sensor ids)",
        ));
    }
    if t == 0 || n == 0 {
        return Err(DataError::shape(
            path,
            format!("signal is empty: {t} steps x {n} sensors"),
        ));
    }
    check_finite(path, &values, &[t, n], &["step", "sensor"])?;
    Ok((Signal { values, t, n, f: 1 }, ids))
}

/// Loads a T-GCN speed csv and its adjacency csv.
pub fn load_tgcn(signal_path: &Path, adj_path: &Path) -> Result<(Signal, Graph), DataError> {
    let (signal, ids) = read_tgcn_signal(signal_path)?;
    let mut graph = read_adjacency_csv(adj_path)?;
    if graph.n != signal.n {
        return Err(DataError::NodeMismatch {
            signal: signal_path.to_path_buf(),
            graph: adj_path.to_path_buf(),
            signal_nodes: signal.n,
            graph_nodes: graph.n,
        });
    }
    graph.node_ids = Some(ids);
    Ok((signal, graph))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::npy::write_npz;
    use crate::data::pickle::tests::PickleWriter;

    fn bundled(rel: &str) -> PathBuf {
        crate::data::bundled_data_dir().join(rel)
    }

    fn spec(format: DataFormat, signal: &Path, graph: Option<&Path>) -> DataSpec {
        DataSpec {
            name: "test".into(),
            format,
            signal: signal.to_path_buf(),
            graph: graph.map(Path::to_path_buf),
            id_map: None,
            steps_per_day: None,
            null_value: None,
            sigma: None,
            threshold: None,
            start: None,
        }
    }

    #[test]
    fn weekday_of_a_date_and_the_errors_of_a_bad_one() {
        // 0 is Monday (Python's date.weekday() agrees on each).
        for (date, day) in [
            ("2012-03-01", 3),
            ("1970-01-01", 3),
            ("2000-02-29", 1),
            ("2024-12-25", 2),
            ("1600-03-01", 2),
            ("2100-03-01", 0),
        ] {
            assert_eq!(weekday(date), Ok(day), "{date}");
        }
        assert_eq!(
            (weekday_name(3), weekday_name(6), weekday_name(7)),
            ("Thursday", "Sunday", "?")
        );
        for (date, why) in [
            ("2013-02-29", "day 29 is not in month 2"),
            ("2100-02-29", "day 29 is not in month 2"),
            ("2012-13-01", "month 13"),
            ("2012/03/01", "YYYY-MM-DD"),
            ("2012-03-x", "day `x` is not a number"),
            (
                "9223372036854775807-01-01",
                "year 9223372036854775807 is not 1 to 9999",
            ),
        ] {
            let e = weekday(date).unwrap_err();
            assert!(e.contains(why), "{date}: {e}");
        }
        // The loader names the data set and the setting.
        let mut s = DataSpec::builtin("metr-la-week", &crate::data::bundled_data_dir()).unwrap();
        assert_eq!(s.start.as_deref(), Some("2012-03-01"));
        s.start = Some("2012-02-30".into());
        let e = load(&s).unwrap_err().to_string();
        assert!(
            e.contains("metr-la-week") && e.contains("start `2012-02-30`"),
            "{e}"
        );
    }

    #[test]
    fn real_metr_la_week_tgcn() {
        let (s, g) = load_tgcn(
            &bundled("METR-LA/T-GCN_Los-loop/los_speed.csv"),
            &bundled("METR-LA/T-GCN_Los-loop/los_adj.csv"),
        )
        .unwrap();
        assert_eq!((s.t, s.n, s.f), (2016, 207, 1));
        assert_eq!(s.values.len(), 2016 * 207);
        assert_eq!(s.get(0, 0, 0), Some(64.375));
        assert_eq!(s.get(1, 0, 0), Some(62.666_668));
        assert_eq!(g.n, 207);
        assert_eq!(g.weight(0, 0), Some(1.0));
        assert_eq!(g.weight(0, 13), Some(0.260_935_93));
        let ids = g.node_ids.unwrap();
        assert_eq!(ids[0], "773869");
        assert_eq!(ids.len(), 207);
    }

    /// `(sum, sum(i * v[i]) / len)` in f64: catches any misplaced byte.
    fn checksums(v: &[f32]) -> (f64, f64) {
        let sum = v.iter().map(|x| f64::from(*x)).sum();
        let m = v
            .iter()
            .enumerate()
            .map(|(i, x)| i as f64 * f64::from(*x))
            .sum::<f64>()
            / v.len() as f64;
        (sum, m)
    }

    #[test]
    fn real_dcrnn_pickles() {
        let g = read_dcrnn_adj(&bundled("METR-LA/adj_mx.pkl")).unwrap();
        assert_eq!(g.n, 207);
        let ids = g.node_ids.as_ref().unwrap();
        assert_eq!(
            (ids.len(), ids[0].as_str(), ids[2].as_str()),
            (207, "773869", "767542")
        );
        // Values checked against python's pickle (latin1) decoding of the file.
        assert_eq!(g.weight(0, 0), Some(1.0));
        assert_eq!(g.weight(0, 1), Some(0.0));
        assert_eq!(g.weight(0, 13), Some(0.222_346_92));
        assert_eq!(g.weight(0, 37), Some(0.508_846_5));
        assert_eq!(g.weight(1, 2), Some(0.390_955_4));
        assert!((0..207).all(|i| g.weight(i, i) == Some(1.0)));
        assert_eq!(g.adj.iter().filter(|v| **v != 0.0).count(), 1722);
        // Whole-matrix checksums from python: sum(v) and sum(i * v[i]) / len.
        let (sum, moment) = checksums(&g.adj);
        assert!((sum - 814.581_739_597).abs() < 1e-6, "{sum}");
        assert!((moment - 405.656_821_092_6).abs() < 1e-6, "{moment}");
        // The sensor order matches graph_sensor_ids.txt.
        let txt = read_id_map(&bundled("METR-LA/graph_sensor_ids.txt")).unwrap();
        assert_eq!(&txt, ids);

        let bay = read_dcrnn_adj(&bundled("PEMS-BAY/adj_mx_bay.pkl")).unwrap();
        assert_eq!(bay.n, 325);
        assert_eq!(bay.node_ids.as_ref().unwrap()[0], "400001");
        assert_eq!(bay.adj.iter().filter(|v| **v != 0.0).count(), 2694);
        let (sum, moment) = checksums(&bay.adj);
        assert!((sum - 1_654.746_996_276).abs() < 1e-6, "{sum}");
        assert!((moment - 858.714_399_971_9).abs() < 1e-6, "{moment}");
        assert!((0..325).all(|i| bay.weight(i, i) == Some(1.0)));
    }

    #[test]
    fn bay_distances_reproduce_dcrnn_adjacency() {
        // DCRNN built adj_mx_bay.pkl from distances_bay_2017.csv with the
        // directed Gaussian kernel, sigma = std, threshold 0.1: ours must agree.
        let bay = read_dcrnn_adj(&bundled("PEMS-BAY/adj_mx_bay.pkl")).unwrap();
        let ids = bay.node_ids.clone().unwrap();
        let edges =
            read_distance_csv(&bundled("PEMS-BAY/distances_bay_2017.csv"), Some(&ids)).unwrap();
        assert_eq!(edges.len(), 8358);
        let adj = gaussian_kernel(&edges, 325, None, 0.1, false);
        let worst = adj
            .iter()
            .zip(&bay.adj)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-4, "max abs difference {worst}");
        // The loader's symmetric version contains every directed edge.
        let g = load_distance_graph(
            &bundled("PEMS-BAY/distances_bay_2017.csv"),
            325,
            Some(&ids),
            None,
            None,
        )
        .unwrap();
        assert!(g.adj.iter().zip(&adj).all(|(s, d)| *s >= *d));
        assert!((0..325).all(|i| (0..325).all(|j| g.adj[i * 325 + j] == g.adj[j * 325 + i])));
    }

    #[test]
    fn real_pems_distance_graphs() {
        for (rel, n, pairs) in [
            ("PEMS04/PEMS04.csv", 307, 340),
            ("PEMS08/PEMS08.csv", 170, 274),
        ] {
            let g = load_distance_graph(&bundled(rel), n, None, None, None).unwrap();
            assert_eq!(g.n, n);
            assert_eq!(g.adj.len(), n * n);
            let nz = g.adj.iter().filter(|v| **v > 0.0).count();
            // Undirected: both directions of (at most) every listed pair.
            assert!(nz > 0 && nz <= 2 * pairs, "{rel}: {nz}");
            assert!((0..n).all(|i| (0..n).all(|j| g.adj[i * n + j] == g.adj[j * n + i])));
            assert!((0..n).all(|i| g.adj[i * n + i] == 0.0));
        }
        // PEMS08: edge 9 -> 153 at distance 310.6.
        let g = load_distance_graph(&bundled("PEMS08/PEMS08.csv"), 170, None, None, None).unwrap();
        assert!(g.weight(9, 153).unwrap() > 0.1);
        // Too few nodes for the indices in the file.
        let e =
            load_distance_graph(&bundled("PEMS04/PEMS04.csv"), 100, None, None, None).unwrap_err();
        assert!(matches!(e, DataError::Shape { .. }) && e.to_string().contains("PEMS04.csv"));
        // PEMS03 uses station ids mapped through the .txt list.
        let ids = read_id_map(&bundled("PEMS03/PEMS03.txt")).unwrap();
        assert_eq!(ids.len(), 358);
        let g = load_distance_graph(&bundled("PEMS03/PEMS03.csv"), 358, Some(&ids), None, None)
            .unwrap();
        assert_eq!(g.n, 358);
        let i = ids.iter().position(|s| s == "317842").unwrap();
        let j = ids.iter().position(|s| s == "318711").unwrap();
        assert!(g.weight(i, j).unwrap() > 0.5 && g.weight(i, j) == g.weight(j, i));
        // Without the id map the station ids are not node indices.
        let e =
            load_distance_graph(&bundled("PEMS03/PEMS03.csv"), 358, None, None, None).unwrap_err();
        assert!(e.to_string().contains("id map"), "{e}");
        // PEMS07 has 883 nodes.
        assert_eq!(
            load_distance_graph(&bundled("PEMS07/PEMS07.csv"), 883, None, None, None)
                .unwrap()
                .n,
            883
        );
    }

    #[test]
    fn small_pems_npz_and_distance_csv() {
        let dir = tempfile::tempdir().unwrap();
        let (t, n, f) = (10, 3, 3);
        let data: Vec<f32> = (0..t * n * f).map(|i| i as f32 + 1.0).collect();
        let npz = dir.path().join("PEMS09.npz");
        write_npz(&npz, &[("data", &[t, n, f], &data)]).unwrap();
        let csv = dir.path().join("PEMS09.csv");
        std::fs::write(&csv, "from,to,cost\n0,1,100.0\n1,2,300.0\n1,2,300.0\n").unwrap();
        let raw = load(&spec(DataFormat::Pems, &npz, Some(&csv))).unwrap();
        assert_eq!((raw.signal.t, raw.signal.n, raw.signal.f), (t, n, f));
        assert_eq!(
            raw.signal.get(1, 2, 1),
            Some(((n + 2) * f + 1) as f32 + 1.0)
        );
        assert_eq!((raw.steps_per_day, raw.null_value), (288, Some(0.0)));
        // Distances 100 and 300 (dup collapsed): std 100 => w = e^-1, e^-9 dropped.
        let e1 = (-1f32).exp();
        assert_eq!(raw.graph.adj, vec![0., e1, 0., e1, 0., 0., 0., 0., 0.]);

        // With an id map (PEMS03 style) and an explicit sigma/threshold.
        let ids = dir.path().join("PEMS09.txt");
        std::fs::write(&ids, "500\n600\n700\n").unwrap();
        std::fs::write(
            &csv,
            "from,to,distance\r\r\n500,600,1.0\r\r\n600,700,3.0\r\r\n999,500,1.0\r\r\n",
        )
        .unwrap();
        let mut sp = spec(DataFormat::Pems, &npz, Some(&csv));
        sp.id_map = Some(ids.clone());
        sp.sigma = Some(3.0);
        sp.threshold = Some(0.0);
        let raw = load(&sp).unwrap();
        let w1 = (-1f32 / 9.0).exp();
        assert_eq!(raw.graph.adj, vec![0., w1, 0., w1, 0., e1, 0., e1, 0.]);
        assert_eq!(raw.graph.node_ids.as_ref().unwrap()[2], "700");

        // Id map length differs from the signal's node count.
        std::fs::write(&ids, "500\n600\n").unwrap();
        let e = load(&sp).unwrap_err();
        assert!(
            matches!(
                e,
                DataError::NodeMismatch {
                    signal_nodes: 3,
                    graph_nodes: 2,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("PEMS09.npz") && e.to_string().contains("PEMS09.txt"));

        // Node index beyond the signal's N.
        std::fs::write(&csv, "from,to,cost\n0,5,1.0\n").unwrap();
        let e = load(&spec(DataFormat::Pems, &npz, Some(&csv))).unwrap_err();
        assert!(
            matches!(
                e,
                DataError::NodeMismatch {
                    signal_nodes: 3,
                    graph_nodes: 6,
                    ..
                }
            ),
            "{e}"
        );

        // Malformed row: reported with its line number.
        std::fs::write(&csv, "from,to,cost\n0,1,1.0\n1,2,abc\n").unwrap();
        let e = load(&spec(DataFormat::Pems, &npz, Some(&csv))).unwrap_err();
        assert!(
            matches!(e, DataError::Format { .. }) && e.to_string().contains("line 3"),
            "{e}"
        );
        std::fs::write(&csv, "from,to,cost\n0,1\n").unwrap();
        let e = load(&spec(DataFormat::Pems, &npz, Some(&csv))).unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
    }

    #[test]
    fn pems_bad_signals() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("g.csv");
        std::fs::write(&csv, "from,to,cost\n0,1,1.0\n").unwrap();
        let npz = dir.path().join("s.npz");
        let sp = spec(DataFormat::Pems, &npz, Some(&csv));
        // Missing key.
        write_npz(&npz, &[("x", &[4, 2], &[1.0; 8])]).unwrap();
        let e = load(&sp).unwrap_err();
        assert!(
            matches!(&e, DataError::MissingKey { key, .. } if key == "data"),
            "{e}"
        );
        assert!(e.to_string().contains("s.npz"));
        // Wrong rank.
        write_npz(&npz, &[("data", &[2, 2, 1, 2], &[1.0; 8])]).unwrap();
        let e = load(&sp).unwrap_err();
        assert!(
            matches!(e, DataError::Shape { .. }) && e.to_string().contains("rank 4"),
            "{e}"
        );
        write_npz(&npz, &[("data", &[8], &[1.0; 8])]).unwrap();
        assert!(matches!(load(&sp).unwrap_err(), DataError::Shape { .. }));
        // Empty.
        write_npz(&npz, &[("data", &[0, 2, 1], &[])]).unwrap();
        assert!(matches!(load(&sp).unwrap_err(), DataError::Shape { .. }));
        // NaN at step 2, node 1, feature 0.
        let mut v = vec![1.0f32; 8];
        v[5] = f32::NAN;
        write_npz(&npz, &[("data", &[4, 2, 1], &v)]).unwrap();
        let e = load(&sp).unwrap_err();
        assert!(matches!(e, DataError::NonFinite { .. }), "{e}");
        let s = e.to_string();
        assert!(
            s.contains("s.npz") && s.contains("step 2, node 1, feature 0"),
            "{s}"
        );
        // Rank 2 is accepted as F = 1.
        write_npz(&npz, &[("data", &[4, 2], &[1.0; 8])]).unwrap();
        assert_eq!(load(&sp).unwrap().signal.f, 1);
        // Truncated npz.
        let bytes = std::fs::read(&npz).unwrap();
        std::fs::write(&npz, &bytes[..bytes.len() - 30]).unwrap();
        let e = load(&sp).unwrap_err();
        assert!(
            matches!(e, DataError::Truncated { .. }) && e.to_string().contains("s.npz"),
            "{e}"
        );
        // Missing graph in the spec is a Config error.
        let e = load(&spec(DataFormat::Pems, &npz, None)).unwrap_err();
        assert!(matches!(e, DataError::Config { .. }));
    }

    #[test]
    fn small_dcrnn_npz_and_pickle() {
        let dir = tempfile::tempdir().unwrap();
        let npz = dir.path().join("metr-la.npz");
        let data: Vec<f32> = (0..12).map(|i| i as f32).collect();
        write_npz(
            &npz,
            &[
                ("data", &[4, 3], &data),
                ("timestamps", &[4], &[0.0, 1.0, 2.0, 3.0]),
            ],
        )
        .unwrap();
        let pkl = dir.path().join("adj_mx.pkl");
        let adj = [1.0, 0.5, 0.0, 0.0, 1.0, 0.25, 0.0, 0.0, 1.0];
        std::fs::write(&pkl, PickleWriter::dcrnn(&["11", "22", "33"], &adj, true)).unwrap();
        let raw = load(&spec(DataFormat::Dcrnn, &npz, Some(&pkl))).unwrap();
        assert_eq!((raw.signal.t, raw.signal.n, raw.signal.f), (4, 3, 1));
        assert_eq!(raw.signal.values, data);
        assert_eq!(raw.graph.adj, adj.to_vec());
        assert_eq!(raw.graph.node_ids.as_ref().unwrap()[1], "22");
        assert_eq!(raw.graph_path, pkl);

        // Node count mismatch between table and pickle.
        std::fs::write(
            &pkl,
            PickleWriter::dcrnn(&["11", "22"], &[1.0, 0.0, 0.0, 1.0], false),
        )
        .unwrap();
        let e = load(&spec(DataFormat::Dcrnn, &npz, Some(&pkl))).unwrap_err();
        assert!(
            matches!(
                e,
                DataError::NodeMismatch {
                    signal_nodes: 3,
                    graph_nodes: 2,
                    ..
                }
            ),
            "{e}"
        );
        let s = e.to_string();
        assert!(s.contains("metr-la.npz") && s.contains("adj_mx.pkl"), "{s}");

        // Truncated pickle.
        let b = PickleWriter::dcrnn(&["11", "22", "33"], &adj, true);
        std::fs::write(&pkl, &b[..b.len() - 10]).unwrap();
        let e = load(&spec(DataFormat::Dcrnn, &npz, Some(&pkl))).unwrap_err();
        assert!(
            matches!(e, DataError::Truncated { .. }) && e.to_string().contains("adj_mx.pkl"),
            "{e}"
        );

        // Timestamps that do not match the table.
        std::fs::write(&pkl, PickleWriter::dcrnn(&["11", "22", "33"], &adj, true)).unwrap();
        write_npz(
            &npz,
            &[
                ("data", &[4, 3], &data),
                ("timestamps", &[3], &[0.0, 1.0, 2.0]),
            ],
        )
        .unwrap();
        let e = load(&spec(DataFormat::Dcrnn, &npz, Some(&pkl))).unwrap_err();
        assert!(matches!(e, DataError::Shape { .. }), "{e}");
    }

    /// A DCRNN npz's nanosecond timestamps (`df.index.values.astype('int64')`, or the
    /// datetimes themselves) give the calendar where they start at midnight and step evenly;
    /// a `start` that disagrees is refused by name.
    #[test]
    fn dcrnn_timestamps_give_the_calendar() {
        use crate::data::npy::{add_npz_entry, npy_i64_bytes};
        let dir = tempfile::tempdir().unwrap();
        let npz = dir.path().join("metr-la.npz");
        let pkl = dir.path().join("adj_mx.pkl");
        let adj = [1.0, 0.5, 0.0, 0.0, 1.0, 0.25, 0.0, 0.0, 1.0];
        std::fs::write(&pkl, PickleWriter::dcrnn(&["11", "22", "33"], &adj, true)).unwrap();
        let data: Vec<f32> = (0..12).map(|i| i as f32).collect();
        // 2012-03-01 00:00 UTC, a Thursday, in 5-minute steps.
        let midnight = 1_330_560_000i64 * 1_000_000_000;
        let five = 300 * 1_000_000_000;
        let write = |descr: &str, ns: &[i64]| {
            write_npz(&npz, &[("data", &[4, 3], &data)]).unwrap();
            add_npz_entry(&npz, "timestamps", &npy_i64_bytes(descr, ns));
        };
        let even: Vec<i64> = (0..4).map(|k| midnight + k * five).collect();
        let mut s = spec(DataFormat::Dcrnn, &npz, Some(&pkl));
        for descr in ["<i8", "<M8[ns]"] {
            write(descr, &even);
            assert_eq!(load(&s).unwrap().first_weekday, Some(3), "{descr}");
        }
        // A day later is a Friday; a start that agrees is accepted, one that does not is not.
        let friday: Vec<i64> = even.iter().map(|t| t + 288 * five).collect();
        write("<i8", &friday);
        assert_eq!(load(&s).unwrap().first_weekday, Some(4));
        s.start = Some("2012-03-02".into());
        assert_eq!(load(&s).unwrap().first_weekday, Some(4));
        s.start = Some("2012-03-01".into());
        let e = load(&s).unwrap_err().to_string();
        assert!(
            e.contains("start `2012-03-01` is a Thursday") && e.contains("metr-la.npz is a Friday"),
            "{e}"
        );
        s.start = None;
        // Not at midnight, or not evenly one day / 288 apart: no calendar (the time of day
        // and the day types count steps from midnight).
        write("<i8", &even.iter().map(|t| t + five).collect::<Vec<_>>());
        assert_eq!(load(&s).unwrap().first_weekday, None);
        let mut gap = even.clone();
        gap[3] += five;
        write("<i8", &gap);
        assert_eq!(load(&s).unwrap().first_weekday, None);
        // Damaged values do not overflow.
        write("<i8", &[0, i64::MIN, i64::MAX, 0]);
        assert_eq!(load(&s).unwrap().first_weekday, None);
        // The given start still gives it.
        s.start = Some("2012-03-01".into());
        assert_eq!(load(&s).unwrap().first_weekday, Some(3));
        // Timestamps of the wrong length are refused as before.
        s.start = None;
        write("<i8", &even[..3]);
        let e = load(&s).unwrap_err();
        assert!(matches!(e, DataError::Shape { .. }), "{e}");
    }

    #[test]
    fn small_tgcn_pair() {
        let dir = tempfile::tempdir().unwrap();
        let sp = dir.path().join("x_speed.csv");
        let ap = dir.path().join("x_adj.csv");
        std::fs::write(&sp, "a,b\n1,2\n3,4\n5,6\n").unwrap();
        std::fs::write(&ap, "1,0.5\n0.5,1\n").unwrap();
        let raw = load(&spec(DataFormat::Tgcn, &sp, Some(&ap))).unwrap();
        assert_eq!((raw.signal.t, raw.signal.n), (3, 2));
        assert_eq!(raw.signal.values, vec![1., 2., 3., 4., 5., 6.]);
        assert_eq!(raw.graph.node_ids, Some(vec!["a".into(), "b".into()]));
        // Non-square adjacency.
        std::fs::write(&ap, "1,0.5,0\n0.5,1,0\n").unwrap();
        let e = load(&spec(DataFormat::Tgcn, &sp, Some(&ap))).unwrap_err();
        assert!(
            matches!(e, DataError::Shape { .. }) && e.to_string().contains("x_adj.csv"),
            "{e}"
        );
        // Adjacency of a different size.
        std::fs::write(&ap, "1,0,0\n0,1,0\n0,0,1\n").unwrap();
        let e = load(&spec(DataFormat::Tgcn, &sp, Some(&ap))).unwrap_err();
        assert!(matches!(
            e,
            DataError::NodeMismatch {
                signal_nodes: 2,
                graph_nodes: 3,
                ..
            }
        ));
        // NaN in the adjacency and in the signal, ragged and non-numeric rows.
        std::fs::write(&ap, "1,NaN\n0.5,1\n").unwrap();
        let e = load(&spec(DataFormat::Tgcn, &sp, Some(&ap))).unwrap_err();
        assert!(
            matches!(e, DataError::NonFinite { .. }) && e.to_string().contains("row 0, col 1"),
            "{e}"
        );
        std::fs::write(&ap, "1,0.5\n0.5,1\n").unwrap();
        std::fs::write(&sp, "a,b\n1,2\n3,inf\n").unwrap();
        let e = load(&spec(DataFormat::Tgcn, &sp, Some(&ap))).unwrap_err();
        assert!(e.to_string().contains("step 1, sensor 1"), "{e}");
        std::fs::write(&sp, "a,b\n1,2\n3\n").unwrap();
        let e = load(&spec(DataFormat::Tgcn, &sp, Some(&ap))).unwrap_err();
        assert!(
            matches!(e, DataError::Format { .. }) && e.to_string().contains("line 3"),
            "{e}"
        );
        std::fs::write(&sp, "a,b\n1,x\n").unwrap();
        let e = load(&spec(DataFormat::Tgcn, &sp, Some(&ap))).unwrap_err();
        assert!(e.to_string().contains("line 2, column 2"), "{e}");
        std::fs::write(&sp, "a,b\n").unwrap();
        assert!(matches!(
            load(&spec(DataFormat::Tgcn, &sp, Some(&ap))).unwrap_err(),
            DataError::Shape { .. }
        ));
    }

    #[test]
    fn missing_file_is_io_error_naming_it() {
        let e = load(&spec(
            DataFormat::PygJson,
            Path::new("/nonexistent/x.json"),
            None,
        ))
        .unwrap_err();
        assert!(matches!(e, DataError::Io { .. }) && e.to_string().contains("/nonexistent/x.json"));
    }
}
