//! nemascope-label: a page on localhost where a lab labels a folder of its
//! own images with present/absent decisions per tile (or whole image) and
//! class, written after every key press into the `labels.csv` the trainer
//! reads (docs/labelling.md).
//!
//! Stages, one way: the folder (`store`: images, the session's settings,
//! the decision log, `labels.csv` and tile files, all written atomically)
//! → the HTTP API and page (`server`, `page/`) → pixels for the browser
//! (`display`). The decisions themselves are pure data (`session`).
//!
//! `review` serves the results of `nemascope-edge count` (and the lab
//! database) with the same store, which then records a technician's
//! corrections in a folder of their own.

pub mod display;
pub mod http;
pub mod review;
pub mod server;
pub mod session;
pub mod store;

pub use session::{Cut, Decision, ImageInfo, Log, Unit};
pub use store::{Options, Store};

/// What can go wrong, each with a message a lab technician can act on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input: a folder, an image, an option, a file of the session.
    #[error("{0}")]
    Input(String),
    /// The folder is already being labelled (another server or tab).
    #[error("{0}")]
    Busy(String),
    #[error(transparent)]
    Core(#[from] nemascope_core::Error),
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub fn io(path: impl Into<std::path::PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
