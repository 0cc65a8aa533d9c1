//! StageActor: drives the search. It keeps the pipeline full (proposals are generated while
//! evaluators work, up to `search.in_flight` candidates ahead), runs chain-of-thought or
//! tree-of-thought proposals with repairs, sends candidates to the least-loaded evaluator,
//! records results, switches from exploration to optimization (published as an event), and at
//! the end trains the top candidates fully and hands the summary back.

use crate::eval::evaluator::EvaluatorPool;
use crate::messages::*;
use crate::run::dir::RunDir;
use crate::run::summary::{Best, FinalResult, Summary};
use actix::prelude::*;
use futures::stream::{self, StreamExt};
use ists::config::{Mode, Settings};
use ists::memory::{MemoryEntry, Stage};
use ists::space::{Arch, ArchSpec, EdgeSpec};
use ists::train::EvalStatus;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::oneshot;

/// The collaborators of the StageActor, as recipients (only the supervisor names actors).
#[derive(Clone)]
pub struct Wiring {
    pub render_cot: Recipient<RenderCot>,
    pub render_step: Recipient<RenderTotStep>,
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
}

impl Wiring {
    fn publish(&self, e: Event) {
        self.bus.do_send(Publish(e));
    }
}

/// What one proposal task did, merged into the summary by the actor.
#[derive(Default)]
struct ProposalStats {
    requests: usize,
    replies: usize,
    rejected: Vec<String>,
    repairs: usize,
    llm_errors: Vec<String>,
    retries: Vec<String>,
    llm_seconds: f64,
    usage: Usage,
    failed: bool,
    fallback: bool,
}

impl ProposalStats {
    fn merge(&mut self, o: ProposalStats) {
        self.requests += o.requests;
        self.replies += o.replies;
        self.repairs += o.repairs;
        self.rejected.extend(o.rejected);
        self.llm_errors.extend(o.llm_errors);
        self.retries.extend(o.retries);
        self.llm_seconds += o.llm_seconds;
        self.usage += o.usage;
    }

    /// Counts a reply the parser rejected and publishes it; `repair` says whether the LLM is
    /// asked again for this proposal.
    fn reject(&mut self, w: &Wiring, proposal: usize, rej: &Rejection, repair: bool) {
        self.rejected.push(rej.kind().into());
        w.publish(Event::Rejected {
            proposal,
            kind: rej.kind().into(),
            reason: rej.message(),
            repair,
        });
    }
}

struct Proposal {
    candidates: Vec<Arch>,
    stats: ProposalStats,
}

pub struct StageActor {
    w: Wiring,
    settings: Arc<Settings>,
    stage: Stage,
    switch_at: usize,
    evaluated: usize,
    in_eval: usize,
    proposing: usize,
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
    /// `resumed` are the journal entries of an earlier run of the same search.
    pub fn new(
        w: Wiring,
        settings: Arc<Settings>,
        resumed: &[MemoryEntry],
        summary: Summary,
        done: oneshot::Sender<Summary>,
    ) -> StageActor {
        let s = &settings.search;
        let switch_at = ((s.exploration_share * s.budget as f64).ceil() as usize).min(s.budget);
        let evaluated = resumed.len();
        let mut summary = summary;
        summary.evaluated = evaluated;
        summary.resumed = evaluated;
        let stage = if evaluated >= switch_at && s.budget > 0 && switch_at < s.budget {
            Stage::Optimization
        } else {
            Stage::Exploration
        };
        for e in resumed {
            count_status(&mut summary, &e.status);
            if let Some(score) = e.score {
                if summary.best.as_ref().is_none_or(|b| score < b.score) {
                    summary.best = Some(Best {
                        candidate: e.id,
                        hash: e.hash.clone(),
                        score,
                        arch: e.arch.clone(),
                    });
                }
            }
        }
        if stage == Stage::Optimization {
            summary.stage_switch_after = Some(switch_at);
        }
        summary.stage = Some(stage);
        StageActor {
            next_candidate: resumed.iter().map(|e| e.id + 1).max().unwrap_or(0),
            w,
            settings,
            stage,
            switch_at,
            evaluated,
            in_eval: 0,
            proposing: 0,
            next_proposal: 0,
            since_best: 0,
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

    /// Starts proposals while there is budget and pipeline room.
    fn fill(&mut self, ctx: &mut Context<Self>) {
        let s = &self.settings.search;
        let depth = s.in_flight.max(self.w.evaluators.len());
        while !self.draining && self.summary.stopped.is_none() {
            let committed = self.evaluated + self.in_eval + self.proposing;
            if committed >= self.budget() || self.in_eval + self.proposing >= depth {
                break;
            }
            let slots = match s.mode {
                Mode::Cot => 1,
                Mode::Tot => s.tot.beam.min(self.budget() - committed),
            };
            self.proposing += slots;
            let proposal = self.next_proposal;
            self.next_proposal += 1;
            let request_base = (self.w.run.session as u64) << 40 | (proposal as u64) << 16;
            self.w.publish(Event::Proposed {
                proposal,
                mode: format!("{:?}", s.mode).to_lowercase(),
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
        let st = p.stats;
        let sm = &mut self.summary;
        sm.requests += st.requests;
        sm.replies += st.replies;
        sm.repairs += st.repairs;
        for k in st.rejected {
            *sm.rejected.entry(k).or_default() += 1;
        }
        for k in st.llm_errors {
            *sm.llm_errors.entry(k).or_default() += 1;
        }
        for k in st.retries {
            *sm.llm_retries.entry(k).or_default() += 1;
        }
        sm.llm_seconds += st.llm_seconds;
        sm.fallbacks += st.fallback as usize;
        sm.usage += st.usage;
        if st.usage != Usage::default() {
            self.w.publish(Event::Tokens { usage: st.usage });
        }
        if st.failed {
            sm.failed_proposals += 1;
            if sm.failed_proposals >= self.settings.search.max_failures {
                sm.stopped = Some(format!(
                    "{} proposals failed (search.max_failures)",
                    sm.failed_proposals
                ));
            }
        }
        let room = self
            .budget()
            .saturating_sub(self.evaluated + self.in_eval + self.proposing);
        let shares = split_usage(st.usage, p.candidates.len().min(room));
        for (i, arch) in p.candidates.into_iter().enumerate() {
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
            });
            let w = self.w.clone();
            let stage = self.stage;
            let fut = async move { evaluate(&w, candidate, arch, stage).await };
            ctx.spawn(
                fut.into_actor(self)
                    .map(|r, act, ctx| act.on_evaluated(r, ctx)),
            );
        }
        self.fill(ctx);
        self.maybe_finish(ctx);
    }

    fn on_evaluated(
        &mut self,
        r: Result<(MemoryEntry, Option<String>), String>,
        ctx: &mut Context<Self>,
    ) {
        self.in_eval -= 1;
        match r {
            Err(e) => {
                // The journal could not be written: stop rather than run on without durability.
                tracing::error!("recording failed: {e}");
                self.summary.stopped = Some(format!("journal write failed: {e}"));
            }
            Ok((entry, retried)) => {
                self.evaluated += 1;
                self.summary.evaluated = self.evaluated;
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
                let improved = match (entry.score, &self.summary.best) {
                    (Some(s), Some(b)) => s < b.score,
                    (Some(_), None) => true,
                    _ => false,
                };
                if improved {
                    let score = entry.score.unwrap_or(f64::NAN);
                    self.summary.best = Some(Best {
                        candidate: entry.id,
                        hash: entry.hash.clone(),
                        score,
                        arch: entry.arch.clone(),
                    });
                    self.since_best = 0;
                    self.w.publish(Event::NewBest {
                        candidate: entry.id,
                        score,
                    });
                    let _ = self.w.run.write_json("best.json", &self.summary.best);
                } else {
                    self.since_best += 1;
                }
                self.maybe_switch();
            }
        }
        self.fill(ctx);
        self.maybe_finish(ctx);
    }

    /// The task-level switch: after the exploration share of the budget, or on a plateau.
    fn maybe_switch(&mut self) {
        if self.stage != Stage::Exploration || self.switch_at >= self.budget() {
            return;
        }
        let plateau = self.settings.search.plateau;
        if self.evaluated >= self.switch_at || (plateau > 0 && self.since_best >= plateau) {
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
        let done_work =
            self.evaluated >= self.budget() || self.draining || self.summary.stopped.is_some();
        if self.finished || !done_work || self.in_eval > 0 || self.proposing > 0 {
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

/// Sends a prompt, logging prompt and reply in the run directory.
async fn ask(
    w: &Wiring,
    tag: &str,
    prompt: &Prompt,
    st: &mut ProposalStats,
) -> Result<Reply, String> {
    w.run.write_prompt(tag, prompt);
    st.requests += 1;
    let r = w
        .llm
        .send(Complete(prompt.clone()))
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| format!("{}: {e}", e.kind())));
    match r {
        Ok(reply) => {
            st.replies += 1;
            st.usage += reply.usage;
            st.llm_seconds += reply.latency_secs;
            st.retries.extend(reply.retries.iter().cloned());
            w.run.write_reply(tag, &reply.text);
            Ok(reply)
        }
        Err(e) => {
            let kind = e.split(':').next().unwrap_or("llm").to_string();
            st.llm_errors.push(kind);
            Err(e)
        }
    }
}

/// Asks the fallback instructor for a whole architecture: the proposal is not lost when the
/// LLM cannot deliver. The failure stays visible in the summary (`fallbacks`, the rejections
/// and LLM errors that led to it).
async fn fallback_proposal(
    w: &Wiring,
    proposal: usize,
    request_base: u64,
    st: ProposalStats,
) -> Proposal {
    let failed = |st: ProposalStats| Proposal {
        candidates: vec![],
        stats: ProposalStats { failed: true, ..st },
    };
    let Some(fallback) = &w.fallback else {
        return failed(st);
    };
    let Ok(memory) = w.get_memory.send(GetMemory).await else {
        return failed(st);
    };
    // A request id apart from the LLM's, so the seeded instructor does not repeat itself.
    let request_id = request_base | 0xFF;
    let Ok(Ok(prompt)) = w.render_cot.send(RenderCot { memory, request_id }).await else {
        return failed(st);
    };
    let Ok(Ok(reply)) = fallback.send(Complete(prompt)).await else {
        return failed(st);
    };
    match w.parse_arch.send(ParseArch { reply: reply.text }).await {
        Ok(Ok(arch)) => {
            w.publish(Event::Failed {
                candidate: None,
                proposal: Some(proposal),
                kind: "fallback".into(),
                reason: "the LLM gave no usable design; the offline instructor proposed".into(),
            });
            Proposal {
                candidates: vec![arch],
                stats: ProposalStats {
                    fallback: true,
                    ..st
                },
            }
        }
        _ => failed(st),
    }
}

async fn cot_proposal(w: &Wiring, s: &Settings, proposal: usize, request_base: u64) -> Proposal {
    let mut st = ProposalStats::default();
    let fail = |st: ProposalStats, kind: &str, reason: String| {
        w.publish(Event::Failed {
            candidate: None,
            proposal: Some(proposal),
            kind: kind.into(),
            reason,
        });
        fallback_proposal(w, proposal, request_base, st)
    };
    let memory = match w.get_memory.send(GetMemory).await {
        Ok(m) => m,
        Err(e) => return fail(st, "memory", e.to_string()).await,
    };
    let mut prompt = match w
        .render_cot
        .send(RenderCot {
            memory,
            request_id: request_base,
        })
        .await
    {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => return fail(st, "prompt", e).await,
        Err(e) => return fail(st, "prompt", e.to_string()).await,
    };
    for attempt in 0..=s.search.max_repairs {
        let tag = format!("s{}-p{proposal:04}-a{attempt}", w.run.session);
        let reply = match ask(w, &tag, &prompt, &mut st).await {
            Ok(r) => r,
            Err(e) => return fail(st, "llm", e).await,
        };
        match w
            .parse_arch
            .send(ParseArch {
                reply: reply.text.clone(),
            })
            .await
        {
            Ok(Ok(arch)) => {
                return Proposal {
                    candidates: vec![arch],
                    stats: st,
                }
            }
            Ok(Err(rej)) => {
                let repair = attempt < s.search.max_repairs;
                st.reject(w, proposal, &rej, repair);
                if !repair {
                    break;
                }
                st.repairs += 1;
                prompt = match w
                    .render_repair
                    .send(RenderRepair {
                        previous: prompt,
                        reply: reply.text,
                        error: rej.message(),
                    })
                    .await
                {
                    Ok(Ok(p)) => p,
                    Ok(Err(e)) => return fail(st, "prompt", e).await,
                    Err(e) => return fail(st, "prompt", e.to_string()).await,
                };
            }
            Err(e) => return fail(st, "parser", e.to_string()).await,
        }
    }
    fail(
        st,
        "repairs_exhausted",
        "no valid new architecture after the repair budget".into(),
    )
    .await
}

fn edge_key(e: &EdgeSpec) -> String {
    format!(
        "{}>{}:{}:{}:{}",
        e.from,
        e.to,
        e.op,
        e.spatial.as_deref().unwrap_or(""),
        e.temporal.as_deref().unwrap_or("")
    )
}

/// Heuristic score of a partial design (higher is better): in exploration, distance from the
/// closest remembered design; in optimization, rank-weighted closeness to the best designs.
fn score_partial(partial: &[EdgeSpec], node: usize, memory: &MemoryView) -> f64 {
    let mine: BTreeSet<String> = partial.iter().map(edge_key).collect();
    let sims = memory.best.iter().map(|e| {
        let theirs: BTreeSet<String> = e
            .arch
            .edges
            .iter()
            .filter(|x| x.to <= node as i64)
            .map(edge_key)
            .collect();
        let inter = mine.intersection(&theirs).count() as f64;
        let union = mine.union(&theirs).count().max(1) as f64;
        inter / union
    });
    match memory.stage {
        Stage::Exploration => 1.0 - sims.fold(0.0, f64::max),
        Stage::Optimization => sims.enumerate().map(|(r, s)| s / (r as f64 + 1.0)).sum(),
    }
}

async fn tot_proposal(w: &Wiring, s: &Settings, proposal: usize, request_base: u64) -> Proposal {
    let mut st = ProposalStats::default();
    let tot = &s.search.tot;
    let memory = match w.get_memory.send(GetMemory).await {
        Ok(m) => m,
        Err(_) => {
            st.failed = true;
            return Proposal {
                candidates: vec![],
                stats: st,
            };
        }
    };
    let mut beam: Vec<Vec<EdgeSpec>> = vec![vec![]];
    for node in 1..ists::space::DEFAULT_NODES {
        let jobs: Vec<(usize, Vec<EdgeSpec>, usize)> = beam
            .iter()
            .enumerate()
            .flat_map(|(bi, p)| (0..tot.branches).map(move |b| (bi, p.clone(), b)))
            .collect();
        // Branches are expanded concurrently: several requests in flight at once.
        let results: Vec<(Vec<EdgeSpec>, ProposalStats)> = stream::iter(jobs)
            .map(|(bi, partial, b)| {
                let memory = memory.clone();
                async move {
                    let mut st = ProposalStats::default();
                    let id = request_base | ((node as u64) << 8) | ((bi * tot.branches + b) as u64);
                    let tag = format!("s{}-p{proposal:04}-n{node}-k{bi}-b{b}", w.run.session);
                    let prompt = w
                        .render_step
                        .send(RenderTotStep {
                            memory,
                            node,
                            partial: partial.clone(),
                            request_id: id,
                            branch: b,
                        })
                        .await;
                    let Ok(Ok(prompt)) = prompt else {
                        return (vec![], st);
                    };
                    let Ok(reply) = ask(w, &tag, &prompt, &mut st).await else {
                        return (vec![], st);
                    };
                    match w
                        .parse_step
                        .send(ParseStep {
                            reply: reply.text,
                            node,
                        })
                        .await
                    {
                        Ok(Ok(edges)) => {
                            let mut full = partial;
                            full.extend(edges);
                            (full, st)
                        }
                        Ok(Err(rej)) => {
                            st.reject(w, proposal, &rej, false);
                            (vec![], st)
                        }
                        Err(_) => (vec![], st),
                    }
                }
            })
            .buffer_unordered(tot.concurrency.max(1))
            .collect()
            .await;
        let mut scored: Vec<(f64, String, Vec<EdgeSpec>)> = Vec::new();
        for (partial, s2) in results {
            st.merge(s2);
            if partial.iter().any(|e| e.to == node as i64) {
                let key = partial.iter().map(edge_key).collect::<Vec<_>>().join(";");
                if !scored.iter().any(|(_, k, _)| *k == key) {
                    scored.push((score_partial(&partial, node, &memory), key, partial));
                }
            }
        }
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        beam = scored.into_iter().take(tot.beam).map(|x| x.2).collect();
        if beam.is_empty() {
            w.publish(Event::Failed {
                candidate: None,
                proposal: Some(proposal),
                kind: "tot_dead_end".into(),
                reason: format!("no branch produced usable edges for node {node}"),
            });
            return fallback_proposal(w, proposal, request_base, st).await;
        }
    }
    // Full candidates go through the parser like any reply: validation, canonical form, dedup.
    let mut candidates = Vec::new();
    for edges in beam {
        let spec = ArchSpec {
            space: Some(s.search.space.to_string()),
            nodes: None,
            edges,
        };
        let text = serde_json::to_string(&spec).unwrap_or_default();
        match w.parse_arch.send(ParseArch { reply: text }).await {
            Ok(Ok(arch)) => candidates.push(arch),
            Ok(Err(rej)) => {
                st.reject(w, proposal, &rej, false);
            }
            Err(_) => {}
        }
    }
    if candidates.is_empty() {
        return fallback_proposal(w, proposal, request_base, st).await;
    }
    Proposal {
        candidates,
        stats: st,
    }
}

/// Evaluates a candidate (one retry on a restarted evaluator after a fault) and records it.
async fn evaluate(
    w: &Wiring,
    candidate: usize,
    arch: Arch,
    stage: Stage,
) -> Result<(MemoryEntry, Option<String>), String> {
    let msg = Evaluate {
        candidate,
        arch: arch.clone(),
    };
    let mut outcome = w.evaluators.evaluate(msg.clone()).await;
    // The kind of the fault that was retried, if one was.
    let mut retried = None;
    if let EvalOutcome::Failed { kind, .. } = &outcome {
        retried = Some(kind.clone());
        outcome = w.evaluators.evaluate(msg).await;
    }
    let entry = match outcome {
        EvalOutcome::Report(r) => MemoryEntry {
            id: candidate,
            hash: arch.hash(),
            arch: arch.to_spec(),
            score: r.val_mae,
            status: r.status,
            stage,
            params: r.params,
            seconds: r.seconds,
        },
        EvalOutcome::Failed { kind, message } => MemoryEntry {
            id: candidate,
            hash: arch.hash(),
            arch: arch.to_spec(),
            score: None,
            status: EvalStatus::Failed { kind, message },
            stage,
            params: 0,
            seconds: 0.0,
        },
    };
    match w.record.send(Record(entry.clone())).await {
        Ok(Ok(_)) => Ok((entry, retried)),
        Ok(Err(e)) => Err(e),
        Err(e) => Err(e.to_string()),
    }
}

async fn final_training(w: &Wiring, s: &Settings, summary: &mut Summary) {
    if s.final_train.top_k == 0 {
        return;
    }
    let Ok(memory) = w.get_memory.send(GetMemory).await else {
        return;
    };
    for (rank, e) in memory.best.iter().take(s.final_train.top_k).enumerate() {
        let Ok(arch) = Arch::from_spec(&e.arch, s.search.space) else {
            continue;
        };
        let msg = TrainFinal {
            candidate: e.id,
            arch,
            config: s.final_train.train.clone(),
            // The best candidate's model is kept for `ists report` and `ists predict`.
            export: (rank == 0).then(|| w.run.path.join("model")),
        };
        match w.evaluators.train_final(msg).await {
            Ok(report) => {
                let _ = w.run.write_json(&format!("final-{}.json", e.id), &report);
                summary.final_results.push(FinalResult {
                    candidate: e.id,
                    proxy_score: e.score,
                    report,
                });
            }
            Err(err) => {
                tracing::error!(candidate = e.id, "final training failed: {err}");
                *summary
                    .eval_failures
                    .entry("final_training".into())
                    .or_default() += 1;
            }
        }
    }
}
