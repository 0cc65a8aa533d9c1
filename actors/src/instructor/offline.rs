//! OfflineInstructor: answers the same [`Complete`] message as the LLM actor, with no key and no
//! network. Its decisions are seeded: uniform, max-min diverse or prior-ranked sampling in
//! exploration (`search.exploration`); in optimization, mutation and crossover of the best
//! memory entries, drawn at random or chosen by a main-effects surrogate
//! (`search.optimization`). It
//! writes the reply text an LLM is asked for (step lines, then the JSON), so the ParserActor
//! handles both the same way.

use crate::messages::{Complete, Hints, LlmError, Purpose, Reply, Usage};
use actix::prelude::*;
use ists::config::{Exploration, Optimization, PriorCost, DIVERSE_POOL, GUIDED_POOL, PRIOR_POOL};
use ists::memory::{heuristic_value, Stage};
use ists::prior::Prior;
use ists::space::{Arch, ChoiceEffects, EdgeSpec, HyperSpace, SpaceKind};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;
use std::time::Instant;

pub struct OfflineInstructor {
    space: SpaceKind,
    /// The joint space's choices (resolved; inactive for an architecture-only search).
    hyper: HyperSpace,
    seed: u64,
    exploration: Exploration,
    optimization: Optimization,
    /// Earlier searches' banks (`search.prior`), for `Exploration::Prior`.
    prior: Option<Arc<Prior>>,
    /// Draws a prior-ranked exploration step chooses among (`search.prior_pool`).
    prior_pool: usize,
    /// Whether those draws are first cut to the ones no dearer than the first
    /// (`search.prior_cost`).
    prior_cost: PriorCost,
}

impl OfflineInstructor {
    pub fn new(space: SpaceKind, hyper: HyperSpace, seed: u64) -> OfflineInstructor {
        OfflineInstructor {
            space,
            hyper,
            seed,
            exploration: Exploration::Sample,
            optimization: Optimization::Mutate,
            prior: None,
            prior_pool: PRIOR_POOL,
            prior_cost: PriorCost::Ignore,
        }
    }

    /// How exploration-stage designs are drawn (uniform by default: random search's rule).
    pub fn with_exploration(mut self, exploration: Exploration) -> OfflineInstructor {
        self.exploration = exploration;
        self
    }

    /// How optimization-stage designs are chosen (random offspring by default).
    pub fn with_optimization(mut self, optimization: Optimization) -> OfflineInstructor {
        self.optimization = optimization;
        self
    }

    /// The surrogate of earlier searches' banks that `Exploration::Prior` ranks by.
    pub fn with_prior(mut self, prior: Option<Arc<Prior>>) -> OfflineInstructor {
        self.prior = prior;
        self
    }

    /// How many new draws a prior-ranked exploration step chooses among (at least 1).
    pub fn with_prior_pool(mut self, pool: usize) -> OfflineInstructor {
        self.prior_pool = pool.max(1);
        self
    }

    /// Whether prior-ranked draws must be no dearer than the pool's first
    /// ([`PriorCost::Matched`]; needs the task's [`Hints::step_cost`]).
    pub fn with_prior_cost(mut self, cost: PriorCost) -> OfflineInstructor {
        self.prior_cost = cost;
        self
    }

    /// An exploration-stage design: uniform, the most different from every design scored
    /// so far (max-min over [`DIVERSE_POOL`] draws), or the one of `prior_pool` new draws
    /// the prior ranks best (with `prior_cost = "matched"`, among those whose step cost is no
    /// higher than the first draw's); never a known hash when avoidable.
    fn explore(&self, h: &Hints, rng: &mut ChaCha8Rng) -> Arch {
        if let (Exploration::Prior, Some(prior)) = (self.exploration, &self.prior) {
            let mut pool = fresh_pool(h, self.prior_pool, || {
                Arch::sample_in(self.space, &self.hyper, rng)
            });
            if let (PriorCost::Matched, Some(cost)) = (self.prior_cost, &h.step_cost) {
                // The first fresh draw is the one uniform sampling would propose; it always
                // stays, so the pool is never emptied.
                let cap = pool.first().map(|a| cost.of(a));
                pool.retain(|a| cap.is_none_or(|c| cost.of(a) <= c));
            }
            if let Some(a) = least(pool, |a| prior.estimate(a)) {
                return a;
            }
        }
        if self.exploration == Exploration::Diverse {
            let seen: Vec<Arch> = h
                .seen
                .iter()
                .filter_map(|e| Arch::from_spec(&e.arch, self.space).ok())
                .collect();
            let fresh = |a: &Arch| !h.known.contains_key(&a.hash());
            if let Some(a) =
                Arch::sample_diverse_in(self.space, &self.hyper, &seen, DIVERSE_POOL, fresh, rng)
            {
                return a;
            }
        }
        Arch::sample_in(self.space, &self.hyper, rng)
    }

    fn rng(&self, h: &Hints) -> ChaCha8Rng {
        let mix = self
            .seed
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(h.request_id.wrapping_mul(0xBF58_476D_1CE4_E5B9))
            .wrapping_add((h.branch as u64).wrapping_mul(0x94D0_49BB_1331_11EB))
            .wrapping_add(h.repair.is_some() as u64);
        ChaCha8Rng::seed_from_u64(mix)
    }

    fn parents(&self, h: &Hints) -> Vec<Arch> {
        h.best
            .iter()
            .filter_map(|s| Arch::from_spec(s, self.space).ok())
            .collect()
    }

    /// One offspring of the best designs: rank-biased parent (the best picked most often),
    /// then a crossover with another of the best or a mutation.
    fn offspring(&self, parents: &[Arch], rng: &mut ChaCha8Rng) -> Arch {
        let n = parents.len();
        let i = (rng.gen::<f64>().powi(2) * n.min(3) as f64) as usize;
        let a = &parents[i.min(n - 1)];
        if n > 1 && rng.gen_bool(0.3) {
            let b = &parents[rng.gen_range(0..n.min(5))];
            a.crossover(b, rng)
                .unwrap_or_else(|| a.mutate_in(&self.hyper, rng))
        } else {
            a.mutate_in(&self.hyper, rng)
        }
    }

    /// A whole new architecture, avoiding known hashes.
    fn propose(&self, h: &Hints, rng: &mut ChaCha8Rng) -> Arch {
        let parents = self.parents(h);
        let optimizing = h.stage == Stage::Optimization && !parents.is_empty();
        if optimizing && self.optimization == Optimization::Guided {
            if let Some(a) = self.guided(h, &parents, rng) {
                return a;
            }
        }
        let mut last = Arch::sample_in(self.space, &self.hyper, rng);
        for _ in 0..64 {
            let cand = if optimizing {
                self.offspring(&parents, rng)
            } else {
                self.explore(h, rng)
            };
            if !h.known.contains_key(&cand.hash()) {
                return cand;
            }
            last = cand;
        }
        last
    }

    /// The surrogate-guided offspring: of up to [`GUIDED_POOL`] new, distinct offspring, the
    /// one a [`ChoiceEffects`] surrogate of the memory bank estimates best. A scored design's
    /// value is its position in the memory bank (best first, so rungs are respected) as a
    /// share: 0 for the best, 1 for the last; a failed one counts as last. The first drawn wins
    /// ties, so the rule stays seeded. None when no new offspring turns up in 64 draws.
    fn guided(&self, h: &Hints, parents: &[Arch], rng: &mut ChaCha8Rng) -> Option<Arch> {
        let pool = fresh_pool(h, GUIDED_POOL, || self.offspring(parents, rng));
        let last = h.seen.len().saturating_sub(1).max(1) as f64;
        let scored: Vec<(Arch, f64)> = h
            .seen
            .iter()
            .enumerate()
            .filter_map(|(i, e)| {
                let share = if e.score.is_some() {
                    i as f64 / last
                } else {
                    1.0
                };
                Arch::from_spec(&e.arch, self.space)
                    .ok()
                    .map(|a| (a, share))
            })
            .collect();
        let effects = ChoiceEffects::fit(&scored);
        least(pool, |a| effects.estimate(a))
    }

    /// The incoming edges of `node` for one tree-of-thought branch, and the hyperparameters
    /// of the design they come from (the output node's thought carries them in the joint space).
    fn step(
        &self,
        h: &Hints,
        node: usize,
        rng: &mut ChaCha8Rng,
    ) -> (Vec<EdgeSpec>, Option<ists::space::Hyper>) {
        let parents = self.parents(h);
        let from_parent = h.stage == Stage::Optimization && !parents.is_empty();
        let arch = if from_parent {
            let p = &parents[h.branch % parents.len().min(3)];
            if rng.gen_bool(0.5) {
                p.mutate_in(&self.hyper, rng)
            } else {
                p.clone()
            }
        } else {
            Arch::sample_in(self.space, &self.hyper, rng)
        };
        let edges: Vec<EdgeSpec> = arch
            .to_spec()
            .edges
            .into_iter()
            .filter(|e| e.to == node as i64)
            .collect();
        if edges.is_empty() {
            // The sampled design skipped this node: connect it from its predecessor.
            let op = self.space.choices()[rng.gen_range(0..self.space.choices().len())];
            let one = Arch {
                space: self.space,
                nodes: arch.nodes,
                edges: vec![ists::space::Edge {
                    from: node - 1,
                    to: node,
                    op,
                }],
                hyper: None,
            };
            return (one.to_spec().edges, arch.hyper);
        }
        (edges, arch.hyper)
    }
}

/// Up to `n` distinct designs from `draw` that are not known yet (at most `max(64, 4n)` draws).
fn fresh_pool(h: &Hints, n: usize, mut draw: impl FnMut() -> Arch) -> Vec<Arch> {
    let mut pool: Vec<(String, Arch)> = Vec::new();
    // Duplicates and known designs are skipped, so allow a few draws per place (at least 64,
    // the bound for the built-in pools), but never loop without end in a small space.
    for _ in 0..n.saturating_mul(4).max(64) {
        if pool.len() >= n {
            break;
        }
        let cand = draw();
        let hash = cand.hash();
        if !h.known.contains_key(&hash) && !pool.iter().any(|(p, _)| *p == hash) {
            pool.push((hash, cand));
        }
    }
    pool.into_iter().map(|(_, a)| a).collect()
}

/// The design of lowest `value`; the first drawn wins ties, so a rule stays seeded.
fn least(pool: Vec<Arch>, value: impl Fn(&Arch) -> f64) -> Option<Arch> {
    let mut best: Option<(f64, Arch)> = None;
    for cand in pool {
        let v = value(&cand);
        if best.as_ref().is_none_or(|(b, _)| v < *b) {
            best = Some((v, cand));
        }
    }
    best.map(|(_, a)| a)
}

impl Actor for OfflineInstructor {
    type Context = Context<Self>;
}

impl Handler<Complete> for OfflineInstructor {
    type Result = Result<Reply, LlmError>;
    fn handle(&mut self, msg: Complete, _: &mut Context<Self>) -> Self::Result {
        let t0 = Instant::now();
        let h = &msg.0.hints;
        let mut rng = self.rng(h);
        let text = match &h.purpose {
            Purpose::Cot => {
                let arch = self.propose(h, &mut rng);
                let mut lines = Vec::new();
                for node in 1..arch.nodes {
                    let ins: Vec<String> = arch
                        .edges
                        .iter()
                        .filter(|e| e.to == node)
                        .map(|e| format!("{} from node {}", e.op.label(self.space), e.from))
                        .collect();
                    let ins = if ins.is_empty() {
                        "unused".to_string()
                    } else {
                        ins.join(", ")
                    };
                    lines.push(format!("Step {node}: node {node} <- {ins}."));
                }
                if let Some(hp) = &arch.hyper {
                    lines.push(format!("Step {}: {}.", arch.nodes, hp.label()));
                }
                lines.push(format!(
                    "Step {}: every edge goes forward, the output is reachable, and the design is new ({} stage).",
                    arch.nodes + arch.hyper.is_some() as usize,
                    h.stage
                ));
                format!("{}\n```json\n{}\n```", lines.join("\n"), arch.to_json())
            }
            Purpose::TotStep {
                node, alternatives, ..
            } => {
                // Distinct alternatives, as the prompt asks: draw until k differ (bounded).
                // At the output node, the joint space's hyperparameters come with the edges.
                let last = *node + 1 == ists::space::DEFAULT_NODES;
                let mut alts: Vec<(Vec<EdgeSpec>, Option<ists::space::Hyper>)> = Vec::new();
                for _ in 0..(*alternatives).max(1) * 8 {
                    if alts.len() >= (*alternatives).max(1) {
                        break;
                    }
                    let (edges, hyper) = self.step(h, *node, &mut rng);
                    let alt = (edges, hyper.filter(|_| last));
                    if !alts.contains(&alt) {
                        alts.push(alt);
                    }
                }
                let idea = match h.stage {
                    Stage::Exploration => "a combination sampled for diversity",
                    Stage::Optimization => "a variation of one of the best designs",
                };
                let items: Vec<serde_json::Value> = alts
                    .into_iter()
                    .map(|(edges, hyper)| match hyper {
                        Some(hp) => {
                            serde_json::json!({ "idea": idea, "edges": edges, "hyper": hp })
                        }
                        None => serde_json::json!({ "idea": idea, "edges": edges }),
                    })
                    .collect();
                let json = serde_json::json!({ "alternatives": items });
                format!("Node {node}:\n```json\n{json}\n```")
            }
            Purpose::TotValue { node, partials } => {
                // The seeded instructor's "judgement" is the memory heuristic, mapped to 1-10.
                let best: Vec<&ists::space::ArchSpec> = h.best.iter().collect();
                let values: Vec<serde_json::Value> = partials
                    .iter()
                    .enumerate()
                    .map(|(i, p)| {
                        let v = heuristic_value(p, *node, &best, h.stage).clamp(0.0, 1.0);
                        serde_json::json!({
                            "candidate": i,
                            "reasoning": format!("{} heuristic", h.stage),
                            "value": 1 + (v * 9.0).round() as i64,
                        })
                    })
                    .collect();
                serde_json::json!({ "values": values }).to_string()
            }
        };
        Ok(Reply {
            text,
            usage: Usage::default(),
            latency_secs: t0.elapsed().as_secs_f64(),
            retries: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn hints(seen: &[Arch], known: &[Arch]) -> Hints {
        let entries = seen
            .iter()
            .enumerate()
            .map(|(id, a)| crate::search::memory::scored_entry(id, a, 1.0 + id as f64))
            .collect();
        let k = crate::messages::KnownSet::default();
        for a in seen.iter().chain(known) {
            k.insert(a.hash(), crate::messages::Known::Recorded);
        }
        Hints {
            purpose: Purpose::Cot,
            stage: Stage::Exploration,
            best: Vec::new(),
            known: k,
            seen: Arc::new(entries),
            request_id: 1,
            branch: 0,
            repair: None,
            avoid: Vec::new(),
            step_cost: None,
        }
    }

    /// Uniform exploration is random search's rule, draw for draw; the diverse rule returns a
    /// design at least as far from everything scored as the uniform draw from the same state,
    /// and never a known one.
    #[test]
    fn exploration_is_uniform_by_default_and_max_min_when_diverse() {
        let hs = HyperSpace {
            hidden: vec![4, 8, 16],
            blocks: vec![1, 2],
            lr_scale: vec![0.25, 1.0, 4.0],
        };
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let seen: Vec<Arch> = (0..6)
            .map(|_| Arch::sample_in(SpaceKind::Ists, &hs, &mut rng))
            .collect();
        let nearest = |a: &Arch| {
            seen.iter()
                .map(|s| a.distance(s))
                .fold(f64::INFINITY, f64::min)
        };
        let uniform = OfflineInstructor::new(SpaceKind::Ists, hs.clone(), 3);
        let diverse = OfflineInstructor::new(SpaceKind::Ists, hs.clone(), 3)
            .with_exploration(Exploration::Diverse);
        let mut farther = 0;
        for seed in 0..20 {
            let first = Arch::sample_in(SpaceKind::Ists, &hs, &mut ChaCha8Rng::seed_from_u64(seed));
            let h = hints(&seen, &[]);
            let u = uniform.explore(&h, &mut ChaCha8Rng::seed_from_u64(seed));
            assert_eq!(u, first, "uniform exploration draws as random search does");
            let d = diverse.explore(&h, &mut ChaCha8Rng::seed_from_u64(seed));
            assert!(nearest(&d) >= nearest(&first), "seed {seed}");
            farther += (nearest(&d) > nearest(&first)) as usize;
            assert!(!h.known.contains_key(&d.hash()));
            // A design already known (in flight) is not proposed again.
            let h = hints(&seen, std::slice::from_ref(&d));
            let again = diverse.explore(&h, &mut ChaCha8Rng::seed_from_u64(seed));
            assert_ne!(again.hash(), d.hash());
        }
        assert!(
            farther >= 15,
            "max-min beat the first draw on {farther} of 20"
        );
    }

    /// In the optimization stage, the guided rule steers away from a choice the memory bank
    /// says is bad: every design scored with the learning-rate factor 0.25 ranks last (on
    /// other wirings than the best designs'), so of
    /// the offspring of the best design the guided rule rarely proposes that factor, where
    /// random offspring often do. Both rules propose only new designs, and with nothing
    /// scored the guided rule still proposes one.
    #[test]
    fn guided_optimization_avoids_what_the_memory_bank_ranks_last() {
        let hs = HyperSpace {
            hidden: vec![8],
            blocks: vec![1],
            lr_scale: vec![0.25, 1.0, 4.0],
        };
        let with_lr = |a: &Arch, lr: f64| {
            let mut a = a.clone();
            a.hyper = Some(ists::space::Hyper {
                hidden: 8,
                blocks: 1,
                lr_scale: lr,
            });
            a
        };
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let wirings: Vec<Arch> = (0..12)
            .map(|_| Arch::sample_in(SpaceKind::Ists, &hs, &mut rng))
            .collect();
        // Best first: four wirings at factor 1, four others at 4, the last four at 0.25. A
        // mutation moves the factor to a neighbouring value, so the best designs' variants at
        // 0.25 (new designs) are one mutation away.
        let seen: Vec<Arch> = wirings
            .iter()
            .enumerate()
            .map(|(i, w)| with_lr(w, [1.0, 4.0, 0.25][i / 4]))
            .collect();
        let mut h = hints(&seen, &[]);
        h.stage = Stage::Optimization;
        h.best = seen[..3].iter().map(|a| a.to_spec()).collect();
        let count_slow = |rule: Optimization, h: &mut Hints| {
            let instr =
                OfflineInstructor::new(SpaceKind::Ists, hs.clone(), 3).with_optimization(rule);
            let mut slow = 0;
            for r in 0..60 {
                h.request_id = r;
                let a = instr.propose(h, &mut instr.rng(h));
                assert!(
                    !h.known.contains_key(&a.hash()),
                    "{rule:?} proposed a known design"
                );
                slow += (a.hyper.as_ref().unwrap().lr_scale == 0.25) as usize;
            }
            slow
        };
        let random = count_slow(Optimization::Mutate, &mut h);
        let guided = count_slow(Optimization::Guided, &mut h);
        assert!(
            random >= 5,
            "random offspring took the factor 0.25 {random} times of 60"
        );
        assert!(
            guided * 4 <= random,
            "guided offspring took the factor 0.25 {guided} times of 60, random ones {random}"
        );
        // Nothing scored yet (parents given): no estimate tells the offspring apart, so the
        // guided rule proposes the first offspring drawn.
        let mut empty = hints(&[], &[]);
        empty.stage = Stage::Optimization;
        empty.best = h.best.clone();
        for r in 0..10 {
            empty.request_id = r;
            let g = OfflineInstructor::new(SpaceKind::Ists, hs.clone(), 3)
                .with_optimization(Optimization::Guided);
            let first = g.offspring(&g.parents(&empty), &mut g.rng(&empty));
            assert_eq!(g.propose(&empty, &mut g.rng(&empty)), first);
        }
    }

    /// With a prior that ranks the learning-rate factor 4 first and 0.25 last (learnt on
    /// other wirings), prior-ranked exploration proposes the factor 4 far more often than
    /// uniform sampling does, and never a known design; without a prior it samples uniformly.
    #[test]
    fn prior_exploration_follows_what_earlier_banks_ranked_best() {
        let hs = HyperSpace {
            hidden: vec![8],
            blocks: vec![1],
            lr_scale: vec![0.25, 1.0, 4.0],
        };
        let mut rng = ChaCha8Rng::seed_from_u64(21);
        let bank: Vec<(Arch, f64)> = (0..30)
            .map(|i| {
                let mut a = Arch::sample_in(SpaceKind::Ists, &hs, &mut rng);
                let lr = [4.0, 1.0, 0.25][i / 10];
                a.hyper.as_mut().unwrap().lr_scale = lr;
                (a, i as f64 / 29.0)
            })
            .collect();
        let prior = Arc::new(Prior::fit(&[bank]));
        let ranked = OfflineInstructor::new(SpaceKind::Ists, hs.clone(), 3)
            .with_exploration(Exploration::Prior)
            .with_prior(Some(prior));
        let unranked = OfflineInstructor::new(SpaceKind::Ists, hs.clone(), 3)
            .with_exploration(Exploration::Prior);
        let (mut fast_ranked, mut fast_uniform) = (0, 0);
        for seed in 0..40 {
            let h = hints(&[], &[]);
            let a = ranked.explore(&h, &mut ChaCha8Rng::seed_from_u64(seed));
            fast_ranked += (a.hyper.as_ref().unwrap().lr_scale == 4.0) as usize;
            let first = Arch::sample_in(SpaceKind::Ists, &hs, &mut ChaCha8Rng::seed_from_u64(seed));
            let u = unranked.explore(&h, &mut ChaCha8Rng::seed_from_u64(seed));
            assert_eq!(u, first, "no prior: uniform, as random search draws");
            fast_uniform += (u.hyper.as_ref().unwrap().lr_scale == 4.0) as usize;
            let h = hints(&[], std::slice::from_ref(&a));
            let again = ranked.explore(&h, &mut ChaCha8Rng::seed_from_u64(seed));
            assert_ne!(
                again.hash(),
                a.hash(),
                "a known design is not proposed again"
            );
        }
        assert!(
            fast_ranked >= 30 && fast_uniform <= 24,
            "factor 4 drawn {fast_ranked} of 40 times with the prior, {fast_uniform} without"
        );
    }

    /// A joint space of three widths, two depths and three learning-rate factors, and a prior
    /// from one bank that ranked the widest designs and the factor 4 best (as the bundled
    /// banks rank them).
    fn wide_and_fast_first() -> (HyperSpace, Arc<Prior>) {
        let hs = HyperSpace {
            hidden: vec![8, 16, 32],
            blocks: vec![1, 2],
            lr_scale: vec![0.25, 1.0, 4.0],
        };
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let bank: Vec<(Arch, f64)> = (0..60)
            .map(|i| {
                let mut a = Arch::sample_in(SpaceKind::Ists, &hs, &mut rng);
                let x = a.hyper.as_mut().unwrap();
                x.lr_scale = [4.0, 1.0, 0.25][i % 3];
                x.hidden = [32, 16, 8][(i / 3) % 3];
                (a, (i % 3) as f64 + ((i / 3) % 3) as f64 + 0.01 * i as f64)
            })
            .collect();
        (hs, Arc::new(Prior::fit(&[bank])))
    }

    /// `search.prior_pool`: a pool of one is uniform sampling (the first draw, whatever the
    /// prior says); a larger pool than the default proposes designs the prior ranks better on
    /// average, and still never a known one.
    #[test]
    fn a_larger_prior_pool_trusts_the_prior_more() {
        let (hs, prior) = wide_and_fast_first();
        let with_pool = |n| {
            OfflineInstructor::new(SpaceKind::Ists, hs.clone(), 3)
                .with_exploration(Exploration::Prior)
                .with_prior(Some(prior.clone()))
                .with_prior_pool(n)
        };
        let (one, eight, big) = (with_pool(1), with_pool(PRIOR_POOL), with_pool(128));
        let (mut sum8, mut sum_big) = (0.0, 0.0);
        for seed in 0..40 {
            let h = hints(&[], &[]);
            let rng = || ChaCha8Rng::seed_from_u64(seed);
            let first = Arch::sample_in(SpaceKind::Ists, &hs, &mut rng());
            assert_eq!(
                one.explore(&h, &mut rng()),
                first,
                "a pool of one is uniform"
            );
            sum8 += prior.estimate(&eight.explore(&h, &mut rng()));
            let a = big.explore(&h, &mut rng());
            sum_big += prior.estimate(&a);
            let known = hints(&[], std::slice::from_ref(&a));
            assert_ne!(big.explore(&known, &mut rng()).hash(), a.hash());
        }
        assert!(
            sum_big < sum8,
            "mean prior estimate with 128 draws {} against {} with {PRIOR_POOL}",
            sum_big / 40.0,
            sum8 / 40.0
        );
    }

    /// `search.prior_cost = "matched"`: each prior-ranked proposal costs no more per step than
    /// the pool's first draw (what uniform sampling proposes), where ignoring cost follows the
    /// prior to wider designs; the prior still steers the choices that cost nothing (here the
    /// learning-rate factor). Without the task's step cost in the hints, it ranks as before.
    #[test]
    fn a_cost_matched_prior_proposes_no_dearer_than_uniform_sampling() {
        let (hs, prior) = wide_and_fast_first();
        let cost = ists::footprint::StepCost::new(
            ists::model::ModelShape {
                nodes: 50,
                in_features: 2,
                input_len: 12,
                horizon: 12,
            },
            ists::model::ModelConfig::default(),
            16,
        );
        let with_cost = |c| {
            OfflineInstructor::new(SpaceKind::Ists, hs.clone(), 3)
                .with_exploration(Exploration::Prior)
                .with_prior(Some(prior.clone()))
                .with_prior_cost(c)
        };
        let (ignore, matched) = (with_cost(PriorCost::Ignore), with_cost(PriorCost::Matched));
        let (mut c_uniform, mut c_ignore, mut c_matched) = (0.0, 0.0, 0.0);
        let (mut e_uniform, mut e_matched) = (0.0, 0.0);
        for seed in 0..40 {
            let mut h = hints(&[], &[]);
            let rng = || ChaCha8Rng::seed_from_u64(seed);
            assert_eq!(
                matched.explore(&h, &mut rng()),
                ignore.explore(&h, &mut rng()),
                "no step cost in the hints: cost is not weighed"
            );
            h.step_cost = Some(cost.clone());
            let first = Arch::sample_in(SpaceKind::Ists, &hs, &mut rng());
            let m = matched.explore(&h, &mut rng());
            assert!(
                cost.of(&m) <= cost.of(&first),
                "seed {seed}: {} > {}",
                cost.of(&m),
                cost.of(&first)
            );
            c_uniform += cost.of(&first);
            c_ignore += cost.of(&ignore.explore(&h, &mut rng()));
            c_matched += cost.of(&m);
            e_uniform += prior.estimate(&first);
            e_matched += prior.estimate(&m);
            let known = hints(&[], std::slice::from_ref(&m));
            let known = Hints {
                step_cost: Some(cost.clone()),
                ..known
            };
            assert_ne!(matched.explore(&known, &mut rng()).hash(), m.hash());
        }
        assert!(
            c_ignore > 1.2 * c_uniform && c_matched < c_uniform,
            "mean step cost: ignoring cost {c_ignore}, matched {c_matched}, uniform {c_uniform}"
        );
        assert!(
            e_matched < e_uniform,
            "mean prior estimate: matched {e_matched}, uniform {e_uniform}"
        );
    }
}
