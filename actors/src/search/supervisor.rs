//! The supervisor: wires the actors of one search from its settings, runs it, and drains it on
//! shutdown. This is the only place that names concrete actors; everyone else holds
//! `Recipient`s. Actors with state worth keeping run under actix's `Supervisor`, which restarts
//! them if they stop; evaluators restart through their `SyncArbiter`.

use crate::eval::evaluator::{EvalSetup, EvaluatorPool};
use crate::eval::ray::RayEvaluator;
use crate::events::EventBus;
use crate::instructor::llm::LlmActor;
use crate::instructor::local::LocalServer;
use crate::instructor::offline::OfflineInstructor;
use crate::messages::{Complete, Drain, EventMsg, Flush, Subscribe};
use crate::run::dir::{EventLog, RunDir, RunLock};
use crate::run::progress::Progress;
use crate::run::summary::Summary;
use crate::search::memory::MemoryActor;
use crate::search::parser::ParserActor;
use crate::search::prompt::PromptActor;
use crate::search::stage::{StageActor, Wiring};
use actix::prelude::*;
use dashmap::DashMap;
use ists::config::{parse_device, Backend, EvalBackend, Exploration, PriorCost, Settings};
use ists::data::{load, prepare, Prepared};
use ists::memory::Stage;
use ists::prior::Prior;
use ists::prompt::{TaskInfo, Templates};
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

/// Errors that stop a search before or while it runs.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("data: {0}")]
    Data(#[from] ists::data::DataError),
    #[error("settings: {0}")]
    Settings(String),
    #[error("run directory {path}: {msg}")]
    RunDir { path: String, msg: String },
    #[error("the search stopped unexpectedly: {0}")]
    Aborted(String),
    #[error(transparent)]
    LocalLlm(#[from] crate::instructor::local::LocalLlmError),
}

/// How to run a search besides its settings.
#[derive(Default)]
pub struct SearchOptions {
    /// Resume this run directory instead of creating a new one.
    pub resume: Option<PathBuf>,
    /// On resume, a new total budget (the run's own budget otherwise).
    pub resume_budget: Option<usize>,
    /// Name of a new run directory (timestamped when None).
    pub name: Option<String>,
    /// Show a progress bar.
    pub progress: bool,
    /// Extra event subscribers (extensions).
    pub subscribers: Vec<Recipient<EventMsg>>,
    /// Fake evaluator cost (benchmarks and load tests only).
    pub fake_cost: Option<Duration>,
    /// Evaluations that fail on purpose (fault-injection tests).
    pub inject_failures: usize,
    /// An instructor to use instead of the one the settings name (tests, extensions).
    pub instructor: Option<Recipient<Complete>>,
    /// Event numbering continues after this (a daemon resuming a search keeps one sequence).
    pub first_seq: u64,
    /// A shared, fair scheduler every evaluation waits on (the daemon's evaluator slots).
    pub gate: Option<crate::eval::fair::EvalGate>,
    /// A folder of final trainings shared between searches (a comparison's methods, which
    /// often choose the same design): a training whose key (design, training settings and
    /// seed, widths, data) is found there is copied instead of repeated, and each new one is
    /// added. Only the same program's trainings are shared (two builds may train a seed a
    /// little differently); on a CPU training is then deterministic, so the copy is exactly
    /// what training again would give; elsewhere it is one draw of that very training.
    pub finals: Option<PathBuf>,
    /// `search.prior` already read by the caller (the daemon reads it before it builds the
    /// instructor, to fail the job cleanly on a bad file); None: the search reads it itself.
    /// Saves a second read of the same journals for an LLM search's offline fallback.
    pub prior: Option<Arc<Prior>>,
}

impl SearchOptions {
    /// Adds a subscriber.
    pub fn subscribe(mut self, r: Recipient<EventMsg>) -> Self {
        self.subscribers.push(r);
        self
    }
}

/// Loads and prepares the data of the settings (blocking: call from a blocking context).
pub fn prepare_data(settings: &Settings) -> Result<Prepared, SearchError> {
    let spec = settings.data_spec()?;
    let raw = load(&spec)?;
    Ok(prepare(&raw, &settings.data.prepare)?)
}

/// Runs one search to completion, or until `shutdown` resolves (then it drains: in-flight
/// evaluations finish and are recorded, nothing new starts). Must run inside an actix system.
pub async fn run_search(
    settings: Settings,
    mut opts: SearchOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<Summary, SearchError> {
    settings
        .validate()
        .map_err(|e| SearchError::Settings(e.to_string()))?;
    // The prior is read before a new run directory is made, so a bad file leaves none behind;
    // a resumed search reads the one its snapshot names. A prior the caller read is used as is.
    let fresh_prior = match (opts.prior.take(), &opts.resume) {
        (Some(p), _) => Some(Some(p)),
        (None, None) => Some(load_prior(&settings)?),
        (None, Some(_)) => None,
    };
    // `_lock` is held until the search returns, however it returns.
    let (run, settings, _lock) = open_run(settings, &opts)?;
    let prior = match fresh_prior {
        Some(p) => p,
        None => load_prior(&settings)?,
    };
    // `_local` stops a local model server started here when the search returns, however it
    // returns.
    let (_local, settings) = with_local_server(settings, opts.instructor.is_some()).await?;
    let settings = Arc::new(settings);
    let prepared = {
        let s = settings.clone();
        tokio::task::spawn_blocking(move || prepare_data(&s))
            .await
            .map_err(|e| SearchError::Aborted(e.to_string()))??
    };
    let run = Arc::new(run);
    tracing::info!(run_dir = %run.path.display(), dataset = %prepared.name, "search starting");

    let known = Arc::new(DashMap::new());
    let (memory, resumed) = MemoryActor::open(
        &run.journal(),
        settings.search.memory.clone(),
        known.clone(),
        Stage::Exploration,
    )
    .map_err(|e| run_err(&run.journal(), e))?;
    let bus = EventBus::starting_at(opts.first_seq).start();
    let memory = memory.start();
    bus.do_send(Subscribe(memory.clone().recipient()));
    let log = EventLog::open(&run).map_err(|e| run_err(&run.path, e.to_string()))?;
    bus.do_send(Subscribe(log.start().recipient()));
    if opts.progress {
        bus.do_send(Subscribe(
            Progress::new(settings.search.budget).start().recipient(),
        ));
    }
    for s in std::mem::take(&mut opts.subscribers) {
        bus.do_send(Subscribe(s));
    }

    let task = TaskInfo {
        dataset: prepared.name.clone(),
        nodes: prepared.n,
        steps: prepared.input_len,
        horizon: prepared.output_len,
        in_features: prepared.in_features,
        space: settings.search.space,
        hyper: settings.hyper_space(),
        profile: ists::profile::DataProfile::of(&prepared).render(),
        // Building each operator once to count its parameters takes well under a second; a
        // failure only leaves the table out of the prompt.
        traits: match ists::profile::op_traits(&settings.model, &prepared) {
            Ok(t) => ists::profile::render_traits(&t, settings.search.space),
            Err(e) => {
                tracing::warn!("operator traits left out of the prompt: {e}");
                String::new()
            }
        },
    };
    let templates = Templates::new(settings.prompts_dir.clone());
    // What a prompt may take of the context window: the rest is the reply's.
    let prompt_tokens = match settings.llm.backend {
        Backend::Offline => None,
        _ => Some(
            settings
                .llm
                .context_tokens
                .saturating_sub(settings.llm.max_tokens as usize),
        ),
    };
    // The journal replayed once: the stage the prompts start in, and the stage actor's state.
    let replayed = super::stage::replay(&resumed, &settings.search);
    let s0 = replayed.stage;
    // Costs are ranked on the proxy's training batches, where the search spends its seconds.
    let step_cost = ists::footprint::StepCost::new(
        ists::model::ModelShape::of(&prepared),
        settings.model.clone(),
        settings.proxy.batch_size,
    );
    let prompt = Supervisor::start(move |_| {
        PromptActor::new(templates, task, s0)
            .with_context(prompt_tokens)
            .with_step_cost(step_cost.clone())
    });
    bus.do_send(Subscribe(prompt.clone().recipient()));
    let space = settings.search.space;
    let hyper = settings.hyper_space();
    let parser = {
        let hyper = hyper.clone();
        Supervisor::start(move |_| ParserActor::new(space, hyper.clone(), known.clone()))
    };
    let llm: Recipient<Complete> = match opts.instructor.take() {
        Some(r) => r,
        None => instructor_for(&settings, prior.clone()),
    };
    let fallback = (settings.search.fallback && settings.llm.backend != Backend::Offline)
        .then(|| offline_instructor(&settings, prior.clone()));
    let evaluators = start_evaluators(&settings, &prepared, &run, &opts)?;
    let wiring = Wiring {
        render_cot: prompt.clone().recipient(),
        render_step: prompt.clone().recipient(),
        render_value: prompt.clone().recipient(),
        render_repair: prompt.recipient(),
        llm,
        fallback,
        parse_arch: parser.clone().recipient(),
        parse_step: parser.recipient(),
        get_memory: memory.clone().recipient(),
        record: memory.clone().recipient(),
        release: memory.recipient(),
        bus: bus.clone().recipient(),
        evaluators,
        run: run.clone(),
        cot_turns: Arc::new(tokio::sync::Semaphore::new(cot_turns(&settings))),
        repeated: Arc::default(),
        finals: opts.finals.clone(),
    };
    let summary = Summary {
        run_dir: run.path.display().to_string(),
        dataset: prepared.name.clone(),
        space: settings.search.space.to_string(),
        mode: settings.search.mode.name().to_string(),
        backend: settings.llm.backend.name().to_string(),
        budget: settings.search.budget,
        // A resumed search's wall time includes its earlier sessions'.
        seconds: run.earlier_seconds,
        ..Summary::default()
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let stage = StageActor::new(wiring, settings.clone(), &resumed, replayed, summary, tx).start();
    tokio::pin!(shutdown);
    tokio::pin!(rx);
    let result = tokio::select! {
        r = &mut rx => r,
        _ = &mut shutdown => {
            stage.do_send(Drain);
            rx.await
        }
    };
    // Let subscribers see the last events before returning.
    let _ = bus.send(Flush).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    result.map_err(|_| SearchError::Aborted("the stage actor stopped without a summary".into()))
}

/// The run directory: a new one with a settings snapshot, or the resumed one with the
/// settings it started with (`resume_budget` aside), and its lock. A resumed directory is
/// locked before anything is written to it, so a second process refused leaves no trace.
fn open_run(
    settings: Settings,
    opts: &SearchOptions,
) -> Result<(RunDir, Settings, RunLock), SearchError> {
    match &opts.resume {
        Some(dir) => {
            crate::run::dir::check_run_dir(dir).map_err(|e| run_err(dir, e))?;
            let snap = dir.join("config.json");
            let text = std::fs::read_to_string(&snap).map_err(|e| run_err(&snap, e.to_string()))?;
            let mut old: Settings =
                serde_json::from_str(&text).map_err(|e| run_err(&snap, e.to_string()))?;
            if let Some(b) = opts.resume_budget {
                old.search.budget = b;
            }
            let lock = RunLock::take(dir).map_err(|e| run_err(dir, e.to_string()))?;
            let run = RunDir::open(dir).map_err(|e| run_err(dir, e.to_string()))?;
            Ok((run, old, lock))
        }
        None => {
            let run = RunDir::create(&settings.runs_dir, opts.name.as_deref())
                .map_err(|e| run_err(&settings.runs_dir, e.to_string()))?;
            let lock = RunLock::take(&run.path).map_err(|e| run_err(&run.path, e.to_string()))?;
            run.write_json("config.json", &settings)
                .map_err(|e| run_err(&run.path, e.to_string()))?;
            Ok((run, settings, lock))
        }
    }
}

/// A run-directory error naming the path.
fn run_err(path: &std::path::Path, e: String) -> SearchError {
    SearchError::RunDir {
        path: path.display().to_string(),
        msg: e,
    }
}

/// With the local backend (and no instructor given), starts or reuses the local model server
/// and points the LLM settings at it.
async fn with_local_server(
    settings: Settings,
    instructor_given: bool,
) -> Result<(Option<LocalServer>, Settings), SearchError> {
    if settings.llm.backend != Backend::Local || instructor_given {
        return Ok((None, settings));
    }
    let local = settings.llm.local.clone();
    let server = tokio::task::spawn_blocking(move || LocalServer::ensure(&local))
        .await
        .map_err(|e| SearchError::Aborted(e.to_string()))??;
    let mut s = settings;
    s.llm = server.client_settings(&s.llm);
    Ok((Some(server), s))
}

/// One evaluator actor per device, and the Ray back end in front of them when configured.
fn start_evaluators(
    settings: &Settings,
    prepared: &Prepared,
    run: &RunDir,
    opts: &SearchOptions,
) -> Result<EvaluatorPool, SearchError> {
    let devices = resolve_devices(&settings.evaluators.devices).map_err(SearchError::Settings)?;
    let threads = settings.evaluators.cpu_threads();
    tracing::info!(devices = ?devices, threads, "one evaluator actor per device");
    let setup = Arc::new(EvalSetup {
        prepared: Arc::new(prepared.clone()),
        model: settings.model.clone(),
        proxy: settings.proxy.clone(),
        threads,
        fake_cost: opts.fake_cost,
        inject_failures: Arc::new(AtomicUsize::new(opts.inject_failures)),
    });
    let mut evaluators = EvaluatorPool::start(&devices, setup).with_gate(opts.gate.clone());
    if settings.evaluators.backend == EvalBackend::Ray {
        let name = run
            .path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| "search".into());
        let ray = RayEvaluator::new(settings.evaluators.ray.clone(), &name, settings)
            .map_err(SearchError::Settings)?
            .start();
        evaluators = evaluators.with_remote(ray.recipient(), settings.evaluators.ray.max_in_flight);
    }
    Ok(evaluators)
}

/// Chain-of-thought proposals that may ask the LLM at once ([`Wiring::cot_turns`]): as many
/// requests as it serves at once; the local model serves one at a time.
fn cot_turns(s: &Settings) -> usize {
    match s.llm.backend {
        Backend::Local => 1,
        _ => s.llm.max_concurrent.max(1),
    }
}

/// The configured devices, with `all` expanded to every visible CUDA device (or the CPU when
/// there is none, so a config written for a GPU box still runs elsewhere).
pub fn resolve_devices(names: &[String]) -> Result<Vec<tch::Device>, String> {
    let mut out = Vec::new();
    for d in names {
        if d == "all" {
            let n = tch::Cuda::device_count();
            if n == 0 {
                tracing::warn!("evaluators.devices = all: no CUDA device visible, using the CPU");
                out.push(tch::Device::Cpu);
            }
            out.extend((0..n as usize).map(tch::Device::Cuda));
        } else {
            let dev = parse_device(d)?;
            if let tch::Device::Cuda(i) = dev {
                let n = tch::Cuda::device_count() as usize;
                if i >= n {
                    return Err(format!("evaluators.devices: {d} is not available ({n} CUDA devices visible; is the binary built with --features cuda?)"));
                }
            }
            out.push(dev);
        }
    }
    Ok(out)
}

/// The device of a single evaluation outside the actor system (`ists train`, `ists eval`).
/// Inside a Ray job (the settings are a Ray search's) it is the GPU Ray assigned - visible as
/// `cuda:0`, since Ray sets `CUDA_VISIBLE_DEVICES` - when `entrypoint_num_gpus` > 0, else the
/// CPU: the head's own device list says nothing about a worker node.
pub fn single_device(settings: &Settings) -> Result<tch::Device, String> {
    if settings.evaluators.backend == EvalBackend::Ray {
        if settings.evaluators.ray.entrypoint_num_gpus > 0.0 {
            if !tch::Cuda::is_available() {
                return Err("evaluators.ray.entrypoint_num_gpus > 0, but this node's ists binary sees no CUDA device (build it with --features cuda; check nvidia-smi)".into());
            }
            return Ok(tch::Device::Cuda(0));
        }
        return Ok(tch::Device::Cpu);
    }
    resolve_devices(&settings.evaluators.devices)?
        .first()
        .copied()
        .ok_or_else(|| "evaluators.devices is empty".to_string())
}

/// Reads `search.prior` (the journals of earlier searches) into one surrogate, once per search;
/// None when no prior is named. A file that cannot be used is a settings error naming it.
pub fn load_prior(settings: &Settings) -> Result<Option<Arc<Prior>>, SearchError> {
    let s = &settings.search;
    let offline_prior =
        s.exploration == Exploration::Prior && settings.llm.backend == Backend::Offline;
    if s.prior_cost == PriorCost::Matched && (s.prior.is_empty() || !offline_prior) {
        tracing::warn!(
            "search.prior_cost = \"matched\" is set, but only the offline instructor's \
             exploration = \"prior\" with a search.prior weighs cost"
        );
    }
    if s.prior.is_empty() {
        return Ok(None);
    }
    let prior = Prior::load(&s.prior, s.space).map_err(SearchError::Settings)?;
    let (banks, designs) = prior.size();
    if !offline_prior {
        tracing::warn!(
            "search.prior is set, but only the offline instructor's exploration = \"prior\" uses it"
        );
    }
    tracing::info!(banks, designs, "prior loaded");
    Ok(Some(Arc::new(prior)))
}

/// Starts the instructor the settings name (offline or OpenAI-compatible), supervised. `prior`
/// is what [`load_prior`] read (the offline instructor's `exploration = "prior"` ranks by it).
pub fn instructor_for(settings: &Settings, prior: Option<Arc<Prior>>) -> Recipient<Complete> {
    let space = settings.search.space;
    match settings.llm.backend {
        Backend::Offline => offline_instructor(settings, prior),
        Backend::Openai | Backend::Local => {
            let l = settings.llm.clone();
            let hyper = settings.hyper_space();
            Supervisor::start(move |_| LlmActor::new(l, space).with_hyper(hyper.clone()))
                .recipient()
        }
    }
}

/// Starts the seeded offline instructor with the settings' search rules, supervised: the
/// instructor of `backend = "offline"`, and an LLM search's fallback.
fn offline_instructor(settings: &Settings, prior: Option<Arc<Prior>>) -> Recipient<Complete> {
    let s = &settings.search;
    let (space, seed, exploration, optimization) = (s.space, s.seed, s.exploration, s.optimization);
    let (prior_pool, prior_cost) = (s.prior_pool, s.prior_cost);
    let hyper = settings.hyper_space();
    Supervisor::start(move |_| {
        OfflineInstructor::new(space, hyper.clone(), seed)
            .with_exploration(exploration)
            .with_optimization(optimization)
            .with_prior(prior.clone())
            .with_prior_pool(prior_pool)
            .with_prior_cost(prior_cost)
    })
    .recipient()
}

impl actix::Supervised for PromptActor {}
impl actix::Supervised for ParserActor {}
impl actix::Supervised for OfflineInstructor {}
impl actix::Supervised for LlmActor {}
