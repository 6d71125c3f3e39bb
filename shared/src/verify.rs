//! The object verifier's measures: what a candidate object (a component
//! of a class map) looks like, in units that do not depend on the pixel
//! size, and the small linear model that weighs them.
//!
//! The maps of a weakly trained network light up debris as well as
//! nematodes. Every candidate in a tile labelled absent is debris, so a
//! verifier trained on these measures from the same image-level labels
//! (multiple-instance learning, in the trainer) tells the two apart where
//! the map alone does not. It costs a few multiply-adds per object, so it
//! runs on the unit inside `count`.

use crate::imageio::Luma;
use crate::objects::{BBox, Object};
use crate::BitMask;

/// The measures, in this order (the manifest's weights follow it).
pub const FEATURES: [&str; 8] = [
    "ln_area_um2",
    "ln_length_um",
    "ln_width_um",
    "ln_elongation",
    "core_fraction",
    "mean",
    "std",
    "contrast",
];

/// The level of a class map above which a pixel is an object's confident
/// core: halfway from the foreground threshold to 1.
pub fn core_level(threshold: f32) -> f32 {
    threshold + (1.0 - threshold) / 2.0
}

/// What an object's pixels hold: its core pixels and its intensities
/// (standardised over the frame) against a ring around it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PixelStats {
    pub area: usize,
    pub core: usize,
    pub mean: f32,
    pub std: f32,
    /// Mean of the pixels within [`RING`] pixels of the object's box that
    /// are not the object's (the frame's mean where there are none).
    pub ring_mean: f32,
}

/// How far around an object's box its surroundings reach (pixels).
pub const RING: usize = 3;

/// The [`PixelStats`] of one object, given as `measure_bits_each` gives it
/// (its box and its own pixels as a crop with a one-pixel border), the
/// class's core mask and the frame, standardised with `mean` and `std`.
pub fn pixel_stats<L: Luma + ?Sized>(
    bbox: BBox,
    crop: &BitMask,
    core: &BitMask,
    frame: &L,
    mean: f64,
    std: f64,
) -> PixelStats {
    let (w, h) = (frame.width(), frame.height());
    let scale = if std > 0.0 { 1.0 / std } else { 0.0 };
    let x0 = bbox.x0.saturating_sub(RING);
    let x1 = (bbox.x1 + RING).min(w);
    let y0 = bbox.y0.saturating_sub(RING);
    let y1 = (bbox.y1 + RING).min(h);
    let mut row = vec![0f32; w];
    let (mut n, mut cored, mut sum, mut sq, mut rn, mut rsum) =
        (0usize, 0usize, 0f64, 0f64, 0usize, 0f64);
    for y in y0..y1 {
        frame.row_into(y, &mut row);
        for (x, &raw) in row.iter().enumerate().take(x1).skip(x0) {
            let v = (f64::from(raw) - mean) * scale;
            let inside = (bbox.x0..bbox.x1).contains(&x)
                && (bbox.y0..bbox.y1).contains(&y)
                && crop.get(x - bbox.x0 + 1, y - bbox.y0 + 1);
            if inside {
                n += 1;
                sum += v;
                sq += v * v;
                cored += usize::from(core.get(x, y));
            } else {
                rn += 1;
                rsum += v;
            }
        }
    }
    let m = if n > 0 { sum / n as f64 } else { 0.0 };
    PixelStats {
        area: n,
        core: cored,
        mean: m as f32,
        std: if n > 0 {
            (sq / n as f64 - m * m).max(0.0).sqrt() as f32
        } else {
            0.0
        },
        ring_mean: if rn > 0 {
            (rsum / rn as f64) as f32
        } else {
            0.0
        },
    }
}

/// The [`FEATURES`] of an object measured at `um_per_px`.
pub fn features(o: &Object, s: &PixelStats, um_per_px: f32) -> [f32; FEATURES.len()] {
    let ln = |v: f32| v.max(1e-3).ln();
    let area = o.area as f32 * um_per_px * um_per_px;
    [
        ln(area),
        ln(o.length * um_per_px),
        ln(o.width * um_per_px),
        ln(o.elongation),
        s.core as f32 / s.area.max(1) as f32,
        s.mean,
        s.std,
        s.mean - s.ring_mean,
    ]
}

/// Logistic score of features `f` under a linear model over standardised
/// features: `σ(b + Σ wᵢ (fᵢ − μᵢ) / sᵢ)`.
pub fn logistic(f: &[f32], mean: &[f32], scale: &[f32], weights: &[f32], bias: f32) -> f32 {
    let z: f32 = f
        .iter()
        .zip(mean)
        .zip(scale)
        .zip(weights)
        .map(|(((v, m), s), w)| w * (v - m) / s)
        .sum::<f32>()
        + bias;
    1.0 / (1.0 + (-z).exp())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::measure_bits_each;
    use crate::Plane;

    /// A dark 4×3 block on a bright frame, its left half in the core, and a
    /// second object inside its box's ring that must not count as its own.
    #[test]
    fn stats_are_the_objects_own_pixels_against_its_surroundings() {
        let (w, h) = (16, 12);
        let mut mask = BitMask::new(w, h);
        let mut core = BitMask::new(w, h);
        let frame = Plane::from_fn(w, h, |x, y| {
            if (4..8).contains(&x) && (4..7).contains(&y) {
                0.2
            } else {
                1.0
            }
        });
        for y in 4..7 {
            for x in 4..8 {
                mask.set(x, y, true);
                core.set(x, y, x < 6);
            }
        }
        mask.set(10, 2, true);
        let objs = measure_bits_each(
            &mask,
            1,
            |a| a > 1,
            |b, crop| pixel_stats(b, crop, &core, &frame, 0.0, 1.0),
        );
        assert_eq!(objs.len(), 1);
        let (o, s) = &objs[0];
        assert_eq!((s.area, s.core), (12, 6));
        assert!((s.mean - 0.2).abs() < 1e-6 && s.std.abs() < 1e-6);
        assert!((s.ring_mean - 1.0).abs() < 1e-6, "{}", s.ring_mean);
        let f = features(o, s, 2.0);
        assert!((f[0] - (48f32).ln()).abs() < 1e-5);
        assert!((f[4] - 0.5).abs() < 1e-6);
        assert!((f[7] + 0.8).abs() < 1e-6);
        // Standardising the frame scales the intensity measures alike.
        let st = pixel_stats(o.bbox, &crop_of(&mask, o.bbox), &core, &frame, 1.0, 0.5);
        assert!((st.mean + 1.6).abs() < 1e-5 && st.ring_mean.abs() < 1e-6);
    }

    fn crop_of(mask: &BitMask, b: BBox) -> BitMask {
        let mut c = BitMask::new(b.width() + 2, b.height() + 2);
        for y in b.y0..b.y1 {
            for x in b.x0..b.x1 {
                c.set(x - b.x0 + 1, y - b.y0 + 1, mask.get(x, y));
            }
        }
        c
    }

    #[test]
    fn the_logistic_score_is_the_standardised_linear_model() {
        let p = logistic(&[3.0, 1.0], &[1.0, 1.0], &[2.0, 1.0], &[2.0, 5.0], -1.0);
        // z = 2·(3−1)/2 + 5·0 − 1 = 1
        assert!((p - 1.0 / (1.0 + (-1f32).exp())).abs() < 1e-6);
        assert!((core_level(0.5) - 0.75).abs() < 1e-6);
    }
}
