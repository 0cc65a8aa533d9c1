//! What one search leaves behind and shows while it runs: the run directory ([`dir`]), the
//! summary counters ([`summary`]), the terminal progress display ([`progress`]) and the
//! Markdown report with plots ([`report`]).
//!
//! May depend on: the core (`ists`), [`crate::messages`]; never on the actors that produce
//! what it records.

pub mod dir;
pub mod progress;
pub mod report;
pub mod summary;
