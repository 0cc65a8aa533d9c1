//! Synthetic inputs of real shapes, for benchmarks: the PEMS08 graph (bundled) with a daily
//! signal written in PEMS's `.npz` format and read back through the real loader, so a timing
//! runs on the shape and the code path of the real data set, whose signal is not bundled.

use super::{load, prepare, write_npz, DataError, DataSpec, PrepareConfig, Prepared};
use std::path::Path;

/// PEMS08's 170-node graph from `data_dir/PEMS08/PEMS08.csv` with one week of a synthetic
/// daily signal (flow, occupancy, speed), prepared with `cfg` (split 6:2:2).
pub fn pems08_shaped(data_dir: &Path, cfg: &PrepareConfig) -> Result<Prepared, DataError> {
    let dir = std::env::temp_dir().join(format!("ists-pems08-shape-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| DataError::io(&dir, e))?;
    let graph = data_dir.join("PEMS08/PEMS08.csv");
    std::fs::copy(&graph, dir.join("PEMS08.csv")).map_err(|e| DataError::io(&graph, e))?;
    let (t, n, f) = (2016usize, 170usize, 3usize);
    let mut v = Vec::with_capacity(t * n * f);
    for step in 0..t {
        for node in 0..n {
            let phase = (step % 288) as f32 / 288.0 * std::f32::consts::TAU + node as f32 * 0.1;
            let flow = 200.0 + 150.0 * phase.sin() + (node % 7) as f32 * 5.0;
            v.extend_from_slice(&[flow, flow / 2000.0, 60.0 - flow / 20.0]);
        }
    }
    write_npz(&dir.join("PEMS08.npz"), &[("data", &[t, n, f], &v)])?;
    let spec = DataSpec::from_path(&dir)?;
    let cfg = PrepareConfig {
        split: [0.6, 0.2, 0.2],
        ..cfg.clone()
    };
    let p = prepare(&load(&spec)?, &cfg);
    let _ = std::fs::remove_dir_all(&dir);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn has_the_pems08_shape_and_a_daily_signal() {
        let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data");
        let p = pems08_shaped(&data, &PrepareConfig::default()).unwrap();
        assert_eq!((p.n, p.t), (170, 2016));
        // The target (flow) repeats every 288 steps.
        assert_eq!(p.target[5 * 170 + 3], p.target[(5 + 288) * 170 + 3]);
        assert!(!p.splits.test.is_empty());
    }
}
