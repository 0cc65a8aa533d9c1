//! Statistics of the studies: Kendall's tau-b and Spearman's rho between proxy scores and fully
//! trained scores (proxy fidelity) with bootstrap intervals, and the paired one-sided Wilcoxon
//! signed-rank test and seed summaries (search against random search over paired seeds).

use rand::{Rng, SeedableRng};

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

/// A percentile bootstrap interval at `level` (0.95 for 95%) for a statistic of `n` paired
/// items: `stat` is given the indices of a resample (`n` drawn with replacement) and returns
/// the statistic on it, `None` where it is undefined there. The resamples come from a ChaCha
/// stream seeded with `seed`, so the same inputs always give the same interval.
///
/// Why: a fidelity study ranks about 30 designs, and a Kendall tau from 30 pairs moves by about
/// 0.1 from one sample of designs to another; two proxies 0.03 apart are not told apart, and a
/// goal such as "tau >= 0.5" is read against the interval's lower end, not the point alone.
///
/// `None` with fewer than 3 items, or when the statistic is undefined on half the resamples
/// or more (too few distinct values to rank).
pub fn bootstrap_interval(
    n: usize,
    level: f64,
    resamples: usize,
    seed: u64,
    stat: impl Fn(&[usize]) -> Option<f64>,
) -> Option<(f64, f64)> {
    if n < 3 || resamples == 0 || !(0.0..1.0).contains(&level) {
        return None;
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut idx = vec![0usize; n];
    let mut values = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        for i in idx.iter_mut() {
            *i = rng.gen_range(0..n);
        }
        if let Some(v) = stat(&idx).filter(|v| v.is_finite()) {
            values.push(v);
        }
    }
    if values.len() * 2 <= resamples {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let tail = (1.0 - level) / 2.0;
    Some((quantile(&values, tail), quantile(&values, 1.0 - tail)))
}

/// The `q` quantile of sorted, non-empty `v`, interpolated linearly between order statistics
/// (numpy's default).
fn quantile(v: &[f64], q: f64) -> f64 {
    let at = q.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let (lo, hi) = (at.floor() as usize, at.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (at - lo as f64)
}

/// [`bootstrap_interval`] of [`kendall_tau`] between `x` and `y`, resampling the pairs.
pub fn kendall_tau_interval(
    x: &[f64],
    y: &[f64],
    level: f64,
    resamples: usize,
    seed: u64,
) -> Option<(f64, f64)> {
    if x.len() != y.len() {
        return None;
    }
    bootstrap_interval(x.len(), level, resamples, seed, |idx| {
        let xs: Vec<f64> = idx.iter().map(|&i| x[i]).collect();
        let ys: Vec<f64> = idx.iter().map(|&i| y[i]).collect();
        kendall_tau(&xs, &ys)
    })
}

/// Mean and sample standard deviation of the finite values (NaN where there are none; the sd
/// is NaN for a single value).
pub fn mean_sd(v: &[f64]) -> (f64, f64) {
    let ok: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    let n = ok.len() as f64;
    let mean = ok.iter().sum::<f64>() / n;
    let sd = (ok.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
    (mean, sd)
}

/// The median (the mean of the middle two for an even count); None for no values.
pub fn median(v: &[f64]) -> Option<f64> {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => None,
        n if n % 2 == 1 => Some(v[n / 2]),
        n => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// Exact one-sided p-value of the paired Wilcoxon signed-rank test that `x` tends to be smaller
/// than `y`: the chance, with every difference's sign a fair coin, of a rank sum of negative
/// differences at least as large as the one observed. Zero differences are dropped, tied
/// magnitudes share their average rank (the exact null distribution is enumerated on doubled
/// ranks, so ties stay exact). 1.0 when every pair ties.
pub fn wilcoxon_less(x: &[f64], y: &[f64]) -> f64 {
    let d: Vec<f64> = x
        .iter()
        .zip(y)
        .map(|(a, b)| a - b)
        .filter(|d| *d != 0.0)
        .collect();
    if d.is_empty() {
        return 1.0;
    }
    let mags: Vec<f64> = d.iter().map(|v| v.abs()).collect();
    // Doubled average ranks are integers.
    let r2: Vec<usize> = ranks(&mags)
        .iter()
        .map(|r| (r * 2.0).round() as usize)
        .collect();
    let w: usize = r2
        .iter()
        .zip(&d)
        .filter(|(_, v)| **v < 0.0)
        .map(|(r, _)| r)
        .sum();
    let total: usize = r2.iter().sum();
    // ways[s]: sign patterns whose negative ranks sum to s.
    let mut ways = vec![0f64; total + 1];
    ways[0] = 1.0;
    for &r in &r2 {
        for s in (r..=total).rev() {
            ways[s] += ways[s - r];
        }
    }
    let all: f64 = ways.iter().sum();
    ways[w..].iter().sum::<f64>() / all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_no_values() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

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

    #[test]
    fn wilcoxon_on_fixed_inputs() {
        // Every one of 8 pairs smaller: only the all-negative pattern is as extreme, 1 / 2^8.
        let y = [1.0; 8];
        let x: Vec<f64> = (1..=8).map(|k| 1.0 - k as f64 * 0.01).collect();
        assert!((wilcoxon_less(&x, &y) - 1.0 / 256.0).abs() < 1e-12);
        // And the other way round: every pattern is at least as extreme.
        assert_eq!(wilcoxon_less(&y, &x), 1.0);
        // d = [-1, -2, +3]: ranks 1, 2, 3, W- = 3; patterns with W- >= 3 out of 8: {3}, {1,2},
        // {1,3}, {2,3}, {1,2,3} = 5.
        let p = wilcoxon_less(&[0.0, 0.0, 3.0], &[1.0, 2.0, 0.0]);
        assert!((p - 5.0 / 8.0).abs() < 1e-12, "{p}");
        // Ties in magnitude: d = [-1, -1, +1] -> ranks 2, 2, 2 (doubled 4, 4, 4); W- = 2 of 3
        // ranks; patterns with at least two negatives: 4 of 8.
        let p = wilcoxon_less(&[0.0, 0.0, 1.0], &[1.0, 1.0, 0.0]);
        assert!((p - 0.5).abs() < 1e-12, "{p}");
        // Zero differences are dropped; all zero is no evidence.
        assert_eq!(wilcoxon_less(&[1.0, 2.0], &[1.0, 2.0]), 1.0);
    }

    #[test]
    fn bootstrap_intervals_of_kendall_tau() {
        // A perfect ranking stays perfect in every resample that can rank.
        let a: Vec<f64> = (0..10).map(f64::from).collect();
        assert_eq!(kendall_tau_interval(&a, &a, 0.95, 500, 1), Some((1.0, 1.0)));
        let rev: Vec<f64> = a.iter().map(|v| -v).collect();
        assert_eq!(
            kendall_tau_interval(&a, &rev, 0.95, 500, 1),
            Some((-1.0, -1.0))
        );
        // Noisy agreement: y = x + noise. The interval holds the point estimate, is the same
        // from the same seed, and narrows as the items grow from 12 to 200.
        let noisy = |n: usize| {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
            let x: Vec<f64> = (0..n).map(|_| rng.gen_range(0.0..1.0)).collect();
            let y: Vec<f64> = x.iter().map(|v| v + rng.gen_range(0.0..0.6)).collect();
            (x, y)
        };
        let (x, y) = noisy(12);
        let t = kendall_tau(&x, &y).unwrap();
        let (lo, hi) = kendall_tau_interval(&x, &y, 0.95, 2000, 3).unwrap();
        assert!(lo < t && t < hi && hi <= 1.0 && lo >= -1.0, "{lo} {t} {hi}");
        assert_eq!(kendall_tau_interval(&x, &y, 0.95, 2000, 3), Some((lo, hi)));
        let (x2, y2) = noisy(200);
        let (lo2, hi2) = kendall_tau_interval(&x2, &y2, 0.95, 2000, 3).unwrap();
        assert!(
            hi2 - lo2 < (hi - lo) / 2.0,
            "{lo2}..{hi2} against {lo}..{hi}"
        );
        // A lower level gives a narrower interval inside the wider one.
        let (l50, h50) = kendall_tau_interval(&x, &y, 0.5, 2000, 3).unwrap();
        assert!(lo <= l50 && l50 < h50 && h50 <= hi);
        // Too few items, mismatched lengths, or nothing to rank: no interval.
        assert_eq!(kendall_tau_interval(&a[..2], &a[..2], 0.95, 100, 1), None);
        assert_eq!(kendall_tau_interval(&a, &a[..5], 0.95, 100, 1), None);
        assert_eq!(kendall_tau_interval(&[1.0; 6], &a[..6], 0.95, 100, 1), None);
        // Quantiles interpolate between order statistics.
        assert_eq!(quantile(&[0.0, 1.0, 2.0, 3.0], 0.5), 1.5);
        assert_eq!(quantile(&[5.0], 0.025), 5.0);
    }

    #[test]
    fn mean_and_sd_skip_missing_runs() {
        let (m, sd) = mean_sd(&[1.0, f64::NAN, 3.0]);
        assert_eq!(m, 2.0);
        assert!((sd - 2f64.sqrt()).abs() < 1e-12);
        assert!(mean_sd(&[]).0.is_nan());
    }
}
