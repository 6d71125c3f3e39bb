//! Global pooling of a class score map into one image-level score: the plain
//! f32 reference the trainer's tensors are tested against.
//!
//! Global Weighted Pooling (Chen et al.):
//! `s = Σ wᵢ sᵢ / Σ wᵢ` with `wᵢ = exp(r·sᵢ) − 1 + ε`, ε = 1e-5, scores in
//! 0..1. r = 0 gives the mean (GAP); large r tends to the max (GMP).
//! Weights are computed relative to the largest score,
//! `wᵢ ∝ exp(r(sᵢ−m)) − (1−ε)·exp(−r·m)`, which is the same ratio but never
//! overflows for large r.

use crate::{Error, Result};

/// The paper's ε.
pub const GWP_EPS: f64 = 1e-5;

/// Which pooling turns a map into a class score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pooling {
    /// Global average pooling.
    Gap,
    /// Global max pooling.
    Gmp,
    /// Global weighted pooling with exponent `r` ≥ 0.
    Gwp { r: f32 },
}

impl Pooling {
    /// Pools scores in 0..1.
    pub fn pool(&self, scores: &[f32]) -> Result<f32> {
        if scores.is_empty() {
            return Err(Error::Invalid("pooling an empty map".into()));
        }
        if scores.iter().any(|s| !s.is_finite()) {
            return Err(Error::Invalid(
                "pooling a map with NaN or infinite scores".into(),
            ));
        }
        Ok(match *self {
            Pooling::Gap => {
                (scores.iter().map(|&s| s as f64).sum::<f64>() / scores.len() as f64) as f32
            }
            Pooling::Gmp => scores.iter().copied().fold(f32::NEG_INFINITY, f32::max),
            Pooling::Gwp { r } => gwp(scores, r)?,
        })
    }
}

/// Global weighted pooling of scores in 0..1.
pub fn gwp(scores: &[f32], r: f32) -> Result<f32> {
    if !(r.is_finite() && r >= 0.0) {
        return Err(Error::Invalid(format!(
            "GWP r must be finite and ≥ 0, got {r}"
        )));
    }
    if scores.is_empty() {
        return Err(Error::Invalid("pooling an empty map".into()));
    }
    let r = r as f64;
    let m = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let shift = (1.0 - GWP_EPS) * (-r * m).exp();
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for &s in scores {
        let s = s as f64;
        let w = (r * (s - m)).exp() - shift;
        num += w * s;
        den += w;
    }
    Ok((num / den) as f32)
}

/// Binary cross-entropy of a probability against a 0/1 label, with the
/// probability clamped away from 0 and 1 (as PyTorch's `BCELoss` clamps the
/// log at −100).
pub fn bce(p: f32, label: bool) -> f32 {
    let p = p as f64;
    let l = if label { p.ln() } else { (1.0 - p).ln() };
    (-l.max(-100.0)) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: [f32; 6] = [0.05, 0.1, 0.2, 0.9, 0.0, 0.3];

    #[test]
    fn r_zero_is_the_mean_and_large_r_the_max() {
        let mean = S.iter().sum::<f32>() / S.len() as f32;
        assert!((gwp(&S, 0.0).unwrap() - mean).abs() < 1e-6);
        assert!((gwp(&S, 200.0).unwrap() - 0.9).abs() < 1e-3);
        assert!((gwp(&S, 1e4).unwrap() - 0.9).abs() < 1e-6);
        assert_eq!(Pooling::Gmp.pool(&S).unwrap(), 0.9);
        assert!((Pooling::Gap.pool(&S).unwrap() - mean).abs() < 1e-6);
    }

    #[test]
    fn matches_the_direct_formula_and_rises_with_r() {
        // Direct evaluation of Σ(e^{r s}−1+ε)s / Σ(e^{r s}−1+ε) in f64.
        for r in [1.0f64, 3.0, 5.0, 7.0, 9.0, 13.0] {
            let (mut n, mut d) = (0.0, 0.0);
            for &s in &S {
                let w = (r * s as f64).exp() - 1.0 + GWP_EPS;
                n += w * s as f64;
                d += w;
            }
            assert!(
                (gwp(&S, r as f32).unwrap() as f64 - n / d).abs() < 1e-6,
                "r={r}"
            );
        }
        let mut last = 0.0;
        for r in 0..20 {
            let v = gwp(&S, r as f32).unwrap();
            assert!(v >= last - 1e-7);
            last = v;
        }
    }

    #[test]
    fn all_zero_map_pools_to_zero_and_errors_are_clear() {
        assert_eq!(gwp(&[0.0; 8], 5.0).unwrap(), 0.0);
        assert!(gwp(&S, -1.0).is_err());
        assert!(Pooling::Gap.pool(&[]).is_err());
        assert!(Pooling::Gwp { r: 5.0 }.pool(&[f32::NAN]).is_err());
    }

    #[test]
    fn bce_reference_values() {
        assert!((bce(0.5, true) - std::f32::consts::LN_2).abs() < 1e-6);
        // −ln(1 − 0.9) = ln 10.
        assert!((bce(0.9, false) - std::f32::consts::LN_10).abs() < 1e-5);
        assert_eq!(bce(0.0, true), 100.0);
    }
}
