//! Extraction of an architecture from an instructor's reply: the JSON may sit inside prose or
//! markdown fences, may be wrapped in `{"architecture": ...}`, and must validate against the
//! search space. Errors are precise so that the repair prompt can quote them.

use crate::space::{Arch, ArchError, ArchSpec, EdgeSpec, Hyper, SpaceKind};
use serde_json::Value;

/// Replies longer than this are refused before any parsing (a runaway model or a hostile server).
pub const MAX_REPLY_BYTES: usize = 256 * 1024;

/// Why a reply did not yield an architecture.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParseError {
    #[error("the reply is empty")]
    Empty,
    #[error("the reply is {0} bytes, over the {MAX_REPLY_BYTES}-byte limit")]
    TooLong(usize),
    #[error("no JSON object with an \"edges\" list was found in the reply")]
    NoJson,
    #[error("the JSON in the reply is malformed: {0}")]
    Json(String),
    #[error("{0}")]
    Arch(#[from] ArchError),
}

impl ParseError {
    /// A short, stable name of the failure kind, for counters.
    pub fn kind(&self) -> &'static str {
        match self {
            ParseError::Empty => "empty",
            ParseError::TooLong(_) => "too_long",
            ParseError::NoJson => "no_json",
            ParseError::Json(_) => "invalid_json",
            ParseError::Arch(ArchError::UnknownOp { .. }) => "unknown_operator",
            ParseError::Arch(ArchError::Cycle(_)) => "cycle",
            ParseError::Arch(_) => "invalid_architecture",
        }
    }
}

/// Every balanced `{...}` span of `text`, honouring JSON strings and escapes.
fn object_spans(text: &str) -> Vec<&str> {
    let bytes = text.as_bytes();
    let mut spans = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'{' {
            let (mut depth, mut in_str, mut esc) = (0usize, false, false);
            let mut end = None;
            for (j, &c) in bytes.iter().enumerate().skip(i) {
                if in_str {
                    match (esc, c) {
                        (true, _) => esc = false,
                        (false, b'\\') => esc = true,
                        (false, b'"') => in_str = false,
                        _ => {}
                    }
                    continue;
                }
                match c {
                    b'"' => in_str = true,
                    b'{' => depth += 1,
                    b'}' => {
                        depth -= 1;
                        if depth == 0 {
                            end = Some(j);
                            break;
                        }
                    }
                    _ => {}
                }
            }
            match end {
                Some(j) => {
                    spans.push(&text[i..=j]);
                    i = j + 1;
                }
                // Unbalanced: a truncated object. Keep it so the error says "malformed".
                None => {
                    spans.push(&text[i..]);
                    break;
                }
            }
        } else {
            i += 1;
        }
    }
    spans
}

/// Finds the architecture object in `value`: itself, under `architecture`/`arch`/`design`, or
/// the `steps` of a chain-of-thought reply (each step's edges joined, in order; the joint
/// space's `hyper` taken from the top level or from the step that gives it).
fn arch_value(v: &Value) -> Option<Value> {
    let obj = v.as_object()?;
    if obj.contains_key("edges") {
        return Some(v.clone());
    }
    if let Some(Value::Array(steps)) = obj.get("steps") {
        let parts: Vec<&Vec<Value>> = steps
            .iter()
            .filter_map(|st| st.get("edges").and_then(Value::as_array))
            .collect();
        if !parts.is_empty() {
            let edges: Vec<Value> = parts.into_iter().flatten().cloned().collect();
            let hyper = obj
                .get("hyper")
                .or_else(|| steps.iter().rev().find_map(|st| st.get("hyper")));
            return Some(match hyper {
                Some(h) => serde_json::json!({ "edges": edges, "hyper": h }),
                None => serde_json::json!({ "edges": edges }),
            });
        }
    }
    ["architecture", "arch", "design"]
        .iter()
        .find_map(|k| obj.get(*k).and_then(arch_value))
}

/// The JSON text of the architecture in `reply`: the last object that holds an `edges` list
/// (a reasoning model often shows drafts before its final answer).
pub fn extract(reply: &str) -> Result<Value, ParseError> {
    scan(reply).0
}

/// One pass over the JSON objects of `reply`, last first, each parsed once: the architecture
/// value ([`extract`]) and the reasoning ([`reasoning`]). The reasoning is settled at or before
/// the object the architecture comes from (see [`reasoning_at`]), so one pass serves both.
fn scan(reply: &str) -> (Result<Value, ParseError>, Option<String>) {
    if reply.trim().is_empty() {
        return (Err(ParseError::Empty), None);
    }
    if reply.len() > MAX_REPLY_BYTES {
        return (Err(ParseError::TooLong(reply.len())), None);
    }
    let mut first_err = None;
    let mut why: Option<Option<String>> = None;
    for span in object_spans(reply).into_iter().rev() {
        match serde_json::from_str::<Value>(span) {
            Ok(v) => {
                let arch = arch_value(&v);
                if why.is_none() {
                    why = reasoning_at(reply, span, &v, arch.is_some());
                }
                if let Some(a) = arch {
                    return (Ok(a), why.flatten());
                }
            }
            Err(e) => {
                if span.contains("\"edges\"") && first_err.is_none() {
                    first_err = Some(ParseError::Json(e.to_string()));
                }
            }
        }
    }
    (Err(first_err.unwrap_or(ParseError::NoJson)), why.flatten())
}

/// Validates the architecture value [`extract`] found.
fn arch_of(v: &Value, space: SpaceKind) -> Result<Arch, ParseError> {
    let spec: ArchSpec =
        serde_json::from_value(known_keys(v)).map_err(|e| ParseError::Json(e.to_string()))?;
    Ok(Arch::from_spec(&spec, space)?)
}

/// Extracts and validates the architecture of a reply.
pub fn parse_reply(reply: &str, space: SpaceKind) -> Result<Arch, ParseError> {
    arch_of(&extract(reply)?, space)
}

/// [`parse_reply`] and [`reasoning`] in one pass over the reply.
pub fn parse_reply_reasoned(
    reply: &str,
    space: SpaceKind,
) -> Result<(Arch, Option<String>), ParseError> {
    let (v, why) = scan(reply);
    Ok((arch_of(&v?, space)?, why))
}

/// Keeps only the keys of the architecture schema: models like to add a "reason" here and
/// there, which is harmless and not worth a repair round.
fn known_keys(v: &Value) -> Value {
    let keep = |v: &Value, keys: &[&str]| -> Value {
        match v.as_object() {
            Some(o) => Value::Object(
                o.iter()
                    .filter(|(k, _)| keys.contains(&k.as_str()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
            None => v.clone(),
        }
    };
    let mut top = keep(v, &["space", "nodes", "edges", "hyper"]);
    if let Some(Value::Array(edges)) = top.get_mut("edges") {
        for e in edges.iter_mut() {
            *e = keep(e, &["from", "to", "op", "spatial", "temporal"]);
        }
    }
    top
}

/// Extracts the incoming edges a tree-of-thought step proposes for one node.
pub fn parse_edges(reply: &str) -> Result<Vec<EdgeSpec>, ParseError> {
    let v = extract(reply)?;
    let edges = known_keys(&v).get("edges").cloned().unwrap_or(Value::Null);
    serde_json::from_value(edges).map_err(|e| ParseError::Json(e.to_string()))
}

/// Longest reasoning kept from one reply (the rest of a runaway text is not worth storing).
pub const MAX_REASONING_KEPT: usize = 4000;

/// The reasoning of a reply, if it shows any: the `reasoning` of each step of a structured
/// chain-of-thought reply ("Node k: ..." lines), or else the prose written before the final
/// JSON (fences removed). Kept with the candidate, shown in the dashboard and report.
pub fn reasoning(reply: &str) -> Option<String> {
    scan(reply).1
}

/// The reasoning object `v` (the text `span` of `reply`) settles, if it settles it: its steps'
/// reasoning lines, or, when it is a design (`is_arch`), the prose before it (None when there is
/// none). Not settled (None): an object that is neither, so an earlier one is looked at.
fn reasoning_at(reply: &str, span: &str, v: &Value, is_arch: bool) -> Option<Option<String>> {
    if let Some(Value::Array(steps)) = v.get("steps") {
        let lines: Vec<String> = steps
            .iter()
            .filter_map(|st| {
                let why = st.get("reasoning")?.as_str()?.trim();
                let node = st.get("node").and_then(Value::as_i64);
                (!why.is_empty()).then(|| match node {
                    Some(n) => format!("Node {n}: {why}"),
                    None => why.to_string(),
                })
            })
            .collect();
        if !lines.is_empty() {
            return Some(Some(cap(lines.join("\n"))));
        }
    }
    if !is_arch {
        return None;
    }
    // Prose before the design: the text reasoning of a model without a schema.
    let start = span.as_ptr() as usize - reply.as_ptr() as usize;
    let before = reply[..start].trim_end();
    let before = before
        .strip_suffix("```json")
        .or_else(|| before.strip_suffix("```"))
        .unwrap_or(before)
        .trim();
    Some((!before.is_empty()).then(|| cap(before.to_string())))
}

fn cap(mut s: String) -> String {
    if s.len() > MAX_REASONING_KEPT {
        let mut end = MAX_REASONING_KEPT;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str(" [...]");
    }
    s
}

/// One alternative decision of a tree-of-thought step: the idea behind it and its edges
/// (`zero` slots, meaning "no edge", left out).
#[derive(Debug, Clone, PartialEq)]
pub struct Thought {
    pub idea: String,
    pub edges: Vec<EdgeSpec>,
    /// The joint space's hyperparameters, when the thought (an output-node decision) gives them.
    pub hyper: Option<Hyper>,
}

/// The `hyper` object of `v`, if any, read strictly (an unknown key or a wrong type is an error
/// naming it).
fn hyper_of(v: &Value) -> Result<Option<Hyper>, ParseError> {
    match v.get("hyper") {
        None | Some(Value::Null) => Ok(None),
        Some(h) => serde_json::from_value(h.clone())
            .map(Some)
            .map_err(|e| ParseError::Json(format!("hyper: {e}"))),
    }
}

fn edges_of(v: &Value) -> Result<Vec<EdgeSpec>, ParseError> {
    let edges = known_keys(v).get("edges").cloned().unwrap_or(Value::Null);
    let edges: Vec<EdgeSpec> =
        serde_json::from_value(edges).map_err(|e| ParseError::Json(e.to_string()))?;
    Ok(edges.into_iter().filter(|e| e.op != "zero").collect())
}

/// The alternatives a tree-of-thought proposal step offers: `{"alternatives": [{"idea",
/// "edges"}, ...]}`. A reply with a single `{"edges": ...}` object (a model that ignored the
/// request for several) counts as one alternative, its prose as the idea.
pub fn parse_alternatives(reply: &str) -> Result<Vec<Thought>, ParseError> {
    if reply.trim().is_empty() {
        return Err(ParseError::Empty);
    }
    if reply.len() > MAX_REPLY_BYTES {
        return Err(ParseError::TooLong(reply.len()));
    }
    for span in object_spans(reply).into_iter().rev() {
        let Ok(v) = serde_json::from_str::<Value>(span) else {
            continue;
        };
        let alts = v
            .get("alternatives")
            .or_else(|| v.get("thoughts"))
            .and_then(Value::as_array);
        if let Some(alts) = alts {
            let mut out = Vec::new();
            for (i, a) in alts.iter().enumerate() {
                let edges =
                    edges_of(a).map_err(|e| ParseError::Json(format!("alternatives[{i}]: {e}")))?;
                let idea = ["idea", "reasoning", "thought"]
                    .iter()
                    .find_map(|k| a.get(*k).and_then(Value::as_str))
                    .unwrap_or("")
                    .trim();
                let hyper =
                    hyper_of(a).map_err(|e| ParseError::Json(format!("alternatives[{i}]: {e}")))?;
                out.push(Thought {
                    idea: cap(idea.to_string()),
                    edges,
                    hyper,
                });
            }
            return Ok(out);
        }
    }
    let v = extract(reply)?;
    Ok(vec![Thought {
        idea: reasoning(reply).unwrap_or_default(),
        edges: edges_of(&v)?,
        hyper: hyper_of(&v)?,
    }])
}

/// The LLM's value of one partial design in a tree-of-thought value step.
#[derive(Debug, Clone, PartialEq)]
pub struct ThoughtValue {
    /// Index of the partial design in the value prompt.
    pub candidate: usize,
    /// 1 (hopeless) to 10 (most promising); out-of-range numbers are clamped.
    pub value: f64,
    pub reasoning: String,
}

/// The values of a value step: `{"values": [{"candidate", "reasoning", "value"}, ...]}` for
/// candidates `0..n`. Entries naming an unknown candidate, or without a finite value, are an
/// error naming the entry; a candidate valued twice keeps its first value; candidates left out
/// are simply missing (the caller values them by its fallback).
pub fn parse_values(reply: &str, n: usize) -> Result<Vec<ThoughtValue>, ParseError> {
    if reply.trim().is_empty() {
        return Err(ParseError::Empty);
    }
    if reply.len() > MAX_REPLY_BYTES {
        return Err(ParseError::TooLong(reply.len()));
    }
    for span in object_spans(reply).into_iter().rev() {
        let Ok(v) = serde_json::from_str::<Value>(span) else {
            continue;
        };
        let Some(items) = v.get("values").and_then(Value::as_array) else {
            continue;
        };
        let mut out: Vec<ThoughtValue> = Vec::new();
        for (i, it) in items.iter().enumerate() {
            let candidate = it
                .get("candidate")
                .and_then(Value::as_u64)
                .map(|c| c as usize)
                .filter(|&c| c < n)
                .ok_or_else(|| {
                    ParseError::Json(format!(
                        "values[{i}].candidate: expected an index below {n}"
                    ))
                })?;
            let value = it
                .get("value")
                .and_then(Value::as_f64)
                .filter(|v| v.is_finite())
                .ok_or_else(|| {
                    ParseError::Json(format!("values[{i}].value: expected a number 1-10"))
                })?;
            if out.iter().any(|o| o.candidate == candidate) {
                continue;
            }
            let reasoning = it.get("reasoning").and_then(Value::as_str).unwrap_or("");
            out.push(ThoughtValue {
                candidate,
                value: value.clamp(1.0, 10.0),
                reasoning: cap(reasoning.trim().to_string()),
            });
        }
        out.sort_by_key(|v| v.candidate);
        return Ok(out);
    }
    Err(ParseError::NoJson)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"edges":[{"from":0,"to":1,"op":"STT"},{"from":1,"to":3,"op":"TTS"}]}"#;

    #[test]
    fn finds_json_in_prose_fences_and_wrappers() {
        let prose = format!("Step 1: node 1 uses STT.\nFinal answer: {GOOD} Hope this helps.");
        let fenced = format!("```json\n{GOOD}\n```");
        let wrapped = format!(r#"{{"steps":["a","b"],"architecture":{GOOD}}}"#);
        let draft_then_final =
            format!(r#"Draft: {{"edges":[{{"from":0,"to":3,"op":"zero"}}]}} Final: {GOOD}"#);
        for r in [GOOD.to_string(), prose, fenced, wrapped, draft_then_final] {
            let a = parse_reply(&r, SpaceKind::Ists).unwrap_or_else(|e| panic!("{r}: {e}"));
            assert_eq!(a.edges.len(), 2);
        }
    }

    #[test]
    fn failures_are_classified() {
        let cases = [
            ("", "empty"),
            ("I cannot help with that.", "no_json"),
            (r#"{"edges":[{"from":0,"to":1,"op":"STT"}"#, "invalid_json"),
            (
                r#"{"edges":[{"from":0,"to":3,"op":"lstm"}]}"#,
                "unknown_operator",
            ),
            (
                r#"{"edges":[{"from":1,"to":2,"op":"STT"},{"from":2,"to":1,"op":"STT"},{"from":0,"to":3,"op":"STT"}]}"#,
                "cycle",
            ),
            (
                r#"{"edges":[{"from":0,"to":1,"op":"STT"}]}"#,
                "invalid_architecture",
            ),
        ];
        for (reply, kind) in cases {
            let e = parse_reply(reply, SpaceKind::Ists).unwrap_err();
            assert_eq!(e.kind(), kind, "{reply}: {e}");
        }
        let huge = "x".repeat(MAX_REPLY_BYTES + 1);
        assert_eq!(
            parse_reply(&huge, SpaceKind::Ists).unwrap_err().kind(),
            "too_long"
        );
    }

    #[test]
    fn reasoning_comes_from_steps_or_from_the_prose_before_the_design() {
        let steps = r#"{"steps":[{"node":1,"reasoning":"a cell first","edges":[{"from":0,"to":1,"op":"STT"}]},{"node":2,"reasoning":"skip","edges":[{"from":0,"to":2,"op":"zero"},{"from":1,"to":2,"op":"zero"}]},{"node":3,"reasoning":"out","edges":[{"from":0,"to":3,"op":"zero"},{"from":1,"to":3,"op":"TTS"},{"from":2,"to":3,"op":"zero"}]}]}"#;
        let a = parse_reply(steps, SpaceKind::Ists).unwrap().canonical();
        assert_eq!(a.edges.len(), 2, "zero slots are no edges");
        assert_eq!(
            reasoning(steps).unwrap(),
            "Node 1: a cell first\nNode 2: skip\nNode 3: out"
        );
        let prose = format!("Step 1: STT first.\nStep 2: output.\n```json\n{GOOD}\n```");
        assert_eq!(
            reasoning(&prose).unwrap(),
            "Step 1: STT first.\nStep 2: output."
        );
        assert_eq!(reasoning(GOOD), None);
        // The one-pass reading gives the same design and reasoning.
        for r in [steps, prose.as_str(), GOOD] {
            let (arch, why) = parse_reply_reasoned(r, SpaceKind::Ists).unwrap();
            assert_eq!(arch, parse_reply(r, SpaceKind::Ists).unwrap());
            assert_eq!(why, reasoning(r));
        }
    }

    #[test]
    fn alternatives_and_values_parse_with_precise_errors() {
        let r = r#"{"alternatives":[{"idea":"cell","edges":[{"from":0,"to":1,"op":"STT"}]},{"idea":"skip","edges":[{"from":0,"to":1,"op":"identity"},{"from":0,"to":1,"op":"zero"}]}]}"#;
        let a = parse_alternatives(r).unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(a[1].idea, "skip");
        assert_eq!(a[1].edges.len(), 1, "zero dropped");
        let single = parse_alternatives(&format!("Because.\n{GOOD}")).unwrap();
        assert_eq!(single.len(), 1);
        assert_eq!(single[0].idea, "Because.");
        let bad = r#"{"alternatives":[{"edges":[{"from":"x"}]}]}"#;
        assert!(parse_alternatives(bad)
            .unwrap_err()
            .to_string()
            .contains("alternatives[0]"));
        let v = r#"{"values":[{"candidate":1,"value":12,"reasoning":"r"},{"candidate":0,"value":3},{"candidate":1,"value":1}]}"#;
        let vs = parse_values(v, 2).unwrap();
        assert_eq!(vs.len(), 2);
        assert_eq!((vs[0].candidate, vs[0].value), (0, 3.0));
        assert_eq!(
            (vs[1].candidate, vs[1].value),
            (1, 10.0),
            "clamped, first kept"
        );
        let e = parse_values(r#"{"values":[{"candidate":5,"value":2}]}"#, 2).unwrap_err();
        assert!(e.to_string().contains("values[0].candidate"), "{e}");
        assert_eq!(parse_values("no json", 2).unwrap_err().kind(), "no_json");
    }

    #[test]
    fn braces_inside_strings_do_not_confuse_extraction() {
        let r = r#"Note: {"comment":"a } brace", "edges":[{"from":0,"to":3,"op":"STT"}]}"#;
        let v = extract(r).unwrap();
        assert_eq!(v["comment"], "a } brace");
    }
}
