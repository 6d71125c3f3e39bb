//! Image-level labelled tiles cut from images with masks.
//!
//! Each tile gets one present/absent bit per class and nothing else from the
//! masks: present when the tile holds at least `min_pixels` foreground
//! pixels of that class, absent when it holds none. A tile with a sliver of
//! an object (between 1 and `min_pixels − 1` pixels) would be a noisy label
//! either way, so it is skipped. Tiles with no object of any class are the
//! negatives that BBBC010 (worms in every well) lacks.

use std::path::Path;

use super::{generic, Dataset, Sample};
use crate::imageio::{load_frame, load_mask, save_gray, LoadLimits};
use crate::{Error, Mask, Result};

/// How tiles are cut and labelled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TileSpec {
    pub size: usize,
    pub stride: usize,
    /// Foreground pixels needed for "present".
    pub min_pixels: usize,
}

impl Default for TileSpec {
    fn default() -> Self {
        TileSpec {
            size: 128,
            stride: 96,
            min_pixels: 60,
        }
    }
}

/// A tile position and its image-level labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tile {
    pub x: usize,
    pub y: usize,
    pub present: Vec<bool>,
}

/// Tile origins along one axis: every `stride`, plus one flush with the end.
pub fn origins(len: usize, size: usize, stride: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (0..=len - size).step_by(stride).collect();
    if *v.last().expect("len ≥ size") != len - size {
        v.push(len - size);
    }
    v
}

/// Labels every tile of an image from its per-class masks.
pub fn tile_labels(
    masks: &[Mask],
    width: usize,
    height: usize,
    spec: TileSpec,
) -> Result<Vec<Tile>> {
    if spec.size == 0 || spec.stride == 0 || spec.min_pixels == 0 {
        return Err(Error::Invalid(
            "tile size, stride and min_pixels must be > 0".into(),
        ));
    }
    if width < spec.size || height < spec.size {
        return Err(Error::Invalid(format!(
            "image {width}x{height} is smaller than a {} px tile",
            spec.size
        )));
    }
    for m in masks {
        if m.width() != width || m.height() != height {
            return Err(Error::Invalid(format!(
                "mask {}x{} does not match image {width}x{height}",
                m.width(),
                m.height()
            )));
        }
    }
    let mut tiles = Vec::new();
    for y in origins(height, spec.size, spec.stride) {
        'tile: for x in origins(width, spec.size, spec.stride) {
            let mut present = Vec::with_capacity(masks.len());
            for m in masks {
                // One cell over the whole tile; a sliver (None) skips it.
                match cell_labels(m, x, y, spec.size, spec.size, spec.min_pixels)?[0] {
                    Some(p) => present.push(p),
                    None => continue 'tile,
                }
            }
            tiles.push(Tile { x, y, present });
        }
    }
    Ok(tiles)
}

/// One class's labels over the square cells of a region: the region
/// (`x`, `y`, `size`×`size`) is cut into `cell`×`cell` cells (`cell`
/// divides `size`), row-major, and each cell is labelled as a person
/// labelling that grid would: present with ≥ `min_pixels` pixels of the
/// class, absent with none, and `None` (no label) for a sliver in between.
///
/// Why per class: an egg is 1.8 % of a 96-px tile while a cyst is larger
/// than one, so each class is labelled (and pooled) at a cell fitting its
/// size, and a sliver of one class leaves the other classes' labels alone.
pub fn cell_labels(
    mask: &Mask,
    x: usize,
    y: usize,
    size: usize,
    cell: usize,
    min_pixels: usize,
) -> Result<Vec<Option<bool>>> {
    if cell == 0 || size % cell != 0 || min_pixels == 0 {
        return Err(Error::Invalid(format!(
            "cell {cell} must divide the region side {size}, and min_pixels ({min_pixels}) be > 0"
        )));
    }
    if x + size > mask.width() || y + size > mask.height() {
        return Err(Error::Invalid(format!(
            "region {size} px at ({x}, {y}) leaves the {}x{} mask",
            mask.width(),
            mask.height()
        )));
    }
    let n = size / cell;
    let mut out = Vec::with_capacity(n * n);
    for cy in 0..n {
        for cx in 0..n {
            let (x0, y0) = (x + cx * cell, y + cy * cell);
            let k: usize = (y0..y0 + cell)
                .map(|yy| mask.row(yy)[x0..x0 + cell].iter().filter(|&&v| v).count())
                .sum();
            out.push(match k {
                0 => Some(false),
                k if k >= min_pixels => Some(true),
                _ => None,
            });
        }
    }
    Ok(out)
}

/// Counts of what [`write_tiles`] wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TileSummary {
    pub images: usize,
    pub tiles: usize,
    pub negatives: usize,
    pub skipped_ambiguous: usize,
}

/// Cuts every sample of `ds` (all classes need masks, or an absent label,
/// which means an empty mask) into tiles written as PNGs (16-bit where the
/// source was) under
/// `out/tiles/`, with `out/labels.csv` holding image-level labels only.
pub fn write_tiles(ds: &Dataset, spec: TileSpec, out: &Path) -> Result<TileSummary> {
    let tile_dir = out.join("tiles");
    std::fs::create_dir_all(&tile_dir).map_err(|e| Error::io(&tile_dir, e))?;
    let mut summary = TileSummary::default();
    let mut samples = Vec::new();
    for s in &ds.samples {
        let frame = load_frame(&s.image, LoadLimits::default())?;
        let plane = frame.plane;
        let (w, h) = (plane.width(), plane.height());
        let mut masks = Vec::with_capacity(ds.classes.len());
        for (c, m) in s.masks.iter().enumerate() {
            masks.push(match (m, s.present[c]) {
                (Some(p), _) => load_mask(p)?,
                (None, false) => Mask::filled(w, h, false),
                (None, true) => {
                    return Err(Error::Invalid(format!(
                        "{}: class `{}` is present but has no mask to tile from",
                        s.image.display(),
                        ds.classes[c]
                    )))
                }
            });
        }
        let tiles = tile_labels(&masks, w, h, spec)?;
        let total =
            origins(h, spec.size, spec.stride).len() * origins(w, spec.size, spec.stride).len();
        summary.skipped_ambiguous += total - tiles.len();
        summary.images += 1;
        for t in tiles {
            let name = format!("{}_x{:04}_y{:04}.png", s.id, t.x, t.y);
            let path = tile_dir.join(&name);
            save_gray(
                &plane.crop(t.x, t.y, spec.size, spec.size),
                frame.bit_depth,
                &path,
            )?;
            summary.tiles += 1;
            summary.negatives += t.present.iter().all(|&p| !p) as usize;
            samples.push(Sample {
                id: name.trim_end_matches(".png").to_string(),
                image: path,
                masks: vec![None; t.present.len()],
                counts: vec![None; t.present.len()],
                present: t.present,
            });
        }
    }
    generic::write(
        out,
        &Dataset {
            classes: ds.classes.clone(),
            samples,
        },
    )?;
    Ok(summary)
}

/// The source image of a tile named as the tilers name them
/// (`<image>_x0032_y0000`, with or without a folder and `.png`), or `None`
/// for any other name: how a lab's per-tile results group by image.
pub fn source_image(tile: &str) -> Option<&str> {
    tile_origin(tile).map(|(image, _, _)| image)
}

/// The source image and the tile's origin in it, for a tile named as the
/// tilers name them (see [`source_image`]); `None` for any other name.
pub fn tile_origin(tile: &str) -> Option<(&str, usize, usize)> {
    let name = tile.rsplit(['/', '\\']).next()?;
    let name = name.strip_suffix(".png").unwrap_or(name);
    let (rest, y) = name.rsplit_once("_y")?;
    let (image, x) = rest.rsplit_once("_x")?;
    let number = |s: &str| {
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            s.parse().ok()
        } else {
            None
        }
    };
    if image.is_empty() {
        return None;
    }
    Some((image, number(x)?, number(y)?))
}

/// A tile of a finer labelling of the same image: origin, side and one
/// label per class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FineTile {
    pub x: usize,
    pub y: usize,
    pub size: usize,
    pub present: Vec<bool>,
}

/// Per class, the labels of the 2×2 cells (row-major) of the `size`-px
/// tile at `(x, y)` labelled `present`, from `fine`, the same image's
/// tiles labelled on a grid of half the side. The page cuts its last row
/// and column flush with the image, so there the two grids do not line
/// up. A cell is
/// - present where the fine tile that is exactly the cell is present;
/// - absent where the tile is absent (so is every part of it), or where
///   the fine tiles overlapping the cell cover it and are all absent;
/// - unknown otherwise.
///
/// The two labellings can disagree (a person looked twice). Then what is
/// sure is kept: a cell labelled present inside a tile labelled absent is
/// unknown, and a present tile with no present cell (an object straddling
/// cells, or a miss) leaves all its cells unknown, since which holds the
/// object is not known.
pub fn cells_from_finer(
    x: usize,
    y: usize,
    size: usize,
    present: &[bool],
    fine: &[FineTile],
) -> Vec<Vec<Option<bool>>> {
    let half = size / 2;
    // Which fine tiles overlap each cell, and whether they cover it, do
    // not depend on the class: found once per cell, the (pixel by pixel)
    // cover only where a label needs it.
    struct Cell<'a> {
        x: usize,
        y: usize,
        over: Vec<&'a FineTile>,
        exact: Option<&'a FineTile>,
        covered: std::cell::OnceCell<bool>,
    }
    let cells: Vec<Cell> = [(0, 0), (half, 0), (0, half), (half, half)]
        .iter()
        .map(|&(dx, dy)| {
            let (cx, cy) = (x + dx, y + dy);
            let over: Vec<&FineTile> = fine
                .iter()
                .filter(|f| {
                    f.x < cx + half && cx < f.x + f.size && f.y < cy + half && cy < f.y + f.size
                })
                .collect();
            let exact = over
                .iter()
                .copied()
                .find(|f| (f.x, f.y, f.size) == (cx, cy, half));
            Cell {
                x: cx,
                y: cy,
                over,
                exact,
                covered: Default::default(),
            }
        })
        .collect();
    present
        .iter()
        .enumerate()
        .map(|(c, &tile)| {
            // A fine tile without a label for class `c` says nothing of it.
            let says = |f: &FineTile| f.present.get(c).copied();
            let labels: Vec<Option<bool>> = cells
                .iter()
                .map(|cell| match (tile, cell.exact.and_then(says)) {
                    (false, Some(true)) => None,
                    (false, _) => Some(false),
                    (true, Some(p)) => Some(p),
                    (true, None) => {
                        let absent = cell.over.iter().all(|f| says(f) == Some(false));
                        let covered = &cell.covered;
                        (absent
                            && *covered.get_or_init(|| covers(&cell.over, cell.x, cell.y, half)))
                        .then_some(false)
                    }
                })
                .collect();
            if tile && !labels.contains(&Some(true)) {
                vec![None; cells.len()]
            } else {
                labels
            }
        })
        .collect()
}

/// Whether `tiles` together cover the `side`-px square at `(x, y)`.
fn covers(tiles: &[&FineTile], x: usize, y: usize, side: usize) -> bool {
    (y..y + side).all(|py| {
        (x..x + side).all(|px| {
            tiles
                .iter()
                .any(|f| (f.x..f.x + f.size).contains(&px) && (f.y..f.y + f.size).contains(&py))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_present_absent_and_skips_slivers() {
        // 8x4 image, tiles of 4 with stride 4: two tiles. A 3-pixel object in
        // the left tile, a 1-pixel sliver in the right one.
        let mut m = Mask::filled(8, 4, false);
        for x in 0..3 {
            m.set(x, 1, true);
        }
        let spec = TileSpec {
            size: 4,
            stride: 4,
            min_pixels: 2,
        };
        let t = tile_labels(std::slice::from_ref(&m), 8, 4, spec).unwrap();
        assert_eq!(
            t,
            vec![
                Tile {
                    x: 0,
                    y: 0,
                    present: vec![true]
                },
                Tile {
                    x: 4,
                    y: 0,
                    present: vec![false]
                }
            ]
        );
        m.set(5, 2, true);
        let t = tile_labels(&[m], 8, 4, spec).unwrap();
        assert_eq!(t.len(), 1, "the sliver tile is skipped");
    }

    #[test]
    fn cells_label_each_class_at_its_own_grid_and_leave_slivers_unlabelled() {
        // A 3-px sliver at x = 28..31 (cell 0) and a 10×10 block in cell 3.
        let m = Mask::from_fn(64, 64, |x, y| {
            ((28..31).contains(&x) && y < 1) || ((40..50).contains(&x) && (40..50).contains(&y))
        });
        assert_eq!(
            cell_labels(&m, 0, 0, 64, 32, 5).unwrap(),
            vec![None, Some(false), Some(false), Some(true)]
        );
        // One cell over the whole region: present (103 px).
        assert_eq!(cell_labels(&m, 0, 0, 64, 64, 5).unwrap(), vec![Some(true)]);
        // A region away from both: all absent.
        assert_eq!(
            cell_labels(&m, 0, 16, 16, 8, 5).unwrap(),
            vec![Some(false); 4]
        );
        assert!(cell_labels(&m, 0, 0, 64, 24, 5).is_err());
        assert!(cell_labels(&m, 8, 0, 64, 32, 5).is_err());
    }

    #[test]
    fn origins_cover_the_image() {
        assert_eq!(origins(10, 4, 3), vec![0, 3, 6]);
        assert_eq!(origins(11, 4, 3), vec![0, 3, 6, 7]);
        assert_eq!(origins(4, 4, 3), vec![0]);
        assert!(tile_labels(&[], 3, 3, TileSpec::default()).is_err());
    }

    #[test]
    fn tiles_group_by_their_source_image() {
        assert_eq!(
            super::source_image("tiles/mi_13.tif_x0256_y0000.png"),
            Some("mi_13.tif")
        );
        assert_eq!(super::source_image("a_x1_b_x0032_y0128"), Some("a_x1_b"));
        assert_eq!(super::source_image("plain.png"), None);
        assert_eq!(super::source_image("f_x12_yab.png"), None);
        assert_eq!(
            super::tile_origin("tiles/mi_13.tif_x0256_y1040.png"),
            Some(("mi_13.tif", 256, 1040))
        );
        assert_eq!(super::tile_origin("f_x_y0000"), None);
    }

    fn fine(x: usize, y: usize, present: bool) -> FineTile {
        FineTile {
            x,
            y,
            size: 4,
            present: vec![present],
        }
    }

    #[test]
    fn cells_come_from_the_finer_tiles_and_keep_what_is_sure() {
        // A 12x10 image: 8-px tiles at x 0, 4 (flush) and y 0, 2 (flush);
        // 4-px tiles at x 0, 4, 8 and y 0, 4, 6 (flush).
        let grid = |present: &[(usize, usize)]| -> Vec<FineTile> {
            let mut v = Vec::new();
            for y in [0, 4, 6] {
                for x in [0, 4, 8] {
                    v.push(fine(x, y, present.contains(&(x, y))));
                }
            }
            v
        };
        let f = grid(&[(4, 0)]);
        // Aligned: each cell is its fine tile.
        assert_eq!(
            cells_from_finer(0, 0, 8, &[true], &f),
            vec![vec![Some(false), Some(true), Some(false), Some(false)]]
        );
        // An absent tile: every cell absent.
        assert_eq!(
            cells_from_finer(0, 0, 8, &[false], &grid(&[])),
            vec![vec![Some(false); 4]]
        );
        // The flush row (y 2): its top cells (y 2..6) match no fine tile but
        // are covered by absent ones; the bottom cells are the flush tiles.
        let f = grid(&[(4, 6)]);
        assert_eq!(
            cells_from_finer(0, 2, 8, &[true], &f),
            vec![vec![Some(false), Some(false), Some(false), Some(true)]]
        );
        // A present fine tile overlapping a cell it is not: that cell unknown.
        let f = grid(&[(4, 4), (4, 6)]);
        assert_eq!(
            cells_from_finer(0, 2, 8, &[true], &f),
            vec![vec![Some(false), None, Some(false), Some(true)]]
        );
        // Not covered (a fine tile missing): unknown, not absent.
        let mut f = grid(&[(4, 6)]);
        f.retain(|t| (t.x, t.y) != (0, 4));
        assert_eq!(cells_from_finer(0, 2, 8, &[true], &f)[0][0], None);
        // Disagreements: a present cell in an absent tile is unknown; a
        // present tile with no present cell leaves every cell unknown.
        assert_eq!(
            cells_from_finer(0, 0, 8, &[false], &grid(&[(4, 0)])),
            vec![vec![Some(false), None, Some(false), Some(false)]]
        );
        assert_eq!(
            cells_from_finer(0, 0, 8, &[true], &grid(&[])),
            vec![vec![None; 4]]
        );
        // Each class on its own.
        let two = vec![FineTile {
            x: 0,
            y: 0,
            size: 4,
            present: vec![true, false],
        }];
        let mut f2: Vec<FineTile> = grid(&[])
            .into_iter()
            .map(|t| FineTile {
                present: vec![false, false],
                ..t
            })
            .filter(|t| (t.x, t.y) != (0, 0))
            .collect();
        f2.extend(two);
        assert_eq!(
            cells_from_finer(0, 0, 8, &[true, false], &f2),
            vec![
                vec![Some(true), Some(false), Some(false), Some(false)],
                vec![Some(false); 4]
            ]
        );
        // A fine tile with no label for a class says nothing of it: its
        // cell is unknown, not absent.
        let mut f = grid(&[(4, 0)]);
        f.iter_mut()
            .filter(|t| (t.x, t.y) == (0, 0))
            .for_each(|t| t.present.clear());
        assert_eq!(
            cells_from_finer(0, 0, 8, &[true], &f),
            vec![vec![None, Some(true), Some(false), Some(false)]]
        );
    }
}
