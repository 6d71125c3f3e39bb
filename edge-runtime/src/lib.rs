//! nemascope-edge: frames → maps → masks → objects → counts on the board.
//!
//! Until a trained model bundle ships (issues 3–4), the foreground map comes
//! from the classical flat-field segmenter of `nemascope-core`; the rest of
//! the pipeline (superpixel voting, components, shape classes, cluster-aware
//! counting) is the one the model will feed.

pub mod journal;
pub mod link;
pub mod model;
pub mod pipeline;
pub mod protocol;
