//! nemascope-count: frames → maps → masks → objects → counts, written once.
//!
//! The unit, the `count` command and the trainer's export scoring all run
//! this crate, so the scores a signed manifest carries are the counts a
//! unit gives on the same images. A [`Segmenter`] is what turns a frame
//! into per-class masks and counts: a signed model bundle ([`Model`]) or
//! the classical flat-field floor ([`Classical`]); both give one result
//! type, [`Counted`].
//!
//! - [`light`]: what a frame's light says before any model looks at it;
//! - [`scale`]: the pixel size frames are measured at and resampled to;
//! - [`model`]: a bundle that passed every check, its plan optimised once;
//! - [`count`]: tiles → thresholded maps → optional voting → components →
//!   counts by the size and area rules;
//! - [`classical`]: the flat-field threshold with superpixel voting.

pub mod classical;
pub mod count;
pub mod light;
pub mod model;
pub mod scale;

pub use classical::Classical;
pub use count::{count_at, count_frame, Candidate, Check, CountSettings, Counted, Measured};
pub use light::{quality, Quality};
pub use model::{Model, ModelError};
pub use scale::{frame_scale, pixel_size, PixelSize};

use nemascope_core::imageio::Luma;

/// Why a frame could not be counted.
#[derive(Debug, thiserror::Error)]
pub enum CountError {
    /// The frame itself, or a step of the algorithms on it.
    #[error(transparent)]
    Frame(#[from] nemascope_core::Error),
    /// tract could not run the model on a tile.
    #[error("model: {0}")]
    Model(#[from] nemascope_onnx::Error),
    /// The bundle asks for something this runtime does not do.
    #[error("{0}")]
    Unsupported(String),
    /// Counting panicked (a bug); the caller caught it and goes on.
    #[error("counting failed (a bug, please report it: {0})")]
    Panicked(String),
}

pub type Result<T> = std::result::Result<T, CountError>;

/// Turns a frame into per-class masks, measured objects and counts: the
/// boundary the unit, the `count` command and the demo use, whatever
/// segments.
pub trait Segmenter {
    /// The classes counted, in the order of [`Counted::counts`].
    fn classes(&self) -> &[String];
    /// Counts one frame (intensities 0..1 of the file's full scale).
    fn count(&self, frame: &(dyn Luma + Sync), s: &CountSettings) -> Result<Counted>;
}

impl Segmenter for Model {
    fn classes(&self) -> &[String] {
        &self.manifest.classes
    }
    fn count(&self, frame: &(dyn Luma + Sync), s: &CountSettings) -> Result<Counted> {
        count_frame(self, frame, s)
    }
}
