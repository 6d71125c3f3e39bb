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
