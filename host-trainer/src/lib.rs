//! nemascope-train: the host half. A U-Net with one sigmoid map per class,
//! trained as an image classifier through global pooling of its maps (GAP,
//! GMP or GWP), then refined on its own maps voted over superpixels, as in
//! Chen et al.; evaluation, reports and the `nemascope-train` CLI.
//!
//! Data flow: images → [`data`] (working size, standardised, crops) →
//! [`unet`] maps → [`pooling`] scores (stage 1) → [`stages`] voted masks
//! (stage 2) → Dice refinement (stage 3), all driven by [`train`]; [`eval`]
//! scores, [`benchmark`] scores on the frozen synthetic benchmark, [`report`] writes; [`distill`] trains a smaller student and
//! [`export`] writes a signed ONNX bundle (fp32 or int8).
//!
//! Build with libtorch from the `torch` wheel: `LIBTORCH=<…/torch>`,
//! `LIBTORCH_CXX11_ABI=1`, and `torch/lib` on `LD_LIBRARY_PATH` at run time
//! (`cargo xtask` sets all three from `.venv-torch`).

pub mod batch;
pub mod benchmark;
pub mod cli;
pub mod config;
pub mod data;
pub mod distill;
pub mod eval;
pub mod export;
pub mod pooling;
pub mod report;
pub mod stages;
pub mod thresholds;
pub mod train;
pub mod unet;
pub mod verifier;
