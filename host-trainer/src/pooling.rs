//! Global pooling of class maps into image-level scores, on tensors, with
//! the same formula as `nemascope_core::pooling` (the plain-f32 reference
//! the tests compare against).

use nemascope_core::pooling::{Pooling, GWP_EPS};
use tch::{Kind, Tensor};

/// Pools maps `[B, C, H, W]` with values in 0..1 into scores `[B, C]`.
///
/// GWP: `Σ(e^{r·s}−1+ε)s / Σ(e^{r·s}−1+ε)`, evaluated relative to the
/// per-map maximum `m` (`e^{r(s−m)} − (1−ε)e^{−r·m}`), which is the same
/// ratio without overflow for large r; `m` is detached because the ratio
/// does not depend on it.
pub fn pool(maps: &Tensor, pooling: Pooling) -> Tensor {
    let flat = maps.flatten(2, -1);
    match pooling {
        Pooling::Gap => flat.mean_dim(-1, false, Kind::Float),
        Pooling::Gmp => flat.amax(-1, false),
        Pooling::Gwp { r } => {
            let r = r as f64;
            let m = flat.amax(-1, true).detach();
            let shift = (m.neg() * r).exp() * (1.0 - GWP_EPS);
            let w = (flat.shallow_clone() - &m).multiply_scalar(r).exp() - shift;
            (&w * &flat).sum_dim_intlist(-1, false, Kind::Float)
                / w.sum_dim_intlist(-1, false, Kind::Float)
        }
    }
}

/// Pools one class's maps `[B, H, W]` over square `cell`-sided cells into
/// scores `[B, n]`, cells row-major; `cell` 0 pools each whole map (`[B, 1]`).
/// One forward pass then serves classes labelled at different tile sizes.
pub fn pool_cells(maps: &Tensor, cell: usize, pooling: Pooling) -> Tensor {
    let size = maps.size();
    let (b, h, w) = (size[0], size[1], size[2]);
    let cell = cell as i64;
    if cell == 0 || (cell >= h && cell >= w) {
        return pool(&maps.unsqueeze(1), pooling);
    }
    let (ny, nx) = (h / cell, w / cell);
    let cells = maps
        .narrow(1, 0, ny * cell)
        .narrow(2, 0, nx * cell)
        .reshape([b, ny, cell, nx, cell])
        .permute([0, 1, 3, 2, 4])
        .reshape([b, ny * nx, cell, cell]);
    pool(&cells, pooling)
}
