//! Graph construction and normalization on dense `[n, n]` row-major
//! adjacency matrices: Gaussian distance kernel, self-loops, symmetric and
//! random-walk normalization, edge statistics.
//!
//! These take `(adj, n)` and never panic: rows missing from a too-short
//! `adj` read as zeros and extra entries are ignored.

/// Entries of the Gaussian kernel below this are dropped (DCRNN's
/// `normalized_k`).
pub const DEFAULT_THRESHOLD: f32 = 0.1;

fn at(adj: &[f32], n: usize, i: usize, j: usize) -> f32 {
    adj.get(i * n + j).copied().unwrap_or(0.0)
}

/// Population standard deviation (0 for an empty slice).
pub fn std_dev(values: &[f32]) -> f32 {
    if values.is_empty() {
        return 0.0;
    }
    let len = values.len() as f64;
    let mean = values.iter().map(|v| f64::from(*v)).sum::<f64>() / len;
    let var = values
        .iter()
        .map(|v| (f64::from(*v) - mean).powi(2))
        .sum::<f64>()
        / len;
    var.sqrt() as f32
}

/// Builds a weighted adjacency from `(from, to, distance)` edges with the
/// Gaussian kernel `w = exp(-(d / sigma)^2)` (DCRNN / STGCN convention).
///
/// `sigma` defaults to the standard deviation of the listed distances (one
/// per distinct directed pair). Weights below `threshold` become 0. When
/// `symmetric`, each edge is set in both directions (max of the two), which
/// is what the undirected PEMS0X graphs need; DCRNN's `adj_mx.pkl` is the
/// directed variant. Duplicated pairs keep the shortest distance. Edges with
/// an endpoint `>= n` are ignored (callers validate indices first). No
/// self-loops are added.
pub fn gaussian_kernel(
    edges: &[(usize, usize, f32)],
    n: usize,
    sigma: Option<f32>,
    threshold: f32,
    symmetric: bool,
) -> Vec<f32> {
    let mut dist: std::collections::BTreeMap<(usize, usize), f32> = Default::default();
    for &(i, j, d) in edges {
        if i >= n || j >= n || !d.is_finite() {
            continue;
        }
        let e = dist.entry((i, j)).or_insert(d);
        *e = e.min(d);
    }
    let sigma = match sigma {
        Some(s) if s.is_finite() && s > 0.0 => s,
        _ => {
            let ds: Vec<f32> = dist.values().copied().collect();
            let s = std_dev(&ds);
            if s.is_finite() && s > 0.0 {
                s
            } else {
                // All distances equal: any positive scale gives them the same
                // weight; use their mean so the weight is exp(-1), or 1 if 0.
                let m = ds.iter().map(|d| d.abs()).fold(0.0f32, f32::max);
                if m > 0.0 {
                    m
                } else {
                    1.0
                }
            }
        }
    };
    let mut adj = vec![0.0f32; n * n];
    for (&(i, j), &d) in &dist {
        let w = (-(d / sigma).powi(2)).exp();
        if w < threshold {
            continue;
        }
        adj[i * n + j] = adj[i * n + j].max(w);
        if symmetric {
            adj[j * n + i] = adj[j * n + i].max(w);
        }
    }
    adj
}

/// `A` with every zero diagonal entry set to 1. Existing diagonal weights
/// are kept (DCRNN's adjacency already has a unit diagonal; adding another
/// 1 there would double the self weight).
pub fn add_self_loops(adj: &[f32], n: usize) -> Vec<f32> {
    let mut out: Vec<f32> = (0..n * n)
        .map(|k| at(adj, n, k / n.max(1), k % n.max(1)))
        .collect();
    for i in 0..n {
        if out[i * n + i] == 0.0 {
            out[i * n + i] = 1.0;
        }
    }
    out
}

fn row_sums(adj: &[f32], n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (0..n).map(|j| at(adj, n, i, j)).sum())
        .collect()
}

/// Symmetric normalization `D^-1/2 A D^-1/2` with `D` the row sums; rows and
/// columns of zero-degree nodes stay zero (instead of dividing by zero).
pub fn sym_norm(adj: &[f32], n: usize) -> Vec<f32> {
    let inv_sqrt: Vec<f32> = row_sums(adj, n)
        .into_iter()
        .map(|d| if d > 0.0 { 1.0 / d.sqrt() } else { 0.0 })
        .collect();
    let mut out = vec![0.0f32; n * n];
    for i in 0..n {
        for j in 0..n {
            out[i * n + j] = inv_sqrt[i] * at(adj, n, i, j) * inv_sqrt[j];
        }
    }
    out
}

/// Random-walk transition matrix `D^-1 A` (each row sums to 1); zero rows
/// stay zero.
pub fn transition(adj: &[f32], n: usize) -> Vec<f32> {
    let deg = row_sums(adj, n);
    let mut out = vec![0.0f32; n * n];
    for i in 0..n {
        if deg[i] > 0.0 {
            for j in 0..n {
                out[i * n + j] = at(adj, n, i, j) / deg[i];
            }
        }
    }
    out
}

/// Number of non-zero off-diagonal entries (directed edges).
pub fn edge_count(adj: &[f32], n: usize) -> usize {
    (0..n)
        .flat_map(|i| (0..n).map(move |j| (i, j)))
        .filter(|&(i, j)| i != j && at(adj, n, i, j) != 0.0)
        .count()
}

/// Share of possible off-diagonal entries that are edges (0 for n < 2).
pub fn density(adj: &[f32], n: usize) -> f64 {
    if n < 2 {
        return 0.0;
    }
    edge_count(adj, n) as f64 / (n * (n - 1)) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len());
        for (k, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() < 1e-6, "entry {k}: {x} vs {y}\n{a:?}\n{b:?}");
        }
    }

    // Path graph 0 - 1 - 2 with weights 1 and 2; node degrees 1, 3, 2.
    const A: [f32; 9] = [0., 1., 0., 1., 0., 2., 0., 2., 0.];

    #[test]
    fn sym_norm_three_nodes() {
        let s3 = 3f32.sqrt();
        let s2 = 2f32.sqrt();
        close(
            &sym_norm(&A, 3),
            &[
                0.,
                1. / s3,
                0.,
                1. / s3,
                0.,
                2. / (s3 * s2),
                0.,
                2. / (s3 * s2),
                0.,
            ],
        );
        // An isolated node keeps a zero row and column.
        let iso = [0., 1., 0., 1., 0., 0., 0., 0., 0.];
        close(&sym_norm(&iso, 3), &[0., 1., 0., 1., 0., 0., 0., 0., 0.]);
    }

    #[test]
    fn transition_three_nodes() {
        close(
            &transition(&A, 3),
            &[0., 1., 0., 1. / 3., 0., 2. / 3., 0., 1., 0.],
        );
        let iso = [0., 1., 0., 0., 0., 0., 0., 0., 0.];
        close(&transition(&iso, 3), &iso);
    }

    #[test]
    fn self_loops_three_nodes() {
        let with = add_self_loops(&A, 3);
        close(&with, &[1., 1., 0., 1., 1., 2., 0., 2., 1.]);
        // Existing diagonal weights are kept, not doubled.
        let d = [0.5, 0., 0., 0., 0., 0., 0., 0., 0.];
        close(
            &add_self_loops(&d, 3),
            &[0.5, 0., 0., 0., 1., 0., 0., 0., 1.],
        );
        // GCN normalization of A + I on the path graph: degrees 2, 4, 3.
        let g = sym_norm(&with, 3);
        assert!((g[0] - 0.5).abs() < 1e-6);
        assert!((g[1] - 1.0 / 8f32.sqrt()).abs() < 1e-6);
        assert!((g[5] - 2.0 / 12f32.sqrt()).abs() < 1e-6);
    }

    #[test]
    fn gaussian_kernel_three_nodes() {
        // Distances 1 (0->1), 3 (1->2): std = 1, so w = e^-1 and e^-9 (< 0.1, dropped).
        let edges = [(0, 1, 1.0), (1, 2, 3.0)];
        let e1 = (-1f32).exp();
        close(
            &gaussian_kernel(&edges, 3, None, 0.1, true),
            &[0., e1, 0., e1, 0., 0., 0., 0., 0.],
        );
        close(
            &gaussian_kernel(&edges, 3, None, 0.1, false),
            &[0., e1, 0., 0., 0., 0., 0., 0., 0.],
        );
        // Explicit sigma 3, threshold 0: w(1) = e^-1/9, w(3) = e^-1.
        let w1 = (-1f32 / 9.0).exp();
        close(
            &gaussian_kernel(&edges, 3, Some(3.0), 0.0, true),
            &[0., w1, 0., w1, 0., e1, 0., e1, 0.],
        );
        // Duplicates keep the shortest distance; out-of-range edges are ignored.
        let dup = [(0, 1, 1.0), (0, 1, 3.0), (1, 0, 3.0), (5, 0, 1.0)];
        let k = gaussian_kernel(&dup, 3, Some(3.0), 0.0, false);
        assert!((k[1] - w1).abs() < 1e-6 && (k[3] - e1).abs() < 1e-6);
        // All-equal distances do not divide by zero.
        let same = gaussian_kernel(&[(0, 1, 2.0), (1, 2, 2.0)], 3, None, 0.1, true);
        assert!(same.iter().all(|v| v.is_finite()));
        assert!((same[1] - e1).abs() < 1e-6);
    }

    #[test]
    fn stats_and_degenerate_inputs() {
        assert_eq!(edge_count(&A, 3), 4);
        assert!((density(&A, 3) - 4.0 / 6.0).abs() < 1e-12);
        assert_eq!(edge_count(&[1.0], 1), 0);
        assert_eq!(density(&[1.0], 1), 0.0);
        assert!(sym_norm(&[], 0).is_empty());
        assert!(add_self_loops(&[], 0).is_empty());
        // A too-short matrix reads as zeros instead of panicking.
        assert_eq!(transition(&[1.0], 2), vec![1.0, 0.0, 0.0, 0.0]);
        assert!((std_dev(&[1.0, 3.0]) - 1.0).abs() < 1e-7);
    }
}
