//! The real local model end to end: `LocalServer::ensure` installs (once, into the cache) and
//! starts the bundled gemma-3-270m server, then a short chain-of-thought search and a short
//! tree-of-thought search run through it. Every reply must validate against the JSON schema
//! the request carried; the searches must spend their budget even though a small base model
//! proposes poor or repeated designs (repairs, dedup, the adjustment of repeated duplicates to
//! the nearest unexplored design and the offline fallback cover that). Chain-of-thought replies
//! carry a reasoning per node; tree-of-thought has proposal steps (k alternatives) and value
//! steps, each checked against its own schema.
//! The evaluator is faked (`fake_cost`) to keep the test on the LLM path and within CI time.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and examples may panic on failure

use ists::config::{Backend, Mode, Settings};
use ists::schema::{alternatives_schema, cot_schema, value_schema};
use ists::space::SpaceKind;
use ists_actors::instructor::local::LocalServer;
use ists_actors::{run_search, settings, SearchOptions};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod common;
use common::root;

/// Checks `v` against the subset of JSON Schema that `ists::schema` uses; returns the path of
/// the first violation.
fn check(schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    let fail = |what: &str| Err(format!("{at}: {what} (value {v})"));
    if let Some(alts) = schema.get("anyOf").and_then(Value::as_array) {
        return if alts.iter().any(|a| check(a, v, at).is_ok()) {
            Ok(())
        } else {
            fail("matches no alternative")
        };
    }
    if let Some(c) = schema.get("const") {
        if c != v {
            return fail(&format!("expected {c}"));
        }
    }
    if let Some(e) = schema.get("enum").and_then(Value::as_array) {
        if !e.contains(v) {
            return fail("not in enum");
        }
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("object") => {
            let Some(o) = v.as_object() else {
                return fail("not an object");
            };
            let props = schema["properties"].as_object().unwrap();
            for k in schema["required"].as_array().unwrap() {
                if !o.contains_key(k.as_str().unwrap()) {
                    return fail(&format!("missing {k}"));
                }
            }
            for (k, x) in o {
                match props.get(k) {
                    Some(p) => check(p, x, &format!("{at}.{k}"))?,
                    None => return fail(&format!("unexpected key {k}")),
                }
            }
        }
        Some("array") => {
            let Some(a) = v.as_array() else {
                return fail("not an array");
            };
            let n = |k: &str| schema.get(k).and_then(Value::as_u64).map(|x| x as usize);
            if n("minItems").is_some_and(|m| a.len() < m)
                || n("maxItems").is_some_and(|m| a.len() > m)
            {
                return fail("wrong length");
            }
            for (i, x) in a.iter().enumerate() {
                let item = match schema.get("prefixItems").and_then(Value::as_array) {
                    Some(slots) => &slots[i],
                    None => &schema["items"],
                };
                check(item, x, &format!("{at}[{i}]"))?;
            }
        }
        Some("integer") if !v.is_i64() => return fail("not an integer"),
        Some("string") => {
            let Some(s) = v.as_str() else {
                return fail("not a string");
            };
            let max = schema.get("maxLength").and_then(Value::as_u64);
            if max.is_some_and(|m| s.chars().count() as u64 > m) {
                return fail("too long");
            }
        }
        _ => {}
    }
    Ok(())
}

/// Validates every reply of a run against its request's schema; returns how many there were.
fn validate_replies(run: &Path) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir(run.join("replies")).unwrap() {
        let path = entry.unwrap().path();
        let tag = path.file_stem().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        // Tags name the step: `-n{node}-...-value` for a tree-of-thought value step (as many
        // values as its prompt lists candidates), `-n{node}-` for a proposal step (`branches`
        // alternatives), else a chain-of-thought design.
        let node = tag
            .split('-')
            .find_map(|p| p.strip_prefix('n')?.parse::<usize>().ok());
        let schema = match node {
            Some(_) if tag.ends_with("-value") => {
                let prompt =
                    std::fs::read_to_string(run.join("prompts").join(format!("{tag}.md"))).unwrap();
                let n = prompt
                    .lines()
                    .filter(|l| l.starts_with("candidate "))
                    .count();
                value_schema(n)
            }
            Some(node) => alternatives_schema(SpaceKind::Ists, node, BRANCHES),
            None => cot_schema(SpaceKind::Ists),
        };
        let v: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("reply {tag} is not JSON ({e}): {text}"));
        check(&schema, &v, "$")
            .unwrap_or_else(|e| panic!("reply {tag} breaks its schema: {e}\n{text}"));
        n += 1;
    }
    n
}

/// Tree-of-thought alternatives asked for per proposal step.
const BRANCHES: usize = 2;

fn local_settings(runs: &Path, mode: Mode, budget: usize) -> Settings {
    tch::set_num_threads(1);
    let mut s = settings::load(Some(&root().join("config/tiny.toml"))).unwrap();
    s.runs_dir = runs.to_path_buf();
    s.data_dir = root().join("data");
    s.prompts_dir = root().join("prompts");
    s.final_train.top_k = 0;
    s.llm.backend = Backend::Local;
    s.llm.temperature = 0.0;
    s.llm.max_tokens = 512;
    s.llm.timeout_secs = 300.0;
    // A port of its own, so a developer's `ists llm serve` on the default port is not reused.
    s.llm.local.port = 18093;
    s.search.mode = mode;
    s.search.budget = budget;
    s.search.in_flight = 1;
    s.search.max_repairs = 1;
    s.search.tot.branches = BRANCHES;
    s.search.tot.beam = 1;
    s.search.tot.concurrency = 1;
    s
}

#[actix::test]
async fn cot_and_tot_searches_run_through_the_real_local_model() {
    let tmp = tempfile::tempdir().unwrap();
    // One server for both searches (each search would otherwise start and stop its own).
    let probe = local_settings(tmp.path(), Mode::Cot, 1);
    let local = probe.llm.local.clone();
    let server = tokio::task::spawn_blocking(move || LocalServer::ensure(&local))
        .await
        .unwrap()
        .expect("the local LLM server did not start");
    for (mode, budget, name) in [(Mode::Cot, 3, "cot"), (Mode::Tot, 2, "tot")] {
        let s = local_settings(tmp.path(), mode, budget);
        let opts = SearchOptions {
            name: Some(name.into()),
            fake_cost: Some(Duration::from_millis(5)),
            ..SearchOptions::default()
        };
        let summary = run_search(s, opts, std::future::pending()).await.unwrap();
        eprintln!("{name}: {}", serde_json::to_string(&summary).unwrap());
        assert_eq!(summary.evaluated, budget, "{name}");
        assert!(summary.stopped.is_none(), "{name}: {:?}", summary.stopped);
        assert!(
            summary.llm_errors.is_empty(),
            "{name}: {:?}",
            summary.llm_errors
        );
        assert!(
            summary.replies >= 1 && summary.replies == summary.requests,
            "{name}"
        );
        assert!(summary.usage.prompt_tokens > 0 && summary.usage.completion_tokens > 0);
        let run = PathBuf::from(&summary.run_dir);
        let n = validate_replies(&run);
        assert_eq!(n, summary.replies, "{name}: a reply was not logged");
        // The local model ran with the schema, not a downgraded format.
        assert!(
            !summary.llm_retries.contains_key("format_fallback"),
            "{name}"
        );
    }
    let started = server.started();
    drop(server);
    if started {
        // What the test started is stopped again.
        assert_eq!(ists_actors::instructor::local::probe(18093), Ok(None));
    }
}
