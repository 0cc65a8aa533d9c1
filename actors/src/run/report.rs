//! `ists report RUN_DIR`: a Markdown report with PNG plots of a finished (or running) search:
//! the search curve with the stages marked, every candidate's proxy score, operator and cell
//! order frequencies per stage, forecast vs ground truth for a few sensors, and the metrics
//! table of the final model (and of its seeds' ensemble, with `final.ensemble`) next to the
//! classical baselines on the same test split. A run on
//! T-GCN's Los-loop preset also gets the protocol table in T-GCN's layout
//! ([`ists::protocol`]) with forecasts plotted at each of its horizons (black truth, red forecast).

use crate::run::summary::Summary;
use crate::search::memory::read_journal;
use ists::baselines::{historical_average, last_value, score};
use ists::config::Settings;
use ists::memory::{MemoryEntry, Stage};
use ists::metrics::MetricsTable;
use ists::space::Arch;
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Errors while writing a report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{path}: {msg}")]
    File { path: PathBuf, msg: String },
    #[error("plot {name}: {msg}")]
    Plot { name: String, msg: String },
    #[error(transparent)]
    Core(#[from] ists::Error),
    #[error("tensor operation failed: {0}")]
    Torch(#[from] tch::TchError),
    #[error("data: {0}")]
    Data(String),
}

fn file_err(path: &Path, e: impl ToString) -> ReportError {
    ReportError::File {
        path: path.to_path_buf(),
        msg: e.to_string(),
    }
}

fn plot_err(name: &str, e: impl ToString) -> ReportError {
    ReportError::Plot {
        name: name.into(),
        msg: e.to_string(),
    }
}

/// The font is bundled so plots render the same on a machine without system fonts.
fn fonts() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let bytes: &'static [u8] = include_bytes!("../../../assets/DejaVuSans.ttf");
        if register_font("sans-serif", FontStyle::Normal, bytes).is_err() {
            tracing::warn!("could not register the bundled font");
        }
    });
}

/// What a report was made of (returned for tests and callers).
#[derive(Debug)]
pub struct Report {
    pub markdown: PathBuf,
    pub plots: Vec<PathBuf>,
}

/// Writes `RUN_DIR/report.md` and its plots.
pub fn write_report(run: &Path) -> Result<Report, ReportError> {
    fonts();
    crate::run::dir::check_run_dir(run).map_err(|e| file_err(run, e))?;
    let entries = read_journal(&run.join("journal.jsonl")).map_err(ReportError::Data)?;
    if entries.is_empty() {
        return Err(file_err(
            &run.join("journal.jsonl"),
            "no evaluated candidate yet",
        ));
    }
    let cfg_path = run.join("config.json");
    let settings: Settings = serde_json::from_str(
        &std::fs::read_to_string(&cfg_path).map_err(|e| file_err(&cfg_path, e))?,
    )
    .map_err(|e| file_err(&cfg_path, e))?;
    let summary: Option<Summary> = std::fs::read_to_string(run.join("summary.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    // The proxy score of every candidate (rung 0) is plotted; promotions to higher rungs are
    // listed in a table of their own.
    let (mut entries, promotions): (Vec<MemoryEntry>, Vec<MemoryEntry>) =
        entries.into_iter().partition(|e| e.rung == 0);
    entries.sort_by_key(|e| e.id);
    let mut plots = Vec::new();
    plots.push(search_curve(run, &entries)?);
    plots.push(scores(run, &entries)?);
    plots.push(op_frequencies(run, &entries, settings.search.space)?);

    let prepared = crate::search::supervisor::prepare_data(&settings)
        .map_err(|e| ReportError::Data(e.to_string()))?;
    let test = prepared.splits.test.clone();
    let ha = score(&prepared, &test, &historical_average(&prepared, &test))?;
    let lv = score(&prepared, &test, &last_value(&prepared, &test))?;
    let model_dir = run.join("model");
    let mut model_metrics: Option<MetricsTable> = None;
    let mut run_forecast: Option<(tch::Tensor, tch::Tensor)> = None;
    if model_dir.join("weights.safetensors").exists() {
        tch::set_num_threads(settings.evaluators.cpu_threads());
        let data = ists::train::TrainData::new(&prepared, tch::Device::Cpu)?;
        let (trained, _, _) = ists::export::load(&model_dir, &data)?;
        let idx: Vec<i64> = test.clone().map(|s| s as i64).collect();
        let (pred, y) = trained.predict(&data, &idx, 128)?;
        model_metrics = Some(MetricsTable::compute(&pred, &y, data.null)?);
        plots.push(forecast(run, &pred, &y)?);
        run_forecast = Some((pred, y));
    }
    let protocol_md =
        protocol_section(run, &settings, &prepared, run_forecast.as_ref(), &mut plots)?;

    let mut md = String::new();
    let _ = writeln!(md, "# Search report: {}\n", run.display());
    let _ = writeln!(
        md,
        "Dataset `{}` ({} sensors), space `{}`, mode `{:?}`, budget {}, {} candidates evaluated.\n",
        prepared.name,
        prepared.n,
        settings.search.space,
        settings.search.mode,
        settings.search.budget,
        entries.len()
    );
    if let Some(s) = &summary {
        let _ = writeln!(
            md,
            "Rejected replies by kind: {:?}; repairs {}; failed proposals {}; tokens {} prompt + {} completion.\n",
            s.rejected, s.repairs, s.failed_proposals, s.usage.prompt_tokens, s.usage.completion_tokens
        );
        if let Some(b) = &s.best {
            let arch = Arch::from_spec(&b.arch, settings.search.space)
                .map(|a| a.summary())
                .unwrap_or_default();
            let _ = writeln!(
                md,
                "Best candidate {} (proxy MAE {:.4} at rung {}): `{arch}`\n",
                b.candidate, b.score, b.rung
            );
        }
        if s.reasoning_chars > 0 || s.value_requests > 0 {
            let _ = writeln!(
                md,
                "Instructor: {} of {} replies usable, {} duplicates adjusted to the nearest unexplored design; reasoning {} characters (about {} tokens) written before decisions; tree-of-thought thoughts {}, value requests {} ({} valued by the heuristic instead).\n",
                s.usable_replies, s.replies, s.adjusted, s.reasoning_chars, s.reasoning_tokens_est, s.thoughts, s.value_requests, s.value_fallbacks
            );
        }
    }
    // Why the instructor chose the best designs, in its own words (from the journal).
    let mut reasoned: Vec<&MemoryEntry> = entries
        .iter()
        .filter(|e| e.reasoning.is_some() && score_of(e).is_some())
        .collect();
    reasoned.sort_by(|a, b| {
        score_of(a)
            .unwrap_or(f64::INFINITY)
            .total_cmp(&score_of(b).unwrap_or(f64::INFINITY))
    });
    if !reasoned.is_empty() {
        let _ = writeln!(md, "## The instructor's reasoning for the best designs\n");
        for e in reasoned.iter().take(3) {
            let why = e.reasoning.as_deref().unwrap_or_default();
            let quoted: String = why.lines().map(|l| format!("> {l}\n")).collect();
            let _ = writeln!(
                md,
                "Candidate {} (proxy MAE {:.4}):\n\n{quoted}",
                e.id,
                score_of(e).unwrap_or(f64::NAN)
            );
        }
    }
    let _ = writeln!(
        md,
        "## Search curve\n\n![search curve](search_curve.png)\n\n![proxy scores](scores.png)\n"
    );
    if !promotions.is_empty() {
        let _ = writeln!(
            md,
            "## Successive-halving rungs\n\nThe best candidates were trained again with more steps; the memory ranks them by the highest rung reached.\n\n| candidate | rung | steps | validation MAE |\n|---:|---:|---:|---:|"
        );
        for e in &promotions {
            let score = e.score.map_or("-".into(), |v| format!("{v:.4}"));
            let _ = writeln!(md, "| {} | {} | {} | {score} |", e.id, e.rung, e.steps);
        }
        let _ = writeln!(md);
    }
    let _ = writeln!(
        md,
        "## Operators per stage\n\n![operators](operators.png)\n"
    );
    let _ = writeln!(md, "## Test metrics (same split for every row)\n");
    let _ = writeln!(md, "| model | MAE@3 | RMSE@3 | MAPE@3 | MAE@6 | RMSE@6 | MAPE@6 | MAE@12 | RMSE@12 | MAPE@12 | MAE avg | RMSE avg | MAPE avg |");
    let _ = writeln!(
        md,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    let mut row = |name: &str, m: &MetricsTable| {
        let mut cells = String::new();
        for (_, s) in &m.horizons {
            let _ = write!(cells, " {:.3} | {:.3} | {:.2}% |", s.mae, s.rmse, s.mape);
        }
        let a = &m.average;
        let _ = writeln!(
            md,
            "| {name} |{cells} {:.3} | {:.3} | {:.2}% |",
            a.mae, a.rmse, a.mape
        );
    };
    if let Some(m) = &model_metrics {
        row("searched (final training)", m);
    }
    // The chosen candidate's ensemble of its seeds (`final.ensemble`), from the summary.
    if let Some(e) = summary
        .as_ref()
        .and_then(|s| s.final_results.first())
        .and_then(|f| f.ensemble.as_ref())
    {
        let seeds: Vec<String> = e.members.iter().map(|s| s.to_string()).collect();
        row(
            &format!("searched, ensemble of seeds {}", seeds.join(", ")),
            &e.test,
        );
    }
    row("historical average", &ha);
    row("last value", &lv);
    if model_metrics.is_some() {
        let _ = writeln!(
            md,
            "\n## Forecast vs ground truth\n\n![forecast](forecast.png)"
        );
    }
    if let Some(p) = protocol_md {
        md.push_str(&p);
    }
    let path = run.join("report.md");
    std::fs::write(&path, md).map_err(|e| file_err(&path, e))?;
    Ok(Report {
        markdown: path,
        plots,
    })
}

/// The T-GCN protocol section, when the run used T-GCN's Los-loop preset or its directory holds
/// a protocol results file (`protocol.jsonl`): the protocol's rows (that file, else
/// [`ists::protocol::TGCN_RESULTS`] for the preset), the quoted published values, the classical
/// baselines and the run's own final model, in T-GCN's layout, with its forecasts at each
/// horizon plotted against the truth.
fn protocol_section(
    run: &Path,
    settings: &Settings,
    prepared: &ists::data::Prepared,
    forecast: Option<&(tch::Tensor, tch::Tensor)>,
    plots: &mut Vec<PathBuf>,
) -> Result<Option<String>, ReportError> {
    use ists::protocol::{
        is_tgcn_los_loop, measured_rows, missing_quoted, render, test_table, ProtocolResults,
        TGCN_RESULTS,
    };
    let in_run = run.join("protocol.jsonl");
    let preset = is_tgcn_los_loop(&settings.data.source, &settings.data.prepare);
    let file = if in_run.exists() {
        Some(in_run)
    } else if preset && Path::new(TGCN_RESULTS).exists() {
        Some(PathBuf::from(TGCN_RESULTS))
    } else {
        None
    };
    if !preset && file.is_none() {
        return Ok(None);
    }
    let mut rows = match &file {
        Some(f) => ProtocolResults::open(f)?.rows().to_vec(),
        None => Vec::new(),
    };
    let quoted = missing_quoted(&rows);
    rows.extend(quoted);
    // Cheap rows are measured here when the file lacks them, so the section stands alone.
    let test = prepared.splits.test.clone();
    for (name, f) in [
        ("last value", last_value as fn(_, _) -> _),
        ("historical average", historical_average),
    ] {
        if !rows.iter().any(|r| r.model == name && r.is_measured()) {
            rows.extend(measured_rows(
                name,
                0,
                &test_table(prepared, &f(prepared, &test), 5)?,
            ));
        }
    }
    let mut md = String::from("\n## T-GCN protocol (Los-loop)\n\n");
    if let Some(f) = &file {
        let _ = writeln!(
            md,
            "Rows from `{}` plus this run's final model.\n",
            f.display()
        );
    }
    if let Some((pred, y)) = forecast {
        let flat = pred
            .f_flatten(0, -1)
            .and_then(|t| t.f_to_kind(tch::Kind::Float))?;
        let values = Vec::<f32>::try_from(flat)?;
        rows.extend(measured_rows(
            "searched (this run)",
            0,
            &test_table(prepared, &values, 5)?,
        ));
        plots.push(protocol_forecast(run, pred, y)?);
    }
    md.push_str(&render(&rows));
    if forecast.is_some() {
        let _ = writeln!(
            md,
            "\nThis run's forecasts 15, 30, 45 and 60 minutes ahead against the truth, first day of the test split:\n\n![protocol forecast](protocol_forecast.png)"
        );
    }
    Ok(Some(md))
}

/// Forecasts at 3, 6, 9 and 12 steps ahead (columns) against the truth for three sensors
/// (rows) over the first day of the test split.
fn protocol_forecast(
    run: &Path,
    pred: &tch::Tensor,
    y: &tch::Tensor,
) -> Result<PathBuf, ReportError> {
    let name = "protocol_forecast.png";
    let path = run.join(name);
    let s = pred.size(); // [S, H, N]
    let (samples, horizon, nodes) = (s[0], s[1], s[2]);
    let len = samples.min(288);
    let sensors: Vec<i64> = [0, nodes / 3, 2 * nodes / 3]
        .into_iter()
        .filter(|&k| k < nodes)
        .collect();
    let steps: Vec<i64> = ists::metrics::TGCN_HORIZONS
        .iter()
        .map(|&h| h as i64)
        .filter(|&h| h <= horizon)
        .collect();
    if sensors.is_empty() || steps.is_empty() {
        return Err(plot_err(name, "no sensor or horizon to plot"));
    }
    let series = |t: &tch::Tensor, h: i64, k: i64| -> Result<Vec<f64>, ReportError> {
        let v = t
            .f_select(1, h - 1)
            .and_then(|x| x.f_select(1, k))
            .and_then(|x| x.f_narrow(0, 0, len))
            .and_then(|x| x.f_to_kind(tch::Kind::Double))
            .map_err(|e| plot_err(name, e))?;
        Vec::<f64>::try_from(v).map_err(|e| plot_err(name, e))
    };
    let root = BitMapBackend::new(
        &path,
        (420 * steps.len() as u32, 240 * sensors.len() as u32),
    )
    .into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_err(name, e))?;
    let panels = root.split_evenly((sensors.len(), steps.len()));
    let cells = sensors
        .iter()
        .flat_map(|&k| steps.iter().map(move |&h| (k, h)));
    for (panel, (k, h)) in panels.iter().zip(cells) {
        let (p, t) = (series(pred, h, k)?, series(y, h, k)?);
        let (lo, hi) = y_range(p.iter().chain(t.iter()).cloned());
        let mut chart = ChartBuilder::on(panel)
            .caption(
                format!("sensor {k}, {} min ahead", h * 5),
                ("sans-serif", 16),
            )
            .margin(6)
            .x_label_area_size(24)
            .y_label_area_size(40)
            .build_cartesian_2d(0f64..len as f64, lo..hi)
            .map_err(|e| plot_err(name, e))?;
        chart
            .configure_mesh()
            .draw()
            .map_err(|e| plot_err(name, e))?;
        for (values, colour) in [(&t, BLACK), (&p, RED)] {
            chart
                .draw_series(LineSeries::new(
                    values.iter().enumerate().map(|(i, v)| (i as f64, *v)),
                    colour,
                ))
                .map_err(|e| plot_err(name, e))?;
        }
    }
    root.present().map_err(|e| plot_err(name, e))?;
    Ok(run.join(name))
}

fn score_of(e: &MemoryEntry) -> Option<f64> {
    e.score.filter(|s| s.is_finite())
}

fn y_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let v: Vec<f64> = values.filter(|x| x.is_finite()).collect();
    let lo = v.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.08).max(1e-3);
    (lo - pad, hi + pad)
}

type XyChart<'a, 'p> =
    ChartContext<'a, BitMapBackend<'p>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// A captioned chart over `x` and `y` with its mesh and axis names drawn: the common frame of
/// the report's plots.
fn xy_chart<'a, 'p>(
    root: &'a DrawingArea<BitMapBackend<'p>, Shift>,
    name: &str,
    caption: &str,
    (x, x_desc): (std::ops::Range<f64>, &str),
    (y, y_desc): (std::ops::Range<f64>, &str),
) -> Result<XyChart<'a, 'p>, ReportError> {
    let mut chart = ChartBuilder::on(root)
        .caption(caption, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x, y)
        .map_err(|e| plot_err(name, e))?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .draw()
        .map_err(|e| plot_err(name, e))?;
    Ok(chart)
}

/// Draws the legend box and writes the file.
fn finish<'a, 'p: 'a, X: Ranged, Y: Ranged>(
    chart: &mut ChartContext<'a, BitMapBackend<'p>, Cartesian2d<X, Y>>,
    root: &DrawingArea<BitMapBackend<'p>, Shift>,
    name: &str,
) -> Result<(), ReportError> {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| plot_err(name, e))?;
    root.present().map_err(|e| plot_err(name, e))
}

fn search_curve(run: &Path, entries: &[MemoryEntry]) -> Result<PathBuf, ReportError> {
    let name = "search_curve.png";
    let path = run.join(name);
    let root = BitMapBackend::new(&path, (900, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_err(name, e))?;
    let n = entries.len() as f64;
    let (lo, hi) = y_range(entries.iter().filter_map(score_of));
    let mut chart = xy_chart(
        &root,
        name,
        "Search curve: proxy validation MAE",
        (-0.5..n - 0.5, "candidate"),
        (lo..hi, "proxy MAE"),
    )?;
    // Shade the optimization stage.
    if let Some(first) = entries.iter().position(|e| e.stage == Stage::Optimization) {
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(first as f64 - 0.5, lo), (n - 0.5, hi)],
                RGBColor(255, 235, 200).filled(),
            )))
            .map_err(|e| plot_err(name, e))?
            .label("optimization stage")
            .legend(|(x, y)| {
                Rectangle::new(
                    [(x, y - 5), (x + 12, y + 5)],
                    RGBColor(255, 235, 200).filled(),
                )
            });
    }
    chart
        .draw_series(
            entries.iter().enumerate().filter_map(|(i, e)| {
                score_of(e).map(|s| Circle::new((i as f64, s), 4, BLUE.filled()))
            }),
        )
        .map_err(|e| plot_err(name, e))?
        .label("candidate")
        .legend(|(x, y)| Circle::new((x + 6, y), 4, BLUE.filled()));
    let mut best = f64::INFINITY;
    let curve: Vec<(f64, f64)> = entries
        .iter()
        .enumerate()
        .filter_map(|(i, e)| {
            if let Some(s) = score_of(e) {
                best = best.min(s);
            }
            best.is_finite().then_some((i as f64, best))
        })
        .collect();
    chart
        .draw_series(LineSeries::new(curve, RED.stroke_width(2)))
        .map_err(|e| plot_err(name, e))?
        .label("best so far")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], RED.stroke_width(2)));
    finish(&mut chart, &root, name)?;
    Ok(run.join(name))
}

fn scores(run: &Path, entries: &[MemoryEntry]) -> Result<PathBuf, ReportError> {
    let name = "scores.png";
    let path = run.join(name);
    let root = BitMapBackend::new(&path, (900, 400)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_err(name, e))?;
    let (lo, hi) = y_range(entries.iter().filter_map(score_of));
    let lo = lo.min(0.0);
    let n = entries.len() as f64;
    let mut chart = xy_chart(
        &root,
        name,
        "Proxy score of every candidate (failed: none)",
        (-0.5..n - 0.5, "candidate"),
        (lo..hi, "proxy MAE"),
    )?;
    chart
        .draw_series(entries.iter().enumerate().filter_map(|(i, e)| {
            let colour = match e.stage {
                Stage::Exploration => RGBColor(70, 130, 180),
                Stage::Optimization => RGBColor(230, 140, 30),
            };
            score_of(e).map(|s| {
                Rectangle::new(
                    [(i as f64 - 0.35, lo), (i as f64 + 0.35, s)],
                    colour.filled(),
                )
            })
        }))
        .map_err(|e| plot_err(name, e))?;
    root.present().map_err(|e| plot_err(name, e))?;
    Ok(run.join(name))
}

fn op_frequencies(
    run: &Path,
    entries: &[MemoryEntry],
    space: ists::space::SpaceKind,
) -> Result<PathBuf, ReportError> {
    let name = "operators.png";
    let path = run.join(name);
    let mut counts: BTreeMap<String, [usize; 2]> = BTreeMap::new();
    for e in entries {
        let Ok(a) = Arch::from_spec(&e.arch, space) else {
            continue;
        };
        let k = match e.stage {
            Stage::Exploration => 0,
            Stage::Optimization => 1,
        };
        for (op, c) in a.op_counts() {
            counts.entry(op).or_default()[k] += c;
        }
    }
    let labels: Vec<String> = counts.keys().cloned().collect();
    let max = counts
        .values()
        .flat_map(|v| v.iter())
        .cloned()
        .max()
        .unwrap_or(1) as f64;
    let root = BitMapBackend::new(&path, (900, 450)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_err(name, e))?;
    let m = labels.len().max(1) as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Operator and cell-order frequency per stage",
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(60)
        .y_label_area_size(50)
        .build_cartesian_2d(-0.5..m - 0.5, 0.0..max * 1.15)
        .map_err(|e| plot_err(name, e))?;
    let lbl = labels.clone();
    chart
        .configure_mesh()
        .x_labels(labels.len().max(1))
        .x_label_formatter(&move |x| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 {
                lbl.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc("edges using it")
        .draw()
        .map_err(|e| plot_err(name, e))?;
    for (k, (colour, label)) in [
        (RGBColor(70, 130, 180), "exploration"),
        (RGBColor(230, 140, 30), "optimization"),
    ]
    .into_iter()
    .enumerate()
    {
        let off = if k == 0 { -0.38 } else { 0.02 };
        chart
            .draw_series(counts.values().enumerate().map(move |(i, c)| {
                Rectangle::new(
                    [(i as f64 + off, 0.0), (i as f64 + off + 0.36, c[k] as f64)],
                    colour.filled(),
                )
            }))
            .map_err(|e| plot_err(name, e))?
            .label(label)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], colour.filled()));
    }
    finish(&mut chart, &root, name)?;
    Ok(run.join(name))
}

/// Horizon-3 forecasts against the truth for three sensors over the first day of the test split.
fn forecast(run: &Path, pred: &tch::Tensor, y: &tch::Tensor) -> Result<PathBuf, ReportError> {
    let name = "forecast.png";
    let path = run.join(name);
    let s = pred.size(); // [S, H, N]
    let (samples, horizon, nodes) = (s[0], s[1], s[2]);
    let h = (3.min(horizon) - 1).max(0);
    let len = samples.min(288);
    let sensors: Vec<i64> = [0, nodes / 3, 2 * nodes / 3]
        .into_iter()
        .filter(|&k| k < nodes)
        .collect();
    let series = |t: &tch::Tensor, k: i64| -> Result<Vec<f64>, ReportError> {
        let v = t
            .f_select(1, h)
            .and_then(|x| x.f_select(1, k))
            .and_then(|x| x.f_narrow(0, 0, len))
            .and_then(|x| x.f_to_kind(tch::Kind::Double))
            .map_err(|e| plot_err(name, e))?;
        Vec::<f64>::try_from(v).map_err(|e| plot_err(name, e))
    };
    let root = BitMapBackend::new(&path, (900, 250 * sensors.len() as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_err(name, e))?;
    let panels = root.split_evenly((sensors.len(), 1));
    for (panel, &k) in panels.iter().zip(&sensors) {
        let (p, t) = (series(pred, k)?, series(y, k)?);
        let (lo, hi) = y_range(p.iter().chain(t.iter()).cloned());
        let mut chart = ChartBuilder::on(panel)
            .caption(
                format!("sensor {k}: forecast {} steps ahead vs truth", h + 1),
                ("sans-serif", 18),
            )
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..len as f64, lo..hi)
            .map_err(|e| plot_err(name, e))?;
        chart
            .configure_mesh()
            .x_desc("test sample")
            .draw()
            .map_err(|e| plot_err(name, e))?;
        for (values, colour, label) in [(&t, BLACK, "truth"), (&p, RED, "forecast")] {
            chart
                .draw_series(LineSeries::new(
                    values.iter().enumerate().map(|(i, v)| (i as f64, *v)),
                    colour,
                ))
                .map_err(|e| plot_err(name, e))?
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], colour));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .draw()
            .map_err(|e| plot_err(name, e))?;
    }
    root.present().map_err(|e| plot_err(name, e))?;
    Ok(run.join(name))
}

/// Proxy score vs fully trained score at `path`, one colour per proxy (`series`: name and one
/// score per architecture, NaN where missing).
pub fn fidelity_plot(
    path: &Path,
    full: &[f64],
    series: &[(String, Vec<f64>)],
) -> Result<PathBuf, ReportError> {
    fonts();
    let name = "fidelity plot";
    let root = BitMapBackend::new(path, (800, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_err(name, e))?;
    let (xlo, xhi) = y_range(series.iter().flat_map(|s| s.1.iter().cloned()));
    let (ylo, yhi) = y_range(full.iter().cloned());
    let mut chart = xy_chart(
        &root,
        name,
        "Proxy fidelity: proxy vs full-training validation MAE",
        (xlo..xhi, "proxy val MAE"),
        (ylo..yhi, "full training val MAE (mean over seeds)"),
    )?;
    let colours = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK];
    for (k, (label, scores)) in series.iter().enumerate() {
        let c = colours[k % colours.len()];
        chart
            .draw_series(
                scores
                    .iter()
                    .zip(full)
                    .filter(|(a, b)| a.is_finite() && b.is_finite())
                    .map(move |(a, b)| Circle::new((*a, *b), 5, c.filled())),
            )
            .map_err(|e| plot_err(name, e))?
            .label(label.clone())
            .legend(move |(x, y)| Circle::new((x + 6, y), 5, c.filled()));
    }
    finish(&mut chart, &root, name)?;
    Ok(path.to_path_buf())
}
