//! Masked metrics against values computed by hand.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and examples may panic on failure

use ists::metrics::{masked_mae, masked_mape, masked_rmse, report_horizons, MetricsTable};
use tch::Tensor;

fn t(v: &[f32], shape: &[i64]) -> Tensor {
    Tensor::from_slice(v).reshape(shape)
}

#[test]
fn masked_values_match_hand_computation() {
    // Targets: 2, 0 (missing), 4, 5; predictions: 1, 9, 5, 5.
    let y = t(&[2.0, 0.0, 4.0, 5.0], &[4]);
    let p = t(&[1.0, 9.0, 5.0, 5.0], &[4]);
    // Valid entries: errors 1, 1, 0 -> MAE 2/3; squared 1, 1, 0 -> RMSE sqrt(2/3);
    // APE 1/2, 1/4, 0 -> MAPE 100 * 0.75 / 3 = 25 %.
    let mae = masked_mae(&p, &y, Some(0.0)).unwrap().double_value(&[]);
    let rmse = masked_rmse(&p, &y, Some(0.0)).unwrap().double_value(&[]);
    let mape = masked_mape(&p, &y, Some(0.0)).unwrap().double_value(&[]);
    assert!((mae - 2.0 / 3.0).abs() < 1e-6, "{mae}");
    assert!((rmse - (2.0f64 / 3.0).sqrt()).abs() < 1e-6, "{rmse}");
    assert!((mape - 25.0).abs() < 1e-4, "{mape}");
    // Without a null value the zero counts for MAE (error 9): (1 + 9 + 1 + 0) / 4.
    let mae_all = masked_mae(&p, &y, None).unwrap().double_value(&[]);
    assert!((mae_all - 11.0 / 4.0).abs() < 1e-6);
    // All missing: zero, not NaN.
    let z = t(&[0.0, 0.0], &[2]);
    assert_eq!(
        masked_mae(&t(&[1.0, 2.0], &[2]), &z, Some(0.0))
            .unwrap()
            .double_value(&[]),
        0.0
    );
}

#[test]
fn table_reports_horizons_3_6_12_and_average() {
    assert_eq!(report_horizons(12), vec![3, 6, 12]);
    assert_eq!(report_horizons(4), vec![3, 4]);
    // [S=1, H=12, N=1]: error h at horizon h (1-based).
    let y: Vec<f32> = (0..12).map(|_| 10.0).collect();
    let p: Vec<f32> = (1..=12).map(|h| 10.0 + h as f32).collect();
    let table = MetricsTable::compute(&t(&p, &[1, 12, 1]), &t(&y, &[1, 12, 1]), Some(0.0)).unwrap();
    let maes: Vec<(usize, f64)> = table.horizons.iter().map(|(h, s)| (*h, s.mae)).collect();
    assert_eq!(maes, vec![(3, 3.0), (6, 6.0), (12, 12.0)]);
    assert!((table.average.mae - 6.5).abs() < 1e-6);
    assert!((table.horizons[0].1.mape - 30.0).abs() < 1e-4);
    let text = table.to_string();
    assert!(text.contains("| @12 | 12.0000 |"), "{text}");
}

/// `scripts/tgcn_logged_run.py` (which rescores T-GCN's committed Los-loop run for
/// BENCHMARKS.md) reads a run laid out as T-GCN's and computes the five metrics as
/// `TgcnScores` does: on a small made-up run, its epoch summary and its scores agree with the
/// Rust code, on the windows T-GCN's split gives (the first 80% of the steps for training, a
/// test window every step after, 12 in, 3 out, the last window left out as its loop does).
#[test]
fn the_logged_run_script_scores_as_the_metric_code_does() {
    use ists::metrics::TgcnScores;
    use std::fmt::Write as _;
    let dir = tempfile::tempdir().unwrap();
    let run = dir
        .path()
        .join("out/tgcn_los_lr0.001_batch64_unit64_seq12_pre3_epoch5000");
    std::fs::create_dir_all(&run).unwrap();
    // 100 steps x 4 sensors: training 0..80, test windows from step 80, 100 - 80 - 15 = 5.
    let (t, n, train, windows) = (100usize, 4usize, 80usize, 5usize);
    let value = |step: usize, node: usize| 40.0 + ((step * 7 + node * 13) % 23) as f32 * 0.5;
    let mut speed = String::from("a,b,c,d\n");
    for step in 0..t {
        let row: Vec<String> = (0..n).map(|node| value(step, node).to_string()).collect();
        writeln!(speed, "{}", row.join(",")).unwrap();
    }
    let speed_path = dir.path().join("speed.csv");
    std::fs::write(&speed_path, speed).unwrap();
    // Forecasts: the truth plus an error that varies by window, step and sensor (quarters, so
    // f32 and the script's text hold them exactly).
    let (mut pred, mut target, mut csv) = (Vec::new(), Vec::new(), String::new());
    for w in 0..windows {
        for k in 0..3 {
            let mut row = Vec::new();
            for node in 0..n {
                let y = value(train + w + 12 + k, node);
                let p = y + ((w + 2 * k + 3 * node) % 5) as f32 * 0.25 - 0.5;
                target.push(y);
                pred.push(p);
                row.push(p.to_string());
            }
            writeln!(csv, "{}", row.join(",")).unwrap();
        }
    }
    std::fs::write(run.join("test_result.csv"), csv).unwrap();
    std::fs::write(run.join("test_rmse.csv"), "7.5\n5.25\n6.0\n").unwrap();
    std::fs::write(run.join("test_acc.csv"), "0.8\n0.9\n0.85\n").unwrap();
    let script = || {
        std::process::Command::new("python3")
            .args(["-B", "scripts/tgcn_logged_run.py"])
            .arg(dir.path())
            .arg(&speed_path)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("python3")
    };
    let out = script();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("3 epochs; lowest test RMSE 5.250000 at epoch 2 (accuracy 0.900000); last epoch 6.000000 (accuracy 0.850000)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("5 test windows from step 80, 3 steps, 4 sensors"),
        "{stdout}"
    );
    let s = TgcnScores::compute(&pred, &target).unwrap();
    let expected = format!(
        "rmse {:.6}, mae {:.6}, accuracy {:.6}, r2 {:.6}, var {:.6}",
        s.rmse, s.mae, s.accuracy, s.r2, s.var
    );
    assert!(stdout.contains(&expected), "{stdout}\nexpected {expected}");
    // A run of another shape is refused, naming what it expected.
    std::fs::write(run.join("test_result.csv"), "1,2,3,4\n").unwrap();
    let out = script();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("expected 5 windows x 3 steps = 15 rows of 4"),
        "{stderr}"
    );
}
