//! The library's error type: one enum over every way the core can fail, each naming its source.

use std::path::PathBuf;

/// Errors of the domain core.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("tensor operation failed: {0}")]
    Torch(#[from] tch::TchError),
    #[error("invalid architecture: {0}")]
    Arch(#[from] crate::space::ArchError),
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A setting out of its range; the message names the key (`search.budget must be >= 1`).
    #[error("{0}")]
    Setting(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {msg}")]
    File { path: PathBuf, msg: String },
    #[error("template {name}: {msg}")]
    Template { name: String, msg: String },
    /// The run was asked to stop (a cancelled search); nothing it measured is a result.
    #[error("cancelled")]
    Cancelled,
}

impl Error {
    /// An I/O error tagged with the file it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result with the core's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
