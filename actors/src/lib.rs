//! # ists-actors: the ISTS search as an actor system
//!
//! Independent actors pass typed messages (all in [`messages`]) so tree-of-thought branches and
//! candidate evaluations run concurrently and the stage switch is an event.
//!
//! # Layout
//! - [`messages`]: every message, one documented struct each.
//! - [`events`]: the event bus; subscribers register a `Recipient<EventMsg>`.
//! - [`prompt_actor`]: PromptActor, prompts from the template files.
//! - [`llm_actor`]: LlmActor, any OpenAI-compatible endpoint: retries, backoff, format fallback.
//! - [`local_llm`]: the bundled local model server (install, start or reuse, stop).
//! - [`offline`]: OfflineInstructor, the seeded embedded instructor (no key, no network).
//! - [`parser_actor`]: ParserActor, reply -> validated, canonical, new architecture.
//! - [`evaluator`]: EvaluatorActor per device on a `SyncArbiter`, and the pool.
//! - [`ray`]: RayEvaluator, one Ray job per candidate through the Jobs REST API.
//! - [`memory_actor`]: MemoryActor, the sorted bank and its durable journal.
//! - [`stage_actor`]: StageActor, the driver: pipelining, CoT/ToT, repairs, stage switch.
//! - [`supervisor`]: wiring, restart policy, `run_search` with a shutdown future.
//! - [`settings`]: layered configuration (defaults, file, `ISTS__` environment).
//! - [`rundir`], [`progress`], [`summary`]: run directory, progress bar, summary counters.
//! - [`report`]: the Markdown report with PNG plots of a run.
//! - [`bench`]: the actor-overhead and pipelining benchmark.
//! - [`daemon`], [`api`], [`store`], [`fair`], [`metrics`]: the long-running daemon - HTTP API,
//!   SQLite store, resume at start, fair evaluator share, Prometheus metrics; [`dashboard`]:
//!   its web page.

pub mod api;
pub mod bench;
pub mod daemon;
pub mod dashboard;
pub mod evaluator;
pub mod events;
pub mod fair;
pub mod llm_actor;
pub mod local_llm;
pub mod memory_actor;
pub mod messages;
pub mod metrics;
pub mod offline;
pub mod parser_actor;
pub mod progress;
pub mod prompt_actor;
pub mod ray;
pub mod report;
pub mod rundir;
pub mod settings;
pub mod stage_actor;
pub mod store;
pub mod summary;
pub mod supervisor;

pub use daemon::{Daemon, DaemonError, DaemonHandle, DaemonSettings};
pub use supervisor::{run_search, SearchError, SearchOptions};
