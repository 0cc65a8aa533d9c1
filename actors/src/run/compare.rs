//! Paired multi-seed comparison of search methods at equal budget (`ists baseline --seeds N
//! --results FILE`, the raw rows of BENCHMARKS.md's search-quality tables). For seed index
//! `k` every method runs with search, proxy and final-training seeds advanced by `k`, so the
//! methods are paired; one JSON line per method and seed is appended as soon as it exists, so
//! an interrupted comparison resumes, and each search runs in a run directory of its own
//! ([`run_search_method`]'s `run_dir`), so one killed mid-search resumes from its journal
//! rather than starting over. The statistics come from [`ists::stats`]. Each search's
//! row keeps its trajectory (every evaluation's cumulative seconds and steps, rung and score),
//! from which [`time_to_quality`] says when a search first held a design as good as another
//! method's final one, by the proxy's scores; [`run_anytime`] says it by full training, from
//! the finished search's journal (`ists baseline --anytime`). A finished search's journal is
//! also kept beside the results file ([`keep_journal`]), because the run directory lives under
//! `runs/`, which is not committed and does not outlive the machine it ran on.

use crate::run::summary::Summary;
use crate::search::supervisor::{run_search, SearchOptions};
use ists::config::{Backend, Mode, Settings};
use ists::memory::{MemoryBank, MemoryEntry};
use ists::space::Arch;
use ists::stats::{mean_sd, median, wilcoxon_less};
use ists::train::{train_full, TrainConfig, TrainData};
use serde::{Deserialize, Serialize};
use std::io::Write as _;
use std::path::{Path, PathBuf};

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
    /// Every evaluation of the search in journal order (empty for a fixed design and in rows
    /// written before trajectories were kept).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trajectory: Vec<Progress>,
    /// Candidates an earlier, interrupted session of this search had already evaluated (the
    /// search was resumed from its run directory; 0, and absent from the line, when it ran in
    /// one go).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub resumed: usize,
    /// Final trainings (seeds) kept from an earlier session instead of trained again; their
    /// seconds are in `seconds` (0, and absent from the line, when none were).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub final_kept: usize,
    /// Final trainings (seeds) copied from another method's identical one, the same design
    /// trained with the same seed and settings ([`FINALS_DIR`]); their seconds are in `seconds`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub final_shared: usize,
    /// What an LLM instructor's requests gave, so that a row says how much of its search the
    /// model decided (None, and absent from the line, for the offline instructor's methods and
    /// fixed designs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llm: Option<LlmUse>,
}

/// An LLM-instructed search's use of its model (from its summary; a resumed search's counts
/// are its last session's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlmUse {
    /// Requests sent, and those whose reply gave an accepted design, a valid thought or values.
    pub requests: usize,
    pub usable_replies: usize,
    /// Candidates the seeded offline instructor proposed because the model could not
    /// (`search.fallback`), and duplicates replaced by their nearest unexplored design.
    pub fallbacks: usize,
    pub adjusted: usize,
    /// Wall time spent waiting for replies (summed over concurrent requests).
    pub llm_seconds: f64,
}

impl LlmUse {
    fn of(s: &Summary) -> LlmUse {
        LlmUse {
            requests: s.requests,
            usable_replies: s.usable_replies,
            fallbacks: s.fallbacks,
            adjusted: s.adjusted,
            llm_seconds: s.llm_seconds,
        }
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// One evaluation of a search, with the compute spent up to and including it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Evaluation seconds of the search so far (the evaluations' own times summed: the wall
    /// time of a search with one evaluator, without the instructor's time).
    pub seconds: f64,
    /// Optimizer steps of the search so far (proxy runs and promotions).
    pub steps: u64,
    /// This evaluation's rung and score (None: it failed).
    pub rung: usize,
    pub score: Option<f64>,
}

/// The trajectory of a journal: its evaluations in order with cumulative seconds and steps.
pub fn trajectory(entries: &[ists::memory::MemoryEntry]) -> Vec<Progress> {
    let (mut seconds, mut steps) = (0.0, 0u64);
    entries
        .iter()
        .map(|e| {
            seconds += e.seconds.max(0.0);
            steps = steps.saturating_add(e.steps as u64);
            Progress {
                seconds,
                steps,
                rung: e.rung,
                score: e.score.filter(|s| s.is_finite()),
            }
        })
        .collect()
}

/// The best point of a trajectory: highest rung, then lowest score (the memory bank's order),
/// its first occurrence.
fn best_point(t: &[Progress]) -> Option<&Progress> {
    t.iter().filter(|p| p.score.is_some()).min_by(|a, b| {
        b.rung.cmp(&a.rung).then(
            a.score
                .unwrap_or(f64::MAX)
                .total_cmp(&b.score.unwrap_or(f64::MAX)),
        )
    })
}

/// When `method` first held a design as good as `against`'s final choice, per seed, beside
/// when `against` itself first held it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimeToQuality {
    pub seed: u64,
    /// Evaluation seconds and steps of `method` at that point (None: never within its budget).
    pub seconds: Option<f64>,
    pub steps: Option<u64>,
    /// When `against` first held its own final design (its time to quality), in evaluation
    /// seconds and steps, and its whole search.
    pub against_seconds: f64,
    pub against_steps: u64,
    pub against_total_seconds: f64,
}

impl TimeToQuality {
    /// `method`'s time to `against`'s final quality over `against`'s own (None: never
    /// reached). Searches that share their exploration (paired seeds) tie at 1 when the final
    /// design came from it.
    pub fn ratio(&self) -> Option<f64> {
        Some(self.seconds? / self.against_seconds.max(f64::MIN_POSITIVE))
    }

    /// The same in optimizer steps: exact, where evaluation seconds vary with the machine's
    /// load.
    pub fn steps_ratio(&self) -> Option<f64> {
        Some(self.steps? as f64 / self.against_steps.max(1) as f64)
    }
}

/// For each seed both searched: the first evaluation at which `method` holds a design whose
/// score is at least as good as `against`'s final best at that fidelity (a rung at least as
/// high, a score no worse). Judged by the searches' own scores, not by full training: what
/// each search knew at the time.
pub fn time_to_quality(runs: &[MethodRun], method: &str, against: &str) -> Vec<TimeToQuality> {
    let mut out = Vec::new();
    for r in runs.iter().filter(|r| r.method == method) {
        let Some(o) = runs
            .iter()
            .find(|o| o.method == against && o.seed == r.seed)
        else {
            continue;
        };
        let (Some(best), Some(last)) = (best_point(&o.trajectory), o.trajectory.last()) else {
            continue;
        };
        let (rung, score) = (best.rung, best.score.unwrap_or(f64::MAX));
        if out.iter().any(|t: &TimeToQuality| t.seed == r.seed) {
            continue;
        }
        let hit = r
            .trajectory
            .iter()
            .find(|p| p.rung >= rung && p.score.is_some_and(|s| s <= score));
        out.push(TimeToQuality {
            seed: r.seed,
            seconds: hit.map(|p| p.seconds),
            steps: hit.map(|p| p.steps),
            against_seconds: best.seconds,
            against_steps: best.steps,
            against_total_seconds: last.seconds,
        });
    }
    out.sort_by_key(|t| t.seed);
    out
}

/// Time to quality over the mean of the paired seeds ([`mean_time_to_quality`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MeanTimeToQuality {
    /// Paired seeds with a trajectory on both sides.
    pub seeds: usize,
    /// The rung the curves are read at: the one `against` chose on most seeds.
    pub rung: usize,
    /// `against`'s mean best score at that rung at the end: the quality to reach.
    pub target: f64,
    /// The optimizer steps at which `against`'s own mean curve first got there.
    pub against_steps: u64,
    /// The steps at which `method`'s mean curve first got there (None: never).
    pub steps: Option<u64>,
}

impl MeanTimeToQuality {
    /// `method`'s steps over `against`'s (None: never reached).
    pub fn steps_ratio(&self) -> Option<f64> {
        Some(self.steps? as f64 / self.against_steps.max(1) as f64)
    }
}

/// Time to quality read off the mean of the paired seeds instead of seed by seed: for each
/// method, the best score held at one rung by each step, averaged over the seeds both searched
/// (infinite until every seed holds one); `against`'s mean at its last step is the quality to
/// reach. One lucky run at the top rung decides a seed's [`time_to_quality`], and a seed where
/// `against` held its final design at the first promotion cannot go below 1; the mean curve
/// is moved less by either. The rung is the one `against`'s final design had on most seeds
/// (the higher on a tie). `scripts/time_to_quality.py` computes the same from a results file.
pub fn mean_time_to_quality(
    runs: &[MethodRun],
    method: &str,
    against: &str,
) -> Option<MeanTimeToQuality> {
    let pairs: Vec<(&MethodRun, &MethodRun)> = runs
        .iter()
        .filter(|o| o.method == against && !o.trajectory.is_empty())
        .filter_map(|o| {
            runs.iter()
                .find(|r| r.method == method && r.seed == o.seed && !r.trajectory.is_empty())
                .map(|r| (r, o))
        })
        .collect();
    let mut rungs: Vec<usize> = pairs
        .iter()
        .filter_map(|(_, o)| best_point(&o.trajectory).map(|p| p.rung))
        .collect();
    rungs.sort_unstable();
    let rung = rungs
        .iter()
        .copied()
        .max_by_key(|r| (rungs.iter().filter(|x| *x == r).count(), *r))?;
    // The curves change only where some evaluation ends: those steps are the grid.
    let mut grid: Vec<u64> = pairs
        .iter()
        .flat_map(|(r, o)| r.trajectory.iter().chain(&o.trajectory).map(|p| p.steps))
        .collect();
    grid.sort_unstable();
    grid.dedup();
    // `mine`: `method`'s curve, else `against`'s.
    let mean_curve = |mine: bool| -> Vec<f64> {
        let mut sum = vec![0.0; grid.len()];
        for (r, o) in &pairs {
            let mut best = f64::INFINITY;
            let mut points: Vec<(u64, f64)> = (if mine { r } else { o })
                .trajectory
                .iter()
                .filter(|p| p.rung == rung)
                .filter_map(|p| Some((p.steps, p.score?)))
                .collect();
            points.sort_by_key(|a| a.0);
            let mut next = points.iter().peekable();
            for (k, step) in grid.iter().enumerate() {
                while let Some((_, score)) = next.next_if(|(s, _)| s <= step) {
                    best = best.min(*score);
                }
                sum[k] += best;
            }
        }
        sum.iter().map(|s| s / pairs.len() as f64).collect()
    };
    let (mine, theirs) = (mean_curve(true), mean_curve(false));
    let target = *theirs.last()?;
    let first_at = |curve: &[f64]| curve.iter().position(|m| *m <= target).map(|k| grid[k]);
    Some(MeanTimeToQuality {
        seeds: pairs.len(),
        rung,
        target,
        against_steps: first_at(&theirs)?,
        steps: first_at(&mine),
    })
}

/// A method compared.
#[derive(Debug, Clone, PartialEq)]
pub enum Method {
    /// The offline instructor with exploration only: seeded uniform sampling.
    Random,
    /// The offline instructor with both stages.
    Offline,
    /// The offline instructor with both stages and max-min diverse exploration
    /// (`search.exploration = "diverse"`, whatever the configured rule).
    Diverse,
    /// The offline instructor with both stages and a surrogate-guided optimization stage
    /// (`search.optimization = "guided"`, whatever the configured rule).
    Guided,
    /// The offline instructor with both stages and an exploration stage ranked by earlier
    /// searches' banks (`search.exploration = "prior"`; `search.prior` must name them).
    Prior,
    /// An LLM instructor with both stages: the bundled local model or the configured
    /// OpenAI-compatible endpoint, in chain-of-thought or tree-of-thought mode. Its sampling
    /// seed (`llm.seed`, else `search.seed`) advances with the seed index like the others.
    Llm { backend: Backend, mode: Mode },
    /// A fixed architecture, trained like a search's final model.
    Hand { name: String, arch: Arch },
}

impl Method {
    pub fn name(&self) -> String {
        match self {
            Method::Random => "random".into(),
            Method::Offline => "offline".into(),
            Method::Diverse => "offline-diverse".into(),
            Method::Guided => "offline-guided".into(),
            Method::Prior => "offline-prior".into(),
            Method::Llm { backend, mode } => {
                let tot = if *mode == Mode::Tot { "-tot" } else { "" };
                format!("llm-{}{tot}", backend.name())
            }
            Method::Hand { name, .. } => format!("hand-{name}"),
        }
    }
}

impl Method {
    /// The method a results-file name stands for: `random`, `offline`, `offline-diverse`,
    /// `offline-guided`, `offline-prior`, `llm-local` or `llm-openai` (chain-of-thought; with
    /// `-tot`, tree-of-thought), or
    /// `hand-NAME` with the fixed design given by `hand` (None: the name is unknown there).
    pub fn parse(
        name: &str,
        hand: impl Fn(&str) -> Option<Result<Arch, String>>,
    ) -> Result<Method, String> {
        match name {
            "random" => Ok(Method::Random),
            "offline" => Ok(Method::Offline),
            "offline-diverse" => Ok(Method::Diverse),
            "offline-guided" => Ok(Method::Guided),
            "offline-prior" => Ok(Method::Prior),
            "llm-local" | "llm-local-tot" | "llm-openai" | "llm-openai-tot" => {
                let mode = if name.ends_with("-tot") {
                    Mode::Tot
                } else {
                    Mode::Cot
                };
                let backend = if name.starts_with("llm-local") {
                    Backend::Local
                } else {
                    Backend::Openai
                };
                Ok(Method::Llm { backend, mode })
            }
            _ => {
                let design = name.strip_prefix("hand-").ok_or_else(|| {
                    format!(
                        "unknown method '{name}' (expected random, offline, offline-diverse, \
                         offline-guided, offline-prior, llm-local, llm-local-tot, llm-openai, \
                         llm-openai-tot or hand-NAME)"
                    )
                })?;
                let arch = hand(design)
                    .ok_or_else(|| format!("method '{name}': no hand design named '{design}'"))??;
                Ok(Method::Hand {
                    name: design.to_string(),
                    arch,
                })
            }
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

/// The folder, beside a comparison's run directories, of the final trainings its searches
/// share ([`SearchOptions::finals`]).
pub const FINALS_DIR: &str = "compare-finals";

/// The shared folder of final trainings ([`FINALS_DIR`]) for a comparison's run directory
/// `run_dir`: its searches and its anytime readings ([`run_anytime`]) use the same one.
pub fn finals_dir(run_dir: &Path) -> Option<PathBuf> {
    run_dir.parent().map(|p| p.join(FINALS_DIR))
}

/// Runs a search method with seed index `k` (inside an actix system); with the search's
/// summary (whose first final result is the chosen model).
///
/// With `run_dir`, the search lives in that directory: a directory left by an interrupted
/// session of the same method and seed is resumed (its evaluations kept, the budget counting
/// them), so a comparison killed mid-search loses at most the evaluations in flight. A
/// directory whose settings snapshot differs from this method's settings is refused, naming
/// it, rather than mixed in. Its final trainings are shared through [`FINALS_DIR`] beside it
/// (counted in the row's `seconds` as if trained; `final_shared`). Without, a fresh
/// timestamped run directory.
pub async fn run_search_method(
    base: &Settings,
    method: &Method,
    k: u64,
    run_dir: Option<&Path>,
) -> Result<(MethodRun, Summary), String> {
    let mut cfg = seeded(base, k);
    cfg.llm.backend = Backend::Offline;
    match method {
        Method::Random => {
            // Random search: exploration only, by uniform sampling whatever the instructed
            // search's exploration rule.
            cfg.search.exploration_share = 1.0;
            cfg.search.exploration = ists::config::Exploration::Sample;
        }
        Method::Offline => {}
        Method::Diverse => cfg.search.exploration = ists::config::Exploration::Diverse,
        Method::Guided => cfg.search.optimization = ists::config::Optimization::Guided,
        Method::Prior => {
            if cfg.search.prior.is_empty() {
                return Err(
                    "method offline-prior needs search.prior: the journals of earlier \
                            searches on other tasks"
                        .into(),
                );
            }
            cfg.search.exploration = ists::config::Exploration::Prior
        }
        Method::Llm { backend, mode } => {
            cfg.llm.backend = *backend;
            cfg.search.mode = *mode;
            // Paired like the other seeds: seed index k samples the model differently, and
            // the same k again the same way where the server honours a seed. Each request adds
            // its number to the seed, so the seed indices lie 2^20 apart: their requests never
            // share a seed.
            let first = base.llm.seed.unwrap_or(base.search.seed);
            cfg.llm.seed = Some(first.wrapping_add(k << 20));
        }
        Method::Hand { .. } => return Err("a fixed design is not a search".into()),
    }
    cfg.final_train.top_k = cfg.final_train.top_k.max(1);
    let opts = match run_dir {
        Some(dir) => SearchOptions {
            // The methods of a seed often choose the same design: its final trainings are
            // then done once, by whichever method gets there first.
            finals: finals_dir(dir),
            ..search_dir(&mut cfg, dir)?
        },
        None => SearchOptions::default(),
    };
    let summary = run_search(cfg, opts, std::future::pending())
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
    let journal = std::path::Path::new(&summary.run_dir).join("journal.jsonl");
    let entries = crate::search::memory::read_journal(&journal)
        .map_err(|e| format!("{}: {e}", journal.display()))?;
    let run = MethodRun {
        method: method.name(),
        seed: k,
        seconds: summary.seconds,
        evaluations: summary.evaluated,
        eval_steps: summary.eval_steps,
        val_mae,
        test_mae,
        trajectory: trajectory(&entries),
        resumed: summary.resumed,
        final_kept: summary.final_kept,
        final_shared: summary.final_shared,
        llm: matches!(method, Method::Llm { .. }).then(|| LlmUse::of(&summary)),
    };
    Ok((run, summary))
}

/// Where a comparison's search runs: `dir` itself, resumed when an earlier session left its
/// settings snapshot there (and refused when that snapshot is not `cfg`), created otherwise.
fn search_dir(cfg: &mut Settings, dir: &Path) -> Result<SearchOptions, String> {
    // The snapshot records where the run directory lives; set it before comparing.
    cfg.runs_dir = dir.parent().map(Path::to_path_buf).unwrap_or_default();
    let snapshot = dir.join("config.json");
    if snapshot.exists() {
        let text = std::fs::read_to_string(&snapshot)
            .map_err(|e| format!("{}: {e}", snapshot.display()))?;
        let old: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", snapshot.display()))?;
        // Through text, as the snapshot was written: an f32 setting reads back as its
        // shortest decimal, not as the f64 widening `to_value` would give.
        let new: serde_json::Value = serde_json::to_string(&*cfg)
            .and_then(|t| serde_json::from_str(&t))
            .map_err(|e| e.to_string())?;
        let differing = ists::fidelity::settings_differences(&old, &new);
        if !differing.is_empty() {
            return Err(format!(
                "{}: holds a search under other settings than this method and seed \
                 (differing: {}); remove the directory to start it afresh",
                dir.display(),
                differing.join(", ")
            ));
        }
        tracing::info!(run_dir = %dir.display(), "resuming the search an earlier session left");
        return Ok(SearchOptions {
            resume: Some(dir.to_path_buf()),
            ..SearchOptions::default()
        });
    }
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("{}: not a usable run directory name", dir.display()))?;
    Ok(SearchOptions {
        name: Some(name.to_string()),
        ..SearchOptions::default()
    })
}

/// What [`train_like_final`] measured: means over the seeds (NaN where a training diverged).
struct LikeFinal {
    /// Mean validation score by the final training's loss (MAE, or RMSE for `mse`): what a
    /// search chooses among its `final.top_k` by ([`ists::train::Loss::score`]).
    choice: f64,
    val_mae: f64,
    test_mae: f64,
    /// Seconds the trainings took.
    seconds: f64,
}

/// Trains `arch` like a search's final model under `cfg` (already seeded): `final.seeds`
/// seeds, the epoch chosen on validation.
///
/// With `finals` (a comparison's shared folder, [`FINALS_DIR`]), each seed's training is
/// looked up there first, under the key a search's own final training has: one a search or an
/// earlier reading of this program made is used as it is (its seconds counted as if trained
/// here), and each new one is added as soon as it ends, so a kill loses at most the training
/// under way. A training that cannot be shared is only logged: the result stands.
fn train_like_final(
    cfg: &Settings,
    arch: &Arch,
    data: &TrainData,
    finals: Option<&Path>,
) -> Result<LikeFinal, String> {
    use crate::search::evaluate::{share_final, shared_final};
    let (mut vals, mut tests, mut seconds) = (Vec::new(), Vec::new(), 0.0);
    let mut choices = Vec::new();
    let loss = cfg.final_train.train.loss;
    for j in 0..cfg.final_train.seeds.max(1) as u64 {
        let train = TrainConfig {
            seed: cfg.final_train.train.seed + j,
            ..cfg.final_train.train.clone()
        };
        let report = match finals.and_then(|f| shared_final(f, arch, &train, cfg)) {
            Some(r) => {
                tracing::info!(
                    seed = train.seed,
                    "final training taken from the shared folder"
                );
                seconds += r.seconds.max(0.0);
                r
            }
            None => {
                let started = std::time::Instant::now();
                let (r, trained) = train_full(arch, data, cfg.final_model(), &train, &mut |_| {})
                    .map_err(|e| e.to_string())?;
                seconds += started.elapsed().as_secs_f64();
                if let Some(f) = finals {
                    if let Err(e) = share_final(f, arch, &train, cfg, &r, &trained, data) {
                        tracing::warn!("{e}");
                    }
                }
                r
            }
        };
        choices.push(report.val_score(loss).unwrap_or(f64::NAN));
        vals.push(report.val.map_or(f64::NAN, |m| m.average.mae));
        tests.push(report.test.map_or(f64::NAN, |m| m.average.mae));
    }
    Ok(LikeFinal {
        choice: mean_sd(&choices).0,
        val_mae: mean_sd(&vals).0,
        test_mae: mean_sd(&tests).0,
        seconds,
    })
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
    cfg.check_final_width(arch)
        .map_err(|e| format!("hand-{name}: {e}"))?;
    let LikeFinal {
        val_mae,
        test_mae,
        seconds,
        ..
    } = train_like_final(&cfg, arch, data, None)?;
    if !(val_mae.is_finite() && test_mae.is_finite()) {
        return Err(format!("hand-{name} seed +{k}: training diverged"));
    }
    Ok(MethodRun {
        method: format!("hand-{name}"),
        seed: k,
        seconds,
        evaluations: 0,
        eval_steps: 0,
        val_mae,
        test_mae,
        trajectory: Vec::new(),
        resumed: 0,
        final_kept: 0,
        final_shared: 0,
        llm: None,
    })
}

/// The name of [`run_anytime`]'s row: the method's, then `@` and the share of the reference's
/// compute (`offline-prior@0.3`).
pub fn anytime_name(method: &str, fraction: f64) -> String {
    format!("{method}@{fraction}")
}

/// The optimizer steps an anytime cut at `fraction` of `reference_steps` allows (rounded down).
pub fn anytime_limit(reference_steps: u64, fraction: f64) -> u64 {
    (reference_steps as f64 * fraction).floor() as u64
}

/// What a search held once it had spent `limit` optimizer steps: its memory bank built from
/// the journal's evaluations in order, up to the last one that ends within `limit` (a
/// promotion replaces its design's lower-rung entry, as in the search), with the number of
/// those evaluations and the steps they took.
pub fn held_at(entries: &[MemoryEntry], limit: u64) -> (MemoryBank, usize, u64) {
    let mut bank = MemoryBank::new();
    let (mut steps, mut evaluations) = (0u64, 0usize);
    for e in entries {
        let next = steps.saturating_add(e.steps as u64);
        if next > limit {
            break;
        }
        steps = next;
        evaluations += 1;
        bank.insert(e.clone());
    }
    (bank, evaluations, steps)
}

/// Whether a journal can say what its search held after `limit` steps: it must cover the
/// steps up to the cut, or the whole search (`searched`: the row's `eval_steps`) when the
/// search spent fewer. A journal that ends sooner (a search stopped early, a kept prefix of
/// one: scripts/journal_prefix.py) would silently stand for a search that did less, so it is
/// refused, naming the steps it covers and the steps the cut needs.
pub fn journal_reaches(entries: &[MemoryEntry], limit: u64, searched: u64) -> Result<(), String> {
    let covered = entries
        .iter()
        .fold(0u64, |s, e| s.saturating_add(e.steps as u64));
    let needed = limit.min(searched);
    if covered < needed {
        return Err(format!(
            "the journal covers {covered} optimizer steps of the search's {searched}, and the \
             cut at {limit} needs {needed}: it is partial (a search stopped early, or a kept \
             prefix), so it cannot say what the search held then"
        ));
    }
    Ok(())
}

/// Anytime quality: the model a search would have handed back had it been stopped after
/// `fraction` of the optimizer steps `reference` spent (another method's whole search under the
/// same seed, e.g. random search's), trained like its final model. `own` is the finished
/// search's row and `entries` its journal; the design held then ([`held_at`]: the
/// `final.top_k` best, highest rung first, the one with the best mean validation MAE over
/// `final.seeds` trainings, RMSE under `final.train.loss = "mse"`) is trained with the seed
/// index's final-training seeds, as the search's own final model was. Judged by full training
/// rather than by the proxy's scores: a search's best proxy score is the luckiest of its runs,
/// which an early point of a search cannot match however good its designs are.
///
/// A journal that does not reach the cut ([`journal_reaches`]) is refused here, so no caller
/// can read a partial journal as the whole search. With `finals` (the comparison's shared
/// folder, [`FINALS_DIR`]) each training is taken from there when a search or an earlier
/// reading made it, and added there when made, so a reading killed mid-row resumes from its
/// finished trainings.
pub fn run_anytime(
    base: &Settings,
    own: &MethodRun,
    reference: &MethodRun,
    entries: &[MemoryEntry],
    fraction: f64,
    data: &TrainData,
    finals: Option<&Path>,
) -> Result<MethodRun, String> {
    let (method, k) = (own.method.as_str(), own.seed);
    let name = anytime_name(method, fraction);
    if !(fraction > 0.0 && fraction <= 1.0) {
        return Err(format!("{name}: the share must be in (0, 1]"));
    }
    if reference.seed != k {
        return Err(format!(
            "{name} seed +{k}: the reference row ({}) is seed +{}; the cut compares searches \
             under the same seed",
            reference.method, reference.seed
        ));
    }
    let cfg = seeded(base, k);
    let limit = anytime_limit(reference.eval_steps, fraction);
    journal_reaches(entries, limit, own.eval_steps)
        .map_err(|e| format!("{name} seed +{k}: skipped, {e}"))?;
    let (bank, ended, steps) = held_at(entries, limit);
    let held = bank.best(cfg.final_train.top_k.max(1));
    if held.is_empty() {
        return Err(format!(
            "{name} seed +{k}: no design was scored within {limit} steps"
        ));
    }
    // Chosen as the search chooses its final model: by the final training's own criterion.
    let (mut chosen, mut trained): (Option<LikeFinal>, f64) = (None, 0.0);
    for e in held {
        let arch = Arch::from_spec(&e.arch, cfg.search.space)
            .map_err(|err| format!("{name} seed +{k}: candidate {}: {err}", e.id))?;
        let r = train_like_final(&cfg, &arch, data, finals)?;
        trained += r.seconds;
        let usable = r.choice.is_finite() && r.val_mae.is_finite() && r.test_mae.is_finite();
        if usable && chosen.as_ref().is_none_or(|c| r.choice < c.choice) {
            chosen = Some(r);
        }
    }
    let LikeFinal {
        val_mae, test_mae, ..
    } = chosen.ok_or_else(|| format!("{name} seed +{k}: every final training diverged"))?;
    // The search's evaluation seconds up to the cut, then the final trainings'.
    let searched = ended
        .checked_sub(1)
        .and_then(|last| trajectory(entries).get(last).map(|p| p.seconds))
        .unwrap_or(0.0);
    let seconds = searched + trained;
    Ok(MethodRun {
        method: name,
        seed: k,
        seconds,
        // Candidates, as in a search's row (the journal also holds their promotions).
        evaluations: bank.len(),
        eval_steps: steps,
        val_mae,
        test_mae,
        // Left out so that time to quality reads the searches themselves, not these cuts.
        trajectory: Vec::new(),
        resumed: 0,
        final_kept: 0,
        final_shared: 0,
        llm: None,
    })
}

/// Where a comparison keeps the journal of `method`'s finished search under seed index `k`:
/// `<results>.journals/<method>-seed<k>.jsonl`, beside the rows and committed with them, so
/// that a reading which needs the designs a search scored (`--anytime`) can be made from any
/// checkout, not only on the machine whose `runs/` still holds the run directory.
pub fn kept_journal_path(results: &Path, method: &str, k: u64) -> PathBuf {
    ists::jsonl::beside(results, ".journals").join(format!("{method}-seed{k}.jsonl"))
}

/// Copies the journal of a finished search from its run directory to [`kept_journal_path`]
/// (a temporary name, then a rename, so a kill never leaves half a journal) and returns where.
pub fn keep_journal(
    run_dir: &Path,
    results: &Path,
    method: &str,
    k: u64,
) -> Result<PathBuf, String> {
    let from = run_dir.join("journal.jsonl");
    let to = kept_journal_path(results, method, k);
    let copy = || -> std::io::Result<()> {
        if let Some(dir) = to.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = to.with_extension("jsonl.tmp");
        std::fs::copy(&from, &tmp)?;
        std::fs::rename(&tmp, &to)
    };
    copy().map_err(|e| {
        format!(
            "keeping the journal {} as {}: {e}",
            from.display(),
            to.display()
        )
    })?;
    Ok(to)
}

/// The journal to read for `method`'s finished search under seed index `k`: the kept copy
/// ([`kept_journal_path`]), written when the row was, else the run directory's own (rows
/// written before journals were kept); `None` when neither exists.
pub fn finished_journal(run_dir: &Path, results: &Path, method: &str, k: u64) -> Option<PathBuf> {
    [
        kept_journal_path(results, method, k),
        run_dir.join("journal.jsonl"),
    ]
    .into_iter()
    .find(|p| p.is_file())
}

/// The rows of a results file (none when it does not exist). A torn last line is dropped.
pub fn read_runs(path: &Path) -> Result<Vec<MethodRun>, String> {
    ists::jsonl::read(path)
}

/// Appends one row and syncs it, unless the file already has a row of the same method and
/// seed: then nothing is written and the answer is `Ok(false)`. Two `ists baseline` processes
/// over overlapping seeds each skip the rows they find at a seed's start, but one that reaches
/// a seed the other has just finished resumes the finished search from its run directory and
/// would append its row a second time, which the paired statistics would count twice. The
/// check and the append hold an exclusive `flock` on the file (released when it is closed), so
/// two processes' appends neither interleave nor both pass the check. A last line cut short
/// by a kill (which [`read_runs`] drops) is cut off first, in place, so the row starts on a
/// line of its own; in place because a waiting process holds the same file open.
pub fn append_run(path: &Path, run: &MethodRun) -> Result<bool, String> {
    use std::io::{Read, Seek};
    let err = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let line = serde_json::to_string(run).map_err(|e| e.to_string())?;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)
        .map_err(|e| err(&e))?;
    #[cfg(unix)]
    rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| err(&std::io::Error::from(e)))?;
    let mut text = Vec::new();
    f.rewind()
        .and_then(|_| f.read_to_end(&mut text))
        .map_err(|e| err(&e))?;
    let rows: Vec<MethodRun> = ists::jsonl::parse(&String::from_utf8_lossy(&text), path)?;
    if rows
        .iter()
        .any(|r| r.method == run.method && r.seed == run.seed)
    {
        return Ok(false);
    }
    if !text.is_empty() && !text.ends_with(b"\n") {
        // A torn last line: keep everything up to the last complete one.
        let keep = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        f.set_len(keep as u64).map_err(|e| err(&e))?;
    }
    writeln!(f, "{line}")
        .and_then(|_| f.sync_data())
        .map_err(|e| err(&e))?;
    Ok(true)
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
    /// Median over the pairs with trajectories of `method`'s evaluation seconds over
    /// `against`'s (None without such pairs). Equal steps are not equal seconds when one
    /// method favours wider designs; the table shows by how much.
    pub seconds_ratio: Option<f64>,
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
        seconds_ratio: median(
            &pairs
                .iter()
                .filter_map(|(a, b)| {
                    let (x, y) = (a.trajectory.last()?.seconds, b.trajectory.last()?.seconds);
                    (y > 0.0).then_some(x / y)
                })
                .collect::<Vec<_>>(),
        ),
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
            trajectory: Vec::new(),
            resumed: 0,
            final_kept: 0,
            final_shared: 0,
            llm: None,
        }
    }

    fn point(seconds: f64, steps: u64, rung: usize, score: Option<f64>) -> Progress {
        Progress {
            seconds,
            steps,
            rung,
            score,
        }
    }

    fn evaluation(id: usize, rung: usize, steps: usize, score: f64) -> MemoryEntry {
        MemoryEntry {
            id,
            hash: format!("h{id}"),
            arch: Arch::from_json(
                r#"{"edges":[{"from":0,"to":3,"op":"identity"}]}"#,
                ists::space::SpaceKind::Ists,
            )
            .unwrap()
            .to_spec(),
            score: Some(score),
            status: ists::train::EvalStatus::Ok,
            stage: ists::memory::Stage::Exploration,
            params: 10,
            seconds: 1.0,
            rung,
            steps,
            first_loss: None,
            last_loss: None,
            reasoning: None,
            proposal: None,
        }
    }

    /// A journal of three 30-step proxy runs (candidates 0, 1, 2 scoring 0.6, 0.5, 0.7), then
    /// the given (candidate, score) promotions of 90 steps, in order.
    fn proxy_runs_then(promoted: &[(usize, f64)]) -> Vec<MemoryEntry> {
        let runs = [(0, 0.6), (1, 0.5), (2, 0.7)].map(|(id, score)| evaluation(id, 0, 30, score));
        let climbs = promoted
            .iter()
            .map(|&(id, score)| evaluation(id, 1, 90, score));
        runs.into_iter().chain(climbs).collect()
    }

    #[test]
    fn held_at_is_the_bank_of_the_evaluations_that_ended_within_the_steps() {
        // Three proxy runs of 30 steps, then candidates 0 and 1 promoted (90 steps each).
        let journal = proxy_runs_then(&[(0, 0.55), (1, 0.45)]);
        let best = |limit: u64| {
            let (bank, n, steps) = held_at(&journal, limit);
            let top = bank.best(1).first().map(|e| (e.id, e.rung));
            (top, n, steps)
        };
        assert_eq!(best(10), (None, 0, 0));
        // The third run ends at 90: not within 89.
        assert_eq!(best(89), (Some((1, 0)), 2, 60));
        // A promotion outranks a better proxy score, as in the search's own choice.
        assert_eq!(best(180), (Some((0, 1)), 4, 180));
        assert_eq!(best(269), (Some((0, 1)), 4, 180));
        assert_eq!(best(270), (Some((1, 1)), 5, 270));
        assert_eq!(best(u64::MAX), (Some((1, 1)), 5, 270));
        assert_eq!(anytime_name("offline-prior", 0.3), "offline-prior@0.3");
        assert_eq!(anytime_name("random", 1.0), "random@1");
    }

    /// A journal answers for a cut only if it covers the steps up to it (or the whole search,
    /// when the search spent fewer); a shorter one is refused with both step counts.
    #[test]
    fn a_partial_journal_cannot_answer_for_a_later_cut() {
        // Three proxy runs of 30 steps, then a promotion of 90: 180 steps in all.
        let journal = proxy_runs_then(&[(1, 0.45)]);
        // The whole search's journal answers any cut, also one past its end.
        assert_eq!(journal_reaches(&journal, 100, 180), Ok(()));
        assert_eq!(journal_reaches(&journal, 900, 180), Ok(()));
        // A kept prefix of a longer search answers for cuts it covers only.
        assert_eq!(journal_reaches(&journal, 180, 900), Ok(()));
        let err = journal_reaches(&journal, 270, 900).unwrap_err();
        assert!(
            err.starts_with("the journal covers 180 optimizer steps of the search's 900")
                && err.contains("the cut at 270 needs 270")
                && err.contains("partial"),
            "{err}"
        );
        assert!(journal_reaches(&journal[..3], 180, 180).is_err());
        assert!(journal_reaches(&[], 30, 900).is_err());
        assert_eq!(journal_reaches(&[], 0, 0), Ok(()));
    }

    /// A finished search's journal is kept beside the results file, byte for byte; a reading
    /// finds the kept copy first, the run directory's when there is none, and neither when
    /// both are gone; a missing run directory is an error naming the journal it looked for.
    #[test]
    fn a_finished_searchs_journal_is_kept_beside_the_results() {
        let tmp = tempfile::tempdir().unwrap();
        let results = tmp.path().join("bench").join("search-x.jsonl");
        let run_dir = tmp
            .path()
            .join("runs")
            .join("compare-search-x-random-seed3");
        assert_eq!(finished_journal(&run_dir, &results, "random", 3), None);
        let err = keep_journal(&run_dir, &results, "random", 3).unwrap_err();
        assert!(err.contains("compare-search-x-random-seed3"), "{err}");
        std::fs::create_dir_all(&run_dir).unwrap();
        let text = "{\"id\":0}\n{\"id\":1}\n";
        std::fs::write(run_dir.join("journal.jsonl"), text).unwrap();
        assert_eq!(
            finished_journal(&run_dir, &results, "random", 3),
            Some(run_dir.join("journal.jsonl"))
        );
        let kept = keep_journal(&run_dir, &results, "random", 3).unwrap();
        assert_eq!(
            kept,
            tmp.path()
                .join("bench")
                .join("search-x.jsonl.journals")
                .join("random-seed3.jsonl")
        );
        assert_eq!(std::fs::read_to_string(&kept).unwrap(), text);
        assert_eq!(
            finished_journal(&run_dir, &results, "random", 3),
            Some(kept.clone())
        );
        std::fs::remove_dir_all(&run_dir).unwrap();
        assert_eq!(
            finished_journal(&run_dir, &results, "random", 3),
            Some(kept)
        );
        assert_eq!(finished_journal(&run_dir, &results, "random", 4), None);
    }

    #[test]
    fn methods_parse_from_their_row_names_and_unknown_ones_are_named() {
        let gwn = Arch::from_json(
            r#"{"edges":[{"from":0,"to":3,"op":"identity"}]}"#,
            ists::space::SpaceKind::Ists,
        )
        .unwrap();
        let hand = |name: &str| (name == "gwn").then(|| Ok(gwn.clone()));
        for name in [
            "random",
            "offline",
            "offline-diverse",
            "offline-guided",
            "offline-prior",
            "llm-local",
            "llm-local-tot",
            "llm-openai",
            "llm-openai-tot",
            "hand-gwn",
        ] {
            assert_eq!(Method::parse(name, hand).unwrap().name(), name);
        }
        assert_eq!(
            Method::parse("llm-local-tot", hand).unwrap(),
            Method::Llm {
                backend: Backend::Local,
                mode: Mode::Tot
            }
        );
        // The offline instructor is its own methods, not an LLM's.
        assert!(Method::parse("llm-offline", hand).is_err());
        let e = Method::parse("bayes", hand).unwrap_err();
        assert!(
            e.contains("unknown method 'bayes'") && e.contains("offline-diverse"),
            "{e}"
        );
        let e = Method::parse("hand-resnet", hand).unwrap_err();
        assert_eq!(e, "method 'hand-resnet': no hand design named 'resnet'");
        let broken = |_: &str| Some(Err("config/x-arch.json: cycle".to_string()));
        assert_eq!(
            Method::parse("hand-x", broken).unwrap_err(),
            "config/x-arch.json: cycle"
        );
    }

    #[test]
    fn time_to_quality_finds_the_first_design_as_good_at_that_fidelity() {
        let mut random = run("random", 0, 1.0);
        // Its final best: rung 1, score 0.8 (a better rung-0 score does not outrank it).
        random.trajectory = vec![
            point(1.0, 30, 0, Some(0.9)),
            point(2.0, 60, 0, Some(0.7)),
            point(5.0, 150, 1, Some(0.8)),
            point(10.0, 300, 0, Some(0.95)),
        ];
        let mut fast = run("offline", 0, 1.0);
        fast.trajectory = vec![
            point(1.0, 30, 0, Some(0.5)),
            point(2.0, 60, 0, None),
            point(3.0, 150, 1, Some(0.79)),
            point(9.0, 300, 1, Some(0.6)),
        ];
        let mut never = run("offline", 1, 1.0);
        never.trajectory = vec![point(4.0, 30, 1, Some(0.81))];
        let mut random1 = run("random", 1, 1.0);
        random1.trajectory = vec![point(8.0, 30, 1, Some(0.8))];
        let runs = vec![random, fast, never, random1, run("offline", 2, 1.0)];
        let t = time_to_quality(&runs, "offline", "random");
        assert_eq!(t.len(), 2, "seed 2 has no partner");
        assert_eq!((t[0].seconds, t[0].steps), (Some(3.0), Some(150)));
        // Random first held its final design (rung 1, 0.8) at 5 s, 150 steps.
        assert_eq!((t[0].against_seconds, t[0].against_steps), (5.0, 150));
        assert_eq!(t[0].against_total_seconds, 10.0);
        assert_eq!(t[0].ratio(), Some(0.6));
        assert_eq!(t[0].steps_ratio(), Some(1.0));
        assert_eq!((t[1].seconds, t[1].ratio()), (None, None));
    }

    #[test]
    fn mean_time_to_quality_reads_the_mean_of_the_seeds_curves() {
        // Two seeds (scores exact in binary). Random at rung 1: 1.0 at step 120 then 0.875
        // at 300 on seed 0, 0.625 at 150 on seed 1: mean 0.8125 from step 150, 0.75 from 300.
        // Offline: 0.75 at step 90 on seed 0; 0.875 at 60, then 0.75 at 240 on seed 1: mean
        // 0.8125 from step 90 (both seeds hold one), 0.75 from 240. A better rung-0 score
        // counts for nothing.
        let mut r0 = run("random", 0, 1.0);
        r0.trajectory = vec![
            point(1.0, 30, 0, Some(0.125)),
            point(2.0, 120, 1, Some(1.0)),
            point(3.0, 300, 1, Some(0.875)),
        ];
        let mut r1 = run("random", 1, 1.0);
        r1.trajectory = vec![point(1.0, 150, 1, Some(0.625))];
        let mut o0 = run("offline", 0, 1.0);
        o0.trajectory = vec![point(1.0, 90, 1, Some(0.75)), point(2.0, 100, 1, None)];
        let mut o1 = run("offline", 1, 1.0);
        o1.trajectory = vec![
            point(1.0, 60, 1, Some(0.875)),
            point(2.0, 240, 1, Some(0.75)),
        ];
        let unpaired = run("offline", 2, 1.0);
        let runs = vec![r0, r1, o0, o1, unpaired];
        let m = mean_time_to_quality(&runs, "offline", "random").unwrap();
        assert_eq!((m.seeds, m.rung), (2, 1));
        assert_eq!(m.target, 0.75);
        assert_eq!((m.against_steps, m.steps), (300, Some(240)));
        assert_eq!(m.steps_ratio(), Some(0.8));
        // Never reached: a method whose curve stays above.
        let mut slow = runs.clone();
        for r in slow.iter_mut().filter(|r| r.method == "offline") {
            for p in &mut r.trajectory {
                p.score = p.score.map(|s| s + 0.5);
            }
        }
        let m = mean_time_to_quality(&slow, "offline", "random").unwrap();
        assert_eq!((m.steps, m.steps_ratio()), (None, None));
        // No pair with trajectories: nothing to read.
        assert_eq!(mean_time_to_quality(&runs[..2], "offline", "random"), None);
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
        assert_eq!(
            p.seconds_ratio, None,
            "no trajectories, no seconds to compare"
        );
        assert!(paired(&runs, "offline", "nobody").is_none());
    }

    #[test]
    fn the_seconds_ratio_is_the_median_over_pairs_with_trajectories() {
        let with = |method: &str, seed: u64, seconds: f64| MethodRun {
            trajectory: vec![
                point(seconds / 2.0, 50, 0, Some(1.0)),
                point(seconds, 100, 0, Some(1.0)),
            ],
            ..run(method, seed, 1.0)
        };
        let runs = vec![
            with("random", 0, 10.0),
            with("offline", 0, 12.0),
            with("random", 1, 10.0),
            with("offline", 1, 20.0),
            with("random", 2, 10.0),
            with("offline", 2, 9.0),
            // A pair without a trajectory on one side does not count.
            run("random", 3, 1.0),
            with("offline", 3, 1000.0),
        ];
        let p = paired(&runs, "offline", "random").unwrap();
        assert_eq!(p.n, 4);
        // Ratios 1.2, 2.0, 0.9: the median is 1.2.
        assert!(
            (p.seconds_ratio.unwrap() - 1.2).abs() < 1e-12,
            "{:?}",
            p.seconds_ratio
        );
        // An even count takes the middle two's mean: 1.2 and 2.0 without seed 2.
        let p = paired(&runs[..4], "offline", "random").unwrap();
        assert!(
            (p.seconds_ratio.unwrap() - 1.6).abs() < 1e-12,
            "{:?}",
            p.seconds_ratio
        );
    }

    #[test]
    fn rows_round_trip_and_a_torn_line_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r/search-x.jsonl");
        assert!(append_run(&path, &run("random", 0, 1.0)).unwrap());
        assert!(append_run(&path, &run("offline", 0, 0.5)).unwrap());
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("{\"method\":\"ran");
        std::fs::write(&path, text).unwrap();
        let rows = read_runs(&path).unwrap();
        assert_eq!(rows, vec![run("random", 0, 1.0), run("offline", 0, 0.5)]);
        assert!(read_runs(&dir.path().join("none.jsonl"))
            .unwrap()
            .is_empty());
        // The next row does not land on the torn line: it is cut off, and the file reads whole.
        assert!(append_run(&path, &run("random", 1, 0.9)).unwrap());
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("\"ran{"), "{text}");
        assert_eq!(read_runs(&path).unwrap().len(), 3);
    }

    #[test]
    fn a_row_already_in_the_file_is_not_appended_twice() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("search-x.jsonl");
        assert!(append_run(&path, &run("random", 2, 1.0)).unwrap());
        // Another process's row of the same method and seed (the finished search resumed),
        // even with a different result, is refused; other methods and seeds are not.
        assert!(!append_run(&path, &run("random", 2, 0.7)).unwrap());
        assert!(append_run(&path, &run("offline", 2, 0.7)).unwrap());
        assert!(append_run(&path, &run("random", 3, 0.7)).unwrap());
        assert_eq!(
            read_runs(&path).unwrap(),
            vec![
                run("random", 2, 1.0),
                run("offline", 2, 0.7),
                run("random", 3, 0.7)
            ]
        );
    }
}
