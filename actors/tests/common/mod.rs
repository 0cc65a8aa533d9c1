//! Helpers shared by the actor-system integration tests (each test crate uses a subset).
#![allow(dead_code)]

use actix::prelude::*;
use ists::config::{Mode, Settings};
use ists_actors::messages::{Complete, EventMsg};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The workspace root, absolute (Ray jobs and spawned binaries see the same paths).
pub fn root() -> PathBuf {
    std::path::absolute(Path::new(env!("CARGO_MANIFEST_DIR")).join("..")).unwrap()
}

/// The journal entries of a run directory, in order.
pub fn journal(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("journal.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `config/tiny.toml` with runs under `runs` and the workspace's data and prompts.
pub fn tiny(runs: &Path) -> Settings {
    tch::set_num_threads(1);
    let mut s = ists_actors::settings::load(Some(&root().join("config/tiny.toml"))).unwrap();
    s.runs_dir = runs.to_path_buf();
    s.data_dir = root().join("data");
    s.prompts_dir = root().join("prompts");
    s
}

/// Search options with a fake evaluator of 5 ms per candidate (tests of the search's
/// mechanics, not of training).
pub fn fake_evaluator() -> ists_actors::SearchOptions {
    ists_actors::SearchOptions {
        fake_cost: Some(std::time::Duration::from_millis(5)),
        ..ists_actors::SearchOptions::default()
    }
}

/// `tiny` for a test of an instructor's proposals: `mode`, `budget` candidates proposed one at
/// a time (so the requests come in a fixed order), no final training.
pub fn one_at_a_time(runs: &Path, mode: Mode, budget: usize) -> Settings {
    let mut s = tiny(runs);
    s.search.mode = mode;
    s.search.budget = budget;
    s.search.in_flight = 1;
    s.final_train.top_k = 0;
    s
}

/// Options of a run named `name` whose proposals come from `instructor`, on the fake evaluator.
pub fn instructed(name: &str, instructor: Recipient<Complete>) -> ists_actors::SearchOptions {
    ists_actors::SearchOptions {
        name: Some(name.into()),
        instructor: Some(instructor),
        ..fake_evaluator()
    }
}

/// An OpenAI chat completion whose message is `content` (100 prompt tokens, 40 of them cached,
/// 20 completion tokens): the reply body of every mock server.
pub fn completion(id: impl std::fmt::Display, content: &str) -> actix_web::HttpResponse {
    actix_web::HttpResponse::Ok().json(serde_json::json!({
        "id": id.to_string(), "object": "chat.completion", "created": 0, "model": "mock",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120,
                  "prompt_tokens_details": {"cached_tokens": 40}}
    }))
}

/// Serves `handler` as `POST /v1/chat/completions` on 127.0.0.1:0 (inside the running actix
/// system) with `state` as app data; returns the base URL to put in `llm.base_url`.
pub fn start_chat_mock<S, F, Args>(state: S, workers: usize, handler: F) -> String
where
    S: Send + Sync + 'static,
    F: actix_web::Handler<Args> + Clone + Send + 'static,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    use actix_web::{web, App, HttpServer};
    let data = web::Data::new(state);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            // The fault tests send megabyte prompts back (a 1 MB reply is echoed in a repair).
            .app_data(web::PayloadConfig::new(16 * 1024 * 1024))
            .route("/v1/chat/completions", web::post().to(handler.clone()))
    })
    .workers(workers)
    .bind(("127.0.0.1", 0))
    .unwrap();
    let addr = server.addrs()[0];
    actix::spawn(server.run());
    format!("http://{addr}/v1")
}

/// Runs the `ists` binary from the workspace root with one intra-op thread and waits for it.
/// `cmdline` is split at whitespace (temporary paths and our arguments contain none).
pub fn ists(cmdline: &str) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_ists"))
        .current_dir(root())
        .args(cmdline.split_whitespace())
        .env("OMP_NUM_THREADS", "1")
        .output()
        .unwrap()
}

/// A path that `scripts/test.sh` installs and passes in `var`. In CI its absence is a failure;
/// elsewhere the test using it is skipped with a message naming what would set it up.
pub fn installed_by_test_script(var: &str, what: &str) -> Option<PathBuf> {
    match std::env::var_os(var) {
        Some(p) => Some(PathBuf::from(p)),
        None if std::env::var_os("CI").is_some() => {
            panic!("{var} is not set: run scripts/test.sh")
        }
        None => {
            eprintln!("SKIPPED: {var} unset (scripts/test.sh installs {what} and sets it)");
            None
        }
    }
}

/// Collects every event it receives (subscribe it with `SearchOptions::subscribe`).
#[derive(Default)]
pub struct Collector(pub Arc<Mutex<Vec<EventMsg>>>);
impl Actor for Collector {
    type Context = Context<Self>;
}
impl Handler<EventMsg> for Collector {
    type Result = ();
    fn handle(&mut self, msg: EventMsg, _: &mut Context<Self>) {
        self.0.lock().unwrap().push(msg);
    }
}

/// A prior bank for prior-ranked exploration, written to `path`: 24 scored designs of a small
/// joint space in which the best 8 all have learning-rate factor 2 and the rest 0.5 or 1. A
/// search that follows it proposes factor 2 nearly always; uniformly, a third of the time.
/// Returns that joint space.
pub fn write_lr2_prior(path: &Path) -> ists::hyper::HyperSpace {
    use rand::SeedableRng;
    let hyper = ists::hyper::HyperSpace {
        hidden: vec![8, 16],
        blocks: vec![1, 2],
        lr_scale: vec![0.5, 1.0, 2.0],
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(17);
    let mut bank = String::new();
    for id in 0..24 {
        let mut a = ists::space::Arch::sample_in(ists::space::SpaceKind::Ists, &hyper, &mut rng);
        a.hyper.as_mut().unwrap().lr_scale = if id < 8 { 2.0 } else { [0.5, 1.0][id % 2] };
        let e = serde_json::json!({
            "id": id, "hash": a.hash(), "arch": a.to_spec(), "score": 1.0 + id as f64,
            "status": {"status": "ok"}, "stage": "exploration", "params": 1, "seconds": 1.0,
        });
        bank += &(e.to_string() + "\n");
    }
    std::fs::write(path, bank).unwrap();
    hyper
}
