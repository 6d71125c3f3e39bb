//! Flat-field correction: a frame divided by its own illumination, so an
//! object is as dark against the lamp in a vignetted corner as in the
//! centre. NemaQuant's egg images fall to 72 % of the centre's light in
//! the corners (wm_0's to 70 % of a grey centre), about the contrast of a
//! pale egg, and per-image standardisation cannot undo that: it shifts
//! and scales the whole frame at once.
//!
//! The illumination is the median of each `block`×`block` square,
//! interpolated bilinearly between the squares' centres: the median is the
//! background wherever objects cover under half a square, whichever way
//! they differ from it (dark eggs in bright-field light, bright worms in
//! dark-field). Squares several objects wide keep the objects' own
//! contrast and follow the lamp's fall-off, which spans the whole field.
//! One pass builds it, row by row; [`Flattened`] then reads the corrected
//! frame row by row as any other [`Luma`], so counting keeps its bands
//! and the trainer applies the same function to its planes.

use crate::imageio::Luma;

/// A frame's illumination: the median of each square, at the squares'
/// centres.
#[derive(Debug, Clone, PartialEq)]
pub struct Illumination {
    /// Square centres along y, in pixels.
    ys: Vec<f32>,
    /// Per column of the frame, the square column at or left of it and
    /// the next one's weight ([`between`]): worked out once, not at every
    /// pixel of every row read.
    columns: Vec<(usize, f32)>,
    /// Squares per row.
    cols: usize,
    /// Medians, `ys.len()` rows of `cols`.
    medians: Vec<f32>,
    /// The median of the medians: the corrected frame's background, so it
    /// stays in the frame's own range.
    level: f32,
}

/// Centres of the squares `block` apart along `len` (the last one may be
/// short).
fn centres(len: usize, block: usize) -> Vec<f32> {
    (0..len.div_ceil(block))
        .map(|i| {
            let lo = i * block;
            let hi = (lo + block).min(len);
            (lo + hi) as f32 / 2.0 - 0.5
        })
        .collect()
}

/// Index of the centre at or below `p` and the weight of the next one.
/// Past the outer centres the line through the last two goes on: a lamp
/// keeps falling towards the corners: holding the outer squares' light
/// there left a test lamp's corners 18 % too dark, the line leaves 6 %
/// too bright.
fn between(cs: &[f32], p: f32) -> (usize, f32) {
    if cs.len() < 2 {
        return (0, 0.0);
    }
    let i = cs.partition_point(|&c| c <= p).clamp(1, cs.len() - 1) - 1;
    (i, (p - cs[i]) / (cs[i + 1] - cs[i]))
}

fn median(v: &mut [f32]) -> f32 {
    let mid = v.len() / 2;
    *v.select_nth_unstable_by(mid, f32::total_cmp).1
}

/// The illumination of `frame` from `block`×`block` squares (`block` ≥ 1;
/// a frame smaller than one square has one, uniform, illumination).
pub fn illumination<L: Luma + ?Sized>(frame: &L, block: usize) -> Illumination {
    let (w, h) = (frame.width(), frame.height());
    let block = block.max(1);
    let (xs, ys) = (centres(w, block), centres(h, block));
    let mut medians = Vec::with_capacity(xs.len() * ys.len());
    let mut rows = vec![0f32; w * block];
    let mut square = Vec::with_capacity(block * block);
    for by in 0..ys.len() {
        let (y0, y1) = (by * block, ((by + 1) * block).min(h));
        for (r, y) in (y0..y1).enumerate() {
            frame.row_into(y, &mut rows[r * w..(r + 1) * w]);
        }
        for bx in 0..xs.len() {
            let (x0, x1) = (bx * block, ((bx + 1) * block).min(w));
            square.clear();
            for r in 0..y1 - y0 {
                square.extend_from_slice(&rows[r * w + x0..r * w + x1]);
            }
            medians.push(median(&mut square));
        }
    }
    let level = if medians.is_empty() {
        0.0
    } else {
        median(&mut medians.clone())
    };
    Illumination {
        columns: (0..w).map(|x| between(&xs, x as f32)).collect(),
        cols: xs.len(),
        ys,
        medians,
        level,
    }
}

impl Illumination {
    /// The background the corrected frame is brought to.
    pub fn level(&self) -> f32 {
        self.level
    }

    /// The illumination along row `y` into `out` (one value a pixel).
    pub fn row_into(&self, y: usize, out: &mut [f32]) {
        for (o, l) in out.iter_mut().zip(self.row(y)) {
            *o = l;
        }
    }

    /// The illumination along row `y`, one value a pixel, computed as it
    /// is read: counting reads a frame row by row, and a frame-wide buffer
    /// would be allocated for every row. Each square column is
    /// interpolated between the square rows once (`cols` values), then
    /// every pixel between its two columns. Nothing when there are no
    /// squares.
    fn row(&self, y: usize) -> impl Iterator<Item = f32> + '_ {
        let cols = self.cols;
        let (along, columns): (Vec<f32>, &[(usize, f32)]) = if cols == 0 {
            (Vec::new(), &[])
        } else {
            let (j, ty) = between(&self.ys, y as f32);
            let j1 = (j + 1).min(self.ys.len() - 1);
            let along = (0..cols)
                .map(|i| {
                    let (a, b) = (self.medians[j * cols + i], self.medians[j1 * cols + i]);
                    a + (b - a) * ty
                })
                .collect();
            (along, &self.columns)
        };
        columns.iter().map(move |&(i, tx)| {
            let i1 = (i + 1).min(cols - 1);
            along[i] + (along[i1] - along[i]) * tx
        })
    }
}

/// `frame` divided by its [`Illumination`] and brought to its median
/// level: `v · level / max(light, level / 20)`. The floor keeps a square
/// that is nearly black (a lamp-off corner, a cyst filling it) from
/// blowing up noise. A frame whose level is 0 reads as zeros.
pub struct Flattened<'a, L: ?Sized> {
    frame: &'a L,
    light: Illumination,
}

impl<'a, L: Luma + ?Sized> Flattened<'a, L> {
    /// Measures `frame`'s illumination over `block`×`block` squares.
    pub fn new(frame: &'a L, block: usize) -> Self {
        Flattened {
            frame,
            light: illumination(frame, block),
        }
    }

    pub fn illumination(&self) -> &Illumination {
        &self.light
    }
}

impl<L: Luma + ?Sized> Luma for Flattened<'_, L> {
    fn width(&self) -> usize {
        self.frame.width()
    }
    fn height(&self) -> usize {
        self.frame.height()
    }
    fn row_into(&self, y: usize, out: &mut [f32]) {
        self.frame.row_into(y, out);
        let level = self.light.level;
        if level <= 0.0 {
            out.fill(0.0);
            return;
        }
        let floor = level / 20.0;
        for (v, l) in out.iter_mut().zip(self.light.row(y)) {
            *v *= level / l.max(floor);
        }
    }
    fn storage_bits(&self) -> Option<u8> {
        self.frame.storage_bits()
    }
}

/// The side of the squares, in pixels, for squares of `um` µm at
/// `um_per_px`: at least 8 pixels, so a median has enough to go on, and
/// at most 8192 (a bundle's bound; one square then spans any frame).
pub fn block_px(um: f32, um_per_px: f32) -> usize {
    ((um / um_per_px).round() as usize).clamp(8, 8192)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Plane;

    fn plane(w: usize, h: usize, f: impl Fn(usize, usize) -> f32) -> Plane {
        Plane::from_vec(
            w,
            h,
            (0..h)
                .flat_map(|y| (0..w).map(move |x| (x, y)))
                .map(|(x, y)| f(x, y))
                .collect(),
        )
        .unwrap()
    }

    /// Dark 6 px discs every 20 px: well under half of any 40 px square.
    fn objects(x: usize, y: usize) -> f32 {
        let (dx, dy) = ((x % 20) as f32 - 10.0, (y % 20) as f32 - 10.0);
        if dx * dx + dy * dy <= 9.0 {
            0.4
        } else {
            1.0
        }
    }

    /// A lamp that falls from 1 in the centre to about 0.6 in the corners.
    fn vignette(x: usize, y: usize, w: usize, h: usize) -> f32 {
        let (u, v) = (x as f32 / w as f32 - 0.5, y as f32 / h as f32 - 0.5);
        1.0 - 0.8 * (u * u + v * v)
    }

    /// Worst relative error of `flat` against `want` between the centres
    /// of 40 px squares on a 240×160 frame, and beyond them.
    fn worst(flat: &Plane, want: impl Fn(usize, usize) -> f32) -> (f32, f32) {
        let (mut inside, mut outside) = (0f32, 0f32);
        for y in 0..flat.height() {
            for x in 0..flat.width() {
                let e = (flat.get(x, y) - want(x, y)).abs() / want(x, y);
                if (20..220).contains(&x) && (20..140).contains(&y) {
                    inside = inside.max(e);
                } else {
                    outside = outside.max(e);
                }
            }
        }
        (inside, outside)
    }

    #[test]
    fn a_vignetted_frame_is_flattened_to_the_objects_alone() {
        let (w, h) = (240, 160);
        let seen = plane(w, h, |x, y| objects(x, y) * vignette(x, y, w, h));
        let flat = Flattened::new(&seen, 40).to_plane();
        let level = Flattened::new(&seen, 40).illumination().level();
        // Before: the background ranges over the lamp's fall-off.
        let (corner, centre) = (*seen.get(0, 0), *seen.get(120, 80));
        assert!(centre - corner > 0.3, "{corner} {centre}");
        // After: every pixel is its object pattern at one level, to 4 %
        // between the squares' centres (bilinear on a quadratic lamp) and
        // to 7 % beyond them (the line through the outer squares runs past
        // a lamp that bends down; held flat instead it left 18 %).
        let (inside, outside) = worst(&flat, |x, y| objects(x, y) * level);
        assert!(
            inside < 0.04 && outside < 0.07,
            "worst {inside} inside, {outside} outside"
        );
        // A disc is as dark against its background in the corner as in
        // the centre.
        let contrast = |x, y| flat.get(x, y) / flat.get(x + 10, y);
        assert!((contrast(10, 10) - contrast(130, 90)).abs() < 0.02);
    }

    #[test]
    fn an_evenly_lit_frame_is_unchanged() {
        let even = plane(100, 70, objects);
        let flat = Flattened::new(&even, 40).to_plane();
        assert_eq!(Flattened::new(&even, 40).illumination().level(), 1.0);
        assert_eq!(flat, even);
    }

    #[test]
    fn bright_objects_on_a_dark_field_keep_their_background() {
        // Dark-field: the median is the dark background whatever the sign.
        let (w, h) = (240, 160);
        let seen = plane(w, h, |x, y| {
            (1.4 - objects(x, y)) * 0.2 * vignette(x, y, w, h)
        });
        let flat = Flattened::new(&seen, 40).to_plane();
        let level = Flattened::new(&seen, 40).illumination().level();
        let (inside, outside) = worst(&flat, |x, y| (1.4 - objects(x, y)) / 0.4 * level);
        assert!(
            inside < 0.04 && outside < 0.09,
            "worst {inside} inside, {outside} outside"
        );
    }

    #[test]
    fn small_and_black_frames_stay_finite() {
        let one = plane(5, 3, |x, _| x as f32 / 4.0);
        let flat = Flattened::new(&one, 40).to_plane();
        assert_eq!(flat, one, "one square: one illumination, its median");
        let black = plane(50, 50, |_, _| 0.0);
        assert!(Flattened::new(&black, 8)
            .to_plane()
            .data()
            .iter()
            .all(|&v| v == 0.0));
        // A black corner square is floored, not divided by zero.
        let corner = plane(64, 64, |x, y| if x < 16 && y < 16 { 0.0 } else { 0.8 });
        let flat = Flattened::new(&corner, 16).to_plane();
        assert!(flat
            .data()
            .iter()
            .all(|v| v.is_finite() && *v <= 0.8 * 20.0));
        let empty = plane(0, 0, |_, _| 0.0);
        assert_eq!(Flattened::new(&empty, 8).to_plane().data().len(), 0);
    }

    #[test]
    fn squares_are_sized_from_microns() {
        assert_eq!(block_px(320.0, 4.0), 80);
        assert_eq!(block_px(10.0, 4.0), 8);
        assert_eq!(block_px(1e6, 0.1), 8192);
    }
}
