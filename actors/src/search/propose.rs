//! The step level of the method, chain-of-thought side: one prompt whose reply reasons about
//! each node before deciding it, a repair turn for every rejected reply (a duplicate is
//! answered with the clash and the nearest unexplored variation), and the offline instructor
//! as fallback. The tree-of-thought search lives in [`super::tot`]. What a proposal did is
//! counted in [`ProposalStats`] and added to the summary by the StageActor.

use super::stage::Wiring;
use crate::messages::*;
use crate::run::summary::Summary;
use ists::config::Settings;

/// What one proposal task did, added to the summary by the actor ([`ProposalStats::add_to`]).
#[derive(Default)]
pub(super) struct ProposalStats {
    pub(super) requests: usize,
    pub(super) replies: usize,
    pub(super) rejected: Vec<String>,
    pub(super) repairs: usize,
    pub(super) llm_errors: Vec<String>,
    pub(super) retries: Vec<String>,
    pub(super) llm_seconds: f64,
    pub(super) usage: Usage,
    pub(super) failed: bool,
    pub(super) fallback: bool,
    /// Tree-of-thought: valid distinct alternatives received; value requests; value replies
    /// that were unusable (the heuristic valued instead).
    pub(super) thoughts: usize,
    pub(super) value_requests: usize,
    pub(super) value_fallbacks: usize,
    /// Characters of reasoning written before decisions.
    pub(super) reasoning_chars: usize,
    /// Replies that gave something usable: an accepted design, at least one thought, values.
    pub(super) usable_replies: usize,
    /// Duplicates replaced by the nearest unexplored design once the repair turns were spent.
    pub(super) adjusted: usize,
}

/// Combines the stats of the parts of one proposal (ToT expansions and their value steps).
/// `failed` and `fallback` describe the whole proposal and are set on it, not combined.
impl std::ops::AddAssign for ProposalStats {
    fn add_assign(&mut self, o: ProposalStats) {
        // Destructured in full, here and in `add_to`, so a new counter cannot be left out.
        let ProposalStats {
            requests,
            replies,
            rejected,
            repairs,
            llm_errors,
            retries,
            llm_seconds,
            usage,
            failed: _,
            fallback: _,
            thoughts,
            value_requests,
            value_fallbacks,
            reasoning_chars,
            usable_replies,
            adjusted,
        } = o;
        self.requests += requests;
        self.replies += replies;
        self.repairs += repairs;
        self.rejected.extend(rejected);
        self.llm_errors.extend(llm_errors);
        self.retries.extend(retries);
        self.llm_seconds += llm_seconds;
        self.usage += usage;
        self.thoughts += thoughts;
        self.value_requests += value_requests;
        self.value_fallbacks += value_fallbacks;
        self.reasoning_chars += reasoning_chars;
        self.usable_replies += usable_replies;
        self.adjusted += adjusted;
    }
}

impl ProposalStats {
    /// Adds a finished proposal's counters to the search's summary. `failed` is left to the
    /// StageActor, which stops the search after too many failed proposals.
    pub(super) fn add_to(self, sm: &mut Summary) {
        let ProposalStats {
            requests,
            replies,
            rejected,
            repairs,
            llm_errors,
            retries,
            llm_seconds,
            usage,
            failed: _,
            fallback,
            thoughts,
            value_requests,
            value_fallbacks,
            reasoning_chars,
            usable_replies,
            adjusted,
        } = self;
        let count = |map: &mut std::collections::BTreeMap<String, usize>, keys: Vec<String>| {
            for k in keys {
                *map.entry(k).or_default() += 1;
            }
        };
        sm.requests += requests;
        sm.replies += replies;
        sm.repairs += repairs;
        count(&mut sm.rejected, rejected);
        count(&mut sm.llm_errors, llm_errors);
        count(&mut sm.llm_retries, retries);
        sm.llm_seconds += llm_seconds;
        sm.usage += usage;
        sm.fallbacks += usize::from(fallback);
        sm.thoughts += thoughts;
        sm.value_requests += value_requests;
        sm.value_fallbacks += value_fallbacks;
        sm.reasoning_chars += reasoning_chars;
        sm.reasoning_tokens_est = sm.reasoning_chars / super::prompt::CHARS_PER_TOKEN;
        sm.usable_replies += usable_replies;
        sm.adjusted += adjusted;
    }

    /// Counts a reply the parser rejected and publishes it; `repair` says whether the LLM is
    /// asked again for this proposal.
    pub(super) fn reject(&mut self, w: &Wiring, proposal: usize, rej: &Rejection, repair: bool) {
        self.rejected.push(rej.kind().into());
        w.publish(Event::Rejected {
            proposal,
            kind: rej.kind().into(),
            reason: rej.message(),
            repair,
        });
    }
}

/// A design a proposal produced, with the reasoning that led to it (when the instructor gave
/// any): kept in the journal, the `parsed` event and the report. What the parser accepts is
/// one already.
pub(super) type Candidate = Parsed;

pub(super) struct Proposal {
    pub(super) candidates: Vec<Candidate>,
    pub(super) stats: ProposalStats,
}

/// Sends a prompt, logging prompt and reply in the run directory.
pub(super) async fn ask(
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

/// The repair turn of a rejected reply: the conversation so far, the reply and what was wrong
/// with it (the PromptActor renders it; a mailbox error is an error like any other).
pub(super) async fn repair_prompt(
    w: &Wiring,
    previous: Prompt,
    reply: String,
    error: String,
) -> Result<Prompt, String> {
    w.render_repair
        .send(RenderRepair {
            previous,
            reply,
            error,
        })
        .await
        .map_err(|e| e.to_string())?
}

/// Asks the fallback instructor for a whole architecture: the proposal is not lost when the
/// LLM cannot deliver. The failure stays visible in the summary (`fallbacks`, the rejections
/// and LLM errors that led to it).
pub(super) async fn fallback_proposal(
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
        Ok(Ok(candidate)) => {
            w.publish(Event::Failed {
                candidate: None,
                proposal: Some(proposal),
                kind: "fallback".into(),
                reason: "the LLM gave no usable design; the offline instructor proposed".into(),
            });
            Proposal {
                candidates: vec![candidate],
                stats: ProposalStats {
                    fallback: true,
                    ..st
                },
            }
        }
        _ => failed(st),
    }
}

/// The design one change away from a duplicate the model insisted on, reserved through the
/// parser like any reply (None when another proposal took it meanwhile). Its reasoning is the
/// model's, with a note saying what was changed and why.
async fn adjusted(w: &Wiring, reply: &str, nearest: &str) -> Option<Candidate> {
    let arch = w
        .parse_arch
        .send(ParseArch {
            reply: nearest.to_string(),
        })
        .await
        .ok()?
        .ok()?
        .arch;
    let note = "(adjusted by ists: the proposed design was already evaluated, so the nearest \
                unexplored design, one change away, is evaluated instead)";
    let reasoning = match ists::parse::reasoning(reply) {
        Some(r) => format!("{r}\n{note}"),
        None => note.to_string(),
    };
    Some(Candidate {
        arch,
        reasoning: Some(reasoning),
    })
}

pub(super) async fn cot_proposal(
    w: &Wiring,
    s: &Settings,
    proposal: usize,
    request_base: u64,
) -> Proposal {
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
    // The turn is taken before the memory is read and held until the design is parsed (the
    // semaphore is never closed; the permit lives as long as `_turn`).
    let _turn = w.cot_turns.clone().acquire_owned().await;
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
    // The model's favourites first: designs it repeated earlier in the search.
    let repeated = w.repeated.lock().map(|r| r.clone()).unwrap_or_default();
    prompt.hints.avoid.retain(|a| !repeated.contains(a));
    prompt.hints.avoid.splice(0..0, repeated);
    // Invalid replies and duplicates each have `max_repairs` repair turns: a duplicate is a
    // valid design the model can move away from at once, and should not use up the turns an
    // unreadable reply needs.
    let (mut invalid_left, mut duplicate_left) = (s.search.max_repairs, s.search.max_repairs);
    for attempt in 0.. {
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
            Ok(Ok(candidate)) => {
                st.reasoning_chars += candidate
                    .reasoning
                    .as_ref()
                    .map_or(0, |r| r.chars().count());
                st.usable_replies += 1;
                return Proposal {
                    candidates: vec![candidate],
                    stats: st,
                };
            }
            Ok(Err(rej)) => {
                let left = match rej {
                    Rejection::Duplicate { .. } => &mut duplicate_left,
                    Rejection::Invalid(_) | Rejection::Repeated { .. } => &mut invalid_left,
                };
                let repair = *left > 0;
                st.reject(w, proposal, &rej, repair);
                if !repair {
                    if let Rejection::Duplicate {
                        nearest: Some(nearest),
                        ..
                    } = &rej
                    {
                        // The model keeps proposing a known design: take the nearest unexplored
                        // one (one change away) instead of wasting the proposal.
                        if let Some(c) = adjusted(w, &reply.text, nearest).await {
                            st.adjusted += 1;
                            return Proposal {
                                candidates: vec![c],
                                stats: st,
                            };
                        }
                    }
                    break;
                }
                *left -= 1;
                st.repairs += 1;
                prompt = match repair_prompt(w, prompt, reply.text, rej.message()).await {
                    Ok(p) => p,
                    Err(e) => return fail(st, "prompt", e).await,
                };
                // The design the model repeated heads the list its next reply must avoid, and
                // the search's list of repeated designs.
                if let Rejection::Duplicate {
                    design: Some(d), ..
                } = rej
                {
                    if let Ok(mut r) = w.repeated.lock() {
                        r.retain(|a| a != d.as_ref());
                        r.insert(0, (*d).clone());
                        r.truncate(super::stage::REPEATED_KEPT);
                    }
                    prompt.hints.avoid.retain(|a| a != d.as_ref());
                    prompt.hints.avoid.insert(0, *d);
                }
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
