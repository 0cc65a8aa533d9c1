//! The run summary: counts of everything that happened, by kind, written to `summary.json`.

use crate::messages::Usage;
use ists::memory::{MemoryEntry, Stage};
use ists::space::ArchSpec;
use ists::train::TrainReport;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The best candidate of a search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Best {
    pub candidate: usize,
    pub hash: String,
    pub score: f64,
    pub arch: ArchSpec,
    /// The successive-halving rung of `score` (0 = the proxy).
    #[serde(default)]
    pub rung: usize,
}

impl Best {
    /// The best as `e` (whose score must be set; NaN otherwise).
    pub fn of(e: &MemoryEntry) -> Best {
        Best {
            candidate: e.id,
            hash: e.hash.clone(),
            score: e.score.unwrap_or(f64::NAN),
            arch: e.arch.clone(),
            rung: e.rung,
        }
    }
}

/// One seed's full training of a top candidate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeedScore {
    pub seed: u64,
    pub val_mae: Option<f64>,
    pub test_mae: Option<f64>,
    /// Validation RMSE, recorded when it chooses (`final.train.loss = "mse"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_rmse: Option<f64>,
}

/// A fully trained top candidate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinalResult {
    pub candidate: usize,
    pub proxy_score: Option<f64>,
    /// The report of its seed with the best validation score (MAE, or RMSE under
    /// `final.train.loss = "mse"`), whose model is exported when this candidate is chosen.
    pub report: TrainReport,
    /// The seed of `report`.
    #[serde(default)]
    pub seed: u64,
    /// Every seed it was trained with (`final.seeds`).
    #[serde(default)]
    pub seeds: Vec<SeedScore>,
    /// Mean validation MAE over the seeds: what the final model is chosen by, unless
    /// `mean_val_rmse` is recorded ([`FinalResult::choice_score`]).
    #[serde(default)]
    pub mean_val_mae: Option<f64>,
    /// Mean validation RMSE over the seeds, recorded when RMSE chose the trainings' epochs
    /// (`final.train.loss = "mse"`): then the candidate and its seed are chosen by it too, so
    /// that a user who trains for RMSE is not handed the model with the best MAE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean_val_rmse: Option<f64>,
    /// Mean test MAE over the seeds (reported, never used to choose).
    #[serde(default)]
    pub mean_test_mae: Option<f64>,
    /// With `final.ensemble` and two seeds or more: the metrics of the mean of the seeds'
    /// forecasts (its members: the seeds that trained), beside the seeds' mean, never used to
    /// choose.
    #[serde(default)]
    pub ensemble: Option<ists::ensemble::EnsembleMetrics>,
}

impl FinalResult {
    /// The validation score the candidates are ranked by, with its metric's name: the mean
    /// RMSE where it was recorded, else the mean MAE.
    pub fn choice_score(&self) -> Option<(&'static str, f64)> {
        match (self.mean_val_rmse, self.mean_val_mae) {
            (Some(rmse), _) => Some(("RMSE", rmse)),
            (None, Some(mae)) => Some(("MAE", mae)),
            (None, None) => None,
        }
    }
}

/// Counters of a search. Every reply is counted once under `replies`; each rejection under
/// its kind; repairs are the extra requests made after rejections.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub run_dir: String,
    pub dataset: String,
    pub space: String,
    pub mode: String,
    pub backend: String,
    pub budget: usize,
    /// Candidates evaluated (journal lines), including those resumed from an earlier run.
    pub evaluated: usize,
    /// Evaluated candidates taken over from the journal at resume.
    pub resumed: usize,
    /// Promotions to a higher successive-halving rung evaluated (`search.rungs`).
    #[serde(default)]
    pub promotions: usize,
    /// Optimizer steps spent on candidate evaluations and promotions (the search's compute,
    /// comparable across methods; resumed evaluations included).
    #[serde(default)]
    pub eval_steps: u64,
    /// The evaluations' own seconds summed, promotions and resumed evaluations included
    /// (against `search.budget_seconds`).
    #[serde(default)]
    pub eval_seconds: f64,
    /// Of the evaluated, how many ended diverged / timed out / failed (evaluator fault).
    pub diverged: usize,
    pub timed_out: usize,
    pub eval_failures: BTreeMap<String, usize>,
    /// Evaluator faults that were retried on a restarted evaluator.
    pub eval_retries: usize,
    /// The same faults by kind (`cuda_oom`, `device_error`, ...): the retry's outcome is what
    /// the journal records, so without this a fault that a retry survived would leave no trace.
    #[serde(default)]
    pub retried_faults: BTreeMap<String, usize>,
    pub requests: usize,
    pub replies: usize,
    pub rejected: BTreeMap<String, usize>,
    pub repairs: usize,
    /// Proposals abandoned after the repair budget or an LLM error.
    pub failed_proposals: usize,
    /// Tree-of-thought: distinct valid alternatives the proposal steps gave (thoughts).
    #[serde(default)]
    pub thoughts: usize,
    /// Tree-of-thought value requests, and those whose reply was unusable so that the memory
    /// heuristic valued the thoughts instead.
    #[serde(default)]
    pub value_requests: usize,
    #[serde(default)]
    pub value_fallbacks: usize,
    /// Characters of reasoning the instructor wrote before its decisions (CoT steps, ToT ideas
    /// and value reasons), and the same in tokens at 3 characters a token (an estimate; the
    /// exact completion tokens are in `usage`).
    #[serde(default)]
    pub reasoning_chars: usize,
    #[serde(default)]
    pub reasoning_tokens_est: usize,
    /// Replies that gave something usable (an accepted design, at least one valid thought, or
    /// values): over `requests`, the share of requests not wasted.
    #[serde(default)]
    pub usable_replies: usize,
    /// Chain-of-thought duplicates the model repeated through its repair turns, replaced by the
    /// nearest unexplored design (one change away) instead of being thrown away.
    #[serde(default)]
    pub adjusted: usize,
    /// Requests that failed after their retries, by kind (`llm_timeout`, `llm_rate_limited`...).
    pub llm_errors: BTreeMap<String, usize>,
    /// Faults survived by retrying or downgrading the response format, by kind (requests that
    /// failed in the end count once under `llm_errors` instead).
    pub llm_retries: BTreeMap<String, usize>,
    /// Proposals the LLM could not deliver that the seeded offline instructor filled in
    /// (`search.fallback`), so that the budget is still spent on evaluations.
    pub fallbacks: usize,
    /// Wall time spent waiting for instructor replies (summed over concurrent requests).
    pub llm_seconds: f64,
    pub stage: Option<Stage>,
    pub stage_switch_after: Option<usize>,
    pub best: Option<Best>,
    pub usage: Usage,
    /// Tokens spent on each evaluated candidate: its proposal's requests, repairs included (a
    /// tree-of-thought proposal's tokens are shared evenly among the candidates it produced).
    pub candidate_usage: BTreeMap<usize, Usage>,
    /// Estimated cost in US dollars, when `[llm.prices]` lists the model.
    pub cost_usd: Option<f64>,
    /// Wall time of the search and its final training, over every session of a resumed run
    /// (each earlier session up to its last journal write: [`crate::run::dir::earlier_seconds`]).
    pub seconds: f64,
    pub final_results: Vec<FinalResult>,
    /// Final trainings (candidate and seed) an earlier session of this run had finished, kept
    /// from the run directory instead of trained again; their seconds are in `seconds`.
    #[serde(default)]
    pub final_kept: usize,
    /// Final trainings copied from another search's identical one (`SearchOptions::finals`: a
    /// comparison's methods choosing the same design); their seconds are in `seconds` too.
    #[serde(default)]
    pub final_shared: usize,
    /// Why the search stopped early, if it did.
    pub stopped: Option<String>,
}
