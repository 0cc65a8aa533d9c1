//! The instructors that answer a prompt with a design: any OpenAI-compatible LLM endpoint
//! ([`llm`]), the seeded embedded instructor that needs no key or network ([`offline`]), and
//! the bundled local model server ([`local`]). Each answers the same `Complete` message, so
//! a new instructor is one more actor with that handler.
//!
//! May depend on: the core (`ists`), [`crate::messages`]; never on the search's actors.

pub mod llm;
pub mod local;
pub mod offline;
