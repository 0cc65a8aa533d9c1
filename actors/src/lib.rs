//! # ists-actors: the ISTS search as an actor system
//!
//! Independent actors pass typed messages (all in [`messages`]) so tree-of-thought branches and
//! candidate evaluations run concurrently and the stage switch is an event.
//!
//! # Layout
//! - [`messages`]: every message, one documented struct each; [`events`]: the event bus
//!   (subscribers register a `Recipient<EventMsg>`); [`settings`]: layered configuration
//!   (defaults, file, `ISTS__` environment).
//! - [`search`]: the method. [`search::stage`] (StageActor: pipelining, promotions, the stage
//!   switch), its chain-of-thought proposals and repairs (`propose`), tree-of-thought as
//!   propose / evaluate / select (`tot`), evaluations and final training (`evaluate`),
//!   [`search::prompt`], [`search::parser`], [`search::memory`]
//!   (the sorted bank and its durable journal), [`search::supervisor`] (wiring, restart policy,
//!   `run_search` with a shutdown future).
//! - [`instructor`]: who proposes designs. [`instructor::llm`] (any OpenAI-compatible
//!   endpoint: retries, backoff, format fallback), [`instructor::offline`] (seeded, no key),
//!   [`instructor::local`] (the bundled local model server).
//! - [`eval`]: who scores them. [`eval::evaluator`] (one EvaluatorActor per device on a
//!   `SyncArbiter`), [`eval::ray`] (one Ray job per candidate), [`eval::fair`] (the daemon's fair
//!   share of evaluator slots), [`eval::cancel`] (a search's cancellation flag).
//! - [`run`]: what a search leaves: [`run::dir`], [`run::summary`], [`run::progress`],
//!   [`run::report`] (Markdown report with PNG plots).
//! - [`daemon`]: many searches behind an HTTP API: [`daemon::api`], the shared state and
//!   submission checks (`shared`), the search manager (`manager`), the store writer (`writer`),
//!   [`daemon::store`] (SQLite), [`daemon::metrics`] (Prometheus), [`daemon::dashboard`] (its
//!   web page).
//! - [`mod@bench`]: the actor-overhead and pipelining benchmark; [`capped`]: the one capped
//!   body reader (LLM replies, API requests); [`retry`]: the one retry delay (LLM, Ray).
//! - The `ists` binary (`src/bin/ists/`) only parses arguments and calls these modules.
//!
//! Dependency rule: `search` reaches evaluators and instructors only through the recipients the
//! supervisor wires; `eval`, `instructor` and `run` never depend on `search`; nothing but
//! `daemon` depends on `daemon`. The core crate (`ists`) depends on none of this.

pub mod bench;
pub mod capped;
pub mod daemon;
pub mod eval;
pub mod events;
pub mod instructor;
pub mod messages;
pub mod retry;
pub mod run;
pub mod search;
pub mod settings;

pub use daemon::{Daemon, DaemonError, DaemonHandle, DaemonSettings};
pub use search::supervisor::{run_search, SearchError, SearchOptions};
