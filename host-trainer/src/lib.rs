//! nemascope-train: the host half. A U-Net with one sigmoid map per class,
//! trained as an image classifier through global pooling of its maps (GAP,
//! GMP or GWP), as in Chen et al.; later stages (voting, refinement,
//! evaluation, export) build on these pieces.
//!
//! Build with libtorch from the `torch` Python package:
//! `LIBTORCH_USE_PYTORCH=1` and `torch/lib` on `LD_LIBRARY_PATH` at run
//! time (`cargo xtask` sets both from `.venv-torch`).

pub mod batch;
pub mod pooling;
pub mod stages;
pub mod unet;
