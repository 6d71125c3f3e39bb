//! nemascope's ONNX side: the U-Net written as ONNX from plain weight
//! arrays (no libtorch), fp32 or real int8 (`QLinearConv`), and run with
//! tract.
//!
//! - [`weights`]: the network's convolutions, BatchNorm folding, sizes
//! - [`export`]: the fp32 and int8 graphs, calibration ranges
//! - [`graph`]: a thin builder over tract's prost ONNX types
//! - [`run`]: a tract plan loaded once and reused; calibration

pub mod export;
pub mod graph;
pub mod run;
pub mod weights;

pub use export::{Calibration, InputSize, INPUT, OUTPUT};
pub use run::{Precision, Runner};
pub use weights::{BatchNorm, Conv, UNetWeights};

/// What goes wrong making or running a model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("shape: {0}")]
    Shape(String),
    #[error("model: {0}")]
    Model(String),
}
