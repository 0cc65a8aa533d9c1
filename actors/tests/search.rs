//! The search as an actor system, end to end: offline search on real data, a scripted mock
//! OpenAI-compatible server (parse, repair, rejection counts), concurrent tree-of-thought
//! branches, the stage switch event, evaluator restart, and kill -9 followed by resume.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and examples may panic on failure

use actix::prelude::*;
use actix_web::{web, HttpResponse};
use ists::config::{Backend, Mode};
use ists_actors::messages::Event;
use ists_actors::{run_search, SearchOptions};
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod common;
use common::{
    completion, fake_evaluator, ists, journal, one_at_a_time, root, start_chat_mock, tiny,
    write_lr2_prior, Collector,
};

#[actix::test]
async fn offline_search_on_metr_la_week_records_every_candidate_once() {
    let tmp = tempfile::tempdir().unwrap();
    let s = tiny(tmp.path());
    let events = Arc::new(Mutex::new(Vec::new()));
    let opts = SearchOptions {
        name: Some("offline".into()),
        ..SearchOptions::default()
    }
    .subscribe(Collector(events.clone()).start().recipient());
    let summary = run_search(s, opts, std::future::pending()).await.unwrap();
    assert_eq!(summary.evaluated, 4);
    assert!(summary.best.is_some());
    assert_eq!(summary.final_results.len(), 1);
    assert!(summary.final_results[0].report.test.is_some());
    let dir = tmp.path().join("offline");
    let j = journal(&dir);
    assert_eq!(j.len(), 4);
    let ids: HashSet<u64> = j.iter().map(|e| e["id"].as_u64().unwrap()).collect();
    let hashes: HashSet<&str> = j.iter().map(|e| e["hash"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 4, "a candidate was recorded twice");
    assert_eq!(hashes.len(), 4, "an architecture was evaluated twice");
    for f in ["config.json", "best.json", "summary.json", "events.jsonl"] {
        assert!(dir.join(f).exists(), "{f} missing");
    }
    assert!(std::fs::read_dir(dir.join("prompts")).unwrap().count() >= 4);
    let ev = events.lock().unwrap();
    let seqs: Vec<u64> = ev.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "events out of order"
    );
    assert!(matches!(
        ev.last().unwrap().event,
        Event::Finished { evaluated: 4, .. }
    ));
}

/// A scripted OpenAI-compatible server that records how many requests overlap.
struct Mock {
    script: Mutex<VecDeque<String>>,
    counter: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    delay: Duration,
    /// Fallback when the script is empty: answers a tree-of-thought step for the node asked.
    tot: bool,
}

async fn chat(state: web::Data<Arc<Mock>>, body: web::Json<serde_json::Value>) -> HttpResponse {
    let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    state.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let n = state.counter.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(state.delay).await;
    let scripted = state.script.lock().unwrap().pop_front();
    let content = match scripted {
        Some(c) => c,
        None if state.tot => {
            let prompt = body["messages"].to_string();
            if prompt.contains("## Evaluate partial designs") {
                let n = prompt.matches("  idea: ").count().max(1);
                let values: Vec<serde_json::Value> = (0..n)
                    .map(|i| serde_json::json!({"candidate": i, "reasoning": "r", "value": 1 + i % 10}))
                    .collect();
                serde_json::json!({ "values": values }).to_string()
            } else {
                let node = (1..=3)
                    .find(|k| prompt.contains(&format!("alternatives for node {k}")))
                    .unwrap_or(3);
                let alts: Vec<serde_json::Value> = (0..3)
                    .map(|b| {
                        let order = ["STT", "TTS", "STP"][(n + b) % 3];
                        let spatial = ["mix_gc", "dgcn", "s_trans"][(n / 3 + b) % 3];
                        serde_json::json!({"idea": "i", "edges": [
                            {"from": node - 1, "to": node, "op": order, "spatial": spatial}]})
                    })
                    .collect();
                format!(
                    "```json\n{}\n```",
                    serde_json::json!({ "alternatives": alts })
                )
            }
        }
        None => "no more script".into(),
    };
    state.in_flight.fetch_sub(1, Ordering::SeqCst);
    completion(format!("c{n}"), &content)
}

const A: &str = r#"{"edges":[{"from":0,"to":1,"op":"STT"},{"from":1,"to":3,"op":"TTS"}]}"#;
const B: &str = r#"{"edges":[{"from":0,"to":2,"op":"STP"},{"from":2,"to":3,"op":"identity"}]}"#;
const C: &str = r#"{"edges":[{"from":0,"to":3,"op":"TTS","temporal":"gdcc"}]}"#;

#[actix::test]
async fn scripted_llm_replies_are_parsed_repaired_and_counted() {
    let script = [
        "Let me think. {\"edges\": [{\"from\": 0, \"to\": 1, \"op\": \"STT\"".to_string(), // truncated
        r#"{"edges":[{"from":0,"to":3,"op":"lstm"}]}"#.to_string(),                         // unknown op
        format!("```json\n{A}\n```"),                                                        // fenced: ok
        format!("Here is my design: {A} - it should work."),                                 // duplicate
        r#"{"edges":[{"from":1,"to":2,"op":"STT"},{"from":2,"to":1,"op":"STT"},{"from":0,"to":3,"op":"STT"}]}"#.to_string(), // cycle
        format!("Step 1: node 2 from node 0.\nFinal: {B}\nThanks."),                          // prose: ok
        C.to_string(),                                                                       // bare: ok
    ];
    let mock = Arc::new(Mock {
        script: Mutex::new(script.into_iter().collect()),
        counter: AtomicUsize::new(0),
        in_flight: AtomicUsize::new(0),
        max_in_flight: AtomicUsize::new(0),
        delay: Duration::from_millis(1),
        tot: false,
    });
    let url = start_chat_mock(mock.clone(), 1, chat);
    let tmp = tempfile::tempdir().unwrap();
    let mut s = tiny(tmp.path());
    s.llm.backend = Backend::Openai;
    s.llm.base_url = url;
    s.llm.timeout_secs = 30.0;
    s.search.budget = 3;
    s.search.in_flight = 1;
    s.search.max_repairs = 2;
    s.final_train.top_k = 0;
    let opts = SearchOptions {
        name: Some("mock".into()),
        ..fake_evaluator()
    };
    let summary = run_search(s, opts, std::future::pending()).await.unwrap();
    let on_disk: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(tmp.path().join("mock/summary.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(on_disk["evaluated"], 3);
    assert_eq!(on_disk["requests"], 7);
    assert_eq!(on_disk["replies"], 7);
    assert_eq!(on_disk["repairs"], 4);
    assert_eq!(on_disk["failed_proposals"], 0);
    let rejected: BTreeMap<String, usize> =
        serde_json::from_value(on_disk["rejected"].clone()).unwrap();
    let expected: BTreeMap<String, usize> = [
        ("invalid_json", 1),
        ("unknown_operator", 1),
        ("duplicate", 1),
        ("cycle", 1),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(rejected, expected);
    assert_eq!(summary.usage.prompt_tokens, 700);
    assert_eq!(summary.usage.completion_tokens, 140);
    assert_eq!(mock.counter.load(Ordering::SeqCst), 7);
    // The repair prompt quotes the exact error.
    let repair = std::fs::read_to_string(tmp.path().join("mock/prompts/s1-p0000-a2.md")).unwrap();
    assert!(
        repair.contains("edges[0].op: unknown operator 'lstm'"),
        "{repair}"
    );
}

#[actix::test]
async fn tree_of_thought_branches_run_concurrently() {
    let mock = Arc::new(Mock {
        script: Mutex::new(VecDeque::new()),
        counter: AtomicUsize::new(0),
        in_flight: AtomicUsize::new(0),
        max_in_flight: AtomicUsize::new(0),
        delay: Duration::from_millis(150),
        tot: true,
    });
    let url = start_chat_mock(mock.clone(), 1, chat);
    let tmp = tempfile::tempdir().unwrap();
    let mut s = one_at_a_time(tmp.path(), Mode::Tot, 2);
    s.llm.backend = Backend::Openai;
    s.llm.base_url = url;
    s.search.tot.branches = 3;
    s.search.tot.beam = 2;
    s.search.tot.concurrency = 3;
    let opts = SearchOptions {
        name: Some("tot".into()),
        ..fake_evaluator()
    };
    let summary = run_search(s, opts, std::future::pending()).await.unwrap();
    assert_eq!(summary.evaluated, 2);
    // Depth 1: one expansion; depths 2 and 3: the beam's 2; each a propose and a value request.
    assert_eq!(summary.requests, 2 * (1 + 2 + 2));
    assert_eq!(summary.value_requests, 5);
    let overlap = mock.max_in_flight.load(Ordering::SeqCst);
    assert!(
        overlap >= 2,
        "ToT requests never overlapped (max in flight {overlap})"
    );
}

#[actix::test]
async fn stage_switch_fires_once_at_the_configured_point() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = tiny(tmp.path());
    s.search.budget = 6;
    s.search.exploration_share = 0.5;
    s.final_train.top_k = 0;
    let events = Arc::new(Mutex::new(Vec::new()));
    let opts = fake_evaluator().subscribe(Collector(events.clone()).start().recipient());
    let summary = run_search(s, opts, std::future::pending()).await.unwrap();
    assert_eq!(summary.evaluated, 6);
    let ev = events.lock().unwrap();
    let switches: Vec<&Event> = ev
        .iter()
        .map(|e| &e.event)
        .filter(|e| matches!(e, Event::StageSwitched { .. }))
        .collect();
    assert_eq!(switches.len(), 1, "{switches:?}");
    assert!(matches!(switches[0], Event::StageSwitched { after: 3, .. }));
    assert_eq!(summary.stage_switch_after, Some(3));
    let dir = PathBuf::from(&summary.run_dir);
    let stages: Vec<String> = journal(&dir)
        .iter()
        .map(|e| e["stage"].as_str().unwrap().to_string())
        .collect();
    assert!(stages.iter().any(|s| s == "optimization"), "{stages:?}");
}

#[actix::test]
async fn a_failing_evaluator_is_restarted_and_the_search_completes() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = tiny(tmp.path());
    s.search.budget = 3;
    s.final_train.top_k = 0;
    let opts = SearchOptions {
        inject_failures: 1,
        ..SearchOptions::default()
    };
    let summary = run_search(s, opts, std::future::pending()).await.unwrap();
    assert_eq!(summary.evaluated, 3);
    assert_eq!(
        summary.eval_retries, 1,
        "the failed evaluation was not retried"
    );
    // The fault a retry survived is still on record, by kind.
    assert_eq!(
        summary.retried_faults,
        BTreeMap::from([("injected".to_string(), 1)])
    );
    assert!(
        summary.eval_failures.is_empty(),
        "{:?}",
        summary.eval_failures
    );
    let dir = PathBuf::from(&summary.run_dir);
    assert!(journal(&dir).iter().all(|e| e["status"]["status"] == "ok"));
}

/// Waits (at most 300 s, polling every `poll`) until `ready()`, then kills `child` with
/// SIGKILL, as a crash would; panics if the child exits first or `what` never comes.
fn kill_when(
    child: &mut std::process::Child,
    what: &str,
    poll: Duration,
    mut ready: impl FnMut() -> bool,
) {
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    while !ready() {
        assert!(std::time::Instant::now() < deadline, "no {what} in 300 s");
        if let Ok(Some(status)) = child.try_wait() {
            panic!("exited before {what}: {status}");
        }
        std::thread::sleep(poll);
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn kill_minus_nine_then_resume_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("killed");
    let spawn = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_ists"))
            .current_dir(root())
            .args(args)
            .env("ISTS__RUNS_DIR", tmp.path())
            .env("ISTS__FINAL__TOP_K", "0")
            .env("OMP_NUM_THREADS", "1")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut child = spawn(&[
        "search",
        "--config",
        "config/tiny.toml",
        "--budget",
        "10",
        "--name",
        "killed",
    ]);
    kill_when(
        &mut child,
        "3 journal lines",
        Duration::from_millis(50),
        || journal(&run).len() >= 3,
    );
    let before = std::fs::read_to_string(run.join("journal.jsonl")).unwrap();
    let before_lines: Vec<&str> = before
        .lines()
        .filter(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
        .collect();
    assert!(before_lines.len() >= 3 && before_lines.len() < 10);
    let status = spawn(&["search", "--resume", run.to_str().unwrap()])
        .wait()
        .unwrap();
    assert!(status.success());
    let after = std::fs::read_to_string(run.join("journal.jsonl")).unwrap();
    for l in &before_lines {
        assert!(
            after.contains(l),
            "an evaluation completed before the kill was lost: {l}\njournal after resume:\n{after}"
        );
    }
    let j = journal(&run);
    assert_eq!(j.len(), 10);
    let ids: HashSet<u64> = j.iter().map(|e| e["id"].as_u64().unwrap()).collect();
    let hashes: HashSet<&str> = j.iter().map(|e| e["hash"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 10, "a candidate was recorded twice");
    assert_eq!(hashes.len(), 10, "an architecture was evaluated twice");
}

/// A search killed (`kill -9`) during its final training resumes that training after its last
/// finished epoch, from the checkpoint it keeps in the run directory, and hands back the very
/// model the uninterrupted search trains: the same epochs' losses and test metrics. The
/// checkpoint is gone once the report is kept.
#[test]
fn kill_minus_nine_in_the_final_training_resumes_after_its_last_epoch() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("final-kill.toml");
    std::fs::write(
        &config,
        "[data]\nsource = \"chickenpox\"\n\
         [data.prepare]\ninput_len = 4\noutput_len = 4\nsplit = [0.6, 0.2, 0.2]\ntime_of_day = false\n\
         [model]\nhidden = 8\nend_hidden = 16\nheads = 2\n\
         [proxy]\nsteps = 3\nbatch_size = 8\nval_samples = 16\n\
         [final]\ntop_k = 1\n\
         [final.train]\nepochs = 8\npatience = 8\nbatch_size = 4\n\
         [search]\nbudget = 2\nin_flight = 1\n",
    )
    .unwrap();
    let spawn = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_ists"))
            .current_dir(root())
            .args(args)
            .env("ISTS__RUNS_DIR", tmp.path())
            .env("OMP_NUM_THREADS", "1")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let search = |name: &str| {
        spawn(&[
            "search",
            "--config",
            config.to_str().unwrap(),
            "--name",
            name,
        ])
    };
    // The epochs a process's log says the final training trained.
    let epochs = |child: std::process::Child| {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stderr).into_owned();
        // stderr is a pipe here, as in a log file: no colour codes may reach it.
        assert!(
            !text.contains('\u{1b}'),
            "colour codes in a piped log: {text}"
        );
        text.lines()
            .filter(|l| l.contains("final training candidate="))
            .filter_map(|l| l.split(" epoch=").nth(1)?.split(' ').next()?.parse().ok())
            .collect::<Vec<usize>>()
    };
    let whole_epochs = epochs(search("whole"));
    assert_eq!(whole_epochs, (1..=8).collect::<Vec<_>>());
    let report = |run: &str| -> serde_json::Value {
        let dir = tmp.path().join(run);
        let name = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .find(|n| n.starts_with("final-") && n.ends_with(".json") && !n.ends_with(".key.json"))
            .unwrap();
        serde_json::from_str(&std::fs::read_to_string(dir.join(name)).unwrap()).unwrap()
    };
    let whole = report("whole");
    let run = tmp.path().join("killed");
    let files = |suffix: &str| -> Vec<String> {
        std::fs::read_dir(&run)
            .map(|d| {
                d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .filter(|n| n.ends_with(suffix))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut child = search("killed");
    kill_when(&mut child, "a checkpoint", Duration::from_millis(2), || {
        !files(".ckpt").is_empty()
    });
    assert!(
        files(".key.json").is_empty(),
        "killed after the final training ended"
    );
    let resumed = epochs(spawn(&["search", "--resume", run.to_str().unwrap()]));
    assert!(
        !resumed.is_empty() && resumed[0] > 1 && *resumed.last().unwrap() == 8,
        "the resumed training trained epochs {resumed:?}"
    );
    let again = report("killed");
    for field in ["history", "best_epoch", "val", "test"] {
        let strip = |v: &serde_json::Value| match v {
            // Each epoch's seconds are the one thing two trainings do not share.
            serde_json::Value::Array(h) => serde_json::Value::Array(
                h.iter()
                    .map(|e| {
                        let mut e = e.clone();
                        e.as_object_mut().map(|o| o.remove("seconds"));
                        e
                    })
                    .collect(),
            ),
            v => v.clone(),
        };
        assert_eq!(strip(&again[field]), strip(&whole[field]), "{field}");
    }
    assert!(
        files(".ckpt").is_empty(),
        "the checkpoint outlived the report"
    );
}

/// `ists bench gpu` (what scripts/gpu-check.sh runs on a GPU host) with the CPU as both
/// devices: every check runs, passes, and lands in the JSON record; a device libtorch cannot
/// see is refused with a message that says what to do.
#[test]
fn bench_gpu_cpu_against_cpu_passes_and_writes_its_record() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("gpu-check.json");
    let out_arg = out.to_str().unwrap();
    let run = |device: &str| {
        ists(&format!(
            "bench gpu --config config/tiny.toml --candidates 2 --threads 1 --device {device} --out {out_arg}"
        ))
    };
    let ok = run("cpu");
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(stdout.contains("device check passed"), "{stdout}");
    assert!(stdout.contains("| proxy validation MAE"), "{stdout}");
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(record["agreement"]["failures"], serde_json::json!([]));
    assert_eq!(record["timing"][1]["seconds"].as_array().unwrap().len(), 2);
    assert!(record["oom"].is_null(), "no out-of-memory check on the CPU");
    if !tch::Cuda::is_available() {
        let refused = run("cuda:0");
        assert!(!refused.status.success());
        let err = String::from_utf8_lossy(&refused.stderr);
        assert!(err.contains("libtorch sees no CUDA device"), "{err}");
    }
}

/// `ists fidelity` keeps each architecture's row in its results file as it goes: a rerun takes
/// them over instead of training again, and a study with other settings is refused.
#[test]
fn fidelity_resumes_from_its_results_and_refuses_other_settings() {
    let tmp = tempfile::tempdir().unwrap();
    let results = tmp.path().join("fid/fidelity-tiny.jsonl");
    let res_arg = results.to_str().unwrap();
    let run = |extra: &str| {
        ists(&format!(
            "fidelity --config config/tiny.toml --n 2 --proxies all --truth-seeds 2 --results {res_arg}{extra}"
        ))
    };
    let first = run("");
    let err = String::from_utf8_lossy(&first.stderr);
    assert!(first.status.success(), "{err}");
    let log = std::fs::read_to_string(&results).unwrap();
    // Two hand designs and two sampled ones.
    assert_eq!(log.lines().count(), 4, "{log}");
    for line in log.lines() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(row["proxy"].as_object().unwrap().len(), 7, "{row}");
        assert_eq!(row["truth"].as_array().unwrap().len(), 2, "{row}");
        assert!(row["truth"][0]["val_mae"].as_f64().unwrap() > 0.0, "{row}");
    }
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(stdout.contains("| long4x_warmup |"), "{stdout}");
    assert!(stdout.contains("seed-to-seed Kendall tau"), "{stdout}");
    assert!(
        stdout.contains("| 95% interval (bootstrap over designs) |"),
        "{stdout}"
    );
    assert!(results.with_extension("png").exists());
    // Lose the last architecture, as a kill would: the rerun redoes only that one.
    let kept: Vec<&str> = log.lines().take(3).collect();
    std::fs::write(&results, kept.join("\n") + "\n").unwrap();
    let second = run("");
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(second.status.success(), "{err}");
    assert_eq!(err.matches("taken over").count(), 3, "{err}");
    assert_eq!(err.matches("measured,").count(), 1, "{err}");
    // Seeded on one thread, the redone architecture scores the same: the same correlations
    // (the seconds columns are measured anew).
    let taus = |out: &std::process::Output| -> Vec<String> {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with("| ") && !l.starts_with("| proxy"))
            .map(|l| l.split('|').take(4).collect::<Vec<_>>().join("|"))
            .collect()
    };
    assert_eq!(taus(&first).len(), 7);
    assert_eq!(
        taus(&first),
        taus(&second),
        "the resumed study reports the same table"
    );
    let other = ists(&format!(
        "fidelity --config config/tiny.toml --n 2 --results {res_arg} --data chickenpox"
    ));
    assert!(!other.status.success());
    assert!(String::from_utf8_lossy(&other.stderr).contains("other settings"));
}

/// Successive-halving rungs (asynchronous, as ASHA): whoever is among the best third of the
/// candidates that finished a rung when it finishes is trained again with 3 times the steps;
/// at the end every candidate in the final best third has been promoted. The memory ranks by
/// rung; the top two are trained fully with two seeds each and the one with the better mean
/// validation MAE is chosen.
#[actix::test]
async fn rungs_promote_the_best_third_and_the_final_choice_is_on_validation() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = tiny(tmp.path());
    s.search.budget = 9;
    s.search.rungs.levels = 2;
    s.search.rungs.eta = 3;
    s.final_train.top_k = 2;
    s.final_train.seeds = 2;
    let steps = s.proxy.steps as u64;
    let events = Arc::new(Mutex::new(Vec::new()));
    let opts = fake_evaluator().subscribe(Collector(events.clone()).start().recipient());
    let summary = run_search(s, opts, std::future::pending()).await.unwrap();
    assert_eq!(summary.evaluated, 9);
    let dir = PathBuf::from(&summary.run_dir);
    let j = journal(&dir);
    assert_eq!(j.len(), 9 + summary.promotions, "a line per evaluation");
    assert_top_third_promoted(&j, 0, 9);
    let at = |r: u64| j.iter().filter(|e| e["rung"] == r).count();
    assert!(
        at(1) >= 3 && at(2) >= 1,
        "rung 1: {}, rung 2: {}",
        at(1),
        at(2)
    );
    assert_eq!(at(1) + at(2), summary.promotions);
    for e in &j {
        let rung = e["rung"].as_u64().unwrap() as u32;
        assert_eq!(e["steps"].as_u64().unwrap(), steps * 3u64.pow(rung), "{e}");
    }
    let spent: u64 = j.iter().map(|e| e["steps"].as_u64().unwrap()).sum();
    assert_eq!(summary.eval_steps, spent);
    assert_eq!(summary.best.as_ref().unwrap().rung, 2);
    let ev = events.lock().unwrap();
    let count = |f: fn(&Event) -> bool| ev.iter().filter(|e| f(&e.event)).count();
    assert_eq!(
        count(|e| matches!(e, Event::Promoting { .. })),
        summary.promotions
    );
    assert_eq!(
        count(|e| matches!(e, Event::Promoted { .. })),
        summary.promotions
    );
    assert_eq!(count(|e| matches!(e, Event::Evaluated { .. })), 9);
    // The final choice: two candidates, two seeds each, ordered by mean validation MAE.
    let f = &summary.final_results;
    assert_eq!(f.len(), 2);
    assert!(f.iter().all(|r| r.seeds.len() == 2));
    assert!(
        f.iter().all(|r| r.ensemble.is_none()),
        "final.ensemble is off"
    );
    assert!(f[0].mean_val_mae.unwrap() <= f[1].mean_val_mae.unwrap());
    assert!(dir.join("model").is_dir(), "the chosen model is exported");
}

/// `tiny` on the small chickenpox series (20 counties, 4 weeks in and out), which keeps a
/// final training to seconds.
fn tiny_chickenpox(runs: &std::path::Path) -> ists::config::Settings {
    let mut s = tiny(runs);
    s.data.source = "chickenpox".into();
    s.data.prepare.input_len = 4;
    s.data.prepare.output_len = 4;
    s.data.prepare.split = [0.6, 0.2, 0.2];
    s.data.prepare.time_of_day = false;
    s
}

/// `final.ensemble` with two seeds: the summary (and summary.json) carries the ensemble of the
/// candidate's seeds beside their mean, scored on the same samples; the mean forecast's test
/// MAE is none of the seeds' and, the MAE being convex, at most their mean.
#[actix::test]
async fn the_ensemble_of_the_final_seeds_is_reported_beside_their_mean() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = tiny_chickenpox(tmp.path());
    s.search.budget = 2;
    s.final_train.seeds = 2;
    s.final_train.ensemble = true;
    let first = s.final_train.train.seed;
    let opts = SearchOptions {
        name: Some("ens".into()),
        ..fake_evaluator()
    };
    let summary = run_search(s, opts, std::future::pending()).await.unwrap();
    let f = &summary.final_results[0];
    let e = f.ensemble.as_ref().expect("the ensemble is reported");
    assert_eq!(e.members, vec![first, first + 1]);
    let single = f.report.test.as_ref().unwrap();
    assert_eq!(e.test.horizons.len(), single.horizons.len());
    let (ens, mean) = (e.test.average.mae, f.mean_test_mae.unwrap());
    for seed in &f.seeds {
        assert_ne!(Some(ens), seed.test_mae, "{ens} is a seed's own test MAE");
    }
    assert!(
        ens <= mean + 1e-6,
        "ensemble {ens} vs the seeds' mean {mean}"
    );
    let val_mean = f.mean_val_mae.unwrap();
    assert!(e.val.average.mae <= val_mean + 1e-6);
    let text =
        std::fs::read_to_string(PathBuf::from(&summary.run_dir).join("summary.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let written = &json["final_results"][0]["ensemble"];
    assert_eq!(written["members"], serde_json::json!([first, first + 1]));
    assert!(
        written["test"]["average"]["mae"].as_f64().is_some(),
        "{written}"
    );
    // The report puts it in the test metrics table, beside the chosen seed's model.
    let run = tmp.path().join("ens");
    let report = tokio::task::spawn_blocking(move || ists_actors::run::report::write_report(&run))
        .await
        .unwrap()
        .unwrap();
    let md = std::fs::read_to_string(&report.markdown).unwrap();
    let row = format!("| searched, ensemble of seeds {first}, {} |", first + 1);
    assert!(md.contains("| searched (final training) |"), "{md}");
    assert!(md.contains(&row), "report lacks {row}:\n{md}");
}

/// A search killed during its final trainings keeps, on resume, every seed an earlier session
/// had finished (its report and exported model in the run directory, under a key of the very
/// same training) and trains only the others; a key that does not match trains again. The
/// ensemble of the seeds is still scored, a kept member's forecasts from its exported model.
#[actix::test]
async fn a_resumed_search_keeps_the_final_trainings_already_done() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = tiny_chickenpox(tmp.path());
    s.search.budget = 2;
    s.final_train.seeds = 2;
    s.final_train.ensemble = true;
    let first = s.final_train.train.seed;
    let opts = SearchOptions {
        name: Some("fin".into()),
        ..fake_evaluator()
    };
    let done = run_search(s.clone(), opts, std::future::pending())
        .await
        .unwrap();
    assert_eq!(done.final_kept, 0);
    let dir = PathBuf::from(&done.run_dir);
    let f = &done.final_results[0];
    let c = f.candidate;
    // As a kill during the second seed's training would leave the run: no summary, the
    // chosen model not yet moved to `model`, the second seed's key not yet written.
    let kill = |second_key: bool| {
        std::fs::remove_file(dir.join("summary.json")).unwrap();
        let chosen = dir.join(format!("model-c{c}-s{}", f.seed));
        if !chosen.exists() {
            std::fs::rename(dir.join("model"), &chosen).unwrap();
        }
        let key = dir.join(format!("final-{c}-s{}.key.json", first + 1));
        if second_key {
            std::fs::remove_file(key).unwrap();
        }
    };
    kill(true);
    let resume = || SearchOptions {
        resume: Some(dir.clone()),
        ..fake_evaluator()
    };
    let again = run_search(s.clone(), resume(), std::future::pending())
        .await
        .unwrap();
    assert_eq!(
        again.final_kept, 1,
        "the first seed is kept, the second trained"
    );
    let g = &again.final_results[0];
    assert_eq!(g.candidate, c);
    assert_eq!(
        g.seeds[0], f.seeds[0],
        "the kept seed's scores are the first session's"
    );
    let e = g.ensemble.as_ref().expect("the ensemble is still scored");
    assert_eq!(e.members, vec![first, first + 1]);
    assert!(dir.join("model/weights.safetensors").is_file());
    // The kept training's seconds count in the resumed run's time.
    let kept: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join(format!("final-{c}-s{first}.json"))).unwrap(),
    )
    .unwrap();
    let kept_seconds = kept["seconds"].as_f64().unwrap();
    assert!(
        again.seconds >= kept_seconds,
        "{} < {kept_seconds}",
        again.seconds
    );
    // A key that is not this training's (here: another seed's) means training again.
    kill(false);
    let other =
        std::fs::read_to_string(dir.join(format!("final-{c}-s{}.key.json", first + 1))).unwrap();
    std::fs::write(dir.join(format!("final-{c}-s{first}.key.json")), other).unwrap();
    let third = run_search(s.clone(), resume(), std::future::pending())
        .await
        .unwrap();
    assert_eq!(third.final_kept, 1, "only the second seed's key matches");
    assert_eq!(third.final_results[0].seeds.len(), 2);
    // A kept model that no longer loads (its ensemble forecasts come from it) is trained again.
    kill(false);
    let weights = dir.join(format!("model-c{c}-s{}/weights.safetensors", first + 1));
    std::fs::write(&weights, b"not a safetensors file").unwrap();
    let fourth = run_search(s, resume(), std::future::pending())
        .await
        .unwrap();
    assert_eq!(
        fourth.final_kept, 1,
        "the first seed is kept, the second trained again"
    );
    let e = fourth.final_results[0].ensemble.as_ref().expect("ensemble");
    assert_eq!(e.members, vec![first, first + 1]);
}

/// Every candidate among the best `1/3` of the `n` scored at `rung` has a line at `rung + 1`.
fn assert_top_third_promoted(j: &[serde_json::Value], rung: u64, n: usize) {
    let mut scored: Vec<(f64, &str)> = j
        .iter()
        .filter(|e| e["rung"] == rung)
        .filter_map(|e| Some((e["score"].as_f64()?, e["hash"].as_str()?)))
        .collect();
    assert_eq!(scored.len(), n);
    scored.sort_by(|a, b| a.0.total_cmp(&b.0));
    for (_, hash) in &scored[..n / 3] {
        assert!(
            j.iter()
                .any(|e| e["hash"] == *hash && e["rung"] == rung + 1),
            "{hash} is in the best third of rung {rung} but was not promoted"
        );
    }
}

/// A search killed between rungs resumes: no candidate is evaluated twice at the same rung,
/// and the promotions that were due are made.
#[actix::test]
async fn a_search_killed_mid_rung_resumes_its_promotions() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = tiny(tmp.path());
    s.search.budget = 9;
    s.search.rungs.levels = 1;
    s.search.rungs.eta = 3;
    s.final_train.top_k = 0;
    let summary = run_search(s, fake_evaluator(), std::future::pending())
        .await
        .unwrap();
    assert!(summary.promotions >= 3);
    let dir = PathBuf::from(&summary.run_dir);
    let full = std::fs::read_to_string(dir.join("journal.jsonl")).unwrap();
    // Keep every candidate's proxy result and one promotion, as a kill after it would.
    let mut kept: Vec<&str> = full.lines().filter(|l| l.contains("\"rung\":0")).collect();
    let promoted: Vec<&str> = full.lines().filter(|l| l.contains("\"rung\":1")).collect();
    assert_eq!(kept.len(), 9);
    kept.push(promoted[0]);
    std::fs::write(dir.join("journal.jsonl"), kept.join("\n") + "\n").unwrap();
    let resumed = run_search(
        tiny(tmp.path()),
        SearchOptions {
            resume: Some(dir.clone()),
            ..fake_evaluator()
        },
        std::future::pending(),
    )
    .await
    .unwrap();
    assert_eq!(resumed.evaluated, 9, "no new candidates");
    assert_eq!(resumed.resumed, 9);
    let j = journal(&dir);
    assert_eq!(
        j.len(),
        9 + resumed.promotions,
        "the kept promotion is counted once"
    );
    assert_top_third_promoted(&j, 0, 9);
    assert!(j[..10]
        .iter()
        .zip(&kept)
        .all(|(e, l)| *e == serde_json::from_str::<serde_json::Value>(l).unwrap()));
    let mut seen = HashSet::new();
    for e in &j {
        let key = (e["hash"].as_str().unwrap().to_string(), e["rung"].as_u64());
        assert!(seen.insert(key), "evaluated twice at one rung: {e}");
    }
}

/// A search killed and resumed goes on as if it had never been killed: with proposals made one
/// at a time, the resumed journal repeats the uninterrupted search's, candidate for candidate,
/// rung for rung, before and after the stage switch. (Long studies are resumed whenever a
/// machine goes; a resume that changed the search would make their rows depend on when.)
#[actix::test]
async fn a_resumed_search_goes_on_as_if_never_killed() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = one_at_a_time(tmp.path(), Mode::Cot, 12);
    s.search.rungs.levels = 1;
    s.search.rungs.eta = 3;
    let whole = run_search(
        s.clone(),
        SearchOptions {
            name: Some("whole".into()),
            ..fake_evaluator()
        },
        std::future::pending(),
    )
    .await
    .unwrap();
    let dir = plain_dir(&whole);
    let j = journal(&dir);
    let key = |e: &serde_json::Value| {
        (
            e["id"].clone(),
            e["hash"].clone(),
            e["rung"].clone(),
            e["score"].clone(),
            e["stage"].clone(),
        )
    };
    let stages: HashSet<_> = j.iter().map(|e| e["stage"].to_string()).collect();
    assert_eq!(stages.len(), 2, "both stages are covered: {stages:?}");
    let text = std::fs::read_to_string(dir.join("journal.jsonl")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    // Kills after 2 evaluations (exploration), after 7 (past the switch), and after every one
    // but the last.
    for cut in [2, 7, lines.len() - 1] {
        let copy = tmp.path().join(format!("cut{cut}"));
        std::fs::create_dir_all(&copy).unwrap();
        for f in ["config.json", "sessions.log"] {
            std::fs::copy(dir.join(f), copy.join(f)).unwrap();
        }
        std::fs::write(copy.join("journal.jsonl"), lines[..cut].join("\n") + "\n").unwrap();
        let resumed = run_search(
            s.clone(),
            SearchOptions {
                resume: Some(copy.clone()),
                ..fake_evaluator()
            },
            std::future::pending(),
        )
        .await
        .unwrap();
        let r = journal(&copy);
        assert_eq!(
            r.iter().map(key).collect::<Vec<_>>(),
            j.iter().map(key).collect::<Vec<_>>(),
            "killed after {cut} evaluations"
        );
        assert_eq!(resumed.evaluated, whole.evaluated);
        assert_eq!(resumed.promotions, whole.promotions);
        assert_eq!(resumed.stage_switch_after, whole.stage_switch_after);
        assert_eq!(
            resumed.best.as_ref().map(|b| b.candidate),
            whole.best.as_ref().map(|b| b.candidate)
        );
    }
}

/// A mistyped `--resume` path, or a report asked of a directory that is not a run, says what
/// is wrong with it (missing, or not a run directory) instead of reporting a run with nothing
/// in it, and creates nothing there.
#[actix::test]
async fn a_path_that_is_not_a_run_directory_is_named_as_such() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such-run");
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    for (dir, want) in [
        (&missing, "no such directory"),
        (&empty, "not a run directory"),
    ] {
        let opts = SearchOptions {
            resume: Some(dir.clone()),
            ..fake_evaluator()
        };
        let err = run_search(tiny(tmp.path()), opts, std::future::pending())
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&dir.display().to_string()) && err.contains(want),
            "{err}"
        );
        let err = ists_actors::run::report::write_report(dir)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&dir.display().to_string()) && err.contains(want),
            "{err}"
        );
    }
    assert!(!missing.exists());
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);
}

/// A run directory in use is refused, not resumed a second time: two processes resuming one
/// run would append to one journal. The refusal names the directory and leaves no trace in it,
/// and the run resumes once the holder lets go.
#[actix::test]
async fn a_run_directory_in_use_is_refused_and_left_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = tiny(tmp.path());
    s.search.budget = 3;
    s.final_train.top_k = 0;
    let summary = run_search(s, fake_evaluator(), std::future::pending())
        .await
        .unwrap();
    let dir = PathBuf::from(&summary.run_dir);
    let resume = || SearchOptions {
        resume: Some(dir.clone()),
        ..fake_evaluator()
    };
    let sessions = std::fs::read_to_string(dir.join("sessions.log")).unwrap();
    let journal_before = std::fs::read_to_string(dir.join("journal.jsonl")).unwrap();
    // Another holder: flock locks belong to an open file, so this one is refused like another
    // process's would be.
    let held = ists_actors::run::dir::RunLock::take(&dir).unwrap();
    let err = run_search(tiny(tmp.path()), resume(), std::future::pending())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&dir.display().to_string()) && err.contains("in use by another process"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("sessions.log")).unwrap(),
        sessions
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("journal.jsonl")).unwrap(),
        journal_before
    );
    drop(held);
    let resumed = run_search(tiny(tmp.path()), resume(), std::future::pending())
        .await
        .unwrap();
    assert_eq!(resumed.resumed, 3);
}

/// A step budget bounds the compute of a search, proxy runs and promotions together, whatever
/// the candidate budget: the way two methods are compared at equal compute.
#[actix::test]
async fn a_step_budget_bounds_the_compute_of_a_search() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = tiny(tmp.path());
    let steps = s.proxy.steps as u64;
    s.search.budget = 1000;
    s.search.budget_steps = 10 * steps;
    s.final_train.top_k = 0;
    let plain = run_search(s.clone(), fake_evaluator(), std::future::pending())
        .await
        .unwrap();
    assert_eq!(plain.evaluated, 10);
    assert_eq!(plain.eval_steps, 10 * steps);
    // The candidate cap (1000) is far away: the stage switches when half the steps are spent,
    // else a step-bounded search would never optimize (and tie random search by construction).
    assert_eq!(plain.stage_switch_after, Some(5), "{plain:?}");
    let j = journal(&plain_dir(&plain));
    let stages: Vec<&str> = j.iter().map(|e| e["stage"].as_str().unwrap()).collect();
    // Proposals already in flight at the switch were made in exploration.
    let optimized = stages.iter().filter(|s| **s == "optimization").count();
    assert!((3..=5).contains(&optimized), "{stages:?}");
    let mut random = s.clone();
    random.search.exploration_share = 1.0;
    let r = run_search(random, fake_evaluator(), std::future::pending())
        .await
        .unwrap();
    assert_eq!(r.stage_switch_after, None, "random search never optimizes");
    // With rungs, promotions (3 times the steps) come out of the same budget.
    s.search.budget_steps = 14 * steps;
    s.search.rungs.levels = 1;
    s.search.rungs.eta = 3;
    let laddered = run_search(s, fake_evaluator(), std::future::pending())
        .await
        .unwrap();
    assert!(laddered.promotions >= 1, "{laddered:?}");
    assert!(laddered.eval_steps <= 14 * steps, "{}", laddered.eval_steps);
    assert_eq!(
        laddered.eval_steps,
        (laddered.evaluated as u64 + 3 * laddered.promotions as u64) * steps
    );
    assert!(
        laddered.evaluated < 14,
        "promotions took part of the budget"
    );
}

/// With `search.rungs.reserve`, new candidates stop with one climb's steps left, which go to
/// promotions once the last proxy runs are in: the step budget is spent to the step, and the
/// search's best proxy score has always climbed (a strong last candidate is not starved).
#[actix::test]
async fn a_reserve_keeps_one_climb_for_the_last_candidates() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = tiny(tmp.path());
    let steps = s.proxy.steps as u64;
    s.search.budget = 1000;
    s.search.rungs.levels = 1;
    s.search.rungs.eta = 3;
    s.search.rungs.reserve = true;
    s.final_train.top_k = 0;
    for runs in 5u64..=30 {
        s.search.budget_steps = runs * steps;
        let r = run_search(s.clone(), fake_evaluator(), std::future::pending())
            .await
            .unwrap();
        assert_eq!(
            r.eval_steps,
            runs * steps,
            "budget of {runs} proxy runs: {r:?}"
        );
        let j = journal(&plain_dir(&r));
        let best = j
            .iter()
            .filter(|e| e["rung"] == 0 && e["score"].is_number())
            .min_by(|a, b| {
                a["score"]
                    .as_f64()
                    .unwrap()
                    .total_cmp(&b["score"].as_f64().unwrap())
            })
            .unwrap();
        assert!(
            j.iter()
                .any(|e| e["hash"] == best["hash"] && e["rung"] == 1),
            "budget of {runs} proxy runs: the best proxy score {best} never climbed"
        );
    }
    // A reserve the step budget cannot hold is refused, naming the setting.
    s.search.budget_steps = 3 * steps;
    let err = run_search(s, fake_evaluator(), std::future::pending())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("search.rungs.reserve"), "{err}");
}

/// A joint-space search with the offline instructor, chain- and tree-of-thought: every design
/// carries hyperparameters the space offers, the settings vary, and (CoT) the real evaluator
/// and the final training run them.
#[actix::test]
async fn a_joint_space_search_proposes_and_trains_offered_hyperparameters() {
    for mode in [Mode::Cot, Mode::Tot] {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = tiny(tmp.path());
        s.search.mode = mode;
        s.search.budget = 6;
        s.search.hyper = ists::hyper::HyperSpace {
            hidden: vec![8, 16],
            blocks: vec![1, 2],
            lr_scale: vec![0.5, 1.0],
        };
        let space = s.hyper_space();
        let name = format!("joint-{mode:?}");
        let opts = if mode == Mode::Cot {
            SearchOptions {
                name: Some(name.clone()),
                ..SearchOptions::default()
            }
        } else {
            s.final_train.top_k = 0;
            SearchOptions {
                name: Some(name.clone()),
                ..fake_evaluator()
            }
        };
        let summary = run_search(s, opts, std::future::pending()).await.unwrap();
        assert_eq!(summary.evaluated, 6, "{mode:?}");
        let j = journal(&tmp.path().join(&name));
        let mut settings = HashSet::new();
        for e in &j {
            let arch: ists::space::ArchSpec = serde_json::from_value(e["arch"].clone()).unwrap();
            let hyper = arch.hyper.expect("a joint-space design without hyper");
            space.admit(Some(&hyper)).unwrap();
            settings.insert(hyper.label());
        }
        assert!(settings.len() >= 2, "{mode:?}: {settings:?}");
        if mode == Mode::Cot {
            // The final training trained the design as chosen (its report keeps the hyper).
            let report = &summary.final_results[0].report;
            assert_eq!(report.status, ists::train::EvalStatus::Ok);
            assert!(report.arch.hyper.is_some());
        }
    }
}

fn plain_dir(s: &ists_actors::run::summary::Summary) -> PathBuf {
    PathBuf::from(&s.run_dir)
}

/// A seconds budget: no candidate starts once the evaluations' own seconds reach it (those in
/// flight finish), and the stage switches when the exploration share of it is spent.
#[actix::test]
async fn a_seconds_budget_bounds_the_evaluation_time_of_a_search() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = tiny(tmp.path());
    s.search.budget = 1000;
    // The fake evaluator records 5 ms per candidate: 10 candidates' worth.
    s.search.budget_seconds = 0.05;
    s.final_train.top_k = 0;
    let in_flight = s.search.in_flight;
    let r = run_search(s, fake_evaluator(), std::future::pending())
        .await
        .unwrap();
    assert!(
        // The candidates already launched when the budget ran out finish (at most the
        // pipeline depth, in_flight).
        (10..=10 + in_flight).contains(&r.evaluated),
        "{} evaluated",
        r.evaluated
    );
    assert!(r.eval_seconds >= 0.05 - 1e-9, "{}", r.eval_seconds);
    assert_eq!(r.stage_switch_after, Some(5), "{r:?}");
}

/// A comparison's methods that choose the same design for a seed train it once: the second
/// copies the first's final trainings from the shared folder beside their run directories
/// (the same scores, counted in its seconds), while another seed, whose key differs, trains.
#[actix::test]
async fn the_methods_of_a_seed_share_an_identical_final_training() {
    use ists_actors::run::compare::{run_search_method, Method, FINALS_DIR};
    let tmp = tempfile::tempdir().unwrap();
    let mut s = tiny_chickenpox(tmp.path());
    // One candidate: the exploration stage the two methods share, so one design for both.
    s.search.budget = 1;
    s.final_train.seeds = 2;
    let dir = |m: &str, k: u64| tmp.path().join(format!("compare-x-{m}-seed{k}"));
    let (random, _) = run_search_method(&s, &Method::Random, 0, Some(&dir("random", 0)))
        .await
        .unwrap();
    assert_eq!(random.final_shared, 0);
    assert!(tmp.path().join(FINALS_DIR).is_dir());
    let (offline, summary) = run_search_method(&s, &Method::Offline, 0, Some(&dir("offline", 0)))
        .await
        .unwrap();
    assert_eq!(offline.final_shared, 2, "both seeds copied");
    assert_eq!(
        (offline.val_mae, offline.test_mae),
        (random.val_mae, random.test_mae)
    );
    let trained: f64 = summary.final_results[0]
        .seeds
        .iter()
        .map(|k| {
            let name = format!(
                "final-{}-s{}.json",
                summary.final_results[0].candidate, k.seed
            );
            let text = std::fs::read_to_string(dir("offline", 0).join(name)).unwrap();
            serde_json::from_str::<serde_json::Value>(&text).unwrap()["seconds"]
                .as_f64()
                .unwrap()
        })
        .sum();
    assert!(
        offline.seconds >= trained,
        "{} < {trained}",
        offline.seconds
    );
    assert!(dir("offline", 0)
        .join("model/weights.safetensors")
        .is_file());
    let (other, _) = run_search_method(&s, &Method::Offline, 1, Some(&dir("offline", 1)))
        .await
        .unwrap();
    assert_eq!(other.final_shared, 0, "another seed trains its own");
}

/// The seeds each request of a scripted LLM carried, and the designs it answers in turn.
struct SeedRecorder {
    seeds: Mutex<Vec<Option<u64>>>,
    replies: Mutex<VecDeque<&'static str>>,
}

async fn record_seed(
    state: web::Data<Arc<SeedRecorder>>,
    body: web::Json<serde_json::Value>,
) -> HttpResponse {
    state.seeds.lock().unwrap().push(body["seed"].as_u64());
    let content = state
        .replies
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or("no more");
    completion("c", content)
}

/// An LLM instructor as a comparison's method (`ists baseline --methods llm-openai`): the
/// search asks the configured endpoint whatever `llm.backend` the settings name, samples it
/// with a seed moved by the seed index (so paired seeds differ like the other methods'),
/// and the row says what the model's requests gave; an offline method's row has no `llm`.
#[actix::test]
async fn an_llm_method_asks_its_endpoint_with_the_seed_index_and_says_what_it_gave() {
    use ists_actors::run::compare::{run_search_method, LlmUse, Method};
    let recorder = Arc::new(SeedRecorder {
        seeds: Mutex::new(Vec::new()),
        replies: Mutex::new([A, B].into_iter().collect()),
    });
    let url = start_chat_mock(recorder.clone(), 1, record_seed);
    let tmp = tempfile::tempdir().unwrap();
    let mut s = tiny_chickenpox(tmp.path());
    assert_eq!(
        s.llm.backend,
        Backend::Offline,
        "the method, not the settings, picks it"
    );
    s.llm.base_url = url;
    s.llm.timeout_secs = 30.0;
    s.llm.seed = None;
    s.search.budget = 2;
    s.search.in_flight = 1;
    s.search.fallback = false;
    let method = Method::parse("llm-openai", |_: &str| None).unwrap();
    let dir = tmp.path().join("compare-x-llm-openai-seed3");
    let (run, summary) = run_search_method(&s, &method, 3, Some(&dir)).await.unwrap();
    assert_eq!((run.method.as_str(), run.evaluations), ("llm-openai", 2));
    assert_eq!(
        (summary.backend.as_str(), summary.mode.as_str()),
        ("openai", "cot")
    );
    let snapshot: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let seed = s.search.seed + (3 << 20);
    assert_eq!(snapshot["llm"]["seed"].as_u64(), Some(seed));
    let sent = recorder.seeds.lock().unwrap().clone();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert!(
        sent.iter().all(|x| x.is_some_and(|x| x >= seed)),
        "every request carries the seed index's seed: {sent:?}"
    );
    assert_eq!(
        run.llm,
        Some(LlmUse {
            requests: 2,
            usable_replies: 2,
            fallbacks: 0,
            adjusted: 0,
            llm_seconds: summary.llm_seconds,
        })
    );
    let line = serde_json::to_value(&run).unwrap();
    assert_eq!(line["llm"]["requests"], 2);
    let offline = ists_actors::run::compare::MethodRun {
        method: "random".into(),
        llm: None,
        ..run
    };
    assert!(serde_json::to_value(&offline).unwrap().get("llm").is_none());
}

/// Anytime quality (`ists baseline --anytime`): cut at the whole of the reference's steps, the
/// design a finished search held is its final one, trained with the same seeds, so the row
/// repeats the search's own scores; cut before any evaluation ended it is refused, naming the
/// cut; cut after the first proxy run, it holds that run's design.
#[actix::test]
async fn anytime_at_the_whole_budget_repeats_the_searchs_final_model() {
    use ists_actors::run::compare::{held_at, run_anytime, run_search_method, Method, MethodRun};
    let tmp = tempfile::tempdir().unwrap();
    let mut s = tiny_chickenpox(tmp.path());
    s.search.budget = 4;
    s.final_train.seeds = 2;
    let dir = tmp.path().join("compare-x-random-seed0");
    let (run, _) = run_search_method(&s, &Method::Random, 0, Some(&dir))
        .await
        .unwrap();
    let entries = ists_actors::search::memory::read_journal(&dir.join("journal.jsonl")).unwrap();
    let prepared = ists_actors::search::supervisor::prepare_data(&s).unwrap();
    let data = ists::train::TrainData::new(&prepared, tch::Device::Cpu).unwrap();
    let whole = run_anytime(&s, &run, &run, &entries, 1.0, &data, None).unwrap();
    assert_eq!(whole.method, "random@1");
    assert_eq!(
        (
            whole.val_mae,
            whole.test_mae,
            whole.eval_steps,
            whole.evaluations
        ),
        (run.val_mae, run.test_mae, run.eval_steps, run.evaluations)
    );
    let first = entries[0].steps as u64;
    let short = MethodRun {
        eval_steps: first - 1,
        ..run.clone()
    };
    let err = run_anytime(&s, &run, &short, &entries, 0.5, &data, None).unwrap_err();
    assert!(
        err.contains("random@0.5") && err.contains("no design"),
        "{err}"
    );
    let (bank, ended, steps) = held_at(&entries, first);
    assert_eq!((ended, steps, bank.len()), (1, first, 1));
    assert_eq!(bank.best(1)[0].hash, entries[0].hash);
    assert!(run_anytime(&s, &run, &run, &entries, 1.5, &data, None).is_err());
    // The guard is the function's own: a journal cut to its first line cannot stand for the
    // whole search, and a reference under another seed is not a pair.
    let err = run_anytime(&s, &run, &run, &entries[..1], 1.0, &data, None).unwrap_err();
    assert!(
        err.contains("random@1 seed +0: skipped") && err.contains("partial"),
        "{err}"
    );
    let other = MethodRun {
        seed: 1,
        ..run.clone()
    };
    assert!(run_anytime(&s, &run, &other, &entries, 1.0, &data, None)
        .unwrap_err()
        .contains("same seed"));
    // With the comparison's shared folder, the search's own final trainings (shared there
    // under the same key) are taken as they are: the same scores, nothing trained or added.
    let finals = tmp.path().join(ists_actors::run::compare::FINALS_DIR);
    let entries_in = |dir: &std::path::Path| {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let shared = entries_in(&finals);
    assert_eq!(
        shared.len(),
        2,
        "the search shared its two seeds: {shared:?}"
    );
    let taken = run_anytime(&s, &run, &run, &entries, 1.0, &data, Some(&finals)).unwrap();
    assert_eq!((taken.val_mae, taken.test_mae), (run.val_mae, run.test_mae));
    assert_eq!(entries_in(&finals), shared);
    // A fresh folder: each training is added as soon as it ends (no export folder left), and
    // a reading made again (as after a kill) takes them from there instead of training:
    // marked reports come back as they were written.
    let own = tmp.path().join("other-finals");
    let trained = run_anytime(&s, &run, &run, &entries, 1.0, &data, Some(&own)).unwrap();
    assert_eq!(trained.test_mae, run.test_mae);
    let added = entries_in(&own);
    assert_eq!(added.len(), 2, "{added:?}");
    assert!(added.iter().all(|n| !n.starts_with('.')), "{added:?}");
    for name in &added {
        let file = own.join(name).join("report.json");
        let mut report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        report["test"]["average"]["mae"] = serde_json::json!(9.5);
        std::fs::write(&file, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    }
    let again = run_anytime(&s, &run, &run, &entries, 1.0, &data, Some(&own)).unwrap();
    assert_eq!(again.test_mae, 9.5);
}

/// A comparison's search (`ists baseline --seeds`) killed mid-way resumes from its run
/// directory: the evaluations made before are kept and counted, its row says how many were
/// carried over, and its wall time includes the earlier session; a directory left under other
/// settings (another seed, another method) is refused, naming it.
#[actix::test]
async fn a_comparison_search_resumes_from_its_run_directory() {
    use ists_actors::run::compare::{run_search_method, Method};
    let tmp = tempfile::tempdir().unwrap();
    let mut s = tiny(tmp.path());
    s.search.budget = 6;
    let dir = tmp.path().join("compare-x-random-seed0");
    let (first, _) = run_search_method(&s, &Method::Random, 0, Some(&dir))
        .await
        .unwrap();
    assert_eq!((first.evaluations, first.resumed), (6, 0));
    // As a kill after the third journal line would leave it.
    let full = std::fs::read_to_string(dir.join("journal.jsonl")).unwrap();
    let kept: Vec<&str> = full.lines().take(3).collect();
    let kept_candidates = journal(&dir)[..3]
        .iter()
        .map(|e| e["hash"].as_str().unwrap().to_string())
        .collect::<HashSet<_>>()
        .len();
    std::fs::write(dir.join("journal.jsonl"), kept.join("\n") + "\n").unwrap();
    std::fs::remove_file(dir.join("summary.json")).unwrap();
    let (again, summary) = run_search_method(&s, &Method::Random, 0, Some(&dir))
        .await
        .unwrap();
    assert_eq!(summary.run_dir, dir.display().to_string());
    assert_eq!((again.evaluations, again.resumed), (6, kept_candidates));
    let j = journal(&dir);
    assert!(j.len() >= 6);
    for (e, l) in j.iter().zip(&kept) {
        assert_eq!(*e, serde_json::from_str::<serde_json::Value>(l).unwrap());
    }
    assert!(
        again.seconds >= first.seconds,
        "the resumed run's time ({}) leaves out its first session ({})",
        again.seconds,
        first.seconds
    );
    for (method, k) in [(Method::Random, 1), (Method::Offline, 0)] {
        let err = run_search_method(&s, &method, k, Some(&dir))
            .await
            .unwrap_err();
        assert!(
            err.contains("compare-x-random-seed0") && err.contains("other settings"),
            "{err}"
        );
    }
}

/// `search.optimization` reaches the offline instructor through the wiring: two searches with
/// the same seed share their exploration stage, design for design, and then part ways, the
/// guided one choosing among offspring where the other takes the first drawn. Both spend the
/// budget on distinct designs.
#[actix::test]
async fn the_guided_optimization_stage_departs_from_random_offspring() {
    let tmp = tempfile::tempdir().unwrap();
    let mut designs = Vec::new();
    for rule in [
        ists::config::Optimization::Mutate,
        ists::config::Optimization::Guided,
    ] {
        let mut s = one_at_a_time(tmp.path(), Mode::Cot, 16);
        s.search.optimization = rule;
        s.search.hyper = ists::hyper::HyperSpace {
            hidden: vec![8, 16],
            blocks: vec![1, 2],
            lr_scale: vec![0.5, 1.0, 2.0],
        };
        let name = format!("optimization-{rule:?}");
        let opts = SearchOptions {
            name: Some(name.clone()),
            ..fake_evaluator()
        };
        let summary = run_search(s, opts, std::future::pending()).await.unwrap();
        assert_eq!(summary.evaluated, 16, "{rule:?}");
        let j = journal(&tmp.path().join(&name));
        let mut by_id: Vec<(u64, String, String)> = j
            .iter()
            .map(|e| {
                (
                    e["id"].as_u64().unwrap(),
                    e["stage"].as_str().unwrap().to_string(),
                    e["hash"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        by_id.sort();
        let unique: HashSet<&String> = by_id.iter().map(|(_, _, h)| h).collect();
        assert_eq!(unique.len(), 16, "{rule:?}: a design scored twice");
        designs.push(by_id);
    }
    let (mutate, guided) = (&designs[0], &designs[1]);
    let explored = |d: &[(u64, String, String)]| -> Vec<String> {
        d.iter()
            .filter(|(_, s, _)| s == "exploration")
            .map(|(_, _, h)| h.clone())
            .collect()
    };
    assert!(!explored(mutate).is_empty());
    assert_eq!(explored(mutate), explored(guided), "exploration is shared");
    let optimized = |d: &[(u64, String, String)]| -> Vec<String> {
        d.iter()
            .filter(|(_, s, _)| s == "optimization")
            .map(|(_, _, h)| h.clone())
            .collect()
    };
    assert!(optimized(guided).len() >= 4, "{guided:?}");
    assert_ne!(optimized(mutate), optimized(guided));
}

/// `search.prior` reaches the offline instructor: with a bank (a journal of an earlier search)
/// in which every design at learning-rate factor 2 ranked above every other, prior-ranked
/// exploration proposes that factor far more often than uniform exploration, under the same
/// seed. A prior file that is missing stops the search before a run directory is made, with
/// the file named.
#[actix::test]
async fn prior_ranked_exploration_follows_an_earlier_search_bank() {
    let tmp = tempfile::tempdir().unwrap();
    let prior_file = tmp.path().join("earlier-journal.jsonl");
    let hyper = write_lr2_prior(&prior_file);

    let mut fast = Vec::new();
    for rule in [
        ists::config::Exploration::Sample,
        ists::config::Exploration::Prior,
    ] {
        let mut s = one_at_a_time(tmp.path(), Mode::Cot, 12);
        s.search.exploration_share = 1.0;
        s.search.exploration = rule;
        s.search.prior = vec![prior_file.clone()];
        s.search.hyper = hyper.clone();
        let name = format!("exploration-{rule:?}");
        let opts = SearchOptions {
            name: Some(name.clone()),
            ..fake_evaluator()
        };
        let summary = run_search(s, opts, std::future::pending()).await.unwrap();
        assert_eq!(summary.evaluated, 12, "{rule:?}");
        let j = journal(&tmp.path().join(&name));
        let at_two = j
            .iter()
            .filter(|e| e["arch"]["hyper"]["lr_scale"].as_f64() == Some(2.0))
            .count();
        fast.push(at_two);
    }
    assert!(
        fast[1] >= 10 && fast[1] > fast[0] + 3,
        "factor 2 proposed {} of 12 times uniformly, {} with the prior",
        fast[0],
        fast[1]
    );

    let mut s = one_at_a_time(tmp.path(), Mode::Cot, 4);
    s.search.exploration = ists::config::Exploration::Prior;
    s.search.prior = vec![tmp.path().join("moved-away.jsonl")];
    let opts = SearchOptions {
        name: Some("no-prior".into()),
        ..fake_evaluator()
    };
    let e = run_search(s, opts, std::future::pending())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("search.prior[0]") && e.contains("moved-away.jsonl"),
        "{e}"
    );
    assert!(!tmp.path().join("no-prior").exists());
}

/// `ists baseline` on the tiny config and chickenpox (4 steps in, 4 out), its rows in
/// `results` and its run directories under `runs`; callers add the methods, seeds and the rest.
fn tiny_baseline(results: &std::path::Path, runs: &std::path::Path) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_ists"));
    c.current_dir(root())
        .args(["baseline", "--config", "config/tiny.toml"])
        .args(["--data", "chickenpox", "--results"])
        .arg(results)
        .env("ISTS__RUNS_DIR", runs)
        .env("ISTS__DATA__PREPARE__INPUT_LEN", "4")
        .env("ISTS__DATA__PREPARE__OUTPUT_LEN", "4")
        .env("ISTS__DATA__PREPARE__TIME_OF_DAY", "false")
        .env("OMP_NUM_THREADS", "1");
    c
}

/// [`tiny_baseline`] of random search under seed index 0 with `extra` arguments, which must
/// succeed: its (stdout, stderr).
fn random_seed0(
    results: &std::path::Path,
    runs: &std::path::Path,
    extra: &[&str],
) -> (String, String) {
    let out = tiny_baseline(results, runs)
        .args(["--seeds", "1", "--methods", "random"])
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    (stdout, stderr)
}

/// Runs `c`, which must fail having printed nothing on stdout (no table); returns its stderr.
fn refused_before_any_output(c: &mut std::process::Command) -> String {
    let out = c.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    stderr
}

/// A misspelt `--methods` entry is refused before any work: no baseline table printed, no
/// results file or settings fingerprint left behind, and the message names the method and
/// the known ones.
#[test]
fn a_comparison_refuses_an_unknown_method_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let stderr = refused_before_any_output(
        tiny_baseline(&tmp.path().join("search-x.jsonl"), &tmp.path().join("runs")).args([
            "--seeds",
            "2",
            "--methods",
            "random,rnd",
        ]),
    );
    assert!(
        stderr.contains("--methods: unknown method 'rnd'") && stderr.contains("offline-prior"),
        "{stderr}"
    );
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

/// `ists baseline --blind` writes its rows as always but prints no test score (not a row's,
/// not an anytime cut's, not the classical baselines', no paired table); the same file read
/// without `--blind` prints the tables, so the checks below would see a score if one were shown.
#[test]
fn a_blind_comparison_writes_its_rows_and_prints_no_test_score() {
    let tmp = tempfile::tempdir().unwrap();
    let results = tmp.path().join("search-x.jsonl");
    let runs = tmp.path().join("runs");
    let baseline = |extra: &[&str]| random_seed0(&results, &runs, extra);
    let scoreless = |all: &str| {
        all.matches("test MAE").count() == all.matches("test MAE not shown").count()
            && !all.contains("| last value")
            && !all.contains("Wilcoxon")
            && !all.contains("time to quality")
    };
    let (out, err) = baseline(&["--blind"]);
    assert!(
        err.contains("random seed +0: row written, test MAE not shown (--blind)"),
        "{err}"
    );
    assert!(
        out.contains("1 rows in") && out.contains("--blind"),
        "{out}"
    );
    assert!(scoreless(&format!("{out}{err}")), "{out}{err}");
    let rows = std::fs::read_to_string(&results).unwrap();
    let row: serde_json::Value = serde_json::from_str(rows.lines().next().unwrap()).unwrap();
    assert_eq!(rows.lines().count(), 1);
    assert!(
        row["test_mae"].as_f64().is_some_and(f64::is_finite),
        "{row}"
    );

    let (out, err) = baseline(&["--blind", "--anytime", "1"]);
    assert!(
        err.contains("random@1 seed +0: row written, test MAE not shown (--blind)"),
        "{err}"
    );
    assert!(scoreless(&format!("{out}{err}")), "{out}{err}");
    assert!(out.contains("2 rows in"), "{out}");

    // Read without --blind: nothing is searched again, and the tables appear.
    let (out, _) = baseline(&[]);
    assert!(
        out.contains("| last value") && out.contains("| random@1 | 1 |"),
        "{out}"
    );
    assert!(!scoreless(&out), "{out}");
}

/// One seed without --results writes no rows, so --blind would hide nothing: refused first.
#[test]
fn blind_needs_a_results_file_or_several_seeds() {
    let stderr = refused_before_any_output(
        std::process::Command::new(env!("CARGO_BIN_EXE_ists"))
            .current_dir(root())
            .args(["baseline", "--config", "config/tiny.toml", "--blind"]),
    );
    assert!(
        stderr.contains("--blind") && stderr.contains("--results"),
        "{stderr}"
    );
}

/// `ists baseline --results F` keeps each finished search's journal beside its rows
/// (`F.journals/random-seed0.jsonl`, the run directory's byte for byte), and `--anytime 1`
/// made after the run directory is gone (another machine, a cleanup) reads the kept journal
/// and repeats the search's own row; a kept journal cut short is refused for a later cut.
#[test]
fn a_comparison_keeps_its_searches_journals_for_later_readings() {
    let tmp = tempfile::tempdir().unwrap();
    let results = tmp.path().join("search-x.jsonl");
    let runs = tmp.path().join("runs");
    let baseline = |extra: &[&str]| random_seed0(&results, &runs, extra).1;
    baseline(&[]);
    let run_dir = runs.join("compare-search-x-random-seed0");
    let kept = tmp
        .path()
        .join("search-x.jsonl.journals")
        .join("random-seed0.jsonl");
    let original = std::fs::read(run_dir.join("journal.jsonl")).unwrap();
    assert!(!original.is_empty());
    assert_eq!(std::fs::read(&kept).unwrap(), original);
    std::fs::remove_dir_all(&runs).unwrap();
    baseline(&["--anytime", "1"]);
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(&results)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let row = |m: &str| {
        rows.iter()
            .find(|r| r["method"] == m)
            .unwrap_or_else(|| panic!("no {m} row in {rows:?}"))
    };
    let (search, cut) = (row("random"), row("random@1"));
    for key in ["val_mae", "test_mae", "eval_steps", "evaluations"] {
        assert_eq!(search[key], cut[key], "{key}");
    }
    // A kept journal cut short (a prefix of the search) cannot answer for a later cut: the
    // reading is skipped, naming the journal and the steps, and writes no row.
    let text = String::from_utf8(original).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 2, "the search scored one design only");
    std::fs::write(&kept, format!("{}\n", lines[0])).unwrap();
    let stderr = baseline(&["--anytime", "0.99"]);
    assert!(
        stderr.contains("random@0.99 seed +0: skipped")
            && stderr.contains("random-seed0.jsonl")
            && stderr.contains("partial"),
        "{stderr}"
    );
    let after = std::fs::read_to_string(&results).unwrap();
    assert!(!after.contains("random@0.99"), "{after}");
}
