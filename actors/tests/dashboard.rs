//! The web dashboard: its page and assets as served, the prompts-and-replies endpoint (auth,
//! strict ids), and the page itself in a real headless browser (Debian's chromium driven by
//! playwright-core, `dashboard/test/e2e.mjs`) against a daemon whose instructor is a mock
//! OpenAI-compatible server replying with `<script>` around its architectures.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and examples may panic on failure

use actix_web::{web, HttpResponse};
use ists::config::Backend;
use ists_actors::daemon::DaemonSettings;
use ists_actors::{settings, Daemon, DaemonHandle};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;
use common::{completion, root, start_chat_mock};

const TOKEN: &str = "dash-token-41c9";
const SCRIPT: &str = "<script>window.__pwned=1</script>";

/// Replies with a new architecture each time, wrapped in a `<script>`; the second reply has no
/// architecture at all, so the search rejects it and repairs.
async fn chat(n: web::Data<Arc<AtomicUsize>>) -> HttpResponse {
    let k = n.fetch_add(1, Ordering::SeqCst);
    let ops = ["STT", "TTS", "STP"];
    let sp = ["mix_gc", "dgcn", "s_trans"];
    let content = if k == 1 {
        format!("{SCRIPT} I would rather not propose anything.")
    } else {
        let e = |from: usize, d: usize| {
            format!(
                r#"{{"from":{from},"to":{},"op":"{}","spatial":"{}"}}"#,
                from + 1,
                ops[d % 3],
                sp[(d / 3) % 3]
            )
        };
        format!(
            "{SCRIPT}\n```json\n{{\"edges\":[{},{},{}]}}\n```\n",
            e(0, k),
            e(1, k / 9),
            e(2, k / 81)
        )
    };
    completion(format!("c{k}"), &content)
}

/// A daemon whose every search asks the mock (set in the daemon's own settings: a submitted
/// search may not name an endpoint), reads need the token, and evaluations are faked.
async fn start(dir: &Path, counter: Arc<AtomicUsize>, fake_cost_ms: u64) -> DaemonHandle {
    let mut base = settings::load(Some(&root().join("config/tiny.toml"))).unwrap();
    base.data_dir = root().join("data");
    base.prompts_dir = root().join("prompts");
    base.final_train.top_k = 0;
    base.llm.backend = Backend::Openai;
    base.llm.base_url = start_chat_mock(counter, 1, chat);
    base.llm.model = "mock-model".into();
    base.llm.timeout_secs = 30.0;
    let d = DaemonSettings {
        port: 0,
        data_dir: dir.to_path_buf(),
        token: Some(TOKEN.into()),
        auth_reads: true,
        fake_cost_ms: Some(fake_cost_ms),
        ..DaemonSettings::default()
    };
    Daemon::new(base, d).start().await.unwrap()
}

async fn get(c: &reqwest::Client, url: String, token: bool) -> reqwest::Response {
    let mut r = c.get(url);
    if token {
        r = r.header("Authorization", format!("Bearer {TOKEN}"));
    }
    r.send().await.unwrap()
}

#[actix::test]
async fn page_assets_and_exchanges_endpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let counter = Arc::new(AtomicUsize::new(0));
    let h = start(tmp.path(), counter.clone(), 5).await;
    let base = format!("http://{}", h.addr());
    let c = reqwest::Client::new();

    // The page and its assets need no token (the page asks for it) and forbid inline script.
    for (path, ctype, needle) in [
        ("/", "text/html", "/assets/app.js"),
        ("/assets/app.js", "text/javascript", "textContent"),
        ("/assets/style.css", "text/css", "svg"),
    ] {
        let r = get(&c, format!("{base}{path}"), false).await;
        assert_eq!(r.status().as_u16(), 200, "{path}");
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with(ctype));
        let csp = r.headers()["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"));
        let body = r.text().await.unwrap();
        assert!(body.contains(needle), "{path}");
        // Nothing from a CDN: the dashboard must work with no internet.
        assert!(!body.contains("https://"), "{path} references a remote URL");
    }
    let js = get(&c, format!("{base}/assets/app.js"), false).await;
    let js = js.text().await.unwrap();
    assert!(
        !js.contains("innerHTML")
            && !js.contains("outerHTML")
            && !js.contains("insertAdjacentHTML"),
        "the dashboard writes untrusted text as text only"
    );
    // The API itself still needs the token for reads here.
    assert_eq!(
        get(&c, format!("{base}/searches"), false).await.status(),
        401
    );

    let id = h
        .shared()
        .submit(&serde_json::json!({"search": {"budget": 3, "in_flight": 1}}))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let row = loop {
        let r = get(&c, format!("{base}/searches/{id}"), true).await;
        let v: serde_json::Value = r.json().await.unwrap();
        if v["status"] == "completed" {
            break v;
        }
        assert_ne!(v["status"], "failed", "{v}");
        assert!(Instant::now() < deadline, "search did not finish: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(row["llm"], "openai:mock-model");
    assert_eq!(row["summary"]["evaluated"], 3, "{row}");

    // Every request the mock answered is logged as one exchange of some proposal of session 1.
    let requests = counter.load(Ordering::SeqCst);
    let mut items = Vec::new();
    for p in 0..=requests {
        let url = format!("{base}/searches/{id}/exchanges/1/{p}");
        assert_eq!(get(&c, url.clone(), false).await.status(), 401);
        let v: serde_json::Value = get(&c, url, true).await.json().await.unwrap();
        items.extend(v["items"].as_array().unwrap().clone());
    }
    assert_eq!(items.len(), requests, "{items:?}");
    for it in &items {
        assert!(it["prompt"].as_str().is_some_and(|p| !p.is_empty()), "{it}");
        // Served as it was written: escaping is the page's job, and the page uses textContent.
        assert!(it["reply"].as_str().unwrap().starts_with(SCRIPT), "{it}");
    }
    assert!(items
        .iter()
        .any(|it| it["reply"].as_str().unwrap().contains("rather not")));
    let other_session: serde_json::Value =
        get(&c, format!("{base}/searches/{id}/exchanges/2/0"), true)
            .await
            .json()
            .await
            .unwrap();
    assert_eq!(other_session["items"], serde_json::json!([]));

    // Ids are checked before any file is looked at.
    for (path, status) in [
        (format!("/searches/{id}/exchanges/1/abc"), 400),
        (format!("/searches/{id}/exchanges/-1/0"), 400),
        (format!("/searches/{id}/exchanges/1/..%2f..%2f0"), 400),
        ("/searches/zz/exchanges/1/0".to_string(), 400),
        ("/searches/s..%2f/exchanges/1/0".to_string(), 400),
        ("/searches/s00/exchanges/1/0".to_string(), 404),
    ] {
        let r = get(&c, format!("{base}{path}"), true).await;
        assert_eq!(r.status().as_u16(), status, "{path}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert!(v["error"].is_string(), "{path}: {v}");
    }
    h.shutdown().await;
}

/// Where the browser test finds playwright-core (scripts/test.sh sets it up).
fn playwright_dir() -> Option<PathBuf> {
    common::installed_by_test_script("ISTS_DASHBOARD_E2E", "chromium and playwright-core")
}

#[actix::test]
async fn dashboard_in_a_headless_browser() {
    let Some(pw) = playwright_dir() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    // Slow enough evaluations that the browser sees the table grow, fast enough for CI.
    let h = start(tmp.path(), Arc::new(AtomicUsize::new(0)), 400).await;
    let out = root().join("target/test-artifacts");
    std::fs::create_dir_all(&out).unwrap();
    let shot = out.join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(root().join("dashboard/test/e2e.mjs"))
        .env("DASH_URL", format!("http://{}/", h.addr()))
        .env("DASH_TOKEN", TOKEN)
        .env("DASH_BUDGET", "6")
        .env("DASH_OUT", &out)
        .env("PLAYWRIGHT_DIR", &pw)
        .kill_on_drop(true);
    let run = tokio::time::timeout(Duration::from_secs(240), cmd.output())
        .await
        .expect("the browser test timed out")
        .expect("cannot start node");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    println!("{stdout}");
    assert!(run.status.success(), "e2e failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("e2e: ok"));
    let png = std::fs::read(&shot).expect("no screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "screenshot"
    );
    h.shutdown().await;
}
