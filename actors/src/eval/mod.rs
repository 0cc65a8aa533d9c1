//! Evaluation back ends: the local evaluator pool (one EvaluatorActor per device on its own
//! thread, [`evaluator`]), Ray jobs ([`ray`]), the daemon's fair share of evaluator slots
//! between searches ([`fair`]) and a search's cancellation flag ([`cancel`]). A new back end
//! answers `Evaluate` and `TrainFinal` and is chosen in the supervisor.
//!
//! May depend on: the core (`ists`), [`crate::messages`], [`crate::settings`].

pub mod cancel;
pub mod evaluator;
pub mod fair;
pub mod ray;
