//! JSON schemas of what the instructor is asked to produce, derived from the search space, for
//! servers that constrain decoding (`response_format` of type `json_schema`).
//!
//! Every possible edge of the 4-node DAG has a fixed slot (`prefixItems`, in the order the
//! chain of thought decides them: into node 1, node 2, node 3), with `from`/`to` constant and
//! `zero` standing for "no edge". A reply that follows the schema therefore cannot hold a
//! duplicate edge, a cycle, a backward edge or an unknown operator; only an empty design or an
//! unreachable output remain possible, and the parser reports those for repair. The schema a
//! chain-of-thought request is sent ([`cot_schema_excluding`]) also rules out the empty design
//! and given designs, so a constrained model can neither propose nothing nor repeat a design
//! it was shown.

use crate::hyper::HyperSpace;
use crate::space::{ArchSpec, SpaceKind, SpatialOp, TemporalOp, DEFAULT_NODES};
use serde_json::{json, Value};

/// The operator names that take a spatial and a temporal part (the ISTS cells).
const CELL_OPS: [&str; 3] = ["STT", "TTS", "STP"];

/// One edge object `from -> to` whose `op` is one of `op` and, for a cell, whose parts are
/// among `cell` (spatial, temporal).
fn slot_object(from: usize, to: usize, op: &[&str], cell: Option<(&[&str], &[&str])>) -> Value {
    // Key order of `properties` is the order the grammar emits (serde_json keeps insertion
    // order: the `preserve_order` feature): from, to, op, then operators.
    let mut props = serde_json::Map::new();
    props.insert("from".into(), json!({"type": "integer", "const": from}));
    props.insert("to".into(), json!({"type": "integer", "const": to}));
    props.insert("op".into(), json!({"type": "string", "enum": op}));
    let mut required: Vec<&str> = vec!["from", "to", "op"];
    if let Some((spatial, temporal)) = cell {
        props.insert("spatial".into(), json!({"type": "string", "enum": spatial}));
        props.insert(
            "temporal".into(),
            json!({"type": "string", "enum": temporal}),
        );
        required.extend(["spatial", "temporal"]);
    }
    json!({"type": "object", "additionalProperties": false,
           "required": required, "properties": props})
}

/// The schema of one edge slot `from -> to`.
fn slot(space: SpaceKind, from: usize, to: usize) -> Value {
    match space {
        SpaceKind::Ists => {
            let spatial = SpatialOp::ALL.map(|o| o.name());
            let temporal = TemporalOp::ALL.map(|o| o.name());
            json!({"anyOf": [
                slot_object(from, to, &CELL_OPS, Some((&spatial, &temporal))),
                slot_object(from, to, &["identity", "zero"], None),
            ]})
        }
        SpaceKind::Autocts => slot_object(from, to, space.op_names(), None),
    }
}

fn edges_object(slots: Vec<Value>) -> Value {
    let n = slots.len();
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["edges"],
        "properties": {"edges": {
            "type": "array", "minItems": n, "maxItems": n, "prefixItems": slots,
        }},
    })
}

/// The schema of a whole architecture: one slot per possible edge.
pub fn arch_schema(space: SpaceKind) -> Value {
    let slots = (1..DEFAULT_NODES)
        .flat_map(|to| (0..to).map(move |from| (from, to)))
        .map(|(from, to)| slot(space, from, to))
        .collect();
    edges_object(slots)
}

/// The schema of one tree-of-thought step: the incoming edge slots of `node`.
pub fn step_schema(space: SpaceKind, node: usize) -> Value {
    edges_object((0..node).map(|from| slot(space, from, node)).collect())
}

/// Longest reasoning text a schema lets the model write per step: two or three sentences (about
/// 75 tokens), so a rambling model cannot spend the whole reply budget on one node.
pub const MAX_REASONING_CHARS: usize = 300;

fn reasoning() -> Value {
    json!({"type": "string", "maxLength": MAX_REASONING_CHARS})
}

/// The schema of a chain-of-thought reply: for each node, in order, the `reasoning` for it
/// *and then* its incoming edge slots, so a grammar-constrained model writes the thought before
/// the decision (key order is emit order). The parser joins the steps' edges into the design.
pub fn cot_schema(space: SpaceKind) -> Value {
    cot_from(
        slot_order()
            .map(|(from, to)| slot(space, from, to))
            .collect(),
    )
}

/// The edge slots in the order a chain-of-thought reply decides them: into node 1, node 2,
/// node 3.
fn slot_order() -> impl Iterator<Item = (usize, usize)> {
    (1..DEFAULT_NODES).flat_map(|to| (0..to).map(move |from| (from, to)))
}

/// A chain-of-thought reply's schema from the schemas of its edge slots (in [`slot_order`]).
fn cot_from(mut slots: Vec<Value>) -> Value {
    let mut steps = Vec::new();
    for node in 1..DEFAULT_NODES {
        let mine: Vec<Value> = slots.drain(..node.min(slots.len())).collect();
        let n = mine.len();
        steps.push(json!({
            "type": "object", "additionalProperties": false,
            "required": ["node", "reasoning", "edges"],
            "properties": {
                "node": {"type": "integer", "const": node},
                "reasoning": reasoning(),
                "edges": {"type": "array", "minItems": n, "maxItems": n, "prefixItems": mine},
            },
        }));
    }
    let n = steps.len();
    json!({
        "type": "object", "additionalProperties": false,
        "required": ["steps"],
        "properties": {"steps": {
            "type": "array", "minItems": n, "maxItems": n, "prefixItems": steps,
        }},
    })
}

/// The value of each decision of a chain-of-thought reply that `design` takes: per edge slot
/// (in [`slot_order`]) `{"op"}` or `{"op", "spatial", "temporal"}` (`zero` where the design has
/// no edge; `none` in the AutoCTS space), then, in a joint-space search, its hidden width, blocks and learning-rate factor.
/// None when the design does not fit that layout (an edge outside the 4-node DAG, two edges on
/// one slot, hyperparameters missing or not asked for).
fn decisions(space: SpaceKind, design: &ArchSpec, hyper: bool) -> Option<Vec<Value>> {
    let no_edge = match space {
        SpaceKind::Ists => "zero",
        SpaceKind::Autocts => "none",
    };
    let mut out = Vec::new();
    for (from, to) in slot_order() {
        let mut on = design
            .edges
            .iter()
            .filter(|e| e.from == from as i64 && e.to == to as i64);
        let value = match (on.next(), on.next()) {
            (None, _) => json!({"op": no_edge}),
            (Some(e), None) => match (&e.spatial, &e.temporal) {
                (Some(sp), Some(tp)) => json!({"op": e.op, "spatial": sp, "temporal": tp}),
                (None, None) => json!({"op": e.op}),
                _ => return None,
            },
            (Some(_), Some(_)) => return None,
        };
        out.push(value);
    }
    let on_slots = design
        .edges
        .iter()
        .filter(|e| e.from >= 0 && e.from < e.to && e.to < DEFAULT_NODES as i64)
        .count();
    if on_slots != design.edges.len() {
        return None;
    }
    match (&design.hyper, hyper) {
        (Some(h), true) => out.extend([json!(h.hidden), json!(h.blocks), json!(h.lr_scale)]),
        (None, false) => {}
        _ => return None,
    }
    Some(out)
}

/// Every value each decision can take (the domains of [`decisions`]).
fn domains(space: SpaceKind, hyper: &HyperSpace) -> Vec<Vec<Value>> {
    let edge: Vec<Value> = match space {
        SpaceKind::Ists => {
            let mut v = Vec::new();
            for op in CELL_OPS {
                for sp in SpatialOp::ALL {
                    for tp in TemporalOp::ALL {
                        v.push(json!({"op": op, "spatial": sp.name(), "temporal": tp.name()}));
                    }
                }
            }
            v.extend(["identity", "zero"].map(|op| json!({"op": op})));
            v
        }
        SpaceKind::Autocts => space
            .op_names()
            .iter()
            .map(|op| json!({"op": op}))
            .collect(),
    };
    let mut out: Vec<Vec<Value>> = slot_order().map(|_| edge.clone()).collect();
    if hyper.is_active() {
        out.push(hyper.hidden.iter().map(|v| json!(v)).collect());
        out.push(hyper.blocks.iter().map(|v| json!(v)).collect());
        out.push(hyper.lr_scale.iter().map(|v| json!(v)).collect());
    }
    out
}

/// The schema of edge slot `from -> to` restricted to `values` (edge values of [`decisions`]),
/// in few objects: the cell operators all of whose parts remain in one object, then per
/// operator its spatial parts whose temporal parts all remain in one, then one per spatial part
/// with the temporal parts that remain; the plain operators in one.
fn slot_among(from: usize, to: usize, values: &[Value]) -> Value {
    let spatial = SpatialOp::ALL.map(|o| o.name());
    let temporal = TemporalOp::ALL.map(|o| o.name());
    let has = |op: &str, sp: &str, tp: &str| {
        values
            .iter()
            .any(|v| v["op"] == op && v["spatial"] == sp && v["temporal"] == tp)
    };
    let mut alts: Vec<Value> = Vec::new();
    let mut whole_ops: Vec<&str> = Vec::new();
    for op in CELL_OPS {
        let tps = |sp: &str| -> Vec<&str> {
            temporal
                .iter()
                .copied()
                .filter(|tp| has(op, sp, tp))
                .collect()
        };
        let whole_sps: Vec<&str> = spatial
            .iter()
            .copied()
            .filter(|sp| tps(sp).len() == temporal.len())
            .collect();
        if whole_sps.len() == spatial.len() {
            whole_ops.push(op);
            continue;
        }
        if !whole_sps.is_empty() {
            alts.push(slot_object(from, to, &[op], Some((&whole_sps, &temporal))));
        }
        for sp in spatial {
            let t = tps(sp);
            if !t.is_empty() && t.len() < temporal.len() {
                alts.push(slot_object(from, to, &[op], Some((&[sp], &t))));
            }
        }
    }
    if !whole_ops.is_empty() {
        alts.insert(
            0,
            slot_object(from, to, &whole_ops, Some((&spatial, &temporal))),
        );
    }
    let plain: Vec<&str> = values
        .iter()
        .filter(|v| v.get("spatial").is_none())
        .filter_map(|v| v["op"].as_str())
        .collect();
    if !plain.is_empty() {
        alts.push(slot_object(from, to, &plain, None));
    }
    match alts.len() {
        1 => alts.remove(0),
        _ => json!({"anyOf": alts}),
    }
}

/// The decision of an edge slot left without an edge.
fn no_edge(space: SpaceKind) -> Value {
    match space {
        SpaceKind::Ists => json!({"op": "zero"}),
        SpaceKind::Autocts => json!({"op": "none"}),
    }
}

/// The chain-of-thought reply schema (with the joint space's `hyper`) whose replies have at
/// least one edge: the plain schema with its `steps` a choice of the slot the first edge is on
/// (the slots before it pinned to no edge). The choice sits below the root, which stays an
/// object, so a server that refuses a choice at the root (OpenAI's strict mode) accepts it.
fn cot_schema_nonempty(space: SpaceKind, hyper: &HyperSpace) -> Value {
    let domains = domains(space, hyper);
    let none = no_edge(space);
    let firsts: Vec<Value> = (0..slot_order().count())
        .map(|first| {
            let on: Vec<Value> = domains[first]
                .iter()
                .filter(|v| **v != none)
                .cloned()
                .collect();
            let slots = slot_order()
                .enumerate()
                .map(|(i, (f, t))| match i.cmp(&first) {
                    std::cmp::Ordering::Less => slot_among(f, t, std::slice::from_ref(&none)),
                    std::cmp::Ordering::Equal => slot_among(f, t, &on),
                    std::cmp::Ordering::Greater => slot(space, f, t),
                })
                .collect();
            cot_from(slots)["properties"]["steps"].take()
        })
        .collect();
    let mut schema = cot_schema(space);
    schema["properties"]["steps"] = json!({ "anyOf": firsts });
    with_hyper(schema, hyper, None)
}

/// Most designs [`cot_schema_excluding`] excludes; more are ignored (each adds up to one
/// alternative per decision to the grammar).
pub const MAX_EXCLUDED: usize = 32;

/// The chain-of-thought reply schema (with the joint space's `hyper`, as [`with_hyper`]) whose
/// every conforming reply has an edge and differs from each of `excluded` in at least one
/// decision, so a grammar-constrained model can neither answer the empty design (which the
/// parser refuses: a small model otherwise spends its repair turns on it) nor repeat a design
/// it was shown. Built as a prefix tree of the excluded decisions: one alternative per tree
/// node and depth, pinning the decisions before it to the node's prefix and the decision at it
/// to the values no excluded design with that prefix takes (the alternatives are disjoint: they
/// part at the first decision that differs from every excluded design). The empty design is
/// excluded as the prefix of its edge slots alone, so with any hyperparameters. Designs that do
/// not fit the layout are ignored; with none left, the schema only rules out the empty design,
/// and its root is an object, not a choice. A design that differs only in edges the canonical
/// form drops (a dead end) still passes the grammar: the parser's duplicate check stays the
/// guard.
pub fn cot_schema_excluding(space: SpaceKind, hyper: &HyperSpace, excluded: &[ArchSpec]) -> Value {
    let active = hyper.is_active();
    let domains = domains(space, hyper);
    let mut designs: Vec<Vec<Value>> = Vec::new();
    for d in excluded.iter().take(MAX_EXCLUDED) {
        let Some(v) = decisions(space, d, active) else {
            continue;
        };
        if v.iter().zip(&domains).all(|(x, dom)| dom.contains(x)) && !designs.contains(&v) {
            designs.push(v);
        }
    }
    if designs.is_empty() {
        return cot_schema_nonempty(space, hyper);
    }
    // The empty design, as the sequence of its edge slots alone (shorter than the others).
    designs.insert(0, slot_order().map(|_| no_edge(space)).collect());
    // Each free slot is defined once and referenced by every alternative that leaves it free.
    let defs: serde_json::Map<String, Value> = slot_order()
        .map(|(f, t)| (format!("slot_{f}_{t}"), slot(space, f, t)))
        .collect();
    let free: Vec<Value> = slot_order()
        .map(|(f, t)| json!({"$ref": format!("#/$defs/slot_{f}_{t}")}))
        .collect();
    let mut alts = Vec::new();
    for depth in 0..domains.len() {
        // The tree's nodes at this depth: each distinct prefix and the values taken after it.
        let mut nodes: Vec<(&[Value], Vec<&Value>)> = Vec::new();
        for d in designs.iter().filter(|d| depth < d.len()) {
            let prefix = &d[..depth];
            match nodes.iter_mut().find(|(p, _)| *p == prefix) {
                Some((_, taken)) if !taken.contains(&&d[depth]) => taken.push(&d[depth]),
                Some(_) => {}
                None => nodes.push((prefix, vec![&d[depth]])),
            }
        }
        for (prefix, taken) in nodes {
            let rest: Vec<Value> = domains[depth]
                .iter()
                .filter(|v| !taken.contains(v))
                .cloned()
                .collect();
            if rest.is_empty() {
                continue;
            }
            // Decision i: pinned to the prefix before `depth`, one of `rest` at it, free after.
            let pick = |i: usize| -> Option<Vec<Value>> {
                match i.cmp(&depth) {
                    std::cmp::Ordering::Less => Some(vec![prefix[i].clone()]),
                    std::cmp::Ordering::Equal => Some(rest.clone()),
                    std::cmp::Ordering::Greater => None,
                }
            };
            let slots: Vec<Value> = slot_order()
                .enumerate()
                .map(|(i, (f, t))| match pick(i) {
                    Some(vals) => slot_among(f, t, &vals),
                    None => free[i].clone(),
                })
                .collect();
            let mut schema = cot_from(slots);
            if active {
                let fields: serde_json::Map<String, Value> = ["hidden", "blocks", "lr_scale"]
                    .iter()
                    .enumerate()
                    .map(|(j, k)| {
                        let i = free.len() + j;
                        let vals = pick(i).unwrap_or_else(|| domains[i].clone());
                        (k.to_string(), json!({"enum": vals}))
                    })
                    .collect();
                schema["properties"]["hyper"] = json!({
                    "type": "object", "additionalProperties": false,
                    "required": ["hidden", "blocks", "lr_scale"], "properties": fields,
                });
                schema["required"] = json!(["steps", "hyper"]);
            }
            alts.push(schema);
        }
    }
    json!({"$defs": defs, "anyOf": alts})
}

/// The schema of a tree-of-thought proposal step: `k` alternative decisions for the incoming
/// edges of `node`, each with its idea written first.
pub fn alternatives_schema(space: SpaceKind, node: usize, k: usize) -> Value {
    let one = {
        let slots: Vec<Value> = (0..node).map(|from| slot(space, from, node)).collect();
        let n = slots.len();
        json!({
            "type": "object", "additionalProperties": false,
            "required": ["idea", "edges"],
            "properties": {
                "idea": reasoning(),
                "edges": {"type": "array", "minItems": n, "maxItems": n, "prefixItems": slots},
            },
        })
    };
    json!({
        "type": "object", "additionalProperties": false,
        "required": ["alternatives"],
        "properties": {"alternatives": {
            "type": "array", "minItems": k, "maxItems": k, "items": one,
        }},
    })
}

/// `schema` (one of the reply schemas above) for a joint-space search: a required `hyper`
/// object whose fields take the offered choices, decided after the wiring (appended last, so a
/// grammar emits it after the reasoning and edges). In an alternatives schema it is added to
/// each alternative when `node` is the output node, as the tree of thought reads it there.
/// Inactive `hyper`: `schema` unchanged.
pub fn with_hyper(
    mut schema: Value,
    hyper: &crate::hyper::HyperSpace,
    node: Option<usize>,
) -> Value {
    if !hyper.is_active() {
        return schema;
    }
    let h = json!({
        "type": "object", "additionalProperties": false,
        "required": ["hidden", "blocks", "lr_scale"],
        "properties": {
            "hidden": {"enum": hyper.hidden},
            "blocks": {"enum": hyper.blocks},
            "lr_scale": {"enum": hyper.lr_scale},
        },
    });
    let target = match node {
        None => Some(&mut schema),
        Some(n) if n + 1 == DEFAULT_NODES => schema.pointer_mut("/properties/alternatives/items"),
        Some(_) => None,
    };
    if let Some(obj) = target {
        if let Some(props) = obj.get_mut("properties").and_then(Value::as_object_mut) {
            props.insert("hyper".into(), h);
        }
        if let Some(req) = obj.get_mut("required").and_then(Value::as_array_mut) {
            req.push(json!("hyper"));
        }
    }
    schema
}

/// The schema of a tree-of-thought value step: for each of `n` partial designs, in order, the
/// reasoning and then a value from 1 (hopeless) to 10 (most promising).
pub fn value_schema(n: usize) -> Value {
    let items: Vec<Value> = (0..n)
        .map(|i| {
            json!({
                "type": "object", "additionalProperties": false,
                "required": ["candidate", "reasoning", "value"],
                "properties": {
                    "candidate": {"type": "integer", "const": i},
                    "reasoning": reasoning(),
                    "value": {"type": "integer", "enum": (1..=10).collect::<Vec<i64>>()},
                },
            })
        })
        .collect();
    json!({
        "type": "object", "additionalProperties": false,
        "required": ["values"],
        "properties": {"values": {
            "type": "array", "minItems": n, "maxItems": n, "prefixItems": items,
        }},
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{parse_edges, parse_reply};

    /// Fills every slot of a schema with the first alternative and the first enum value, so the
    /// test checks that a schema-conforming reply is accepted by the parser as is.
    fn first_instance(schema: &Value) -> Value {
        if let Some(c) = schema.get("const") {
            return c.clone();
        }
        if let Some(e) = schema.get("enum") {
            return e[0].clone();
        }
        if let Some(alts) = schema.get("anyOf") {
            return first_instance(&alts[0]);
        }
        if schema["type"] == "string" {
            return Value::String("because".into());
        }
        if let Some(item) = schema.get("items") {
            let n = schema["minItems"].as_u64().unwrap() as usize;
            return Value::Array(vec![first_instance(item); n]);
        }
        if let Some(items) = schema.get("prefixItems") {
            return Value::Array(
                items
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(first_instance)
                    .collect(),
            );
        }
        let props = schema["properties"].as_object().unwrap();
        Value::Object(
            props
                .iter()
                .map(|(k, v)| (k.clone(), first_instance(v)))
                .collect(),
        )
    }

    #[test]
    fn arch_schema_has_one_slot_per_forward_edge_and_conforming_replies_parse() {
        for space in [SpaceKind::Ists, SpaceKind::Autocts] {
            let s = arch_schema(space);
            let slots = s["properties"]["edges"]["prefixItems"].as_array().unwrap();
            assert_eq!(slots.len(), 6, "{space}");
            let reply = first_instance(&s).to_string();
            let arch = parse_reply(&reply, space).unwrap_or_else(|e| panic!("{space}: {e}"));
            assert_eq!(arch.edges.len(), 6);
        }
        let ops = &arch_schema(SpaceKind::Ists)["properties"]["edges"]["prefixItems"][0]["anyOf"];
        assert_eq!(
            ops[1]["properties"]["op"]["enum"],
            json!(["identity", "zero"])
        );
        assert_eq!(
            ops[0]["properties"]["temporal"]["enum"],
            json!(["linear_attn", "gdcc", "t_trans"])
        );
    }

    #[test]
    fn cot_replies_reason_before_each_decision_and_parse_into_the_design() {
        for space in [SpaceKind::Ists, SpaceKind::Autocts] {
            let s = cot_schema(space);
            let steps = s["properties"]["steps"]["prefixItems"].as_array().unwrap();
            assert_eq!(steps.len(), 3);
            for (i, step) in steps.iter().enumerate() {
                let keys: Vec<&String> = step["properties"].as_object().unwrap().keys().collect();
                assert_eq!(
                    keys,
                    ["node", "reasoning", "edges"],
                    "step {i}: thought first"
                );
            }
            let reply = first_instance(&s).to_string();
            let arch = parse_reply(&reply, space).unwrap_or_else(|e| panic!("{space}: {e}"));
            assert_eq!(arch.edges.len(), 6);
            let why = crate::parse::reasoning(&reply).unwrap();
            assert!(why.starts_with("Node 1: "), "{why}");
        }
    }

    #[test]
    fn alternative_and_value_schemas_fix_their_counts() {
        let s = alternatives_schema(SpaceKind::Ists, 2, 3);
        let reply = first_instance(&s).to_string();
        let alts = crate::parse::parse_alternatives(&reply).unwrap();
        assert_eq!(alts.len(), 3);
        assert!(alts
            .iter()
            .all(|a| a.edges.len() == 2 && a.edges[0].to == 2));
        let v = value_schema(4);
        let reply = first_instance(&v).to_string();
        let values = crate::parse::parse_values(&reply, 4).unwrap();
        assert_eq!(values.len(), 4);
        assert_eq!(values[3].candidate, 3);
        assert_eq!(values[0].value, 1.0);
    }

    #[test]
    fn step_schema_fixes_the_target_node() {
        let s = step_schema(SpaceKind::Ists, 2);
        let reply = first_instance(&s).to_string();
        let edges = parse_edges(&reply).unwrap();
        assert_eq!(edges.len(), 2);
        assert!(edges.iter().all(|e| e.to == 2));
        assert_eq!(edges[1].from, 1);
    }

    #[test]
    fn joint_space_schemas_ask_for_offered_hyperparameters_after_the_wiring() {
        let hs = crate::hyper::HyperSpace {
            hidden: vec![16, 8],
            blocks: vec![1, 2],
            lr_scale: vec![],
        }
        .resolved(32);
        let cot = with_hyper(cot_schema(SpaceKind::Ists), &hs, None);
        let keys: Vec<&String> = cot["properties"].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["steps", "hyper"], "decided after the steps");
        assert_eq!(cot["required"], json!(["steps", "hyper"]));
        assert_eq!(
            cot["properties"]["hyper"]["properties"]["hidden"]["enum"],
            json!([8, 16])
        );
        assert_eq!(
            cot["properties"]["hyper"]["properties"]["lr_scale"]["enum"],
            json!([1.0])
        );
        let out = with_hyper(alternatives_schema(SpaceKind::Ists, 3, 2), &hs, Some(3));
        let item = &out["properties"]["alternatives"]["items"];
        assert_eq!(item["required"], json!(["idea", "edges", "hyper"]));
        let inner = alternatives_schema(SpaceKind::Ists, 2, 2);
        assert_eq!(
            with_hyper(inner.clone(), &hs, Some(2)),
            inner,
            "only the output node"
        );
        let plain = cot_schema(SpaceKind::Ists);
        assert_eq!(with_hyper(plain.clone(), &Default::default(), None), plain);
        // A conforming reply parses into a design with those hyperparameters.
        let reply = r#"{"steps":[{"node":1,"reasoning":"r","edges":[{"from":0,"to":1,"op":"STT"}]},{"node":2,"reasoning":"r","edges":[]},{"node":3,"reasoning":"r","edges":[{"from":1,"to":3,"op":"identity"}]}],"hyper":{"hidden":16,"blocks":2,"lr_scale":1.0}}"#;
        let a = crate::parse::parse_reply(reply, SpaceKind::Ists).unwrap();
        assert_eq!(a.hyper.map(|h| (h.hidden, h.blocks)), Some((16, 2)));
        hs.admit(a.hyper.as_ref()).unwrap();
    }

    /// Whether `v` conforms to `root`, for the subset of JSON schema these schemas use.
    fn admits(root: &Value, v: &Value) -> bool {
        admits_at(root, root, v)
    }

    fn admits_at(root: &Value, s: &Value, v: &Value) -> bool {
        if let Some(r) = s.get("$ref").and_then(Value::as_str) {
            let def = r.strip_prefix("#/$defs/").expect("a local definition");
            return admits_at(root, &root["$defs"][def], v);
        }
        if let Some(alts) = s.get("anyOf") {
            return alts
                .as_array()
                .unwrap()
                .iter()
                .any(|a| admits_at(root, a, v));
        }
        if let Some(c) = s.get("const") {
            return c == v;
        }
        if let Some(e) = s.get("enum") {
            return e.as_array().unwrap().contains(v);
        }
        match s["type"].as_str() {
            Some("string") => v.as_str().is_some_and(|t| {
                s.get("maxLength")
                    .is_none_or(|m| t.chars().count() as u64 <= m.as_u64().unwrap())
            }),
            Some("integer") => v.is_i64(),
            Some("object") => {
                let props = s["properties"].as_object().unwrap();
                let Some(o) = v.as_object() else {
                    return false;
                };
                let required = s["required"].as_array().unwrap();
                o.keys().all(|k| props.contains_key(k))
                    && required.iter().all(|k| o.contains_key(k.as_str().unwrap()))
                    && o.iter().all(|(k, x)| admits_at(root, &props[k], x))
            }
            Some("array") => {
                let Some(a) = v.as_array() else {
                    return false;
                };
                let items = s["prefixItems"].as_array().unwrap();
                a.len() == items.len() && a.iter().zip(items).all(|(x, i)| admits_at(root, i, x))
            }
            other => panic!("schema type {other:?} not covered"),
        }
    }

    /// A chain-of-thought reply that takes `design`'s decisions.
    fn cot_reply(space: SpaceKind, design: &ArchSpec, hyper: bool) -> Value {
        let d = decisions(space, design, hyper).unwrap();
        let mut slots = slot_order().zip(&d);
        let steps: Vec<Value> = (1..DEFAULT_NODES)
            .map(|node| {
                let edges: Vec<Value> = slots
                    .by_ref()
                    .take(node)
                    .map(|((from, to), v)| {
                        let mut e = json!({"from": from, "to": to});
                        for (k, x) in v.as_object().unwrap() {
                            e[k] = x.clone();
                        }
                        e
                    })
                    .collect();
                json!({"node": node, "reasoning": "because", "edges": edges})
            })
            .collect();
        let mut reply = json!({"steps": steps});
        if hyper {
            reply["hyper"] = json!({"hidden": d[6], "blocks": d[7], "lr_scale": d[8]});
        }
        reply
    }

    /// `reply` with no edge on any slot (its reasoning and hyperparameters kept).
    fn emptied(space: SpaceKind, reply: &Value) -> Value {
        let none = no_edge(space);
        let mut out = reply.clone();
        for step in out["steps"].as_array_mut().unwrap() {
            for e in step["edges"].as_array_mut().unwrap() {
                *e = json!({"from": e["from"], "to": e["to"], "op": none["op"]});
            }
        }
        out
    }

    #[test]
    fn the_excluding_schema_refuses_exactly_the_excluded_designs_and_the_empty_one() {
        use crate::space::Arch;
        use rand::SeedableRng;
        let joint = crate::hyper::HyperSpace {
            hidden: vec![8, 16],
            blocks: vec![1, 2],
            lr_scale: vec![0.5, 1.0],
        }
        .resolved(32);
        for (space, hs) in [
            (SpaceKind::Ists, Default::default()),
            (SpaceKind::Ists, joint.clone()),
            (SpaceKind::Autocts, joint),
        ] {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
            let mut designs: Vec<ArchSpec> = Vec::new();
            while designs.len() < 200 {
                let d = Arch::sample_in(space, &hs, &mut rng).canonical().to_spec();
                if !designs.contains(&d) {
                    designs.push(d);
                }
            }
            // Near neighbours of the excluded designs are where a prefix tree can go wrong.
            let excluded: Vec<ArchSpec> = designs[..12].to_vec();
            let mut others: Vec<ArchSpec> = designs[12..].to_vec();
            for d in &excluded {
                let arch = Arch::from_spec(d, space).unwrap();
                others.extend(
                    arch.neighbours_in(&hs)
                        .into_iter()
                        .map(|n| n.canonical().to_spec())
                        .filter(|n| !excluded.contains(n)),
                );
            }
            let schema = cot_schema_excluding(space, &hs, &excluded);
            // At most one alternative per excluded design (and the empty one) and decision (the
            // prefix tree's nodes).
            let alternatives = schema["anyOf"].as_array().unwrap().len();
            assert!(alternatives <= (excluded.len() + 1) * domains(space, &hs).len());
            let plain = with_hyper(cot_schema(space), &hs, None);
            let active = hs.is_active();
            for d in &excluded {
                let reply = cot_reply(space, d, active);
                assert!(
                    admits(&plain, &reply),
                    "{space}: the plain schema admits {reply}"
                );
                assert!(
                    !admits(&schema, &reply),
                    "{space}: excluded yet admitted: {reply}"
                );
            }
            for d in &others {
                let reply = cot_reply(space, d, active);
                assert!(
                    admits(&schema, &reply),
                    "{space}: refused though new: {reply}"
                );
                let back = crate::parse::parse_reply(&reply.to_string(), space).unwrap();
                assert_eq!(back.canonical().to_spec(), *d);
            }
            // Nothing else to exclude: the plain schema's replies but the empty design, with
            // whatever hyperparameters (which the parser refuses in any case).
            let only_empty = cot_schema_excluding(space, &hs, &[]);
            assert!(
                only_empty.get("anyOf").is_none(),
                "{space}: the root is an object"
            );
            for d in excluded.iter().chain(&others) {
                let reply = cot_reply(space, d, active);
                assert!(admits(&only_empty, &reply), "{space}: refused: {reply}");
                let empty = emptied(space, &reply);
                assert!(admits(&plain, &empty), "{space}: {empty}");
                assert!(!admits(&only_empty, &empty), "{space}: admitted {empty}");
                assert!(!admits(&schema, &empty), "{space}: admitted {empty}");
                assert!(crate::parse::parse_reply(&empty.to_string(), space).is_err());
            }
        }
    }
}
