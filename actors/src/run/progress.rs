//! The progress display: a subscriber that shows candidates done/total, stage, best proxy MAE,
//! failures and tokens on a terminal progress bar (hidden when stderr is not a terminal).

use crate::messages::{Event, EventMsg};
use actix::prelude::*;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Progress {
    bar: ProgressBar,
    stage: String,
    best: Option<f64>,
    failures: usize,
    tokens: u64,
}

impl Progress {
    pub fn new(budget: usize) -> Progress {
        let bar = ProgressBar::with_draw_target(Some(budget as u64), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:30} {pos}/{len} candidates  {msg}  [{elapsed_precise}]",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Progress {
            bar,
            stage: "exploration".into(),
            best: None,
            failures: 0,
            tokens: 0,
        }
    }

    fn refresh(&self) {
        let best = self
            .best
            .map(|b| format!("{b:.4}"))
            .unwrap_or_else(|| "-".into());
        self.bar.set_message(format!(
            "stage {}  best MAE {best}  failures {}  tokens {}",
            self.stage, self.failures, self.tokens
        ));
    }
}

impl Actor for Progress {
    type Context = Context<Self>;
}

impl Handler<EventMsg> for Progress {
    type Result = ();
    fn handle(&mut self, msg: EventMsg, _: &mut Context<Self>) {
        match msg.event {
            Event::Started { resumed, .. } => self.bar.set_position(resumed as u64),
            Event::Evaluated { .. } => self.bar.inc(1),
            Event::Failed { candidate, .. } => {
                self.failures += 1;
                if candidate.is_some() {
                    self.bar.inc(1);
                }
            }
            Event::Rejected { .. } => self.failures += 1,
            Event::StageSwitched { to, .. } => self.stage = to.to_string(),
            Event::NewBest { score, .. } => self.best = Some(score),
            Event::Tokens { usage } => {
                self.tokens = self
                    .tokens
                    .saturating_add(usage.prompt_tokens.saturating_add(usage.completion_tokens))
            }
            Event::Finished { .. } => self.bar.finish(),
            _ => {}
        }
        self.refresh();
    }
}
