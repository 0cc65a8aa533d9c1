//! Extraction of an architecture from an instructor's reply: the JSON may sit inside prose or
//! markdown fences, may be wrapped in `{"architecture": ...}`, and must validate against the
//! search space. Errors are precise so that the repair prompt can quote them.

use crate::space::{Arch, ArchError, ArchSpec, EdgeSpec, SpaceKind};
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

/// Finds the architecture object in `value`: itself, or under `architecture`/`arch`.
fn arch_value(v: &Value) -> Option<&Value> {
    let obj = v.as_object()?;
    if obj.contains_key("edges") {
        return Some(v);
    }
    ["architecture", "arch", "design"]
        .iter()
        .find_map(|k| obj.get(*k).and_then(arch_value))
}

/// The JSON text of the architecture in `reply`: the last object that holds an `edges` list
/// (a reasoning model often shows drafts before its final answer).
pub fn extract(reply: &str) -> Result<Value, ParseError> {
    if reply.trim().is_empty() {
        return Err(ParseError::Empty);
    }
    if reply.len() > MAX_REPLY_BYTES {
        return Err(ParseError::TooLong(reply.len()));
    }
    let mut first_err = None;
    for span in object_spans(reply).into_iter().rev() {
        match serde_json::from_str::<Value>(span) {
            Ok(v) => {
                if let Some(a) = arch_value(&v) {
                    return Ok(a.clone());
                }
            }
            Err(e) => {
                if span.contains("\"edges\"") && first_err.is_none() {
                    first_err = Some(ParseError::Json(e.to_string()));
                }
            }
        }
    }
    Err(first_err.unwrap_or(ParseError::NoJson))
}

/// Extracts and validates the architecture of a reply.
pub fn parse_reply(reply: &str, space: SpaceKind) -> Result<Arch, ParseError> {
    let v = known_keys(&extract(reply)?);
    let spec: ArchSpec = serde_json::from_value(v).map_err(|e| ParseError::Json(e.to_string()))?;
    Ok(Arch::from_spec(&spec, space)?)
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
    let mut top = keep(v, &["space", "nodes", "edges"]);
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
    fn braces_inside_strings_do_not_confuse_extraction() {
        let r = r#"Note: {"comment":"a } brace", "edges":[{"from":0,"to":3,"op":"STT"}]}"#;
        let v = extract(r).unwrap();
        assert_eq!(v["comment"], "a } brace");
    }
}
