//! Studies that measure search quality: `baseline` (classical baselines, and random search,
//! the offline instructor and a hand design over paired seeds), `fidelity` (cheap proxies
//! against a multi-seed ground truth) and `protocol tgcn` (every model on T-GCN's Los-loop
//! protocol next to its published values). All write resumable JSON rows.
//!
//! Longer than the ~400 lines aimed at: three study commands, each only its arguments and the
//! printing of its table; the studies themselves are library functions.

use crate::common::{load_settings, metrics_row, read_arch};
use anyhow::{Context, Result};
use ists::space::Arch;
use ists::train::{train_full, TrainData};
use std::path::{Path, PathBuf};

/// `ists baseline`: baselines and searches on the same data and split.
#[derive(clap::Args)]
pub struct BaselineArgs {
    /// Bundled dataset name or path (default: the config's data source).
    #[arg(long)]
    pub data: Option<String>,
    /// Settings file layered over the defaults.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Candidate budget of the searches (default: the config's).
    #[arg(long)]
    pub budget: Option<usize>,
    /// Only the classical baselines (no training).
    #[arg(long)]
    pub classical_only: bool,
    /// Repeat the methods with this many seeds (search, proxy and final training seeds
    /// advance together; all methods share each seed) and summarize.
    #[arg(long, default_value_t = 1)]
    pub seeds: usize,
    /// Results file of a multi-seed comparison: one JSON line per method and seed
    /// (random, offline, hand-gwn), appended as each finishes; rows already there are
    /// taken over. Default baseline/search-<data>.jsonl.
    #[arg(long)]
    pub results: Option<PathBuf>,
    /// Methods of a multi-seed comparison, comma separated: random, offline, offline-diverse
    /// (max-min diverse exploration), offline-guided (surrogate-guided optimization stage),
    /// offline-prior (exploration ranked by `search.prior`, earlier searches' banks),
    /// llm-local / llm-openai (the bundled local model or the `[llm]` endpoint as instructor,
    /// chain-of-thought; `-tot` for tree-of-thought), hand-NAME (the fixed design
    /// config/NAME-arch.json).
    /// Rows of methods left out stay in the results file and in its tables.
    #[arg(long, value_delimiter = ',', default_value = "random,offline,hand-gwn")]
    pub methods: Vec<String>,
    /// First seed index to run (seed indices from..seeds): several processes (or machines)
    /// can share one comparison's seeds and append to the same results file. The ranges may
    /// overlap: a method and seed whose row is in the file when it is reached is skipped, and
    /// a row is never appended twice. The tables cover every row in the file.
    #[arg(long, default_value_t = 0)]
    pub from_seed: usize,
    /// Anytime quality instead of searching: for each search method and seed whose row is in
    /// the results file, the design its search held after this share (0..=1) of random
    /// search's steps under the same seed, trained like its final model, as the row
    /// `METHOD@SHARE` (`offline-prior@0.3`). Reads the finished searches' journals (kept
    /// beside the results file as `<results>.journals/`, else in their run directories);
    /// needs the random rows.
    #[arg(long)]
    pub anytime: Option<f64>,
    /// Print no test score, for a study whose reading is stated in advance: each row's line
    /// gives its candidates, steps and seconds but not its test MAE, and the classical
    /// baselines' table, the paired table and the time-to-quality lines are left out. The
    /// rows are written as always; read them once, when the study is complete
    /// (`scripts/paired.py`, or this command again without `--blind`). Needs `--results` or
    /// `--seeds` above 1.
    #[arg(long)]
    pub blind: bool,
}

/// `ists fidelity`: how well cheap proxies rank architectures against full training.
#[derive(clap::Args)]
pub struct FidelityArgs {
    /// A bundled data set name or a path (overrides the config's data.source).
    #[arg(long)]
    data: Option<String>,
    /// Settings file: the model widths, the proxy ([proxy]) and the ground truth ([final.train]).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Architectures sampled from the search space (seeded by search.seed), after the --extra ones.
    #[arg(long, default_value_t = 30)]
    n: usize,
    /// Hand designs added first (architecture JSON files, comma separated; `--extra` with no
    /// value: none).
    #[arg(
        long,
        value_delimiter = ',',
        num_args = 0..,
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
    /// Where proxies and ground truth train: cpu, cuda or cuda:N. Seconds (and the cost
    /// shares) depend on it, so keep one device per results file.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Measure only this share of the designs, K of N (`--shard 2/3`: the 2nd, 5th, 8th, ...),
    /// so N processes or machines can split one study; give each its own --results file and
    /// bring them together with --take.
    #[arg(long)]
    shard: Option<ists::fidelity::Shard>,
    /// Results files of the same study to take rows from before measuring (comma separated;
    /// other shards' files): a design either file holds is not measured again, and of two rows
    /// for one design the one with more ground-truth seeds is kept.
    #[arg(long, value_delimiter = ',')]
    take: Vec<PathBuf>,
}

/// The run directory of method `method` under seed index `k` in the comparison that writes
/// `results`: `<runs_dir>/compare-<results file stem>-<method>-seed<k>`.
fn compare_run_dir(runs_dir: &Path, results: &Path, method: &str, k: u64) -> PathBuf {
    let stem = results
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("results");
    runs_dir.join(format!("compare-{stem}-{method}-seed{k}"))
}

/// A finished row's test MAE as `ists baseline` prints it, or the words that stand in for it
/// under `--blind`.
fn test_mae_or_blind(test_mae: f64, blind: bool) -> String {
    if blind {
        "row written, test MAE not shown (--blind)".into()
    } else {
        format!("test MAE {test_mae:.4}")
    }
}

/// What `ists baseline` says of a row it did not append
/// ([`ists_actors::run::compare::append_run`]'s `false`).
fn already_in(results: &Path) -> String {
    format!(
        "not appended: {} already has this method and seed's row (written by another process \
         since this one read it)",
        results.display()
    )
}

/// The `[llm]` settings that shape an LLM-instructed search's proposals, for a comparison's
/// fingerprint: not the backend (the method names it), the endpoint's address or key, prices,
/// or the timeouts and retries that only move how long it waits (`max_concurrent` stays: it
/// sets how many chain-of-thought proposals ask at once, and so what each is told to avoid).
fn llm_fingerprint(llm: &ists::config::LlmSettings) -> Result<serde_json::Value> {
    let mut v = serde_json::to_value(llm)?;
    if let Some(o) = v.as_object_mut() {
        for key in [
            "backend",
            "base_url",
            "key_env",
            "prices",
            "timeout_secs",
            "max_retries",
            "retry_base_secs",
            "retry_max_secs",
        ] {
            o.remove(key);
        }
        if let Some(local) = o.get_mut("local").and_then(|l| l.as_object_mut()) {
            local.retain(|k, _| k == "context_tokens");
        }
    }
    Ok(v)
}

/// Baselines, then the searches over paired seeds.
pub fn baseline(a: BaselineArgs) -> Result<()> {
    let BaselineArgs {
        data,
        config,
        budget,
        classical_only,
        seeds,
        results,
        methods,
        from_seed,
        anytime,
        blind,
    } = a;
    if blind && seeds <= 1 && results.is_none() {
        anyhow::bail!(
            "--blind hides the scores of a comparison's rows, and one seed without --results \
             writes none: give --results or --seeds above 1"
        );
    }
    if from_seed >= seeds.max(1) {
        anyhow::bail!("--from-seed {from_seed}: must be below --seeds ({seeds})");
    }
    if let Some(f) = anytime {
        if !(f > 0.0 && f <= 1.0) {
            anyhow::bail!("--anytime {f}: a share of random search's steps, in (0, 1]");
        }
        if results.is_none() {
            anyhow::bail!(
                "--anytime reads a comparison's rows and its searches' journals: give --results"
            );
        }
    }
    use ists::baselines::{historical_average, last_value, score};
    use ists_actors::run::compare::{
        anytime_name, append_run, finals_dir, finished_journal, keep_journal, kept_journal_path,
        mean_time_to_quality, paired, read_runs, run_anytime, run_hand_design, run_search_method,
        time_to_quality, Method,
    };
    let mut s = load_settings(config, data)?;
    if let Some(b) = budget {
        s.search.budget = b;
    }
    // Checked before any work or file: a misspelt method must not cost the baselines' minutes
    // or leave a results file tied to these settings.
    let hand = |name: &str| {
        let file = PathBuf::from(format!("config/{name}-arch.json"));
        file.exists()
            .then(|| read_arch(&file, &s).map_err(|e| format!("{e:#}")))
    };
    let methods = methods
        .iter()
        .map(|m| Method::parse(m.trim(), hand))
        .collect::<Result<Vec<Method>, String>>()
        .map_err(|e| anyhow::anyhow!("--methods: {e}"))?;
    tch::set_num_threads(s.evaluators.single_threads());
    let prepared = ists_actors::search::supervisor::prepare_data(&s)?;
    let test = prepared.splits.test.clone();
    println!(
        "dataset {} - test samples {}..{} (the same split the search scores on)",
        prepared.name, test.start, test.end
    );
    if !blind {
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
    }
    if classical_only {
        return Ok(());
    }
    // The fixed designs train where the searches' final models do (the first evaluator
    // device), so a comparison on a GPU host is on one device throughout.
    let device = ists_actors::search::supervisor::single_device(&s).map_err(anyhow::Error::msg)?;
    let data = TrainData::new(&prepared, device)?;
    if seeds <= 1 && results.is_none() {
        let gwn_text = std::fs::read_to_string("config/gwn-arch.json")
            .context("reading config/gwn-arch.json")?;
        let gwn = Arch::from_json(&gwn_text, ists::space::SpaceKind::Autocts)?;
        let (report, _) = train_full(
            &gwn,
            &data,
            s.final_model(),
            &s.final_train.train,
            &mut |_| {},
        )?;
        if let Some(t) = &report.test {
            println!("{}", metrics_row("Graph-WaveNet-like (autocts, fixed)", t));
        }
        // One seed, as a table beside the baselines.
        for (method, label) in [
            (Method::Random, "random search"),
            (Method::Offline, "offline instructor (evolutionary)"),
        ] {
            let sys = actix::System::new();
            let (_, summary) = sys
                .block_on(run_search_method(&s, &method, 0, None))
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
    // Rows of other settings must not be paired with these: the file is tied to them. The
    // LLM's settings shape only LLM-instructed rows: the first run of such a method pins them.
    let mut fingerprint = serde_json::json!({
        "data": s.data, "model": s.model, "proxy": s.proxy, "search": s.search,
        "final": s.final_train,
    });
    if methods.iter().any(|m| matches!(m, Method::Llm { .. })) {
        fingerprint["llm"] = llm_fingerprint(&s.llm)?;
    }
    ists::fidelity::check_fingerprint_pinning(&path, &fingerprint, Some("llm"))?;
    for k in from_seed as u64..seeds as u64 {
        for method in &methods {
            // Read again at every step: another process over overlapping seeds may have
            // written rows since (skipped here rather than resumed from their finished runs).
            let runs = read_runs(&path).map_err(anyhow::Error::msg)?;
            // Each search lives in a run directory named after the results file, method and
            // seed, so a comparison killed mid-search resumes it (and --anytime reads it).
            let dir = compare_run_dir(&s.runs_dir, &path, &method.name(), k);
            if let Some(f) = anytime {
                if matches!(method, Method::Hand { .. }) {
                    continue;
                }
                let name = anytime_name(&method.name(), f);
                if runs.iter().any(|r| r.method == name && r.seed == k) {
                    continue;
                }
                let finished = |m: &str| runs.iter().find(|r| r.method == m && r.seed == k);
                let (Some(own), Some(reference)) = (finished(&method.name()), finished("random"))
                else {
                    eprintln!(
                        "{name} seed +{k}: skipped, the file has no finished {} and random rows \
                         for this seed",
                        method.name()
                    );
                    continue;
                };
                let Some(journal) = finished_journal(&dir, &path, &method.name(), k) else {
                    // Rows can outlive their run directories (another machine, a cleanup);
                    // rows written before journals were kept have no copy either.
                    eprintln!(
                        "{name} seed +{k}: skipped, neither {} nor {} exists: the finished \
                         search's journal is needed",
                        kept_journal_path(&path, &method.name(), k).display(),
                        dir.join("journal.jsonl").display()
                    );
                    continue;
                };
                let entries = ists_actors::search::memory::read_journal(&journal)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", journal.display()))?;
                let finals = finals_dir(&dir);
                match run_anytime(&s, own, reference, &entries, f, &data, finals.as_deref()) {
                    Ok(r) => {
                        eprintln!(
                            "{} seed +{k}: {} (the design held after {} candidates, {} steps of \
                             random's {}; {:.0} s)",
                            r.method,
                            test_mae_or_blind(r.test_mae, blind),
                            r.evaluations,
                            r.eval_steps,
                            reference.eval_steps,
                            r.seconds
                        );
                        if !append_run(&path, &r).map_err(anyhow::Error::msg)? {
                            eprintln!("{name} seed +{k}: {}", already_in(&path));
                        }
                    }
                    Err(e) => eprintln!("{e} (journal {})", journal.display()),
                }
                continue;
            }
            if runs
                .iter()
                .any(|r| r.method == method.name() && r.seed == k)
            {
                continue;
            }
            let run = match method {
                Method::Hand { name, arch } => run_hand_design(&s, name, arch, &data, k),
                m => actix::System::new()
                    .block_on(run_search_method(&s, m, k, Some(&dir)))
                    .map(|(r, _)| r),
            };
            match run {
                Ok(r) => {
                    let mut resumed = match (r.resumed, r.final_kept) {
                        (0, 0) => String::new(),
                        (n, 0) => format!(", {n} of them from an earlier session"),
                        (n, f) => {
                            format!(", {n} of them and {f} final trainings from an earlier session")
                        }
                    };
                    if r.final_shared > 0 {
                        resumed.push_str(&format!(
                            ", {} final trainings copied from another method's identical ones",
                            r.final_shared
                        ));
                    }
                    eprintln!(
                        "{} seed +{k}: {} ({} candidates{resumed}, {} steps, {:.0} s)",
                        r.method,
                        test_mae_or_blind(r.test_mae, blind),
                        r.evaluations,
                        r.eval_steps,
                        r.seconds
                    );
                    if !append_run(&path, &r).map_err(anyhow::Error::msg)? {
                        // Another process wrote this row (and kept the journal) meanwhile.
                        eprintln!("{} seed +{k}: {}", r.method, already_in(&path));
                        continue;
                    }
                    if !matches!(method, Method::Hand { .. }) {
                        // The row is saved either way; a journal that could not be kept only
                        // costs later readings of this search's designs.
                        match keep_journal(&dir, &path, &method.name(), k) {
                            Ok(to) => eprintln!("journal kept as {}", to.display()),
                            Err(e) => eprintln!("warning: {e}"),
                        }
                    }
                }
                // A method that produced no model is reported, and the others go on.
                Err(e) => eprintln!("{e}"),
            }
        }
    }
    // Other processes may have appended rows (their methods or seeds) since this one began:
    // the tables are of the file as it is now.
    let runs = read_runs(&path).map_err(anyhow::Error::msg)?;
    if blind {
        println!(
            "{} rows in {} (--blind: no tables; read them once the study is complete)",
            runs.len(),
            path.display()
        );
        return Ok(());
    }
    println!("\n| method | seeds | test MAE mean (sd) | random (sd) | wins/ties/losses | one-sided Wilcoxon p | eval steps vs random | eval seconds / random's (median) |");
    println!("|---|---:|---:|---:|---|---:|---|---:|");
    // Every method in the file against random search, those of this run or earlier ones.
    let mut names: Vec<String> = runs
        .iter()
        .map(|r| r.method.clone())
        .filter(|m| m != "random")
        .collect();
    names.sort();
    names.dedup();
    for name in &names {
        if let Some(p) = paired(&runs, name, "random") {
            println!(
                "| {} | {} | {:.4} ({:.4}) | {:.4} ({:.4}) | {}/{}/{} | {:.3} | {:.0} vs {:.0} | {} |",
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
                p.against_steps,
                p.seconds_ratio
                    .map_or_else(|| "-".into(), |r| format!("{r:.2}x"))
            );
        }
    }
    // Time to quality: when each search first held a design as good as random search's final
    // one (by the searches' own scores), as a share of the time random took to hold it.
    // Anytime rows (`METHOD@SHARE`) are cuts of searches, not searches.
    let searches = names
        .iter()
        .filter(|m| !m.starts_with("hand-") && !m.contains('@'));
    for method in searches {
        let t = time_to_quality(&runs, method, "random");
        if t.is_empty() {
            continue;
        }
        let show = |ratio: fn(&ists_actors::run::compare::TimeToQuality) -> Option<f64>| {
            let mut shares: Vec<f64> = t.iter().filter_map(ratio).collect();
            shares.sort_by(f64::total_cmp);
            let list = shares
                .iter()
                .map(|r| format!("{r:.2}"))
                .collect::<Vec<_>>()
                .join(", ");
            match shares.get(shares.len() / 2) {
                Some(m) => format!("{list} (median {m:.2})"),
                None => list,
            }
        };
        let reached = t.iter().filter(|x| x.seconds.is_some()).count();
        println!(
            "\ntime to quality, {method} against random ({} seeds with trajectories): reached \
             random's final design on {reached}; its time over random's time to that design, in \
             evaluation seconds: {}; in optimizer steps: {}",
            t.len(),
            show(|x| x.ratio()),
            show(|x| x.steps_ratio()),
        );
        if let Some(m) = mean_time_to_quality(&runs, method, "random") {
            let reached = match (m.steps, m.steps_ratio()) {
                (Some(s), Some(r)) => format!("{method}'s at step {s}: {r:.2}x"),
                _ => format!("{method}'s never"),
            };
            println!(
                "over the mean of the {} seeds' best rung-{} scores: random's final mean {:.4} \
                 was reached by random's own curve at step {}, {reached}",
                m.seeds, m.rung, m.target, m.against_steps
            );
        }
    }
    println!("rows in {}", path.display());
    Ok(())
}

/// The proxy-fidelity study.
pub fn fidelity(a: FidelityArgs) -> Result<()> {
    use ists::fidelity::{
        run_study, summarize, ProxyKind, ResultsFile, Study, StudySettings, TAU_INTERVAL_LEVEL,
    };
    use rand::SeedableRng;
    let s = load_settings(a.config, a.data)?;
    tch::set_num_threads(s.evaluators.cpu_threads());
    let kinds = ProxyKind::parse_list(&a.proxies)?;
    let device =
        ists::config::parse_device(&a.device).map_err(|e| anyhow::anyhow!("--device: {e}"))?;
    if device != tch::Device::Cpu && !tch::Cuda::is_available() {
        anyhow::bail!(
            "--device {}: no CUDA device is available to this binary",
            a.device
        );
    }
    let prepared = ists_actors::search::supervisor::prepare_data(&s)?;
    // The hand designs first: a study cut short still compares them.
    let mut archs = Vec::new();
    for path in a.extra.iter().filter(|p| !p.as_os_str().is_empty()) {
        archs.push(read_arch(path, &s)?);
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(s.search.seed);
    let mut sampled = Vec::new();
    Arch::fill_distinct(
        s.search.space,
        &s.hyper_space(),
        &mut sampled,
        a.n,
        &mut rng,
    );
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
        hyper: s.hyper_space(),
        device: ists::fidelity::device_kind(device),
    };
    let results_path = a.results.unwrap_or_else(|| {
        PathBuf::from(format!(
            "fidelity/fidelity-{}.jsonl",
            s.data.source.replace('/', "_")
        ))
    });
    let mut results = ResultsFile::open(&results_path, &settings)?;
    for other in &a.take {
        let n = results.take_over(other, &settings)?;
        eprintln!("took {n} rows from {}", other.display());
    }
    if let Some(shard) = a.shard {
        archs = shard.select(&archs);
        eprintln!(
            "shard {}/{}: {} architectures of this study",
            shard.index,
            shard.count,
            archs.len()
        );
    }
    let study = Study::new(&prepared, settings, device)?;
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
    let span = |v: Option<(f64, f64)>| {
        v.map(|(lo, hi)| format!("[{lo:.2}, {hi:.2}]"))
            .unwrap_or_else(|| "-".into())
    };
    println!(
        "{} architectures; ground truth (mean val MAE over seeds) {:.4} - {:.4}, sd {:.4}, {:.1} s per training; seed-to-seed Kendall tau {} ({:.0}% bootstrap interval {})",
        sum.architectures,
        sum.truth_min,
        sum.truth_max,
        sum.truth_sd,
        sum.truth_mean_seconds,
        f(sum.seed_ceiling_tau),
        TAU_INTERVAL_LEVEL * 100.0,
        span(sum.seed_ceiling_interval)
    );
    for h in sum.seed_halves.iter().skip(1) {
        println!(
            "ground truth averaged over {k} seeds: Kendall tau {} between the mean of seeds 1-{k} and of seeds {}-{} ({} architectures)",
            f(h.kendall_tau),
            h.per_half + 1,
            2 * h.per_half,
            h.n,
            k = h.per_half,
        );
    }
    println!(
        "| proxy | Kendall tau | {:.0}% interval (bootstrap over designs) | Spearman rho | s / candidate | share of one training | n |",
        TAU_INTERVAL_LEVEL * 100.0
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for p in &sum.proxies {
        println!(
            "| {} | {} | {} | {} | {:.2} | {:.1}% | {} |",
            p.name,
            f(p.kendall_tau),
            span(p.kendall_tau_interval),
            f(p.spearman_rho),
            p.mean_seconds,
            p.cost_share * 100.0,
            p.n
        );
    }
    if a.shard.is_some() {
        // A shard's figures cover its share only: the plot and summary are the whole
        // study's, written by the run that takes every shard's file over.
        println!(
            "written {} (a shard: no plot or summary; a run without --shard that takes the other shards' files writes them)",
            results_path.display()
        );
        return Ok(());
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

/// `ists protocol tgcn`: last value, historical average, the GRU baseline, the hand designs and
/// any `--arch` on T-GCN's Los-loop split and metrics, one JSON line per model, seed and horizon.
#[derive(clap::Args)]
pub struct ProtocolArgs {
    /// Settings file: the data and split (the T-GCN preset), the designs' widths (final.model,
    /// else [model]: those of a search's final model) and their training ([final.train]; the
    /// GRU trains with it too).
    #[arg(long, default_value = "config/los-loop-tgcn.toml")]
    config: PathBuf,
    /// Results file, appended as each model finishes; (model, seed) pairs already there are not
    /// measured again (with --per-horizon: (model, seed, horizon)), and a settings fingerprint
    /// beside it refuses other settings.
    #[arg(long, default_value = ists::protocol::TGCN_RESULTS)]
    results: PathBuf,
    /// Searched (or any other) designs to add, architecture JSON files.
    #[arg(long)]
    arch: Vec<PathBuf>,
    /// Seeds of each trained model (final.train.seed, +1, ...).
    #[arg(long, default_value_t = 1)]
    seeds: usize,
    /// Which models: last_value, ha, gru, hand, arch (comma separated; default all).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "last_value,ha,gru,hand,arch"
    )]
    only: Vec<String>,
    /// Width of the GRU baseline's state.
    #[arg(long, default_value_t = 64)]
    gru_hidden: i64,
    /// Epochs of the GRU baseline (default final.train.epochs; its other training settings
    /// are final.train's).
    #[arg(long)]
    gru_epochs: Option<usize>,
    /// Also add the rows of each trained model's ensemble of its `--seeds`, measured in this
    /// invocation or kept from an earlier one in `<results>.forecasts/` (two or more): the
    /// mean of their test forecasts under T-GCN's metrics, as
    /// model `<model> (ensemble of k)` with the members' seeds in `members`. On by default
    /// when the settings say `final.ensemble = true`.
    #[arg(long)]
    ensemble: bool,
    /// Train each trained model (GRU, designs) once per horizon, as T-GCN does: a model of 3,
    /// 6, 9 and 12 steps out (15 to 60 min), each on data prepared with that `output_len`
    /// (the same training and validation windows; as test every window starting at or after
    /// the configured test start) and scored only at its own horizon, pooled over its steps.
    /// Rows are named `<model> (one model per horizon)` and resume horizon by horizon. Last
    /// value and historical average are measured once, as without the flag. Default: one
    /// model forecasting the configured steps, scored at all four horizons.
    #[arg(long)]
    per_horizon: bool,
}

#[derive(clap::Args)]
pub struct CombineArgs {
    /// Settings file: the data and split whose test windows the parts forecast (the T-GCN
    /// preset).
    #[arg(long, default_value = "config/los-loop-tgcn.toml")]
    config: PathBuf,
    /// Results file the combination's rows are appended to (model `combined: NAME`; a name
    /// already there is not measured again), with the table beside it (`.md`).
    #[arg(long)]
    results: PathBuf,
    /// The combination's name.
    #[arg(long)]
    name: String,
    /// A part, `FILE:MODEL:SEEDS` (two or more): a results file of `ists protocol tgcn`, a
    /// trained model's name as in its rows, and the seeds whose kept forecasts
    /// (`FILE.forecasts/`) are averaged. Each part's seeds are averaged first, then the parts
    /// weigh the same.
    #[arg(long = "part", required = true)]
    parts: Vec<ists::protocol::Part>,
}

/// Scores the mean forecast of several trained models' kept forecasts and appends its rows.
pub fn protocol_combine(a: CombineArgs) -> Result<()> {
    use ists::protocol::{combine, combined_name, combined_rows, test_table, ProtocolResults};
    let CombineArgs {
        config,
        results,
        name,
        parts,
    } = a;
    let s = load_settings(Some(config), None)?;
    let raw = ists::data::load(&s.data_spec()?)?;
    let prepared = ists::data::prepare(&raw, &s.data.prepare)?;
    drop(raw);
    // The data and split are what the parts must share; the rest of the settings are theirs.
    let data = serde_json::to_value(&s.data)?;
    let fingerprint = serde_json::json!({ "combine": data });
    ists::fidelity::check_fingerprint(&results, &fingerprint)?;
    let mut file = ProtocolResults::open(&results)?;
    let model = combined_name(&name);
    if file.has(&model, 0) {
        eprintln!(
            "{model}: already in {}, not measured again",
            results.display()
        );
    } else {
        let forecast = combine(&prepared, &data, &parts)?;
        let table = test_table(&prepared, &forecast, 5)?;
        eprintln!("{model}:\n{table}");
        file.append(combined_rows(&name, &parts, &table))?;
    }
    print_protocol_table(&file)
}

/// Prints the table of every row in `file` and writes it beside the file (`.md`).
fn print_protocol_table(file: &ists::protocol::ProtocolResults) -> Result<()> {
    let md = ists::protocol::render(file.rows());
    println!("{md}");
    let md_path = file.path().with_extension("md");
    std::fs::write(&md_path, &md).with_context(|| format!("writing {}", md_path.display()))?;
    println!(
        "rows in {}, table in {}",
        file.path().display(),
        md_path.display()
    );
    Ok(())
}

/// Measures the T-GCN protocol table and prints it.
pub fn protocol_tgcn(a: ProtocolArgs) -> Result<()> {
    use ists::gru::GruConfig;
    use ists::protocol::{
        run_protocol, run_protocol_per_horizon, tgcn_horizon_data, ProtocolModel, ProtocolPlan,
        ProtocolResults,
    };
    let ProtocolArgs {
        config,
        results,
        arch,
        seeds,
        only,
        gru_hidden,
        gru_epochs,
        ensemble,
        per_horizon,
    } = a;
    let known = ["last_value", "ha", "gru", "hand", "arch"];
    if let Some(bad) = only.iter().find(|o| !known.contains(&o.as_str())) {
        anyhow::bail!(
            "--only: unknown model {bad:?} (known: {})",
            known.join(", ")
        );
    }
    let want = |k: &str| only.iter().any(|o| o == k);
    let s = load_settings(Some(config), None)?;
    tch::set_num_threads(s.evaluators.cpu_threads());
    let raw = ists::data::load(&s.data_spec()?)?;
    let prepared = ists::data::prepare(&raw, &s.data.prepare)?;
    // One model per horizon: the data of each horizon's model (same train and val windows).
    let horizons = if per_horizon {
        tgcn_horizon_data(&raw, &s.data.prepare, &prepared.splits)?
    } else {
        Vec::new()
    };
    drop(raw);
    let mut models = Vec::new();
    if want("last_value") {
        models.push(ProtocolModel::LastValue);
    }
    if want("ha") {
        models.push(ProtocolModel::HistoricalAverage);
    }
    if want("gru") {
        models.push(ProtocolModel::Gru(GruConfig { hidden: gru_hidden }));
    }
    if want("hand") {
        for (name, path) in [
            ("hand: reference (ists space)", "config/reference-arch.json"),
            ("hand: Graph-WaveNet-like (autocts)", "config/gwn-arch.json"),
        ] {
            let arch = read_arch(&PathBuf::from(path), &s)?;
            models.push(ProtocolModel::Design {
                name: name.into(),
                arch,
            });
        }
    }
    if want("arch") {
        for path in &arch {
            models.push(ProtocolModel::Design {
                name: format!("design {}", path.display()),
                arch: read_arch(path, &s)?,
            });
        }
    }
    for m in &models {
        if let ProtocolModel::Design { name, arch } = m {
            s.check_final_width(arch)
                .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
        }
    }
    // Rows trained under other settings must not be averaged with these.
    let fingerprint = serde_json::json!({
        "data": s.data, "model": s.final_model(), "train": s.final_train.train, "gru_epochs": gru_epochs,
    });
    ists::fidelity::check_fingerprint(&results, &fingerprint)?;
    let mut file = ProtocolResults::open(&results)?;
    let test = &prepared.splits.test;
    eprintln!(
        "T-GCN protocol on {}: {} sensors, test windows {}..{} ({}), {} seed(s); rows in {}",
        prepared.name,
        prepared.n,
        test.start,
        test.end,
        test.len(),
        seeds,
        results.display()
    );
    for p in &horizons {
        let test = &p.splits.test;
        eprintln!(
            "one model per horizon: the {}-step model trains on windows {}..{}, validates on \
             {}..{}, tests on {}..{} ({})",
            p.output_len,
            p.splits.train.start,
            p.splits.train.end,
            p.splits.val.start,
            p.splits.val.end,
            test.start,
            test.end,
            test.len()
        );
    }
    let plan = ProtocolPlan {
        models,
        seeds,
        model: s.final_model().clone(),
        train: s.final_train.train.clone(),
        gru_epochs: gru_epochs.unwrap_or(s.final_train.train.epochs),
        step_minutes: 5,
        ensemble: ensemble || s.final_train.ensemble,
    };
    if per_horizon {
        run_protocol_per_horizon(&prepared, &horizons, &plan, &mut file, &mut |l| {
            eprintln!("{l}")
        })?;
    } else {
        run_protocol(&prepared, &plan, &mut file, &mut |l| eprintln!("{l}"))?;
    }
    print_protocol_table(&file)
}
