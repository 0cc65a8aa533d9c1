//! The instance level's evaluations: a candidate or a promotion scored by the evaluator pool
//! (one retry on a restarted evaluator) and recorded in the journal, and the final full
//! training of the top candidates with several seeds, chosen on validation (with
//! `final.ensemble`, each candidate's ensemble of its seeds is scored and reported too). A
//! final training is done once: a resumed run keeps those its earlier sessions finished, and
//! searches given a shared folder (a comparison's methods) copy each other's identical ones.

use super::stage::Wiring;
use crate::messages::*;
use crate::run::summary::{FinalResult, SeedScore, Summary};
use ists::checkpoint::Checkpoint;
use ists::config::Settings;
use ists::ensemble::{Ensemble, EnsembleMetrics};
use ists::memory::{MemoryEntry, Stage};
use ists::space::Arch;
use ists::train::{EvalStatus, Loss, TrainConfig, TrainReport};

/// One evaluation to run: a new candidate (rung 0) or a promotion.
pub(super) struct Job {
    pub(super) candidate: usize,
    pub(super) arch: Arch,
    pub(super) stage: Stage,
    pub(super) rung: usize,
    /// Proxy steps of a promotion (None = the configured proxy).
    pub(super) steps: Option<usize>,
    /// The instructor's reasoning for the design (first evaluation only).
    pub(super) reasoning: Option<String>,
    /// The proposal that made the design (first evaluation only; [`MemoryEntry::proposal`]).
    pub(super) proposal: Option<usize>,
}

/// Evaluates a candidate (one retry on a restarted evaluator after a fault) and records it.
pub(super) async fn evaluate(
    w: &Wiring,
    job: Job,
) -> Result<(MemoryEntry, Option<String>), String> {
    let Job {
        candidate,
        arch,
        stage,
        rung,
        steps,
        reasoning,
        proposal,
    } = job;
    let msg = Evaluate {
        candidate,
        arch: arch.clone(),
        steps,
    };
    let mut outcome = w.evaluators.evaluate(msg.clone()).await;
    // The kind of the fault that was retried, if one was.
    let mut retried = None;
    if let EvalOutcome::Failed { kind, .. } = &outcome {
        retried = Some(kind.clone());
        outcome = w.evaluators.evaluate(msg).await;
    }
    let entry = match outcome {
        EvalOutcome::Report(r) => MemoryEntry {
            id: candidate,
            hash: arch.hash(),
            arch: arch.to_spec(),
            score: r.val_mae,
            status: r.status,
            stage,
            params: r.params,
            seconds: r.seconds,
            rung,
            steps: r.steps,
            first_loss: Some(r.first_loss),
            last_loss: Some(r.last_loss),
            reasoning,
            proposal,
        },
        EvalOutcome::Failed { kind, message } => MemoryEntry {
            id: candidate,
            hash: arch.hash(),
            arch: arch.to_spec(),
            score: None,
            status: EvalStatus::Failed { kind, message },
            stage,
            params: 0,
            seconds: 0.0,
            rung,
            steps: 0,
            first_loss: None,
            last_loss: None,
            reasoning,
            proposal,
        },
    };
    match w.record.send(Record(entry.clone())).await {
        Ok(Ok(_)) => Ok((entry, retried)),
        Ok(Err(e)) => Err(e),
        Err(e) => Err(e.to_string()),
    }
}

/// Trains the `final.top_k` best candidates with `final.seeds` seeds each; the candidate with
/// the best mean validation score (MAE, or RMSE under `final.train.loss = "mse"`) comes first
/// in `summary.final_results` and its best seed's model is exported to `RUN_DIR/model`. With
/// `final.ensemble` (and two seeds or more), each candidate's seeds' forecasts are averaged into
/// a running sum (the models are not kept) and the ensemble's metrics reported in its result;
/// the choice stays on the seeds' mean.
pub(super) async fn final_training(w: &Wiring, s: &Settings, summary: &mut Summary) {
    if s.final_train.top_k == 0 {
        return;
    }
    let Ok(memory) = w.get_memory.send(GetMemory).await else {
        return;
    };
    let seeds = s.final_train.seeds.max(1) as u64;
    let single = s.final_train.top_k == 1 && seeds == 1;
    let ensemble = s.final_train.ensemble && seeds >= 2;
    let mut results = Vec::new();
    for e in memory.best.iter().take(s.final_train.top_k) {
        let Ok(arch) = Arch::from_spec(&e.arch, s.search.space) else {
            continue;
        };
        let mut runs = Vec::new();
        let mut members = Ensemble::new();
        for k in 0..seeds {
            let seed = s.final_train.train.seed + k;
            let dir = w.run.path.join(format!("model-c{}-s{seed}", e.id));
            let config = TrainConfig {
                seed,
                ..s.final_train.train.clone()
            };
            let name = match seeds {
                1 => format!("final-{}.json", e.id),
                _ => format!("final-{}-s{seed}.json", e.id),
            };
            // Each model is kept until the choice; the chosen one becomes RUN_DIR/model.
            let export = if single {
                w.run.path.join("model")
            } else {
                dir
            };
            let key = training_key(&arch, &config, s);
            let checkpoint = Checkpoint {
                path: w.run.path.join(checkpoint_name(&name)),
                key: key.to_string(),
            };
            let mut kept = kept_training(&w.run.path, &name, &key, &export);
            let kept_here = kept.is_some();
            if kept_here {
                tracing::info!(
                    candidate = e.id,
                    seed,
                    "final training kept from an earlier session of this run"
                );
                summary.final_kept += 1;
            } else if let Some(finals) = &w.finals {
                kept = shared_training(finals, &key, &w.run.path, &name, &export);
                if kept.is_some() {
                    tracing::info!(
                        candidate = e.id,
                        seed,
                        finals = %finals.display(),
                        "final training copied from another search's"
                    );
                    summary.final_shared += 1;
                }
            }
            if let Some(report) = &kept {
                // Counted as if trained here: an earlier session's seconds stop at its last
                // journal write, before its final trainings, and a copied training's seconds
                // are this search's compute all the same.
                summary.seconds += report.seconds.max(0.0);
                if !ensemble {
                    runs.push((seed, report.clone()));
                    continue;
                }
            }
            let msg = TrainFinal {
                candidate: e.id,
                arch: arch.clone(),
                config,
                model: s.final_train.model.clone(),
                cancel: None,
                export: Some(export.clone()),
                forecasts: ensemble,
                kept: kept.clone(),
                checkpoint: Some(checkpoint.clone()),
            };
            let mut outcome = w.evaluators.train_final(msg.clone()).await;
            if let (Err(err), Some(report)) = (&outcome, &kept) {
                // The kept model would not load for its forecasts: train it after all.
                tracing::warn!(
                    candidate = e.id,
                    seed,
                    "kept final training unusable ({err}); training it again"
                );
                summary.seconds -= report.seconds.max(0.0);
                if kept_here {
                    summary.final_kept -= 1;
                } else {
                    summary.final_shared = summary.final_shared.saturating_sub(1);
                }
                kept = None;
                outcome = w
                    .evaluators
                    .train_final(TrainFinal { kept: None, ..msg })
                    .await;
            }
            match outcome {
                Ok(trained) => {
                    let report = trained.report;
                    if kept.is_none() {
                        // The report first, its key last: a key on disk vouches for both the
                        // report and the model exported before it.
                        let written = w.run.write_json(&name, &report).is_ok()
                            && w.run.write_json(&key_name(&name), &key).is_ok();
                        if written {
                            // Kept now: the epochs' checkpoint is no longer needed.
                            checkpoint.discard();
                        }
                        if let Some(finals) = &w.finals {
                            if let Err(err) = share_training(finals, &key, &report, &export) {
                                tracing::warn!(
                                    candidate = e.id,
                                    seed,
                                    "sharing the final training in {}: {err}",
                                    finals.display()
                                );
                            }
                        }
                    }
                    if let Some(f) = &trained.forecasts {
                        if let Err(err) = members.add(seed, f) {
                            tracing::error!(candidate = e.id, seed, "ensemble member: {err}");
                        }
                    }
                    runs.push((seed, report));
                }
                Err(err) => {
                    tracing::error!(candidate = e.id, seed, "final training failed: {err}");
                    *summary
                        .eval_failures
                        .entry("final_training".into())
                        .or_default() += 1;
                }
            }
        }
        let scored = match ensemble.then(|| members.metrics()) {
            Some(Ok(m)) => m,
            Some(Err(err)) => {
                tracing::error!(candidate = e.id, "ensemble of the seeds: {err}");
                None
            }
            None => None,
        };
        // The forecasts are dropped here, before the next candidate trains.
        drop(members);
        if let Some(r) = final_result(e, runs, scored, s.final_train.train.loss) {
            results.push(r);
        }
    }
    rank_final_results(&mut results);
    if let (false, Some(chosen)) = (single, results.first()) {
        let from = w
            .run
            .path
            .join(format!("model-c{}-s{}", chosen.candidate, chosen.seed));
        let to = w.run.path.join("model");
        let _ = std::fs::remove_dir_all(&to);
        if let Err(e) = std::fs::rename(&from, &to) {
            tracing::error!("keeping the chosen model {}: {e}", from.display());
        }
    }
    summary.final_results = results;
}

/// What a final training's outcome depends on: the design, the training settings (seed
/// included), the final model's widths and the data. Written beside the report (`<report>.key.json`)
/// so that a later session of the run keeps the report only for the very same training.
fn training_key(arch: &Arch, config: &TrainConfig, s: &Settings) -> serde_json::Value {
    serde_json::json!({
        "arch": arch.to_spec(),
        "train": config,
        "model": s.final_train.model.as_ref().unwrap_or(&s.model),
        "data": s.data,
        "data_dir": s.data_dir,
    })
}

fn key_name(report: &str) -> String {
    format!("{}.key.json", report.trim_end_matches(".json"))
}

/// Where the final training whose report is `report` keeps its state between epochs
/// (`final-<candidate>[-s<seed>].ckpt`), until the report and its key are written.
fn checkpoint_name(report: &str) -> String {
    format!("{}.ckpt", report.trim_end_matches(".json"))
}

/// The report of a final training an earlier session of this run finished: its key matches
/// `key`, and its model is exported in `export`. Anything missing, unreadable or different
/// means the training is done again, never an error: at worst the time is spent twice.
fn kept_training(
    run: &std::path::Path,
    name: &str,
    key: &serde_json::Value,
    export: &std::path::Path,
) -> Option<TrainReport> {
    let read = |name: &str| std::fs::read_to_string(run.join(name)).ok();
    // Compared as text, as `RunDir::write_json` wrote it: parsing floats back is not exact.
    if read(&key_name(name))? != serde_json::to_string_pretty(key).ok()? {
        return None;
    }
    let report: TrainReport = serde_json::from_str(&read(name)?).ok()?;
    let exported = MODEL_FILES.iter().all(|f| export.join(f).is_file());
    exported.then_some(report)
}

/// The files of an exported model ([`ists::export::save`]).
const MODEL_FILES: [&str; 3] = ["arch.json", "meta.json", "weights.safetensors"];

/// The running program, as its size and modification time: part of a shared training's key.
/// Two builds may train the same design and seed a little differently (a changed default,
/// another libtorch), and a comparison's pairs must come from one program; a copied binary
/// counts as another one, which only costs a training.
fn build_identity() -> &'static str {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        let meta = std::env::current_exe().and_then(std::fs::metadata);
        match meta {
            Ok(m) => {
                let modified = m
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos());
                format!("{} bytes, modified {modified}", m.len())
            }
            // Unknown: a key no other process has, so nothing is shared.
            Err(_) => format!("unknown, process {}", std::process::id()),
        }
    })
}

/// A training's key in a shared folder: its run-directory key and the program.
fn shared_key(key: &serde_json::Value) -> serde_json::Value {
    serde_json::json!({"training": key, "build": build_identity()})
}

/// Where a training with `key` ([`shared_key`]) lives in a shared folder of final trainings: a
/// folder named by a hash of the key's text (the key itself is checked in full when read).
fn shared_entry(finals: &std::path::Path, key: &serde_json::Value) -> Option<std::path::PathBuf> {
    let text = serde_json::to_string_pretty(key).ok()?;
    Some(finals.join(ists::space::fnv1a_hex(&text)))
}

/// The shared folder's entry for `shared` ([`shared_key`]) when it holds that key in full (its
/// folder name is only a hash of it); None when absent or another key's.
fn checked_entry(
    finals: &std::path::Path,
    shared: &serde_json::Value,
) -> Option<std::path::PathBuf> {
    let entry = shared_entry(finals, shared)?;
    let matches = std::fs::read_to_string(entry.join("key.json")).ok()?
        == serde_json::to_string_pretty(shared).ok()?;
    matches.then_some(entry)
}

/// Adds a finished training to the shared folder: `report.json`, `model/` and `key.json`,
/// written in a temporary folder renamed into place, so a reader sees all or nothing.
fn share_training(
    finals: &std::path::Path,
    key: &serde_json::Value,
    report: &TrainReport,
    export: &std::path::Path,
) -> std::io::Result<()> {
    let key = &shared_key(key);
    let Some(entry) = shared_entry(finals, key) else {
        return Ok(());
    };
    if entry.join("key.json").is_file() {
        return Ok(());
    }
    let tmp = finals.join(format!(
        ".tmp-{}-{}",
        std::process::id(),
        entry
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("entry")
    ));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(tmp.join("model"))?;
    for f in MODEL_FILES {
        std::fs::copy(export.join(f), tmp.join("model").join(f))?;
    }
    let json = |v: serde_json::Result<String>| v.map_err(std::io::Error::other);
    std::fs::write(
        tmp.join("report.json"),
        json(serde_json::to_string_pretty(report))?,
    )?;
    std::fs::write(
        tmp.join("key.json"),
        json(serde_json::to_string_pretty(key))?,
    )?;
    match std::fs::rename(&tmp, &entry) {
        Ok(()) => Ok(()),
        // Another search shared the same training first: theirs stands.
        Err(_) if entry.join("key.json").is_file() => {
            let _ = std::fs::remove_dir_all(&tmp);
            Ok(())
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            Err(e)
        }
    }
}

/// A training another search added to the shared folder, copied into this run as if trained
/// here (report `name`, its key, the model in `export`); None when absent, unreadable or of
/// another key.
fn shared_training(
    finals: &std::path::Path,
    key: &serde_json::Value,
    run: &std::path::Path,
    name: &str,
    export: &std::path::Path,
) -> Option<TrainReport> {
    let entry = checked_entry(finals, &shared_key(key))?;
    let text = serde_json::to_string_pretty(key).ok()?;
    let report_text = std::fs::read_to_string(entry.join("report.json")).ok()?;
    let report: TrainReport = serde_json::from_str(&report_text).ok()?;
    let copied = (|| -> std::io::Result<()> {
        std::fs::create_dir_all(export)?;
        for f in MODEL_FILES {
            std::fs::copy(entry.join("model").join(f), export.join(f))?;
        }
        std::fs::write(run.join(name), &report_text)?;
        std::fs::write(run.join(key_name(name)), &text)
    })();
    match copied {
        Ok(()) => Some(report),
        Err(e) => {
            tracing::warn!("copying the shared final training {}: {e}", entry.display());
            None
        }
    }
}

/// The report of a final training of `arch` with `config` under settings `s` that a search
/// (or an anytime reading) of this program added to the shared folder `finals`; None when
/// absent, unreadable or of another key. Read only: nothing is copied.
pub(crate) fn shared_final(
    finals: &std::path::Path,
    arch: &Arch,
    config: &TrainConfig,
    s: &Settings,
) -> Option<TrainReport> {
    let entry = checked_entry(finals, &shared_key(&training_key(arch, config, s)))?;
    serde_json::from_str(&std::fs::read_to_string(entry.join("report.json")).ok()?).ok()
}

/// Adds a final training made outside a search (an anytime reading's) to the shared folder
/// `finals` under the key a search's would have: its model is exported to a temporary folder
/// beside the entries, shared ([`share_training`]: all or nothing), and the folder removed.
pub(crate) fn share_final(
    finals: &std::path::Path,
    arch: &Arch,
    config: &TrainConfig,
    s: &Settings,
    report: &TrainReport,
    trained: &ists::train::Trained,
    data: &ists::train::TrainData,
) -> Result<(), String> {
    let key = training_key(arch, config, s);
    let export = finals.join(format!(".export-{}", std::process::id()));
    let shared = (|| -> Result<(), String> {
        ists::export::save(&export, trained, arch, data, s.final_model())
            .map_err(|e| e.to_string())?;
        share_training(finals, &key, report, &export).map_err(|e| e.to_string())
    })();
    let _ = std::fs::remove_dir_all(&export);
    shared.map_err(|e| format!("sharing a final training in {}: {e}", finals.display()))
}

/// Orders trained candidates best first by [`FinalResult::choice_score`] (the first is the one
/// kept); a candidate without a score goes last.
pub(super) fn rank_final_results(results: &mut [FinalResult]) {
    results.sort_by(|a, b| {
        let key = |r: &FinalResult| r.choice_score().map_or(f64::INFINITY, |(_, v)| v);
        key(a).total_cmp(&key(b))
    });
}

/// A candidate's seeds summed up: the best-validation seed's report, the means, and the
/// ensemble of the seeds when it was scored. "Best" is by `loss`'s metric, the one that chose
/// each training's epoch ([`Loss::score`]): MAE, or RMSE for `mse`.
pub(super) fn final_result(
    e: &MemoryEntry,
    runs: Vec<(u64, TrainReport)>,
    ensemble: Option<EnsembleMetrics>,
    loss: Loss,
) -> Option<FinalResult> {
    let val = |r: &TrainReport| r.val.as_ref().map(|m| m.average.mae);
    let test = |r: &TrainReport| r.test.as_ref().map(|m| m.average.mae);
    let val_rmse = |r: &TrainReport| match loss {
        Loss::Mse => r.val_score(loss),
        Loss::Mae => None,
    };
    let seeds: Vec<SeedScore> = runs
        .iter()
        .map(|(seed, r)| SeedScore {
            seed: *seed,
            val_mae: val(r),
            test_mae: test(r),
            val_rmse: val_rmse(r),
        })
        .collect();
    let mean = |v: Vec<Option<f64>>| -> Option<f64> {
        let v: Vec<f64> = v.into_iter().flatten().filter(|x| x.is_finite()).collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    let mean_val_mae = mean(seeds.iter().map(|s| s.val_mae).collect());
    let mean_val_rmse = mean(seeds.iter().map(|s| s.val_rmse).collect());
    let mean_test_mae = mean(seeds.iter().map(|s| s.test_mae).collect());
    let (seed, report) = runs.into_iter().min_by(|a, b| {
        let k = |r: &TrainReport| {
            r.val_score(loss)
                .filter(|v| v.is_finite())
                .unwrap_or(f64::INFINITY)
        };
        k(&a.1).total_cmp(&k(&b.1))
    })?;
    Some(FinalResult {
        candidate: e.id,
        proxy_score: e.score,
        report,
        seed,
        seeds,
        mean_val_mae,
        mean_val_rmse,
        mean_test_mae,
        ensemble,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::memory::scored_entry;
    use ists::metrics::{MetricsTable, Scores};
    use ists::space::SpaceKind;

    /// A finished training whose validation scores are `mae` and `rmse`.
    fn trained(arch: &Arch, mae: f64, rmse: f64) -> TrainReport {
        let scores = Scores {
            mae,
            rmse,
            mape: 0.0,
        };
        let table = MetricsTable {
            horizons: vec![(3, scores)],
            average: scores,
        };
        TrainReport {
            dataset: "d".into(),
            arch: arch.to_spec(),
            params: 10,
            status: EvalStatus::Ok,
            epochs_run: 1,
            best_epoch: 1,
            history: Vec::new(),
            val: Some(table.clone()),
            test: Some(table),
            seconds: 1.0,
            refit: None,
            averaged: None,
        }
    }

    /// A search whose final trainings chose their epochs on RMSE chooses the seed and the
    /// candidate on RMSE too, where MAE would pick the others; under MAE nothing changes.
    #[test]
    fn the_final_choice_follows_the_trainings_loss() {
        let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(1);
        let arch = Arch::sample(SpaceKind::Ists, &mut rng);
        let (a, b) = (scored_entry(0, &arch, 1.0), scored_entry(1, &arch, 1.1));
        // Candidate 0: seed 7 has the lower MAE, seed 8 the lower RMSE. Candidate 1 has the
        // lower mean RMSE of the two candidates and the higher mean MAE.
        let runs_a = || vec![(7, trained(&arch, 2.0, 6.0)), (8, trained(&arch, 2.5, 5.0))];
        let runs_b = || vec![(7, trained(&arch, 2.3, 5.2)), (8, trained(&arch, 2.3, 5.2))];
        let rank = |loss: Loss| {
            let mut r = vec![
                final_result(&a, runs_a(), None, loss).unwrap(),
                final_result(&b, runs_b(), None, loss).unwrap(),
            ];
            rank_final_results(&mut r);
            r
        };
        let mse = rank(Loss::Mse);
        assert_eq!(mse[0].candidate, 1);
        assert_eq!(mse[0].choice_score(), Some(("RMSE", 5.2)));
        assert_eq!(
            mse[1].seed, 8,
            "candidate 0's exported seed is its lower-RMSE one"
        );
        assert_eq!(mse[1].mean_val_rmse, Some(5.5));
        assert_eq!(mse[1].seeds[1].val_rmse, Some(5.0));
        let mae = rank(Loss::Mae);
        assert_eq!(mae[0].candidate, 0);
        assert_eq!(mae[0].seed, 7);
        assert_eq!(mae[0].choice_score(), Some(("MAE", 2.25)));
        assert_eq!(mae[0].mean_val_rmse, None, "MAE trainings record no RMSE");
        assert!(mae[0].seeds.iter().all(|s| s.val_rmse.is_none()));
    }
}
