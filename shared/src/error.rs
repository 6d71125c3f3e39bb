//! One error type for the crate: every failure names what it was working on.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An image that cannot be used, with the file (or source name) and why.
    #[error("image {path}: {reason}")]
    Image { path: PathBuf, reason: String },
    /// A dataset file or row that cannot be used.
    #[error("dataset {path}{}: {reason}", line.map(|l| format!(" line {l}")).unwrap_or_default())]
    Dataset {
        path: PathBuf,
        line: Option<u64>,
        reason: String,
    },
    /// Arguments that do not fit together (sizes, ranges, parameters).
    #[error("invalid input: {0}")]
    Invalid(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub fn image(path: impl Into<PathBuf>, reason: impl std::fmt::Display) -> Self {
        Error::Image {
            path: path.into(),
            reason: reason.to_string(),
        }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
