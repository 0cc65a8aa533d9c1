//! Benchmarks (not tests): `bench actors` (actor overhead and pipelining), `bench proxy` (proxy
//! time of the reference architecture) and `bench gpu` (a device against the CPU).

use crate::common::read_arch;
use anyhow::{bail, Context, Result};
use clap::Subcommand;
use ists::space::Arch;
use ists::train::{proxy_eval, TrainData};
use ists_actors::settings;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Subcommand)]
pub enum BenchCmd {
    /// Actor overhead and pipelined vs sequential wall time (mock LLM, fake evaluator).
    Actors(ActorsArgs),
    /// Proxy evaluation time of the reference architecture (METR-LA week and PEMS08 shape).
    Proxy(ProxyArgs),
    /// A device against the CPU (`scripts/gpu-check.sh` runs it on a GPU host): forecasts and
    /// proxy scores within tolerance, a real out-of-memory classified and survived, and the
    /// proxy time per candidate on each, as a table. Exits non-zero when a check fails.
    Gpu(GpuCheck),
}

/// `ists bench actors`.
#[derive(clap::Args)]
pub struct ActorsArgs {
    /// Latency of the mock instructor, milliseconds.
    #[arg(long, default_value_t = 200)]
    pub latency_ms: u64,
    /// Cost of one fake evaluation, milliseconds.
    #[arg(long, default_value_t = 200)]
    pub cost_ms: u64,
    /// Candidates of each run.
    #[arg(long, default_value_t = 20)]
    pub candidates: usize,
}

/// `ists bench proxy`.
#[derive(clap::Args)]
pub struct ProxyArgs {
    /// Architecture JSON file timed.
    #[arg(long, default_value = "config/reference-arch.json")]
    pub arch: PathBuf,
    /// Timed repetitions per input.
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
}

#[derive(clap::Args)]
pub struct GpuCheck {
    /// The device checked (cuda:N).
    #[arg(long, default_value = "cuda:0")]
    device: String,
    /// The device it is compared with.
    #[arg(long, default_value = "cpu")]
    reference: String,
    /// Architecture JSON file compared.
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

/// Runs a benchmark.
pub fn run(cmd: BenchCmd) -> Result<()> {
    match cmd {
        BenchCmd::Actors(a) => actors(a.latency_ms, a.cost_ms, a.candidates),
        BenchCmd::Proxy(a) => proxy(a.arch, a.repeat),
        BenchCmd::Gpu(a) => gpu(a),
    }
}

fn actors(latency_ms: u64, cost_ms: u64, candidates: usize) -> Result<()> {
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

fn proxy(arch_path: PathBuf, repeat: usize) -> Result<()> {
    let s = settings::load(None)?;
    tch::set_num_threads(s.evaluators.cpu_threads());
    let arch = read_arch(&arch_path, &s)?;
    let mut cases = Vec::new();
    let p = ists_actors::search::supervisor::prepare_data(&s)?;
    cases.push(("METR-LA week (207 nodes)", p));
    cases.push((
        "PEMS08 shape (170 nodes)",
        ists::data::synthetic::pems08_shaped(&s.data_dir, &s.data.prepare)?,
    ));
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

fn gpu(a: GpuCheck) -> Result<()> {
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
    Arch::fill_distinct(
        s.search.space,
        &s.hyper_space(),
        &mut archs,
        a.candidates,
        &mut rng,
    );
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
