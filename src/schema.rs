//! JSON schemas of what the instructor is asked to produce, derived from the search space, for
//! servers that constrain decoding (`response_format` of type `json_schema`).
//!
//! Every possible edge of the 4-node DAG has a fixed slot (`prefixItems`, in the order the
//! chain of thought decides them: into node 1, node 2, node 3), with `from`/`to` constant and
//! `zero` standing for "no edge". A reply that follows the schema therefore cannot hold a
//! duplicate edge, a cycle, a backward edge or an unknown operator; only an empty design or an
//! unreachable output remain possible, and the parser reports those for repair.

use crate::space::{SpaceKind, SpatialOp, TemporalOp, DEFAULT_NODES};
use serde_json::{json, Value};

/// The schema of one edge slot `from -> to`.
fn slot(space: SpaceKind, from: usize, to: usize) -> Value {
    let ends = |props: &mut serde_json::Map<String, Value>| {
        props.insert("from".into(), json!({"type": "integer", "const": from}));
        props.insert("to".into(), json!({"type": "integer", "const": to}));
    };
    let object = |mut props: serde_json::Map<String, Value>, op: Vec<&str>| {
        ends(&mut props);
        props.insert("op".into(), json!({"type": "string", "enum": op}));
        let mut required: Vec<&str> = vec!["from", "to", "op"];
        for k in ["spatial", "temporal"] {
            if props.contains_key(k) {
                required.push(k);
            }
        }
        // Key order of `properties` is the order the grammar emits (serde_json keeps insertion
        // order: the `preserve_order` feature): from, to, op, then operators.
        let ordered: serde_json::Map<String, Value> = ["from", "to", "op", "spatial", "temporal"]
            .iter()
            .filter_map(|k| props.get(*k).map(|v| (k.to_string(), v.clone())))
            .collect();
        json!({"type": "object", "additionalProperties": false,
               "required": required, "properties": ordered})
    };
    match space {
        SpaceKind::Ists => {
            let mut cell = serde_json::Map::new();
            cell.insert(
                "spatial".into(),
                json!({"type": "string", "enum": SpatialOp::ALL.map(|o| o.name())}),
            );
            cell.insert(
                "temporal".into(),
                json!({"type": "string", "enum": TemporalOp::ALL.map(|o| o.name())}),
            );
            json!({"anyOf": [
                object(cell, vec!["STT", "TTS", "STP"]),
                object(serde_json::Map::new(), vec!["identity", "zero"]),
            ]})
        }
        SpaceKind::Autocts => object(serde_json::Map::new(), space.op_names().to_vec()),
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
    let steps: Vec<Value> = (1..DEFAULT_NODES)
        .map(|node| {
            let slots: Vec<Value> = (0..node).map(|from| slot(space, from, node)).collect();
            let n = slots.len();
            json!({
                "type": "object", "additionalProperties": false,
                "required": ["node", "reasoning", "edges"],
                "properties": {
                    "node": {"type": "integer", "const": node},
                    "reasoning": reasoning(),
                    "edges": {"type": "array", "minItems": n, "maxItems": n, "prefixItems": slots},
                },
            })
        })
        .collect();
    let n = steps.len();
    json!({
        "type": "object", "additionalProperties": false,
        "required": ["steps"],
        "properties": {"steps": {
            "type": "array", "minItems": n, "maxItems": n, "prefixItems": steps,
        }},
    })
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
}
