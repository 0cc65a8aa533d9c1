//! The LLM instructor's mechanics without a model: a scripted instructor (a test double that
//! answers each request by its purpose with recorded-style replies, and records every prompt)
//! plays chain-of-thought and tree-of-thought searches, so CI checks that CoT reasoning comes
//! before each decision and is kept, that a duplicate is repaired with the nearest unexplored
//! variation, and that ToT asks for k alternatives, values them in a value step with the
//! memory's evidence, keeps the beam best, and runs expansions concurrently.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and examples may panic on failure

use actix::prelude::*;
use ists::config::Mode;
use ists_actors::messages::{Complete, Event, LlmError, Prompt, Purpose, Reply, Role, Usage};
use ists_actors::run_search;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod common;
use common::{instructed, journal, one_at_a_time, Collector};

/// One request as the scripted instructor saw it.
#[derive(Debug, Clone)]
struct Seen {
    purpose: Purpose,
    user: String,
    repair: Option<String>,
    avoid: Vec<ists::space::ArchSpec>,
}

type Script = dyn Fn(&Prompt, usize) -> String + Send + Sync;

/// Answers every request with `script(prompt, n)` after `delay`, recording the prompts and the
/// most requests in flight at once.
struct Scripted {
    script: Arc<Script>,
    seen: Arc<Mutex<Vec<Seen>>>,
    in_flight: Arc<AtomicUsize>,
    max_in_flight: Arc<AtomicUsize>,
    delay: Duration,
}

impl Actor for Scripted {
    type Context = Context<Self>;
}

impl Handler<Complete> for Scripted {
    type Result = ResponseFuture<Result<Reply, LlmError>>;
    fn handle(&mut self, msg: Complete, _: &mut Context<Self>) -> Self::Result {
        let p = msg.0;
        let n = {
            let mut seen = self.seen.lock().unwrap();
            seen.push(Seen {
                purpose: p.hints.purpose.clone(),
                user: p
                    .messages
                    .iter()
                    .filter(|m| m.role == Role::User)
                    .map(|m| m.content.clone())
                    .collect::<Vec<_>>()
                    .join("\n"),
                repair: p.hints.repair.clone(),
                avoid: p.hints.avoid.clone(),
            });
            seen.len() - 1
        };
        let text = (self.script)(&p, n);
        let (now, max, delay) = (
            self.in_flight.clone(),
            self.max_in_flight.clone(),
            self.delay,
        );
        // A ResponseFuture runs beside the actor's mailbox: requests overlap like on a server.
        Box::pin(async move {
            let k = now.fetch_add(1, Ordering::SeqCst) + 1;
            max.fetch_max(k, Ordering::SeqCst);
            tokio::time::sleep(delay).await;
            now.fetch_sub(1, Ordering::SeqCst);
            Ok(Reply {
                text,
                usage: Usage {
                    prompt_tokens: 100,
                    completion_tokens: 20,
                    cached_tokens: 0,
                },
                latency_secs: delay.as_secs_f64(),
                retries: vec![],
            })
        })
    }
}

struct Harness {
    seen: Arc<Mutex<Vec<Seen>>>,
    max_in_flight: Arc<AtomicUsize>,
    instructor: Recipient<Complete>,
}

fn scripted(
    delay: Duration,
    script: impl Fn(&Prompt, usize) -> String + Send + Sync + 'static,
) -> Harness {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let max_in_flight = Arc::new(AtomicUsize::new(0));
    let actor = Scripted {
        script: Arc::new(script),
        seen: seen.clone(),
        in_flight: Arc::new(AtomicUsize::new(0)),
        max_in_flight: max_in_flight.clone(),
        delay,
    };
    Harness {
        seen,
        max_in_flight,
        instructor: actor.start().recipient(),
    }
}

const COT: &str = r#"Thinking it through.
```json
{"steps": [
 {"node": 1, "reasoning": "Traffic repeats daily, so a temporal cell first.", "edges": [{"from": 0, "to": 1, "op": "TTS", "spatial": "dgcn", "temporal": "gdcc"}]},
 {"node": 2, "reasoning": "Leave node 2 unused: a shallow design trains faster.", "edges": [{"from": 0, "to": 2, "op": "zero"}, {"from": 1, "to": 2, "op": "zero"}]},
 {"node": 3, "reasoning": "A shortcut from the input keeps the last value.", "edges": [{"from": 0, "to": 3, "op": "identity"}, {"from": 1, "to": 3, "op": "STT", "spatial": "mix_gc", "temporal": "linear_attn"}, {"from": 2, "to": 3, "op": "zero"}]}
]}
```"#;

#[actix::test]
async fn cot_reasoning_is_kept_and_a_duplicate_is_repaired_with_the_nearest_variation() {
    // Every CoT request gets the same design; a repair takes the variation the prompt offers.
    let h = scripted(Duration::from_millis(1), |p, _| match &p.hints.repair {
        Some(err) => {
            let marker = "one change away) is ";
            let at = err.find(marker).expect("the repair names a variation") + marker.len();
            let rest = &err[at..];
            let end = rest.find("; take it").unwrap();
            format!("Taking the suggested variation.\n{}", &rest[..end])
        }
        None => COT.to_string(),
    });
    let events = Arc::new(Mutex::new(Vec::new()));
    let tmp = tempfile::tempdir().unwrap();
    let mut s = one_at_a_time(tmp.path(), Mode::Cot, 2);
    s.search.max_repairs = 1;
    let opts = instructed("cot", h.instructor.clone())
        .subscribe(Collector(events.clone()).start().recipient());
    let summary = run_search(s, opts, std::future::pending()).await.unwrap();
    assert_eq!(summary.evaluated, 2);
    assert_eq!(summary.requests, 3, "two proposals, one duplicate repaired");
    assert_eq!(summary.repairs, 1);
    assert_eq!(summary.usable_replies, 2);
    assert_eq!(summary.rejected.get("duplicate"), Some(&1));
    assert_eq!(summary.failed_proposals, 0);
    assert_eq!(summary.fallbacks, 0);
    let seen = h.seen.lock().unwrap().clone();
    assert!(seen.iter().all(|x| x.purpose == Purpose::Cot));
    let repair = seen[2].repair.as_deref().unwrap();
    assert!(
        repair.contains("was already evaluated or is being evaluated"),
        "{repair}"
    );
    // What the reply's grammar must rule out: nothing at first; then the design the prompt
    // shows; in the repair turn, the repeated design heads the list (once).
    assert!(seen[0].avoid.is_empty());
    let first_design = first_journal_design(&tmp);
    assert_eq!(seen[1].avoid, std::slice::from_ref(&first_design));
    assert_eq!(seen[2].avoid, [first_design]);
    // The prompt tells the model what it has to think with.
    let first = &seen[0].user;
    for needle in [
        "## The data (training split only)",
        "steps per day",
        "autocorrelation",
        "receptive field",
        "parameters",
        "\"reasoning\"",
    ] {
        assert!(first.contains(needle), "prompt lacks {needle:?}:\n{first}");
    }
    assert!(
        seen[1]
            .user
            .contains("1 designs evaluated so far; 1 shown below (the best 1)"),
        "{}",
        seen[1].user
    );
    assert!(seen[1].user.contains("secs="), "{}", seen[1].user);
    // The reasoning is kept: journal, event, summary.
    let j = journal(&tmp.path().join("cot"));
    let why = j[0]["reasoning"].as_str().unwrap();
    assert!(why.starts_with("Node 1: Traffic repeats daily"), "{why}");
    assert!(why.contains("Node 3: A shortcut"), "{why}");
    assert_eq!(j[1]["reasoning"], "Taking the suggested variation.");
    assert!(summary.reasoning_chars > 100);
    assert_eq!(summary.reasoning_tokens_est, summary.reasoning_chars / 3);
    let parsed: Vec<Option<String>> = events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match &e.event {
            Event::Parsed { reasoning, .. } => Some(reasoning.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(parsed.len(), 2);
    assert!(parsed[0]
        .as_deref()
        .unwrap()
        .contains("Traffic repeats daily"));
}

/// Concurrent chain-of-thought proposals take turns at an LLM that serves one request at a
/// time: the second renders its prompt after the first design was parsed, so it rules that
/// design out instead of racing it to the same answer.
#[actix::test]
async fn cot_proposals_take_turns_so_each_rules_out_the_designs_before_it() {
    let second = COT.replacen("\"gdcc\"", "\"t_trans\"", 1);
    let h = scripted(Duration::from_millis(30), move |_, n| match n {
        0 => COT.to_string(),
        _ => second.clone(),
    });
    let tmp = tempfile::tempdir().unwrap();
    let mut s = one_at_a_time(tmp.path(), Mode::Cot, 2);
    s.search.in_flight = 2;
    s.llm.max_concurrent = 1;
    let summary = run_search(
        s,
        instructed("cot", h.instructor.clone()),
        std::future::pending(),
    )
    .await
    .unwrap();
    assert_eq!(summary.evaluated, 2);
    assert_eq!(summary.requests, 2, "no duplicate to repair");
    assert_eq!(
        h.max_in_flight.load(Ordering::SeqCst),
        1,
        "one turn at a time"
    );
    let seen = h.seen.lock().unwrap().clone();
    assert!(seen[0].avoid.is_empty());
    assert_eq!(seen[1].avoid, [first_journal_design(&tmp)]);
}

/// A design the model repeated is ruled out of every later chain-of-thought reply, even when
/// the memory section no longer lists it (here it lists nothing).
#[actix::test]
async fn a_design_the_model_repeated_stays_ruled_out_after_it_leaves_the_list() {
    let second = COT.replacen("\"gdcc\"", "\"t_trans\"", 1);
    let third = COT.replacen("\"gdcc\"", "\"linear_attn\"", 1);
    // Proposal 0: COT; proposal 1: COT again (a duplicate), then `second` in its repair turn;
    // proposal 2: `third`.
    let h = scripted(Duration::from_millis(1), move |_, n| match n {
        0 | 1 => COT.to_string(),
        2 => second.clone(),
        _ => third.clone(),
    });
    let tmp = tempfile::tempdir().unwrap();
    let mut s = one_at_a_time(tmp.path(), Mode::Cot, 3);
    s.search.max_repairs = 1;
    s.search.memory.top = 0;
    s.search.memory.recent = 0;
    let summary = run_search(
        s,
        instructed("cot", h.instructor.clone()),
        std::future::pending(),
    )
    .await
    .unwrap();
    assert_eq!(summary.evaluated, 3);
    assert_eq!(summary.rejected.get("duplicate"), Some(&1));
    let seen = h.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 4);
    let first = first_journal_design(&tmp);
    assert!(
        seen[1].avoid.is_empty(),
        "nothing listed, nothing in flight"
    );
    assert_eq!(seen[2].avoid, std::slice::from_ref(&first), "the repair");
    assert_eq!(seen[3].avoid, [first], "a later proposal");
}

/// The design the first journal entry holds.
fn first_journal_design(tmp: &tempfile::TempDir) -> ists::space::ArchSpec {
    serde_json::from_value(journal(&tmp.path().join("cot"))[0]["arch"].clone()).unwrap()
}

/// The scripted ToT instructor: for node k, alternatives with the cell orders STT, TTS, STP
/// (and STP again, a sibling duplicate), all from node k-1; values 9 for STP, 6 for TTS, 2
/// for STT, read from the candidates' edges in the value prompt's purpose.
fn tot_script(p: &Prompt, _: usize) -> String {
    match &p.hints.purpose {
        Purpose::TotStep {
            node, alternatives, ..
        } => {
            assert_eq!(*alternatives, 3, "k alternatives asked for");
            let alt = |op: &str| {
                serde_json::json!({"idea": format!("{op} into node {node}"),
                    "edges": [{"from": node - 1, "to": node, "op": op}]})
            };
            let alts = vec![alt("STT"), alt("TTS"), alt("STP"), alt("STP")];
            serde_json::json!({ "alternatives": alts }).to_string()
        }
        Purpose::TotValue { node, partials } => {
            let values: Vec<serde_json::Value> = partials
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let last = p.iter().rev().find(|e| e.to == *node as i64).unwrap();
                    let v = match last.op.as_str() {
                        "STP" => 9,
                        "TTS" => 6,
                        _ => 2,
                    };
                    serde_json::json!({"candidate": i, "reasoning": "by order", "value": v})
                })
                .collect();
            serde_json::json!({ "values": values }).to_string()
        }
        Purpose::Cot => panic!("a ToT search asked for a CoT reply"),
    }
}

#[actix::test]
async fn tot_proposes_k_alternatives_values_them_and_keeps_the_beam_best_concurrently() {
    let h = scripted(Duration::from_millis(100), tot_script);
    let tmp = tempfile::tempdir().unwrap();
    let mut s = one_at_a_time(tmp.path(), Mode::Tot, 2);
    s.search.tot.branches = 3;
    s.search.tot.beam = 2;
    s.search.tot.concurrency = 2;
    let opts = instructed("tot", h.instructor.clone());
    let summary = run_search(s, opts, std::future::pending()).await.unwrap();
    assert_eq!(summary.evaluated, 2, "the beam's two designs");
    // Node 1: one expansion; nodes 2 and 3: two (the beam); each a propose and a value request.
    assert_eq!(summary.requests, 2 * (1 + 2 + 2));
    assert_eq!(summary.value_requests, 5);
    assert_eq!(summary.value_fallbacks, 0);
    assert_eq!(
        summary.thoughts,
        3 * 5,
        "the sibling duplicate is one thought, not two"
    );
    assert_eq!(summary.rejected.get("repeated_alternative"), Some(&5));
    assert_eq!(summary.fallbacks, 0);
    let seen = h.seen.lock().unwrap().clone();
    let values: Vec<&Seen> = seen
        .iter()
        .filter(|x| matches!(x.purpose, Purpose::TotValue { .. }))
        .collect();
    assert_eq!(values.len(), 5);
    for v in &values {
        let Purpose::TotValue { partials, .. } = &v.purpose else {
            unreachable!()
        };
        assert_eq!(
            partials.len(),
            3,
            "one value request per expansion, its 3 children"
        );
        assert!(v.user.contains("evidence"), "{}", v.user);
    }
    // The beam keeps the two best-valued: STP and TTS at node 1, and every later node is
    // decided from those; the best path is STP all the way.
    let j = journal(&tmp.path().join("tot"));
    let designs: Vec<String> = j.iter().map(|e| e["arch"]["edges"].to_string()).collect();
    assert!(
        designs.iter().any(|d| d.matches("\"STP\"").count() == 3),
        "{designs:?}"
    );
    assert!(
        designs.iter().all(|d| !d.contains("\"STT\"")),
        "{designs:?}"
    );
    let why = j[0]["reasoning"].as_str().unwrap();
    assert!(
        why.contains("Node 1: ") && why.contains("(value 9/10)"),
        "{why}"
    );
    let overlap = h.max_in_flight.load(Ordering::SeqCst);
    assert!(
        overlap >= 2,
        "expansions never overlapped (max in flight {overlap})"
    );
}

#[actix::test]
async fn an_unusable_value_reply_falls_back_to_the_heuristic_and_the_search_goes_on() {
    let h = scripted(Duration::from_millis(1), |p, n| match &p.hints.purpose {
        Purpose::TotValue { .. } => format!("I would rather not say ({n})."),
        _ => tot_script(p, n),
    });
    let tmp = tempfile::tempdir().unwrap();
    let mut s = one_at_a_time(tmp.path(), Mode::Tot, 2);
    s.search.tot.branches = 3;
    s.search.tot.beam = 2;
    let opts = instructed("tot-fallback", h.instructor.clone());
    let summary = run_search(s, opts, std::future::pending()).await.unwrap();
    assert_eq!(summary.evaluated, 2);
    assert_eq!(summary.value_requests, 5);
    assert_eq!(summary.value_fallbacks, 5);
    assert_eq!(summary.usable_replies, 5, "the propose replies only");
    assert_eq!(summary.rejected.get("no_json"), Some(&5));
    assert_eq!(
        summary.fallbacks, 0,
        "the heuristic values; the LLM still designs"
    );
}

#[actix::test]
async fn a_model_that_repeats_a_known_design_gets_its_nearest_unexplored_variation() {
    // A stubborn model: the same design whatever the prompt, repairs included.
    let h = scripted(Duration::from_millis(1), |_, _| COT.to_string());
    let tmp = tempfile::tempdir().unwrap();
    let mut s = one_at_a_time(tmp.path(), Mode::Cot, 3);
    s.search.max_repairs = 1;
    let opts = instructed("stubborn", h.instructor.clone());
    let summary = run_search(s, opts, std::future::pending()).await.unwrap();
    assert_eq!(summary.evaluated, 3);
    assert_eq!(
        summary.adjusted, 2,
        "proposals 2 and 3 took the nearest variation"
    );
    assert_eq!(summary.fallbacks, 0);
    assert_eq!(summary.failed_proposals, 0);
    assert_eq!(
        summary.requests,
        1 + 2 * 2,
        "each duplicate got its repair turn first"
    );
    assert_eq!(summary.rejected.get("duplicate"), Some(&4));
    let j = journal(&tmp.path().join("stubborn"));
    let hashes: std::collections::HashSet<&str> =
        j.iter().map(|e| e["hash"].as_str().unwrap()).collect();
    assert_eq!(hashes.len(), 3, "three different designs");
    let why = j[2]["reasoning"].as_str().unwrap();
    assert!(why.starts_with("Node 1: Traffic repeats daily"), "{why}");
    assert!(why.contains("adjusted by ists"), "{why}");
}

#[actix::test]
async fn tot_takes_the_nearest_unexplored_output_decision_when_the_model_repeats_itself() {
    // One alternative per step, always the same: the second proposal completes the first's
    // design, the repair turn changes nothing, and the output decision is adjusted.
    let h = scripted(Duration::from_millis(1), |p, _| match &p.hints.purpose {
        Purpose::TotStep { node, .. } => serde_json::json!({"alternatives": [
            {"idea": "a chain", "edges": [{"from": node - 1, "to": node, "op": "STT"}]}]})
        .to_string(),
        Purpose::TotValue { partials, .. } => {
            let v: Vec<serde_json::Value> = (0..partials.len())
                .map(|i| serde_json::json!({"candidate": i, "reasoning": "ok", "value": 5}))
                .collect();
            serde_json::json!({ "values": v }).to_string()
        }
        Purpose::Cot => panic!("a ToT search asked for a CoT reply"),
    });
    let tmp = tempfile::tempdir().unwrap();
    let mut s = one_at_a_time(tmp.path(), Mode::Tot, 2);
    s.search.max_repairs = 1;
    s.search.tot.branches = 1;
    s.search.tot.beam = 1;
    let opts = instructed("tot-stubborn", h.instructor.clone());
    let summary = run_search(s, opts, std::future::pending()).await.unwrap();
    assert_eq!(summary.evaluated, 2);
    assert_eq!(summary.adjusted, 1);
    assert_eq!(summary.fallbacks, 0);
    assert_eq!(summary.repairs, 1);
    let j = journal(&tmp.path().join("tot-stubborn"));
    assert_ne!(j[0]["hash"], j[1]["hash"]);
    // Nodes 1 and 2 are the model's; only the output decision changed.
    let into = |e: &serde_json::Value, to: i64| -> Vec<serde_json::Value> {
        e["arch"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|x| x["to"] == to)
            .cloned()
            .collect()
    };
    assert_eq!(into(&j[0], 1), into(&j[1], 1));
    assert_eq!(into(&j[0], 2), into(&j[1], 2));
    assert!(j[1]["reasoning"]
        .as_str()
        .unwrap()
        .contains("adjusted by ists"));
}

/// The joint space through the LLM path: the prompt offers the hyperparameter choices, a reply
/// that leaves `hyper` out (or picks a value not offered) is repaired with a message naming the
/// field and the choices, and the design recorded carries the hyperparameters the model chose.
#[actix::test]
async fn joint_space_replies_must_choose_offered_hyperparameters() {
    let h = scripted(Duration::from_millis(1), |p, n| {
        let json = COT
            .split("```json")
            .nth(1)
            .unwrap()
            .split("```")
            .next()
            .unwrap();
        match (&p.hints.repair, n) {
            // First proposal: no hyper at all; second: a width not offered.
            (None, 0) => COT.to_string(),
            (None, _) => json.trim().replace(
                "\n]}",
                "\n], \"hyper\": {\"hidden\": 12, \"blocks\": 2, \"lr_scale\": 0.5}}",
            ),
            (Some(_), _) => format!(
                "Adding the hyperparameters.\n{}",
                json.trim().replace(
                    "\n]}",
                    &format!(
                        "\n], \"hyper\": {{\"hidden\": 16, \"blocks\": {}, \"lr_scale\": 0.5}}}}",
                        if n == 1 { 1 } else { 2 }
                    ),
                )
            ),
        }
    });
    let tmp = tempfile::tempdir().unwrap();
    let mut s = one_at_a_time(tmp.path(), Mode::Cot, 2);
    s.search.max_repairs = 1;
    s.search.fallback = false;
    s.search.hyper = ists::hyper::HyperSpace {
        hidden: vec![8, 16],
        blocks: vec![1, 2],
        lr_scale: vec![0.5, 1.0],
    };
    let opts = instructed("joint", h.instructor.clone());
    let summary = run_search(s, opts, std::future::pending()).await.unwrap();
    assert_eq!(summary.evaluated, 2);
    assert_eq!(summary.repairs, 2, "{summary:?}");
    let seen = h.seen.lock().unwrap().clone();
    for needle in [
        r#""hyper": {"hidden": one of [8, 16]"#,
        r#""blocks": one of [1, 2]"#,
        r#""lr_scale": one of [0.5, 1.0]"#,
    ] {
        assert!(seen[0].user.contains(needle), "{needle}: {}", seen[0].user);
    }
    let first = seen[1].repair.as_deref().unwrap();
    assert!(
        first.contains("hyper: this search also tunes hyperparameters"),
        "{first}"
    );
    let second = seen[3].repair.as_deref().unwrap();
    assert!(
        second.contains("hyper.hidden: 12 is not offered (choices: [8, 16])"),
        "{second}"
    );
    let j = journal(&tmp.path().join("joint"));
    let chosen: Vec<(u64, u64)> = j
        .iter()
        .map(|e| {
            let h = &e["arch"]["hyper"];
            (h["hidden"].as_u64().unwrap(), h["blocks"].as_u64().unwrap())
        })
        .collect();
    assert_eq!(chosen.len(), 2);
    assert!(chosen.iter().all(|(h, _)| *h == 16), "{chosen:?}");
    assert_ne!(chosen[0], chosen[1], "{chosen:?}");
}
