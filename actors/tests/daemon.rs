//! The daemon against a real server on 127.0.0.1:0: API round trips, server-sent events in
//! order and resumed after a disconnect, authentication, bad input, kill -9 while two searches
//! run followed by a restart, and 20 concurrent searches. Searches use the fake evaluator
//! (`daemon.fake_cost_ms`, test-only) so they are fast.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and examples may panic on failure

use ists_actors::daemon::DaemonSettings;
use ists_actors::{settings, Daemon, DaemonError};
use std::collections::{BTreeMap, HashSet};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const TOKEN: &str = "test-token-7f3a";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn base() -> ists::config::Settings {
    let mut s = settings::load(Some(&root().join("config/tiny.toml"))).unwrap();
    s.data_dir = root().join("data");
    s.prompts_dir = root().join("prompts");
    s.final_train.top_k = 0;
    s
}

fn daemon_settings(dir: &Path) -> DaemonSettings {
    DaemonSettings {
        port: 0,
        data_dir: dir.to_path_buf(),
        token: Some(TOKEN.into()),
        fake_cost_ms: Some(5),
        ..DaemonSettings::default()
    }
}

struct Http {
    c: reqwest::Client,
    base: String,
}

impl Http {
    fn new(addr: impl std::fmt::Display) -> Http {
        Http {
            c: reqwest::Client::new(),
            base: format!("http://{addr}"),
        }
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<String>,
    ) -> (u16, String) {
        let url = format!("{}{path}", self.base);
        let mut r = match method {
            "POST" => self.c.post(url),
            _ => self.c.get(url),
        };
        if let Some(t) = token {
            r = r.header("Authorization", format!("Bearer {t}"));
        }
        if let Some(b) = body {
            r = r.header("Content-Type", "application/json").body(b);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap())
    }

    async fn json(&self, path: &str) -> serde_json::Value {
        let (status, body) = self.call("GET", path, Some(TOKEN), None).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    async fn submit(&self, config: serde_json::Value) -> String {
        let (status, body) = self
            .call("POST", "/searches", Some(TOKEN), Some(config.to_string()))
            .await;
        assert_eq!(status, 201, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["id"].as_str().unwrap().to_string()
    }

    /// Waits until the search reaches a terminal status; returns its row.
    async fn wait_done(&self, id: &str, timeout: Duration) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.json(&format!("/searches/{id}")).await;
            if ["completed", "cancelled", "failed"].contains(&v["status"].as_str().unwrap()) {
                return v;
            }
            assert!(Instant::now() < deadline, "search {id} did not finish: {v}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Reads server-sent events; stops after `max` events (None: until the stream ends).
    async fn sse(&self, id: &str, last: Option<u64>, max: Option<usize>) -> Vec<(u64, String)> {
        let mut r = self
            .c
            .get(format!("{}/searches/{id}/events", self.base))
            .header("Authorization", format!("Bearer {TOKEN}"));
        if let Some(l) = last {
            r = r.header("Last-Event-ID", l.to_string());
        }
        let mut resp = r.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        assert!(resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream"));
        let mut buf = String::new();
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        while let Some(chunk) = tokio::time::timeout(Duration::from_secs(60), resp.chunk())
            .await
            .expect("event stream stalled")
            .unwrap()
        {
            buf.push_str(std::str::from_utf8(&chunk).unwrap());
            while let Some(end) = buf.find("\n\n") {
                let block: String = buf.drain(..end + 2).collect();
                let mut seq = None;
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        seq = Some(v.parse::<u64>().unwrap());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data = v.to_string();
                    }
                }
                if let Some(s) = seq {
                    out.push((s, data));
                    if max.is_some_and(|m| out.len() >= m) {
                        return out; // dropping the response disconnects
                    }
                }
            }
            assert!(Instant::now() < deadline);
        }
        out
    }
}

#[actix::test]
async fn api_round_trip_and_events_in_order_resumed_after_a_disconnect() {
    let tmp = tempfile::tempdir().unwrap();
    let handle = Daemon::new(base(), daemon_settings(tmp.path()))
        .start()
        .await
        .unwrap();
    let http = Http::new(handle.addr());
    assert_eq!(http.call("GET", "/health", None, None).await.0, 200);
    let id = http
        .submit(serde_json::json!({"search": {"budget": 5, "in_flight": 2}}))
        .await;

    // Read a few events, disconnect, resume from the last id received.
    let first = http.sse(&id, None, Some(3)).await;
    assert_eq!(first.len(), 3);
    let rest = http.sse(&id, Some(first[2].0), None).await;
    let all: Vec<(u64, String)> = first.into_iter().chain(rest).collect();
    let seqs: Vec<u64> = all.iter().map(|e| e.0).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "events missing, repeated or out of order"
    );
    let kinds: Vec<String> = all
        .iter()
        .map(|(_, d)| {
            let v: serde_json::Value = serde_json::from_str(d).unwrap();
            v["event"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(kinds.first().map(String::as_str), Some("started"));
    assert_eq!(kinds.last().map(String::as_str), Some("finished"));
    assert_eq!(kinds.iter().filter(|k| *k == "evaluated").count(), 5);

    let row = http.wait_done(&id, Duration::from_secs(60)).await;
    assert_eq!(row["status"], "completed", "{row}");
    assert_eq!(row["evaluated"], 5);
    assert_eq!(row["budget"], 5);
    assert_eq!(row["progress"], 1.0);
    assert!(row["best"]["score"].as_f64().is_some(), "{row}");
    // The offline instructor reports no token usage; the field is there all the same.
    assert_eq!(row["tokens"]["prompt"], 0, "{row}");

    // Candidates, paged.
    let p1 = http
        .json(&format!("/searches/{id}/candidates?limit=3"))
        .await;
    let p2 = http
        .json(&format!("/searches/{id}/candidates?offset=3&limit=3"))
        .await;
    assert_eq!(p1["total"], 5);
    assert_eq!(p1["items"].as_array().unwrap().len(), 3);
    assert_eq!(p2["items"].as_array().unwrap().len(), 2);
    let ids: HashSet<u64> = p1["items"]
        .as_array()
        .unwrap()
        .iter()
        .chain(p2["items"].as_array().unwrap())
        .map(|c| c["candidate"].as_u64().unwrap())
        .collect();
    assert_eq!(ids.len(), 5);
    assert!(p1["items"][0]["arch"]["edges"].is_array());

    let list = http.json("/searches").await;
    assert!(list
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["id"] == id.as_str()));

    let (status, metrics) = http.call("GET", "/metrics", None, None).await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("ists_candidates_evaluated_total 5"),
        "{metrics}"
    );
    assert!(metrics.contains("ists_llm_requests_total"), "{metrics}");
    assert!(metrics.contains("ists_eval_queue_depth 0"), "{metrics}");
    assert!(
        metrics.contains("ists_searches{status=\"completed\"} 1"),
        "{metrics}"
    );

    // A finished search cannot be cancelled; a running one can.
    let (status, body) = http
        .call("POST", &format!("/searches/{id}/cancel"), Some(TOKEN), None)
        .await;
    assert_eq!(status, 409, "{body}");
    let long = http
        .submit(serde_json::json!({"search": {"budget": 200}}))
        .await;
    let (status, body) = http
        .call(
            "POST",
            &format!("/searches/{long}/cancel"),
            Some(TOKEN),
            None,
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let row = http.wait_done(&long, Duration::from_secs(60)).await;
    assert_eq!(row["status"], "cancelled", "{row}");
    assert!(row["evaluated"].as_u64().unwrap() < 200);
    handle.shutdown().await;
}

#[actix::test]
async fn auth_and_bad_input_get_clear_4xx_and_the_daemon_keeps_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = daemon_settings(tmp.path());
    d.auth_reads = true;
    d.max_body_bytes = 2048;
    d.max_budget = 50;
    let handle = Daemon::new(base(), d).start().await.unwrap();
    let http = Http::new(handle.addr());
    let ok = Some(r#"{"search":{"budget":2}}"#.to_string());

    let (s, b) = http.call("POST", "/searches", None, ok.clone()).await;
    assert_eq!(s, 401, "{b}");
    assert!(b.contains("missing bearer token"), "{b}");
    let (s, b) = http
        .call("POST", "/searches", Some("guess-token-123"), ok.clone())
        .await;
    assert_eq!(s, 401, "{b}");
    assert!(!b.contains("guess-token-123") && !b.contains(TOKEN), "{b}");
    assert_eq!(http.call("GET", "/searches", None, None).await.0, 401);
    assert_eq!(http.call("GET", "/metrics", Some("x"), None).await.0, 401);

    let cases: &[(&str, u16, &str)] = &[
        ("{\"search\": {\"budget\": ", 400, "malformed JSON"),
        ("[1, 2]", 400, "JSON object"),
        (r#"{"search":{"budgt":3}}"#, 400, "budgt"),
        (r#"{"search":{"budget":"three"}}"#, 400, "search.budget"),
        (r#"{"search":{"budget":0}}"#, 400, "search.budget"),
        (r#"{"search":{"budget":51}}"#, 400, "search.budget"),
        (r#"{"search":{"in_flight":99}}"#, 400, "search.in_flight"),
        (r#"{"runs_dir":"/tmp/elsewhere"}"#, 400, "runs_dir"),
        (r#"{"prompts_dir":"../../etc"}"#, 400, "prompts_dir"),
        (
            r#"{"data":{"source":"../../etc/passwd"}}"#,
            400,
            "data.source",
        ),
        (
            r#"{"llm":{"key_env":"ISTS_DAEMON_TOKEN"}}"#,
            400,
            "llm.key_env",
        ),
        (r#"{"bogus":1}"#, 400, "bogus"),
    ];
    for (body, status, needle) in cases {
        let (s, b) = http
            .call("POST", "/searches", Some(TOKEN), Some(body.to_string()))
            .await;
        assert_eq!(s, *status, "{body} -> {b}");
        let v: serde_json::Value = serde_json::from_str(&b).expect("errors are JSON");
        assert!(
            v["error"].as_str().unwrap().contains(needle),
            "{body} -> {b}"
        );
    }
    let huge = format!(
        r#"{{"search":{{"budget":2}},"pad":"{}"}}"#,
        "x".repeat(10_000)
    );
    let (s, b) = http
        .call("POST", "/searches", Some(TOKEN), Some(huge))
        .await;
    assert_eq!(s, 413, "{b}");
    assert!(b.contains("2048"), "{b}");

    for (path, status) in [
        ("/searches/zzz", 400),
        ("/searches/s12g", 400),
        // Decoded or not, a traversal attempt never reaches a file: some 4xx (0 = any).
        ("/searches/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd", 0),
        ("/searches/s0123abc", 404),
        ("/searches/s0123abc/candidates", 404),
        ("/searches/s0123abc/events", 404),
        ("/searches/s0123abc/candidates?limit=lots", 400),
        ("/nope", 404),
    ] {
        let (s, b) = http.call("GET", path, Some(TOKEN), None).await;
        if status == 0 {
            assert!((400..500).contains(&s), "{path} -> {s} {b}");
        } else {
            assert_eq!(s, status, "{path} -> {b}");
        }
        assert!(
            serde_json::from_str::<serde_json::Value>(&b).is_ok(),
            "{path} -> {b}"
        );
    }
    let (s, _) = http
        .call("POST", "/searches/s0123abc/cancel", Some(TOKEN), None)
        .await;
    assert_eq!(s, 404);

    // Still serving, and a valid search still runs.
    assert_eq!(http.call("GET", "/health", None, None).await.0, 200);
    let id = http
        .submit(serde_json::json!({"search": {"budget": 2}}))
        .await;
    let row = http.wait_done(&id, Duration::from_secs(60)).await;
    assert_eq!(row["status"], "completed", "{row}");
    handle.shutdown().await;

    // A non-loopback address without a token is refused before binding.
    let mut open = daemon_settings(tmp.path());
    open.bind = "0.0.0.0".into();
    open.token = None;
    open.token_env = "ISTS_TEST_UNSET_TOKEN_VARIABLE".into();
    let err = Daemon::new(base(), open).start().await.err();
    assert!(matches!(err, Some(DaemonError::InsecureBind(_))), "{err:?}");
}

#[actix::test]
async fn graceful_shutdown_drains_and_the_next_start_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = daemon_settings(tmp.path());
    d.fake_cost_ms = Some(100);
    let handle = Daemon::new(base(), d.clone()).start().await.unwrap();
    let http = Http::new(handle.addr());
    let id = http
        .submit(serde_json::json!({"search": {"budget": 12, "in_flight": 2}}))
        .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while http.json(&format!("/searches/{id}")).await["evaluated"]
        .as_u64()
        .unwrap()
        < 2
    {
        assert!(Instant::now() < deadline, "no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    handle.shutdown().await;
    // Drained: every evaluation in flight finished and is both in the journal and the store,
    // and the search is left unfinished for the next start.
    let journal_len = journal(&tmp.path().join("runs").join(&id).join("journal.jsonl")).len();
    {
        let db = rusqlite::Connection::open(tmp.path().join("ists.sqlite")).unwrap();
        let (status, stored): (String, i64) = db
            .query_row(
                "SELECT status, (SELECT COUNT(*) FROM evaluations WHERE search_id = ?1) FROM searches WHERE id = ?1",
                [id.as_str()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(status, "running");
        assert_eq!(stored as usize, journal_len);
        assert!((2..12).contains(&journal_len), "{journal_len}");
    }
    let handle = Daemon::new(base(), d).start().await.unwrap();
    let http = Http::new(handle.addr());
    let row = http.wait_done(&id, Duration::from_secs(60)).await;
    assert_eq!(row["status"], "completed", "{row}");
    assert_eq!(row["evaluated"], 12);
    let page = http
        .json(&format!("/searches/{id}/candidates?limit=100"))
        .await;
    let ids: HashSet<u64> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["candidate"].as_u64().unwrap())
        .collect();
    assert_eq!(ids.len(), 12);
    handle.shutdown().await;
}

/// The `ists daemon` binary on a free port in `data_dir`; returns it and its address.
fn spawn_daemon(data_dir: &Path, extra: &str, log: &str) -> (std::process::Child, String) {
    let config = data_dir.join("daemon.toml");
    let tiny = std::fs::read_to_string(root().join("config/tiny.toml")).unwrap();
    std::fs::write(
        &config,
        format!(
            "{tiny}\n[daemon]\ndata_dir = {:?}\ntoken_env = \"ISTS_TEST_DAEMON_TOKEN\"\n{extra}\n",
            data_dir.display().to_string()
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ists"))
        .current_dir(root())
        .args(["daemon", "--config"])
        .arg(&config)
        .args(["--port", "0"])
        .env("ISTS_TEST_DAEMON_TOKEN", TOKEN)
        .env("ISTS__FINAL__TOP_K", "0")
        .env("OMP_NUM_THREADS", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(data_dir.join(log)).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("daemon did not start: {line:?}"))
        .to_string();
    (child, addr)
}

fn journal(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[actix::test]
async fn kill_minus_nine_while_two_searches_run_then_restart_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let extra = "fake_cost_ms = 150\nevaluator_slots = 1\n";
    let (mut child, addr) = spawn_daemon(tmp.path(), extra, "first.log");
    let http = Http::new(&addr);
    let budget = 10;
    let a = http
        .submit(serde_json::json!({"search": {"budget": budget}}))
        .await;
    let b = http
        .submit(serde_json::json!({"search": {"budget": budget}}))
        .await;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let ea = http.json(&format!("/searches/{a}")).await["evaluated"]
            .as_u64()
            .unwrap();
        let eb = http.json(&format!("/searches/{b}")).await["evaluated"]
            .as_u64()
            .unwrap();
        if ea >= 2 && eb >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "no progress ({ea}, {eb})");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let runs = tmp.path().join("runs");
    // Every evaluation acknowledged before the kill is a journal line.
    let before: BTreeMap<String, Vec<serde_json::Value>> = [&a, &b]
        .iter()
        .map(|id| {
            (
                id.to_string(),
                journal(&runs.join(id).join("journal.jsonl")),
            )
        })
        .collect();
    for (id, j) in &before {
        assert!(
            j.len() >= 2 && j.len() < budget,
            "{id}: {} evaluated",
            j.len()
        );
    }

    let (mut child, addr) = spawn_daemon(tmp.path(), extra, "second.log");
    let http = Http::new(&addr);
    for id in [&a, &b] {
        let row = http.wait_done(id, Duration::from_secs(180)).await;
        assert_eq!(row["status"], "completed", "{row}");
        assert_eq!(row["evaluated"], budget, "{row}");
    }
    // The events of both sessions form one sequence per search.
    let all = http.sse(&a, None, None).await;
    let seqs: Vec<u64> = all.iter().map(|e| e.0).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    child.kill().unwrap();
    child.wait().unwrap();

    let db = rusqlite::Connection::open(tmp.path().join("ists.sqlite")).unwrap();
    for id in [&a, &b] {
        let count = |sql: &str| -> i64 { db.query_row(sql, [id.as_str()], |r| r.get(0)).unwrap() };
        assert_eq!(
            count("SELECT COUNT(*) FROM candidates WHERE search_id = ?1"),
            budget as i64
        );
        assert_eq!(
            count("SELECT COUNT(DISTINCT hash) FROM candidates WHERE search_id = ?1"),
            budget as i64,
            "an architecture was stored twice"
        );
        assert_eq!(
            count("SELECT COUNT(*) FROM evaluations WHERE search_id = ?1"),
            budget as i64
        );
        for e in &before[id.as_str()] {
            let (hash, score): (String, Option<f64>) = db
                .query_row(
                    "SELECT c.hash, e.score FROM candidates c JOIN evaluations e
                     ON e.search_id = c.search_id AND e.candidate = c.candidate
                     WHERE c.search_id = ?1 AND c.candidate = ?2",
                    rusqlite::params![id.as_str(), e["id"].as_i64().unwrap()],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .unwrap_or_else(|err| panic!("evaluation before the kill lost: {e} ({err})"));
            assert_eq!(hash, e["hash"].as_str().unwrap());
            assert_eq!(score, e["score"].as_f64());
        }
        let after = journal(&runs.join(id).join("journal.jsonl"));
        assert_eq!(after.len(), budget);
        for e in &before[id.as_str()] {
            assert!(after.contains(e), "journal lost {e}");
        }
    }
}

/// Peak resident memory of a process, in KiB (Linux).
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[actix::test]
async fn twenty_concurrent_searches_complete_with_bounded_memory_and_fair_shares() {
    let tmp = tempfile::tempdir().unwrap();
    let extra = "fake_cost_ms = 20\nevaluator_slots = 2\nmax_concurrent_searches = 20\n";
    let (mut child, addr) = spawn_daemon(tmp.path(), extra, "load.log");
    let http = Http::new(&addr);
    // One greedy search (8 candidates in flight) and 19 modest ones (2 in flight). Shared
    // first come first served, the greedy one would take 8/46 of the evaluations; shared
    // round-robin, about as many as each of the others.
    let (greedy_budget, budget) = (40u64, 6u64);
    let t0 = Instant::now();
    let greedy = http
        .submit(serde_json::json!({"search": {"budget": greedy_budget, "in_flight": 8}}))
        .await;
    let mut ids = vec![greedy.clone()];
    for _ in 0..19 {
        ids.push(
            http.submit(serde_json::json!({"search": {"budget": budget, "in_flight": 2}}))
                .await,
        );
    }
    for id in &ids {
        let row = http.wait_done(id, Duration::from_secs(240)).await;
        assert_eq!(row["status"], "completed", "{row}");
    }
    let wall = t0.elapsed();
    let peak = peak_rss_kib(child.id()).expect("peak memory readable on Linux");
    child.kill().unwrap();
    child.wait().unwrap();

    let db = rusqlite::Connection::open(tmp.path().join("ists.sqlite")).unwrap();
    let total: i64 = db
        .query_row("SELECT COUNT(*) FROM evaluations", [], |r| r.get(0))
        .unwrap();
    assert_eq!(total, (greedy_budget + 19 * budget) as i64);
    // Evaluations in the order they were stored, all searches together.
    let order: Vec<String> = {
        let mut st = db
            .prepare("SELECT search_id FROM events WHERE kind = 'evaluated' ORDER BY rowid")
            .unwrap();
        st.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    // While a modest search was evaluating (its first to its last evaluation), count how
    // many evaluations the greedy one got.
    let mut greedy_during = Vec::new();
    for id in &ids[1..] {
        let first = order.iter().position(|s| s == id).unwrap();
        let last = order.iter().rposition(|s| s == id).unwrap();
        let g = order[first..=last].iter().filter(|s| **s == greedy).count();
        greedy_during.push(g);
    }
    eprintln!(
        "20 searches ({greedy_budget} + 19 x {budget}): {:.2}s wall, peak RSS {} MiB; greedy evaluations during each modest search's {budget}: {greedy_during:?}",
        wall.as_secs_f64(),
        peak / 1024
    );
    let unfair = greedy_during
        .iter()
        .filter(|&&g| g > 2 * budget as usize + 2)
        .count();
    assert!(
        unfair <= 1,
        "the greedy search took more than its share: {greedy_during:?}"
    );
    assert!(peak < 1024 * 1024, "peak RSS {peak} KiB");
}
