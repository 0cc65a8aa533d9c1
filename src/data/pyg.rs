//! PyTorch Geometric Temporal json data sets, in every layout its loaders
//! read: one static edge list (chickenpox, pedalme, windmill, wikimath, mtm),
//! per-step edge lists (england_covid's `edge_mapping`, twitter_tennis's step
//! objects) and networkx node-link (montevideo_bus). See [`load_pyg_json`].

use std::path::Path;

use serde_json::Value;

use super::{check_finite, DataError, Graph, Signal};

/// Weighted directed edges `(from, to, weight)` as listed.
type Edges = Vec<(usize, usize, f32)>;

/// One step's edges, with the json place they came from (for errors).
type StepEdges = (String, Edges);

fn json_keys(obj: &serde_json::Map<String, Value>) -> Vec<String> {
    let mut k: Vec<String> = obj.keys().cloned().collect();
    k.sort();
    k
}

/// A `[rows][cols]` numeric json matrix; `what` names it in errors.
fn json_matrix(path: &Path, v: &Value, what: &str) -> Result<(usize, usize, Vec<f32>), DataError> {
    let rows = v
        .as_array()
        .ok_or_else(|| DataError::format(path, format!("`{what}` is not an array")))?;
    let mut cols = None;
    let mut out = Vec::new();
    for (r, row) in rows.iter().enumerate() {
        let row = row.as_array().ok_or_else(|| {
            DataError::shape(
                path,
                format!("`{what}[{r}]` is not an array (expected [T][N])"),
            )
        })?;
        match cols {
            Some(c) if c != row.len() => {
                return Err(DataError::shape(
                    path,
                    format!("`{what}[{r}]` has {} values, expected {c}", row.len()),
                ))
            }
            _ => cols = Some(row.len()),
        }
        for (c, x) in row.iter().enumerate() {
            let x = x.as_f64().ok_or_else(|| {
                DataError::format(path, format!("`{what}[{r}][{c}]` is not a number: {x}"))
            })?;
            out.push(x as f32);
        }
    }
    Ok((rows.len(), cols.unwrap_or(0), out))
}

/// Loads a PyTorch-Geometric-Temporal json data set, in any of the layouts
/// its loaders read, into the `[T, N, F]` signal and one `[N, N]` adjacency:
///
/// - **static graph** (chickenpox, pedalme, windmill, wikimath, mtm): `edges`
///   `[[i, j], ...]`, optional `weights` (default 1), and node values `[T][N]`
///   under `FX`, `X`, `block` or `y`, or per-step objects `"0"`, `"1"`, ...
///   with a `y` list plus `time_periods`, or (mtm) per-node objects `"0"`,
///   `"1"`, ... mapping each frame number to a value, a `"(x, y, z)"` string
///   or a list (one feature per component);
/// - **per-step edges** (england_covid): `edge_mapping` with `edge_index`
///   (`{"<step>": [[i, j], ...]}`) and `edge_weight` (`{"<step>": [w, ...]}`),
///   node values `y` `[T][N]` and `time_periods`; twitter_tennis gives the
///   same per step inside the step objects (`"<step>": {"edges", "weights",
///   "y"}`);
/// - **networkx node-link** (montevideo_bus): `nodes` (objects with `id` and
///   the node's series `y`, or `X.y`) and `links` (`source`, `target`
///   as node ids, optional `weight`); `"directed": false` lists each edge once
///   and is read as symmetric.
///
/// A time-varying graph becomes one adjacency, the mean over the steps that
/// list a graph of each step's weight (an edge missing from a step counts 0
/// there): the operators take one static adjacency, and the mean keeps the
/// weight scale of a single step. Within one step (or one static list) an
/// edge listed twice keeps its last weight, as `edges`/`weights` always did.
/// Values are read as given: the PyG loaders' own standardization and lag
/// windows are left to `prepare`.
pub fn load_pyg_json(path: &Path) -> Result<(Signal, Graph), DataError> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
    let root: Value = serde_json::from_str(&text)
        .map_err(|e| DataError::format(path, format!("invalid json: {e}")))?;
    let obj = root
        .as_object()
        .ok_or_else(|| DataError::format(path, "top level is not a json object"))?;
    if obj.contains_key("nodes") || obj.contains_key("links") {
        return load_node_link(path, obj);
    }

    let signal = pyg_signal(path, obj)?;
    let n = signal.n;
    let adj = if let Some(edges) = obj.get("edges") {
        let edges = json_weighted_edges(path, edges, obj.get("weights"), "edges", "weights")?;
        if let Some(max) = edges.iter().map(|e| e.0.max(e.1)).max() {
            if max >= n {
                return Err(DataError::NodeMismatch {
                    signal: path.to_path_buf(),
                    graph: path.to_path_buf(),
                    signal_nodes: n,
                    graph_nodes: max + 1,
                });
            }
        }
        mean_adjacency(path, &[("edges".to_string(), edges)], n)?
    } else if let Some(mapping) = obj.get("edge_mapping") {
        mean_adjacency(path, &edge_mapping_steps(path, mapping, signal.t)?, n)?
    } else if obj.get("time_periods").is_some()
        && step_object(obj, 0).is_some_and(|s| s.contains_key("edges"))
    {
        let mut steps = Vec::with_capacity(signal.t);
        for s in 0..signal.t {
            let step = step_object(obj, s).ok_or_else(|| missing(path, obj, &format!("{s}")))?;
            let edges = step
                .get("edges")
                .ok_or_else(|| missing(path, obj, &format!("{s}.edges")))?;
            let what = format!("{s}.edges");
            let edges = json_weighted_edges(
                path,
                edges,
                step.get("weights"),
                &what,
                &format!("{s}.weights"),
            )?;
            steps.push((what, edges));
        }
        mean_adjacency(path, &steps, n)?
    } else {
        return Err(missing(path, obj, "edges | edge_mapping | <step>.edges"));
    };
    let node_ids = json_node_ids(path, obj.get("node_ids"), n)?;
    Ok((signal, Graph { n, adj, node_ids }))
}

fn missing(path: &Path, obj: &serde_json::Map<String, Value>, key: &str) -> DataError {
    DataError::MissingKey {
        path: path.to_path_buf(),
        key: key.into(),
        // Time-keyed files have thousands of keys: a few say enough.
        present: json_keys(obj).into_iter().take(20).collect(),
    }
}

/// The per-step object `"<s>"` of a time-keyed file, if there is one.
fn step_object(
    obj: &serde_json::Map<String, Value>,
    s: usize,
) -> Option<&serde_json::Map<String, Value>> {
    obj.get(&s.to_string()).and_then(Value::as_object)
}

/// `time_periods` as a count.
fn time_periods(
    path: &Path,
    obj: &serde_json::Map<String, Value>,
) -> Result<Option<usize>, DataError> {
    obj.get("time_periods")
        .map(|tp| {
            tp.as_u64()
                .and_then(|t| usize::try_from(t).ok())
                .ok_or_else(|| {
                    DataError::format(path, format!("`time_periods` is not a count: {tp}"))
                })
        })
        .transpose()
}

/// The node values of a non-node-link file, as `[T, N, F]`.
fn pyg_signal(path: &Path, obj: &serde_json::Map<String, Value>) -> Result<Signal, DataError> {
    let periods = time_periods(path, obj)?;
    let (t, n, f, values) = if let Some((key, v)) = ["FX", "X", "block", "y"]
        .iter()
        .find_map(|k| obj.get(*k).map(|v| (*k, v)))
    {
        let (t, n, values) = json_matrix(path, v, key)?;
        // england_covid states its length twice (its loader indexes `y` by
        // `time_periods`); a file where they differ is cut or mis-assembled,
        // and guessing which to trust would hide that. The other matrix
        // layouts' loaders never read `time_periods`, so neither do we.
        if let Some(tp) = periods.filter(|tp| key == "y" && *tp != t) {
            return Err(DataError::shape(
                path,
                format!("`time_periods` is {tp} but `{key}` has {t} rows"),
            ));
        }
        (t, n, 1, values)
    } else if let Some(t) = periods {
        let mut rows = Vec::with_capacity(t);
        for s in 0..t {
            let y = step_object(obj, s)
                .and_then(|o| o.get("y"))
                .ok_or_else(|| missing(path, obj, &format!("{s}.y")))?;
            rows.push(y.clone());
        }
        let (t, n, values) = json_matrix(path, &Value::Array(rows), "<step>.y")?;
        (t, n, 1, values)
    } else if obj.get("0").is_some_and(Value::is_object) {
        node_keyed_signal(path, obj)?
    } else {
        return Err(DataError::MissingKey {
            path: path.to_path_buf(),
            key: "FX | X | block | y | time_periods | nodes + links | \"0\" (per-node frames)"
                .into(),
            present: json_keys(obj).into_iter().take(20).collect(),
        });
    };
    if t == 0 || n == 0 || f == 0 {
        return Err(DataError::shape(
            path,
            format!("node values are empty: {t} steps x {n} nodes"),
        ));
    }
    check_finite(path, &values, &[t, n, f], &["step", "node", "feature"])?;
    Ok(Signal { values, t, n, f })
}

/// mtm's layout: top-level `"0"`, `"1"`, ... are the nodes (hand joints),
/// each mapping a frame number to a number, a list or an `"(x, y, z)"`
/// string; the components become the features.
fn node_keyed_signal(
    path: &Path,
    obj: &serde_json::Map<String, Value>,
) -> Result<(usize, usize, usize, Vec<f32>), DataError> {
    let mut nodes = Vec::new();
    while let Some(frames) = obj.get(&nodes.len().to_string()).and_then(Value::as_object) {
        nodes.push(frames);
    }
    let n = nodes.len();
    let mut t = None;
    let mut f = None;
    let mut per_node: Vec<Vec<f32>> = Vec::with_capacity(n);
    for (node, frames) in nodes.iter().enumerate() {
        // serde_json sorts keys as text ("10" before "2"): order by number.
        // Non-numeric keys are refused: their order in the file is lost.
        let mut keyed = frames
            .iter()
            .map(|(k, v)| {
                k.parse::<f64>().map(|num| (num, k, v)).map_err(|_| {
                    DataError::format(
                        path,
                        format!("`{node}.{k}`: frame keys must be step numbers"),
                    )
                })
            })
            .collect::<Result<Vec<_>, DataError>>()?;
        keyed.sort_by(|a, b| a.0.total_cmp(&b.0));
        match t {
            Some(t) if t != keyed.len() => {
                return Err(DataError::shape(
                    path,
                    format!("node `{node}` has {} frames, node `0` has {t}", keyed.len()),
                ))
            }
            _ => t = Some(keyed.len()),
        }
        let mut values = Vec::new();
        for (_, k, v) in keyed {
            let what = format!("{node}.{k}");
            let comps = frame_components(path, v, &what)?;
            match f {
                Some(f) if f != comps.len() => {
                    return Err(DataError::shape(
                        path,
                        format!("`{what}` has {} components, expected {f}", comps.len()),
                    ))
                }
                _ => f = Some(comps.len()),
            }
            values.extend(comps);
        }
        per_node.push(values);
    }
    let (t, f) = (t.unwrap_or(0), f.unwrap_or(0));
    // Node-major as read; the signal is step-major.
    let mut values = Vec::with_capacity(t * n * f);
    for s in 0..t {
        for node in &per_node {
            values.extend_from_slice(&node[s * f..(s + 1) * f]);
        }
    }
    Ok((t, n, f, values))
}

/// One frame's value: a number, a list of numbers or a `"(x, y, z)"` string.
fn frame_components(path: &Path, v: &Value, what: &str) -> Result<Vec<f32>, DataError> {
    let bad = || {
        DataError::format(
            path,
            format!("`{what}` is not a number, a list of numbers or an \"(x, y, z)\" string: {v}"),
        )
    };
    match v {
        Value::Number(x) => Ok(vec![x.as_f64().ok_or_else(bad)? as f32]),
        Value::Array(a) => a
            .iter()
            .map(|x| x.as_f64().map(|x| x as f32).ok_or_else(bad))
            .collect(),
        Value::String(s) => s
            .trim()
            .trim_start_matches('(')
            .trim_end_matches(')')
            .split(',')
            .map(|c| c.trim().parse::<f32>().map_err(|_| bad()))
            .collect(),
        _ => Err(bad()),
    }
}

/// england_covid's `edge_mapping`: `edge_index` and `edge_weight`, each keyed
/// by step. Steps are returned in step order, labelled for errors.
fn edge_mapping_steps(path: &Path, mapping: &Value, t: usize) -> Result<Vec<StepEdges>, DataError> {
    let mapping = mapping
        .as_object()
        .ok_or_else(|| DataError::format(path, "`edge_mapping` is not an object"))?;
    let index = mapping
        .get("edge_index")
        .ok_or_else(|| missing(path, mapping, "edge_mapping.edge_index"))?
        .as_object()
        .ok_or_else(|| {
            DataError::format(
                path,
                "`edge_mapping.edge_index` is not an object keyed by step",
            )
        })?;
    let weights = match mapping.get("edge_weight") {
        None | Some(Value::Null) => None,
        Some(w) => Some(w.as_object().ok_or_else(|| {
            DataError::format(
                path,
                "`edge_mapping.edge_weight` is not an object keyed by step",
            )
        })?),
    };
    if let Some(w) = weights {
        if let Some(k) = w.keys().find(|k| !index.contains_key(*k)) {
            return Err(DataError::shape(
                path,
                format!("`edge_mapping.edge_weight` has step \"{k}\" that `edge_mapping.edge_index` lacks"),
            ));
        }
    }
    let mut steps = Vec::with_capacity(index.len());
    for (key, edges) in index {
        let step = key.parse::<usize>().map_err(|_| {
            DataError::format(
                path,
                format!("`edge_mapping.edge_index` key \"{key}\" is not a step number"),
            )
        })?;
        if step >= t {
            return Err(DataError::shape(
                path,
                format!("`edge_mapping.edge_index` has step {step} but the signal has {t} steps"),
            ));
        }
        let what = format!("edge_mapping.edge_index.\"{key}\"");
        let w_what = format!("edge_mapping.edge_weight.\"{key}\"");
        let w = match weights {
            Some(w) => Some(w.get(key).ok_or_else(|| {
                DataError::shape(path, format!("`{w_what}` is missing (the step has edges)"))
            })?),
            None => None,
        };
        steps.push((
            step,
            what.clone(),
            json_weighted_edges(path, edges, w, &what, &w_what)?,
        ));
    }
    if steps.is_empty() {
        return Err(DataError::shape(
            path,
            "`edge_mapping.edge_index` lists no step",
        ));
    }
    steps.sort_by_key(|s| s.0);
    Ok(steps.into_iter().map(|(_, what, e)| (what, e)).collect())
}

/// A json list of `[i, j]` node-index pairs with an optional parallel list
/// of weights (default 1); `what`/`w_what` name the lists in errors.
fn json_weighted_edges(
    path: &Path,
    edges: &Value,
    weights: Option<&Value>,
    what: &str,
    w_what: &str,
) -> Result<Edges, DataError> {
    let edges = edges
        .as_array()
        .ok_or_else(|| DataError::format(path, format!("`{what}` is not an array")))?;
    let weights: Option<Vec<f32>> = match weights {
        None | Some(Value::Null) => None,
        Some(w) => {
            let w = w
                .as_array()
                .ok_or_else(|| DataError::format(path, format!("`{w_what}` is not an array")))?;
            let w = w
                .iter()
                .enumerate()
                .map(|(k, x)| {
                    x.as_f64().map(|x| x as f32).ok_or_else(|| {
                        DataError::format(path, format!("`{w_what}[{k}]` is not a number: {x}"))
                    })
                })
                .collect::<Result<Vec<f32>, DataError>>()?;
            if w.len() != edges.len() {
                return Err(DataError::shape(
                    path,
                    format!(
                        "{} weights in `{w_what}` for {} edges in `{what}`",
                        w.len(),
                        edges.len()
                    ),
                ));
            }
            Some(w)
        }
    };
    edges
        .iter()
        .enumerate()
        .map(|(k, e)| {
            let pair = e.as_array().filter(|p| p.len() == 2).and_then(|p| {
                let i = usize::try_from(p[0].as_u64()?).ok()?;
                let j = usize::try_from(p[1].as_u64()?).ok()?;
                Some((i, j))
            });
            let (i, j) = pair.ok_or_else(|| {
                DataError::format(
                    path,
                    format!("`{what}[{k}]` is not a pair of node indices: {e}"),
                )
            })?;
            let w = weights
                .as_ref()
                .and_then(|w| w.get(k).copied())
                .unwrap_or(1.0);
            Ok((i, j, w))
        })
        .collect()
}

/// The mean over `steps` of each step's `[n, n]` adjacency (one step: that
/// step's). An edge listed twice in one step keeps its last weight.
fn mean_adjacency(path: &Path, steps: &[StepEdges], n: usize) -> Result<Vec<f32>, DataError> {
    let mut adj = vec![0.0f64; n * n];
    let mut step_adj: std::collections::HashMap<(usize, usize), f32> =
        std::collections::HashMap::new();
    for (what, edges) in steps {
        step_adj.clear();
        for (k, &(i, j, w)) in edges.iter().enumerate() {
            if i >= n || j >= n {
                return Err(DataError::shape(
                    path,
                    format!("`{what}[{k}]` = [{i}, {j}] names a node >= the node count {n}"),
                ));
            }
            step_adj.insert((i, j), w);
        }
        for (&(i, j), &w) in &step_adj {
            // f64 sums: hundreds of steps of small weights stay exact enough.
            adj[i * n + j] += f64::from(w);
        }
    }
    let count = steps.len().max(1) as f64;
    let adj: Vec<f32> = adj.into_iter().map(|w| (w / count) as f32).collect();
    check_finite(path, &adj, &[n, n], &["row", "col"])?;
    Ok(adj)
}

/// A networkx node-link file (`nodes`, `links`), as montevideo_bus ships.
fn load_node_link(
    path: &Path,
    obj: &serde_json::Map<String, Value>,
) -> Result<(Signal, Graph), DataError> {
    let nodes = obj
        .get("nodes")
        .ok_or_else(|| missing(path, obj, "nodes"))?
        .as_array()
        .ok_or_else(|| DataError::format(path, "`nodes` is not an array"))?;
    let links = obj
        .get("links")
        .ok_or_else(|| missing(path, obj, "links"))?
        .as_array()
        .ok_or_else(|| DataError::format(path, "`links` is not an array"))?;
    let n = nodes.len();
    if n == 0 {
        return Err(DataError::shape(path, "`nodes` is empty"));
    }
    // networkx writes each node's name under `id`; links name nodes by it.
    // Without ids, links name nodes by their position in `nodes`.
    let has_ids = nodes.iter().any(|v| v.get("id").is_some());
    let mut ids = Vec::with_capacity(n);
    let mut index = std::collections::HashMap::with_capacity(n);
    let mut series = Vec::with_capacity(n);
    for (k, node) in nodes.iter().enumerate() {
        let node = node
            .as_object()
            .ok_or_else(|| DataError::format(path, format!("`nodes[{k}]` is not an object")))?;
        let id = if has_ids {
            let id = node.get("id").ok_or_else(|| {
                DataError::format(path, format!("`nodes[{k}]` has no `id` (other nodes do)"))
            })?;
            node_id_text(id)
        } else {
            k.to_string()
        };
        if index.insert(id.clone(), k).is_some() {
            return Err(DataError::format(
                path,
                format!("`nodes[{k}]`: node id `{id}` is listed twice"),
            ));
        }
        ids.push(id);
        let (y, what) = match (node.get("y"), node.get("X").and_then(|x| x.get("y"))) {
            (Some(y), _) => (y, format!("nodes[{k}].y")),
            (None, Some(y)) => (y, format!("nodes[{k}].X.y")),
            (None, None) => {
                return Err(DataError::MissingKey {
                    path: path.to_path_buf(),
                    key: format!("nodes[{k}].y | nodes[{k}].X.y"),
                    present: json_keys(node),
                })
            }
        };
        let y = y
            .as_array()
            .ok_or_else(|| DataError::format(path, format!("`{what}` is not an array")))?;
        series.push((what, y));
    }
    let t = series.first().map_or(0, |(_, y)| y.len());
    if t == 0 {
        return Err(DataError::shape(path, "node series are empty"));
    }
    let mut values = vec![0.0f32; t * n];
    for (node, (what, y)) in series.iter().enumerate() {
        if y.len() != t {
            return Err(DataError::shape(
                path,
                format!("`{what}` has {} values, the first node has {t}", y.len()),
            ));
        }
        for (s, v) in y.iter().enumerate() {
            values[s * n + node] = v.as_f64().ok_or_else(|| {
                DataError::format(path, format!("`{what}[{s}]` is not a number: {v}"))
            })? as f32;
        }
    }
    check_finite(path, &values, &[t, n], &["step", "node"])?;

    let directed = obj.get("directed").and_then(Value::as_bool).unwrap_or(true);
    let mut edges = Vec::with_capacity(links.len() * if directed { 1 } else { 2 });
    for (k, link) in links.iter().enumerate() {
        let end = |key: &str| -> Result<usize, DataError> {
            let v = link.get(key).ok_or_else(|| {
                DataError::format(path, format!("`links[{k}]` has no `{key}`: {link}"))
            })?;
            index.get(&node_id_text(v)).copied().ok_or_else(|| {
                DataError::format(
                    path,
                    format!("`links[{k}].{key}` = {v} is not a node in `nodes`"),
                )
            })
        };
        let (i, j) = (end("source")?, end("target")?);
        let w = match link.get("weight") {
            None | Some(Value::Null) => 1.0,
            Some(w) => w.as_f64().ok_or_else(|| {
                DataError::format(path, format!("`links[{k}].weight` is not a number: {w}"))
            })? as f32,
        };
        edges.push((i, j, w));
        if !directed && i != j {
            edges.push((j, i, w));
        }
    }
    let adj = mean_adjacency(path, &[("links".to_string(), edges)], n)?;
    Ok((
        Signal { values, t, n, f: 1 },
        Graph {
            n,
            adj,
            node_ids: has_ids.then_some(ids),
        },
    ))
}

/// A node id as text: strings as they are, numbers as written.
fn node_id_text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}

/// `node_ids` as a `{name: index}` object (chickenpox) or a list of names.
fn json_node_ids(
    path: &Path,
    v: Option<&Value>,
    n: usize,
) -> Result<Option<Vec<String>>, DataError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => {
            let mut ids: Vec<Option<String>> = vec![None; n];
            for (name, idx) in m {
                let i = idx
                    .as_u64()
                    .and_then(|i| usize::try_from(i).ok())
                    .filter(|i| *i < n)
                    .ok_or_else(|| {
                        DataError::shape(
                            path,
                            format!("node_ids[`{name}`] = {idx} is not an index below {n}"),
                        )
                    })?;
                ids[i] = Some(name.clone());
            }
            let ids: Option<Vec<String>> = ids.into_iter().collect();
            ids.map(Some).ok_or_else(|| {
                DataError::shape(path, format!("node_ids does not name all {n} nodes"))
            })
        }
        Some(Value::Array(a)) => {
            if a.len() != n {
                return Err(DataError::shape(
                    path,
                    format!("{} node_ids for {n} nodes", a.len()),
                ));
            }
            Ok(Some(
                a.iter()
                    .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
                    .collect(),
            ))
        }
        Some(other) => Err(DataError::format(
            path,
            format!("node_ids is neither an object nor a list: {other}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{load, DataSpec};
    use std::path::PathBuf;

    fn bundled(rel: &str) -> PathBuf {
        crate::data::bundled_data_dir().join(rel)
    }

    #[test]
    fn real_pyg_json() {
        let (s, g) = load_pyg_json(&bundled("Chickenpox-Hungary/chickenpox.json")).unwrap();
        assert_eq!((s.t, s.n, s.f), (521, 20, 1));
        assert!((s.values[0] - (-0.001_081_357_2)).abs() < 1e-9);
        assert!((s.values[521 * 20 - 1] - 1.003_758_8).abs() < 1e-6);
        assert_eq!(g.n, 20);
        assert_eq!(g.adj.iter().filter(|v| **v != 0.0).count(), 102);
        assert_eq!(g.weight(0, 10), Some(1.0));
        let ids = g.node_ids.unwrap();
        assert_eq!((ids[0].as_str(), ids[4].as_str()), ("BACS", "BUDAPEST"));

        let (s, g) = load_pyg_json(&bundled("PedalMe-London/pedalme_london.json")).unwrap();
        assert_eq!((s.t, s.n, s.f), (35, 15, 1));
        assert_eq!(g.n, 15);
        assert_eq!(g.adj.iter().filter(|v| **v != 0.0).count(), 225);
        assert!((g.weight(0, 1).unwrap() - 0.425_458_96).abs() < 1e-7);
        assert!(g.node_ids.is_none());
    }

    #[test]
    fn small_pyg_json() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("toy.json");
        std::fs::write(
            &p,
            r#"{"edges": [[0, 1], [1, 2]], "weights": [0.5, 2.0], "X": [[1, 2, 3], [4, 5, 6]]}"#,
        )
        .unwrap();
        let raw = load(&DataSpec::from_path(&p).unwrap()).unwrap();
        assert_eq!((raw.signal.t, raw.signal.n, raw.signal.f), (2, 3, 1));
        assert_eq!(raw.signal.values, vec![1., 2., 3., 4., 5., 6.]);
        assert_eq!(raw.graph.adj, vec![0., 0.5, 0., 0., 0., 2., 0., 0., 0.]);
        assert_eq!((raw.null_value, raw.steps_per_day), (None, 52));
        // Time-keyed layout, default weights.
        std::fs::write(
            &p,
            r#"{"edges": [[0, 1]], "time_periods": 2, "0": {"y": [1, 2]}, "1": {"y": [3, 4]}}"#,
        )
        .unwrap();
        let (s, g) = load_pyg_json(&p).unwrap();
        assert_eq!((s.t, s.n, s.values.clone()), (2, 2, vec![1., 2., 3., 4.]));
        assert_eq!(g.adj, vec![0., 1., 0., 0.]);
        // Errors: edge beyond N, missing values, ragged rows, bad json.
        std::fs::write(&p, r#"{"edges": [[0, 5]], "FX": [[1, 2]]}"#).unwrap();
        assert!(matches!(
            load_pyg_json(&p).unwrap_err(),
            DataError::NodeMismatch {
                signal_nodes: 2,
                graph_nodes: 6,
                ..
            }
        ));
        std::fs::write(&p, r#"{"edges": [[0, 1]]}"#).unwrap();
        let e = load_pyg_json(&p).unwrap_err();
        assert!(
            matches!(e, DataError::MissingKey { .. }) && e.to_string().contains("edges"),
            "{e}"
        );
        std::fs::write(&p, r#"{"edges": [[0, 1]], "FX": [[1, 2], [3]]}"#).unwrap();
        assert!(matches!(
            load_pyg_json(&p).unwrap_err(),
            DataError::Shape { .. }
        ));
        std::fs::write(
            &p,
            r#"{"edges": [[0, 1]], "FX": [[1, 2]], "weights": [1, 2]}"#,
        )
        .unwrap();
        assert!(matches!(
            load_pyg_json(&p).unwrap_err(),
            DataError::Shape { .. }
        ));
        std::fs::write(&p, r#"{"edges": [[0, 1]], "FX": [[1, "a"]]}"#).unwrap();
        assert!(load_pyg_json(&p)
            .unwrap_err()
            .to_string()
            .contains("FX[0][1]"));
        std::fs::write(&p, r#"{"edges": "#).unwrap();
        assert!(matches!(
            load_pyg_json(&p).unwrap_err(),
            DataError::Format { .. }
        ));
        std::fs::write(&p, r#"{"edges": [[0, 1]], "FX": []}"#).unwrap();
        assert!(matches!(
            load_pyg_json(&p).unwrap_err(),
            DataError::Shape { .. }
        ));
    }

    /// Writes `json` to a fresh file and loads it.
    fn load_text(json: &str) -> Result<(Signal, Graph), DataError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("layout.json");
        std::fs::write(&p, json).unwrap();
        load_pyg_json(&p)
    }

    fn err_text(json: &str) -> String {
        load_text(json).unwrap_err().to_string()
    }

    #[test]
    fn edge_mapping_layout_averages_steps() {
        // england_covid's layout: 3 steps, graphs listed for steps 0 and 1.
        let (s, g) = load_text(
            r#"{"time_periods": 3, "y": [[1, 2, 3], [4, 5, 6], [7, 8, 9]],
                "edge_mapping": {
                  "edge_index": {"1": [[0, 1]], "0": [[0, 1], [1, 2], [1, 2]]},
                  "edge_weight": {"0": [2.0, 9.0, 4.0], "1": [4.0]}}}"#,
        )
        .unwrap();
        assert_eq!((s.t, s.n, s.f), (3, 3, 1));
        assert_eq!(s.get(2, 1, 0), Some(8.0));
        // (0,1): (2 + 4) / 2; (1,2): last of the duplicates, absent in step 1.
        assert_eq!(g.adj, vec![0., 3., 0., 0., 0., 2., 0., 0., 0.]);
        assert!(g.node_ids.is_none());
        // Without weights every listed edge weighs 1.
        let (_, g) = load_text(
            r#"{"time_periods": 2, "y": [[1, 2], [3, 4]],
                "edge_mapping": {"edge_index": {"0": [[0, 1]], "1": [[1, 0]]}}}"#,
        )
        .unwrap();
        assert_eq!(g.adj, vec![0., 0.5, 0.5, 0.]);
    }

    #[test]
    fn edge_mapping_errors_name_the_place() {
        let base = |mapping: &str, tp: usize| {
            err_text(&format!(
                r#"{{"time_periods": {tp}, "y": [[1, 2], [3, 4]], "edge_mapping": {mapping}}}"#
            ))
        };
        let e = base(r#"{"edge_index": {"x": [[0, 1]]}}"#, 2);
        assert!(
            e.contains("layout.json") && e.contains(r#"key "x" is not a step number"#),
            "{e}"
        );
        let e = base(r#"{"edge_index": {"5": [[0, 1]]}}"#, 2);
        assert!(e.contains("step 5") && e.contains("2 steps"), "{e}");
        let e = base(
            r#"{"edge_index": {"0": [[0, 1]]}, "edge_weight": {"0": [1, 2]}}"#,
            2,
        );
        assert!(
            e.contains(r#"2 weights in `edge_mapping.edge_weight."0"`"#) && e.contains("1 edges"),
            "{e}"
        );
        let e = base(
            r#"{"edge_index": {"0": [[0, 1]], "1": [[0, 1]]}, "edge_weight": {"0": [1]}}"#,
            2,
        );
        assert!(
            e.contains(r#"`edge_mapping.edge_weight."1"` is missing"#),
            "{e}"
        );
        let e = base(
            r#"{"edge_index": {"0": [[0, 1]]}, "edge_weight": {"0": [1], "3": [1]}}"#,
            2,
        );
        assert!(e.contains(r#"step "3""#), "{e}");
        let e = base(
            r#"{"edge_index": {"0": [[0, 1]], "1": [[0, 1], [1, 7]]}}"#,
            2,
        );
        assert!(
            e.contains(r#"`edge_mapping.edge_index."1"[1]` = [1, 7]"#),
            "{e}"
        );
        let e = base(r#"{"edge_index": {"0": [[0, 1, 2]]}}"#, 2);
        assert!(
            e.contains(r#"`edge_mapping.edge_index."0"[0]` is not a pair"#),
            "{e}"
        );
        let e = base(
            r#"{"edge_index": {"0": [[0, 1]]}, "edge_weight": {"0": ["a"]}}"#,
            2,
        );
        assert!(
            e.contains(r#"`edge_mapping.edge_weight."0"[0]` is not a number"#),
            "{e}"
        );
        let e = base(r#"{"edge_weight": {}}"#, 2);
        assert!(e.contains("missing key `edge_mapping.edge_index`"), "{e}");
        let e = base(r#"{"edge_index": {}}"#, 2);
        assert!(e.contains("lists no step"), "{e}");
        let e = base(r#"[1]"#, 2);
        assert!(e.contains("`edge_mapping` is not an object"), "{e}");
        let e = base(r#"{"edge_index": {"0": [[0, 1]]}}"#, 3);
        assert!(e.contains("`time_periods` is 3 but `y` has 2 rows"), "{e}");
    }

    #[test]
    fn step_object_layout_with_per_step_edges() {
        // twitter_tennis's layout: each step carries its own graph.
        let (s, g) = load_text(
            r#"{"time_periods": 2, "node_ids": {"b": 1, "a": 0},
                "0": {"index": 0, "edges": [[0, 1]], "weights": [2], "y": [1, 2], "X": [[0, 1], [1, 0]]},
                "1": {"index": 1, "edges": [[1, 0], [0, 1]], "weights": [1, 4], "y": [3, 4], "X": [[0, 1], [1, 0]]}}"#,
        )
        .unwrap();
        assert_eq!((s.t, s.n, s.values.clone()), (2, 2, vec![1., 2., 3., 4.]));
        assert_eq!(g.adj, vec![0., 3., 0.5, 0.]);
        assert_eq!(g.node_ids, Some(vec!["a".into(), "b".into()]));
        // Step 1 lost its edges.
        let e = err_text(
            r#"{"time_periods": 2, "0": {"edges": [[0, 1]], "y": [1, 2]}, "1": {"y": [3, 4]}}"#,
        );
        assert!(e.contains("missing key `1.edges`"), "{e}");
        let e = err_text(
            r#"{"time_periods": 2, "0": {"edges": [[0, 1]], "y": [1, 2]},
                "1": {"edges": [[0, 1]], "weights": [1, 1], "y": [3, 4]}}"#,
        );
        assert!(e.contains("`1.weights`") && e.contains("`1.edges`"), "{e}");
        let e = err_text(
            r#"{"time_periods": 2, "0": {"edges": [[0, 1]], "y": [1, 2]},
                "1": {"edges": [[0, 2]], "y": [3, 4]}}"#,
        );
        assert!(e.contains("`1.edges[0]` = [0, 2]"), "{e}");
    }

    #[test]
    fn node_link_layout() {
        // montevideo_bus's layout: ids, per-node series, links by id.
        let json = r#"{"directed": true, "multigraph": false, "graph": {"name": "toy"},
            "nodes": [{"bus_stop": 7, "id": 7, "y": [1, 2, 3], "X": {"y": [1, 2, 3]}},
                      {"bus_stop": 9, "id": 9, "y": [4, 5, 6], "X": {"y": [4, 5, 6]}},
                      {"id": "c", "X": {"y": [7, 8, 9]}}],
            "links": [{"weight": 172.5, "source": 7, "target": 9},
                      {"source": 9, "target": "c"}]}"#;
        let (s, g) = load_text(json).unwrap();
        assert_eq!((s.t, s.n, s.f), (3, 3, 1));
        assert_eq!(s.values, vec![1., 4., 7., 2., 5., 8., 3., 6., 9.]);
        assert_eq!(g.adj, vec![0., 172.5, 0., 0., 0., 1., 0., 0., 0.]);
        assert_eq!(
            g.node_ids,
            Some(vec!["7".to_string(), "9".to_string(), "c".to_string()])
        );
        // Undirected: each link read both ways. Without ids: positions.
        let (_, g) = load_text(
            r#"{"directed": false, "nodes": [{"y": [1]}, {"y": [2]}],
                "links": [{"source": 0, "target": 1, "weight": 2}]}"#,
        )
        .unwrap();
        assert_eq!((g.adj, g.node_ids), (vec![0., 2., 2., 0.], None));
    }

    #[test]
    fn node_link_errors_name_the_place() {
        let nodes = r#"[{"id": "a", "y": [1, 2]}, {"id": "b", "y": [3, 4]}]"#;
        let with = |nodes: &str, links: &str| {
            err_text(&format!(r#"{{"nodes": {nodes}, "links": {links}}}"#))
        };
        let e = with(nodes, r#"[{"source": "a", "target": "z"}]"#);
        assert!(
            e.contains(r#"`links[0].target` = "z" is not a node"#),
            "{e}"
        );
        let e = with(
            nodes,
            r#"[{"source": "a", "target": "b"}, {"target": "a"}]"#,
        );
        assert!(e.contains("`links[1]` has no `source`"), "{e}");
        let e = with(nodes, r#"[{"source": "a", "target": "b", "weight": "x"}]"#);
        assert!(e.contains("`links[0].weight` is not a number"), "{e}");
        let e = with(r#"[{"id": "a", "y": [1, 2]}, {"id": "b", "y": [3]}]"#, "[]");
        assert!(e.contains("`nodes[1].y` has 1 values"), "{e}");
        let e = with(r#"[{"id": "a", "y": [1, 2]}, {"id": "b", "X": {}}]"#, "[]");
        assert!(e.contains("missing key `nodes[1].y | nodes[1].X.y`"), "{e}");
        let e = with(
            r#"[{"id": "a", "y": [1, 2]}, {"id": "a", "y": [3, 4]}]"#,
            "[]",
        );
        assert!(e.contains("`nodes[1]`: node id `a` is listed twice"), "{e}");
        let e = with(r#"[{"id": "a", "y": [1, 2]}, {"y": [3, 4]}]"#, "[]");
        assert!(e.contains("`nodes[1]` has no `id`"), "{e}");
        let e = with(r#"[{"id": "a", "y": [1, "q"]}]"#, "[]");
        assert!(e.contains("`nodes[0].y[1]` is not a number"), "{e}");
        let e = with("[]", "[]");
        assert!(e.contains("`nodes` is empty"), "{e}");
        let e = err_text(&format!(r#"{{"nodes": {nodes}}}"#));
        assert!(e.contains("missing key `links`"), "{e}");
        let e = with(r#"[{"id": "a", "y": [1, NaN]}]"#, "[]");
        assert!(e.contains("invalid json"), "{e}");
    }

    #[test]
    fn node_keyed_frames_layout() {
        // mtm's layout: joints "0".."N-1", each frame an "(x, y, z)" string;
        // frame 10 sorts after frame 2 by number, not as text.
        let (s, g) = load_text(
            r#"{"edges": [[0, 1]], "LABEL": {"0": 1, "2": 0, "10": 2},
                "0": {"0": "(1, 2, 3)", "10": "(7, 8, 9)", "2": "(4.5, 5, 6)"},
                "1": {"0": [10, 20, 30], "2": "(40,50,60)", "10": "(70, 80, 90)"}}"#,
        )
        .unwrap();
        assert_eq!((s.t, s.n, s.f), (3, 2, 3));
        assert_eq!(s.get(1, 0, 0), Some(4.5));
        assert_eq!(s.get(2, 0, 2), Some(9.0));
        assert_eq!(s.get(0, 1, 1), Some(20.0));
        assert_eq!(s.get(2, 1, 0), Some(70.0));
        assert_eq!(g.adj, vec![0., 1., 0., 0.]);
        let e = err_text(r#"{"edges": [], "0": {"0": "(1, 2)", "1": "(1, x)"}}"#);
        assert!(e.contains("`0.1` is not a number"), "{e}");
        let e = err_text(r#"{"edges": [], "0": {"0": "(1, 2)", "1": "(1, 2, 3)"}}"#);
        assert!(e.contains("`0.1` has 3 components, expected 2"), "{e}");
        let e = err_text(r#"{"edges": [], "0": {"0": 1, "1": 2}, "1": {"0": 1}}"#);
        assert!(e.contains("node `1` has 1 frames, node `0` has 2"), "{e}");
        let e = err_text(r#"{"edges": [], "0": {"a": 1}}"#);
        assert!(e.contains("`0.a`: frame keys must be step numbers"), "{e}");
    }

    /// The real PyG-Temporal files that do not ship here (MB each): point
    /// `ISTS_PYG_DIR` at a folder holding england_covid.json,
    /// montevideo_bus.json and twitter_tennis_rg17.json (the repository's
    /// `dataset/` folder) and run with `--ignored`.
    #[test]
    #[ignore = "needs ISTS_PYG_DIR with the PyG-Temporal dataset files"]
    fn real_pyg_temporal_layouts() {
        let dir = PathBuf::from(std::env::var("ISTS_PYG_DIR").unwrap());
        let (s, g) = load_pyg_json(&dir.join("england_covid.json")).unwrap();
        assert_eq!((s.t, s.n, s.f, g.n), (61, 129, 1, 129));
        assert!(g.adj.iter().any(|w| *w > 0.0));
        let (s, g) = load_pyg_json(&dir.join("montevideo_bus.json")).unwrap();
        assert_eq!((s.t, s.n, s.f), (744, 675, 1));
        assert_eq!(g.adj.iter().filter(|w| **w != 0.0).count(), 690);
        let ids = g.node_ids.unwrap();
        let (i, j) = (
            ids.iter().position(|x| x == "5289").unwrap(),
            ids.iter().position(|x| x == "5290").unwrap(),
        );
        assert!((g.adj[i * 675 + j] - 172.2).abs() < 1e-4);
        let (s, g) = load_pyg_json(&dir.join("twitter_tennis_rg17.json")).unwrap();
        assert_eq!((s.t, s.n, s.f), (120, 1000, 1));
        assert_eq!(g.node_ids.unwrap()[0], "rolandgarros");
    }
}
