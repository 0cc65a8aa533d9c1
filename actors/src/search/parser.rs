//! ParserActor: turns replies into validated, canonical architectures (or the edges of one
//! tree-of-thought step), and refuses designs already evaluated or in flight. Acceptance
//! reserves the hash in the shared known set atomically, so two concurrent proposals of the
//! same design cannot both pass.

use crate::messages::{Known, KnownSet, ParseArch, ParseStep, Parsed, Rejection, StepThoughts};
use actix::prelude::*;
use dashmap::mapref::entry::Entry;
use ists::parse::{parse_alternatives, parse_reply_reasoned, ParseError};
use ists::space::{edges_key, Arch, ArchError, EdgeSpec, HyperSpace, SpaceKind};

pub struct ParserActor {
    space: SpaceKind,
    /// The joint space's choices (resolved): a design's `hyper` must be one of them.
    hyper: HyperSpace,
    known: KnownSet,
}

impl ParserActor {
    pub fn new(space: SpaceKind, hyper: HyperSpace, known: KnownSet) -> ParserActor {
        ParserActor {
            space,
            hyper,
            known,
        }
    }
}

impl Actor for ParserActor {
    type Context = Context<Self>;
}

impl ParserActor {
    /// The first design one change away from `arch` that nobody has evaluated or reserved, as
    /// JSON: the concrete way out a duplicate's repair turn offers.
    fn nearest_unexplored(&self, arch: &Arch) -> Option<String> {
        arch.neighbours_in(&self.hyper)
            .into_iter()
            .find(|n| !self.known.contains_key(&n.hash()))
            .map(|n| n.to_json())
    }

    /// Validates the incoming edges of `node` one step decides, independently of later steps.
    fn check_step(&self, edges: &[EdgeSpec], node: usize) -> Result<(), Rejection> {
        if edges.is_empty() {
            return Err(Rejection::Invalid(ParseError::Arch(ArchError::Empty)));
        }
        for (i, e) in edges.iter().enumerate() {
            if e.to != node as i64 {
                return Err(Rejection::Invalid(ParseError::Json(format!(
                    "edges[{i}].to: this step decides node {node} only, got {}",
                    e.to
                ))));
            }
        }
        // Validate the operators and sources by checking a one-node design: node `node`
        // connected to the output keeps the check independent of later decisions.
        let mut probe = edges.to_vec();
        if node != 3 {
            probe.push(EdgeSpec {
                from: node as i64,
                to: 3,
                op: "identity".into(),
                spatial: None,
                temporal: None,
            });
        }
        let spec = ists::space::ArchSpec {
            space: None,
            nodes: None,
            edges: probe,
            hyper: None,
        };
        match Arch::from_spec(&spec, self.space) {
            // Reachability is judged on the whole design later, not on one step.
            Ok(_) | Err(ArchError::OutputUnreachable { .. }) => Ok(()),
            Err(e) => Err(Rejection::Invalid(ParseError::Arch(e))),
        }
    }
}

impl Handler<ParseArch> for ParserActor {
    type Result = Result<Parsed, Rejection>;
    fn handle(&mut self, msg: ParseArch, _: &mut Context<Self>) -> Self::Result {
        let (arch, reasoning) =
            parse_reply_reasoned(&msg.reply, self.space).map_err(Rejection::Invalid)?;
        let arch = arch.canonical();
        self.hyper
            .admit(arch.hyper.as_ref())
            .map_err(|m| Rejection::Invalid(ParseError::Arch(ArchError::Hyper(m))))?;
        let hash = arch.hash();
        if self.known.contains_key(&hash) {
            return Err(Rejection::Duplicate {
                hash,
                summary: arch.summary(),
                nearest: self.nearest_unexplored(&arch),
                design: Some(Box::new(arch.to_spec())),
            });
        }
        match self.known.entry(hash.clone()) {
            Entry::Occupied(_) => Err(Rejection::Duplicate {
                hash,
                summary: arch.summary(),
                nearest: None,
                design: Some(Box::new(arch.to_spec())),
            }),
            Entry::Vacant(v) => {
                v.insert(Known::InFlight(std::sync::Arc::new(arch.to_spec())));
                Ok(Parsed { arch, reasoning })
            }
        }
    }
}

impl Handler<ParseStep> for ParserActor {
    type Result = Result<StepThoughts, Rejection>;
    fn handle(&mut self, msg: ParseStep, _: &mut Context<Self>) -> Self::Result {
        let alternatives = parse_alternatives(&msg.reply).map_err(Rejection::Invalid)?;
        let mut out = StepThoughts::default();
        let mut seen = std::collections::HashSet::new();
        for (i, t) in alternatives.into_iter().enumerate() {
            if let Err(r) = self.check_step(&t.edges, msg.node) {
                out.rejected.push(match r {
                    Rejection::Invalid(e) => {
                        Rejection::Invalid(ParseError::Json(format!("alternative {}: {e}", i + 1)))
                    }
                    other => other,
                });
                continue;
            }
            // Siblings that decide the same edges are one thought, not two.
            if seen.insert(edges_key(&t.edges)) {
                out.thoughts.push(t);
            } else {
                out.rejected
                    .push(Rejection::Repeated { alternative: i + 1 });
            }
        }
        if out.thoughts.is_empty() {
            return Err(out
                .rejected
                .into_iter()
                .next()
                .unwrap_or(Rejection::Invalid(ParseError::Arch(ArchError::Empty))));
        }
        Ok(out)
    }
}
