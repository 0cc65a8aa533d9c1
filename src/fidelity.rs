//! The proxy-fidelity study: how well each cheap proxy ranks architectures against a ground
//! truth of full trainings with several seeds, and what it costs. One row per architecture,
//! written as it completes (`bench/results/fidelity-<data>.jsonl` in BENCHMARKS.md), so a
//! study resumes after a kill and a rerun with more proxies, seeds or architectures computes
//! only what is missing. The figures of a finished study come from [`summarize`].

use crate::checkpoint::Checkpoint;
use crate::data::Prepared;
use crate::error::{Error, Result};
use crate::model::ModelConfig;
use crate::space::{Arch, ArchSpec};
use crate::stats::{kendall_tau, kendall_tau_interval, mean_sd, spearman_rho};
use crate::train::{
    grad_norm_at_init, proxy_nodes, proxy_run, train_full_resumable, ProxyConfig, TrainConfig,
    TrainData, Trained,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The score of a run that diverged or produced no validation score: ranked last by every
/// proxy and by the ground truth (JSON has no infinity).
pub const DIVERGED: f64 = 1e9;

/// A cheap proxy. Every score is "lower is predicted better".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyKind {
    /// Today's one-step tuning: `proxy.steps` steps, validation MAE.
    Step,
    /// Four times the steps, the first quarter a linear learning-rate warm-up.
    Long4xWarmup,
    /// The training-loss curve of the `step` run, `a + b ln(step)` fitted on its second half
    /// and extrapolated to the ground truth's step count.
    Extrapolated,
    /// A quarter of the nodes (a fixed random subset) for four times the steps: about the
    /// cost of `step`, seen for longer.
    Subset4x,
    /// The mean validation MAE of `step` under two seeds.
    Seeds2,
    /// Zero-cost: minus the parameter count (more capacity predicted better).
    Params,
    /// Zero-cost: minus the gradient norm at initialization on one batch (trainability).
    GradNorm,
}

impl ProxyKind {
    pub const ALL: [ProxyKind; 7] = [
        ProxyKind::Step,
        ProxyKind::Long4xWarmup,
        ProxyKind::Extrapolated,
        ProxyKind::Subset4x,
        ProxyKind::Seeds2,
        ProxyKind::Params,
        ProxyKind::GradNorm,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ProxyKind::Step => "step",
            ProxyKind::Long4xWarmup => "long4x_warmup",
            ProxyKind::Extrapolated => "extrapolated",
            ProxyKind::Subset4x => "subset4x",
            ProxyKind::Seeds2 => "seeds2",
            ProxyKind::Params => "params",
            ProxyKind::GradNorm => "grad_norm",
        }
    }

    /// Parses a comma-separated list of proxy names (`all` for every one).
    pub fn parse_list(text: &str) -> Result<Vec<ProxyKind>> {
        if text.trim() == "all" {
            return Ok(ProxyKind::ALL.to_vec());
        }
        text.split(',')
            .map(|t| {
                let t = t.trim();
                ProxyKind::ALL
                    .into_iter()
                    .find(|k| k.name() == t)
                    .ok_or_else(|| {
                        let known: Vec<&str> = ProxyKind::ALL.iter().map(|k| k.name()).collect();
                        Error::Config(format!(
                            "unknown proxy `{t}` (known: {}, or all)",
                            known.join(", ")
                        ))
                    })
            })
            .collect()
    }
}

/// One proxy's score for one architecture.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProxyScore {
    pub score: f64,
    pub seconds: f64,
}

/// One full training of the ground truth.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TruthRun {
    pub seed: u64,
    /// Average validation MAE of the best-validation weights.
    pub val_mae: f64,
    pub test_mae: f64,
    pub seconds: f64,
    pub best_epoch: usize,
}

/// One architecture of the study (a line of the results file).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub hash: String,
    pub arch: ArchSpec,
    pub params: i64,
    pub proxy: BTreeMap<String, ProxyScore>,
    pub truth: Vec<TruthRun>,
}

impl Row {
    /// The ground truth: mean validation MAE over the seeds trained.
    pub fn truth_mean(&self) -> f64 {
        mean_sd(&self.truth.iter().map(|t| t.val_mae).collect::<Vec<_>>()).0
    }
}

/// What the study trains and how: the settings every row of one results file shares.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StudySettings {
    pub dataset: String,
    pub model: ModelConfig,
    pub proxy: ProxyConfig,
    pub truth: TrainConfig,
    /// The joint space the designs were drawn from (resolved); left out of the fingerprint
    /// when inactive, so wiring-only files keep theirs.
    #[serde(default, skip_serializing_if = "wiring_only")]
    pub hyper: crate::hyper::HyperSpace,
    /// The kind of device the proxies and the ground truth ran on ("cpu" or "cuda",
    /// [`device_kind`]): their seconds, and so the cost shares, differ by kind, so one file
    /// holds one kind and shards from a GPU and from CPUs are not merged. "cpu" is inert in
    /// the fingerprint ([`canonical_settings`]), so files written before the key existed keep
    /// theirs.
    #[serde(default = "cpu_kind")]
    pub device: String,
}

fn cpu_kind() -> String {
    "cpu".into()
}

/// The kind of `device` as a study's settings record it: "cpu" or "cuda" (every CUDA index is
/// one kind: a study may move between the GPUs of one machine).
pub fn device_kind(device: tch::Device) -> String {
    match device {
        tch::Device::Cpu => "cpu",
        tch::Device::Cuda(_) => "cuda",
        tch::Device::Mps => "mps",
        tch::Device::Vulkan => "vulkan",
    }
    .into()
}

fn wiring_only(h: &crate::hyper::HyperSpace) -> bool {
    !h.is_active()
}

/// The data and settings the proxies and the ground truth run on.
pub struct Study {
    pub settings: StudySettings,
    data: TrainData,
    subset: TrainData,
}

impl Study {
    /// The study on `device` (the CPU, or a GPU: proxies and ground truth alike).
    pub fn new(prepared: &Prepared, settings: StudySettings, device: tch::Device) -> Result<Study> {
        // The proxies are compared on the whole graph, `subset4x` on its own quarter: a
        // search's node share has no place here (its `subset4x` row is what it measures).
        if settings.proxy.node_share != 1.0 {
            return Err(Error::Config(format!(
                "proxy.node_share = {}: a fidelity study scores every proxy on the whole graph \
                 and the node-subset proxy (subset4x, a quarter of the nodes for four times the \
                 steps) on its own; set proxy.node_share = 1 in the study's settings",
                settings.proxy.node_share
            )));
        }
        let data = TrainData::new(prepared, device)?;
        let nodes = proxy_nodes(prepared.n, 0.25, settings.proxy.seed)
            .ok_or_else(|| Error::Config("a quarter of the nodes is not a subset".into()))?;
        let subset = TrainData::new(&prepared.subset_nodes(&nodes)?, device)?;
        Ok(Study {
            settings,
            data,
            subset,
        })
    }

    /// Optimizer steps of one ground-truth training (before early stopping).
    pub fn truth_steps(&self) -> usize {
        let t = &self.settings.truth;
        let per_epoch = self.data.train.len().div_ceil(t.batch_size.max(1));
        let per_epoch = match t.max_batches_per_epoch {
            0 => per_epoch,
            m => per_epoch.min(m),
        };
        t.epochs * per_epoch
    }

    /// Computes every proxy in `kinds` that `row` lacks.
    pub fn fill_proxies(&self, arch: &Arch, row: &mut Row, kinds: &[ProxyKind]) -> Result<()> {
        let missing: Vec<ProxyKind> = kinds
            .iter()
            .copied()
            .filter(|k| !row.proxy.contains_key(k.name()))
            .collect();
        let (s, p) = (&self.settings, &self.settings.proxy);
        let needs_step = missing.iter().any(|k| {
            matches!(
                k,
                ProxyKind::Step | ProxyKind::Extrapolated | ProxyKind::Seeds2
            )
        });
        let mut step = None;
        if needs_step {
            let mut curve = Vec::new();
            let r = proxy_run(arch, &self.data, &s.model, p, &mut |l| curve.push(l))?;
            step = Some((r.val_mae.unwrap_or(DIVERGED), r.seconds, curve));
        }
        for kind in missing {
            let started = Instant::now();
            let score = match kind {
                ProxyKind::Step | ProxyKind::Extrapolated | ProxyKind::Seeds2 => {
                    let Some((val, secs, curve)) = &step else {
                        continue;
                    };
                    let (score, seconds) = match kind {
                        ProxyKind::Step => (*val, *secs),
                        ProxyKind::Extrapolated => (extrapolate(curve, self.truth_steps()), *secs),
                        _ => {
                            let other = ProxyConfig {
                                seed: p.seed + 1,
                                ..p.clone()
                            };
                            let r = proxy_eval_score(arch, &self.data, &s.model, &other)?;
                            ((val + r.0) / 2.0, secs + r.1)
                        }
                    };
                    row.proxy
                        .insert(kind.name().into(), ProxyScore { score, seconds });
                    continue;
                }
                ProxyKind::Long4xWarmup => {
                    let long = ProxyConfig {
                        steps: p.steps * 4,
                        warmup: p.steps,
                        ..p.clone()
                    };
                    proxy_eval_score(arch, &self.data, &s.model, &long)?.0
                }
                ProxyKind::Subset4x => {
                    let long = ProxyConfig {
                        steps: p.steps * 4,
                        ..p.clone()
                    };
                    proxy_eval_score(arch, &self.subset, &s.model, &long)?.0
                }
                // Counted when the row was made (`empty_row`): no second model is built.
                ProxyKind::Params => -(row.params as f64),
                ProxyKind::GradNorm => {
                    let g = grad_norm_at_init(arch, &self.data, &s.model, p.batch_size, p.seed)?;
                    if g.is_finite() {
                        -g
                    } else {
                        DIVERGED
                    }
                }
            };
            let seconds = started.elapsed().as_secs_f64();
            row.proxy
                .insert(kind.name().into(), ProxyScore { score, seconds });
        }
        Ok(())
    }

    /// One ground-truth training of `arch` with `seed`, keeping its epochs in `checkpoint`
    /// (and resuming from it) when given.
    pub fn truth(
        &self,
        arch: &Arch,
        seed: u64,
        checkpoint: Option<&Checkpoint>,
    ) -> Result<TruthRun> {
        let cfg = TrainConfig {
            seed,
            ..self.settings.truth.clone()
        };
        let never = std::sync::atomic::AtomicBool::new(false);
        let (report, _) = train_full_resumable(
            arch,
            &self.data,
            &self.settings.model,
            &cfg,
            &mut |_| {},
            &never,
            checkpoint,
        )?;
        let avg = |m: &Option<crate::metrics::MetricsTable>| {
            m.as_ref()
                .map(|m| m.average.mae)
                .filter(|v| v.is_finite())
                .unwrap_or(DIVERGED)
        };
        Ok(TruthRun {
            seed,
            val_mae: avg(&report.val),
            test_mae: avg(&report.test),
            seconds: report.seconds,
            best_epoch: report.best_epoch,
        })
    }

    /// A row for `arch` with nothing measured yet but its size.
    pub fn empty_row(&self, arch: &Arch) -> Result<Row> {
        let params = Trained::build(arch, &self.data, &self.settings.model, 0)?.params();
        Ok(Row {
            hash: arch.hash(),
            arch: arch.to_spec(),
            params,
            proxy: BTreeMap::new(),
            truth: Vec::new(),
        })
    }
}

/// Measures every architecture of `archs` under the proxies `kinds` and `seeds` ground-truth
/// seeds (`truth.seed`, `truth.seed + 1`, ...), taking what `results` already holds. It saves
/// after the proxies and after each ground-truth seed, not only after each architecture: one
/// design's two trainings can take an hour of a core, and a kill between them keeps what was
/// done (a rerun measures only what the row lacks). `progress` hears one line per step.
pub fn run_study(
    study: &Study,
    archs: &[Arch],
    kinds: &[ProxyKind],
    seeds: usize,
    results: &mut ResultsFile,
    progress: &mut dyn FnMut(String),
) -> Result<Vec<Row>> {
    let mut done: Vec<Row> = Vec::new();
    // The rows finished so far and the one being measured, as the file should hold them.
    let save = |done: &mut Vec<Row>, row: &Row, results: &ResultsFile| -> Result<()> {
        done.push(row.clone());
        let saved = results.save(done);
        done.pop();
        saved
    };
    for (i, arch) in archs.iter().enumerate() {
        let at = format!("architecture {}/{}", i + 1, archs.len());
        let mut row = match results.take(&arch.hash()) {
            Some(r) => r,
            None => study.empty_row(arch)?,
        };
        let before = row.clone();
        study.fill_proxies(arch, &mut row, kinds)?;
        if row.proxy != before.proxy {
            save(&mut done, &row, results)?;
            progress(format!("{at}: proxies scored"));
        }
        for k in 0..seeds as u64 {
            let seed = study.settings.truth.seed + k;
            if !row.truth.iter().any(|t| t.seed == seed) {
                let checkpoint = truth_checkpoint(study, results, arch, seed);
                let run = study.truth(arch, seed, checkpoint.as_ref())?;
                let line = format!(
                    "{at}: ground-truth seed {seed}: val MAE {:.4} ({:.0} s)",
                    run.val_mae, run.seconds
                );
                row.truth.push(run);
                save(&mut done, &row, results)?;
                if let Some(c) = &checkpoint {
                    // The run is in the file: its epochs' checkpoint is no longer needed.
                    c.discard();
                }
                progress(line);
            }
        }
        let line = format!(
            "{at}: {} ground truth {:.4}",
            if row == before {
                "taken over,"
            } else {
                "measured,"
            },
            row.truth_mean()
        );
        done.push(row);
        results.save(&done)?;
        progress(line);
    }
    Ok(done)
}

/// Where a ground-truth training keeps its state between epochs, so that a study killed
/// mid-training resumes after the last epoch: `<results>.checkpoints/<hash>-s<seed>.ckpt`
/// ([`Checkpoint::beside`]; removed once the run is in the file).
fn truth_checkpoint(
    study: &Study,
    results: &ResultsFile,
    arch: &Arch,
    seed: u64,
) -> Option<Checkpoint> {
    let key = serde_json::json!({"settings": study.settings, "hash": arch.hash(), "seed": seed});
    Checkpoint::beside(&results.path, &format!("{}-s{seed}", arch.hash()), &key)
}

/// Validation MAE (DIVERGED when none) and seconds of one proxy run.
fn proxy_eval_score(
    arch: &Arch,
    data: &TrainData,
    model: &ModelConfig,
    cfg: &ProxyConfig,
) -> Result<(f64, f64)> {
    let r = proxy_run(arch, data, model, cfg, &mut |_| {})?;
    Ok((r.val_mae.unwrap_or(DIVERGED), r.seconds))
}

/// Fits `loss = a + b ln(step)` (steps 1-based) to the second half of `curve` by least squares
/// and returns its value at step `at`. DIVERGED for a curve with a non-finite loss or fewer
/// than two points in its second half.
pub fn extrapolate(curve: &[f64], at: usize) -> f64 {
    let from = curve.len() / 2;
    let pts: Vec<(f64, f64)> = (from..curve.len())
        .map(|i| (((i + 1) as f64).ln(), curve[i]))
        .collect();
    if pts.len() < 2 || pts.iter().any(|(_, l)| !l.is_finite()) {
        return DIVERGED;
    }
    let n = pts.len() as f64;
    let mx = pts.iter().map(|p| p.0).sum::<f64>() / n;
    let my = pts.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let b = sxy / sxx;
    let v = my + b * ((at.max(1) as f64).ln() - mx);
    if v.is_finite() {
        v
    } else {
        DIVERGED
    }
}

/// The results file of a study and its settings fingerprint (`<file>.settings.json`).
pub struct ResultsFile {
    pub path: PathBuf,
    pub rows: Vec<Row>,
}

impl ResultsFile {
    /// Opens (or starts) the results at `path` for `settings`. A file written under other
    /// settings is refused; a torn last line (a kill mid-write) is dropped.
    pub fn open(path: &Path, settings: &StudySettings) -> Result<ResultsFile> {
        let fingerprint = serde_json::to_value(settings)
            .map_err(|e| Error::Config(format!("study settings: {e}")))?;
        check_fingerprint(path, &fingerprint)?;
        let rows = crate::jsonl::read(path).map_err(|msg| Error::File {
            path: path.into(),
            msg,
        })?;
        Ok(ResultsFile {
            path: path.into(),
            rows,
        })
    }

    /// The row of `hash`, if measured before.
    pub fn take(&mut self, hash: &str) -> Option<Row> {
        let i = self.rows.iter().position(|r| r.hash == hash)?;
        Some(self.rows.remove(i))
    }

    /// Takes over the rows of another results file of the same study (a shard run by another
    /// process or machine; its settings fingerprint must match): a design this file lacks is
    /// added, and a design both hold keeps the row with more ground-truth seeds (this file's
    /// on a tie). Returns how many rows were added or replaced. Nothing is written until
    /// [`ResultsFile::save`].
    pub fn take_over(&mut self, other: &Path, settings: &StudySettings) -> Result<usize> {
        if !other.exists() {
            return Err(Error::File {
                path: other.into(),
                msg: "no such results file to take rows from".into(),
            });
        }
        let other = ResultsFile::open(other, settings)?;
        let mut changed = 0;
        for row in other.rows {
            match self.rows.iter_mut().find(|r| r.hash == row.hash) {
                Some(mine) if mine.truth.len() >= row.truth.len() => {}
                Some(mine) => {
                    *mine = row;
                    changed += 1;
                }
                None => {
                    self.rows.push(row);
                    changed += 1;
                }
            }
        }
        Ok(changed)
    }

    /// Writes `rows` (then any rows of the file not among them) atomically: a temporary file,
    /// synced, renamed over the old one.
    pub fn save(&self, rows: &[Row]) -> Result<()> {
        let tmp = self.path.with_extension("jsonl.tmp");
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            for r in rows.iter().chain(&self.rows) {
                writeln!(f, "{}", serde_json::to_string(r)?)?;
            }
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        };
        write().map_err(|e| Error::io(&self.path, e))
    }
}

/// One process's share of a study split over several (`--shard K/N`): the designs whose
/// position in the study's list is `K - 1` modulo `N`. The list is the same in every process
/// (hand designs, then the seeded sample), so the shards are disjoint and cover it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// 1-based.
    pub index: usize,
    pub count: usize,
}

impl std::str::FromStr for Shard {
    type Err = Error;

    fn from_str(text: &str) -> Result<Shard> {
        let bad = || {
            Error::Config(format!(
                "shard {text:?}: expected K/N with 1 <= K <= N (e.g. 2/3)"
            ))
        };
        let (k, n) = text.split_once('/').ok_or_else(bad)?;
        let (index, count) = (
            k.trim().parse::<usize>().map_err(|_| bad())?,
            n.trim().parse::<usize>().map_err(|_| bad())?,
        );
        if index == 0 || index > count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl Shard {
    /// The designs of `archs` that belong to this shard, in order.
    pub fn select(&self, archs: &[Arch]) -> Vec<Arch> {
        archs
            .iter()
            .enumerate()
            .filter(|(i, _)| i % self.count == self.index - 1)
            .map(|(_, a)| a.clone())
            .collect()
    }
}

/// Ties the results file `path` to the settings that produced it: the first call writes
/// `<file>.settings.json`, later calls refuse other settings (rows measured under different
/// settings must not be mixed in one file). Both sides are compared in their canonical form
/// ([`canonical_settings`]), so a setting added later at a value that changes nothing does not
/// orphan the files written before it; a refusal names the keys that differ.
pub fn check_fingerprint(path: &Path, fingerprint: &serde_json::Value) -> Result<()> {
    check_fingerprint_pinning(path, fingerprint, None)
}

/// [`check_fingerprint`] with `pinned` a top-level key of settings that only some of a file's
/// rows depend on (the `[llm]` of LLM-instructed methods, in a comparison that also holds
/// random search): a call whose fingerprint lacks it does not compare it, and the first call
/// that has it writes it into the stored fingerprint, so that every later call that has it
/// must agree.
pub fn check_fingerprint_pinning(
    path: &Path,
    fingerprint: &serde_json::Value,
    pinned: Option<&str>,
) -> Result<()> {
    let fp_path = fingerprint_path(path);
    let fingerprint = canonical_settings(fingerprint);
    match read_fingerprint(path)? {
        Some(mut stored) => {
            let (mut old, mut new) = (stored.clone(), fingerprint.clone());
            let mut pin = None;
            if let Some(key) = pinned {
                match (old.get(key).is_some(), new.get(key).cloned()) {
                    (true, Some(_)) => {}
                    (false, Some(v)) => {
                        if let Some(o) = new.as_object_mut() {
                            o.remove(key);
                        }
                        pin = Some((key, v));
                    }
                    (_, None) => {
                        if let Some(o) = old.as_object_mut() {
                            o.remove(key);
                        }
                    }
                }
            }
            let keys = settings_differences(&old, &new);
            if !keys.is_empty() {
                return Err(Error::File {
                    path: fp_path,
                    msg: format!(
                        "holds results of other settings (differing: {}); pick another results \
                         file or remove both",
                        keys.join(", ")
                    ),
                });
            }
            if let (Some((key, v)), Some(o)) = (pin, stored.as_object_mut()) {
                o.insert(key.to_string(), v);
                write_fingerprint(&fp_path, &stored)?;
            }
            Ok(())
        }
        None => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            }
            write_fingerprint(&fp_path, &fingerprint)
        }
    }
}

fn write_fingerprint(fp_path: &Path, fingerprint: &serde_json::Value) -> Result<()> {
    let text =
        serde_json::to_string_pretty(fingerprint).map_err(|e| Error::Config(e.to_string()))?;
    std::fs::write(fp_path, text + "\n").map_err(|e| Error::io(fp_path, e))
}

/// The settings fingerprint stored beside results file `path` (canonical, as
/// [`check_fingerprint`] wrote it); `None` when there is none yet.
pub(crate) fn read_fingerprint(path: &Path) -> Result<Option<serde_json::Value>> {
    let fp_path = fingerprint_path(path);
    match std::fs::read_to_string(&fp_path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| Error::File {
                path: fp_path,
                msg: format!("damaged settings fingerprint: {e}"),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(&fp_path, e)),
    }
}

/// The settings as they act: in every training block (an object with a `schedule` key) the
/// schedule keys that change nothing are dropped: a constant schedule's cosine and step keys, a
/// zero warm-up, and `schedule = "constant"` itself; keys added after results were first
/// written are dropped at their inert values (`budget_seconds = 0`, a `hyper` space offering
/// nothing, `exploration = "sample"`, `ensemble = false`, `loss = "mae"`, `reserve = false`,
/// `optimization = "mutate"`, `refit = false`, `average_top = 0`, `prior = []`,
/// `historical_average = false`, `day_type = false`, `dropout = 0`, `highway = false`,
/// `prior_pool = 8`, `prior_cost = "ignore"`).
/// Settings written before those keys existed are the same settings.
pub fn canonical_settings(value: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    let inert = |k: &str, v: &Value| match k {
        "budget_seconds" => v.as_f64() == Some(0.0),
        "exploration" => v.as_str() == Some("sample"),
        "ensemble" => v.as_bool() == Some(false),
        // `final.train.loss`, added after studies had begun: MAE is what they trained on.
        "loss" => v.as_str() == Some("mae"),
        // `search.rungs.reserve`, added after studies had begun: off is how they ran.
        "reserve" => v.as_bool() == Some(false),
        // `search.optimization`, added after studies had begun: random offspring.
        "optimization" => v.as_str() == Some("mutate"),
        // `final.train.refit`, added after studies had begun: no refit.
        "refit" => v.as_bool() == Some(false),
        // `final.train.average_top`, added after studies had begun: the best epoch alone.
        "average_top" => v.as_u64() == Some(0),
        // `data.prepare.historical_average`, added after studies had begun: not an input.
        "historical_average" => v.as_bool() == Some(false),
        // `data.prepare.day_type`, added after studies had begun: days pooled.
        "day_type" => v.as_bool() == Some(false),
        // `model.dropout`, added after studies had begun: none.
        "dropout" => v.as_f64() == Some(0.0),
        // `model.highway`, added after studies had begun: none.
        "highway" => v.as_bool() == Some(false),
        // `proxy.node_share`, added after studies had begun: the whole graph.
        "node_share" => v.as_f64() == Some(1.0),
        // A study's `device`, added after studies had begun: they ran on CPUs.
        "device" => v.as_str() == Some("cpu"),
        // `search.prior`, added after studies had begun: no prior.
        "prior" => v.as_array().is_some_and(Vec::is_empty),
        // `search.prior_pool`, added after studies with a prior had begun: the 8 draws
        // that were fixed in the code before it became a setting.
        "prior_pool" => v.as_u64() == Some(8),
        // `search.prior_cost`, added after studies with a prior had begun: cost ignored.
        "prior_cost" => v.as_str() == Some("ignore"),
        "hyper" => v.as_object().is_some_and(|h| {
            ["hidden", "blocks", "lr_scale"].iter().all(|k| {
                h.get(*k)
                    .and_then(Value::as_array)
                    .is_some_and(Vec::is_empty)
            })
        }),
        _ => false,
    };
    match value {
        Value::Object(map) => {
            let mut out: serde_json::Map<String, Value> = map
                .iter()
                .filter(|(k, v)| !inert(k, v))
                .map(|(k, v)| (k.clone(), canonical_settings(v)))
                .collect();
            if let Some(schedule) = out
                .get("schedule")
                .and_then(Value::as_str)
                .map(str::to_owned)
            {
                if schedule != "cosine" {
                    out.remove("final_lr_ratio");
                }
                if schedule != "step" {
                    out.remove("step_epochs");
                    out.remove("gamma");
                }
                if schedule == "constant" {
                    out.remove("schedule");
                }
                if out.get("warmup_epochs").and_then(Value::as_u64) == Some(0) {
                    out.remove("warmup_epochs");
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical_settings).collect()),
        other => other.clone(),
    }
}

/// The dotted paths of the settings in which `old` and `new` differ as they act (both in
/// their [`canonical_settings`] form); empty when they are the same settings.
pub fn settings_differences(old: &serde_json::Value, new: &serde_json::Value) -> Vec<String> {
    let (old, new) = (canonical_settings(old), canonical_settings(new));
    let mut keys = Vec::new();
    if old != new {
        differing_keys("", &old, &new, &mut keys);
    }
    keys
}

/// The dotted paths at which `a` and `b` differ (a key present on one side only counts).
fn differing_keys(
    prefix: &str,
    a: &serde_json::Value,
    b: &serde_json::Value,
    out: &mut Vec<String>,
) {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                match (x.get(k), y.get(k)) {
                    (Some(v), Some(w)) => differing_keys(&path, v, w, out),
                    _ => out.push(path),
                }
            }
        }
        _ if a != b => out.push(if prefix.is_empty() {
            "(root)".into()
        } else {
            prefix.into()
        }),
        _ => {}
    }
}

/// The settings fingerprint beside results file `path`: `<path>.settings.json`.
pub(crate) fn fingerprint_path(path: &Path) -> PathBuf {
    crate::jsonl::beside(path, ".settings.json")
}

/// The bootstrap behind every interval of a [`Summary`]: 95% percentile intervals from 2,000
/// resamples of the designs, seeded so a summary is the same each time it is computed.
pub const TAU_INTERVAL_LEVEL: f64 = 0.95;
const TAU_INTERVAL_RESAMPLES: usize = 2000;
const TAU_INTERVAL_SEED: u64 = 0;

/// [`kendall_tau_interval`] with the study's settings ([`TAU_INTERVAL_LEVEL`]).
fn tau_interval(x: &[f64], y: &[f64]) -> Option<(f64, f64)> {
    kendall_tau_interval(
        x,
        y,
        TAU_INTERVAL_LEVEL,
        TAU_INTERVAL_RESAMPLES,
        TAU_INTERVAL_SEED,
    )
}

/// One proxy's agreement with the ground truth.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProxyFidelity {
    pub name: String,
    pub n: usize,
    pub kendall_tau: Option<f64>,
    /// A 95% bootstrap interval of `kendall_tau` over resamples of the designs
    /// ([`TAU_INTERVAL_LEVEL`]): how far the tau could move with another sample of designs.
    pub kendall_tau_interval: Option<(f64, f64)>,
    pub spearman_rho: Option<f64>,
    pub mean_seconds: f64,
    /// Mean proxy seconds over mean ground-truth seconds (one seed).
    pub cost_share: f64,
}

/// The figures of a study.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Summary {
    pub architectures: usize,
    /// Kendall tau between the first two ground-truth seeds: the best any proxy can reach.
    pub seed_ceiling_tau: Option<f64>,
    /// A 95% bootstrap interval of `seed_ceiling_tau`, as for a proxy's.
    pub seed_ceiling_interval: Option<(f64, f64)>,
    /// The same ceiling for a ground truth averaged over several seeds: for k = 1, 2, ...,
    /// Kendall tau between the mean of a design's first k seeds and the mean of its next k
    /// (seeds in ascending order), over the designs with at least 2k. It says how many seeds
    /// a ground truth needs before it ranks designs reproducibly (k = 1 is `seed_ceiling_tau`).
    pub seed_halves: Vec<SeedHalves>,
    pub truth_min: f64,
    pub truth_max: f64,
    pub truth_sd: f64,
    pub truth_mean_seconds: f64,
    pub proxies: Vec<ProxyFidelity>,
}

/// Agreement between two disjoint halves of the ground-truth seeds, `per_half` seeds each.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SeedHalves {
    pub per_half: usize,
    /// Designs with at least `2 * per_half` seeds.
    pub n: usize,
    pub kendall_tau: Option<f64>,
}

/// [`SeedHalves`] for every half size the rows allow.
fn seed_halves(rows: &[&Row]) -> Vec<SeedHalves> {
    let most = rows.iter().map(|r| r.truth.len()).max().unwrap_or(0);
    (1..=most / 2)
        .map(|k| {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            for r in rows.iter().filter(|r| r.truth.len() >= 2 * k) {
                let mut runs: Vec<&TruthRun> = r.truth.iter().collect();
                runs.sort_by_key(|t| t.seed);
                let half = |s: &[&TruthRun]| s.iter().map(|t| t.val_mae).sum::<f64>() / k as f64;
                a.push(half(&runs[..k]));
                b.push(half(&runs[k..2 * k]));
            }
            SeedHalves {
                per_half: k,
                n: a.len(),
                kendall_tau: kendall_tau(&a, &b),
            }
        })
        .collect()
}

/// Correlations of each proxy with the mean ground truth, over the rows that have both.
pub fn summarize(rows: &[Row]) -> Summary {
    let rows: Vec<&Row> = rows.iter().filter(|r| !r.truth.is_empty()).collect();
    let truth: Vec<f64> = rows.iter().map(|r| r.truth_mean()).collect();
    let two: Vec<&&Row> = rows.iter().filter(|r| r.truth.len() >= 2).collect();
    let first: Vec<f64> = two.iter().map(|r| r.truth[0].val_mae).collect();
    let second: Vec<f64> = two.iter().map(|r| r.truth[1].val_mae).collect();
    let seed_ceiling_tau = kendall_tau(&first, &second);
    let seed_ceiling_interval = tau_interval(&first, &second);
    let seed_halves = seed_halves(&rows);
    let truth_secs: Vec<f64> = rows
        .iter()
        .flat_map(|r| r.truth.iter().map(|t| t.seconds))
        .collect();
    let truth_mean_seconds = mean_sd(&truth_secs).0;
    let mut names: Vec<&str> = ProxyKind::ALL.iter().map(|k| k.name()).collect();
    for r in &rows {
        for k in r.proxy.keys() {
            if !names.contains(&k.as_str()) {
                names.push(k);
            }
        }
    }
    let proxies = names
        .into_iter()
        .filter_map(|name| {
            let (mut x, mut y, mut secs) = (Vec::new(), Vec::new(), Vec::new());
            for (r, t) in rows.iter().zip(&truth) {
                if let Some(p) = r.proxy.get(name) {
                    x.push(p.score);
                    y.push(*t);
                    secs.push(p.seconds);
                }
            }
            (!x.is_empty()).then(|| {
                let mean_seconds = mean_sd(&secs).0;
                ProxyFidelity {
                    name: name.to_string(),
                    n: x.len(),
                    kendall_tau: kendall_tau(&x, &y),
                    kendall_tau_interval: tau_interval(&x, &y),
                    spearman_rho: spearman_rho(&x, &y),
                    mean_seconds,
                    cost_share: mean_seconds / truth_mean_seconds,
                }
            })
        })
        .collect();
    let (_, truth_sd) = mean_sd(&truth);
    Summary {
        architectures: rows.len(),
        seed_ceiling_tau,
        seed_ceiling_interval,
        seed_halves,
        truth_min: truth.iter().copied().fold(f64::INFINITY, f64::min),
        truth_max: truth.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        truth_sd,
        truth_mean_seconds,
        proxies,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(hash: &str, truth: &[f64], proxies: &[(&str, f64)]) -> Row {
        Row {
            hash: hash.into(),
            arch: ArchSpec {
                space: None,
                nodes: None,
                edges: Vec::new(),
                hyper: None,
            },
            params: 0,
            proxy: proxies
                .iter()
                .map(|(n, s)| {
                    (
                        n.to_string(),
                        ProxyScore {
                            score: *s,
                            seconds: 1.0,
                        },
                    )
                })
                .collect(),
            truth: truth
                .iter()
                .enumerate()
                .map(|(i, v)| TruthRun {
                    seed: i as u64,
                    val_mae: *v,
                    test_mae: *v,
                    seconds: 10.0,
                    best_epoch: 1,
                })
                .collect(),
        }
    }

    #[test]
    fn summary_ranks_proxies_against_the_mean_truth() {
        let rows = vec![
            row("a", &[1.0, 1.2], &[("step", 3.0), ("params", -1.0)]),
            row("b", &[2.0, 1.9], &[("step", 4.0), ("params", -3.0)]),
            row("c", &[3.0, 3.1], &[("step", 5.0)]),
            row("d", &[], &[("step", 0.0)]),
        ];
        let s = summarize(&rows);
        assert_eq!(s.architectures, 3, "rows without ground truth are left out");
        assert_eq!(s.seed_ceiling_tau, Some(1.0));
        assert_eq!(s.seed_halves.len(), 1);
        assert_eq!(
            (s.seed_halves[0].n, s.seed_halves[0].kendall_tau),
            (3, Some(1.0))
        );
        let step = &s.proxies[0];
        assert_eq!((step.name.as_str(), step.n), ("step", 3));
        assert_eq!(step.kendall_tau, Some(1.0));
        assert!((step.cost_share - 0.1).abs() < 1e-12);
        let params = s.proxies.iter().find(|p| p.name == "params").unwrap();
        assert_eq!((params.n, params.kendall_tau), (2, Some(-1.0)));
        assert_eq!((s.truth_min, s.truth_max), (1.1, 3.05));
        // A perfect ranking's interval is the point; two designs give none.
        assert_eq!(step.kendall_tau_interval, Some((1.0, 1.0)));
        assert_eq!(s.seed_ceiling_interval, Some((1.0, 1.0)));
        assert_eq!(params.kendall_tau_interval, None);
    }

    #[test]
    fn averaged_seeds_are_compared_half_against_half() {
        // Seeds 0 and 1 disagree on the order of a and b; their means against those of seeds
        // 2 and 3 agree on every pair. Design d has only two seeds: in k = 1, not in k = 2.
        let rows = vec![
            row("a", &[1.0, 3.0, 1.9, 2.1], &[]),
            row("b", &[2.5, 2.0, 2.3, 2.3], &[]),
            row("c", &[4.0, 4.2, 4.1, 4.0], &[]),
            row("d", &[5.0, 5.0], &[]),
        ];
        let s = summarize(&rows);
        let h = &s.seed_halves;
        assert_eq!(h.len(), 2);
        assert_eq!((h[0].per_half, h[0].n), (1, 4));
        assert_eq!(h[0].kendall_tau, s.seed_ceiling_tau);
        assert!(h[0].kendall_tau.unwrap() < 1.0);
        assert_eq!((h[1].per_half, h[1].n, h[1].kendall_tau), (2, 3, Some(1.0)));
        // Seeds are paired in ascending order, whatever order the file lists them in.
        let mut shuffled = rows.clone();
        shuffled[0].truth.reverse();
        let t = summarize(&shuffled).seed_halves;
        assert_eq!(t[1].kendall_tau, Some(1.0));
        assert_eq!(t[0].kendall_tau, h[0].kendall_tau);
    }

    #[test]
    fn extrapolation_follows_a_log_curve() {
        let curve: Vec<f64> = (1..=20).map(|s| 5.0 - 0.5 * (s as f64).ln()).collect();
        let v = extrapolate(&curve, 400);
        assert!((v - (5.0 - 0.5 * 400f64.ln())).abs() < 1e-9, "{v}");
        assert_eq!(extrapolate(&[1.0, f64::NAN], 10), DIVERGED);
        assert_eq!(extrapolate(&[1.0], 10), DIVERGED);
    }

    #[test]
    fn proxy_lists_parse_and_name_the_unknown() {
        assert_eq!(ProxyKind::parse_list("all").unwrap().len(), 7);
        assert_eq!(
            ProxyKind::parse_list("step, params").unwrap(),
            vec![ProxyKind::Step, ProxyKind::Params]
        );
        let err = ProxyKind::parse_list("step,warp").unwrap_err().to_string();
        assert!(err.contains("unknown proxy `warp`"), "{err}");
    }

    /// Default settings of a study on data set "x".
    fn study_settings() -> StudySettings {
        StudySettings {
            dataset: "x".into(),
            model: ModelConfig::default(),
            proxy: ProxyConfig::default(),
            truth: TrainConfig::default(),
            hyper: Default::default(),
            device: device_kind(tch::Device::Cpu),
        }
    }

    #[test]
    fn results_resume_drop_a_torn_line_and_refuse_other_settings() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("res/fidelity-x.jsonl");
        let settings = study_settings();
        let f = ResultsFile::open(&path, &settings).unwrap();
        f.save(&[row("a", &[1.0], &[]), row("b", &[2.0], &[])])
            .unwrap();
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("{\"hash\":\"c\",\"ar");
        std::fs::write(&path, text).unwrap();
        let mut f = ResultsFile::open(&path, &settings).unwrap();
        assert_eq!(f.rows.len(), 2);
        assert_eq!(f.take("b").unwrap().truth[0].val_mae, 2.0);
        assert!(f.take("b").is_none());
        // Rows not handed back are kept after the given ones.
        f.save(&[row("z", &[3.0], &[])]).unwrap();
        let again = ResultsFile::open(&path, &settings).unwrap();
        let hashes: Vec<&str> = again.rows.iter().map(|r| r.hash.as_str()).collect();
        assert_eq!(hashes, ["z", "a"]);
        let other = StudySettings {
            dataset: "y".into(),
            ..settings
        };
        let err = ResultsFile::open(&path, &other).err().unwrap().to_string();
        assert!(err.contains("other settings"), "{err}");
        assert!(err.contains("differing: dataset"), "{err}");
    }

    /// A study killed between a design's two ground-truth trainings keeps the proxies and the
    /// first training in its file; the rerun trains only the missing seed.
    #[test]
    fn a_kill_between_ground_truth_seeds_loses_neither_proxies_nor_the_first_seed() {
        let p = crate::protocol::tests::wave();
        let settings = StudySettings {
            dataset: p.name.clone(),
            model: ModelConfig {
                hidden: 4,
                end_hidden: 8,
                ..ModelConfig::default()
            },
            proxy: ProxyConfig {
                steps: 2,
                batch_size: 8,
                ..ProxyConfig::default()
            },
            truth: TrainConfig {
                epochs: 1,
                batch_size: 32,
                max_batches_per_epoch: 2,
                ..TrainConfig::default()
            },
            hyper: Default::default(),
            device: device_kind(tch::Device::Cpu),
        };
        let study = Study::new(&p, settings.clone(), tch::Device::Cpu).unwrap();
        let arch = Arch::from_json(
            r#"{"edges":[{"from":0,"to":1,"op":"STT","spatial":"mix_gc","temporal":"gdcc"},{"from":1,"to":3,"op":"identity"}]}"#,
            crate::space::SpaceKind::Ists,
        )
        .unwrap();
        let kinds = [ProxyKind::Step, ProxyKind::Params];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fidelity-wave.jsonl");
        let first_seed = settings.truth.seed;
        // The "kill": the progress line of the first seed is heard after its save, and
        // unwinds out of the study there.
        let killed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut results = ResultsFile::open(&path, &settings).unwrap();
            let _ = run_study(
                &study,
                std::slice::from_ref(&arch),
                &kinds,
                2,
                &mut results,
                &mut |l| {
                    if l.contains(&format!("ground-truth seed {first_seed}:")) {
                        panic!("killed after {l}");
                    }
                },
            );
        }));
        assert!(killed.is_err());
        let mut results = ResultsFile::open(&path, &settings).unwrap();
        assert_eq!(results.rows.len(), 1);
        let kept = results.rows[0].clone();
        assert_eq!(kept.proxy.keys().collect::<Vec<_>>(), ["params", "step"]);
        assert_eq!(kept.truth.len(), 1);
        assert_eq!(kept.truth[0].seed, first_seed);
        let mut lines = Vec::new();
        let rows = run_study(&study, &[arch], &kinds, 2, &mut results, &mut |l| {
            lines.push(l)
        })
        .unwrap();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[0].contains(&format!("ground-truth seed {}:", first_seed + 1)),
            "{lines:?}"
        );
        assert!(lines[1].contains("measured,"), "{lines:?}");
        assert_eq!(rows[0].proxy, kept.proxy);
        assert_eq!(rows[0].truth[0], kept.truth[0]);
        assert_eq!(rows[0].truth[1].seed, first_seed + 1);
        let on_disk = ResultsFile::open(&path, &settings).unwrap();
        assert_eq!(on_disk.rows, rows);
        // Each training's epochs were kept beside the file until its run was in it.
        let checkpoints = crate::jsonl::beside(&path, ".checkpoints");
        assert_eq!(std::fs::read_dir(checkpoints).unwrap().count(), 0);
    }

    /// Shards split the list disjointly and cover it; a bad spelling is refused by name.
    #[test]
    fn shards_are_disjoint_and_cover_the_study() {
        use rand::SeedableRng;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let mut archs = Vec::new();
        Arch::fill_distinct(
            crate::space::SpaceKind::Ists,
            &Default::default(),
            &mut archs,
            7,
            &mut rng,
        );
        let shards: Vec<Shard> = ["1/3", "2/3", " 3 / 3 "]
            .iter()
            .map(|t| t.parse().unwrap())
            .collect();
        let mut seen: Vec<String> = shards
            .iter()
            .flat_map(|s| s.select(&archs))
            .map(|a| a.hash())
            .collect();
        assert_eq!(shards[0].select(&archs).len(), 3);
        assert_eq!(shards[2].select(&archs).len(), 2);
        seen.sort();
        let mut all: Vec<String> = archs.iter().map(|a| a.hash()).collect();
        all.sort();
        assert_eq!(seen, all);
        for bad in ["0/2", "3/2", "2", "a/b", "1/0", ""] {
            let err = bad.parse::<Shard>().err().unwrap().to_string();
            assert!(err.contains("K/N"), "{bad}: {err}");
        }
    }

    /// Taking over a shard's file adds its designs, prefers the row with more seeds, and
    /// refuses a missing file or one measured under other settings.
    #[test]
    fn a_shard_file_is_taken_over_by_seed_count() {
        let dir = tempfile::tempdir().unwrap();
        let (main, shard) = (dir.path().join("main.jsonl"), dir.path().join("s2.jsonl"));
        let settings = study_settings();
        let f = ResultsFile::open(&main, &settings).unwrap();
        f.save(&[row("a", &[1.0, 1.1], &[]), row("b", &[2.0], &[])])
            .unwrap();
        let g = ResultsFile::open(&shard, &settings).unwrap();
        g.save(&[
            row("a", &[9.0], &[]),
            row("b", &[2.5, 2.6], &[]),
            row("c", &[3.0], &[]),
        ])
        .unwrap();
        let mut f = ResultsFile::open(&main, &settings).unwrap();
        assert_eq!(f.take_over(&shard, &settings).unwrap(), 2);
        let means: Vec<(String, f64)> = f
            .rows
            .iter()
            .map(|r| (r.hash.clone(), r.truth_mean()))
            .collect();
        assert_eq!(means[0].0, "a");
        assert!((means[0].1 - 1.05).abs() < 1e-12, "{means:?}");
        assert!((means[1].1 - 2.55).abs() < 1e-12, "{means:?}");
        assert_eq!(means[2].0, "c");
        let missing = dir.path().join("none.jsonl");
        let err = f.take_over(&missing, &settings).err().unwrap().to_string();
        assert!(err.contains("none.jsonl"), "{err}");
        let other = StudySettings {
            dataset: "y".into(),
            ..settings.clone()
        };
        let err = f.take_over(&shard, &other).err().unwrap().to_string();
        assert!(err.contains("other settings"), "{err}");
        // A shard measured on a GPU is not merged into a CPU study: its seconds differ.
        let gpu = StudySettings {
            device: device_kind(tch::Device::Cuda(1)),
            ..settings.clone()
        };
        assert_eq!(gpu.device, "cuda");
        let on_gpu = dir.path().join("gpu.jsonl");
        ResultsFile::open(&on_gpu, &gpu)
            .unwrap()
            .save(&[row("d", &[4.0], &[])])
            .unwrap();
        let err = f.take_over(&on_gpu, &settings).err().unwrap().to_string();
        assert!(err.contains("differing: device"), "{err}");
        // A CPU study's fingerprint has no device key: files from before it still resume.
        let text = std::fs::read_to_string(fingerprint_path(&main)).unwrap();
        assert!(!text.contains("device"), "{text}");
    }

    /// A pinned key (a comparison's `[llm]`) is compared only between calls that both have it:
    /// the first call with it writes it into the stored fingerprint, a call without it (random
    /// search's) passes, and a call with other values is refused, naming them.
    #[test]
    fn a_pinned_key_is_written_by_its_first_call_and_then_holds() {
        use serde_json::json;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("search-x.jsonl");
        let stored = || {
            let text = std::fs::read_to_string(fingerprint_path(&path)).unwrap();
            serde_json::from_str::<serde_json::Value>(&text).unwrap()
        };
        let plain = json!({"search": {"budget": 3}});
        let llm = |t: f64| json!({"search": {"budget": 3}, "llm": {"temperature": t}});
        check_fingerprint_pinning(&path, &plain, Some("llm")).unwrap();
        assert_eq!(stored(), plain);
        check_fingerprint_pinning(&path, &llm(0.7), Some("llm")).unwrap();
        assert_eq!(stored(), llm(0.7), "the first call with the key pins it");
        check_fingerprint_pinning(&path, &plain, Some("llm")).unwrap();
        check_fingerprint_pinning(&path, &llm(0.7), Some("llm")).unwrap();
        let err = check_fingerprint_pinning(&path, &llm(0.5), Some("llm"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("differing: llm.temperature"), "{err}");
        // The other settings are compared whether or not the key is there.
        let other = json!({"search": {"budget": 4}, "llm": {"temperature": 0.7}});
        let err = check_fingerprint_pinning(&path, &other, Some("llm"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("differing: search.budget"), "{err}");
        let err = check_fingerprint_pinning(&path, &json!({"search": {"budget": 4}}), Some("llm"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("differing: search.budget"), "{err}");
        assert_eq!(stored(), llm(0.7), "a refused call writes nothing");
        // Unpinned, the key is a setting like any other.
        assert!(check_fingerprint(&path, &plain).is_err());
    }

    #[test]
    fn a_file_written_before_the_schedule_keys_existed_still_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fidelity-x.jsonl");
        let settings = study_settings();
        // The fingerprint as written before `final.train.schedule` and its keys existed.
        let mut old = serde_json::to_value(&settings).unwrap();
        let truth = old["truth"].as_object_mut().unwrap();
        for k in [
            "schedule",
            "warmup_epochs",
            "final_lr_ratio",
            "step_epochs",
            "gamma",
            "loss",
        ] {
            assert!(truth.remove(k).is_some(), "{k}");
        }
        std::fs::write(fingerprint_path(&path), old.to_string()).unwrap();
        ResultsFile::open(&path, &settings).unwrap();
        // Later keys at their inert values are no change either.
        let search = serde_json::json!({"budget": 3, "hyper": {"hidden": [], "blocks": [], "lr_scale": []}, "budget_seconds": 0.0, "exploration": "sample", "ensemble": false, "loss": "mae", "optimization": "mutate", "refit": false, "average_top": 0, "historical_average": false, "day_type": false, "dropout": 0.0, "highway": false, "prior_pool": 8, "prior_cost": "ignore"});
        assert_eq!(
            canonical_settings(&search),
            serde_json::json!({"budget": 3})
        );
        let joint = serde_json::json!({"hyper": {"hidden": [8], "blocks": [], "lr_scale": []}, "exploration": "diverse", "optimization": "guided", "prior_cost": "matched"});
        assert_eq!(canonical_settings(&joint), joint);
        // A schedule that acts is another setting, and the message says which keys.
        let mut cosine = settings.clone();
        cosine.truth.schedule = crate::train::Schedule::Cosine;
        cosine.truth.warmup_epochs = 1;
        let err = ResultsFile::open(&path, &cosine).err().unwrap().to_string();
        assert!(
            err.contains("truth.final_lr_ratio, truth.schedule, truth.warmup_epochs"),
            "{err}"
        );
        // So is a loss other than MAE.
        let mut mse = settings.clone();
        mse.truth.loss = crate::train::Loss::Mse;
        let err = ResultsFile::open(&path, &mse).err().unwrap().to_string();
        assert!(err.contains("truth.loss"), "{err}");
    }
}
