//! The Ray evaluator against a real local Ray head (installed by scripts/setup-ray.sh, bound to
//! 127.0.0.1 only, stopped at the end): results equal the local evaluator's, a job that exits
//! non-zero is recorded as failed with its log tail, and stopping and restarting the head in
//! the middle of a search ends with every candidate evaluated exactly once.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and examples may panic on failure

use ists::config::{EvalBackend, Settings};
use ists::data::{load, prepare};
use ists::space::Arch;
use ists::train::{proxy_eval, TrainData};
use ists_actors::{run_search, settings, SearchOptions};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod common;
use common::{journal, root};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A Ray head on 127.0.0.1; `ray stop` on drop.
struct Head {
    ray: PathBuf,
    temp: PathBuf,
    gcs: u16,
    dashboard: u16,
}

impl Head {
    fn ray() -> Option<PathBuf> {
        common::installed_by_test_script("ISTS_RAY", "Ray")
    }

    fn start(ray: &Path) -> Head {
        let temp = PathBuf::from(format!("/tmp/rt{}", std::process::id()));
        let h = Head {
            ray: ray.to_path_buf(),
            temp,
            gcs: free_port(),
            dashboard: free_port(),
        };
        h.up();
        h
    }

    fn up(&self) {
        let out = Command::new(&self.ray)
            .args([
                "start",
                "--head",
                "--node-ip-address=127.0.0.1",
                "--dashboard-host=127.0.0.1",
                &format!("--port={}", self.gcs),
                &format!("--dashboard-port={}", self.dashboard),
                "--num-cpus=2",
                "--include-dashboard=true",
                "--disable-usage-stats",
                &format!("--temp-dir={}", self.temp.display()),
            ])
            .env("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ray start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let deadline = Instant::now() + Duration::from_secs(90);
        let url = format!("127.0.0.1:{}", self.dashboard);
        loop {
            if let Ok(mut s) = std::net::TcpStream::connect(&url) {
                use std::io::{Read, Write};
                let _ = write!(s, "GET /api/version HTTP/1.0\r\nHost: x\r\n\r\n");
                let mut buf = String::new();
                let _ = s.read_to_string(&mut buf);
                if buf.starts_with("HTTP/1.1 200") || buf.starts_with("HTTP/1.0 200") {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "ray dashboard did not come up");
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    fn down(&self) {
        let _ = Command::new(&self.ray).args(["stop", "--force"]).output();
    }

    fn address(&self) -> String {
        format!("http://127.0.0.1:{}", self.dashboard)
    }
}

impl Drop for Head {
    fn drop(&mut self) {
        self.down();
        let _ = std::fs::remove_dir_all(&self.temp);
    }
}

fn base(runs: &Path, head: &Head) -> Settings {
    let mut s = settings::load(Some(&root().join("config/tiny.toml"))).unwrap();
    s.runs_dir = runs.to_path_buf();
    s.data_dir = root().join("data");
    s.final_train.top_k = 0;
    s.evaluators.backend = EvalBackend::Ray;
    s.evaluators.ray.address = head.address();
    s.evaluators.ray.binary = Some(PathBuf::from(env!("CARGO_BIN_EXE_ists")));
    s.evaluators.ray.max_in_flight = 2;
    s.evaluators.ray.poll_ms = 200;
    s
}

#[test]
fn ray_jobs_match_local_results_fail_cleanly_and_survive_a_head_restart() {
    let Some(ray) = Head::ray() else { return };
    tch::set_num_threads(1);
    let head = Head::start(&ray);
    let tmp = tempfile::tempdir().unwrap();
    let sys = actix::System::new();

    // 1. Results equal the local evaluator's for the same seeds.
    let mut s = base(tmp.path(), &head);
    s.search.budget = 3;
    let run = |s: Settings, name: &str| {
        let opts = SearchOptions {
            name: Some(name.into()),
            ..SearchOptions::default()
        };
        sys.block_on(run_search(s, opts, std::future::pending()))
            .unwrap()
    };
    let summary = run(s.clone(), "ray");
    assert_eq!(summary.evaluated, 3, "{summary:?}");
    assert!(
        summary.eval_failures.is_empty(),
        "{:?}",
        summary.eval_failures
    );
    let prepared = prepare(&load(&s.data_spec().unwrap()).unwrap(), &s.data.prepare).unwrap();
    let data = TrainData::new(&prepared, tch::Device::Cpu).unwrap();
    for e in journal(&tmp.path().join("ray")) {
        let arch = Arch::from_json(&e["arch"].to_string(), s.search.space).unwrap();
        let local = proxy_eval(&arch, &data, &s.model, &s.proxy).unwrap();
        let remote = e["score"].as_f64().unwrap();
        assert_eq!(local.val_mae, Some(remote), "Ray and local results differ");
    }

    // 2. A job that exits non-zero is recorded as failed, with its log tail.
    let script = tmp.path().join("broken.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\necho 'broken evaluator: cannot load the model' >&2\nexit 3\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut broken = base(tmp.path(), &head);
    broken.search.budget = 1;
    broken.evaluators.ray.binary = Some(script);
    let summary = run(broken, "broken");
    assert_eq!(summary.evaluated, 1);
    assert_eq!(
        summary.eval_failures.get("ray_job_failed"),
        Some(&1),
        "{:?}",
        summary.eval_failures
    );
    let j = journal(&tmp.path().join("broken"));
    let msg = j[0]["status"]["message"].as_str().unwrap();
    assert!(
        msg.contains("broken evaluator: cannot load the model"),
        "{msg}"
    );

    // 3. Stop the head mid-search, start it again: every candidate exactly once.
    let mut s3 = base(tmp.path(), &head);
    s3.search.budget = 5;
    let dir = tmp.path().join("restart");
    let watcher = {
        let dir = dir.clone();
        let (ray, temp, gcs, dash) = (
            head.ray.clone(),
            head.temp.clone(),
            head.gcs,
            head.dashboard,
        );
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(240);
            while journal(&dir).len() < 2 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            let h = Head {
                ray,
                temp,
                gcs,
                dashboard: dash,
            };
            h.down();
            std::thread::sleep(Duration::from_secs(2));
            h.up();
            std::mem::forget(h); // the outer Head stops it at the end
        })
    };
    let summary = run(s3, "restart");
    watcher.join().unwrap();
    assert_eq!(summary.evaluated, 5, "{summary:?}");
    assert!(
        summary.eval_failures.is_empty(),
        "{:?}",
        summary.eval_failures
    );
    let j = journal(&dir);
    let ids: HashSet<u64> = j.iter().map(|e| e["id"].as_u64().unwrap()).collect();
    let hashes: HashSet<&str> = j.iter().map(|e| e["hash"].as_str().unwrap()).collect();
    assert_eq!((j.len(), ids.len(), hashes.len()), (5, 5, 5));
}
