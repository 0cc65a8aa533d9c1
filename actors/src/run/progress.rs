//! The progress display: a subscriber that shows candidates done/total, stage, best proxy MAE,
//! failures and tokens on a terminal progress bar, or, when stderr is not a terminal (a log
//! file, a CI job, `nohup`), as one plain line per evaluated candidate and per stage event, so a
//! long run can be followed with `tail -f`.

use crate::messages::{Event, EventMsg};
use actix::prelude::*;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

pub struct Progress {
    bar: ProgressBar,
    stage: String,
    best: Option<f64>,
    failures: usize,
    tokens: u64,
    done: u64,
    budget: u64,
    /// Plain lines instead of the bar (stderr is not a terminal).
    plain: bool,
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
            done: 0,
            budget: budget as u64,
            plain: !std::io::stderr().is_terminal(),
        }
    }

    /// The state as one plain line (the log form of the bar).
    pub fn line(&self) -> String {
        let best = self
            .best
            .map(|b| format!("{b:.4}"))
            .unwrap_or_else(|| "-".into());
        format!(
            "progress: {}/{} candidates, stage {}, best MAE {best}, failures {}, tokens {}",
            self.done, self.budget, self.stage, self.failures, self.tokens
        )
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

impl Progress {
    /// Takes `event` into the state; true when a log reader should get a line for it.
    fn apply(&mut self, event: &Event) -> bool {
        match event {
            Event::Started { resumed, .. } => {
                self.done = *resumed as u64;
                self.bar.set_position(self.done);
                true
            }
            Event::Evaluated { .. } => {
                self.done += 1;
                self.bar.inc(1);
                true
            }
            Event::Failed { candidate, .. } => {
                self.failures += 1;
                if candidate.is_some() {
                    self.done += 1;
                    self.bar.inc(1);
                }
                candidate.is_some()
            }
            Event::Rejected { .. } => {
                self.failures += 1;
                false
            }
            Event::StageSwitched { to, .. } => {
                self.stage = to.to_string();
                true
            }
            Event::NewBest { score, .. } => {
                self.best = Some(*score);
                false
            }
            Event::Tokens { usage } => {
                self.tokens = self
                    .tokens
                    .saturating_add(usage.prompt_tokens.saturating_add(usage.completion_tokens));
                false
            }
            Event::Finished { .. } => {
                self.bar.finish();
                true
            }
            _ => false,
        }
    }
}

impl Handler<EventMsg> for Progress {
    type Result = ();
    fn handle(&mut self, msg: EventMsg, _: &mut Context<Self>) {
        let report = self.apply(&msg.event);
        if self.plain {
            if report {
                eprintln!("{}", self.line());
            }
        } else {
            self.refresh();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ists::memory::Stage;

    #[test]
    fn the_log_line_follows_the_search() {
        let mut p = Progress::new(4);
        assert!(p.apply(&Event::Started {
            run_dir: "r".into(),
            budget: 4,
            resumed: 1,
        }));
        assert!(!p.apply(&Event::NewBest {
            candidate: 0,
            score: 3.25,
        }));
        assert!(p.apply(&Event::StageSwitched {
            from: Stage::Exploration,
            to: Stage::Optimization,
            after: 1,
        }));
        assert!(p.apply(&Event::Failed {
            candidate: Some(1),
            proposal: None,
            kind: "k".into(),
            reason: "r".into(),
        }));
        assert!(!p.apply(&Event::Failed {
            candidate: None,
            proposal: Some(2),
            kind: "k".into(),
            reason: "r".into(),
        }));
        assert_eq!(
            p.line(),
            "progress: 2/4 candidates, stage optimization, best MAE 3.2500, failures 2, tokens 0"
        );
    }
}
