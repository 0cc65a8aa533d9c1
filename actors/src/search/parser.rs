//! ParserActor: turns replies into validated, canonical architectures (or the edges of one
//! tree-of-thought step), and refuses designs already evaluated or in flight. Acceptance
//! reserves the hash in the shared known set atomically, so two concurrent proposals of the
//! same design cannot both pass.

use crate::messages::{Known, KnownSet, ParseArch, ParseStep, Rejection};
use actix::prelude::*;
use dashmap::mapref::entry::Entry;
use ists::parse::{parse_edges, parse_reply, ParseError};
use ists::space::{Arch, ArchError, EdgeSpec, SpaceKind};

pub struct ParserActor {
    space: SpaceKind,
    known: KnownSet,
}

impl ParserActor {
    pub fn new(space: SpaceKind, known: KnownSet) -> ParserActor {
        ParserActor { space, known }
    }
}

impl Actor for ParserActor {
    type Context = Context<Self>;
}

impl Handler<ParseArch> for ParserActor {
    type Result = Result<Arch, Rejection>;
    fn handle(&mut self, msg: ParseArch, _: &mut Context<Self>) -> Self::Result {
        let arch = parse_reply(&msg.reply, self.space)
            .map_err(Rejection::Invalid)?
            .canonical();
        let hash = arch.hash();
        match self.known.entry(hash.clone()) {
            Entry::Occupied(_) => Err(Rejection::Duplicate { hash }),
            Entry::Vacant(v) => {
                v.insert(Known::InFlight);
                Ok(arch)
            }
        }
    }
}

impl Handler<ParseStep> for ParserActor {
    type Result = Result<Vec<EdgeSpec>, Rejection>;
    fn handle(&mut self, msg: ParseStep, _: &mut Context<Self>) -> Self::Result {
        let edges = parse_edges(&msg.reply).map_err(Rejection::Invalid)?;
        if edges.is_empty() {
            return Err(Rejection::Invalid(ParseError::Arch(ArchError::Empty)));
        }
        for (i, e) in edges.iter().enumerate() {
            if e.to != msg.node as i64 {
                return Err(Rejection::Invalid(ParseError::Json(format!(
                    "edges[{i}].to: this step decides node {} only, got {}",
                    msg.node, e.to
                ))));
            }
        }
        // Validate the operators and sources by checking a one-node design: node `node`
        // connected to the output keeps the check independent of later decisions.
        let mut probe = edges.clone();
        if msg.node != 3 {
            probe.push(EdgeSpec {
                from: msg.node as i64,
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
        };
        match Arch::from_spec(&spec, self.space) {
            // Reachability is judged on the whole design later, not on one step.
            Ok(_) | Err(ArchError::OutputUnreachable { .. }) => Ok(edges),
            Err(e) => Err(Rejection::Invalid(ParseError::Arch(e))),
        }
    }
}
