//! The `ists` command line: `train`, `predict`, `eval`, `data inspect`, `search`, `daemon`,
//! `llm serve`, `report`, `baseline`, `fidelity` and `bench`.

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
        /// Save the trained model in this directory (for `ists predict`).
        #[arg(long)]
        save: Option<PathBuf>,
    },
    /// Forecast with a saved model and score it on the test split.
    Predict {
        /// Model directory written by `train --save` or a search (`RUN_DIR/model`).
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        data: Option<String>,
        #[arg(long)]
        config: Option<PathBuf>,
        /// Write the forecasts `[samples, horizon, nodes]` as .npy here.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Evaluate one candidate by the proxy and print an `ISTS_RESULT {json}` line (the
    /// entrypoint of Ray jobs; usable from any scheduler).
    Eval {
        /// The search settings as hex-encoded JSON (as the Ray evaluator passes them).
        #[arg(long, conflicts_with = "settings")]
        settings_hex: Option<String>,
        /// Or a settings file (TOML layered over the defaults, or a run's config.json).
        #[arg(long)]
        settings: Option<PathBuf>,
        /// The architecture as hex-encoded JSON.
        #[arg(long, conflicts_with = "arch")]
        arch_hex: Option<String>,
        /// Or an architecture JSON file.
        #[arg(long)]
        arch: Option<PathBuf>,
        #[arg(long, default_value_t = 0)]
        candidate: usize,
        /// The data folder as this node sees it.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Proxy steps instead of proxy.steps (a promotion to a higher successive-halving rung).
        #[arg(long)]
        steps: Option<usize>,
    },
    /// Write RUN_DIR/report.md with PNG plots.
    Report { run_dir: PathBuf },
    /// Baselines on the same data and split: historical average, last value, a fixed
    /// Graph-WaveNet-like architecture, random search and the offline instructor at equal budget.
    Baseline {
        #[arg(long)]
        data: Option<String>,
        #[arg(long)]
        config: Option<PathBuf>,
        /// Candidate budget of the two searches (default: the config's).
        #[arg(long)]
        budget: Option<usize>,
        /// Only the classical baselines (no training).
        #[arg(long)]
        classical_only: bool,
        /// Repeat the two searches with this many seeds (search, proxy and final training
        /// seeds advance together; both searches share each seed) and summarize.
        #[arg(long, default_value_t = 1)]
        seeds: usize,
        /// Results file of a multi-seed comparison: one JSON line per method and seed
        /// (random, offline, hand-gwn), appended as each finishes; rows already there are
        /// taken over. Default baseline/search-<data>.jsonl.
        #[arg(long)]
        results: Option<PathBuf>,
    },
    /// Proxy fidelity: rank correlation of proxy scores and fully trained scores.
    Fidelity(FidelityArgs),
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
    /// Run the daemon: HTTP API, SQLite store, unfinished searches resumed at start.
    Daemon {
        /// Search defaults plus a `[daemon]` section.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Address to bind (overrides daemon.bind).
        #[arg(long)]
        bind: Option<String>,
        /// Port (overrides daemon.port; 0 picks a free one).
        #[arg(long)]
        port: Option<u16>,
        /// Data directory (overrides daemon.data_dir).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// The bundled local LLM: `serve` installs (once) and runs it in the foreground.
    Llm {
        #[command(subcommand)]
        cmd: LlmCmd,
    },
    /// Benchmarks (not tests): `actors`, `proxy` or `gpu`.
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
    /// A device against the CPU (`scripts/gpu-check.sh` runs it on a GPU host): forecasts and
    /// proxy scores within tolerance, a real out-of-memory classified and survived, and the
    /// proxy time per candidate on each, as a table. Exits non-zero when a check fails.
    Gpu(GpuCheck),
}

/// `ists fidelity`: how well cheap proxies rank architectures against full training.
#[derive(clap::Args)]
struct FidelityArgs {
    /// A bundled data set name or a path (overrides the config's data.source).
    #[arg(long)]
    data: Option<String>,
    /// Settings file: the model widths, the proxy ([proxy]) and the ground truth ([final.train]).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Architectures sampled from the search space (seeded by search.seed), after the --extra ones.
    #[arg(long, default_value_t = 30)]
    n: usize,
    /// Hand designs added first (architecture JSON files, comma separated).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "config/reference-arch.json,config/gwn-arch.json"
    )]
    extra: Vec<PathBuf>,
    /// Proxies scored: step, long4x_warmup, extrapolated, subset4x, seeds2, params, grad_norm, or all.
    #[arg(long, default_value = "all")]
    proxies: String,
    /// Ground-truth trainings per architecture (seeds final.train.seed, +1, ...).
    #[arg(long, default_value_t = 2)]
    truth_seeds: usize,
    /// Results file, one JSON line per architecture (resumed when it exists; a settings
    /// fingerprint beside it refuses a study with other settings). Default fidelity/fidelity-<data>.jsonl.
    #[arg(long)]
    results: Option<PathBuf>,
}

#[derive(clap::Args)]
struct GpuCheck {
    #[arg(long, default_value = "cuda:0")]
    device: String,
    #[arg(long, default_value = "cpu")]
    reference: String,
    #[arg(long, default_value = "config/reference-arch.json")]
    arch: PathBuf,
    /// Settings layered over the defaults (data, model, proxy).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Candidates timed on each device: the reference architecture, then sampled ones.
    #[arg(long, default_value_t = 4)]
    candidates: usize,
    /// libtorch threads of the CPU timing (0 = every core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Where to write the JSON record.
    #[arg(long, default_value = "gpu-check.json")]
    out: PathBuf,
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
            save,
        } => cmd_train(arch, data, config, epochs, proxy, out, save),
        Cmd::Predict {
            model,
            data,
            config,
            out,
        } => cmd_predict(model, data, config, out),
        Cmd::Eval {
            settings_hex,
            settings,
            arch_hex,
            arch,
            candidate,
            data_dir,
            steps,
        } => cmd_eval(
            settings_hex,
            settings,
            arch_hex,
            arch,
            candidate,
            data_dir,
            steps,
        ),
        Cmd::Report { run_dir } => {
            let r = ists_actors::run::report::write_report(&run_dir)?;
            println!("report: {}", r.markdown.display());
            for p in r.plots {
                println!("plot: {}", p.display());
            }
            Ok(())
        }
        Cmd::Baseline {
            data,
            config,
            budget,
            classical_only,
            seeds,
            results,
        } => cmd_baseline(data, config, budget, classical_only, seeds, results),
        Cmd::Fidelity(args) => cmd_fidelity(args),
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
        Cmd::Daemon {
            config,
            bind,
            port,
            data_dir,
        } => cmd_daemon(config, bind, port, data_dir),
        Cmd::Llm {
            cmd: LlmCmd::Serve { config },
        } => {
            let s = settings::load(config.as_deref())?;
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
        Cmd::Bench { cmd } => match cmd {
            BenchCmd::Actors {
                latency_ms,
                cost_ms,
                candidates,
            } => cmd_bench_actors(latency_ms, cost_ms, candidates),
            BenchCmd::Proxy { arch, repeat } => cmd_bench_proxy(arch, repeat),
            BenchCmd::Gpu(args) => cmd_bench_gpu(args),
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
    save: Option<PathBuf>,
) -> Result<()> {
    let mut s = load_settings(config, data)?;
    if let Some(e) = epochs {
        s.final_train.train.epochs = e;
    }
    tch::set_num_threads(s.evaluators.threads.max(1));
    let arch = read_arch(&arch, &s)?;
    let prepared = ists_actors::search::supervisor::prepare_data(&s)?;
    println!("{}", prepared.summary());
    let device = ists_actors::search::supervisor::single_device(&s).map_err(anyhow::Error::msg)?;
    let data = TrainData::new(&prepared, device)?;
    println!("architecture: {}", arch.summary());
    let result = if proxy {
        let r = proxy_eval(&arch, &data, &s.model, &s.proxy)?;
        println!(
            "proxy: status {:?}, val MAE {}, {} steps, loss {:.4} -> {:.4}, {} parameters, {:.2}s",
            r.status,
            r.val_mae
                .map(|v| format!("{v:.4}"))
                .unwrap_or_else(|| "-".into()),
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
        let (report, trained) = train_full(&arch, &data, &s.model, &s.final_train.train, &mut log)?;
        if let Some(dir) = &save {
            ists::export::save(dir, &trained, &arch, &data, &s.model)?;
            println!("model saved in {}", dir.display());
        }
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

fn cmd_daemon(
    config: Option<PathBuf>,
    bind: Option<String>,
    port: Option<u16>,
    data_dir: Option<PathBuf>,
) -> Result<()> {
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
    let p = ists_actors::search::supervisor::prepare_data(&s)?;
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

fn cmd_predict(
    model: PathBuf,
    data: Option<String>,
    config: Option<PathBuf>,
    out: Option<PathBuf>,
) -> Result<()> {
    let s = load_settings(config, data)?;
    tch::set_num_threads(s.evaluators.threads.max(1));
    let prepared = ists_actors::search::supervisor::prepare_data(&s)?;
    let data = TrainData::new(&prepared, tch::Device::Cpu)?;
    let (trained, arch, meta) = ists::export::load(&model, &data)?;
    println!("model: {} (trained on {})", arch.summary(), meta.dataset);
    let idx: Vec<i64> = data.test.clone().map(|i| i as i64).collect();
    let (pred, y) = trained.predict(&data, &idx, 128)?;
    let table = ists::metrics::MetricsTable::compute(&pred, &y, data.null)?;
    println!("test metrics ({} samples):\n{table}", idx.len());
    if let Some(path) = out {
        let shape: Vec<usize> = pred.size().iter().map(|&d| d as usize).collect();
        let values = Vec::<f32>::try_from(pred.flatten(0, -1))?;
        ists::data::write_npy(&path, &shape, &values)?;
        println!("forecasts {:?} written to {}", shape, path.display());
    }
    Ok(())
}

fn metrics_row(name: &str, m: &ists::metrics::MetricsTable) -> String {
    let mut cells = String::new();
    for (h, sc) in &m.horizons {
        cells.push_str(&format!(
            " @{h} {:.3}/{:.3}/{:.2}% |",
            sc.mae, sc.rmse, sc.mape
        ));
    }
    let a = &m.average;
    format!(
        "| {name} |{cells} {:.3}/{:.3}/{:.2}% |",
        a.mae, a.rmse, a.mape
    )
}

fn cmd_baseline(
    data: Option<String>,
    config: Option<PathBuf>,
    budget: Option<usize>,
    classical_only: bool,
    seeds: usize,
    results: Option<PathBuf>,
) -> Result<()> {
    use ists::baselines::{historical_average, last_value, score};
    use ists_actors::run::compare::{
        append_run, paired, read_runs, run_hand_design, run_search_method, Method,
    };
    let mut s = load_settings(config, data)?;
    if let Some(b) = budget {
        s.search.budget = b;
    }
    tch::set_num_threads(s.evaluators.threads.max(1));
    let prepared = ists_actors::search::supervisor::prepare_data(&s)?;
    let test = prepared.splits.test.clone();
    println!(
        "dataset {} - test samples {}..{} (the same split the search scores on)",
        prepared.name, test.start, test.end
    );
    println!("| model | horizons MAE/RMSE/MAPE | average |");
    println!("|---|---|---|");
    println!(
        "{}",
        metrics_row(
            "historical average",
            &score(&prepared, &test, &historical_average(&prepared, &test))?
        )
    );
    println!(
        "{}",
        metrics_row(
            "last value",
            &score(&prepared, &test, &last_value(&prepared, &test))?
        )
    );
    if classical_only {
        return Ok(());
    }
    let data = TrainData::new(&prepared, tch::Device::Cpu)?;
    let gwn_text =
        std::fs::read_to_string("config/gwn-arch.json").context("reading config/gwn-arch.json")?;
    let gwn = Arch::from_json(&gwn_text, ists::space::SpaceKind::Autocts)?;
    let (report, _) = train_full(&gwn, &data, &s.model, &s.final_train.train, &mut |_| {})?;
    if let Some(t) = &report.test {
        println!("{}", metrics_row("Graph-WaveNet-like (autocts, fixed)", t));
    }
    if seeds <= 1 && results.is_none() {
        // One seed, as a table beside the baselines.
        for (method, label) in [
            (Method::Random, "random search"),
            (Method::Offline, "offline instructor (evolutionary)"),
        ] {
            let sys = actix::System::new();
            let (_, summary) = sys
                .block_on(run_search_method(&s, &method, 0))
                .map_err(anyhow::Error::msg)?;
            let label = format!("{label}, budget {}", s.search.budget);
            match summary.final_results[0].report.test.as_ref() {
                Some(t) => println!("{}", metrics_row(&label, t)),
                None => println!("| {label} | no test metrics | |"),
            }
        }
        return Ok(());
    }
    // Several seeds: every method under every seed index, rows appended to the results file
    // (a rerun takes over the rows already there), then the paired statistics.
    let path = results.unwrap_or_else(|| {
        PathBuf::from(format!(
            "baseline/search-{}.jsonl",
            s.data.source.replace('/', "_")
        ))
    });
    let mut runs = read_runs(&path).map_err(anyhow::Error::msg)?;
    let gwn = read_arch(&PathBuf::from("config/gwn-arch.json"), &s)?;
    let methods = [
        Method::Random,
        Method::Offline,
        Method::Hand {
            name: "gwn".into(),
            arch: gwn,
        },
    ];
    for k in 0..seeds as u64 {
        for method in &methods {
            if runs
                .iter()
                .any(|r| r.method == method.name() && r.seed == k)
            {
                continue;
            }
            let run = match method {
                Method::Hand { name, arch } => run_hand_design(&s, name, arch, &data, k),
                m => actix::System::new()
                    .block_on(run_search_method(&s, m, k))
                    .map(|(r, _)| r),
            };
            match run {
                Ok(r) => {
                    eprintln!(
                        "{} seed +{k}: test MAE {:.4} ({} candidates, {} steps, {:.0} s)",
                        r.method, r.test_mae, r.evaluations, r.eval_steps, r.seconds
                    );
                    append_run(&path, &r).map_err(anyhow::Error::msg)?;
                    runs.push(r);
                }
                // A method that produced no model is reported, and the others go on.
                Err(e) => eprintln!("{e}"),
            }
        }
    }
    println!("\n| method | seeds | test MAE mean (sd) | random (sd) | wins/ties/losses | one-sided Wilcoxon p | eval steps vs random |");
    println!("|---|---:|---:|---:|---|---:|---|");
    for method in methods.iter().skip(1) {
        if let Some(p) = paired(&runs, &method.name(), "random") {
            println!(
                "| {} | {} | {:.4} ({:.4}) | {:.4} ({:.4}) | {}/{}/{} | {:.3} | {:.0} vs {:.0} |",
                p.method,
                p.n,
                p.mean,
                p.sd,
                p.against_mean,
                p.against_sd,
                p.wins,
                p.ties,
                p.losses,
                p.p,
                p.steps,
                p.against_steps
            );
        }
    }
    println!("rows in {}", path.display());
    Ok(())
}

fn cmd_fidelity(a: FidelityArgs) -> Result<()> {
    use ists::fidelity::{run_study, summarize, ProxyKind, ResultsFile, Study, StudySettings};
    use rand::SeedableRng;
    let s = load_settings(a.config, a.data)?;
    tch::set_num_threads(s.evaluators.threads.max(1));
    let kinds = ProxyKind::parse_list(&a.proxies)?;
    let prepared = ists_actors::search::supervisor::prepare_data(&s)?;
    // The hand designs first: a study cut short still compares them.
    let mut archs = Vec::new();
    for path in a.extra.iter().filter(|p| !p.as_os_str().is_empty()) {
        archs.push(read_arch(path, &s)?);
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(s.search.seed);
    let mut sampled = Vec::new();
    Arch::fill_distinct(s.search.space, &mut sampled, a.n, &mut rng);
    for x in sampled {
        if !archs.iter().any(|a| a.hash() == x.hash()) {
            archs.push(x);
        }
    }
    let settings = StudySettings {
        dataset: prepared.name.clone(),
        model: s.model.clone(),
        proxy: s.proxy.clone(),
        truth: s.final_train.train.clone(),
    };
    let results_path = a.results.unwrap_or_else(|| {
        PathBuf::from(format!(
            "fidelity/fidelity-{}.jsonl",
            s.data.source.replace('/', "_")
        ))
    });
    let mut results = ResultsFile::open(&results_path, &settings)?;
    let study = Study::new(&prepared, settings)?;
    eprintln!(
        "fidelity study on {}: {} architectures, proxies {}, {} ground-truth seeds of {} steps; results in {}",
        prepared.name,
        archs.len(),
        a.proxies,
        a.truth_seeds,
        study.truth_steps(),
        results_path.display()
    );
    let rows = run_study(
        &study,
        &archs,
        &kinds,
        a.truth_seeds,
        &mut results,
        &mut |l| eprintln!("{l}"),
    )?;
    let sum = summarize(&rows);
    let f = |v: Option<f64>| v.map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".into());
    println!(
        "{} architectures; ground truth (mean val MAE over seeds) {:.4} - {:.4}, sd {:.4}, {:.1} s per training; seed-to-seed Kendall tau {}",
        sum.architectures,
        sum.truth_min,
        sum.truth_max,
        sum.truth_sd,
        sum.truth_mean_seconds,
        f(sum.seed_ceiling_tau)
    );
    println!("| proxy | Kendall tau | Spearman rho | s / candidate | share of one training | n |");
    println!("|---|---:|---:|---:|---:|---:|");
    for p in &sum.proxies {
        println!(
            "| {} | {} | {} | {:.2} | {:.1}% | {} |",
            p.name,
            f(p.kendall_tau),
            f(p.spearman_rho),
            p.mean_seconds,
            p.cost_share * 100.0,
            p.n
        );
    }
    // The proxies scored in validation MAE share one plot; zero-cost scores have other units.
    let mae_like = ["step", "long4x_warmup", "subset4x", "seeds2"];
    let with_truth: Vec<&ists::fidelity::Row> =
        rows.iter().filter(|r| !r.truth.is_empty()).collect();
    let full: Vec<f64> = with_truth.iter().map(|r| r.truth_mean()).collect();
    let series: Vec<(String, Vec<f64>)> = mae_like
        .iter()
        .filter(|n| kinds.iter().any(|k| k.name() == **n))
        .map(|n| {
            let v = with_truth
                .iter()
                .map(|r| match r.proxy.get(*n) {
                    Some(p) if p.score < ists::fidelity::DIVERGED => p.score,
                    _ => f64::NAN,
                })
                .collect();
            (n.to_string(), v)
        })
        .collect();
    let plot = results_path.with_extension("png");
    ists_actors::run::report::fidelity_plot(&plot, &full, &series)?;
    std::fs::write(
        results_path.with_extension("summary.json"),
        serde_json::to_string_pretty(&sum)? + "\n",
    )?;
    println!(
        "written {}, {} and its summary",
        results_path.display(),
        plot.display()
    );
    Ok(())
}

fn cmd_eval(
    settings_hex: Option<String>,
    settings_file: Option<PathBuf>,
    arch_hex: Option<String>,
    arch_file: Option<PathBuf>,
    candidate: usize,
    data_dir: Option<PathBuf>,
    steps: Option<usize>,
) -> Result<()> {
    use ists_actors::eval::ray::{from_hex, RESULT_MARKER};
    let mut s: Settings = match (settings_hex, settings_file) {
        (Some(h), _) => {
            let bytes = from_hex(&h)
                .map_err(anyhow::Error::msg)
                .context("--settings-hex")?;
            serde_json::from_slice(&bytes).context("--settings-hex: settings JSON")?
        }
        (None, Some(p)) if p.extension().is_some_and(|e| e == "json") => {
            serde_json::from_str(&std::fs::read_to_string(&p)?)
                .with_context(|| format!("{}", p.display()))?
        }
        (None, p) => settings::load(p.as_deref())?,
    };
    if let Some(d) = data_dir {
        s.data_dir = d;
    }
    if let Some(n) = steps {
        s.proxy.steps = n;
    }
    let arch_text = match (arch_hex, arch_file) {
        (Some(h), _) => {
            String::from_utf8(from_hex(&h).map_err(anyhow::Error::msg)?).context("--arch-hex")?
        }
        (None, Some(p)) => {
            std::fs::read_to_string(&p).with_context(|| format!("{}", p.display()))?
        }
        (None, None) => bail!("give --arch or --arch-hex"),
    };
    let arch = Arch::from_json(&arch_text, s.search.space)?;
    tch::set_num_threads(s.evaluators.threads.max(1));
    let prepared = ists_actors::search::supervisor::prepare_data(&s)?;
    let device = ists_actors::search::supervisor::single_device(&s).map_err(anyhow::Error::msg)?;
    let data = TrainData::new(&prepared, device)?;
    let report = proxy_eval(&arch, &data, &s.model, &s.proxy)?;
    eprintln!("candidate {candidate}: {:?}", report.status);
    println!("{RESULT_MARKER}{}", serde_json::to_string(&report)?);
    Ok(())
}

fn cmd_bench_gpu(a: GpuCheck) -> Result<()> {
    use ists::devcheck::{compare, time_proxy, Tolerance};
    use rand::SeedableRng;
    let s = settings::load(a.config.as_deref())?;
    let device = ists::config::parse_device(&a.device).map_err(anyhow::Error::msg)?;
    let reference = ists::config::parse_device(&a.reference).map_err(anyhow::Error::msg)?;
    let cuda = serde_json::json!({
        "available": tch::Cuda::is_available(),
        "devices": tch::Cuda::device_count(),
        "cudnn": tch::Cuda::cudnn_is_available(),
        "built_with_cuda_feature": cfg!(feature = "cuda"),
    });
    println!("libtorch CUDA: {cuda}");
    for d in [device, reference] {
        if let tch::Device::Cuda(i) = d {
            if !tch::Cuda::is_available() {
                bail!(
                    "{}: libtorch sees no CUDA device. Build with `--features cuda` against the \
                     GPU host's torch (scripts/gpu-check.sh build), run with LD_LIBRARY_PATH at \
                     that torch's lib directory (scripts/gpu-check.sh run), and check the \
                     driver with nvidia-smi",
                    a.device
                );
            }
            if i as i64 >= tch::Cuda::device_count() {
                bail!(
                    "cuda:{i}: only {} CUDA devices are visible",
                    tch::Cuda::device_count()
                );
            }
        }
    }
    let threads = match a.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    tch::set_num_threads(threads as i32);
    let arch = read_arch(&a.arch, &s)?;
    let prepared = ists_actors::search::supervisor::prepare_data(&s)?;
    println!("{}", prepared.summary());
    println!("architecture: {}", arch.summary());

    let tol = Tolerance::default();
    // The data goes to each device once; the comparison and the timing share it.
    let on_ref_data = TrainData::new(&prepared, reference)?;
    let on_dev_data = TrainData::new(&prepared, device)?;
    let agreement = compare(&arch, &on_ref_data, &on_dev_data, &s.model, &s.proxy, tol)?;
    println!(
        "\n| check ({} vs {}) | {} | {} | relative difference | bound |",
        agreement.other, agreement.reference, agreement.reference, agreement.other
    );
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| untrained forecasts (max abs diff {:.3e}) | | | {:.3e} | {:.1e} |",
        agreement.forward_max_abs, agreement.forward_rel, tol.forward
    );
    println!(
        "| first training loss | {:.5} | {:.5} | {:.3e} | {:.1e} |",
        agreement.first_loss.0, agreement.first_loss.1, agreement.first_loss_rel, tol.first_loss
    );
    let f = |v: Option<f64>| v.map_or_else(|| "-".into(), |v| format!("{v:.5}"));
    println!(
        "| proxy validation MAE ({} steps) | {} | {} | {:.3e} | {:.1e} |",
        s.proxy.steps,
        f(agreement.val_mae.0),
        f(agreement.val_mae.1),
        agreement.val_mae_rel,
        tol.val_mae
    );

    // A real out-of-memory on the device: classified as the evaluator classifies it, and the
    // device keeps working afterwards (the timing below runs on it).
    let oom = if device.is_cuda() {
        let (kind, message) = match ists_actors::eval::evaluator::provoke_oom(device) {
            Some((kind, m)) => (kind.to_string(), m),
            None => (
                "none".to_string(),
                "a 4 TiB allocation succeeded".to_string(),
            ),
        };
        let first_line = message.lines().next().unwrap_or_default().to_string();
        println!(
            "\nout-of-memory check: 4 TiB allocation on {} -> kind {kind}: {first_line}",
            a.device
        );
        Some(serde_json::json!({"kind": kind, "message": first_line}))
    } else {
        None
    };

    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(s.search.seed);
    let mut archs = vec![arch.clone()];
    Arch::fill_distinct(s.search.space, &mut archs, a.candidates, &mut rng);
    let on_device = time_proxy(&archs, &on_dev_data, &s.model, &s.proxy)?;
    let on_reference = time_proxy(&archs, &on_ref_data, &s.model, &s.proxy)?;
    println!(
        "\n| device | threads | candidates | warm-up s | median s per candidate | mean s | speed-up (median) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for t in [&on_reference, &on_device] {
        println!(
            "| {} | {} | {} | {:.3} | {:.3} | {:.3} | {:.2}x |",
            t.device,
            if t.device == "cpu" {
                t.threads.to_string()
            } else {
                "-".into()
            },
            t.seconds.len(),
            t.warmup_seconds,
            t.median(),
            t.mean(),
            on_reference.median() / t.median()
        );
    }
    let record = serde_json::json!({
        "cuda": cuda,
        "dataset": prepared.name,
        "proxy": s.proxy,
        "model": s.model,
        "agreement": agreement,
        "oom": oom,
        "timing": [on_reference, on_device],
        "architectures": archs.iter().map(|a| a.to_spec()).collect::<Vec<_>>(),
    });
    std::fs::write(&a.out, serde_json::to_string_pretty(&record)?)
        .with_context(|| format!("writing {}", a.out.display()))?;
    println!("\nrecord written to {}", a.out.display());
    let mut failed: Vec<String> = agreement.failures.clone();
    if let Some(o) = &oom {
        if o["kind"] != "cuda_oom" {
            failed.push(format!(
                "the out-of-memory was classified as {}, not cuda_oom",
                o["kind"]
            ));
        }
    }
    if !failed.is_empty() {
        bail!("device check failed:\n- {}", failed.join("\n- "));
    }
    println!("device check passed");
    Ok(())
}
