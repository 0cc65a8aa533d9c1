//! Rank statistics for proxy fidelity: Kendall's tau-b and Spearman's rho between the proxy
//! scores and the fully trained scores of the same architectures.

/// Ranks with ties given their average rank (1-based).
pub fn ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for k in i..=j {
            r[idx[k]] = avg;
        }
        i = j + 1;
    }
    r
}

/// Kendall's tau-b (handles ties); None when fewer than two pairs are comparable.
pub fn kendall_tau(x: &[f64], y: &[f64]) -> Option<f64> {
    if x.len() != y.len() || x.len() < 2 {
        return None;
    }
    let (mut concordant, mut discordant, mut tx, mut ty) = (0f64, 0f64, 0f64, 0f64);
    for i in 0..x.len() {
        for j in i + 1..x.len() {
            let dx = (x[i] - x[j]).signum() * ((x[i] != x[j]) as i32 as f64);
            let dy = (y[i] - y[j]).signum() * ((y[i] != y[j]) as i32 as f64);
            match (dx == 0.0, dy == 0.0) {
                (true, true) => {}
                (true, false) => tx += 1.0,
                (false, true) => ty += 1.0,
                _ if dx == dy => concordant += 1.0,
                _ => discordant += 1.0,
            }
        }
    }
    let denom = ((concordant + discordant + tx) * (concordant + discordant + ty)).sqrt();
    (denom > 0.0).then(|| (concordant - discordant) / denom)
}

/// Spearman's rho: Pearson correlation of the (tie-averaged) ranks.
pub fn spearman_rho(x: &[f64], y: &[f64]) -> Option<f64> {
    if x.len() != y.len() || x.len() < 2 {
        return None;
    }
    let (rx, ry) = (ranks(x), ranks(y));
    let n = rx.len() as f64;
    let (mx, my) = (rx.iter().sum::<f64>() / n, ry.iter().sum::<f64>() / n);
    let cov: f64 = rx.iter().zip(&ry).map(|(a, b)| (a - mx) * (b - my)).sum();
    let vx: f64 = rx.iter().map(|a| (a - mx).powi(2)).sum();
    let vy: f64 = ry.iter().map(|b| (b - my).powi(2)).sum();
    let d = (vx * vy).sqrt();
    (d > 0.0).then(|| cov / d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_rankings() {
        let a = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(kendall_tau(&a, &a), Some(1.0));
        assert_eq!(kendall_tau(&a, &[5.0, 4.0, 3.0, 2.0, 1.0]), Some(-1.0));
        // One swapped adjacent pair out of 10: (9 - 1) / 10.
        let t = kendall_tau(&a, &[1.0, 2.0, 4.0, 3.0, 5.0]).unwrap();
        assert!((t - 0.8).abs() < 1e-12, "{t}");
        // Spearman of the same: 1 - 6 * 2 / (5 * 24) = 0.9.
        let r = spearman_rho(&a, &[1.0, 2.0, 4.0, 3.0, 5.0]).unwrap();
        assert!((r - 0.9).abs() < 1e-12, "{r}");
        // Ties: x = [1, 2, 2, 3], y = [1, 2, 3, 4]: 5 concordant, 0 discordant, 1 tie in x.
        let tb = kendall_tau(&[1.0, 2.0, 2.0, 3.0], &[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert!((tb - 5.0 / (5.0f64 * 6.0).sqrt()).abs() < 1e-12, "{tb}");
        assert_eq!(ranks(&[10.0, 20.0, 20.0, 5.0]), vec![2.0, 3.5, 3.5, 1.0]);
        assert_eq!(kendall_tau(&[1.0], &[1.0]), None);
        assert_eq!(spearman_rho(&[1.0, 1.0], &[1.0, 2.0]), None);
    }
}
