//! Successive-halving rungs inside a search, asynchronous as in ASHA (Li et al., 2020): every
//! candidate is scored by the proxy (rung 0); whenever a candidate is among the best `1/eta`
//! of those that finished rung `r`, it is trained again for `eta` times the steps (rung
//! `r + 1`), up to `levels` rungs above the proxy. Scores at a higher rung are more faithful
//! (the fidelity study in BENCHMARKS.md), so the memory bank ranks entries by the highest rung
//! they reached, then by score. This module only decides; the search evaluates.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// The rungs of a search.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RungSettings {
    /// Rungs above the proxy (0 = off: every candidate gets the proxy only).
    pub levels: usize,
    /// Reduction factor: the best 1/eta of a rung are promoted, with eta times the steps.
    pub eta: usize,
    /// Under a step budget (`search.budget_steps`), keep back the steps that carry one
    /// candidate from the proxy to the top rung ([`RungSettings::reserve_steps`]). Without it, a
    /// strong candidate that arrives late finds the budget spent on newer proxy runs and can
    /// never climb, and the final choice, which ranks the highest rung first, cannot be it.
    /// With it, new candidates stop once only the reserve is left; when the last proxy runs
    /// have finished, the reserve goes to promotions: those due first, then the best
    /// candidate not yet promoted whatever its rung's quota ([`Ladder::next_leftover`]), so
    /// the whole budget is spent either way.
    pub reserve: bool,
}

impl Default for RungSettings {
    fn default() -> Self {
        RungSettings {
            levels: 0,
            eta: 3,
            reserve: false,
        }
    }
}

impl RungSettings {
    /// Optimizer steps of rung `rung` for a proxy of `proxy_steps` steps (saturating).
    pub fn steps(&self, proxy_steps: usize, rung: usize) -> usize {
        let factor = (self.eta.max(1) as u64).saturating_pow(rung as u32);
        (proxy_steps as u64)
            .saturating_mul(factor)
            .min(usize::MAX as u64) as usize
    }

    /// The steps [`RungSettings::reserve`] keeps back: one climb from the proxy to the top
    /// rung (0 when the reserve or the rungs are off).
    pub fn reserve_steps(&self, proxy_steps: usize) -> u64 {
        if !self.reserve {
            return 0;
        }
        (1..=self.levels)
            .map(|r| self.steps(proxy_steps, r) as u64)
            .fold(0u64, u64::saturating_add)
    }
}

/// A candidate's scores, one per rung it finished (None where that run diverged or failed).
#[derive(Debug, Clone, Default)]
struct Climb {
    id: usize,
    scores: Vec<Option<f64>>,
    in_flight: bool,
}

/// A promotion the search should evaluate next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Promotion {
    pub id: usize,
    pub hash: String,
    /// The rung to evaluate (>= 1).
    pub rung: usize,
}

/// Which candidates finished which rung, and who is promoted next.
#[derive(Debug, Clone)]
pub struct Ladder {
    settings: RungSettings,
    climbs: HashMap<String, Climb>,
}

impl Ladder {
    pub fn new(settings: RungSettings) -> Ladder {
        Ladder {
            settings,
            climbs: HashMap::new(),
        }
    }

    /// Records the result of `hash` (candidate `id`) at `rung`. Results may arrive for a rung
    /// below one already recorded (a replayed journal): each rung keeps its own score.
    pub fn record(&mut self, id: usize, hash: &str, rung: usize, score: Option<f64>) {
        let c = self.climbs.entry(hash.to_string()).or_default();
        c.id = id;
        if c.scores.len() <= rung {
            c.scores.resize(rung + 1, None);
        }
        c.scores[rung] = score;
        c.in_flight = false;
    }

    /// A promotion given back unevaluated (the search stopped): it may be chosen again.
    pub fn release(&mut self, hash: &str) {
        if let Some(c) = self.climbs.get_mut(hash) {
            c.in_flight = false;
        }
    }

    /// The next promotion, if any candidate qualifies (higher rungs first, then the best
    /// score) and `affordable` accepts its rung; it is marked in flight until
    /// [`Ladder::record`] or [`Ladder::release`].
    pub fn next_promotion(&mut self, affordable: impl Fn(usize) -> bool) -> Option<Promotion> {
        let p = self.peek().filter(|p| affordable(p.rung));
        self.take(p)
    }

    /// Marks `p`'s candidate in flight (until [`Ladder::record`] or [`Ladder::release`]).
    fn take(&mut self, p: Option<Promotion>) -> Option<Promotion> {
        let p = p?;
        if let Some(c) = self.climbs.get_mut(&p.hash) {
            c.in_flight = true;
        }
        Some(p)
    }

    /// Whether a promotion that `affordable` accepts is waiting (without taking it).
    pub fn pending(&self, affordable: impl Fn(usize) -> bool) -> bool {
        self.peek().is_some_and(|p| affordable(p.rung))
    }

    /// For the end of a budget that kept a reserve: the promotion due, or else the best
    /// candidate not yet promoted whatever its rung's quota (the highest rung below the top
    /// first, then the best score, ties by candidate id), if `affordable` accepts its rung;
    /// marked in flight like [`Ladder::next_promotion`].
    pub fn next_leftover(&mut self, affordable: impl Fn(usize) -> bool) -> Option<Promotion> {
        let p = self
            .peek()
            .or_else(|| self.peek_leftover())
            .filter(|p| affordable(p.rung));
        self.take(p)
    }

    /// Whether [`Ladder::next_leftover`] would give a promotion (without taking it).
    pub fn leftover_pending(&self, affordable: impl Fn(usize) -> bool) -> bool {
        self.peek()
            .or_else(|| self.peek_leftover())
            .is_some_and(|p| affordable(p.rung))
    }

    fn peek_leftover(&self) -> Option<Promotion> {
        (0..self.settings.levels).rev().find_map(|rung| {
            self.climbs
                .iter()
                .filter(|(_, c)| c.scores.len() == rung + 1 && !c.in_flight)
                .filter_map(|(h, c)| c.scores[rung].map(|s| (h, c, s)))
                .min_by(|a, b| a.2.total_cmp(&b.2).then(a.1.id.cmp(&b.1.id)))
                .map(|(h, c, _)| Promotion {
                    id: c.id,
                    hash: h.clone(),
                    rung: rung + 1,
                })
        })
    }

    /// Promotions in flight.
    pub fn in_flight(&self) -> usize {
        self.climbs.values().filter(|c| c.in_flight).count()
    }

    fn peek(&self) -> Option<Promotion> {
        let eta = self.settings.eta.max(2);
        for rung in (0..self.settings.levels).rev() {
            // Everyone who finished `rung` with a score, best first (ties by candidate id).
            let mut done: Vec<(&String, &Climb, f64)> = self
                .climbs
                .iter()
                .filter_map(|(h, c)| c.scores.get(rung).copied().flatten().map(|s| (h, c, s)))
                .collect();
            done.sort_by(|a, b| a.2.total_cmp(&b.2).then(a.1.id.cmp(&b.1.id)));
            let top = done.len() / eta;
            if let Some((h, c, _)) = done
                .into_iter()
                .take(top)
                .find(|(_, c, _)| c.scores.len() == rung + 1 && !c.in_flight)
            {
                return Some(Promotion {
                    id: c.id,
                    hash: h.clone(),
                    rung: rung + 1,
                });
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ladder(levels: usize, eta: usize) -> Ladder {
        Ladder::new(RungSettings {
            levels,
            eta,
            ..RungSettings::default()
        })
    }

    #[test]
    fn the_best_third_climbs_one_rung_at_a_time() {
        let mut l = ladder(2, 3);
        for (id, s) in [(0, 5.0), (1, 3.0)] {
            l.record(id, &format!("h{id}"), 0, Some(s));
        }
        assert!(
            !l.pending(|_| true),
            "two finished: the top third is nobody"
        );
        l.record(2, "h2", 0, Some(4.0));
        let p = l.next_promotion(|_| true).unwrap();
        assert_eq!(
            p,
            Promotion {
                id: 1,
                hash: "h1".into(),
                rung: 1
            }
        );
        assert_eq!(l.in_flight(), 1);
        assert!(
            l.next_promotion(|_| true).is_none(),
            "in flight is not promoted twice"
        );
        l.record(1, "h1", 1, Some(2.5));
        assert!(
            !l.pending(|_| true),
            "one finished rung 1: nobody climbs to rung 2 yet"
        );
        for (id, s) in [(3, 1.0), (4, 9.0), (5, 8.0)] {
            l.record(id, &format!("h{id}"), 0, Some(s));
        }
        // Six finished rung 0: the top two are h3 (1.0) and h1 (already promoted).
        assert_eq!(l.next_promotion(|_| true).unwrap().hash, "h3");
        l.record(3, "h3", 1, Some(2.0));
        assert!(!l.pending(|_| true));
        // A diverged run never qualifies.
        for id in 6..9 {
            l.record(id, &format!("h{id}"), 0, None);
        }
        assert!(!l.pending(|_| true));
        for (id, s) in [(9, 7.0), (10, 7.5), (11, 6.0)] {
            l.record(id, &format!("h{id}"), 0, Some(s));
        }
        // Nine scored at rung 0: top three h3, h1, h2.
        assert_eq!(l.next_promotion(|_| true).unwrap().hash, "h2");
        l.record(2, "h2", 1, Some(3.5));
        // Three at rung 1 (h3 2.0, h1 2.5, h2 3.5): h3 climbs to rung 2, first.
        assert_eq!(
            l.next_promotion(|_| true).unwrap(),
            Promotion {
                id: 3,
                hash: "h3".into(),
                rung: 2
            }
        );
        l.record(3, "h3", 2, Some(1.5));
        assert!(!l.pending(|_| true), "rung 2 is the top (levels = 2)");
    }

    #[test]
    fn off_promotes_nobody_and_release_gives_back() {
        let mut l = ladder(0, 3);
        for id in 0..9 {
            l.record(id, &format!("h{id}"), 0, Some(id as f64));
        }
        assert!(!l.pending(|_| true));
        let mut l = ladder(1, 2);
        l.record(0, "a", 0, Some(1.0));
        l.record(1, "b", 0, Some(2.0));
        assert_eq!(l.next_promotion(|_| true).unwrap().hash, "a");
        l.release("a");
        assert_eq!(l.next_promotion(|_| true).unwrap().hash, "a");
        l.release("a");
        assert!(
            l.next_promotion(|rung| rung < 1).is_none(),
            "not affordable"
        );
        assert!(!l.pending(|rung| rung < 1) && l.pending(|_| true));
    }

    #[test]
    fn steps_grow_by_eta_and_saturate() {
        let r = RungSettings {
            levels: 2,
            eta: 3,
            ..RungSettings::default()
        };
        assert_eq!(
            (r.steps(30, 0), r.steps(30, 1), r.steps(30, 2)),
            (30, 90, 270)
        );
        assert_eq!(r.steps(usize::MAX, 3), usize::MAX);
        // The reserve is one climb to the top: 90 + 270.
        assert_eq!(r.reserve_steps(30), 0, "off by default");
        let on = RungSettings { reserve: true, ..r };
        assert_eq!(on.reserve_steps(30), 360);
        let flat = RungSettings { levels: 0, ..on };
        assert_eq!(flat.reserve_steps(30), 0);
    }

    /// The leftover promotion is the due one when there is one, else the best candidate not
    /// yet promoted at the highest rung below the top, outside the quota; never one in flight,
    /// already promoted, or without a score.
    #[test]
    fn leftovers_are_the_best_unpromoted_whatever_the_quota() {
        let mut l = ladder(2, 3);
        for (id, s) in [(0, 5.0), (1, 3.0), (2, 4.0), (3, 6.0)] {
            l.record(id, &format!("h{id}"), 0, Some(s));
        }
        l.record(4, "h4", 0, None);
        // The top third of four is h1: due.
        let due = l.next_leftover(|_| true).unwrap();
        assert_eq!((due.hash.as_str(), due.rung), ("h1", 1));
        assert!(!l.pending(|_| true), "nothing else is due by quota");
        // h1 in flight: the best unpromoted outside the quota is h2.
        let next = l.next_leftover(|_| true).unwrap();
        assert_eq!((next.hash.as_str(), next.rung), ("h2", 1));
        l.record(1, "h1", 1, Some(2.0));
        // h1 at rung 1 (the highest below the top) comes before any rung-0 candidate.
        assert!(l.leftover_pending(|r| r == 2));
        let top = l.next_leftover(|_| true).unwrap();
        assert_eq!((top.hash.as_str(), top.rung), ("h1", 2));
        l.record(1, "h1", 2, Some(1.0));
        l.record(2, "h2", 1, Some(3.5));
        let after = l.next_leftover(|_| true).unwrap();
        assert_eq!((after.hash.as_str(), after.rung), ("h2", 2));
        // What `affordable` refuses is not given.
        l.release("h2");
        assert!(!l.leftover_pending(|r| r == 1));
        assert!(l.next_leftover(|r| r == 1).is_none());
    }
}
