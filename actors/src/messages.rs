//! Every message the actors exchange, one documented struct each. Collaborators hold
//! `Recipient<M>` of these, so only the wiring code (`supervisor`) names concrete actors.

use actix::prelude::*;
use dashmap::DashMap;
use ists::memory::{MemoryEntry, Stage};
use ists::parse::ParseError;
use ists::space::{Arch, ArchSpec, EdgeSpec};
use ists::train::{EvalStatus, ProxyReport};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Hashes of candidates evaluated or in flight, shared by the memory, the parser and the
/// instructors so that concurrent proposals cannot pass the same design twice.
pub type KnownSet = Arc<DashMap<String, Known>>;

/// The state of a known hash.
#[derive(Debug, Clone, PartialEq)]
pub enum Known {
    /// Accepted from a proposal, not yet recorded: the design, so that the next prompts can
    /// rule it out before the memory lists it.
    InFlight(Arc<ArchSpec>),
    Recorded,
}

/// Who speaks in a chat message (serialized as OpenAI's lowercase names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        })
    }
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: Role, content: impl Into<String>) -> ChatMessage {
        ChatMessage {
            role,
            content: content.into(),
        }
    }
}

/// What a prompt asks for; the offline instructor acts on it, an LLM reads the text.
#[derive(Debug, Clone, PartialEq)]
pub enum Purpose {
    /// A whole architecture, decided step by step (chain of thought).
    Cot,
    /// `alternatives` distinct decisions for the incoming edges of one node, given the partial
    /// design (the proposal step of tree-of-thought).
    TotStep {
        node: usize,
        partial: Vec<EdgeSpec>,
        alternatives: usize,
    },
    /// A value for each partial design after deciding `node` (the evaluation step of
    /// tree-of-thought), in the order given.
    TotValue {
        node: usize,
        partials: Vec<Vec<EdgeSpec>>,
    },
}

/// Structured context sent along with a prompt (mirrors what the prompt text says).
#[derive(Debug, Clone)]
pub struct Hints {
    pub purpose: Purpose,
    pub stage: Stage,
    /// The best architectures so far, best first.
    pub best: Vec<ArchSpec>,
    /// Hashes already evaluated (or in flight): proposals should avoid them.
    pub known: KnownSet,
    /// Every scored design so far, best first (shared with the memory bank, not copied): what a
    /// diversity-seeking exploration keeps away from.
    pub seen: Arc<Vec<MemoryEntry>>,
    /// Distinguishes requests, so a seeded instructor gives different answers to each.
    pub request_id: u64,
    /// Branch index within a tree-of-thought expansion.
    pub branch: usize,
    /// Set on a repair request: the error the previous reply had.
    pub repair: Option<String>,
    /// Designs a chain-of-thought reply must differ from, most important first: the proposal's
    /// own duplicates, then the designs in flight and those the prompt shows
    /// ([`MemoryView::avoid`]). The LLM actor rules out the first `llm.exclude_designs` of them
    /// in the reply's grammar.
    pub avoid: Vec<ArchSpec>,
    /// What one training step of a design costs on this task, relatively
    /// ([`ists::footprint::StepCost`]); None where the task's shapes are unknown. The offline
    /// instructor's `search.prior_cost = "matched"` weighs its draws by it.
    pub step_cost: Option<ists::footprint::StepCost>,
}

/// A rendered prompt, ready for an instructor.
#[derive(Debug, Clone)]
pub struct Prompt {
    pub messages: Vec<ChatMessage>,
    pub hints: Hints,
}

/// Token usage of one completion.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_tokens: u64,
}

impl std::ops::AddAssign for Usage {
    // Saturating: counts come from the server, which may report anything.
    fn add_assign(&mut self, o: Usage) {
        self.prompt_tokens = self.prompt_tokens.saturating_add(o.prompt_tokens);
        self.completion_tokens = self.completion_tokens.saturating_add(o.completion_tokens);
        self.cached_tokens = self.cached_tokens.saturating_add(o.cached_tokens);
    }
}

/// An instructor's answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub text: String,
    pub usage: Usage,
    /// Wall time of the request, retries and backoff included.
    pub latency_secs: f64,
    /// Faults survived on the way, by kind (`rate_limited`, `timeout`, `format_fallback`, ...):
    /// one entry per retried or downgraded attempt.
    pub retries: Vec<String>,
}

/// Errors of an instructor request (after its own retries).
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum LlmError {
    #[error("request timed out after {0:.1}s")]
    Timeout(f64),
    #[error("rate limited (429) after every retry: {0}")]
    RateLimited(String),
    #[error("the server answered with an error: {0}")]
    Server(String),
    #[error("the server refused the request ({status}): {message}")]
    Refused { status: u16, message: String },
    #[error("could not reach the server: {0}")]
    Connection(String),
    #[error("the reply had no content")]
    NoContent,
    #[error("the response is not a chat completion: {0}")]
    BadResponse(String),
    #[error("the response is over {0} bytes")]
    TooLarge(usize),
    #[error("the request could not be built: {0}")]
    BadRequest(String),
}

impl LlmError {
    pub fn kind(&self) -> &'static str {
        match self {
            LlmError::Timeout(_) => "llm_timeout",
            LlmError::RateLimited(_) => "llm_rate_limited",
            LlmError::Server(_) => "llm_server_error",
            LlmError::Refused { .. } => "llm_refused",
            LlmError::Connection(_) => "llm_connection",
            LlmError::NoContent => "llm_no_content",
            LlmError::BadResponse(_) => "llm_bad_response",
            LlmError::TooLarge(_) => "llm_too_large",
            LlmError::BadRequest(_) => "llm_bad_request",
        }
    }
}

/// Ask an instructor (LLM or offline) to complete a prompt.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<Reply, LlmError>")]
pub struct Complete(pub Prompt);

/// Ask the PromptActor for a chain-of-thought prompt.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<Prompt, String>")]
pub struct RenderCot {
    pub memory: MemoryView,
    pub request_id: u64,
}

/// Ask the PromptActor for one tree-of-thought proposal prompt: `alternatives` distinct
/// decisions for node `node` given `partial`.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<Prompt, String>")]
pub struct RenderTotStep {
    pub memory: MemoryView,
    pub node: usize,
    pub partial: Vec<EdgeSpec>,
    pub alternatives: usize,
    pub request_id: u64,
    /// Index of the beam entry this expands (decorrelates the requests of one depth).
    pub branch: usize,
}

/// Most evaluated designs a value prompt quotes as evidence about one partial design: the best
/// few say what the partial design can reach, and the count says how well it is explored.
pub const EVIDENCE_QUOTED: usize = 5;

/// One partial design put to the value step, with what is known about it.
#[derive(Debug, Clone, PartialEq)]
pub struct ThoughtCase {
    pub partial: Vec<EdgeSpec>,
    /// The idea the proposal step gave for its last decision.
    pub idea: String,
    /// Evidence from the memory bank: the best (at most [`EVIDENCE_QUOTED`]) evaluated designs
    /// that contain this partial design, with their scores (empty when none does).
    pub evidence: Vec<String>,
    /// How many evaluated designs contain it in all (`evidence` quotes the best of them).
    pub matched: usize,
    /// Whether completing it exactly as it stands gives a design already evaluated.
    pub known_if_complete: bool,
}

/// Ask the PromptActor for a tree-of-thought value prompt over `cases`.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<Prompt, String>")]
pub struct RenderTotValue {
    pub memory: MemoryView,
    pub node: usize,
    pub cases: Vec<ThoughtCase>,
    pub request_id: u64,
    pub branch: usize,
}

/// Ask the PromptActor for a repair prompt: the original conversation plus the error.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<Prompt, String>")]
pub struct RenderRepair {
    pub previous: Prompt,
    pub reply: String,
    pub error: String,
}

/// Ask the ParserActor to turn a reply into a validated, canonical, new architecture. An
/// accepted architecture is reserved (in flight) in the known set.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<Parsed, Rejection>")]
pub struct ParseArch {
    pub reply: String,
}

/// An architecture the parser accepted, with the reasoning its reply gave (when it gave any),
/// both read in one pass over the reply.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub arch: Arch,
    pub reasoning: Option<String>,
}

/// Why the parser refused a reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Rejection {
    /// Unusable reply: a repair may help.
    Invalid(ParseError),
    /// A valid design already evaluated or in flight. `nearest` is the first unexplored
    /// design one change away (JSON), offered in the repair turn.
    Duplicate {
        hash: String,
        summary: String,
        nearest: Option<String>,
        /// The design (canonical), when the reply was a whole one (boxed: a rejection travels
        /// in every parser reply).
        design: Option<Box<ArchSpec>>,
    },
    /// A tree-of-thought alternative that repeats an earlier one of the same reply (1-based).
    Repeated { alternative: usize },
}

impl Rejection {
    pub fn kind(&self) -> &'static str {
        match self {
            Rejection::Invalid(e) => e.kind(),
            Rejection::Duplicate { .. } => "duplicate",
            Rejection::Repeated { .. } => "repeated_alternative",
        }
    }
    pub fn message(&self) -> String {
        match self {
            Rejection::Invalid(e) => e.to_string(),
            Rejection::Duplicate {
                hash,
                summary,
                nearest,
                ..
            } => {
                let mut m = format!(
                    "this architecture ({summary}, hash {hash}) was already evaluated or is being \
                     evaluated; propose a different one"
                );
                if let Some(n) = nearest {
                    m.push_str(&format!(
                        ". The nearest unexplored variation (one change away) is {n}; take it, or \
                         change something else"
                    ));
                }
                m
            }
            Rejection::Repeated { alternative } => format!(
                "alternative {alternative} repeats an earlier alternative; the alternatives must \
                 differ"
            ),
        }
    }
}

/// Ask the ParserActor for the alternatives of one tree-of-thought proposal step: each valid
/// and distinct alternative becomes a thought, the others are listed as rejections. An error
/// when no alternative at all could be read.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<StepThoughts, Rejection>")]
pub struct ParseStep {
    pub reply: String,
    pub node: usize,
}

/// What one tree-of-thought proposal reply gave.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepThoughts {
    pub thoughts: Vec<ists::parse::Thought>,
    pub rejected: Vec<Rejection>,
}

/// Ask an EvaluatorActor to run the proxy on a candidate.
#[derive(Message, Debug, Clone)]
#[rtype(result = "EvalOutcome")]
pub struct Evaluate {
    pub candidate: usize,
    pub arch: Arch,
    /// Proxy steps for a promotion to a higher rung (None = the configured proxy).
    pub steps: Option<usize>,
}

/// What an evaluator returns. Divergence and timeouts are reports; `Failed` is an evaluator
/// fault (the evaluator restarts itself after it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum EvalOutcome {
    Report(ProxyReport),
    Failed { kind: String, message: String },
}

/// Ask the MemoryActor for a snapshot to build prompts from.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "MemoryView")]
pub struct GetMemory;

/// A read-only snapshot of the memory bank. The entry lists are shared with the MemoryActor
/// (which rebuilds them only when the bank changes), so a snapshot copies no entries.
#[derive(Debug, Clone)]
pub struct MemoryView {
    /// The rendered memory section (already trimmed to the token budget).
    pub rendered: String,
    pub count: usize,
    /// The best `memory.top` (at least 5) scored entries, best first.
    pub best: Arc<Vec<MemoryEntry>>,
    /// Every scored entry, best first: the evidence the tree-of-thought value step is given
    /// and the evaluation times the operator costs are measured from.
    pub all: Arc<Vec<MemoryEntry>>,
    /// The designs a new proposal must not repeat, most telling first: those in flight (known
    /// but not yet in the memory), then those the memory section lists (before any trimming),
    /// the best `memory.top` and the `memory.recent` most recent not among them.
    pub avoid: Vec<ArchSpec>,
    pub known: KnownSet,
    pub stage: Stage,
}

/// Record an evaluated (or failed) candidate: appended to the journal and flushed before the
/// reply, so an acknowledged result survives a kill.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<bool, String>")]
pub struct Record(pub MemoryEntry);

/// Release a reservation of a candidate that will not be recorded.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct Release(pub String);

/// Something that happened in a search, in order. See [`crate::events`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Started {
        run_dir: String,
        budget: usize,
        resumed: usize,
    },
    Proposed {
        proposal: usize,
        mode: String,
    },
    Parsed {
        proposal: usize,
        hash: String,
        summary: String,
        /// The instructor's reasoning for this design, when it wrote any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reasoning: Option<String>,
    },
    Rejected {
        proposal: usize,
        kind: String,
        reason: String,
        repair: bool,
    },
    Evaluated {
        candidate: usize,
        hash: String,
        score: Option<f64>,
        status: EvalStatus,
        seconds: f64,
    },
    /// A candidate among the best of its rung is trained again with more steps.
    Promoting {
        candidate: usize,
        hash: String,
        rung: usize,
        steps: usize,
    },
    /// The result of a promotion (recorded in the journal and the memory bank, which ranks it
    /// by this higher rung).
    Promoted {
        candidate: usize,
        hash: String,
        rung: usize,
        steps: usize,
        score: Option<f64>,
        status: EvalStatus,
        seconds: f64,
    },
    /// An evaluator fault (candidate recorded as failed) or an abandoned proposal
    /// (`candidate` None).
    Failed {
        candidate: Option<usize>,
        proposal: Option<usize>,
        kind: String,
        reason: String,
    },
    StageSwitched {
        from: Stage,
        to: Stage,
        after: usize,
    },
    NewBest {
        candidate: usize,
        score: f64,
    },
    Tokens {
        usage: Usage,
    },
    Finished {
        evaluated: usize,
        best: Option<f64>,
    },
}

/// An event with its sequence number (dense from 1 within a search).
#[derive(Message, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[rtype(result = "()")]
pub struct EventMsg {
    pub seq: u64,
    pub event: Event,
}

/// Publish an event on the bus.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct Publish(pub Event);

/// Subscribe to every event published after this.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct Subscribe(pub Recipient<EventMsg>);

/// Ask the bus to deliver everything pending; replies when done (used before shutdown).
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "u64")]
pub struct Flush;

/// The search finished (or stopped); carries the summary.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct SearchDone(pub crate::run::summary::Summary);

/// Ask the StageActor to stop proposing and drain (graceful shutdown).
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct Drain;

/// Ask an EvaluatorActor to train a candidate fully (end of search).
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<FinalTrained, String>")]
pub struct TrainFinal {
    pub candidate: usize,
    pub arch: Arch,
    pub config: ists::train::TrainConfig,
    /// The final model's widths (`final.model`, else the evaluator's proxy widths).
    pub model: Option<ists::model::ModelConfig>,
    /// The search's cancellation, set by the evaluator pool under the daemon: training stops at
    /// its next step.
    pub cancel: Option<crate::eval::cancel::Cancel>,
    /// Save the trained model here (architecture, sizes, safetensors weights).
    pub export: Option<std::path::PathBuf>,
    /// Also return the trained model's validation and test forecasts (`final.ensemble`).
    pub forecasts: bool,
    /// The report of this very training, finished by an earlier session of the run, whose
    /// model is already exported to `export`: the evaluator loads that model for its forecasts
    /// instead of training (sent only when forecasts are asked for).
    pub kept: Option<ists::train::TrainReport>,
    /// Keep the training's state here after every epoch, and resume from it if an earlier
    /// session left it ([`ists::checkpoint`]).
    pub checkpoint: Option<ists::checkpoint::Checkpoint>,
}

/// A final training's outcome: its report and, when asked for and the training kept weights,
/// the model's forecasts (on the CPU) for the ensemble of the candidate's seeds.
#[derive(Debug)]
pub struct FinalTrained {
    pub report: ists::train::TrainReport,
    pub forecasts: Option<ists::ensemble::Forecasts>,
}

/// Ask a daemon's store writer to catch up with the search's journal. It replies once every
/// event sent to it before this one is stored (its mailbox is in order), so the caller may then
/// mark the search finished without an SSE client missing the last events.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct SyncStore;

/// Ask the daemon's search manager to run (or resume) a search already stored as queued.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<(), String>")]
pub struct StartSearch {
    pub id: String,
    pub settings: ists::config::Settings,
}

/// Ask the search manager to cancel a search; replies whether it was queued or running.
#[derive(Message, Debug, Clone)]
#[rtype(result = "bool")]
pub struct CancelSearch {
    pub id: String,
}

/// A search task ended (sent by the task to the search manager).
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct SearchEnded {
    pub id: String,
}

/// Ask the search manager to cancel the evaluations of every search it runs (the daemon's
/// shutdown grace is over): they stop at their next training step and are not recorded.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct CancelAll;

/// Ask the search manager to drain every search (in-flight evaluations finish and are recorded;
/// the searches stay unfinished and resume at the next start) and reply when all have stopped.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct StopSearches;
