//! The `ists` command line: `train`, `data inspect`, `search`, `llm serve` and `bench`.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use ists::config::{Backend, Mode, Settings};
use ists::data::{load, prepare, DataSpec};
use ists::space::Arch;
use ists::train::{proxy_eval, train_full, TrainData};
use ists_actors::{run_search, settings, SearchOptions};
use std::path::PathBuf;
use std::time::{Duration, Instant};

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
    Train {
        /// Architecture JSON file.
        #[arg(long)]
        arch: PathBuf,
        /// Bundled dataset name or path (default: the config's data source).
        #[arg(long)]
        data: Option<String>,
        /// Settings file layered over the defaults.
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        epochs: Option<usize>,
        /// Run the one-step-tuning proxy instead of full training.
        #[arg(long)]
        proxy: bool,
        /// Where to write the JSON result.
        #[arg(long, default_value = "train-result.json")]
        out: PathBuf,
    },
    /// Inspect a dataset: shapes, missing values, splits.
    Data {
        #[command(subcommand)]
        cmd: DataCmd,
    },
    /// Run an architecture search.
    Search {
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        llm: Option<Backend>,
        #[arg(long)]
        mode: Option<Mode>,
        #[arg(long)]
        budget: Option<usize>,
        /// Continue the search in this run directory.
        #[arg(long)]
        resume: Option<PathBuf>,
        /// Name of the run directory under `runs_dir`.
        #[arg(long)]
        name: Option<String>,
        /// Fault injection for tests: this many evaluations fail (evaluator restarts).
        #[arg(long, default_value_t = 0, hide = true)]
        inject_failures: usize,
    },
    /// The bundled local LLM: `serve` installs (once) and runs it in the foreground.
    Llm {
        #[command(subcommand)]
        cmd: LlmCmd,
    },
    /// Benchmarks (not tests): `actors` or `proxy`.
    Bench {
        #[command(subcommand)]
        cmd: BenchCmd,
    },
}

#[derive(Subcommand)]
enum DataCmd {
    /// Print shapes, missing ratio and split sizes.
    Inspect {
        /// Bundled dataset name or path.
        source: String,
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum LlmCmd {
    /// Serve the local model on 127.0.0.1:`llm.local.port` until interrupted.
    Serve {
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum BenchCmd {
    /// Actor overhead and pipelined vs sequential wall time (mock LLM, fake evaluator).
    Actors {
        #[arg(long, default_value_t = 200)]
        latency_ms: u64,
        #[arg(long, default_value_t = 200)]
        cost_ms: u64,
        #[arg(long, default_value_t = 20)]
        candidates: usize,
    },
    /// Proxy evaluation time of the reference architecture (METR-LA week and PEMS08 shape).
    Proxy {
        #[arg(long, default_value = "config/reference-arch.json")]
        arch: PathBuf,
        #[arg(long, default_value_t = 3)]
        repeat: usize,
    },
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().cmd {
        Cmd::Train {
            arch,
            data,
            config,
            epochs,
            proxy,
            out,
        } => cmd_train(arch, data, config, epochs, proxy, out),
        Cmd::Data {
            cmd: DataCmd::Inspect { source, config },
        } => cmd_inspect(source, config),
        Cmd::Search {
            config,
            llm,
            mode,
            budget,
            resume,
            name,
            inject_failures,
        } => {
            let mut s = settings::load(config.as_deref())?;
            if let Some(b) = llm {
                s.llm.backend = b;
            }
            if let Some(m) = mode {
                s.search.mode = m;
            }
            if let Some(b) = budget {
                s.search.budget = b;
            }
            s.validate().map_err(anyhow::Error::msg)?;
            cmd_search(s, resume, name, inject_failures, budget)
        }
        Cmd::Llm {
            cmd: LlmCmd::Serve { config },
        } => {
            let s = settings::load(config.as_deref())?;
            let server = ists_actors::local_llm::LocalServer::ensure(&s.llm.local)?;
            println!(
                "serving {} at {}",
                ists_actors::local_llm::MODEL_NAME,
                server.base_url()
            );
            if !server.started() {
                println!("(a server was already running there; nothing to do)");
            }
            server.serve_until_signal()?;
            Ok(())
        }
        Cmd::Bench { cmd } => match cmd {
            BenchCmd::Actors {
                latency_ms,
                cost_ms,
                candidates,
            } => cmd_bench_actors(latency_ms, cost_ms, candidates),
            BenchCmd::Proxy { arch, repeat } => cmd_bench_proxy(arch, repeat),
        },
    }
}

fn load_settings(config: Option<PathBuf>, data: Option<String>) -> Result<Settings> {
    let mut s = settings::load(config.as_deref())?;
    if let Some(d) = data {
        s.data.source = d;
        s.data.spec = None;
    }
    Ok(s)
}

fn read_arch(path: &PathBuf, s: &Settings) -> Result<Arch> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Arch::from_json(&text, s.search.space)
        .with_context(|| format!("architecture {}", path.display()))
}

fn cmd_train(
    arch: PathBuf,
    data: Option<String>,
    config: Option<PathBuf>,
    epochs: Option<usize>,
    proxy: bool,
    out: PathBuf,
) -> Result<()> {
    let mut s = load_settings(config, data)?;
    if let Some(e) = epochs {
        s.final_train.train.epochs = e;
    }
    tch::set_num_threads(s.evaluators.threads.max(1));
    let arch = read_arch(&arch, &s)?;
    let prepared = ists_actors::supervisor::prepare_data(&s)?;
    println!("{}", prepared.summary());
    let device =
        ists::config::parse_device(&s.evaluators.devices[0]).map_err(anyhow::Error::msg)?;
    let data = TrainData::new(&prepared, device)?;
    println!("architecture: {}", arch.summary());
    let result =
        if proxy {
            let r = proxy_eval(&arch, &data, &s.model, &s.proxy)?;
            println!(
            "proxy: status {:?}, val MAE {}, {} steps, loss {:.4} -> {:.4}, {} parameters, {:.2}s",
            r.status,
            r.val_mae.map(|v| format!("{v:.4}")).unwrap_or_else(|| "-".into()),
            r.steps,
            r.first_loss,
            r.last_loss,
            r.params,
            r.seconds
        );
            serde_json::to_value(&r)?
        } else {
            let mut log = |e: &ists::train::EpochLog| {
                println!(
                    "epoch {:>3}  train loss {:.4}  val MAE {:.4}  ({:.1}s)",
                    e.epoch, e.train_loss, e.val_mae, e.seconds
                )
            };
            let (report, _) = train_full(&arch, &data, &s.model, &s.final_train.train, &mut log)?;
            println!(
                "{} parameters, best epoch {} of {}, status {:?}",
                report.params, report.best_epoch, report.epochs_run, report.status
            );
            if let Some(t) = &report.test {
                println!("test metrics ({}):\n{t}", report.dataset);
            }
            serde_json::to_value(&report)?
        };
    std::fs::write(&out, serde_json::to_string_pretty(&result)?)
        .with_context(|| format!("writing {}", out.display()))?;
    println!("result written to {}", out.display());
    Ok(())
}

fn cmd_inspect(source: String, config: Option<PathBuf>) -> Result<()> {
    let s = load_settings(config, Some(source.clone()))?;
    let spec: DataSpec = s.data_spec()?;
    let raw = load(&spec)?;
    let p = prepare(&raw, &s.data.prepare)?;
    println!("source: {source}\n{}", p.summary());
    Ok(())
}

fn cmd_search(
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
    }
    if let Some(b) = &summary.best {
        println!(
            "best proxy MAE {:.4} (candidate {}, hash {})",
            b.score, b.candidate, b.hash
        );
    }
    for f in &summary.final_results {
        if let Some(t) = &f.report.test {
            println!(
                "\nfinal training of candidate {} ({} parameters), test metrics:\n{t}",
                f.candidate, f.report.params
            );
        }
    }
    if let Some(stop) = &summary.stopped {
        bail!("search stopped early: {stop}");
    }
    Ok(())
}

fn cmd_bench_actors(latency_ms: u64, cost_ms: u64, candidates: usize) -> Result<()> {
    let s = settings::load(None)?;
    let l = Duration::from_millis(latency_ms);
    let e = Duration::from_millis(cost_ms);
    let sys = actix::System::new();
    let rows = sys
        .block_on(async move {
            use ists_actors::bench::measure;
            let mut rows = Vec::new();
            rows.push(
                measure(
                    &s,
                    "overhead (L=0, 1 evaluator, sequential)",
                    candidates,
                    1,
                    1,
                    Duration::ZERO,
                    e,
                )
                .await?,
            );
            rows.push(
                measure(
                    &s,
                    "sequential propose-then-evaluate",
                    candidates,
                    1,
                    1,
                    l,
                    e,
                )
                .await?,
            );
            rows.push(measure(&s, "pipelined, 2 evaluators", candidates, 2, 4, l, e).await?);
            Ok::<_, String>(rows)
        })
        .map_err(anyhow::Error::msg)?;
    println!("| run | candidates | evaluators | in flight | L ms | E ms | wall s |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {} | {} | {:.3} |",
            r.name, r.candidates, r.evaluators, r.in_flight, r.latency_ms, r.cost_ms, r.wall_secs
        );
    }
    let n = candidates as f64;
    let overhead = (rows[0].wall_secs - n * e.as_secs_f64()) / n;
    println!(
        "\nactor + messaging overhead per candidate: {:.2} ms = {:.2}% of E",
        overhead * 1e3,
        100.0 * overhead / e.as_secs_f64()
    );
    println!(
        "pipelined / sequential wall time: {:.3}",
        rows[2].wall_secs / rows[1].wall_secs
    );
    Ok(())
}

fn cmd_bench_proxy(arch_path: PathBuf, repeat: usize) -> Result<()> {
    let s = settings::load(None)?;
    tch::set_num_threads(s.evaluators.threads.max(1));
    let arch = read_arch(&arch_path, &s)?;
    let mut cases = Vec::new();
    let p = ists_actors::supervisor::prepare_data(&s)?;
    cases.push(("METR-LA week (207 nodes)", p));
    cases.push(("PEMS08 shape (170 nodes)", pems08_shaped(&s)?));
    println!("| input | steps | batch | seconds per proxy evaluation (median of {repeat}) |");
    println!("|---|---:|---:|---:|");
    for (name, p) in cases {
        let data = TrainData::new(&p, tch::Device::Cpu)?;
        let mut times = Vec::new();
        for _ in 0..repeat.max(1) {
            let t0 = Instant::now();
            let r = proxy_eval(&arch, &data, &s.model, &s.proxy)?;
            if r.val_mae.is_none() {
                bail!("{name}: proxy did not finish: {:?}", r.status);
            }
            times.push(t0.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        println!(
            "| {name} | {} | {} | {:.3} |",
            s.proxy.steps,
            s.proxy.batch_size,
            times[times.len() / 2]
        );
    }
    Ok(())
}

/// The real PEMS08 graph with a synthetic daily-periodic flow signal of one week in the PEMS
/// `.npz` format (the PEMS08 signal itself is not bundled): a timing input of the right shape,
/// read through the real loader.
fn pems08_shaped(s: &Settings) -> Result<ists::data::Prepared> {
    let dir = std::env::temp_dir().join(format!("ists-pems08-shape-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    std::fs::copy(s.data_dir.join("PEMS08/PEMS08.csv"), dir.join("PEMS08.csv"))
        .context("copying the bundled PEMS08 graph")?;
    let (t, n, f) = (2016usize, 170usize, 3usize);
    let mut v = Vec::with_capacity(t * n * f);
    for step in 0..t {
        for node in 0..n {
            let phase = (step % 288) as f32 / 288.0 * std::f32::consts::TAU + node as f32 * 0.1;
            let flow = 200.0 + 150.0 * phase.sin() + (node % 7) as f32 * 5.0;
            v.extend_from_slice(&[flow, flow / 2000.0, 60.0 - flow / 20.0]);
        }
    }
    ists::data::write_npz(&dir.join("PEMS08.npz"), &[("data", &[t, n, f], &v)])?;
    let spec = DataSpec::from_path(&dir)?;
    let mut cfg = s.data.prepare.clone();
    cfg.split = [0.6, 0.2, 0.2];
    let p = prepare(&load(&spec)?, &cfg)?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(p)
}
