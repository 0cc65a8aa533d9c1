//! Paired multi-seed comparison of search methods at equal budget (`ists baseline --seeds N
//! --results FILE`, the raw rows of BENCHMARKS.md's search-quality tables). For seed index
//! `k` every method runs with search, proxy and final-training seeds advanced by `k`, so the
//! methods are paired; one JSON line per method and seed is appended as soon as it exists, so
//! an interrupted comparison resumes. The statistics come from [`ists::stats`].

use crate::run::summary::Summary;
use crate::search::supervisor::{run_search, SearchOptions};
use ists::config::{Backend, Settings};
use ists::space::Arch;
use ists::stats::{mean_sd, wilcoxon_less};
use ists::train::{train_full, TrainConfig, TrainData};
use serde::{Deserialize, Serialize};
use std::io::Write as _;
use std::path::Path;

/// One method's result under one seed (a line of `bench/results/search-<data>.jsonl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodRun {
    pub method: String,
    /// The seed index `k` (every seed of the run is the configured one + k).
    pub seed: u64,
    /// Wall time of the whole method: search and final training.
    pub seconds: f64,
    /// Candidates evaluated (0 for a fixed design).
    pub evaluations: usize,
    /// Optimizer steps spent scoring candidates (proxy and promotions): the search's compute.
    #[serde(default)]
    pub eval_steps: u64,
    /// Mean validation and test MAE over `final.seeds` of the chosen (fully trained) model.
    pub val_mae: f64,
    pub test_mae: f64,
}

/// A method compared.
#[derive(Debug, Clone, PartialEq)]
pub enum Method {
    /// The offline instructor with exploration only: seeded sampling.
    Random,
    /// The offline instructor with both stages.
    Offline,
    /// A fixed architecture, trained like a search's final model.
    Hand { name: String, arch: Arch },
}

impl Method {
    pub fn name(&self) -> String {
        match self {
            Method::Random => "random".into(),
            Method::Offline => "offline".into(),
            Method::Hand { name, .. } => format!("hand-{name}"),
        }
    }
}

/// The settings of seed index `k`.
pub fn seeded(base: &Settings, k: u64) -> Settings {
    let mut s = base.clone();
    s.search.seed += k;
    s.proxy.seed += k;
    s.final_train.train.seed += k;
    s
}

/// Runs a search method with seed index `k` (inside an actix system); with the search's
/// summary (whose first final result is the chosen model).
pub async fn run_search_method(
    base: &Settings,
    method: &Method,
    k: u64,
) -> Result<(MethodRun, Summary), String> {
    let mut cfg = seeded(base, k);
    cfg.llm.backend = Backend::Offline;
    match method {
        Method::Random => cfg.search.exploration_share = 1.0,
        Method::Offline => {}
        Method::Hand { .. } => return Err("a fixed design is not a search".into()),
    }
    cfg.final_train.top_k = cfg.final_train.top_k.max(1);
    let summary = run_search(cfg, SearchOptions::default(), std::future::pending())
        .await
        .map_err(|e| e.to_string())?;
    let chosen = summary.final_results.first().ok_or_else(|| {
        format!(
            "{} seed +{k}: the search trained no final model",
            method.name()
        )
    })?;
    let (Some(val_mae), Some(test_mae)) = (chosen.mean_val_mae, chosen.mean_test_mae) else {
        return Err(format!(
            "{} seed +{k}: the final model has no score",
            method.name()
        ));
    };
    let run = MethodRun {
        method: method.name(),
        seed: k,
        seconds: summary.seconds,
        evaluations: summary.evaluated,
        eval_steps: summary.eval_steps,
        val_mae,
        test_mae,
    };
    Ok((run, summary))
}

/// Trains a fixed design like a search's final model (`final.seeds` seeds) with seed index `k`.
pub fn run_hand_design(
    base: &Settings,
    name: &str,
    arch: &Arch,
    data: &TrainData,
    k: u64,
) -> Result<MethodRun, String> {
    let cfg = seeded(base, k);
    let started = std::time::Instant::now();
    let (mut vals, mut tests) = (Vec::new(), Vec::new());
    for j in 0..cfg.final_train.seeds.max(1) as u64 {
        let train = TrainConfig {
            seed: cfg.final_train.train.seed + j,
            ..cfg.final_train.train.clone()
        };
        let (r, _) = train_full(arch, data, cfg.final_model(), &train, &mut |_| {})
            .map_err(|e| e.to_string())?;
        vals.push(r.val.map_or(f64::NAN, |m| m.average.mae));
        tests.push(r.test.map_or(f64::NAN, |m| m.average.mae));
    }
    let (val_mae, test_mae) = (mean_sd(&vals).0, mean_sd(&tests).0);
    if !(val_mae.is_finite() && test_mae.is_finite()) {
        return Err(format!("hand-{name} seed +{k}: training diverged"));
    }
    Ok(MethodRun {
        method: format!("hand-{name}"),
        seed: k,
        seconds: started.elapsed().as_secs_f64(),
        evaluations: 0,
        eval_steps: 0,
        val_mae,
        test_mae,
    })
}

/// The rows of a results file (none when it does not exist). A torn last line is dropped.
pub fn read_runs(path: &Path) -> Result<Vec<MethodRun>, String> {
    ists::jsonl::read(path)
}

/// Appends one row and syncs it.
pub fn append_run(path: &Path, run: &MethodRun) -> Result<(), String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let line = serde_json::to_string(run).map_err(|e| e.to_string())?;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| writeln!(f, "{line}").and_then(|_| f.sync_data()))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// A method against a reference over the seeds both have (lower test MAE is better).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Paired {
    pub method: String,
    pub against: String,
    pub n: usize,
    pub mean: f64,
    pub sd: f64,
    pub against_mean: f64,
    pub against_sd: f64,
    pub wins: usize,
    pub ties: usize,
    pub losses: usize,
    /// One-sided Wilcoxon signed-rank p-value that `method` is better.
    pub p: f64,
    /// Mean compute (eval steps) of each: equal compute is checked, not assumed.
    pub steps: f64,
    pub against_steps: f64,
}

/// Pairs `method` with `against` by seed.
pub fn paired(runs: &[MethodRun], method: &str, against: &str) -> Option<Paired> {
    let mut pairs: Vec<(&MethodRun, &MethodRun)> = runs
        .iter()
        .filter(|r| r.method == method)
        .filter_map(|r| {
            Some((
                r,
                runs.iter()
                    .find(|o| o.method == against && o.seed == r.seed)?,
            ))
        })
        .collect();
    pairs.sort_by_key(|(r, _)| r.seed);
    pairs.dedup_by_key(|(r, _)| r.seed);
    if pairs.is_empty() {
        return None;
    }
    let x: Vec<f64> = pairs.iter().map(|(a, _)| a.test_mae).collect();
    let y: Vec<f64> = pairs.iter().map(|(_, b)| b.test_mae).collect();
    let (mean, sd) = mean_sd(&x);
    let (against_mean, against_sd) = mean_sd(&y);
    let steps = |v: Vec<f64>| mean_sd(&v).0;
    Some(Paired {
        method: method.into(),
        against: against.into(),
        n: pairs.len(),
        mean,
        sd,
        against_mean,
        against_sd,
        wins: x.iter().zip(&y).filter(|(a, b)| a < b).count(),
        ties: x.iter().zip(&y).filter(|(a, b)| a == b).count(),
        losses: x.iter().zip(&y).filter(|(a, b)| a > b).count(),
        p: wilcoxon_less(&x, &y),
        steps: steps(pairs.iter().map(|(a, _)| a.eval_steps as f64).collect()),
        against_steps: steps(pairs.iter().map(|(_, b)| b.eval_steps as f64).collect()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(method: &str, seed: u64, test_mae: f64) -> MethodRun {
        MethodRun {
            method: method.into(),
            seed,
            seconds: 1.0,
            evaluations: 4,
            eval_steps: 100,
            val_mae: test_mae,
            test_mae,
        }
    }

    #[test]
    fn pairs_by_seed_and_counts_wins_ties_losses() {
        let runs = vec![
            run("random", 0, 1.0),
            run("offline", 0, 0.9),
            run("random", 1, 1.0),
            run("offline", 1, 1.0),
            run("random", 2, 1.0),
            run("offline", 2, 1.1),
            run("offline", 3, 0.1),
        ];
        let p = paired(&runs, "offline", "random").unwrap();
        assert_eq!(p.n, 3, "seed 3 has no partner");
        assert_eq!((p.wins, p.ties, p.losses), (1, 1, 1));
        assert!((p.mean - 1.0).abs() < 1e-12 && (p.against_mean - 1.0).abs() < 1e-12);
        // d = -0.1, +0.1 (the tie dropped): W- = 1.5 of ranks 1.5, 1.5; P(W- >= 1.5) = 3/4.
        assert!((p.p - 0.75).abs() < 1e-12, "{}", p.p);
        assert_eq!(p.steps, 100.0);
        assert!(paired(&runs, "offline", "nobody").is_none());
    }

    #[test]
    fn rows_round_trip_and_a_torn_line_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r/search-x.jsonl");
        append_run(&path, &run("random", 0, 1.0)).unwrap();
        append_run(&path, &run("offline", 0, 0.5)).unwrap();
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("{\"method\":\"ran");
        std::fs::write(&path, text).unwrap();
        let rows = read_runs(&path).unwrap();
        assert_eq!(rows, vec![run("random", 0, 1.0), run("offline", 0, 0.5)]);
        assert!(read_runs(&dir.path().join("none.jsonl"))
            .unwrap()
            .is_empty());
    }
}
