//! The step level of the method, tree-of-thought side (Yao et al.'s ToT, breadth-first): node by
//! node, every partial design in the beam is expanded by a **propose** step (one request asking
//! for `search.tot.branches` distinct alternatives for the next node), each new partial design
//! is **evaluated** by the LLM (one value request per expanded partial design, batching its
//! children, with the memory's evidence about each), and **select** keeps the `search.tot.beam`
//! best. Expansions and their value calls run concurrently (`search.tot.concurrency`). A
//! proposal reply with no usable alternative gets one **repair** turn; at the output node,
//! thoughts that would complete a design already evaluated are left out before selection, and
//! when none is left the propose step is repaired with the clash named. The memory heuristic
//! ([`ists::memory::heuristic_value`]) values thoughts only when a value reply is unusable.
//!
//! Longer than the ~400 lines aimed at: the method's four steps and the adjustment of repeated
//! designs read as one algorithm, top to bottom, with their unit tests.

use super::propose::{ask, fallback_proposal, repair_prompt, Candidate, Proposal, ProposalStats};
use super::stage::Wiring;
use crate::messages::*;
use futures::stream::{self, StreamExt};
use ists::config::Settings;
use ists::memory::heuristic_value;
use ists::parse::Thought;
use ists::space::{edges_key, Arch, ArchSpec, EdgeSpec, Hyper, DEFAULT_NODES};

/// A partial design on its way through the tree: the edges decided so far, the idea behind each
/// node's decision and the value its last evaluation gave.
#[derive(Debug, Clone, Default)]
struct Path {
    edges: Vec<EdgeSpec>,
    ideas: Vec<String>,
    value: f64,
    /// The joint space's hyperparameters, once a thought (the output node's) gave them.
    hyper: Option<Hyper>,
    /// The hash of the design the path completes as it stands, once it decides the output node
    /// (None before, or when it is not a valid design): computed once, when the path is made,
    /// for the checks against known designs.
    complete: Option<String>,
}

impl Path {
    fn key(&self) -> String {
        edges_key(&self.edges)
    }

    fn extend(&self, node: usize, t: Thought, s: &Settings) -> Path {
        let mut p = self.clone();
        p.edges.extend(t.edges);
        p.hyper = t.hyper.or(p.hyper);
        p.ideas.push(format!("Node {node}: {}", t.idea.trim()));
        // Before the output node no design is complete (the output is unreachable).
        p.complete = if node + 1 == DEFAULT_NODES {
            hash_if_complete(&p.edges, p.hyper, s)
        } else {
            None
        };
        p
    }

    /// The reasoning of a finished path, kept with its candidate.
    fn reasoning(&self) -> Option<String> {
        let text = self.ideas.join("\n");
        (!text.trim().is_empty()).then_some(text)
    }
}

/// Identifies a request within a proposal (so that a seeded instructor answers each one
/// differently): node, beam entry and the kind of request.
fn request_id(base: u64, node: usize, entry: usize, value: bool) -> u64 {
    base | ((node as u64) << 12) | ((entry as u64 & 0x3FF) << 1) | value as u64
}

/// The hash a complete edge list (with these hyperparameters, the space's middle choice when
/// none were given) would have, if it is a valid design.
fn hash_if_complete(edges: &[EdgeSpec], hyper: Option<Hyper>, s: &Settings) -> Option<String> {
    let spec = ArchSpec {
        space: Some(s.search.space.to_string()),
        nodes: None,
        edges: edges.to_vec(),
        hyper: s.hyper_space().complete(hyper),
    };
    Arch::from_spec(&spec, s.search.space)
        .ok()
        .map(|a| a.canonical().hash())
}

/// The memory's evidence about a partial design: how many evaluated designs decide the nodes
/// up to `node` exactly as `partial` does, and the best [`EVIDENCE_QUOTED`] of them (best
/// first), which the value prompt quotes.
fn evidence(partial: &[EdgeSpec], node: usize, memory: &MemoryView) -> (usize, Vec<String>) {
    let mine = edges_key(partial);
    // `all` holds scored entries only, best first: the first matches are the best.
    let mut matched = 0;
    let mut quoted = Vec::new();
    for e in memory
        .all
        .iter()
        .filter(|e| edges_key(e.arch.edges.iter().filter(|x| x.to <= node as i64)) == mine)
    {
        let Some(v) = e.score else { continue };
        matched += 1;
        if quoted.len() < EVIDENCE_QUOTED {
            quoted.push(format!(
                "val_mae={v:.4} (steps={}, rung={})",
                e.steps, e.rung
            ));
        }
    }
    (matched, quoted)
}

/// The **propose** step: `k` distinct alternatives for node `node` given `parent`, as the
/// children they make, with one repair turn when no alternative is usable (or, at the output
/// node, when every alternative completes a design already evaluated).
async fn propose_thoughts(
    w: &Wiring,
    s: &Settings,
    memory: &MemoryView,
    ctx: (usize, u64, usize),
    node: usize,
    parent: &Path,
) -> (Vec<Path>, ProposalStats) {
    let (proposal, base, entry) = ctx;
    let mut st = ProposalStats::default();
    let tot = &s.search.tot;
    let Ok(Ok(mut prompt)) = w
        .render_step
        .send(RenderTotStep {
            memory: memory.clone(),
            node,
            partial: parent.edges.clone(),
            alternatives: tot.branches,
            request_id: request_id(base, node, entry, false),
            branch: entry,
        })
        .await
    else {
        return (vec![], st);
    };
    let last = node + 1 == DEFAULT_NODES;
    for attempt in 0..=s.search.max_repairs.min(1) {
        let tag = format!(
            "s{}-p{proposal:04}-n{node}-k{entry}-a{attempt}",
            w.run.session
        );
        let Ok(reply) = ask(w, &tag, &prompt, &mut st).await else {
            return (vec![], st);
        };
        let error = match w
            .parse_step
            .send(ParseStep {
                reply: reply.text.clone(),
                node,
            })
            .await
        {
            Ok(Ok(got)) => {
                for r in &got.rejected {
                    st.reject(w, proposal, r, false);
                }
                let given: Vec<(Thought, Path)> = got
                    .thoughts
                    .into_iter()
                    .map(|t| (t.clone(), parent.extend(node, t, s)))
                    .collect();
                let mut clash = None;
                let mut kept = given.clone();
                if last {
                    // A thought that completes a known design would be rejected after all the
                    // work: leave it out now, and name the clash if nothing else is left.
                    kept.retain(|(_, full)| match &full.complete {
                        Some(h) if memory.known.contains_key(h) => {
                            clash = Some(h.clone());
                            false
                        }
                        _ => true,
                    });
                }
                st.thoughts += kept.len();
                st.reasoning_chars += kept
                    .iter()
                    .map(|(t, _)| t.idea.chars().count())
                    .sum::<usize>();
                if !kept.is_empty() {
                    st.usable_replies += 1;
                    return (kept.into_iter().map(|(_, p)| p).collect(), st);
                }
                let hash = clash.unwrap_or_default();
                let rej = Rejection::Duplicate {
                    summary: "every alternative you gave completes it".into(),
                    hash,
                    nearest: None,
                    design: None,
                };
                let repair = attempt == 0 && s.search.max_repairs > 0;
                st.reject(w, proposal, &rej, repair);
                if !repair {
                    // The model keeps completing known designs: take, for each of its
                    // alternatives, the nearest unexplored output decision instead.
                    let adjusted = nearest_unexplored(&given, parent, node, memory, s);
                    if !adjusted.is_empty() {
                        st.adjusted += adjusted.len();
                        st.thoughts += adjusted.len();
                        st.usable_replies += 1;
                        return (adjusted, st);
                    }
                }
                rej.message()
            }
            Ok(Err(rej)) => {
                st.reject(w, proposal, &rej, attempt == 0);
                rej.message()
            }
            Err(_) => return (vec![], st),
        };
        if attempt > 0 || s.search.max_repairs == 0 {
            break;
        }
        st.repairs += 1;
        prompt = match repair_prompt(w, prompt, reply.text, error).await {
            Ok(p) => p,
            Err(_) => return (vec![], st),
        };
    }
    (vec![], st)
}

/// For alternatives at the output node that each complete a known design: the first design one
/// change away (in [`Arch::neighbours`]' fixed order) that keeps the parent's decisions, is
/// unknown, and differs from those already taken, as the child of a thought deciding only the
/// output node. `given` pairs each alternative with the child it made.
fn nearest_unexplored(
    given: &[(Thought, Path)],
    parent: &Path,
    node: usize,
    memory: &MemoryView,
    s: &Settings,
) -> Vec<Path> {
    let mut out: Vec<Path> = Vec::new();
    let mut taken = std::collections::HashSet::new();
    for (t, full) in given {
        let spec = ArchSpec {
            space: Some(s.search.space.to_string()),
            nodes: None,
            edges: full.edges.clone(),
            hyper: s.hyper_space().complete(full.hyper),
        };
        let Ok(arch) = Arch::from_spec(&spec, s.search.space) else {
            continue;
        };
        let found = arch.neighbours().into_iter().find_map(|n| {
            let h = n.hash();
            if memory.known.contains_key(&h) || taken.contains(&h) {
                return None;
            }
            let into_node: Vec<EdgeSpec> = n
                .to_spec()
                .edges
                .into_iter()
                .filter(|e| e.to == node as i64)
                .collect();
            let mut edges = parent.edges.clone();
            edges.extend(into_node.iter().cloned());
            // Only a change of the output node's own edges keeps the parent's decisions.
            (!into_node.is_empty()
                && hash_if_complete(&edges, n.hyper, s).as_deref() == Some(h.as_str()))
            .then_some((h, into_node))
        });
        if let Some((h, edges)) = found {
            taken.insert(h);
            let thought = Thought {
                idea: format!(
                    "{} (adjusted by ists: as given it completed a design already evaluated; \
                     this is the nearest unexplored output decision)",
                    t.idea.trim()
                ),
                edges,
                hyper: arch.hyper,
            };
            out.push(parent.extend(node, thought, s));
        }
    }
    out
}

/// The **evaluate** step: one value request for the children of one expansion, each shown with
/// the memory's evidence; values 1-10. Children the reply leaves out, or all of them when the
/// reply is unusable, are valued by the memory heuristic (scaled to the same range).
async fn evaluate_thoughts(
    w: &Wiring,
    memory: &MemoryView,
    ctx: (usize, u64, usize),
    node: usize,
    children: &mut [Path],
) -> ProposalStats {
    let (proposal, base, entry) = ctx;
    let mut st = ProposalStats::default();
    let heuristic = |p: &Path| {
        let best: Vec<&ArchSpec> = memory.best.iter().map(|e| &e.arch).collect();
        1.0 + 9.0 * heuristic_value(&p.edges, node, &best, memory.stage).clamp(0.0, 1.0)
    };
    let cases: Vec<ThoughtCase> = children
        .iter()
        .map(|c| {
            let (matched, evidence) = evidence(&c.edges, node, memory);
            ThoughtCase {
                partial: c.edges.clone(),
                idea: c.ideas.last().cloned().unwrap_or_default(),
                evidence,
                matched,
                known_if_complete: c
                    .complete
                    .as_ref()
                    .is_some_and(|h| memory.known.contains_key(h)),
            }
        })
        .collect();
    let prompt = w
        .render_value
        .send(RenderTotValue {
            memory: memory.clone(),
            node,
            cases,
            request_id: request_id(base, node, entry, true),
            branch: entry,
        })
        .await;
    let mut values = vec![None; children.len()];
    if let Ok(Ok(prompt)) = prompt {
        st.value_requests += 1;
        let tag = format!("s{}-p{proposal:04}-n{node}-k{entry}-value", w.run.session);
        if let Ok(reply) = ask(w, &tag, &prompt, &mut st).await {
            match ists::parse::parse_values(&reply.text, children.len()) {
                Ok(vs) => {
                    st.usable_replies += usize::from(!vs.is_empty());
                    for v in vs {
                        st.reasoning_chars += v.reasoning.chars().count();
                        values[v.candidate] = Some(v.value);
                    }
                }
                Err(e) => st.reject(w, proposal, &Rejection::Invalid(e), false),
            }
        }
    }
    if values.iter().any(Option::is_none) {
        st.value_fallbacks += 1;
    }
    for (c, v) in children.iter_mut().zip(values) {
        c.value = v.unwrap_or_else(|| heuristic(c));
        if let Some(idea) = c.ideas.last_mut() {
            idea.push_str(&format!(" (value {:.0}/10)", c.value));
        }
    }
    st
}

/// The **select** step: the `beam` highest-valued distinct partial designs (ties broken by the
/// edges' text, so a seeded search is reproducible).
fn select(mut children: Vec<Path>, beam: usize) -> Vec<Path> {
    children.sort_by(|a, b| b.value.total_cmp(&a.value).then(a.key().cmp(&b.key())));
    let mut kept: Vec<Path> = Vec::new();
    for c in children {
        if kept.len() >= beam {
            break;
        }
        if !kept.iter().any(|k| k.key() == c.key()) {
            kept.push(c);
        }
    }
    kept
}

/// A tree-of-thought proposal: breadth-first over nodes 1..=3 with beam `search.tot.beam`;
/// the paths left at the end are the candidates (through the parser like any reply:
/// validation, canonical form, reservation).
pub(super) async fn tot_proposal(
    w: &Wiring,
    s: &Settings,
    proposal: usize,
    request_base: u64,
) -> Proposal {
    let mut st = ProposalStats::default();
    let tot = &s.search.tot;
    let Ok(memory) = w.get_memory.send(GetMemory).await else {
        st.failed = true;
        return Proposal {
            candidates: vec![],
            stats: st,
        };
    };
    let mut beam = vec![Path::default()];
    for node in 1..DEFAULT_NODES {
        let expansions: Vec<(Vec<Path>, ProposalStats)> = stream::iter(beam.iter().enumerate())
            .map(|(entry, parent)| {
                let memory = memory.clone();
                async move {
                    let ctx = (proposal, request_base, entry);
                    let (mut children, mut st) =
                        propose_thoughts(w, s, &memory, ctx, node, parent).await;
                    if !children.is_empty() {
                        st += evaluate_thoughts(w, &memory, ctx, node, &mut children).await;
                    }
                    (children, st)
                }
            })
            .buffer_unordered(tot.concurrency.max(1))
            .collect()
            .await;
        let mut children = Vec::new();
        for (c, s2) in expansions {
            st += s2;
            children.extend(c);
        }
        beam = select(children, tot.beam.max(1));
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
    let mut candidates = Vec::new();
    for path in beam {
        let spec = ArchSpec {
            space: Some(s.search.space.to_string()),
            nodes: None,
            edges: path.edges.clone(),
            hyper: s.hyper_space().complete(path.hyper),
        };
        let text = serde_json::to_string(&spec).unwrap_or_default();
        match w.parse_arch.send(ParseArch { reply: text }).await {
            // The spec is plain JSON, with no reasoning of its own: the path's ideas are it.
            Ok(Ok(Parsed { arch, .. })) => candidates.push(Candidate {
                arch,
                reasoning: path.reasoning(),
            }),
            Ok(Err(rej)) => st.reject(w, proposal, &rej, false),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn edge(from: i64, to: i64, op: &str) -> EdgeSpec {
        EdgeSpec {
            from,
            to,
            op: op.into(),
            spatial: None,
            temporal: None,
        }
    }

    #[test]
    fn select_keeps_the_beam_best_distinct_paths() {
        let p = |op: &str, value: f64| Path {
            edges: vec![edge(0, 1, op)],
            ideas: vec![],
            value,
            hyper: None,
            complete: None,
        };
        let kept = select(
            vec![p("STT", 3.0), p("TTS", 9.0), p("TTS", 9.0), p("STP", 5.0)],
            2,
        );
        let ops: Vec<&str> = kept.iter().map(|k| k.edges[0].op.as_str()).collect();
        assert_eq!(ops, ["TTS", "STP"]);
    }

    #[test]
    fn request_ids_differ_by_node_entry_and_kind() {
        let ids = [
            request_id(1 << 32, 1, 0, false),
            request_id(1 << 32, 1, 0, true),
            request_id(1 << 32, 1, 1, false),
            request_id(1 << 32, 2, 0, false),
        ];
        let distinct: std::collections::HashSet<u64> = ids.iter().copied().collect();
        assert_eq!(distinct.len(), 4);
    }
}
