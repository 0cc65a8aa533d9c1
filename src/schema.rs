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
        // Key order of `properties` is the order the grammar emits: from, to, op, then operators.
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
    fn step_schema_fixes_the_target_node() {
        let s = step_schema(SpaceKind::Ists, 2);
        let reply = first_instance(&s).to_string();
        let edges = parse_edges(&reply).unwrap();
        assert_eq!(edges.len(), 2);
        assert!(edges.iter().all(|e| e.to == 2));
        assert_eq!(edges[1].from, 1);
    }
}
