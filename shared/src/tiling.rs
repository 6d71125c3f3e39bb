//! Frames larger than a model's input are cut into overlapping tiles; each
//! pixel is decided by the one tile where it is furthest from an edge (the
//! U-Net paper's overlap-tile strategy). The one tiling both the trainer's
//! export scoring and the unit run, so a manifest's scores are the unit's.

use std::ops::Range;

use crate::imageio::{Luma, Standardiser};
use crate::{BitMask, Error};

/// Tile origins along one axis: one tile (edge-padded) when `len ≤ tile`,
/// else tiles `overlap` apart from their neighbours, the last flush with
/// the end.
pub fn tile_starts(len: usize, tile: usize, overlap: usize) -> Vec<usize> {
    if len <= tile {
        return vec![0];
    }
    let step = tile.saturating_sub(overlap).max(1);
    let mut s: Vec<usize> = (0..)
        .map(|i| i * step)
        .take_while(|&p| p + tile < len)
        .collect();
    s.push(len - tile);
    s
}

/// Which pixels along an axis each tile decides: the middle of each
/// overlap splits it between its two tiles, so every pixel is decided
/// once, by the tile where it is furthest from an edge.
pub fn owned(starts: &[usize], tile: usize, len: usize) -> Vec<Range<usize>> {
    let mid = |i: usize| (starts[i + 1] + starts[i] + tile) / 2;
    (0..starts.len())
        .map(|i| {
            let lo = if i == 0 { 0 } else { mid(i - 1) };
            let hi = if i + 1 == starts.len() {
                len.min(starts[i] + tile)
            } else {
                mid(i)
            };
            lo..hi
        })
        .collect()
}

/// The `th×tw` window of the `[c, h, w]` `image` at `(y0, x0)` into `out`
/// (`[c, th, tw]`), repeating edge pixels where the window passes the
/// image's end: frames smaller than the model input and the last tiles of
/// a frame are padded the same way.
pub fn edge_window(
    image: &[f32],
    [c, h, w]: [usize; 3],
    (y0, x0): (usize, usize),
    (th, tw): (usize, usize),
    out: &mut [f32],
) {
    debug_assert_eq!(image.len(), c * h * w);
    debug_assert_eq!(out.len(), c * th * tw);
    for ch in 0..c {
        for ty in 0..th {
            let sy = (y0 + ty).min(h - 1);
            let row = &image[(ch * h + sy) * w..(ch * h + sy + 1) * w];
            for (tx, o) in out[(ch * th + ty) * tw..(ch * th + ty + 1) * tw]
                .iter_mut()
                .enumerate()
            {
                *o = row[(x0 + tx).min(w - 1)];
            }
        }
    }
}

/// How a gray frame is cut and what the model's answers become.
#[derive(Debug, Clone, PartialEq)]
pub struct TilePlan {
    /// The model's tile, `[H, W]`.
    pub tile: [usize; 2],
    /// Overlap between neighbouring tiles, in pixels.
    pub overlap: usize,
    /// Per-image standardisation: `(v − mean) / std` (a constant frame,
    /// `std` 0, standardises to zeros as `imageio::standardise` does).
    pub mean: f64,
    pub std: f64,
    /// Sets of per-class levels: class k's map at or above `levels[l][k]`
    /// is set in mask `l · classes + k`. The first set is usually the
    /// foreground; a second one the confident core of each object, which
    /// the object verifier weighs (`nemascope_core::verify`); more sets
    /// give the masks at several thresholds from one pass of the model.
    pub levels: Vec<Vec<f32>>,
    /// Tiles of a row run this many at a time, one thread each (0 and 1:
    /// one at a time on the caller's thread). Memory grows by one tile's
    /// input, maps and model working memory per thread.
    pub threads: usize,
}

/// One bit mask per class of `frame` and set of `plan.levels`: each tile
/// standardised, passed to
/// `run` (`[th·tw]` in, `[classes·th·tw]` maps out) and thresholded over
/// the pixels it owns. `run`'s own error type passes through. With
/// `plan.threads` above one, that many tiles of a row run at once; the
/// masks are the same bits whatever the number of threads.
///
/// Memory is one band of tile rows, a tile and its maps per thread and a
/// bit per pixel and class: no full-size float copy or map.
pub fn threshold_tiles<L, E, F>(
    frame: &L,
    plan: &TilePlan,
    classes: usize,
    run: F,
) -> std::result::Result<Vec<BitMask>, E>
where
    L: Luma + ?Sized,
    E: From<Error> + Send,
    F: Fn(&[f32]) -> std::result::Result<Vec<f32>, E> + Sync,
{
    let (w, h) = (frame.width(), frame.height());
    let [th, tw] = plan.tile;
    if w == 0 || h == 0 || th == 0 || tw == 0 {
        return Err(E::from(Error::Invalid(format!(
            "cannot tile a {w}x{h} frame with {tw}x{th} tiles"
        ))));
    }
    let standardiser = Standardiser::new(plan.mean, plan.std);
    let (ys, xs) = (
        tile_starts(h, th, plan.overlap),
        tile_starts(w, tw, plan.overlap),
    );
    let (own_y, own_x) = (owned(&ys, th, h), owned(&xs, tw, w));
    if let Some(l) = plan.levels.iter().find(|l| l.len() != classes) {
        return Err(E::from(Error::Invalid(format!(
            "{} levels for {classes} classes",
            l.len()
        ))));
    }
    let mut masks = vec![BitMask::new(w, h); classes * plan.levels.len()];
    let mut band = vec![0f32; th * w];
    let threads = plan.threads.clamp(1, xs.len());
    let mut tiles = vec![vec![0f32; th * tw]; threads];
    let tiled: Vec<(usize, &Range<usize>)> = xs.iter().copied().zip(&own_x).collect();
    for (&y0, oy) in ys.iter().zip(&own_y) {
        // The band of rows under this row of tiles, standardised; rows
        // past the end repeat the last one.
        for (ty, row) in band.chunks_exact_mut(w).enumerate() {
            frame.row_into((y0 + ty).min(h - 1), row);
            for v in row.iter_mut() {
                *v = standardiser.apply(*v);
            }
        }
        for group in tiled.chunks(threads) {
            for ((x0, _), tile) in group.iter().zip(tiles.iter_mut()) {
                edge_window(&band, [1, th, w], (0, *x0), (th, tw), tile);
            }
            let maps: Vec<std::result::Result<Vec<f32>, E>> = if group.len() == 1 {
                vec![run(&tiles[0])]
            } else {
                let run = &run;
                // The first tile runs here, the others on threads of their own.
                std::thread::scope(|s| {
                    let running: Vec<_> = tiles[1..group.len()]
                        .iter()
                        .map(|t| s.spawn(move || run(t)))
                        .collect();
                    let first = run(&tiles[0]);
                    std::iter::once(first)
                        .chain(
                            running
                                .into_iter()
                                .map(|r| r.join().unwrap_or_else(|p| std::panic::resume_unwind(p))),
                        )
                        .collect()
                })
            };
            for ((x0, ox), maps) in group.iter().zip(maps) {
                let maps = maps?;
                if maps.len() != classes * th * tw {
                    return Err(E::from(Error::Invalid(format!(
                        "model: {} output values for {classes} classes of {tw}x{th}",
                        maps.len()
                    ))));
                }
                for (j, mask) in masks.iter_mut().enumerate() {
                    let (k, level) = (j % classes, plan.levels[j / classes][j % classes]);
                    let map = &maps[k * th * tw..(k + 1) * th * tw];
                    for y in oy.clone() {
                        let r = &map[(y - y0) * tw..];
                        for x in (*ox).clone() {
                            if r[x - x0] >= level {
                                mask.set(x, y, true);
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(masks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Plane;

    #[test]
    fn starts_cover_the_axis_and_end_flush() {
        assert_eq!(tile_starts(10, 16, 4), vec![0]);
        assert_eq!(tile_starts(16, 16, 4), vec![0]);
        assert_eq!(tile_starts(40, 16, 4), vec![0, 12, 24]);
        assert_eq!(tile_starts(30, 16, 4), vec![0, 12, 14]);
        for len in 17..200 {
            let s = tile_starts(len, 16, 4);
            assert_eq!(*s.last().unwrap(), len - 16);
            for p in s.windows(2) {
                assert!(p[1] > p[0] && p[1] - p[0] <= 12, "{len}: {s:?}");
            }
        }
    }

    #[test]
    fn every_pixel_is_owned_by_exactly_one_tile() {
        for (len, tile, overlap) in [
            (100, 100, 32),
            (60, 100, 32),
            (1000, 256, 32),
            (4112, 512, 32),
            (300, 128, 0),
        ] {
            let starts = tile_starts(len, tile, overlap);
            let own = owned(&starts, tile, len);
            let mut next = 0;
            for (r, &s) in own.iter().zip(&starts) {
                assert_eq!(r.start, next, "contiguous");
                assert!(r.start >= s && r.end <= s + tile, "inside its tile");
                next = r.end;
            }
            assert_eq!(next, len, "the whole axis");
        }
    }

    #[test]
    fn edge_window_repeats_the_last_row_and_column() {
        let img: Vec<f32> = (0..6).map(|v| v as f32).collect(); // 3 wide, 2 high
        let mut out = vec![0f32; 4 * 4];
        edge_window(&img, [1, 2, 3], (0, 1), (4, 4), &mut out);
        assert_eq!(
            out,
            [1., 2., 2., 2., 4., 5., 5., 5., 4., 5., 5., 5., 4., 5., 5., 5.]
        );
    }

    /// A pointwise "model" (map = standardised value) tiled over a frame
    /// gives the same masks as thresholding the whole standardised frame:
    /// tiling, padding and ownership lose and repeat nothing.
    #[test]
    fn a_pointwise_model_tiles_to_the_whole_frame_answer() {
        for (w, h, tile) in [(37, 23, [8, 16]), (5, 3, [8, 8]), (64, 48, [16, 16])] {
            let p = Plane::from_fn(w, h, |x, y| ((x * 7 + y * 13) % 11) as f32 / 11.0);
            let mut s = p.clone();
            crate::imageio::standardise(&mut s);
            let m = crate::imageio::moments(&p, |_| f32::INFINITY);
            let (mean, std) = (m.mean, m.std);
            let plan = TilePlan {
                tile,
                overlap: 4,
                mean,
                std,
                levels: vec![vec![0.1, 0.1]],
                threads: 1,
            };
            let pointwise = |t: &[f32]| Ok::<_, Error>(t.iter().chain(t).copied().collect());
            let m = threshold_tiles(&p, &plan, 2, pointwise).unwrap();
            let want = s.threshold(0.1);
            assert_eq!(m.len(), 2);
            assert_eq!(m[0].to_mask(), want, "{w}x{h}");
            assert_eq!(m[1].to_mask(), want);
            // A second set of levels follows at `classes + k`, each class
            // at its own level.
            let cored = TilePlan {
                levels: vec![vec![0.1, 0.1], vec![0.6, 0.3]],
                ..plan.clone()
            };
            let mc = threshold_tiles(&p, &cored, 2, pointwise).unwrap();
            assert_eq!(mc.len(), 4);
            assert_eq!(mc[..2], m[..]);
            assert_eq!(mc[2].to_mask(), s.threshold(0.6));
            assert_eq!(mc[3].to_mask(), s.threshold(0.3));
            assert_ne!(mc[2].to_mask(), want);
            assert_ne!(mc[2], mc[3]);
            // Tiles run in parallel give the same bits.
            for threads in [2, 3, 16] {
                let par = TilePlan {
                    threads,
                    ..plan.clone()
                };
                assert_eq!(threshold_tiles(&p, &par, 2, pointwise).unwrap(), m);
            }
        }
    }

    #[test]
    fn a_model_giving_the_wrong_number_of_values_is_an_error() {
        let p = Plane::filled(8, 8, 0.5);
        let plan = TilePlan {
            tile: [8, 8],
            overlap: 0,
            mean: 0.5,
            std: 0.0,
            levels: vec![vec![0.5; 3]],
            threads: 1,
        };
        let e = threshold_tiles(&p, &plan, 3, |t| Ok::<_, Error>(t.to_vec())).unwrap_err();
        assert!(e.to_string().contains("3 classes"), "{e}");
        let short = TilePlan {
            levels: vec![vec![0.5; 2]],
            ..plan
        };
        let e = threshold_tiles(&p, &short, 3, |t| Ok::<_, Error>(t.repeat(3))).unwrap_err();
        assert!(e.to_string().contains("2 levels for 3 classes"), "{e}");
    }
}
