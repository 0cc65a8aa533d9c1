//! The step level of the method: a proposal is one chain-of-thought prompt (the reasoning for
//! each node before its decision) or a tree-of-thought search over partial designs, with
//! repair turns for rejected replies and the offline instructor as fallback. What a proposal
//! did is counted in [`ProposalStats`] and merged into the summary by the StageActor.

use super::stage::Wiring;
use crate::messages::*;
use futures::stream::{self, StreamExt};
use ists::config::Settings;
use ists::memory::Stage;
use ists::space::{Arch, ArchSpec, EdgeSpec};
use std::collections::BTreeSet;

/// What one proposal task did, merged into the summary by the actor.
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
}

impl ProposalStats {
    pub(super) fn merge(&mut self, o: ProposalStats) {
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

pub(super) struct Proposal {
    pub(super) candidates: Vec<Arch>,
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

pub(super) fn edge_key(e: &EdgeSpec) -> String {
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
pub(super) fn score_partial(partial: &[EdgeSpec], node: usize, memory: &MemoryView) -> f64 {
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

pub(super) async fn tot_proposal(
    w: &Wiring,
    s: &Settings,
    proposal: usize,
    request_base: u64,
) -> Proposal {
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
