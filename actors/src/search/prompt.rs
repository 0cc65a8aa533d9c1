//! PromptActor: renders prompts from the template files (background, strategy for the current
//! stage, memory, and the step-level decomposition). It follows the stage through the event
//! bus, so the stage switch reaches it as an event like any other subscriber.

use crate::messages::{
    ChatMessage, Event, EventMsg, Hints, MemoryView, Prompt, Purpose, RenderCot, RenderRepair,
    RenderTotStep, RenderTotValue, Role,
};
use actix::prelude::*;
use ists::memory::Stage;
use ists::prompt::{background, TaskInfo, Templates};

/// Characters per token assumed when fitting a prompt into the context window. Tokenizers give
/// about 4 for English prose but nearer 3 for JSON and numbers; the low figure errs on the side
/// of a prompt that fits.
pub const CHARS_PER_TOKEN: usize = 3;

pub struct PromptActor {
    templates: Templates,
    task: TaskInfo,
    stage: Stage,
    /// Tokens a prompt may take (context window minus the reply); None: no limit.
    prompt_tokens: Option<usize>,
    /// Handed to the instructor with every prompt ([`Hints::step_cost`]).
    step_cost: Option<ists::footprint::StepCost>,
}

impl PromptActor {
    pub fn new(templates: Templates, task: TaskInfo, stage: Stage) -> PromptActor {
        PromptActor {
            templates,
            task,
            stage,
            prompt_tokens: None,
            step_cost: None,
        }
    }

    /// Gives every prompt's hints the task's step-cost estimate.
    pub fn with_step_cost(mut self, cost: ists::footprint::StepCost) -> PromptActor {
        self.step_cost = Some(cost);
        self
    }

    /// Limits prompts to `tokens` by trimming the memory section (see `build`).
    pub fn with_context(mut self, tokens: Option<usize>) -> PromptActor {
        self.prompt_tokens = tokens;
        self
    }

    fn sections(
        &self,
        memory: &crate::messages::MemoryView,
    ) -> ists::Result<Vec<(String, String)>> {
        let t = &self.templates;
        let strategy = match self.stage {
            Stage::Exploration => t.get("strategy_exploration")?,
            Stage::Optimization => t.get("strategy_optimization")?,
        };
        let rendered = if memory.rendered.trim().is_empty() {
            "(nothing evaluated yet)".to_string()
        } else {
            memory.rendered.clone()
        };
        // Say honestly how much of the memory the section shows, and which part.
        let best = memory
            .rendered
            .lines()
            .filter(|l| l.starts_with("best#"))
            .count();
        let recent = memory
            .rendered
            .lines()
            .filter(|l| l.starts_with("recent("))
            .count();
        let which = match (best, recent) {
            (0, 0) => "none".to_string(),
            (b, 0) => format!("the best {b}"),
            (b, r) => format!("the best {b}, then the {r} most recent not among them"),
        };
        let mem = t.render(
            "memory",
            &[
                ("count", &memory.count.to_string()),
                ("shown", &(best + recent).to_string()),
                ("which", &which),
                ("memory", &rendered),
                ("costs", &op_costs(memory)),
            ],
        )?;
        Ok(vec![
            ("background".into(), background(t, &self.task)?),
            ("strategy".into(), strategy),
            ("memory".into(), mem),
        ])
    }

    /// Renders a prompt. When it exceeds the context budget, memory lines are dropped from the
    /// end (the section lists the best entries first, so the best are kept) until it fits or
    /// the section is empty.
    fn build(
        &self,
        template: &str,
        memory: &crate::messages::MemoryView,
        extra: &[(&str, String)],
        hints: Hints,
    ) -> Result<Prompt, String> {
        let prompt = self.build_once(template, memory, extra, hints.clone())?;
        let Some(limit) = self.prompt_tokens else {
            return Ok(prompt);
        };
        let size = |p: &Prompt| p.messages.iter().map(|m| m.content.len()).sum::<usize>();
        let budget = limit.saturating_mul(CHARS_PER_TOKEN);
        if size(&prompt) <= budget {
            return Ok(prompt);
        }
        let mut lines: Vec<&str> = memory.rendered.lines().collect();
        let mut trimmed = memory.clone();
        let mut best = prompt;
        while !lines.is_empty() && size(&best) > budget {
            lines.pop();
            trimmed.rendered = lines.iter().map(|l| format!("{l}\n")).collect();
            best = self.build_once(template, &trimmed, extra, hints.clone())?;
        }
        Ok(best)
    }

    fn build_once(
        &self,
        template: &str,
        memory: &crate::messages::MemoryView,
        extra: &[(&str, String)],
        hints: Hints,
    ) -> Result<Prompt, String> {
        let mut vars = self.sections(memory).map_err(|e| e.to_string())?;
        vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
        let refs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let user = self
            .templates
            .render(template, &refs)
            .map_err(|e| e.to_string())?;
        let system = self.templates.get("system").map_err(|e| e.to_string())?;
        Ok(Prompt {
            messages: vec![
                ChatMessage::new(Role::System, system.trim()),
                ChatMessage::new(Role::User, user),
            ],
            hints,
        })
    }

    fn hints(
        &self,
        memory: &crate::messages::MemoryView,
        purpose: Purpose,
        id: u64,
        branch: usize,
    ) -> Hints {
        // A chain-of-thought reply is a whole design: it must not repeat one in flight or shown.
        let avoid = match purpose {
            Purpose::Cot => memory.avoid.clone(),
            _ => Vec::new(),
        };
        Hints {
            avoid,
            purpose,
            stage: self.stage,
            best: memory.best.iter().map(|e| e.arch.clone()).collect(),
            known: memory.known.clone(),
            seen: std::sync::Arc::clone(&memory.all),
            request_id: id,
            branch,
            repair: None,
            step_cost: self.step_cost.clone(),
        }
    }
}

/// Mean evaluation seconds of the proxy-rung designs using each operator, relative to the mean
/// of all of them: the cost the evaluator measured, which a parameter count alone does not show.
pub fn op_costs(memory: &MemoryView) -> String {
    let rung0: Vec<&ists::memory::MemoryEntry> = memory
        .all
        .iter()
        .filter(|e| e.rung == 0 && e.score.is_some() && e.seconds > 0.0)
        .collect();
    if rung0.is_empty() {
        return "(nothing measured yet)".into();
    }
    let mean_all = rung0.iter().map(|e| e.seconds).sum::<f64>() / rung0.len() as f64;
    let mut uses: std::collections::BTreeMap<String, (f64, usize)> = Default::default();
    for e in &rung0 {
        let mut names = std::collections::BTreeSet::new();
        for edge in &e.arch.edges {
            names.insert(edge.op.clone());
            names.extend(edge.spatial.clone());
            names.extend(edge.temporal.clone());
        }
        for n in names {
            let u = uses.entry(n).or_default();
            u.0 += e.seconds;
            u.1 += 1;
        }
    }
    uses.iter()
        .map(|(name, (secs, n))| {
            let mean = secs / *n as f64;
            format!(
                "- {name}: {:.2}x ({mean:.1} s, {n} designs)",
                mean / mean_all
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The partial design as the prompts show it.
fn partial_text(partial: &[ists::space::EdgeSpec]) -> Result<String, String> {
    if partial.is_empty() {
        Ok("(no edges yet)".to_string())
    } else {
        serde_json::to_string(partial).map_err(|e| e.to_string())
    }
}

impl Actor for PromptActor {
    type Context = Context<Self>;
}

impl Handler<RenderCot> for PromptActor {
    type Result = Result<Prompt, String>;
    fn handle(&mut self, msg: RenderCot, _: &mut Context<Self>) -> Self::Result {
        let hints = self.hints(&msg.memory, Purpose::Cot, msg.request_id, 0);
        self.build("cot", &msg.memory, &[], hints)
    }
}

impl Handler<RenderTotStep> for PromptActor {
    type Result = Result<Prompt, String>;
    fn handle(&mut self, msg: RenderTotStep, _: &mut Context<Self>) -> Self::Result {
        let partial = partial_text(&msg.partial)?;
        let sources = (0..msg.node)
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let purpose = Purpose::TotStep {
            node: msg.node,
            partial: msg.partial.clone(),
            alternatives: msg.alternatives,
        };
        let hints = self.hints(&msg.memory, purpose, msg.request_id, msg.branch);
        self.build(
            "tot_step",
            &msg.memory,
            &[
                ("partial", partial),
                ("node", msg.node.to_string()),
                ("sources", sources),
                ("alternatives", msg.alternatives.to_string()),
            ],
            hints,
        )
    }
}

impl Handler<RenderTotValue> for PromptActor {
    type Result = Result<Prompt, String>;
    fn handle(&mut self, msg: RenderTotValue, _: &mut Context<Self>) -> Self::Result {
        let mut cases = String::new();
        for (i, c) in msg.cases.iter().enumerate() {
            // Ideas are model output: keep them on one line and out of the tag.
            let idea: String = c
                .idea
                .replace(['\n', '\r'], " ")
                .replace('<', "\\u003c")
                .chars()
                .take(300)
                .collect();
            cases.push_str(&format!(
                "candidate {i}: {}\n  idea: {}\n",
                partial_text(&c.partial)?.replace('<', "\\u003c"),
                if idea.is_empty() {
                    "(none given)"
                } else {
                    &idea
                }
            ));
            if c.known_if_complete {
                cases.push_str("  note: as it stands it completes a design already evaluated\n");
            }
            // The count says how explored the partial design is; only the best few are quoted,
            // so a well-explored one does not flood the prompt.
            let which = if c.matched > c.evidence.len() {
                format!("; the best {}", c.evidence.len())
            } else {
                String::new()
            };
            if c.evidence.is_empty() {
                cases.push_str("  evidence: no evaluated design contains it yet\n");
            } else {
                cases.push_str(&format!(
                    "  evidence ({} evaluated designs contain it{which}): {}\n",
                    c.matched,
                    c.evidence.join("; ")
                ));
            }
        }
        let purpose = Purpose::TotValue {
            node: msg.node,
            partials: msg.cases.iter().map(|c| c.partial.clone()).collect(),
        };
        let hints = self.hints(&msg.memory, purpose, msg.request_id, msg.branch);
        self.build(
            "tot_value",
            &msg.memory,
            &[("node", msg.node.to_string()), ("cases", cases)],
            hints,
        )
    }
}

impl Handler<RenderRepair> for PromptActor {
    type Result = Result<Prompt, String>;
    fn handle(&mut self, msg: RenderRepair, _: &mut Context<Self>) -> Self::Result {
        let text = self
            .templates
            .render("repair", &[("error", &msg.error)])
            .map_err(|e| e.to_string())?;
        let mut p = msg.previous;
        // Keep the conversation: the model sees its own reply and what was wrong with it.
        let reply: String = msg.reply.chars().take(4000).collect();
        p.messages.push(ChatMessage::new(Role::Assistant, reply));
        p.messages.push(ChatMessage::new(Role::User, text));
        p.hints.repair = Some(msg.error);
        Ok(p)
    }
}

impl Handler<EventMsg> for PromptActor {
    type Result = ();
    fn handle(&mut self, msg: EventMsg, _: &mut Context<Self>) {
        if let Event::StageSwitched { to, .. } = msg.event {
            self.stage = to;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::MemoryView;
    use ists::space::SpaceKind;
    use std::sync::Arc;

    fn actor(limit: Option<usize>) -> PromptActor {
        let prompts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../prompts");
        let task = TaskInfo {
            dataset: "d".into(),
            nodes: 10,
            steps: 12,
            horizon: 12,
            in_features: 2,
            space: SpaceKind::Ists,
            profile: String::new(),
            traits: String::new(),
            hyper: Default::default(),
        };
        PromptActor::new(Templates::new(prompts), task, Stage::Exploration).with_context(limit)
    }

    fn memory(lines: usize) -> MemoryView {
        MemoryView {
            rendered: (1..=lines)
                .map(|i| {
                    format!(
                        "best#{i} val_mae=1.{i:04} params=100 edges=[{}]\n",
                        "x".repeat(200)
                    )
                })
                .collect(),
            count: lines,
            best: Arc::default(),
            all: Arc::default(),
            avoid: Vec::new(),
            known: Arc::new(Default::default()),
            stage: Stage::Exploration,
        }
    }

    #[actix::test]
    async fn the_value_prompt_quotes_the_best_evidence_and_counts_all_of_it() {
        let case = |matched: usize| crate::messages::ThoughtCase {
            partial: vec![],
            idea: "an idea".into(),
            evidence: (0..matched.min(crate::messages::EVIDENCE_QUOTED))
                .map(|i| format!("val_mae=1.{i:04}"))
                .collect(),
            matched,
            known_if_complete: false,
        };
        let msg = RenderTotValue {
            memory: memory(0),
            node: 1,
            cases: vec![case(12), case(2), case(0)],
            request_id: 0,
            branch: 0,
        };
        let p = actor(None).start().send(msg).await.unwrap().unwrap();
        let user = &p.messages[1].content;
        assert!(
            user.contains(
                "evidence (12 evaluated designs contain it; the best 5): val_mae=1.0000;"
            ),
            "{user}"
        );
        assert!(!user.contains("val_mae=1.0005"), "{user}");
        assert!(
            user.contains(
                "evidence (2 evaluated designs contain it): val_mae=1.0000; val_mae=1.0001\n"
            ),
            "{user}"
        );
        assert!(
            user.contains("no evaluated design contains it yet"),
            "{user}"
        );
    }

    #[actix::test]
    async fn the_memory_section_is_trimmed_to_the_context_window_best_first() {
        let msg = || RenderCot {
            memory: memory(40),
            request_id: 0,
        };
        let full = actor(None).start().send(msg()).await.unwrap().unwrap();
        let size = |p: &Prompt| p.messages.iter().map(|m| m.content.len()).sum::<usize>();
        assert!(full.messages[1].content.contains("best#40 "));
        // Room for the prompt without memory plus about 10 memory lines.
        let limit = (size(&full) - 30 * 250) / CHARS_PER_TOKEN;
        let trimmed = actor(Some(limit))
            .start()
            .send(msg())
            .await
            .unwrap()
            .unwrap();
        let user = &trimmed.messages[1].content;
        assert!(size(&trimmed) <= limit * CHARS_PER_TOKEN);
        assert!(
            user.contains("best#1 ") && user.contains("best#5 "),
            "best entries dropped"
        );
        assert!(!user.contains("best#40 "), "nothing was trimmed");
        let kept = user.matches("best#").count();
        assert!((8..=12).contains(&kept), "{kept} lines kept");
        // A limit that fits everything changes nothing.
        let roomy = actor(Some(size(&full)))
            .start()
            .send(msg())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(roomy.messages[1].content, full.messages[1].content);
    }
}
