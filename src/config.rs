//! Settings of a search (data, model, proxy, final training, search strategy, instructor,
//! evaluators), as plain serde structs with defaults, and their validation with errors that
//! name the key. Layering (files, environment) is done by the caller with the `config` crate.

use crate::data::{DataSpec, PrepareConfig};
use crate::model::ModelConfig;
use crate::space::SpaceKind;
use crate::train::{ProxyConfig, TrainConfig};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Everything a search needs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub data: DataSettings,
    pub model: ModelConfig,
    pub proxy: ProxyConfig,
    #[serde(rename = "final")]
    pub final_train: FinalSettings,
    pub search: SearchSettings,
    pub llm: LlmSettings,
    pub evaluators: EvaluatorSettings,
    /// Folder of prompt templates (relative paths are resolved against the working directory).
    pub prompts_dir: PathBuf,
    /// Folder under which run directories are created.
    pub runs_dir: PathBuf,
    /// Folder of the bundled datasets.
    pub data_dir: PathBuf,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            data: DataSettings::default(),
            model: ModelConfig::default(),
            proxy: ProxyConfig::default(),
            final_train: FinalSettings::default(),
            search: SearchSettings::default(),
            llm: LlmSettings::default(),
            evaluators: EvaluatorSettings::default(),
            prompts_dir: "prompts".into(),
            runs_dir: "runs".into(),
            data_dir: "data".into(),
        }
    }
}

/// Which data, and how it is cut into samples.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DataSettings {
    /// A bundled dataset name (`metr-la-week`, `chickenpox`, `pedalme`) or a path.
    pub source: String,
    /// An explicit description of the files, instead of `source`.
    pub spec: Option<DataSpec>,
    pub prepare: PrepareConfig,
}

impl Default for DataSettings {
    fn default() -> Self {
        DataSettings {
            source: "metr-la-week".into(),
            spec: None,
            prepare: PrepareConfig::default(),
        }
    }
}

/// Full training of the best candidates at the end of a search.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FinalSettings {
    /// How many of the best candidates are trained fully (0 = none).
    pub top_k: usize,
    /// Seeds each of them is trained with (train.seed, +1, ...); the final model is the
    /// candidate with the best mean validation MAE over its seeds (RMSE under
    /// `train.loss = "mse"`, [`crate::train::Loss::score`]), never chosen on test.
    pub seeds: usize,
    /// With `seeds >= 2`, also score the ensemble of each candidate's seeds: the mean of their
    /// de-normalized forecasts, with the metrics of a single model (same samples, same
    /// masking). Reported beside the seeds' mean ± sd, never replacing it and never used to
    /// choose the final model.
    pub ensemble: bool,
    pub train: TrainConfig,
    /// Widths of the final model, when they differ from the proxy's (`[model]`): a search
    /// scores small models cheaply and trains the chosen design at full strength.
    pub model: Option<ModelConfig>,
}

impl Default for FinalSettings {
    fn default() -> Self {
        FinalSettings {
            top_k: 1,
            seeds: 1,
            ensemble: false,
            train: TrainConfig::default(),
            model: None,
        }
    }
}

/// Chain-of-thought (one prompt) or tree-of-thought (branching per node decision).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Cot,
    Tot,
}

impl Mode {
    /// The name settings spell it with (what [`str::parse`] reads).
    pub fn name(self) -> &'static str {
        match self {
            Mode::Cot => "cot",
            Mode::Tot => "tot",
        }
    }
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Mode, String> {
        match s {
            "cot" => Ok(Mode::Cot),
            "tot" => Ok(Mode::Tot),
            _ => Err(format!("unknown mode '{s}' (expected cot or tot)")),
        }
    }
}

/// Tree-of-thought shape.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TotSettings {
    /// Distinct alternatives (thoughts) the propose step asks for at every branch point, in one
    /// request per partial design of the beam.
    pub branches: usize,
    /// Partial designs kept at each depth, by the LLM's value (the select step).
    pub beam: usize,
    /// Beam entries expanded at once (each a propose request, then a value request).
    pub concurrency: usize,
}

impl Default for TotSettings {
    fn default() -> Self {
        TotSettings {
            branches: 3,
            beam: 2,
            concurrency: 3,
        }
    }
}

/// Memory bank section of the prompts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MemorySettings {
    /// Best entries shown.
    pub top: usize,
    /// Most recent entries shown besides the best.
    pub recent: usize,
    /// Approximate token budget of the section (4 characters a token); best entries kept first.
    pub token_budget: usize,
}

impl Default for MemorySettings {
    fn default() -> Self {
        MemorySettings {
            top: 8,
            recent: 3,
            token_budget: 1500,
        }
    }
}

/// The search strategy.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SearchSettings {
    pub space: SpaceKind,
    /// Candidates evaluated in total.
    pub budget: usize,
    /// Optimizer steps the search may spend scoring candidates, proxy runs and promotions
    /// together (0 = no limit but `budget`): searches compared at equal compute get the same.
    pub budget_steps: u64,
    /// Evaluation seconds the search may spend (the evaluations' own times summed, promotions
    /// included; 0 = no limit): no candidate or promotion starts once they are spent, those
    /// running finish. Equal wall time, where `budget_steps` is equal optimizer work (designs
    /// of different widths cost different seconds per step).
    pub budget_seconds: f64,
    /// Share of the budget spent in exploration before optimization.
    pub exploration_share: f64,
    /// How the offline instructor picks an exploration-stage design: `sample` (uniform, seeded:
    /// what random search does), `diverse` (the most different from every design evaluated
    /// so far, among a pool of samples) or `prior` (the one `search.prior` ranks best, among a
    /// pool of samples). It applies to chain-of-thought proposals; the offline
    /// instructor's tree-of-thought branches sample uniformly, and LLM instructors are asked
    /// for diversity in words.
    pub exploration: Exploration,
    /// How the offline instructor proposes in the optimization stage: `mutate` (a mutation or
    /// crossover of the best designs, drawn at random) or `guided` (of [`GUIDED_POOL`] such
    /// offspring, the one a main-effects surrogate of the memory bank ranks best:
    /// [`crate::space::ChoiceEffects`]). Chain-of-thought mode.
    pub optimization: Optimization,
    /// Journals (`journal.jsonl`) of earlier searches on *other* tasks in the same space: their
    /// memory banks, as one main-effects surrogate ([`crate::prior::Prior`]), rank the
    /// exploration stage's candidates when `exploration = "prior"`. Paths as given (relative
    /// ones from the working directory). Empty: no prior.
    pub prior: Vec<std::path::PathBuf>,
    /// New uniform draws a `prior` exploration step chooses among (1..=4096; default
    /// [`PRIOR_POOL`]). Larger trusts the prior more: the first designs sit nearer to what it
    /// ranks best, at the cost of the exploration stage's spread.
    pub prior_pool: usize,
    /// Whether a `prior` exploration step weighs what its draws cost (`ignore`, the default,
    /// or `matched`): see [`PriorCost`].
    pub prior_cost: PriorCost,
    /// Switch early when this many evaluations in a row bring no new best (0 = off).
    pub plateau: usize,
    pub mode: Mode,
    pub tot: TotSettings,
    pub memory: MemorySettings,
    /// Candidates proposed ahead of the evaluators (pipelining depth).
    pub in_flight: usize,
    /// Repair requests per proposal before it counts as failed.
    pub max_repairs: usize,
    /// Proposals that fail (parse, duplicate, repairs exhausted) before the search gives up.
    pub max_failures: usize,
    /// With an LLM backend: when a proposal fails (repairs exhausted, LLM error, tree-of-thought
    /// dead end), the seeded offline instructor proposes instead, so the budget is spent on
    /// evaluations; each such proposal is counted in the summary's `fallbacks`.
    pub fallback: bool,
    pub seed: u64,
    /// Successive-halving rungs above the proxy (off by default).
    pub rungs: crate::rungs::RungSettings,
    /// The joint space: hyperparameter choices searched with the wiring (all empty = off).
    pub hyper: crate::hyper::HyperSpace,
}

impl SearchSettings {
    /// Whether the exploration stage has had its share: `exploration_share` of the candidate
    /// budget evaluated or, under a step or seconds budget, of `budget_steps` or
    /// `budget_seconds` spent (whichever comes first; a compute-bounded search rarely reaches
    /// its candidate cap, and would otherwise never optimize). Never with
    /// `exploration_share = 1` (random search).
    pub fn exploration_done(&self, candidates: usize, steps: u64, seconds: f64) -> bool {
        if self.exploration_share >= 1.0 || self.budget == 0 {
            return false;
        }
        let by_candidates =
            candidates >= (self.exploration_share * self.budget as f64).ceil() as usize;
        let by_steps = self.budget_steps > 0
            && steps as f64 >= (self.exploration_share * self.budget_steps as f64).ceil();
        let by_seconds =
            self.budget_seconds > 0.0 && seconds >= self.exploration_share * self.budget_seconds;
        by_candidates || by_steps || by_seconds
    }

    /// Whether a seconds budget is set and spent.
    pub fn seconds_spent(&self, seconds: f64) -> bool {
        self.budget_seconds > 0.0 && seconds >= self.budget_seconds
    }
}

impl Default for SearchSettings {
    fn default() -> Self {
        SearchSettings {
            space: SpaceKind::Ists,
            budget: 12,
            budget_steps: 0,
            budget_seconds: 0.0,
            exploration_share: 0.5,
            exploration: Exploration::Sample,
            optimization: Optimization::Mutate,
            prior: Vec::new(),
            prior_pool: PRIOR_POOL,
            prior_cost: PriorCost::Ignore,
            plateau: 0,
            mode: Mode::Cot,
            tot: TotSettings::default(),
            memory: MemorySettings::default(),
            in_flight: 2,
            max_repairs: 2,
            max_failures: 50,
            fallback: true,
            seed: 7,
            rungs: crate::rungs::RungSettings::default(),
            hyper: crate::hyper::HyperSpace::default(),
        }
    }
}

/// How the offline instructor explores (`search.exploration`).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Exploration {
    /// Uniform seeded sampling of the space: random search's rule.
    #[default]
    Sample,
    /// Max-min diversity: of [`DIVERSE_POOL`] uniform samples, the one farthest
    /// ([`crate::space::Arch::distance`]) from its nearest evaluated design, so the first
    /// designs spread over the operators and hyperparameter choices instead of clustering.
    Diverse,
    /// Prior knowledge: of `search.prior_pool` new uniform samples, the one the surrogate of earlier
    /// searches' banks (`search.prior`, [`crate::prior::Prior`]) ranks best, so the first
    /// designs start where other tasks' winners were instead of anywhere.
    Prior,
}

/// Whether prior-ranked exploration weighs cost (`search.prior_cost`).
///
/// Why: earlier banks rank wide and stacked designs first, so a prior-ranked search spends more
/// seconds per candidate than random search (a median 1.20-1.35x on the bundled sets). Under a
/// seconds budget it then scores fewer candidates. Measured at equal seconds (BENCHMARKS.md, "A
/// prior that pays for its designs", "Equal seconds on METR-LA"): matched, it beat random
/// search on chickenpox and PedalMe but not on METR-LA, where ignoring cost did; it beat
/// ignoring cost on chickenpox only. No rule won on all three, so the default stays `ignore`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PriorCost {
    /// The pool's best-ranked draw, whatever its cost.
    #[default]
    Ignore,
    /// The best-ranked draw among those whose estimated step cost
    /// ([`crate::footprint::StepCost`]) is no higher than the pool's first draw's. The first
    /// draw is what uniform sampling would have proposed, so each proposal costs at most what
    /// random search's would (as far as the estimate is right), and the prior only chooses
    /// among designs no dearer than that.
    Matched,
}

/// Uniform samples a `diverse` exploration step chooses among.
pub const DIVERSE_POOL: usize = 32;

/// New uniform samples a `prior` exploration step chooses among, by default
/// (`search.prior_pool`). Small enough that the exploration stage still spreads: the prior
/// picks among a few draws, it does not dictate.
pub const PRIOR_POOL: usize = 8;

/// The largest `search.prior_pool`: each exploration proposal samples and ranks this many
/// designs, so the bound keeps a proposal's cost small.
pub const MAX_PRIOR_POOL: usize = 4096;

/// How the offline instructor proposes in the optimization stage (`search.optimization`).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Optimization {
    /// A mutation or crossover of the best designs (rank-biased parent), drawn at random.
    #[default]
    Mutate,
    /// Surrogate-guided: of [`GUIDED_POOL`] new offspring drawn as `mutate` draws them, the
    /// one whose choices (edges, operator kinds, width, depth, learning-rate factor) the
    /// memory bank's designs that made them rank best ([`crate::space::ChoiceEffects`]), so
    /// that a step towards a choice the search has already seen fail is avoided.
    Guided,
}

/// New offspring a `guided` optimization step chooses among.
pub const GUIDED_POOL: usize = 16;

/// Which instructor answers the prompts.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// The embedded, seeded instructor: no key, no network.
    Offline,
    /// Any OpenAI-compatible chat-completions endpoint.
    Openai,
    /// The bundled local model (`[llm.local]`), installed and started by `ists` itself.
    Local,
}

impl Backend {
    /// The name settings and method names spell it with (what [`str::parse`] reads).
    pub fn name(self) -> &'static str {
        match self {
            Backend::Offline => "offline",
            Backend::Openai => "openai",
            Backend::Local => "local",
        }
    }
}

impl std::str::FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Backend, String> {
        match s {
            "offline" => Ok(Backend::Offline),
            "openai" => Ok(Backend::Openai),
            "local" => Ok(Backend::Local),
            _ => Err(format!(
                "unknown llm backend '{s}' (expected offline, openai or local)"
            )),
        }
    }
}

/// How replies are constrained. `auto` asks for a strict JSON schema and falls back to
/// `json_object`, then to plain text, when the server refuses the format.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ResponseFormat {
    Auto,
    JsonSchema,
    JsonObject,
    Text,
}

/// Price of a model in US dollars per million tokens.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Price {
    pub prompt: f64,
    pub completion: f64,
    /// Cached prompt tokens (charged instead of `prompt` for them); 0 means "same as prompt".
    pub cached: f64,
}

impl Price {
    /// The cost in dollars of the given token counts (`cached` is a part of `prompt`).
    pub fn cost(&self, prompt: u64, completion: u64, cached: u64) -> f64 {
        let cached = cached.min(prompt);
        let cached_rate = if self.cached > 0.0 {
            self.cached
        } else {
            self.prompt
        };
        ((prompt - cached) as f64 * self.prompt
            + cached as f64 * cached_rate
            + completion as f64 * self.completion)
            / 1e6
    }
}

/// The bundled local model server (`--llm local`, `ists llm serve`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LocalLlmSettings {
    /// Port on 127.0.0.1; a server already answering there with the same model is reused.
    pub port: u16,
    /// Inference threads (1: the evaluators need the other cores, and contention slows both).
    pub threads: usize,
    /// Context window of the server, in tokens.
    pub context_tokens: usize,
    /// Cache folder (models, node modules); empty means `$ISTS_CACHE` or `~/.cache/ists`.
    pub cache_dir: PathBuf,
    /// Seconds to wait for the server to load the model and answer `/health`.
    pub startup_secs: f64,
}

impl Default for LocalLlmSettings {
    fn default() -> Self {
        LocalLlmSettings {
            port: 8090,
            threads: 1,
            context_tokens: 4096,
            cache_dir: PathBuf::new(),
            startup_secs: 120.0,
        }
    }
}

/// The instructor's connection.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LlmSettings {
    pub backend: Backend,
    pub base_url: String,
    pub model: String,
    /// Environment variable holding the API key (never the key itself in a file).
    pub key_env: String,
    pub temperature: f32,
    pub max_tokens: u32,
    /// Limit of one HTTP request; a request that hangs longer is retried.
    pub timeout_secs: f64,
    /// Requests in flight at once.
    pub max_concurrent: usize,
    /// Retries of one request after 429, 5xx, timeouts and connection errors.
    pub max_retries: usize,
    /// First backoff delay; doubled at each retry, with jitter, up to `retry_max_secs`.
    pub retry_base_secs: f64,
    pub retry_max_secs: f64,
    pub response_format: ResponseFormat,
    /// Context window of the model in tokens: the memory section of a prompt is trimmed so that
    /// prompt and reply fit (best entries kept first).
    pub context_tokens: usize,
    /// Optional seed sent with each request (servers that support it answer reproducibly).
    pub seed: Option<u64>,
    /// Designs a chain-of-thought reply's grammar rules out (where the server constrains
    /// decoding): the proposal's own duplicates first, then the designs in flight, then those
    /// its prompt shows, best first; 0 turns it off (the empty design is ruled out either
    /// way). A small model otherwise copies a design it was shown.
    pub exclude_designs: usize,
    /// Prices per model name, for the cost estimate in the summary.
    pub prices: std::collections::BTreeMap<String, Price>,
    pub local: LocalLlmSettings,
}

impl Default for LlmSettings {
    fn default() -> Self {
        LlmSettings {
            backend: Backend::Offline,
            base_url: "http://127.0.0.1:8080/v1".into(),
            model: "gpt-4o-mini".into(),
            key_env: "OPENAI_API_KEY".into(),
            temperature: 0.7,
            max_tokens: 1024,
            timeout_secs: 120.0,
            max_concurrent: 4,
            max_retries: 4,
            retry_base_secs: 0.5,
            retry_max_secs: 30.0,
            response_format: ResponseFormat::Auto,
            context_tokens: 128_000,
            seed: None,
            exclude_designs: 12,
            prices: std::collections::BTreeMap::new(),
            local: LocalLlmSettings::default(),
        }
    }
}

/// Where candidates are evaluated.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EvaluatorSettings {
    /// `local` (evaluator actors on this machine) or `ray` (one Ray job per candidate).
    pub backend: EvalBackend,
    /// `cpu`, `cuda:0`, `cuda:1`, ...; one evaluator actor each (local backend, and final
    /// training for both backends).
    pub devices: Vec<String>,
    /// Intra-op threads of each CPU evaluator: 1 (the default) keeps runs repeatable to the
    /// last digit and leaves the other cores to processes beside it; 0 gives the evaluators
    /// every core ([`EvaluatorSettings::cpu_threads`]).
    pub threads: i32,
    pub ray: RaySettings,
}

impl Default for EvaluatorSettings {
    fn default() -> Self {
        EvaluatorSettings {
            backend: EvalBackend::Local,
            devices: vec!["cpu".into()],
            threads: 1,
            ray: RaySettings::default(),
        }
    }
}

impl EvaluatorSettings {
    /// The intra-op threads each CPU evaluation of this process runs on: `threads`, or with 0
    /// every core this process may use (`std::thread::available_parallelism`, which honours CPU
    /// affinity and cgroup quotas) shared among the CPU evaluators listed, at least 1. One
    /// evaluator runs one evaluation at a time, so with one `cpu` device it gets them all.
    pub fn cpu_threads(&self) -> i32 {
        if self.threads > 0 {
            return self.threads;
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let cpus = self.devices.iter().filter(|d| d.as_str() == "cpu").count();
        (cores / cpus.max(1)).clamp(1, 256) as i32
    }

    /// The threads of one evaluation outside the actor system in the commands that read a Ray
    /// search's settings as a Ray job's, as `single_device` does (`ists train`, `ists eval`,
    /// `ists baseline`'s trainings): with 0 and the Ray backend, the CPUs Ray reserves for the
    /// job (`ray.entrypoint_num_cpus`, at least 1), not the node's cores, which other jobs
    /// share; otherwise [`EvaluatorSettings::cpu_threads`], which the commands that never run
    /// as a Ray job (predict, report, fidelity, protocol, bench) use directly.
    pub fn single_threads(&self) -> i32 {
        if self.threads == 0 && self.backend == EvalBackend::Ray {
            return (self.ray.entrypoint_num_cpus.floor() as i32).clamp(1, 256);
        }
        self.cpu_threads()
    }
}

/// Evaluator back ends.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EvalBackend {
    Local,
    Ray,
}

/// A Ray cluster reached through its Jobs REST API.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RaySettings {
    /// Dashboard address of the head, e.g. `http://127.0.0.1:8265`.
    pub address: String,
    pub entrypoint_num_cpus: f64,
    pub entrypoint_num_gpus: f64,
    /// Jobs in flight at once: keep it within the cluster's free slots (jobs beyond them wait
    /// PENDING and Ray fails them after its start timeout).
    pub max_in_flight: usize,
    /// The `ists` binary as every node sees it (default: this binary's path).
    pub binary: Option<PathBuf>,
    /// The data folder as every node sees it (default: `data_dir`, made absolute).
    pub data_dir: Option<PathBuf>,
    pub poll_ms: u64,
    /// A job running longer than this is stopped and recorded as timed out.
    pub job_timeout_secs: f64,
    /// How long an unreachable head is waited for before the candidate fails.
    pub reconnect_secs: f64,
}

impl Default for RaySettings {
    fn default() -> Self {
        RaySettings {
            address: "http://127.0.0.1:8265".into(),
            entrypoint_num_cpus: 1.0,
            entrypoint_num_gpus: 0.0,
            max_in_flight: 2,
            binary: None,
            data_dir: None,
            poll_ms: 250,
            job_timeout_secs: 1800.0,
            reconnect_secs: 120.0,
        }
    }
}

impl Settings {
    /// The widths the final model is trained with: `final.model`, else the proxy's `model`.
    pub fn final_model(&self) -> &ModelConfig {
        self.final_train.model.as_ref().unwrap_or(&self.model)
    }

    /// Refuses a `final.model.hidden` that would be silently ignored for `arch`: a design of the
    /// joint space carries its own width (`hyper.hidden`, the search's choice), which replaces
    /// any configured one. The other final widths (end_hidden, heads, order, embed) still apply.
    pub fn check_final_width(&self, arch: &crate::space::Arch) -> crate::Result<()> {
        match (&arch.hyper, &self.final_train.model) {
            (Some(h), Some(m)) if m.hidden != h.hidden => Err(crate::Error::Setting(format!(
                "final.model.hidden ({}) would be ignored: the design carries its own width \
                 (hyper.hidden = {}), chosen in the joint space; set final.model.hidden to {} \
                 or leave it out, or give the design the width to train",
                m.hidden, h.hidden, h.hidden
            ))),
            _ => Ok(()),
        }
    }

    /// The hyperparameter choices of this search, lists left empty filled with the fixed
    /// values (inactive when `[search.hyper]` sets nothing).
    pub fn hyper_space(&self) -> crate::hyper::HyperSpace {
        self.search.hyper.resolved(self.model.hidden)
    }

    /// Checks values serde cannot, naming the key at fault.
    pub fn validate(&self) -> crate::Result<()> {
        self.model.validate()?;
        self.check_limits().map_err(crate::Error::Setting)?;
        // Every width offered must suit the heads of the proxy's and the final model: a
        // multiple of both head counts (their least common multiple).
        let (a, b) = (self.model.heads.max(1), self.final_model().heads.max(1));
        let gcd = |mut x: i64, mut y: i64| {
            while y != 0 {
                (x, y) = (y, x % y);
            }
            x
        };
        self.search
            .hyper
            .check(a / gcd(a, b) * b)
            .map_err(crate::Error::Setting)?;
        // In the joint space every design carries its width, so a final width other than the
        // proxy's would be ignored for all of them (`check_final_width`): refused up front.
        if let Some(m) = &self.final_train.model {
            if self.search.hyper.is_active() && m.hidden != self.model.hidden {
                return Err(crate::Error::Setting(format!(
                    "final.model.hidden ({}) would be ignored: search.hyper searches the width, \
                     and the final model takes the chosen design's; leave final.model.hidden at \
                     model.hidden ({}) or out",
                    m.hidden, self.model.hidden
                )));
            }
        }
        self.check().map_err(crate::Error::Setting)
    }

    /// The upper (and lower) bound of every size, count and duration: a value past them would
    /// allocate without limit, spin for ever or overflow, so it is refused here, before any
    /// work, with the key and the limit (the limits are listed in `config/default.toml`).
    fn check_limits(&self) -> Result<(), String> {
        let s = &self.search;
        let (p, f, l) = (&self.proxy, &self.final_train, &self.llm);
        let ev = &self.evaluators;
        // 0 is a value here (every core), so a negative count cannot be read as 0 below.
        if ev.threads < 0 {
            return Err(format!(
                "evaluators.threads must be within 0..=256 (0: every core), got {}",
                ev.threads
            ));
        }
        let counts: [(&str, u64, u64, u64); 39] = [
            ("search.budget", s.budget as u64, 1, limits::BUDGET),
            ("search.plateau", s.plateau as u64, 0, limits::BUDGET),
            ("search.in_flight", s.in_flight as u64, 1, 256),
            ("search.max_repairs", s.max_repairs as u64, 0, 16),
            (
                "search.max_failures",
                s.max_failures as u64,
                0,
                limits::BUDGET,
            ),
            ("search.tot.branches", s.tot.branches as u64, 1, 16),
            ("search.tot.beam", s.tot.beam as u64, 1, 16),
            ("search.tot.concurrency", s.tot.concurrency as u64, 1, 64),
            ("search.memory.top", s.memory.top as u64, 0, 1000),
            ("search.memory.recent", s.memory.recent as u64, 0, 1000),
            (
                "search.memory.token_budget",
                s.memory.token_budget as u64,
                0,
                1_000_000,
            ),
            ("model.hidden", self.model.hidden.max(0) as u64, 1, 1024),
            (
                "model.end_hidden",
                self.model.end_hidden.max(0) as u64,
                1,
                4096,
            ),
            ("model.heads", self.model.heads.max(0) as u64, 1, 64),
            ("model.order", self.model.order.max(0) as u64, 1, 8),
            ("model.embed", self.model.embed.max(0) as u64, 1, 256),
            (
                "data.prepare.input_len",
                self.data.prepare.input_len as u64,
                1,
                2016,
            ),
            (
                "data.prepare.output_len",
                self.data.prepare.output_len as u64,
                1,
                2016,
            ),
            (
                "data.prepare.target_feature",
                self.data.prepare.target_feature as u64,
                0,
                63,
            ),
            ("proxy.steps", p.steps as u64, 1, limits::STEPS),
            ("proxy.batch_size", p.batch_size as u64, 1, 4096),
            ("proxy.val_samples", p.val_samples as u64, 0, 1_000_000),
            ("proxy.warmup", p.warmup as u64, 0, limits::STEPS),
            ("final.top_k", f.top_k as u64, 0, 32),
            ("final.train.epochs", f.train.epochs as u64, 1, 10_000),
            ("final.train.batch_size", f.train.batch_size as u64, 1, 4096),
            (
                "final.train.eval_batch_size",
                f.train.eval_batch_size as u64,
                1,
                4096,
            ),
            ("final.train.patience", f.train.patience as u64, 0, 10_000),
            (
                "final.train.average_top",
                f.train.average_top as u64,
                0,
                100,
            ),
            (
                "final.train.max_batches_per_epoch",
                f.train.max_batches_per_epoch as u64,
                0,
                limits::STEPS,
            ),
            ("llm.max_concurrent", l.max_concurrent as u64, 1, 256),
            ("llm.max_retries", l.max_retries as u64, 0, 20),
            ("llm.max_tokens", u64::from(l.max_tokens), 1, 1_000_000),
            ("llm.context_tokens", l.context_tokens as u64, 2, 10_000_000),
            (
                "llm.exclude_designs",
                l.exclude_designs as u64,
                0,
                crate::schema::MAX_EXCLUDED as u64,
            ),
            ("llm.local.threads", l.local.threads as u64, 1, 256),
            // A negative count is refused above, with its own value.
            ("evaluators.threads", ev.threads.max(0) as u64, 0, 256),
            (
                "evaluators.ray.max_in_flight",
                ev.ray.max_in_flight as u64,
                1,
                1024,
            ),
            ("evaluators.ray.poll_ms", ev.ray.poll_ms, 10, 60_000),
        ];
        for (key, v, lo, hi) in counts {
            if !(lo..=hi).contains(&v) {
                return Err(format!("{key} must be within {lo}..={hi}, got {v}"));
            }
        }
        if ev.devices.len() > 64 {
            return Err(format!(
                "evaluators.devices must list at most 64 devices, got {}",
                ev.devices.len()
            ));
        }
        if let Some(features) = &self.data.prepare.input_features {
            if features.len() > 64 || features.iter().any(|&i| i > 63) {
                return Err(
                    "data.prepare.input_features must list at most 64 indices, each within 0..=63"
                        .into(),
                );
            }
        }
        // Durations in seconds: NaN, negative and infinite values are refused with the rest.
        let secs: [(&str, f64, f64); 8] = [
            ("proxy.max_seconds", p.max_seconds, limits::DAY),
            ("llm.timeout_secs", l.timeout_secs, 3600.0),
            ("llm.retry_base_secs", l.retry_base_secs, 600.0),
            ("llm.retry_max_secs", l.retry_max_secs, 3600.0),
            ("llm.local.startup_secs", l.local.startup_secs, 3600.0),
            (
                "evaluators.ray.job_timeout_secs",
                ev.ray.job_timeout_secs,
                7.0 * limits::DAY,
            ),
            (
                "evaluators.ray.reconnect_secs",
                ev.ray.reconnect_secs,
                limits::DAY,
            ),
            ("llm.temperature", f64::from(l.temperature), 2.0),
        ];
        for (key, v, hi) in secs {
            if !(0.0..=hi).contains(&v) {
                return Err(format!("{key} must be within 0..={hi}, got {v}"));
            }
        }
        Ok(())
    }

    fn check(&self) -> Result<(), String> {
        let s = &self.search;
        if s.budget == 0 {
            return Err("search.budget must be >= 1".into());
        }
        if !(0.0..=1.0).contains(&s.exploration_share) {
            return Err(format!(
                "search.exploration_share must be within 0..=1, got {}",
                s.exploration_share
            ));
        }
        if s.in_flight == 0 {
            return Err("search.in_flight must be >= 1".into());
        }
        if s.exploration == Exploration::Prior && s.prior.is_empty() {
            return Err(
                "search.exploration = \"prior\" needs search.prior: the journals of earlier \
                 searches (journal.jsonl) to learn from"
                    .into(),
            );
        }
        if !(1..=MAX_PRIOR_POOL).contains(&s.prior_pool) {
            return Err(format!(
                "search.prior_pool must be within 1..={MAX_PRIOR_POOL}, got {}",
                s.prior_pool
            ));
        }
        if s.budget_steps > 1_000_000_000_000 {
            return Err(format!(
                "search.budget_steps must be <= 10^12, got {}",
                s.budget_steps
            ));
        }
        if !(s.budget_seconds.is_finite() && (0.0..=1e9).contains(&s.budget_seconds)) {
            return Err(format!(
                "search.budget_seconds must be within 0..=10^9, got {}",
                s.budget_seconds
            ));
        }
        if !(2..=16).contains(&s.rungs.eta) {
            return Err(format!(
                "search.rungs.eta must be within 2..=16, got {}",
                s.rungs.eta
            ));
        }
        if s.rungs.levels > 4 {
            return Err(format!(
                "search.rungs.levels must be <= 4, got {}",
                s.rungs.levels
            ));
        }
        let reserve = s.rungs.reserve_steps(self.proxy.steps);
        if reserve > 0 && s.budget_steps < reserve.saturating_add(self.proxy.steps as u64) {
            return Err(format!(
                "search.rungs.reserve keeps back {reserve} steps (one climb to the top rung) of \
                 search.budget_steps, which must then hold them and at least one proxy run of \
                 {} steps; got budget_steps = {} (0 is no step budget, nothing to keep back from)",
                self.proxy.steps, s.budget_steps
            ));
        }
        if !(1..=16).contains(&self.final_train.seeds) {
            return Err(format!(
                "final.seeds must be within 1..=16, got {}",
                self.final_train.seeds
            ));
        }
        self.final_train.train.check_schedule()?;
        if let Some(m) = &self.final_train.model {
            m.validate().map_err(|e| format!("final.{e}"))?;
            for (k, v, hi) in [
                ("hidden", m.hidden, 1024),
                ("end_hidden", m.end_hidden, 4096),
                ("heads", m.heads, 64),
                ("order", m.order, 8),
                ("embed", m.embed, 1024),
            ] {
                if v > hi {
                    return Err(format!("final.model.{k} must be within 1..={hi}, got {v}"));
                }
            }
        }
        for (k, v) in [
            ("search.tot.branches", s.tot.branches),
            ("search.tot.beam", s.tot.beam),
            ("search.tot.concurrency", s.tot.concurrency),
            ("proxy.batch_size", self.proxy.batch_size),
            ("final.train.batch_size", self.final_train.train.batch_size),
            ("llm.max_concurrent", self.llm.max_concurrent),
        ] {
            if v == 0 {
                return Err(format!("{k} must be >= 1"));
            }
        }
        if self.proxy.steps == 0 {
            return Err("proxy.steps must be >= 1".into());
        }
        if self.proxy.lr.is_nan() || self.proxy.lr <= 0.0 {
            return Err(format!("proxy.lr must be > 0, got {}", self.proxy.lr));
        }
        // A share of the nodes: 0 (or NaN) would train on nothing, above 1 means nothing.
        if !(self.proxy.node_share > 0.0 && self.proxy.node_share <= 1.0) {
            return Err(format!(
                "proxy.node_share must be within (0, 1] (the share of the graph's nodes the \
                 rung-0 proxy trains on; 1 = all), got {}",
                self.proxy.node_share
            ));
        }
        if self.evaluators.devices.is_empty() {
            return Err("evaluators.devices must list at least one device".into());
        }
        for d in &self.evaluators.devices {
            // "all" (every visible GPU) is resolved when the evaluators start.
            if d != "all" {
                parse_device(d).map_err(|e| format!("evaluators.devices: {e}, or all"))?;
            }
        }
        if self.evaluators.ray.max_in_flight == 0 {
            return Err("evaluators.ray.max_in_flight must be >= 1".into());
        }
        if self.llm.timeout_secs.is_nan() || self.llm.timeout_secs <= 0.0 {
            return Err("llm.timeout_secs must be > 0".into());
        }
        for (k, v) in [
            ("llm.retry_base_secs", self.llm.retry_base_secs),
            ("llm.retry_max_secs", self.llm.retry_max_secs),
        ] {
            if v.is_nan() || v < 0.0 {
                return Err(format!("{k} must be >= 0, got {v}"));
            }
        }
        if (self.llm.context_tokens as u64) <= self.llm.max_tokens as u64 {
            return Err(format!(
                "llm.context_tokens ({}) must exceed llm.max_tokens ({})",
                self.llm.context_tokens, self.llm.max_tokens
            ));
        }
        Ok(())
    }

    /// Resolves the data description: the explicit spec, a bundled name, or a path.
    pub fn data_spec(&self) -> Result<DataSpec, crate::data::DataError> {
        match &self.data.spec {
            Some(spec) => Ok(spec.clone()),
            None => DataSpec::resolve(&self.data.source, &self.data_dir),
        }
    }
}

/// Upper bounds shared by several settings (the others are written where they are checked).
pub mod limits {
    /// Candidates of one search (`search.budget`, and the counts measured in candidates).
    pub const BUDGET: u64 = 100_000;
    /// Optimizer steps of one training run (`proxy.steps`, `proxy.warmup`, batches per epoch).
    pub const STEPS: u64 = 10_000_000;
    /// One day, in seconds.
    pub const DAY: f64 = 86_400.0;
}

/// Parses `cpu` / `cuda` / `cuda:N`.
pub fn parse_device(s: &str) -> Result<tch::Device, String> {
    match s {
        "cpu" => Ok(tch::Device::Cpu),
        "cuda" => Ok(tch::Device::Cuda(0)),
        _ => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(i)) => Ok(tch::Device::Cuda(i)),
            _ => Err(format!(
                "unknown device '{s}' (expected cpu, cuda or cuda:N)"
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(edit: impl FnOnce(&mut Settings)) -> String {
        let mut s = Settings::default();
        edit(&mut s);
        match s.validate() {
            Err(crate::Error::Setting(m)) => m,
            other => panic!("accepted or wrong error: {other:?}"),
        }
    }

    /// `evaluators.threads`: a count is taken as given; 0 shares this process's cores among the
    /// CPU evaluators listed (at least 1 each), and inside a Ray job is the CPUs Ray reserves.
    #[test]
    fn zero_evaluator_threads_share_the_cores_among_the_cpu_evaluators() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as i32;
        let mut ev = EvaluatorSettings {
            threads: 3,
            ..EvaluatorSettings::default()
        };
        assert_eq!((ev.cpu_threads(), ev.single_threads()), (3, 3));
        ev.threads = 0;
        assert_eq!(ev.cpu_threads(), cores.min(256));
        assert_eq!(ev.single_threads(), cores.min(256));
        ev.devices = vec!["cpu".into(), "cuda:0".into(), "cpu".into()];
        assert_eq!(ev.cpu_threads(), (cores / 2).max(1));
        // No CPU device listed ("all" may resolve to the CPU): all the cores, as for one.
        ev.devices = vec!["all".into()];
        assert_eq!(ev.cpu_threads(), cores.min(256));
        ev.backend = EvalBackend::Ray;
        ev.ray.entrypoint_num_cpus = 2.5;
        assert_eq!(ev.single_threads(), 2);
        ev.ray.entrypoint_num_cpus = 0.5;
        assert_eq!(ev.single_threads(), 1);
        // A count given is a count, for Ray jobs too.
        ev.threads = 4;
        assert_eq!(ev.single_threads(), 4);
        let mut s = Settings::default();
        s.evaluators.threads = 0;
        s.validate().unwrap();
    }

    /// Sizes that would allocate without limit, spin or overflow are refused with the key
    /// and its range; the defaults pass.
    #[test]
    fn out_of_range_settings_name_the_key_and_the_limit() {
        Settings::default().validate().unwrap();
        assert_eq!(
            refused(|s| s.search.tot.branches = 10_000_000_000),
            "search.tot.branches must be within 1..=16, got 10000000000"
        );
        assert!(refused(|s| s.llm.max_concurrent = usize::MAX)
            .starts_with("llm.max_concurrent must be within 1..=256"));
        assert!(refused(|s| s.proxy.steps = 4_000_000_000)
            .starts_with("proxy.steps must be within 1..=10000000"));
        assert!(refused(|s| s.proxy.max_seconds = f64::NAN)
            .starts_with("proxy.max_seconds must be within 0..=86400"));
        for bad in [0.0, -0.5, 1.5, f64::NAN, f64::INFINITY] {
            assert!(refused(|s| s.proxy.node_share = bad)
                .starts_with("proxy.node_share must be within (0, 1]"));
        }
        assert!(refused(|s| s.llm.timeout_secs = f64::INFINITY).starts_with("llm.timeout_secs"));
        assert!(refused(|s| s.model.hidden = 1 << 20)
            .starts_with("model.hidden must be within 1..=1024"));
        assert!(refused(|s| s.final_train.train.epochs = 0).starts_with("final.train.epochs"));
        assert!(
            refused(|s| s.data.prepare.input_features = Some(vec![0; 65]))
                .starts_with("data.prepare.input_features")
        );
        assert!(refused(|s| s.evaluators.devices = vec!["cpu".into(); 65])
            .starts_with("evaluators.devices"));
        for bad in [-1, 257] {
            let m = refused(|s| s.evaluators.threads = bad);
            assert!(
                m.starts_with("evaluators.threads must be within 0..=256")
                    && m.ends_with(&format!("got {bad}")),
                "{m}"
            );
        }
        assert!(refused(|s| s.final_train.train.gamma = 0.0).starts_with("final.train.gamma"));
        assert!(refused(|s| s.search.budget_seconds = -1.0)
            .starts_with("search.budget_seconds must be within 0..=10^9"));
        for bad in [0, MAX_PRIOR_POOL + 1, usize::MAX] {
            assert_eq!(
                refused(|s| s.search.prior_pool = bad),
                format!("search.prior_pool must be within 1..=4096, got {bad}")
            );
        }
        // The joint space's widths must suit the heads of both models.
        assert_eq!(
            refused(|s| s.search.hyper.hidden = vec![16, 18]),
            "search.hyper.hidden: model.heads (4) must divide every width, got 18"
        );
        assert!(refused(|s| s.search.hyper.blocks = vec![9])
            .starts_with("search.hyper.blocks must hold counts within 1..=8"));
        let wide = |hidden| {
            move |s: &mut Settings| {
                s.final_train.model = Some(ModelConfig {
                    hidden,
                    ..ModelConfig::default()
                })
            }
        };
        assert_eq!(refused(wide(0)), "final.model.hidden must be >= 1, got 0");
        assert!(refused(wide(4096)).starts_with("final.model.hidden must be within 1..=1024"));
        let mut s = Settings::default();
        wide(64)(&mut s);
        s.validate().unwrap();
        assert_eq!(s.final_model().hidden, 64);
        assert_eq!(Settings::default().final_model().hidden, s.model.hidden);
        // A final width the joint space's designs would ignore is refused, saying why.
        let e = refused(|s| {
            wide(64)(s);
            s.search.hyper.blocks = vec![1, 2];
        });
        assert!(
            e.starts_with("final.model.hidden (64) would be ignored") && e.contains("search.hyper"),
            "{e}"
        );
        let mut same = Settings::default();
        wide(same.model.hidden)(&mut same);
        same.search.hyper.blocks = vec![1, 2];
        same.validate().unwrap();
        // And per design: one carrying its width refuses another final width.
        let joint = crate::space::Arch::from_json(
            r#"{"edges":[{"from":0,"to":3,"op":"identity"}],"hyper":{"hidden":16,"blocks":1,"lr_scale":1.0}}"#,
            crate::space::SpaceKind::Ists,
        )
        .unwrap();
        let e = s.check_final_width(&joint).unwrap_err().to_string();
        assert!(
            e.contains("final.model.hidden (64)") && e.contains("hyper.hidden = 16"),
            "{e}"
        );
        let plain = crate::space::Arch::from_json(
            r#"{"edges":[{"from":0,"to":3,"op":"identity"}]}"#,
            crate::space::SpaceKind::Ists,
        )
        .unwrap();
        s.check_final_width(&plain).unwrap();
        Settings::default().check_final_width(&joint).unwrap();
    }
}
