//! Commands on one model or data set: `train`, `predict`, `eval` (the Ray job entry point),
//! `report` and `data inspect`.

use crate::common::{load_settings, read_arch};
use anyhow::{bail, Context, Result};
use ists::config::Settings;
use ists::data::{load, prepare, weekday_name, DataSpec};
use ists::space::Arch;
use ists::train::{proxy_eval, train_full, TrainData};
use ists_actors::settings;
use std::path::PathBuf;

/// `ists train`: one architecture, fully or by the proxy.
#[derive(clap::Args)]
pub struct TrainArgs {
    /// Architecture JSON file.
    #[arg(long)]
    pub arch: PathBuf,
    /// Bundled dataset name or path (default: the config's data source).
    #[arg(long)]
    pub data: Option<String>,
    /// Settings file layered over the defaults.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Epochs of full training (default: final.train.epochs).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Run the one-step-tuning proxy instead of full training.
    #[arg(long)]
    pub proxy: bool,
    /// Where to write the JSON result.
    #[arg(long, default_value = "train-result.json")]
    pub out: PathBuf,
    /// Save the trained model in this directory (for `ists predict`).
    #[arg(long)]
    pub save: Option<PathBuf>,
}

/// `ists predict`: forecasts of a saved model, scored on the test split.
#[derive(clap::Args)]
pub struct PredictArgs {
    /// Model directory written by `train --save` or a search (`RUN_DIR/model`).
    #[arg(long)]
    pub model: PathBuf,
    /// Bundled dataset name or path (default: the config's data source).
    #[arg(long)]
    pub data: Option<String>,
    /// Settings file layered over the defaults.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Write the forecasts `[samples, horizon, nodes]` as .npy here.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `ists eval`: one candidate by the proxy, printed as an `ISTS_RESULT {json}` line.
#[derive(clap::Args)]
pub struct EvalArgs {
    /// The search settings as hex-encoded JSON (as the Ray evaluator passes them).
    #[arg(long, conflicts_with = "settings")]
    pub settings_hex: Option<String>,
    /// Or a settings file (TOML layered over the defaults, or a run's config.json).
    #[arg(long)]
    pub settings: Option<PathBuf>,
    /// The architecture as hex-encoded JSON.
    #[arg(long, conflicts_with = "arch")]
    pub arch_hex: Option<String>,
    /// Or an architecture JSON file.
    #[arg(long)]
    pub arch: Option<PathBuf>,
    /// The candidate's number in its search (only printed).
    #[arg(long, default_value_t = 0)]
    pub candidate: usize,
    /// The data folder as this node sees it.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Proxy steps instead of proxy.steps (a promotion to a higher successive-halving rung).
    #[arg(long)]
    pub steps: Option<usize>,
}

/// `ists report`: RUN_DIR/report.md with PNG plots.
#[derive(clap::Args)]
pub struct ReportArgs {
    /// A search's run directory (finished or running).
    pub run_dir: PathBuf,
}

/// `ists data inspect`: shapes, missing values and splits of a data set.
#[derive(clap::Args)]
pub struct InspectArgs {
    /// Bundled dataset name or path.
    pub source: String,
    /// Settings file layered over the defaults (its [data.prepare] shapes the windows).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// Trains one architecture and writes its metrics.
pub fn train(a: TrainArgs) -> Result<()> {
    let TrainArgs {
        arch,
        data,
        config,
        epochs,
        proxy,
        out,
        save,
    } = a;
    let mut s = load_settings(config, data)?;
    if let Some(e) = epochs {
        s.final_train.train.epochs = e;
    }
    tch::set_num_threads(s.evaluators.single_threads());
    let arch = read_arch(&arch, &s)?;
    if !proxy {
        s.check_final_width(&arch)?;
    }
    let prepared = ists_actors::search::supervisor::prepare_data(&s)?;
    println!("{}", prepared.summary());
    let device = ists_actors::search::supervisor::single_device(&s).map_err(anyhow::Error::msg)?;
    // A proxy is scored as a search's rung 0 scores it, on `proxy.node_share` of the nodes.
    let part = match proxy {
        true => ists::train::proxy_subset(&prepared, &s.proxy)?,
        false => None,
    };
    if let Some(p) = &part {
        println!("proxy on {} (proxy.node_share)", p.name);
    }
    let data = TrainData::new(part.as_ref().unwrap_or(&prepared), device)?;
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
                "epoch {:>3}  train loss {:.4}  {}  ({:.1}s)",
                e.epoch,
                e.train_loss,
                e.val_text(),
                e.seconds
            )
        };
        let (report, trained) = train_full(
            &arch,
            &data,
            s.final_model(),
            &s.final_train.train,
            &mut log,
        )?;
        if let Some(dir) = &save {
            ists::export::save(dir, &trained, &arch, &data, s.final_model())?;
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

/// Forecasts with a saved model and scores it.
pub fn predict(a: PredictArgs) -> Result<()> {
    let PredictArgs {
        model,
        data,
        config,
        out,
    } = a;
    let s = load_settings(config, data)?;
    tch::set_num_threads(s.evaluators.cpu_threads());
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

/// Scores one candidate by the proxy (the entry point of Ray jobs).
pub fn eval(a: EvalArgs) -> Result<()> {
    let EvalArgs {
        settings_hex,
        settings: settings_file,
        arch_hex,
        arch: arch_file,
        candidate,
        data_dir,
        steps,
    } = a;
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
    tch::set_num_threads(s.evaluators.single_threads());
    let prepared = ists_actors::search::supervisor::prepare_data(&s)?;
    let device = ists_actors::search::supervisor::single_device(&s).map_err(anyhow::Error::msg)?;
    // A rung-0 proxy (no --steps) trains on the node share an evaluator would give it.
    let part = match steps {
        None => ists::train::proxy_subset(&prepared, &s.proxy)?,
        Some(_) => None,
    };
    let data = TrainData::new(part.as_ref().unwrap_or(&prepared), device)?;
    let report = proxy_eval(&arch, &data, &s.model, &s.proxy)?;
    eprintln!("candidate {candidate}: {:?}", report.status);
    println!("{RESULT_MARKER}{}", serde_json::to_string(&report)?);
    Ok(())
}

/// Writes a run's report.
pub fn report(a: ReportArgs) -> Result<()> {
    let r = ists_actors::run::report::write_report(&a.run_dir)?;
    println!("report: {}", r.markdown.display());
    for p in r.plots {
        println!("plot: {}", p.display());
    }
    Ok(())
}

/// Prints a data set's shapes, missing ratio and splits.
pub fn inspect(a: InspectArgs) -> Result<()> {
    let InspectArgs { source, config } = a;
    let s = load_settings(config, Some(source.clone()))?;
    let spec: DataSpec = s.data_spec()?;
    let raw = load(&spec)?;
    let p = prepare(&raw, &s.data.prepare)?;
    println!("source: {source}\n{}", p.summary());
    match raw.first_weekday {
        Some(day) => println!(
            "calendar: the first step is a {} (data.prepare.day_type can read weekdays and weekends)",
            weekday_name(day)
        ),
        None => println!(
            "calendar: unknown (a data spec's `start` date, or a DCRNN npz's timestamps, give it)"
        ),
    }
    Ok(())
}
