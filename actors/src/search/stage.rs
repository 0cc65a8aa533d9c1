//! StageActor: drives the search. It keeps the pipeline full (proposals are generated while
//! evaluators work, up to `search.in_flight` candidates ahead), runs chain-of-thought or
//! tree-of-thought proposals with repairs, sends candidates to the least-loaded evaluator,
//! records results, promotes the best candidates to longer trainings (successive-halving rungs,
//! `search.rungs`), switches from exploration to optimization (published as an event), and at
//! the end trains the top candidates fully and hands the summary back. A resumed search starts
//! from its journal replayed in order (`replay`), so it goes on where the killed one stopped.
//!
//! Longer than the ~400 lines aimed at, on purpose: what remains here is one state machine
//! (the counts of proposals, evaluations and promotions in flight, the step budget committed,
//! draining) whose invariants hold across every handler; the work each step does already lives
//! beside it (`propose`, `tot`, `evaluate`).

use super::evaluate::{evaluate, final_training, Job};
use super::propose::{cot_proposal, Proposal};
use super::tot::tot_proposal;
use crate::eval::evaluator::EvaluatorPool;
use crate::messages::*;
use crate::run::dir::RunDir;
use crate::run::summary::{Best, Summary};
use actix::prelude::*;
use ists::config::{Mode, Settings};
use ists::memory::{MemoryEntry, Stage};
use ists::rungs::{Ladder, Promotion};
use ists::space::Arch;
use ists::train::EvalStatus;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::oneshot;

/// The collaborators of the StageActor, as recipients (only the supervisor names actors).
#[derive(Clone)]
pub struct Wiring {
    pub render_cot: Recipient<RenderCot>,
    pub render_step: Recipient<RenderTotStep>,
    pub render_value: Recipient<RenderTotValue>,
    pub render_repair: Recipient<RenderRepair>,
    pub llm: Recipient<Complete>,
    /// Proposes when the LLM fails to (`search.fallback`); None with the offline backend.
    pub fallback: Option<Recipient<Complete>>,
    pub parse_arch: Recipient<ParseArch>,
    pub parse_step: Recipient<ParseStep>,
    pub get_memory: Recipient<GetMemory>,
    pub record: Recipient<Record>,
    pub release: Recipient<Release>,
    pub bus: Recipient<Publish>,
    pub evaluators: EvaluatorPool,
    pub run: Arc<RunDir>,
    /// Turns of chain-of-thought proposals at the LLM: as many as it serves at once. A
    /// proposal renders its prompt once it has a turn, so it sees (and rules out) the designs
    /// the proposals before it gave, instead of racing them to the same design.
    pub cot_turns: Arc<tokio::sync::Semaphore>,
    /// Designs the model gave again although they were known, most recent first (at most
    /// [`REPEATED_KEPT`]): its favourites, ruled out of every later chain-of-thought reply even
    /// when the memory section no longer lists them.
    pub repeated: Arc<std::sync::Mutex<Vec<ists::space::ArchSpec>>>,
    /// Final trainings shared between searches ([`crate::SearchOptions::finals`]).
    pub finals: Option<std::path::PathBuf>,
}

/// How many repeated designs [`Wiring::repeated`] keeps.
pub const REPEATED_KEPT: usize = 4;

impl Wiring {
    pub(super) fn publish(&self, e: Event) {
        self.bus.do_send(Publish(e));
    }
}

pub struct StageActor {
    w: Wiring,
    settings: Arc<Settings>,
    stage: Stage,
    /// Distinct candidates evaluated (promotions are not candidates).
    evaluated: usize,
    in_eval: usize,
    /// Promotions being evaluated.
    promoting: usize,
    proposing: usize,
    ladder: Ladder,
    /// Optimizer steps of every evaluation launched or done, resumed ones included (against
    /// `search.budget_steps`; a proposal reserves its candidates' proxy steps).
    steps_committed: u64,
    /// Architectures that may be promoted, by hash.
    climbers: HashMap<String, Arch>,
    next_candidate: usize,
    next_proposal: usize,
    since_best: usize,
    summary: Summary,
    draining: bool,
    finished: bool,
    started: Instant,
    done: Option<oneshot::Sender<Summary>>,
}

impl StageActor {
    /// `resumed` are the journal entries of an earlier run of the same search, `r` what
    /// [`replay`] made of them.
    pub(super) fn new(
        w: Wiring,
        settings: Arc<Settings>,
        resumed: &[MemoryEntry],
        r: Replay,
        summary: Summary,
        done: oneshot::Sender<Summary>,
    ) -> StageActor {
        let s = &settings.search;
        let mut ladder = Ladder::new(s.rungs.clone());
        let mut climbers = HashMap::new();
        for e in resumed {
            ladder.record(e.id, &e.hash, e.rung, e.score);
            if let Ok(a) = Arch::from_spec(&e.arch, s.space) {
                climbers.insert(e.hash.clone(), a);
            }
        }
        let mut summary = summary;
        summary.evaluated = r.evaluated;
        summary.resumed = r.evaluated;
        // The compute already spent counts toward the step budget and the stage switch.
        summary.eval_steps = r.steps;
        summary.eval_seconds = r.seconds;
        for e in resumed {
            if e.rung == 0 {
                count_status(&mut summary, &e.status);
            } else {
                summary.promotions += 1;
            }
        }
        summary.best = r.best;
        summary.stage_switch_after = r.switch_after;
        summary.stage = Some(r.stage);
        StageActor {
            next_candidate: resumed.iter().map(|e| e.id + 1).max().unwrap_or(0),
            w,
            settings,
            stage: r.stage,
            evaluated: r.evaluated,
            in_eval: 0,
            promoting: 0,
            proposing: 0,
            steps_committed: r.steps,
            ladder,
            climbers,
            next_proposal: r.next_proposal,
            since_best: r.since_best,
            summary,
            draining: false,
            finished: false,
            started: Instant::now(),
            done: Some(done),
        }
    }

    fn budget(&self) -> usize {
        self.settings.search.budget
    }

    /// Proxy steps of an evaluation at `rung`.
    fn rung_steps(&self, rung: usize) -> u64 {
        let s = &self.settings;
        s.search.rungs.steps(s.proxy.steps, rung) as u64
    }

    /// Whether the step budget affords one more evaluation at a rung (detached from `self`, for
    /// the ladder): within the budget less the reserve
    /// ([`ists::rungs::RungSettings::reserve`]) until the end game, within all of it then.
    fn fits(&self) -> impl Fn(usize) -> bool {
        let (s, committed) = (&self.settings, self.steps_committed);
        let budget = if self.end_game() {
            s.search.budget_steps
        } else {
            self.open_budget()
        };
        let (rungs, proxy) = (s.search.rungs.clone(), s.proxy.steps);
        let out_of_time = self.out_of_time();
        move |rung| {
            !out_of_time && affordable(budget, committed, rungs.steps(proxy, rung) as u64) > 0
        }
    }

    /// The step budget outside the end game: `search.budget_steps` less the reserve (0, no
    /// step budget, stays 0; validation keeps a reserve below the budget).
    fn open_budget(&self) -> u64 {
        let s = &self.settings;
        let reserve = s.search.rungs.reserve_steps(s.proxy.steps);
        match s.search.budget_steps {
            0 => 0,
            b => b.saturating_sub(reserve).max(1),
        }
    }

    /// No new candidate may start (the candidate cap, the budget less the reserve, or the
    /// seconds budget is reached).
    fn no_more_candidates(&self) -> bool {
        self.evaluated + self.in_eval + self.proposing >= self.budget()
            || self.affordable(self.rung_steps(0)) == 0
            || self.out_of_time()
    }

    /// The end game of a search that keeps a reserve: no new candidate may start and none is
    /// still being proposed or scored by the proxy, so the reserve goes to promotions, and the
    /// best of the last candidates is among those that can still climb.
    fn end_game(&self) -> bool {
        self.settings.search.rungs.reserve
            && self.in_eval == 0
            && self.proposing == 0
            && self.no_more_candidates()
    }

    /// Whether `search.budget_seconds` is set and spent by the evaluations recorded so far.
    fn out_of_time(&self) -> bool {
        self.settings
            .search
            .seconds_spent(self.summary.eval_seconds)
    }

    /// How many more new candidates of `steps` steps the step budget allows (less the reserve).
    fn affordable(&self, steps: u64) -> u64 {
        affordable(self.open_budget(), self.steps_committed, steps)
    }

    /// Starts promotions, then proposals, while there is budget and pipeline room. Promotions
    /// go first: the best candidates so far get their longer training before new ones.
    fn fill(&mut self, ctx: &mut Context<Self>) {
        let settings = self.settings.clone();
        let s = &settings.search;
        let depth = s.in_flight.max(self.w.evaluators.len());
        while !self.draining
            && self.summary.stopped.is_none()
            && self.in_eval + self.promoting + self.proposing < depth
        {
            let fits = self.fits();
            let next = if self.end_game() {
                self.ladder.next_leftover(fits)
            } else {
                self.ladder.next_promotion(fits)
            };
            let Some(p) = next else {
                break;
            };
            self.promote(p, ctx);
        }
        let proxy_steps = self.rung_steps(0);
        while !self.draining && self.summary.stopped.is_none() {
            if self.no_more_candidates() || self.in_eval + self.promoting + self.proposing >= depth
            {
                break;
            }
            let committed = self.evaluated + self.in_eval + self.proposing;
            let affordable = self.affordable(proxy_steps);
            let slots = match s.mode {
                Mode::Cot => 1,
                Mode::Tot => s.tot.beam.min(self.budget() - committed),
            }
            .min(affordable.min(usize::MAX as u64) as usize);
            self.proposing += slots;
            self.steps_committed += slots as u64 * proxy_steps;
            let proposal = self.next_proposal;
            self.next_proposal += 1;
            // Numbered over the whole search, not per session, so that a resumed search's
            // seeded instructor draws what the uninterrupted search would have. The 1 << 40
            // is the first session's number as builds before this put it in every request:
            // an uninterrupted search draws exactly as it did with them, so the committed
            // rows of earlier builds repeat.
            let request_base = 1 << 40 | (proposal as u64) << 16;
            self.w.publish(Event::Proposed {
                proposal,
                mode: s.mode.name().to_string(),
            });
            let w = self.w.clone();
            let settings = self.settings.clone();
            let fut = async move {
                match settings.search.mode {
                    Mode::Cot => cot_proposal(&w, &settings, proposal, request_base).await,
                    Mode::Tot => tot_proposal(&w, &settings, proposal, request_base).await,
                }
            };
            ctx.spawn(
                fut.into_actor(self)
                    .map(move |p, act, ctx| act.on_proposal(p, slots, proposal, ctx)),
            );
        }
    }

    fn on_proposal(&mut self, p: Proposal, slots: usize, proposal: usize, ctx: &mut Context<Self>) {
        self.proposing -= slots;
        let (usage, failed) = (p.stats.usage, p.stats.failed);
        p.stats.add_to(&mut self.summary);
        let sm = &mut self.summary;
        if usage != Usage::default() {
            self.w.publish(Event::Tokens { usage });
        }
        if failed {
            sm.failed_proposals += 1;
            if sm.failed_proposals >= self.settings.search.max_failures {
                sm.stopped = Some(format!(
                    "{} proposals failed (search.max_failures)",
                    sm.failed_proposals
                ));
            }
        }
        let proxy_steps = self.rung_steps(0);
        // The proposal reserved the steps of `slots` candidates: beyond those, only what the
        // step budget still affords is taken.
        let extra = usize::try_from(self.affordable(proxy_steps)).unwrap_or(usize::MAX);
        // Under a seconds budget that ran out while the proposal was made, nothing starts.
        let room = if self.out_of_time() {
            0
        } else {
            self.budget()
                .saturating_sub(self.evaluated + self.in_eval + self.proposing)
                .min(slots.saturating_add(extra))
        };
        let used = if self.draining {
            0
        } else {
            p.candidates.len().min(room)
        };
        self.steps_committed =
            self.steps_committed + used as u64 * proxy_steps - slots as u64 * proxy_steps;
        let shares = split_usage(usage, p.candidates.len().min(room));
        for (i, super::propose::Candidate { arch, reasoning }) in
            p.candidates.into_iter().enumerate()
        {
            if i >= room || self.draining {
                self.w.release.do_send(Release(arch.hash()));
                continue;
            }
            let candidate = self.next_candidate;
            self.next_candidate += 1;
            self.in_eval += 1;
            self.summary.candidate_usage.insert(candidate, shares[i]);
            self.w.publish(Event::Parsed {
                proposal,
                hash: arch.hash(),
                summary: arch.summary(),
                reasoning: reasoning.clone(),
            });
            self.climbers.insert(arch.hash(), arch.clone());
            let w = self.w.clone();
            let stage = self.stage;
            let job = Job {
                candidate,
                arch,
                stage,
                rung: 0,
                steps: None,
                reasoning,
                proposal: Some(proposal),
            };
            let fut = async move { evaluate(&w, job).await };
            ctx.spawn(
                fut.into_actor(self)
                    .map(|r, act, ctx| act.on_evaluated(r, 0, ctx)),
            );
        }
        self.fill(ctx);
        self.maybe_finish(ctx);
    }

    /// Evaluates a promoted candidate at its next rung (more proxy steps).
    fn promote(&mut self, p: Promotion, ctx: &mut Context<Self>) {
        let Some(arch) = self.climbers.get(&p.hash).cloned() else {
            // Not rebuildable (a journal from another space): never offered again.
            self.ladder.record(p.id, &p.hash, p.rung, None);
            return;
        };
        let steps = self.rung_steps(p.rung) as usize;
        self.promoting += 1;
        self.steps_committed += steps as u64;
        self.w.publish(Event::Promoting {
            candidate: p.id,
            hash: p.hash.clone(),
            rung: p.rung,
            steps,
        });
        let w = self.w.clone();
        let job = Job {
            candidate: p.id,
            arch,
            stage: self.stage,
            rung: p.rung,
            steps: Some(steps),
            // The memory bank keeps the proposal's reasoning across promotions.
            reasoning: None,
            proposal: None,
        };
        let rung = p.rung;
        let fut = async move { evaluate(&w, job).await };
        ctx.spawn(
            fut.into_actor(self)
                .map(move |r, act, ctx| act.on_evaluated(r, rung, ctx)),
        );
    }

    fn on_evaluated(
        &mut self,
        r: Result<(MemoryEntry, Option<String>), String>,
        rung: usize,
        ctx: &mut Context<Self>,
    ) {
        if rung == 0 {
            self.in_eval -= 1;
        } else {
            self.promoting -= 1;
        }
        match r {
            Err(e) => {
                // The journal could not be written: stop rather than run on without durability.
                tracing::error!("recording failed: {e}");
                self.summary.stopped = Some(format!("journal write failed: {e}"));
            }
            Ok((entry, retried)) if rung > 0 => {
                self.ladder.record(entry.id, &entry.hash, rung, entry.score);
                self.summary.promotions += 1;
                self.summary.eval_steps += entry.steps as u64;
                self.summary.eval_seconds += entry.seconds.max(0.0);
                if let Some(kind) = retried {
                    self.summary.eval_retries += 1;
                    *self.summary.retried_faults.entry(kind).or_default() += 1;
                }
                self.maybe_switch();
                self.w.publish(Event::Promoted {
                    candidate: entry.id,
                    hash: entry.hash.clone(),
                    rung,
                    steps: entry.steps,
                    score: entry.score,
                    status: entry.status.clone(),
                    seconds: entry.seconds,
                });
                self.note_best(&entry);
            }
            Ok((entry, retried)) => {
                self.ladder.record(entry.id, &entry.hash, 0, entry.score);
                self.evaluated += 1;
                self.summary.evaluated = self.evaluated;
                self.summary.eval_steps += entry.steps as u64;
                self.summary.eval_seconds += entry.seconds.max(0.0);
                if let Some(kind) = retried {
                    self.summary.eval_retries += 1;
                    *self.summary.retried_faults.entry(kind).or_default() += 1;
                }
                count_status(&mut self.summary, &entry.status);
                match &entry.status {
                    EvalStatus::Failed { kind, message } => self.w.publish(Event::Failed {
                        candidate: Some(entry.id),
                        proposal: None,
                        kind: kind.clone(),
                        reason: message.clone(),
                    }),
                    status => self.w.publish(Event::Evaluated {
                        candidate: entry.id,
                        hash: entry.hash.clone(),
                        score: entry.score,
                        status: status.clone(),
                        seconds: entry.seconds,
                    }),
                }
                if self.note_best(&entry) {
                    self.since_best = 0;
                } else {
                    self.since_best += 1;
                }
                self.maybe_switch();
            }
        }
        self.fill(ctx);
        self.maybe_finish(ctx);
    }

    /// Makes `entry` the best if it beats it (a higher rung, or the same rung and a lower
    /// score); publishes and writes `best.json` when it does.
    fn note_best(&mut self, entry: &MemoryEntry) -> bool {
        if !beats(entry, self.summary.best.as_ref()) {
            return false;
        }
        let best = Best::of(entry);
        self.w.publish(Event::NewBest {
            candidate: best.candidate,
            score: best.score,
        });
        self.summary.best = Some(best);
        let _ = self.w.run.write_json("best.json", &self.summary.best);
        true
    }

    /// The task-level switch: after the exploration share of the budget, or on a plateau.
    fn maybe_switch(&mut self) {
        let s = &self.settings.search;
        if self.stage != Stage::Exploration || s.exploration_share >= 1.0 {
            return;
        }
        let plateau = s.plateau;
        if s.exploration_done(
            self.evaluated,
            self.summary.eval_steps,
            self.summary.eval_seconds,
        ) || (plateau > 0 && self.since_best >= plateau)
        {
            self.stage = Stage::Optimization;
            self.summary.stage = Some(self.stage);
            self.summary.stage_switch_after = Some(self.evaluated);
            self.w.publish(Event::StageSwitched {
                from: Stage::Exploration,
                to: Stage::Optimization,
                after: self.evaluated,
            });
        }
    }

    fn maybe_finish(&mut self, ctx: &mut Context<Self>) {
        // With the budget spent, promotions still waiting are run before the end.
        let fits = self.fits();
        let waiting = if self.end_game() {
            self.ladder.leftover_pending(fits)
        } else {
            self.ladder.pending(fits)
        };
        let done_work = (self.no_more_candidates() && !waiting)
            || self.draining
            || self.summary.stopped.is_some();
        let busy = self.in_eval + self.promoting + self.proposing > 0;
        if self.finished || !done_work || busy {
            return;
        }
        self.finished = true;
        let w = self.w.clone();
        let settings = self.settings.clone();
        let mut summary = self.summary.clone();
        if self.draining && summary.stopped.is_none() {
            summary.stopped = Some("drained on shutdown".into());
        }
        let train_final = !self.draining;
        let started = self.started;
        let fut = async move {
            if train_final {
                final_training(&w, &settings, &mut summary).await;
            }
            summary.seconds += started.elapsed().as_secs_f64();
            summary.cost_usd = settings.llm.prices.get(&settings.llm.model).map(|p| {
                let u = summary.usage;
                p.cost(u.prompt_tokens, u.completion_tokens, u.cached_tokens)
            });
            let _ = w.run.write_json("summary.json", &summary);
            w.publish(Event::Finished {
                evaluated: summary.evaluated,
                best: summary.best.as_ref().map(|b| b.score),
            });
            summary
        };
        ctx.spawn(fut.into_actor(self).map(|summary, act, ctx| {
            if let Some(tx) = act.done.take() {
                let _ = tx.send(summary);
            }
            ctx.stop();
        }));
    }
}

/// Evaluations of `steps` steps that fit in a step budget of which `committed` is spent or
/// reserved (a budget of 0 is no limit).
fn affordable(budget: u64, committed: u64, steps: u64) -> u64 {
    match budget {
        0 => u64::MAX,
        b => b.saturating_sub(committed) / steps.max(1),
    }
}

/// The state a resumed search stopped in, found by replaying its journal entry by entry as
/// [`StageActor`] recorded them: the stage and when it switched (by the share of the budget
/// or on a plateau, as [`StageActor::maybe_switch`] decides), the best entry, the candidates
/// since it, and the next proposal's number. A resumed search then goes on as the
/// uninterrupted one would have, rather than from a state rebuilt by totals.
pub(super) struct Replay {
    pub stage: Stage,
    /// Candidates evaluated when the stage switched (None: still exploring).
    pub switch_after: Option<usize>,
    /// Distinct candidates (a promoted one has a journal line per rung).
    pub evaluated: usize,
    pub best: Option<Best>,
    /// Candidates evaluated since the best last changed (the plateau rule's count).
    pub since_best: usize,
    /// After the last proposal recorded ([`MemoryEntry::proposal`]); after the last candidate
    /// for journals that did not record proposals (one proposal a candidate, as a
    /// chain-of-thought search makes them).
    pub next_proposal: usize,
    /// Optimizer steps and seconds of every evaluation in the journal.
    pub steps: u64,
    pub seconds: f64,
}

pub(super) fn replay(resumed: &[MemoryEntry], s: &ists::config::SearchSettings) -> Replay {
    let mut r = Replay {
        stage: Stage::Exploration,
        switch_after: None,
        evaluated: 0,
        best: None,
        since_best: 0,
        next_proposal: 0,
        steps: 0,
        seconds: 0.0,
    };
    let mut seen = std::collections::HashSet::new();
    let mut last_proposal = None;
    for e in resumed {
        r.steps += e.steps as u64;
        r.seconds += e.seconds.max(0.0);
        let first = seen.insert(e.hash.as_str());
        if first {
            r.evaluated += 1;
        }
        let better = beats(e, r.best.as_ref());
        if better {
            r.best = Some(Best::of(e));
        }
        if e.rung == 0 {
            r.since_best = if better { 0 } else { r.since_best + 1 };
        }
        last_proposal = last_proposal.max(e.proposal);
        if r.stage == Stage::Exploration
            && s.exploration_share < 1.0
            && (s.exploration_done(r.evaluated, r.steps, r.seconds)
                || (s.plateau > 0 && r.since_best >= s.plateau))
        {
            r.stage = Stage::Optimization;
            r.switch_after = Some(r.evaluated);
        }
    }
    r.next_proposal = match last_proposal {
        Some(p) => p + 1,
        None => resumed.iter().map(|e| e.id + 1).max().unwrap_or(0),
    };
    r
}

/// Whether `e` beats the best so far: a score at a higher rung, or a lower score at the same.
fn beats(e: &MemoryEntry, best: Option<&Best>) -> bool {
    match (e.score, best) {
        (None, _) => false,
        (Some(_), None) => true,
        (Some(s), Some(b)) => e.rung > b.rung || (e.rung == b.rung && s < b.score),
    }
}

/// `u` split into `n` near-equal parts (the remainder goes to the first ones).
fn split_usage(u: Usage, n: usize) -> Vec<Usage> {
    let n64 = n.max(1) as u64;
    let part = |x: u64, i: usize| x / n64 + u64::from((i as u64) < x % n64);
    (0..n)
        .map(|i| Usage {
            prompt_tokens: part(u.prompt_tokens, i),
            completion_tokens: part(u.completion_tokens, i),
            cached_tokens: part(u.cached_tokens, i),
        })
        .collect()
}

fn count_status(s: &mut Summary, status: &EvalStatus) {
    match status {
        EvalStatus::Diverged { .. } => s.diverged += 1,
        EvalStatus::TimedOut { .. } => s.timed_out += 1,
        EvalStatus::Failed { kind, .. } => *s.eval_failures.entry(kind.clone()).or_default() += 1,
        EvalStatus::Ok => {}
    }
}

impl Actor for StageActor {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Context<Self>) {
        self.w.publish(Event::Started {
            run_dir: self.w.run.path.display().to_string(),
            budget: self.budget(),
            resumed: self.evaluated,
        });
        self.maybe_switch();
        self.fill(ctx);
        self.maybe_finish(ctx);
    }
}

impl Handler<Drain> for StageActor {
    type Result = ();
    fn handle(&mut self, _: Drain, ctx: &mut Context<Self>) {
        self.draining = true;
        self.maybe_finish(ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::memory::scored_entry;
    use rand::SeedableRng;

    /// A journal of `scores` (rung 0, one candidate a proposal, proposals recorded or not).
    fn journal(scores: &[f64], proposals: bool) -> Vec<MemoryEntry> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let hs = ists::hyper::HyperSpace::default();
        scores
            .iter()
            .enumerate()
            .map(|(i, &score)| {
                let a = Arch::sample_in(ists::space::SpaceKind::Ists, &hs, &mut rng);
                let mut e = scored_entry(i, &a, score);
                e.proposal = proposals.then_some(2 * i);
                e
            })
            .collect()
    }

    /// The replay switches where the search switched: on a plateau (the count of candidates
    /// since the best, which a resumed search carries on), or at the exploration share.
    #[test]
    fn the_replay_finds_the_switch_the_best_and_the_next_proposal() {
        let mut s = ists::config::SearchSettings {
            budget: 100,
            exploration_share: 0.5,
            ..Default::default()
        };
        // Best at candidate 1, then three candidates that do not beat it.
        let j = journal(&[3.0, 1.0, 2.0, 2.5, 1.5], true);
        let r = replay(&j, &s);
        assert_eq!(
            (r.stage, r.switch_after, r.evaluated),
            (Stage::Exploration, None, 5)
        );
        assert_eq!(r.since_best, 3);
        assert_eq!(r.best.map(|b| b.candidate), Some(1));
        assert_eq!(r.next_proposal, 9, "after the last proposal recorded");
        s.plateau = 2;
        let r = replay(&j, &s);
        assert_eq!((r.stage, r.switch_after), (Stage::Optimization, Some(4)));
        s.plateau = 0;
        s.budget = 8;
        let r = replay(&j, &s);
        assert_eq!((r.stage, r.switch_after), (Stage::Optimization, Some(4)));
        // A random search (the whole budget exploring) never switches.
        s.exploration_share = 1.0;
        assert_eq!(replay(&j, &s).stage, Stage::Exploration);
        // A journal without proposals: one a candidate.
        assert_eq!(replay(&journal(&[3.0, 1.0], false), &s).next_proposal, 2);
        assert_eq!(replay(&[], &s).next_proposal, 0);
    }
}
