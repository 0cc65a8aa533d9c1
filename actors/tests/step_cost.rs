//! The step-cost estimate (`ists::footprint::StepCost`, what `search.prior_cost = "matched"`
//! weighs draws by) against the seconds the committed searches measured: it must rank the
//! proxy runs of each data set's journals by seconds per step, and better than the parameter
//! count does.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and examples may panic on failure

use ists::footprint::StepCost;
use ists::model::ModelShape;
use ists::space::Arch;
use std::path::{Path, PathBuf};

/// The workspace root (this crate lives in `actors/`).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Journals kept beside the results files whose names start with `prefix`.
fn journals(prefix: &str) -> Vec<PathBuf> {
    let dir = root().join("bench/results");
    let mut out = Vec::new();
    for d in std::fs::read_dir(&dir).unwrap() {
        let d = d.unwrap().path();
        let name = d.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with(prefix) && name.ends_with(".journals") && d.is_dir() {
            for f in std::fs::read_dir(&d).unwrap() {
                out.push(f.unwrap().path());
            }
        }
    }
    out.sort();
    out
}

/// Kendall tau of (step cost, seconds per step) and of (parameters, seconds per step) over the
/// proxy runs (rung 0: the same steps each, so evaluation overhead weighs alike) of the
/// journals. Seconds per step are taken relative to each journal's median: the searches ran
/// under different loads.
fn taus(config: &str, prefix: &str) -> (f64, f64, usize) {
    let mut settings = ists_actors::settings::load(Some(&root().join(config))).unwrap();
    settings.data_dir = root().join("data");
    let prepared = ists_actors::search::supervisor::prepare_data(&settings).unwrap();
    let cost = StepCost::new(
        ModelShape::of(&prepared),
        settings.model.clone(),
        settings.proxy.batch_size,
    );
    let (mut c, mut p, mut y) = (Vec::new(), Vec::new(), Vec::new());
    let files = journals(prefix);
    assert!(files.len() >= 8, "{prefix}: {} journals", files.len());
    for f in files {
        let entries = ists_actors::search::memory::read_journal(&f).unwrap();
        let runs: Vec<(Arch, f64, f64)> = entries
            .iter()
            .filter(|e| e.score.is_some() && e.rung == 0 && e.steps > 0 && e.seconds > 0.0)
            .map(|e| {
                let a = Arch::from_spec(&e.arch, settings.search.space).unwrap();
                let per_step = (e.seconds / e.steps as f64).ln();
                (a, e.params as f64, per_step)
            })
            .collect();
        let logs: Vec<f64> = runs.iter().map(|r| r.2).collect();
        let Some(median) = ists::stats::median(&logs) else {
            continue;
        };
        for (a, params, per_step) in runs {
            c.push(cost.of(&a));
            p.push(params);
            y.push(per_step - median);
        }
    }
    let n = y.len();
    (
        ists::stats::kendall_tau(&c, &y).unwrap(),
        ists::stats::kendall_tau(&p, &y).unwrap(),
        n,
    )
}

#[test]
fn step_cost_ranks_measured_seconds_per_step_on_three_data_sets() {
    for (config, prefix) in [
        (
            "config/compare-metr-la-joint-prior.toml",
            "search-metr-la-joint-prior",
        ),
        (
            "config/compare-chickenpox-joint-prior.toml",
            "search-chickenpox-joint-prior",
        ),
        (
            "config/compare-pedalme-joint-prior.toml",
            "search-pedalme-joint-prior",
        ),
    ] {
        let (tau_cost, tau_params, n) = taus(config, prefix);
        println!("{prefix}: {n} proxy runs; Kendall tau with seconds per step: step cost {tau_cost:.3}, parameters {tau_params:.3}");
        assert!(
            tau_cost >= 0.4 && tau_cost > tau_params,
            "{prefix}: step cost tau {tau_cost:.3}, parameters {tau_params:.3} ({n} runs)"
        );
    }
}
