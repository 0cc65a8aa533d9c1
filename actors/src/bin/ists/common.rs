//! Helpers every command group shares: settings with a data override, architecture files,
//! one metrics table row.

use anyhow::{Context, Result};
use ists::config::Settings;
use ists::space::Arch;
use ists_actors::settings;
use std::path::{Path, PathBuf};

/// The settings: defaults, then `config`, then a data set override.
pub fn load_settings(config: Option<PathBuf>, data: Option<String>) -> Result<Settings> {
    let mut s = settings::load(config.as_deref())?;
    if let Some(d) = data {
        s.data.source = d;
        s.data.spec = None;
    }
    Ok(s)
}

pub fn read_arch(path: &Path, s: &Settings) -> Result<Arch> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Arch::from_json(&text, s.search.space)
        .with_context(|| format!("architecture {}", path.display()))
}

pub fn metrics_row(name: &str, m: &ists::metrics::MetricsTable) -> String {
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
