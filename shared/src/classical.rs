//! The classical baseline: flat-field correction and a dark-pixel ratio
//! threshold. Brightfield worms absorb light, so pixels clearly darker than
//! the local background are foreground. This is the floor a learned model
//! must clear, and the segmenter the demo uses before a model is trained.

use crate::imageio::resize_bilinear;
use crate::objects::{basic_stats, label_components};
use crate::{Error, Mask, Plane, Result};

/// Parameters of the flat-field threshold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FlatField {
    /// Side of the blocks whose medians estimate the background.
    pub block: usize,
    /// Foreground where `pixel < dark_ratio × background`.
    pub dark_ratio: f32,
    /// Components smaller than this (pixels) are removed.
    pub min_area: usize,
}

impl Default for FlatField {
    fn default() -> Self {
        FlatField {
            block: 32,
            dark_ratio: 0.88,
            min_area: 40,
        }
    }
}

impl FlatField {
    /// Background estimate: block medians, bilinearly upsampled.
    pub fn background(&self, plane: &Plane) -> Result<Plane> {
        if self.block == 0 || plane.is_empty() {
            return Err(Error::Invalid(
                "flat field: empty image or zero block".into(),
            ));
        }
        let bw = plane.width().div_ceil(self.block);
        let bh = plane.height().div_ceil(self.block);
        let mut med = Vec::with_capacity(bw * bh);
        let mut buf = Vec::with_capacity(self.block * self.block);
        for by in 0..bh {
            for bx in 0..bw {
                buf.clear();
                let y1 = ((by + 1) * self.block).min(plane.height());
                let x1 = ((bx + 1) * self.block).min(plane.width());
                for y in by * self.block..y1 {
                    buf.extend_from_slice(&plane.row(y)[bx * self.block..x1]);
                }
                let k = buf.len() / 2;
                let (_, m, _) = buf.select_nth_unstable_by(k, |a, b| a.total_cmp(b));
                med.push(*m);
            }
        }
        resize_bilinear(
            &Plane::from_vec(bw, bh, med)?,
            plane.width(),
            plane.height(),
        )
    }

    /// Segments dark objects.
    pub fn segment(&self, plane: &Plane) -> Result<Mask> {
        let bg = self.background(plane)?;
        let raw = Mask::from_vec(
            plane.width(),
            plane.height(),
            plane
                .data()
                .iter()
                .zip(bg.data())
                .map(|(&v, &b)| v < self.dark_ratio * b)
                .collect(),
        )?;
        Ok(remove_small(&raw, self.min_area))
    }
}

/// Drops 8-connected components smaller than `min_area` pixels.
pub fn remove_small(mask: &Mask, min_area: usize) -> Mask {
    let comps = label_components(mask);
    let keep: Vec<bool> = std::iter::once(false)
        .chain(basic_stats(&comps).iter().map(|o| o.area >= min_area))
        .collect();
    comps.labels.map(|&l| keep[l as usize])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_dark_bar_under_uneven_light() {
        // Illumination falls from 0.9 to 0.5 across the frame; a bar absorbs
        // 40 % of the light, a speck absorbs 40 % but is too small.
        let truth = Mask::from_fn(128, 96, |x, y| {
            (20..100).contains(&x) && (40..46).contains(&y)
        });
        let plane = Plane::from_fn(128, 96, |x, y| {
            let light = 0.9 - 0.4 * x as f32 / 127.0;
            let speck = (5..7).contains(&x) && (5..7).contains(&y);
            if *truth.get(x, y) || speck {
                light * 0.6
            } else {
                light
            }
        });
        let m = FlatField::default().segment(&plane).unwrap();
        assert_eq!(m, truth);
    }
}
