//! Loading settings: the embedded `config/default.toml`, then an optional file, then
//! `ISTS__SECTION__KEY` environment overrides, layered with the `config` crate and validated
//! with errors that name the key.

use config::{Config, Environment, File, FileFormat};
use ists::config::Settings;
use std::path::Path;

/// The defaults compiled into the binary (the same file as `config/default.toml`).
pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");

/// Errors while loading settings.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("config file {path}: {msg}")]
    File { path: String, msg: String },
    #[error("settings: {0}")]
    Invalid(String),
}

/// Layers defaults, `file` (if given) and the environment.
pub fn load(file: Option<&Path>) -> Result<Settings, SettingsError> {
    let mut b = Config::builder().add_source(File::from_str(DEFAULT_TOML, FileFormat::Toml));
    if let Some(p) = file {
        if !p.exists() {
            return Err(SettingsError::File {
                path: p.display().to_string(),
                msg: "no such file".into(),
            });
        }
        // Parse the file alone first so a syntax error names this file, not the merge.
        let text = std::fs::read_to_string(p).map_err(|e| SettingsError::File {
            path: p.display().to_string(),
            msg: e.to_string(),
        })?;
        toml::from_str::<toml::Value>(&text).map_err(|e| SettingsError::File {
            path: p.display().to_string(),
            msg: e.to_string(),
        })?;
        b = b.add_source(File::from_str(&text, FileFormat::Toml));
    }
    b = b.add_source(
        Environment::with_prefix("ISTS")
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true),
    );
    let cfg = b
        .build()
        .map_err(|e| SettingsError::Invalid(e.to_string()))?;
    let settings: Settings = cfg.try_deserialize().map_err(|e| {
        let where_ = file
            .map(|p| format!(" (in {} or the environment)", p.display()))
            .unwrap_or_default();
        SettingsError::Invalid(format!("{e}{where_}"))
    })?;
    settings.validate().map_err(SettingsError::Invalid)?;
    Ok(settings)
}

/// Parses settings from a JSON value (the daemon's request body), over the defaults.
pub fn from_json(value: &serde_json::Value) -> Result<Settings, SettingsError> {
    let cfg = Config::builder()
        .add_source(File::from_str(DEFAULT_TOML, FileFormat::Toml))
        .add_source(File::from_str(&value.to_string(), FileFormat::Json))
        .build()
        .map_err(|e| SettingsError::Invalid(e.to_string()))?;
    let s: Settings = cfg
        .try_deserialize()
        .map_err(|e| SettingsError::Invalid(e.to_string()))?;
    s.validate().map_err(SettingsError::Invalid)?;
    Ok(s)
}
