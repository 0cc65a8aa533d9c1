//! The `ists` command line. It only parses arguments (one `#[derive(Args)]` struct per
//! command, in the file of its group) and calls library functions: `model` (train, predict,
//! eval, report, data inspect), `search` (search, daemon, llm serve), `study` (baseline,
//! fidelity, protocol), `bench`; `common` holds what they share.

mod bench;
mod common;
mod model;
mod search;
mod study;

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::io::IsTerminal;

#[derive(Parser)]
#[command(
    name = "ists",
    version,
    about = "LLM-instructed neural architecture search for spatial-temporal forecasting"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Train one architecture (fully, or by the one-step proxy) and print its metrics.
    Train(model::TrainArgs),
    /// Forecast with a saved model and score it on the test split.
    Predict(model::PredictArgs),
    /// Evaluate one candidate by the proxy and print an `ISTS_RESULT {json}` line (the
    /// entrypoint of Ray jobs; usable from any scheduler).
    Eval(model::EvalArgs),
    /// Write RUN_DIR/report.md with PNG plots.
    Report(model::ReportArgs),
    /// Baselines on the same data and split: historical average, last value, a fixed
    /// Graph-WaveNet-like architecture, random search and the offline instructor at equal budget.
    Baseline(study::BaselineArgs),
    /// Proxy fidelity: rank correlation of proxy scores and fully trained scores.
    Fidelity(study::FidelityArgs),
    /// A published protocol reproduced: `tgcn` (T-GCN's Los-loop table).
    Protocol {
        #[command(subcommand)]
        cmd: ProtocolCmd,
    },
    /// Inspect a dataset: shapes, missing values, splits.
    Data {
        #[command(subcommand)]
        cmd: DataCmd,
    },
    /// Run an architecture search.
    Search(search::SearchArgs),
    /// Run the daemon: HTTP API, SQLite store, unfinished searches resumed at start.
    Daemon(search::DaemonArgs),
    /// The bundled local LLM: `serve` installs (once) and runs it in the foreground.
    Llm {
        #[command(subcommand)]
        cmd: LlmCmd,
    },
    /// Benchmarks (not tests): `actors`, `proxy` or `gpu`.
    Bench {
        #[command(subcommand)]
        cmd: bench::BenchCmd,
    },
}

#[derive(Subcommand)]
enum DataCmd {
    /// Print shapes, missing ratio and split sizes.
    Inspect(model::InspectArgs),
}

#[derive(Subcommand)]
enum ProtocolCmd {
    /// Last value, historical average, a GRU, the hand designs and `--arch` designs on T-GCN's
    /// Los-loop split and metrics, next to T-GCN's published values (resumable JSON rows).
    Tgcn(study::ProtocolArgs),
    /// The mean of several trained models' kept test forecasts (designs, settings, results
    /// files: an ensemble across them), scored by T-GCN's metrics, appended as one model.
    Combine(study::CombineArgs),
}

#[derive(Subcommand)]
enum LlmCmd {
    /// Serve the local model on 127.0.0.1:`llm.local.port` until interrupted.
    Serve(search::ServeArgs),
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: a log file (`2> search.log`, a service's journal)
        // gets plain lines that grep and `less` read as they are.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match Cli::parse().cmd {
        Cmd::Train(a) => model::train(a),
        Cmd::Predict(a) => model::predict(a),
        Cmd::Eval(a) => model::eval(a),
        Cmd::Report(a) => model::report(a),
        Cmd::Baseline(a) => study::baseline(a),
        Cmd::Fidelity(a) => study::fidelity(a),
        Cmd::Protocol {
            cmd: ProtocolCmd::Tgcn(a),
        } => study::protocol_tgcn(a),
        Cmd::Protocol {
            cmd: ProtocolCmd::Combine(a),
        } => study::protocol_combine(a),
        Cmd::Data {
            cmd: DataCmd::Inspect(a),
        } => model::inspect(a),
        Cmd::Search(a) => search::search(a),
        Cmd::Daemon(a) => search::daemon(a),
        Cmd::Llm {
            cmd: LlmCmd::Serve(a),
        } => search::serve(a),
        Cmd::Bench { cmd } => bench::run(cmd),
    }
}
