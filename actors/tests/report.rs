//! The report of a small real run: every plot is a valid, non-empty PNG, and the metrics table
//! puts the searched model next to the baselines.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and examples may panic on failure

use ists_actors::{run_search, settings, SearchOptions};
use std::path::Path;

fn png_size(path: &Path) -> (u32, u32) {
    let b = std::fs::read(path).unwrap();
    assert!(b.len() > 1000, "{} is nearly empty", path.display());
    assert_eq!(
        &b[..8],
        b"\x89PNG\r\n\x1a\n",
        "{} is not a PNG",
        path.display()
    );
    assert_eq!(&b[12..16], b"IHDR");
    let w = u32::from_be_bytes([b[16], b[17], b[18], b[19]]);
    let h = u32::from_be_bytes([b[20], b[21], b[22], b[23]]);
    (w, h)
}

#[actix::test]
async fn report_of_a_small_real_run() {
    tch::set_num_threads(1);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let tmp = tempfile::tempdir().unwrap();
    let mut s = settings::load(Some(&root.join("config/tiny.toml"))).unwrap();
    s.runs_dir = tmp.path().to_path_buf();
    s.data_dir = root.join("data");
    s.search.budget = 4;
    let opts = SearchOptions {
        name: Some("r".into()),
        ..SearchOptions::default()
    };
    let summary = run_search(s, opts, std::future::pending()).await.unwrap();
    assert_eq!(summary.evaluated, 4);
    let run = tmp.path().join("r");
    assert!(
        run.join("model/weights.safetensors").exists(),
        "best model not exported"
    );
    let report = tokio::task::spawn_blocking(move || ists_actors::run::report::write_report(&run))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report.plots.len(), 4);
    for p in &report.plots {
        let (w, h) = png_size(p);
        assert!(w >= 800 && h >= 250, "{}: {w}x{h}", p.display());
    }
    let md = std::fs::read_to_string(&report.markdown).unwrap();
    for needle in [
        "| searched (final training) |",
        "| historical average |",
        "| last value |",
        "![search curve](search_curve.png)",
        "![forecast](forecast.png)",
    ] {
        assert!(md.contains(needle), "report lacks {needle}:\n{md}");
    }
    assert!(
        !md.contains("T-GCN protocol"),
        "not the T-GCN preset:\n{md}"
    );

    // A protocol results file in the run directory adds the T-GCN table, its rows next to the
    // run's model, and the forecasts at each horizon.
    let run = tmp.path().join("r");
    let mut rows = ists::protocol::ProtocolResults::open(&run.join("protocol.jsonl")).unwrap();
    let scores = ists::metrics::TgcnScores {
        rmse: 4.0,
        mae: 2.0,
        accuracy: 0.9,
        r2: 0.8,
        var: 0.8,
    };
    let table = ists::metrics::TgcnTable {
        step_minutes: 5,
        rows: vec![(3, scores), (12, scores)],
    };
    rows.append(ists::protocol::measured_rows("GRU (file)", 0, &table))
        .unwrap();
    let report = tokio::task::spawn_blocking(move || ists_actors::run::report::write_report(&run))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report.plots.len(), 5);
    let (w, h) = png_size(&report.plots[4]);
    assert!(w >= 1600 && h >= 700, "protocol plot {w}x{h}");
    let md = std::fs::read_to_string(&report.markdown).unwrap();
    for needle in [
        "## T-GCN protocol (Los-loop)",
        "| model | seeds | RMSE 15 min |",
        "| GRU (file) | 1 | 4.0000 |",
        "| searched (this run) | 1 |",
        "| last value | 1 |",
        "T-GCN (published) [1]",
        "![protocol forecast](protocol_forecast.png)",
    ] {
        assert!(md.contains(needle), "report lacks {needle}:\n{md}");
    }
}
