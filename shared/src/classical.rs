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
    /// When > 0, the background is a sliding median over a
    /// `(2r+1)²` window instead of block medians: slower, but it follows a
    /// sharp border (the rim of a well) that block medians blur into false
    /// objects.
    pub median_radius: usize,
}

impl Default for FlatField {
    fn default() -> Self {
        FlatField {
            block: 32,
            dark_ratio: 0.88,
            min_area: 40,
            median_radius: 0,
        }
    }
}

impl FlatField {
    /// Background estimate: block medians, bilinearly upsampled, or the
    /// sliding median.
    pub fn background(&self, plane: &Plane) -> Result<Plane> {
        if self.block == 0 || plane.is_empty() {
            return Err(Error::Invalid(
                "flat field: empty image or zero block".into(),
            ));
        }
        if self.median_radius > 0 {
            return Ok(median_filter(plane, self.median_radius, 1024));
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
        self.segment_with(plane, &bg)
    }

    /// Segments dark objects against a background already estimated (to
    /// try several ratios on one image).
    pub fn segment_with(&self, plane: &Plane, bg: &Plane) -> Result<Mask> {
        plane.check_same_size(bg, "flat-field background")?;
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

/// Sliding median over a `(2r+1)²` window with mirrored borders (scipy's
/// `reflect`), on values quantised to `bins` levels between the image's
/// minimum and maximum (plenty for a background estimate). A histogram per
/// row slides across (Huang's method) with coarse and fine bins, so a pixel
/// costs O(r + √bins), not O(r²).
pub fn median_filter(plane: &Plane, radius: usize, bins: usize) -> Plane {
    let (w, h) = (plane.width(), plane.height());
    let Some((lo, hi)) = plane.min_max() else {
        return plane.clone();
    };
    let fine = (bins.max(4) as f64).sqrt().ceil() as usize;
    let bins = fine * fine;
    let scale = if hi > lo {
        (bins - 1) as f32 / (hi - lo)
    } else {
        0.0
    };
    let q: Vec<u16> = plane
        .data()
        .iter()
        .map(|&v| ((v - lo) * scale).round().clamp(0.0, (bins - 1) as f32) as u16)
        .collect();
    let reflect = |i: isize, n: usize| -> usize {
        let n = n as isize;
        let mut i = i;
        // Mirror until inside (windows wider than the image mirror again).
        loop {
            if i < 0 {
                i = -i - 1;
            } else if i >= n {
                i = 2 * n - i - 1;
            } else {
                return i as usize;
            }
        }
    };
    let r = radius as isize;
    let half = ((2 * radius + 1) * (2 * radius + 1)).div_ceil(2) as u32;
    let mut out = Vec::with_capacity(w * h);
    let mut hist = vec![0u32; bins];
    let mut coarse = vec![0u32; fine];
    for y in 0..h {
        hist.iter_mut().for_each(|c| *c = 0);
        coarse.iter_mut().for_each(|c| *c = 0);
        let rows: Vec<usize> = (-r..=r).map(|d| reflect(y as isize + d, h)).collect();
        let add = |x: usize, sign: i32, hist: &mut [u32], coarse: &mut [u32]| {
            for &yy in &rows {
                let b = q[yy * w + x] as usize;
                hist[b] = (hist[b] as i32 + sign) as u32;
                coarse[b / fine] = (coarse[b / fine] as i32 + sign) as u32;
            }
        };
        for d in -r..=r {
            add(reflect(d, w), 1, &mut hist, &mut coarse);
        }
        for x in 0..w {
            if x > 0 {
                add(reflect(x as isize - r - 1, w), -1, &mut hist, &mut coarse);
                add(reflect(x as isize + r, w), 1, &mut hist, &mut coarse);
            }
            // The `half`-th smallest value.
            let mut seen = 0u32;
            let mut c = 0;
            while seen + coarse[c] < half {
                seen += coarse[c];
                c += 1;
            }
            let mut b = c * fine;
            while seen + hist[b] < half {
                seen += hist[b];
                b += 1;
            }
            out.push(lo + b as f32 / scale.max(f32::MIN_POSITIVE));
        }
    }
    Plane::from_vec(w, h, out).expect("same size")
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

    #[test]
    fn median_filter_matches_a_direct_median() {
        let p = Plane::from_fn(23, 17, |x, y| ((x * 7 + y * 13) % 29) as f32 / 28.0);
        let m = median_filter(&p, 3, 1024);
        let reflect = |i: isize, n: isize| {
            if i < 0 {
                (-i - 1) as usize
            } else if i >= n {
                (2 * n - i - 1) as usize
            } else {
                i as usize
            }
        };
        for (x, y) in [(0, 0), (5, 9), (22, 16), (11, 0), (3, 15)] {
            let mut v = Vec::new();
            for dy in -3..=3 {
                for dx in -3..=3 {
                    v.push(*p.get(reflect(x as isize + dx, 23), reflect(y as isize + dy, 17)));
                }
            }
            v.sort_by(f32::total_cmp);
            assert!(
                (m.get(x, y) - v[24]).abs() < 1e-3,
                "({x},{y}): {} vs {}",
                m.get(x, y),
                v[24]
            );
        }
        // A constant image stays constant.
        let c = Plane::filled(9, 9, 0.5);
        assert!(median_filter(&c, 2, 256).data().iter().all(|&v| v == 0.5));
    }
}
