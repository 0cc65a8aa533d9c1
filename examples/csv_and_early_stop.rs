//! Extending a search without touching any existing actor: one new actor writes every evaluated
//! candidate to a CSV file and, when a target proxy MAE is reached, stops the search early
//! (through the shutdown future, which drains in-flight evaluations).
//!
//! `cargo run --release --example csv_and_early_stop -- [TARGET_MAE]`
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and examples may panic on failure

use actix::prelude::*;
use ists_actors::messages::{Event, EventMsg};
use ists_actors::{run_search, settings, SearchOptions};
use std::io::Write;
use tokio::sync::watch;

/// Writes `candidate,score,status,seconds` lines and signals when the target is reached.
struct CsvEarlyStop {
    out: std::fs::File,
    target: f64,
    stop: watch::Sender<bool>,
}

impl Actor for CsvEarlyStop {
    type Context = Context<Self>;
}

impl Handler<EventMsg> for CsvEarlyStop {
    type Result = ();
    fn handle(&mut self, msg: EventMsg, _: &mut Context<Self>) {
        if let Event::Evaluated {
            candidate,
            score,
            status,
            seconds,
            ..
        } = msg.event
        {
            let score_text = score.map(|s| format!("{s:.4}")).unwrap_or_default();
            let _ = writeln!(self.out, "{candidate},{score_text},{status:?},{seconds:.3}");
            if score.is_some_and(|s| s <= self.target) {
                let _ = self.stop.send(true);
            }
        }
    }
}

fn main() -> anyhow::Result<()> {
    let target: f64 = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(5.0);
    let mut s = settings::load(Some(std::path::Path::new("config/tiny.toml")))?;
    s.search.budget = 8;
    let sys = actix::System::new();
    let summary = sys.block_on(async move {
        let (tx, mut rx) = watch::channel(false);
        let mut out = std::fs::File::create("candidates.csv")?;
        writeln!(out, "candidate,score,status,seconds")?;
        let ext = CsvEarlyStop {
            out,
            target,
            stop: tx,
        }
        .start();
        let opts = SearchOptions::default().subscribe(ext.recipient());
        let shutdown = async move {
            let _ = rx.wait_for(|hit| *hit).await;
            println!("target MAE {target} reached: stopping early");
        };
        Ok::<_, anyhow::Error>(run_search(s, opts, shutdown).await?)
    })?;
    println!(
        "evaluated {} candidates, best {:?}; see candidates.csv and {}",
        summary.evaluated,
        summary.best.map(|b| b.score),
        summary.run_dir
    );
    Ok(())
}
