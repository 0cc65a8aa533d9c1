//! What one search leaves behind and shows while it runs: the run directory ([`dir`]), the
//! summary counters ([`summary`]), the terminal progress display ([`progress`]), the
//! Markdown report with plots ([`report`]), and the paired multi-seed comparison of search
//! methods ([`compare`]).
//!
//! May depend on: the core (`ists`), [`crate::messages`]; never on the actors that produce
//! what it records.

pub mod compare;
pub mod dir;
pub mod progress;
pub mod report;
pub mod summary;
