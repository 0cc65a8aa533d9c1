//! Commands that run searches: `search`, `daemon` and `llm serve` (the bundled local model).

use anyhow::{bail, Result};
use ists::config::{Backend, Mode, Settings};
use ists_actors::{run_search, settings, SearchOptions};
use std::path::PathBuf;

/// `ists search`: one architecture search in the foreground.
#[derive(clap::Args)]
pub struct SearchArgs {
    /// Settings file layered over the defaults (config/default.toml lists every key).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Instructor: offline (seeded, no key), openai (any OpenAI-compatible endpoint, llm.base_url) or local (the bundled model).
    #[arg(long)]
    pub llm: Option<Backend>,
    /// Step-level strategy: cot (one prompt, reasoning per node) or tot (a tree of partial designs).
    #[arg(long)]
    pub mode: Option<Mode>,
    /// Candidates evaluated in total (search.budget); with --resume, a new total.
    #[arg(long)]
    pub budget: Option<usize>,
    /// Continue the search in this run directory (its own settings; a killed search loses nothing).
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Name of the run directory under `runs_dir` (timestamped when absent).
    #[arg(long)]
    pub name: Option<String>,
    /// Fault injection for tests: this many evaluations fail (evaluator restarts).
    #[arg(long, default_value_t = 0, hide = true)]
    pub inject_failures: usize,
}

/// `ists daemon`: the HTTP API, SQLite store and unfinished searches resumed at start.
#[derive(clap::Args)]
pub struct DaemonArgs {
    /// Search defaults plus a `[daemon]` section.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Address to bind (overrides daemon.bind).
    #[arg(long)]
    pub bind: Option<String>,
    /// Port (overrides daemon.port; 0 picks a free one).
    #[arg(long)]
    pub port: Option<u16>,
    /// Data directory (overrides daemon.data_dir).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// `ists llm serve`: the bundled local model on 127.0.0.1:`llm.local.port`.
#[derive(clap::Args)]
pub struct ServeArgs {
    /// Settings file layered over the defaults (its [llm.local] section).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// Runs a search with the command line's overrides.
pub fn search(a: SearchArgs) -> Result<()> {
    let mut s = settings::load(a.config.as_deref())?;
    if let Some(b) = a.llm {
        s.llm.backend = b;
    }
    if let Some(m) = a.mode {
        s.search.mode = m;
    }
    if let Some(b) = a.budget {
        s.search.budget = b;
    }
    s.validate()?;
    run(s, a.resume, a.name, a.inject_failures, a.budget)
}

fn run(
    s: Settings,
    resume: Option<PathBuf>,
    name: Option<String>,
    inject_failures: usize,
    resume_budget: Option<usize>,
) -> Result<()> {
    let sys = actix::System::new();
    let summary = sys.block_on(async move {
        let opts = SearchOptions {
            resume,
            resume_budget,
            name,
            progress: true,
            inject_failures,
            ..SearchOptions::default()
        };
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
            eprintln!("interrupted: draining (in-flight evaluations finish and are recorded)");
        };
        run_search(s, opts, shutdown).await
    })?;
    println!("\nrun directory: {}", summary.run_dir);
    println!(
        "evaluated {} of {} (resumed {}), failed proposals {}, repairs {}, rejected {:?}",
        summary.evaluated,
        summary.budget,
        summary.resumed,
        summary.failed_proposals,
        summary.repairs,
        summary.rejected
    );
    if summary.final_kept > 0 {
        println!(
            "final trainings kept from an earlier session: {}",
            summary.final_kept
        );
    }
    if summary.eval_retries > 0 || !summary.eval_failures.is_empty() {
        println!(
            "evaluator faults: survived by a retry {:?}, failed candidates {:?}",
            summary.retried_faults, summary.eval_failures
        );
    }
    if summary.requests > 0 {
        let u = summary.usage;
        println!(
            "llm: {} requests, {:.1}s, tokens prompt {} (cached {}) completion {}{}, retries {:?}, errors {:?}, fallbacks {}",
            summary.requests,
            summary.llm_seconds,
            u.prompt_tokens,
            u.cached_tokens,
            u.completion_tokens,
            summary.cost_usd.map(|c| format!(", about ${c:.4}")).unwrap_or_default(),
            summary.llm_retries,
            summary.llm_errors,
            summary.fallbacks
        );
        println!(
            "instructor: {} of {} replies usable, {} duplicates adjusted, reasoning {} chars (~{} tokens), tree-of-thought thoughts {}, value requests {} ({} valued by the heuristic)",
            summary.usable_replies,
            summary.replies,
            summary.adjusted,
            summary.reasoning_chars,
            summary.reasoning_tokens_est,
            summary.thoughts,
            summary.value_requests,
            summary.value_fallbacks
        );
    }
    if let Some(b) = &summary.best {
        println!(
            "best proxy MAE {:.4} (candidate {}, hash {})",
            b.score, b.candidate, b.hash
        );
    }
    // Said only where there was a choice: several candidates, or several seeds of one.
    let chose =
        summary.final_results.len() > 1 || summary.final_results.iter().any(|f| f.seeds.len() > 1);
    if let Some((f, (metric, v))) = summary
        .final_results
        .first()
        .and_then(|f| Some((f, f.choice_score()?)))
        .filter(|_| chose)
    {
        println!(
            "chosen: candidate {} (mean validation {metric} {v:.4} over {} seed(s); model of seed {})",
            f.candidate,
            f.seeds.len(),
            f.seed
        );
    }
    for f in &summary.final_results {
        if let Some(t) = &f.report.test {
            println!(
                "\nfinal training of candidate {} ({} parameters), test metrics:\n{t}",
                f.candidate, f.report.params
            );
        }
        if let Some(e) = &f.ensemble {
            println!(
                "ensemble of seeds {:?} (mean of their forecasts; seeds' mean test MAE {}), test metrics:\n{}",
                e.members,
                f.mean_test_mae.map_or("-".into(), |m| format!("{m:.4}")),
                e.test
            );
        }
    }
    if let Some(stop) = &summary.stopped {
        bail!("search stopped early: {stop}");
    }
    Ok(())
}

/// Runs the daemon until SIGINT or SIGTERM.
pub fn daemon(a: DaemonArgs) -> Result<()> {
    let DaemonArgs {
        config,
        bind,
        port,
        data_dir,
    } = a;
    use std::io::Write;
    let (base, mut d) = ists_actors::daemon::load_config(config.as_deref())?;
    if let Some(b) = bind {
        d.bind = b;
    }
    if let Some(p) = port {
        d.port = p;
    }
    if let Some(dir) = data_dir {
        d.data_dir = dir;
    }
    let sys = actix::System::new();
    sys.block_on(async move {
        let handle = ists_actors::Daemon::new(base, d).start().await?;
        // The address on stdout (and in data_dir/daemon.addr) lets scripts use --port 0.
        println!("listening on http://{}", handle.addr());
        std::io::stdout().flush()?;
        let shutdown = async {
            #[cfg(unix)]
            {
                use tokio::signal::unix::{signal, SignalKind};
                match signal(SignalKind::terminate()) {
                    Ok(mut term) => {
                        tokio::select! {
                            _ = tokio::signal::ctrl_c() => {}
                            _ = term.recv() => {}
                        }
                    }
                    Err(_) => {
                        let _ = tokio::signal::ctrl_c().await;
                    }
                }
            }
            #[cfg(not(unix))]
            {
                let _ = tokio::signal::ctrl_c().await;
            }
            eprintln!("shutting down: draining searches (they resume at the next start)");
        };
        handle.run_until(shutdown).await;
        Ok(())
    })
}

/// Serves the local model in the foreground until interrupted.
pub fn serve(a: ServeArgs) -> Result<()> {
    let s = settings::load(a.config.as_deref())?;
    let server = ists_actors::instructor::local::LocalServer::ensure(&s.llm.local)?;
    println!(
        "serving {} at {}",
        ists_actors::instructor::local::MODEL_NAME,
        server.base_url()
    );
    if !server.started() {
        println!("(a server was already running there; nothing to do)");
    }
    server.serve_until_signal()?;
    Ok(())
}
