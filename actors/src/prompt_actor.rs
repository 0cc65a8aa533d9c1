//! PromptActor: renders prompts from the template files (background, strategy for the current
//! stage, memory, and the step-level decomposition). It follows the stage through the event
//! bus, so the stage switch reaches it as an event like any other subscriber.

use crate::messages::{
    ChatMessage, Event, EventMsg, Hints, Prompt, Purpose, RenderCot, RenderRepair, RenderTotStep,
};
use actix::prelude::*;
use ists::memory::Stage;
use ists::prompt::{background, TaskInfo, Templates};

pub struct PromptActor {
    templates: Templates,
    task: TaskInfo,
    stage: Stage,
}

impl PromptActor {
    pub fn new(templates: Templates, task: TaskInfo, stage: Stage) -> PromptActor {
        PromptActor {
            templates,
            task,
            stage,
        }
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
        let mem = t.render(
            "memory",
            &[("count", &memory.count.to_string()), ("memory", &rendered)],
        )?;
        Ok(vec![
            ("background".into(), background(t, &self.task)?),
            ("strategy".into(), strategy),
            ("memory".into(), mem),
        ])
    }

    fn build(
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
                ChatMessage::new("system", system.trim()),
                ChatMessage::new("user", user),
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
        Hints {
            purpose,
            stage: self.stage,
            best: memory.best.iter().map(|e| e.arch.clone()).collect(),
            known: memory.known.clone(),
            request_id: id,
            branch,
            repair: None,
        }
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
        let partial = if msg.partial.is_empty() {
            "(no edges yet)".to_string()
        } else {
            serde_json::to_string(&msg.partial).map_err(|e| e.to_string())?
        };
        let sources = (0..msg.node)
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let purpose = Purpose::TotStep {
            node: msg.node,
            partial: msg.partial.clone(),
        };
        let hints = self.hints(&msg.memory, purpose, msg.request_id, msg.branch);
        self.build(
            "tot_step",
            &msg.memory,
            &[
                ("partial", partial),
                ("node", msg.node.to_string()),
                ("sources", sources),
            ],
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
        p.messages.push(ChatMessage::new("assistant", reply));
        p.messages.push(ChatMessage::new("user", text));
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
