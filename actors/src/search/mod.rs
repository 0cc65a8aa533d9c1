//! The search itself, as the paper's three levels: the StageActor drives the task level
//! (exploration, then optimization, `stage`), the step level's proposals (chain-of-thought,
//! repairs, fallback: `propose`; tree-of-thought's propose / evaluate / select: `tot`) and the
//! instance level's evaluations (candidates, promotions, final training: `evaluate`); the
//! PromptActor renders what the instructor is asked; the ParserActor turns replies into
//! validated, new architectures; the MemoryActor keeps the instance level's sorted memory bank
//! and its durable journal; the supervisor wires one search and runs it.
//!
//! May depend on: the core (`ists`), [`crate::messages`], [`crate::events`],
//! [`crate::settings`], [`crate::run`], and the evaluator and instructor back ends only
//! through the recipients and pools the supervisor hands out.

pub(crate) mod evaluate;
pub mod memory;
pub mod parser;
pub mod prompt;
mod propose;
pub mod stage;
pub mod supervisor;
mod tot;
