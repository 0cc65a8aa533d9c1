//! The search itself, as the paper's three levels: the StageActor drives the task level
//! (exploration, then optimization) and the step level (chain- or tree-of-thought proposals,
//! repairs); the PromptActor renders what the instructor is asked; the ParserActor turns
//! replies into validated, new architectures; the MemoryActor keeps the instance level's
//! sorted memory bank and its durable journal; the supervisor wires one search and runs it.
//!
//! May depend on: the core (`ists`), [`crate::messages`], [`crate::events`],
//! [`crate::settings`], [`crate::run`], and the evaluator and instructor back ends only
//! through the recipients and pools the supervisor hands out.

pub mod memory;
pub mod parser;
pub mod prompt;
pub mod stage;
pub mod supervisor;
