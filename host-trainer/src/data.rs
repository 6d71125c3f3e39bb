//! Images in memory at the working size, the split by image (well), and the
//! random augmented crops every training step draws.
//!
//! Inputs are standardised over the whole image before cropping, so a crop
//! holds the same values it will have when the network later sees the whole
//! frame (standardising each crop on its own would not).

use std::collections::HashMap;
use std::path::Path;

use nemascope_core::dataset::{bbbc010, generic, split_indices, tiles, Sample};
use nemascope_core::flatfield::{self, Flattened};
use nemascope_core::imageio::{
    bin_mask, bin_plane, load_frame, load_mask, resample, resize_bilinear, resize_nearest,
    standardise, stretched, LoadLimits, Luma,
};
use nemascope_core::synth::{self, SynthConfig};
use nemascope_core::{Class, Error, Grid, Mask, Plane, Result};
use rand::Rng;
use tch::Tensor;

use crate::config::{AugmentConfig, BadRows, ClassSettings, Config, DataConfig, DataKind};

/// One image at the working size.
#[derive(Debug, Clone)]
pub struct Item {
    pub id: String,
    /// Standardised intensities (the network input).
    pub input: Plane,
    /// 0.5–99.5 % stretch, for superpixels and overlays.
    pub stretched: Plane,
    /// Image-level labels, one per class.
    pub present: Vec<bool>,
    /// True masks at the working size, where the dataset has them.
    pub truth: Option<Vec<Mask>>,
    /// True masks at the file's own size, for scoring.
    pub native: Option<Vec<Mask>>,
    pub native_size: (usize, usize),
    /// The file's intensities (0..1) at its own size, for the classical
    /// baseline.
    pub raw: Plane,
    pub counts: Vec<Option<usize>>,
    /// Per class, the labels of the item's 2×2 cells, where a finer
    /// labelling gives them (`data.cells`).
    pub cells: Option<Labels>,
}

/// The loaded set and its split.
#[derive(Debug)]
pub struct Data {
    pub classes: Vec<String>,
    pub items: Vec<Item>,
    pub train: Vec<usize>,
    pub val: Vec<usize>,
    /// Rows left out (`data.bad_rows = "skip"`), each with where and why.
    pub skipped: Vec<String>,
    /// Items a review marked (`data.reviewed`), in `items` order.
    pub reviewed: Vec<usize>,
}

impl Data {
    /// The training images' pixel size after resizing to the working
    /// width, in µm: `um_per_px` is at the files' own size (median width).
    pub fn working_um_per_px(&self, um_per_px: f32, width: usize) -> f32 {
        match self.median_native_width() {
            Some(w) if width > 0 => um_per_px * w as f32 / width as f32,
            _ => um_per_px,
        }
    }

    /// The training images' median width at their own size.
    pub fn median_native_width(&self) -> Option<usize> {
        let mut widths: Vec<usize> = self
            .train
            .iter()
            .map(|&i| self.items[i].native_size.0)
            .collect();
        widths.sort_unstable();
        widths.get(widths.len() / 2).copied()
    }
}

/// How a file's plane becomes the network's input: the working size, and
/// the flat-field correction if the run asks for one (`data.flat_field_um`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Working {
    pub width: usize,
    pub height: usize,
    /// The plane's pixel size as loaded (µm), which sizes the squares.
    pub um_per_px: f32,
    /// Side of the flat-field squares in µm (0: none).
    pub flat_field_um: f32,
}

impl Working {
    /// The working size alone, without flat-field correction.
    pub fn plain(width: usize, height: usize) -> Working {
        Working {
            width,
            height,
            um_per_px: 1.0,
            flat_field_um: 0.0,
        }
    }

    /// The flat-field squares' side in working pixels for a plane `native`
    /// pixels wide, if correction is on: the bundle records the same for
    /// the training images' median width (`export`).
    pub fn flat_field_px(&self, native: usize) -> Option<usize> {
        (self.flat_field_um > 0.0 && self.width > 0).then(|| {
            let um = self.um_per_px * native as f32 / self.width as f32;
            flatfield::block_px(self.flat_field_um, um)
        })
    }
}

/// Turns a decoded plane (0..1) into an item.
pub fn item_from_plane(
    id: String,
    plane: &Plane,
    present: Vec<bool>,
    native: Option<Vec<Mask>>,
    counts: Vec<Option<usize>>,
    at: &Working,
) -> Result<Item> {
    let (width, height) = (at.width, at.height);
    let mut work = if plane.width() == width && plane.height() == height {
        plane.clone()
    } else {
        resample(plane, width, height)?
    };
    if let Some(block) = at.flat_field_px(plane.width()) {
        work = Flattened::new(&work, block).to_plane();
    }
    let stretched = stretched(&work);
    let mut input = work;
    standardise(&mut input);
    let truth = match &native {
        Some(ms) => Some(
            ms.iter()
                .map(|m| {
                    plane.check_same_size(m, &format!("mask of {id}"))?;
                    resize_nearest(m, width, height)
                })
                .collect::<Result<Vec<_>>>()?,
        ),
        None => None,
    };
    Ok(Item {
        id,
        input,
        stretched,
        present,
        truth,
        native,
        native_size: (plane.width(), plane.height()),
        raw: plane.clone(),
        counts,
        cells: None,
    })
}

/// Loads the configured data set and splits it by image.
///
/// Rows whose image, mask or labels cannot be used are handled as
/// `data.bad_rows` says. The split is drawn over every row of the table,
/// bad ones included, so skipping a row never moves another image between
/// training and validation.
pub fn load(cfg: &Config) -> Result<Data> {
    let d = &cfg.data;
    let (classes, rows) = match d.kind {
        DataKind::Synth => {
            let (classes, items) = synth_items(cfg)?;
            (classes, items.into_iter().map(Ok).collect())
        }
        DataKind::Bbbc010 => {
            let root = if d.root.as_os_str().is_empty() {
                bbbc010::default_root()
            } else {
                d.root.clone()
            };
            let ds = bbbc010::to_dataset(&bbbc010::open(&root)?);
            let rows = ds
                .samples
                .iter()
                .map(|s| sample_item(s, ds.classes.len(), d))
                .collect();
            (ds.classes, rows)
        }
        DataKind::Generic => {
            let table = generic::read_rows(&d.root)?;
            let n = table.classes.len();
            let rows = table
                .rows
                .into_iter()
                .map(|r| {
                    r.sample
                        .and_then(|s| sample_item(&s, n, d))
                        .map_err(|e| match e {
                            // Already names the table and line.
                            Error::Dataset { .. } => e,
                            e => Error::Dataset {
                                path: table.csv.clone(),
                                line: r.line,
                                reason: e.to_string(),
                            },
                        })
                })
                .collect();
            (table.classes, rows)
        }
    };
    let Sorted {
        mut items,
        index,
        bad: skipped,
    } = sort_rows(rows, d.bad_rows == BadRows::Skip, d.max_bad_fraction)?;
    if !d.cells.as_os_str().is_empty() {
        attach_cells(&mut items, &classes, d)?;
    }
    // Voted masks, overlays and reports are named after the image.
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = items.iter().find(|i| !seen.insert(i.id.as_str())) {
        return Err(Error::Invalid(format!(
            "two images are both named `{}` (without their extension); masks and \
             reports are kept by name, so rename one",
            dup.id
        )));
    }
    if d.crop > 0 && items.iter().any(|i| i.truth.is_none()) {
        return Err(Error::Invalid(
            "data.crop > 0 labels crops from masks, but some images have no masks; \
             set data.crop = 0 to train on whole images with their own labels"
                .into(),
        ));
    }
    let (train_rows, val_rows) = split_indices(index.len(), d.val_fraction, d.seed);
    let (train, val): (Vec<usize>, Vec<usize>) = (
        train_rows.iter().filter_map(|&r| index[r]).collect(),
        val_rows.iter().filter_map(|&r| index[r]).collect(),
    );
    if train.is_empty() || val.is_empty() {
        return Err(Error::Invalid(format!(
            "{} images cannot be split into training and validation",
            items.len()
        )));
    }
    Ok(Data {
        classes,
        train,
        val,
        skipped,
        reviewed: reviewed_items(&d.reviewed, &items)?,
        items,
    })
}

/// Gives every tile its cell labels from the finer labelling in
/// `d.cells` ([`tiles::cells_from_finer`]); both folders name their tiles
/// as the label page does (`<image>_x0000_y0000`), which says where each
/// lies.
fn attach_cells(items: &mut [Item], classes: &[String], d: &DataConfig) -> Result<()> {
    let at = |why: String| Error::Invalid(format!("data.cells ({}): {why}", d.cells.display()));
    if d.kind != DataKind::Generic || d.crop != 0 || d.width != d.height || d.width % 2 != 0 {
        return Err(at(format!(
            "it labels the cells of whole square tiles, so it needs data.kind = \"generic\", \
             data.crop = 0 and an even data.width equal to data.height (here {}, crop {}, {}x{})",
            d.kind.name(),
            d.crop,
            d.width,
            d.height
        )));
    }
    let finer = generic::read(&d.cells).map_err(|e| at(e.to_string()))?;
    if finer.classes != classes {
        return Err(at(format!(
            "its classes ({}) are not the training folder's ({})",
            finer.classes.join(", "),
            classes.join(", ")
        )));
    }
    let named = |id: &str| {
        tiles::tile_origin(id)
            .map(|(image, x, y)| (image.to_string(), x, y))
            .ok_or_else(|| {
                at(format!(
                    "`{id}` is not named as the label page names tiles (<image>_x0000_y0000)"
                ))
            })
    };
    let mut by_image: HashMap<String, Vec<tiles::FineTile>> = HashMap::new();
    let mut side = None;
    for s in &finer.samples {
        let (image, x, y) = named(&s.id)?;
        let (w, h) = image::image_dimensions(&s.image)
            .map_err(|e| at(format!("{}: {e}", s.image.display())))?;
        if w != h || side.is_some_and(|t| t != w) {
            return Err(at(format!(
                "{} is {w}x{h} px; the finer tiles must be square and all one size",
                s.image.display()
            )));
        }
        side = Some(w);
        by_image.entry(image).or_default().push(tiles::FineTile {
            x,
            y,
            size: w as usize,
            present: s.present.clone(),
        });
    }
    let half = side.ok_or_else(|| at("it has no labelled tiles".into()))? as usize;
    let bin = d.bin.max(1);
    // Images with a present tile that the finer labelling has no tile of:
    // their objects would carry no label at all, silently.
    let mut unreached = std::collections::BTreeSet::new();
    for it in items.iter_mut() {
        let (image, x, y) = named(&it.id)?;
        let size = 2 * half;
        if it.native_size != (size / bin, size / bin) {
            return Err(at(format!(
                "{} is not a {size} px tile, twice the finer tiles' {half} px",
                it.id
            )));
        }
        let fine = by_image.get(&image).map_or(&[][..], Vec::as_slice);
        if fine.is_empty() && it.present.contains(&true) {
            unreached.insert(image);
        }
        it.cells = Some(tiles::cells_from_finer(x, y, size, &it.present, fine));
    }
    if !unreached.is_empty() {
        let names: Vec<String> = unreached.into_iter().collect();
        return Err(at(format!(
            "it has no tile of {} image(s) with objects ({}{}), whose objects would then \
             train as unknown; label them at {half} px too (`nemascope-label … --tile {half} \
             --finer-of` the coarse folder asks only inside its present tiles), or train without \
             data.cells",
            names.len(),
            names[..names.len().min(5)].join(", "),
            if names.len() > 5 { ", …" } else { "" }
        )));
    }
    Ok(())
}

/// The items named in the `data.reviewed` file (one image a line, by its
/// file name or path; matched on the name without extension, the item's
/// id); a name that matches no image is an error, not silently dropped.
fn reviewed_items(file: &Path, items: &[Item]) -> Result<Vec<usize>> {
    if file.as_os_str().is_empty() {
        return Ok(Vec::new());
    }
    let text = nemascope_core::files::read_text(file).map_err(|e| Error::io(file, e))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let stem = Path::new(line)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let i = items
            .iter()
            .position(|it| it.id == stem)
            .ok_or_else(|| Error::Dataset {
                path: file.to_path_buf(),
                line: Some(n as u64 + 1),
                reason: format!("`{line}` is none of the training table's images"),
            })?;
        out.push(i);
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// The rows of a table sorted into usable items and bad rows.
struct Sorted {
    items: Vec<Item>,
    /// Each row's index among `items` (None: a bad row).
    index: Vec<Option<usize>>,
    /// Where and why, per bad row.
    bad: Vec<String>,
}

/// `rows` sorted; an error listing every bad row unless they may be
/// skipped and are few enough.
fn sort_rows(rows: Vec<Result<Item>>, skip: bool, max_fraction: f64) -> Result<Sorted> {
    let n = rows.len();
    let (mut items, mut index, mut bad) = (Vec::new(), Vec::with_capacity(n), Vec::new());
    for row in rows {
        match row {
            Ok(item) => {
                index.push(Some(items.len()));
                items.push(item);
            }
            Err(e) => {
                index.push(None);
                bad.push(e.to_string());
            }
        }
    }
    if bad.is_empty() {
        return Ok(Sorted { items, index, bad });
    }
    let list = |bad: &[String]| {
        let mut s: String = bad.iter().take(20).map(|b| format!("\n  {b}")).collect();
        if bad.len() > 20 {
            s += &format!("\n  … and {} more", bad.len() - 20);
        }
        s
    };
    if !skip {
        return Err(Error::Invalid(format!(
            "{} of {n} dataset rows cannot be used (data.bad_rows = \"refuse\"; mend them, \
             or set it to \"skip\" to train without them):{}",
            bad.len(),
            list(&bad)
        )));
    }
    if bad.len() as f64 > max_fraction * n as f64 {
        return Err(Error::Invalid(format!(
            "{} of {n} dataset rows cannot be used, more than data.max_bad_fraction = {} \
             allows; is the data folder the right one, and all of it there?{}",
            bad.len(),
            max_fraction,
            list(&bad)
        )));
    }
    Ok(Sorted { items, index, bad })
}

/// One sample's image and masks read and brought to the working size; a
/// class whose mask is missing counts as an empty mask when the label says
/// absent, and as unknown otherwise.
fn sample_item(s: &Sample, classes: usize, d: &DataConfig) -> Result<Item> {
    let frame = load_frame(&s.image, LoadLimits::default())?;
    let plane = bin_plane(&frame.plane, d.bin)?;
    let mut masks = Vec::with_capacity(classes);
    for (c, m) in s.masks.iter().enumerate() {
        masks.push(match m {
            Some(p) => {
                let m = load_mask(p)?;
                frame
                    .plane
                    .check_same_size(&m, &format!("mask of {}", s.id))?;
                Some(bin_mask(&m, d.bin)?)
            }
            None if !s.present[c] => Some(Mask::filled(plane.width(), plane.height(), false)),
            None => None,
        });
    }
    let native: Option<Vec<Mask>> = masks.into_iter().collect();
    item_from_plane(
        s.id.clone(),
        &plane,
        s.present.clone(),
        native,
        s.counts.clone(),
        &d.working(),
    )
}

/// Frames from the seeded generator, three classes, with exact masks.
fn synth_items(cfg: &Config) -> Result<(Vec<String>, Vec<Item>)> {
    synth_set(
        cfg,
        &cfg.data.synth_preset,
        cfg.data.seed,
        cfg.data.synth_frames,
        "synth",
        false,
    )
}

/// `n` generated frames of a preset and seed at the config's size and
/// pixel size, named `<prefix><index>`.
fn synth_set(
    cfg: &Config,
    preset: &str,
    seed: u64,
    n: usize,
    prefix: &str,
    frozen: bool,
) -> Result<(Vec<String>, Vec<Item>)> {
    let (w, h) = (cfg.data.width, cfg.data.height);
    // The benchmark's frames are frozen at the generator's own size and
    // pixel size; a run working at another size sees them resized.
    let (gw, gh, um) = match frozen {
        true => (512, 384, 4.0),
        false => (w, h, cfg.data.um_per_px),
    };
    let at = Working {
        um_per_px: um,
        ..cfg.data.working()
    };
    let items = (0..n as u64)
        .map(|i| {
            let sc = SynthConfig::preset(preset, i, gw, gh, um)?;
            let f = synth::generate(&sc, seed, i)?;
            let present = f.masks.iter().map(|m| m.count() > 0).collect();
            let counts = f.counts.iter().map(|&c| Some(c)).collect();
            item_from_plane(
                format!("{prefix}{i:04}"),
                &f.image,
                present,
                Some(f.masks),
                counts,
                &at,
            )
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((Class::ALL.iter().map(|c| c.name().into()).collect(), items))
}

/// The run's data with the frozen synthetic benchmark
/// (`synth::BENCHMARK_*`) put in place of its validation images: its
/// training images stay (for fitting counters and tuning the classical
/// floor), and `val` lists the benchmark frames, light and dense
/// alternating. Nothing here trains.
pub fn with_benchmark(cfg: &Config) -> Result<Data> {
    let mut data = load(cfg)?;
    let (classes, bench) = synth_set(
        cfg,
        synth::BENCHMARK_PRESET,
        synth::BENCHMARK_SEED,
        synth::BENCHMARK_FRAMES,
        "bench",
        true,
    )?;
    if classes != data.classes {
        return Err(Error::Invalid(format!(
            "the benchmark's classes {classes:?} are not the run's {:?}",
            data.classes
        )));
    }
    let first = data.items.len();
    data.items.extend(bench);
    data.val = (first..data.items.len()).collect();
    Ok(data)
}

/// A region of one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub item: usize,
    pub x: usize,
    pub y: usize,
    pub w: usize,
    pub h: usize,
}

/// Image-level labels of one region: per class, one label per cell of that
/// class's grid (row-major; one cell with whole-image labels), `None` where
/// a sliver of the class leaves the cell unlabelled.
pub type Labels = Vec<Vec<Option<bool>>>;

/// A region and its labels.
pub type Labelled = (Region, Labels);

/// Whether class `c` is in the region: present if any cell says so, absent
/// if every cell says absent, unknown otherwise.
pub fn region_present(labels: &Labels, c: usize) -> Option<bool> {
    let cells = labels.get(c)?;
    if cells.contains(&Some(true)) {
        Some(true)
    } else if cells.iter().all(|l| *l == Some(false)) {
        Some(false)
    } else {
        None
    }
}

/// A batch: inputs `[B,1,S,S]`, per class the cell labels `[B, n²]` with
/// their weights (0 where unlabelled), and mask targets `[B,C,S,S]` when
/// targets were given.
pub struct Batch {
    pub x: Tensor,
    pub labels: Vec<Tensor>,
    pub weights: Vec<Tensor>,
    pub masks: Option<Tensor>,
}

/// The labelled regions of `items`: a grid of `crop`-sized regions every
/// `stride` pixels, each class labelled from the masks over its own cells
/// as a person labelling a tile grid would (present ≥ the class's
/// `min_pixels`, absent = none, slivers unlabelled), or the whole images
/// with their own labels when `crop` is 0. A region with no label at all is
/// left out. These are the only labels the weak stages see.
pub fn grid_regions(
    data: &Data,
    items: &[usize],
    crop: usize,
    stride: usize,
    classes: &[ClassSettings],
) -> Result<Vec<Labelled>> {
    let mut out = Vec::new();
    for &i in items {
        let it = &data.items[i];
        let (w, h) = (it.input.width(), it.input.height());
        let region = |x, y, w, h| Region {
            item: i,
            x,
            y,
            w,
            h,
        };
        if crop == 0 {
            let labels = match &it.cells {
                Some(cells) => cells.clone(),
                None => it.present.iter().map(|&p| vec![Some(p)]).collect(),
            };
            out.push((region(0, 0, w, h), labels));
            continue;
        }
        let truth = it
            .truth
            .as_ref()
            .ok_or_else(|| Error::Invalid(format!("{}: tile labels need masks", it.id)))?;
        if w < crop || h < crop {
            return Err(Error::Invalid(format!(
                "{}: {w}x{h} is smaller than a {crop} px tile",
                it.id
            )));
        }
        for y in tiles::origins(h, crop, stride.max(1)) {
            for x in tiles::origins(w, crop, stride.max(1)) {
                let labels = truth
                    .iter()
                    .zip(classes)
                    .map(|(m, s)| tiles::cell_labels(m, x, y, crop, s.cell, s.min_pixels))
                    .collect::<Result<Labels>>()?;
                if labels.iter().flatten().any(Option::is_some) {
                    out.push((region(x, y, crop, crop), labels));
                }
            }
        }
    }
    Ok(out)
}

/// Per class, the pixels of item `item` that lie in a cell labelled absent
/// for that class: known background, which voting must not claim.
pub fn known_absent(data: &Data, item: usize, regions: &[Labelled]) -> Vec<Mask> {
    let it = &data.items[item];
    let (w, h) = (it.input.width(), it.input.height());
    let mut out = vec![Mask::filled(w, h, false); data.classes.len()];
    for (r, labels) in regions.iter().filter(|(r, _)| r.item == item) {
        for (c, cells) in labels.iter().enumerate() {
            let (cw, ch, n) = cell_grid(r, cells.len());
            for (k, l) in cells.iter().enumerate() {
                if *l != Some(false) {
                    continue;
                }
                let (x0, y0) = (r.x + (k % n) * cw, r.y + (k / n) * ch);
                for y in y0..y0 + ch {
                    for x in x0..x0 + cw {
                        out[c].set(x, y, true);
                    }
                }
            }
        }
    }
    out
}

/// Sets `values` (a `w`×`h` region, row-major) to `zero` in every cell
/// labelled absent: a negative cell's target is empty.
pub fn clear_absent_cells<T: Copy>(
    values: &mut [T],
    w: usize,
    h: usize,
    cells: &[Option<bool>],
    zero: T,
) {
    let n = cells_per_row(cells.len());
    let (cw, ch) = ((w / n).max(1), (h / n).max(1));
    for (k, v) in values.iter_mut().enumerate() {
        let (x, y) = ((k % w / cw).min(n - 1), (k / w / ch).min(n - 1));
        if cells[y * n + x] == Some(false) {
            *v = zero;
        }
    }
}

/// Cell width, height and cells per row of a region cut into `cells`
/// square-grid cells (one cell: the region itself).
fn cell_grid(r: &Region, cells: usize) -> (usize, usize, usize) {
    let n = cells_per_row(cells);
    (r.w / n, r.h / n, n)
}

/// Cells per row of a square grid of `cells` cells.
fn cells_per_row(cells: usize) -> usize {
    (cells as f64).sqrt().round().max(1.0) as usize
}

/// A geometric augmentation: transpose, then flips (8 possibilities for
/// square regions; non-square regions skip the transpose).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Geometry {
    pub transpose: bool,
    pub flip_x: bool,
    pub flip_y: bool,
}

impl Geometry {
    pub fn draw(a: &AugmentConfig, square: bool, rng: &mut impl Rng) -> Geometry {
        Geometry {
            transpose: a.rot90 && square && rng.random_bool(0.5),
            flip_x: (a.flips || a.rot90) && rng.random_bool(0.5),
            flip_y: (a.flips || a.rot90) && rng.random_bool(0.5),
        }
    }

    /// Width and height of region `r` once transformed.
    pub fn out_size(&self, r: &Region) -> (usize, usize) {
        if self.transpose {
            (r.h, r.w)
        } else {
            (r.w, r.h)
        }
    }

    /// Copies region `r` of `g` into `out`, transformed.
    pub fn apply<T: Copy>(&self, g: &Grid<T>, r: Region, out: &mut Vec<T>) {
        let (w, h) = (r.w, r.h);
        let (ow, oh) = if self.transpose { (h, w) } else { (w, h) };
        for oy in 0..oh {
            for ox in 0..ow {
                let (mut sx, mut sy) = if self.transpose { (oy, ox) } else { (ox, oy) };
                if self.flip_x {
                    sx = w - 1 - sx;
                }
                if self.flip_y {
                    sy = h - 1 - sy;
                }
                out.push(*g.get(r.x + sx, r.y + sy));
            }
        }
    }
}

/// Builds a batch from regions. `targets[item][class]` are the masks to
/// learn (true or voted), optionally followed by one more per class: where
/// that class's target is known (seeded refinement); a cell labelled
/// absent for a class gets an empty (and known) target whatever the mask
/// holds, as the paper's negatives do. Cell labels
/// follow the region through the augmentation.
pub fn make_batch(
    data: &Data,
    regions: &[Labelled],
    targets: Option<&[Option<Vec<Mask>>]>,
    augment: Option<(&AugmentConfig, &mut dyn rand::RngCore)>,
) -> Result<Batch> {
    let (r0, l0) = regions
        .first()
        .ok_or_else(|| Error::Invalid("empty batch".into()))?;
    let classes = data.classes.len();
    let (mut xs, mut ms) = (Vec::new(), Vec::new());
    let mut ls: Vec<Vec<f32>> = vec![Vec::new(); classes];
    let mut ws: Vec<Vec<f32>> = vec![Vec::new(); classes];
    let mut augment = augment;
    for (r, labels) in regions {
        if (r.w, r.h) != (r0.w, r0.h) {
            return Err(Error::Invalid("regions of one batch differ in size".into()));
        }
        let it = &data.items[r.item];
        let (geo, gain, offset, coarser, zoom) = match augment.as_mut() {
            Some((a, rng)) => {
                let geo = Geometry::draw(a, r.w == r.h, rng);
                let gain = 1.0 + a.contrast * (rng.random::<f32>() * 2.0 - 1.0);
                let offset = a.brightness * (rng.random::<f32>() * 2.0 - 1.0);
                // Each drawn only when asked, so runs without it stay as they were.
                let coarser = (a.resolution > 1.0 && rng.random_bool(0.5))
                    .then(|| 1.0 + (a.resolution - 1.0) * rng.random::<f32>());
                let zoom =
                    (a.scale > 0.0).then(|| 1.0 + a.scale * (rng.random::<f32>() * 2.0 - 1.0));
                (geo, gain, offset, coarser, zoom)
            }
            None => (Geometry::default(), 1.0, 0.0, None, None),
        };
        if zoom.is_some() && labels.iter().any(|cells| cells.len() > 1) {
            return Err(Error::Invalid(
                "augment.scale zooms whole regions, so it needs one label per region \
                 (the labelled folders' and whole images'); labels on a grid of cells \
                 would not follow the zoom"
                    .into(),
            ));
        }
        let (ow, oh) = geo.out_size(r);
        let zoom = zoom.map(|s| Zoom::new(ow, oh, s));
        let start = xs.len();
        geo.apply(&it.input, *r, &mut xs);
        if let Some(z) = &zoom {
            z.bilinear(&mut xs[start..]);
        }
        if let Some(u) = coarser {
            coarsen(&mut xs[start..], ow, oh, u)?;
        }
        for v in &mut xs[start..] {
            *v = *v * gain + offset;
        }
        // Each class's cells, moved as the region was.
        let mut moved = Vec::with_capacity(classes);
        for (c, cells) in labels.iter().enumerate().take(classes) {
            if cells.len() != l0[c].len() {
                return Err(Error::Invalid(
                    "regions of one batch differ in cells".into(),
                ));
            }
            let n = cells_per_row(cells.len());
            let grid = nemascope_core::Grid::from_vec(n, n, cells.clone())?;
            let mut out = Vec::with_capacity(cells.len());
            let whole = Region {
                item: r.item,
                x: 0,
                y: 0,
                w: n,
                h: n,
            };
            geo.apply(&grid, whole, &mut out);
            ls[c].extend(out.iter().map(|l| (*l == Some(true)) as u8 as f32));
            ws[c].extend(out.iter().map(|l| l.is_some() as u8 as f32));
            moved.push(out);
        }
        if let Some(t) = targets {
            let masks = t[r.item]
                .as_ref()
                .ok_or_else(|| Error::Invalid(format!("{}: no target masks", it.id)))?;
            // Class masks, then (seeded refinement) where each is known:
            // a cell labelled absent is empty and known.
            for (k, m) in masks.iter().enumerate().take(2 * classes) {
                let start = ms.len();
                geo.apply(m, *r, &mut ms);
                if let Some(z) = &zoom {
                    z.nearest(&mut ms[start..]);
                }
                let known = k >= classes;
                clear_absent_cells(&mut ms[start..], ow, oh, &moved[k % classes], known);
            }
        }
    }
    let b = regions.len() as i64;
    // Only square regions transpose (Geometry::draw), so every region keeps
    // the first one's shape.
    let (w, h) = (r0.w as i64, r0.h as i64);
    let x = Tensor::from_slice(&xs).reshape([b, 1, h, w]);
    let labels = ls
        .iter()
        .map(|l| Tensor::from_slice(l).reshape([b, -1]))
        .collect();
    let weights = ws
        .iter()
        .map(|l| Tensor::from_slice(l).reshape([b, -1]))
        .collect();
    let masks = targets.map(|_| {
        let f: Vec<f32> = ms.iter().map(|&v| v as u8 as f32).collect();
        Tensor::from_slice(&f).reshape([b, -1, h, w])
    });
    Ok(Batch {
        x,
        labels,
        weights,
        masks,
    })
}

/// A crop's content zoomed by `s` about its centre, its size kept: objects
/// `s`× as large. Beyond the crop's edge the crop is mirrored, so a region
/// labelled absent stays absent and one labelled present keeps all it
/// holds when zoomed out (zoomed in, it loses at most a `(1 − 1/s)/2` band
/// at each edge). Eggs and worms vary in size, and a camera's stated pixel
/// size is rarely exact: a model that has seen one size of each counts
/// the rest short.
struct Zoom {
    w: usize,
    h: usize,
    /// Per output column and row: the source coordinate (mirrored).
    xs: Vec<f32>,
    ys: Vec<f32>,
}

impl Zoom {
    fn new(w: usize, h: usize, s: f32) -> Zoom {
        let axis = |n: usize| {
            let c = n as f32 / 2.0;
            (0..n)
                .map(|o| mirror((o as f32 + 0.5 - c) / s + c - 0.5, n))
                .collect()
        };
        Zoom {
            w,
            h,
            xs: axis(w),
            ys: axis(h),
        }
    }

    /// Zooms an image, interpolating.
    fn bilinear(&self, v: &mut [f32]) {
        let src = v.to_vec();
        let w = self.w;
        let split = |u: f32, n: usize| {
            let i = (u.floor() as usize).min(n - 1);
            (i, (i + 1).min(n - 1), u - i as f32)
        };
        for (oy, &sy) in self.ys.iter().enumerate() {
            let (y0, y1, fy) = split(sy, self.h);
            for (ox, &sx) in self.xs.iter().enumerate() {
                let (x0, x1, fx) = split(sx, w);
                let top = src[y0 * w + x0] * (1.0 - fx) + src[y0 * w + x1] * fx;
                let bottom = src[y1 * w + x0] * (1.0 - fx) + src[y1 * w + x1] * fx;
                v[oy * w + ox] = top * (1.0 - fy) + bottom * fy;
            }
        }
    }

    /// Zooms a mask (or any labels) the same way, nearest pixel.
    fn nearest<T: Copy>(&self, v: &mut [T]) {
        let src = v.to_vec();
        let near = |u: f32, n: usize| (u.round() as usize).min(n - 1);
        for (oy, &sy) in self.ys.iter().enumerate() {
            let y = near(sy, self.h);
            for (ox, &sx) in self.xs.iter().enumerate() {
                v[oy * self.w + ox] = src[y * self.w + near(sx, self.w)];
            }
        }
    }
}

/// Coordinate `u` mirrored into `0..=n-1` (about the edges' outer borders,
/// -0.5 and n-0.5).
fn mirror(u: f32, n: usize) -> f32 {
    let period = 2.0 * n as f32;
    let t = (u + 0.5).rem_euclid(period);
    let t = if t >= n as f32 { period - t } else { t };
    (t - 0.5).clamp(0.0, n as f32 - 1.0)
}

/// A `w`×`h` crop as a camera with `u`× coarser pixels records it
/// (area-averaged, [`resample`]), enlarged back to `w`×`h` as `count`
/// enlarges a frame coarser than the model's ([`resize_bilinear`]).
fn coarsen(v: &mut [f32], w: usize, h: usize, u: f32) -> Result<()> {
    let crop = Plane::from_vec(w, h, v.to_vec())?;
    let side = |n: usize| ((n as f32 / u).round() as usize).clamp(1, n);
    let back = resize_bilinear(&resample(&crop, side(w), side(h))?, w, h)?;
    v.copy_from_slice(back.data());
    Ok(())
}

/// Reads one image for prediction, brought to the working size as `at`
/// says.
pub fn load_for_prediction(path: &Path, at: &Working) -> Result<Item> {
    let frame = load_frame(path, LoadLimits::default())?;
    let id = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".into());
    item_from_plane(id, &frame.plane, Vec::new(), None, Vec::new(), at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn geometry_transposes_and_flips() {
        let g = Grid::from_fn(3, 3, |x, y| (x, y));
        let r = Region {
            item: 0,
            x: 0,
            y: 0,
            w: 3,
            h: 3,
        };
        let mut out = Vec::new();
        Geometry {
            transpose: true,
            flip_x: false,
            flip_y: false,
        }
        .apply(&g, r, &mut out);
        assert_eq!(out[1], (0, 1));
        out.clear();
        Geometry {
            transpose: false,
            flip_x: true,
            flip_y: true,
        }
        .apply(&g, r, &mut out);
        assert_eq!(out[0], (2, 2));
        assert_eq!(out[8], (0, 0));
    }

    #[test]
    fn coarsening_blurs_a_crop_as_a_coarser_camera_would() {
        // One-pixel stripes: a camera with 2× coarser pixels sees grey.
        let stripes: Vec<f32> = (0..64).map(|i| (i % 2) as f32).collect();
        let mut v = stripes.clone();
        coarsen(&mut v, 8, 8, 2.0).unwrap();
        assert!(v.iter().all(|&x| (x - 0.5).abs() < 1e-6), "{v:?}");
        // At factor 1 nothing changes; a broad edge keeps its level.
        let mut v = stripes.clone();
        coarsen(&mut v, 8, 8, 1.0).unwrap();
        assert_eq!(v, stripes);
        let step: Vec<f32> = (0..64).map(|i| ((i % 8) >= 4) as u8 as f32).collect();
        let mut v = step.clone();
        coarsen(&mut v, 8, 8, 1.5).unwrap();
        assert!(
            (v[0], v[7]) == (0.0, 1.0) && v[3] > 0.0 && v[3] < 1.0,
            "{v:?}"
        );
    }

    /// `items` of `classes`, every one for training.
    fn all_training(classes: &[&str], items: Vec<Item>) -> Data {
        Data {
            classes: classes.iter().map(|c| c.to_string()).collect(),
            train: (0..items.len()).collect(),
            items,
            reviewed: vec![],
            val: vec![],
            skipped: vec![],
        }
    }

    #[test]
    fn zooming_enlarges_about_the_centre_and_mirrors_beyond_the_edge() {
        // Columns numbered 0..8 in an 8×1 strip.
        let ramp: Vec<f32> = (0..8).map(|i| i as f32).collect();
        let mut v = ramp.clone();
        Zoom::new(8, 1, 1.0).bilinear(&mut v);
        assert_eq!(v, ramp);
        // Twice as large: the middle four columns fill the strip.
        let mut v = ramp.clone();
        Zoom::new(8, 1, 2.0).bilinear(&mut v);
        assert_eq!(v, [1.75, 2.25, 2.75, 3.25, 3.75, 4.25, 4.75, 5.25]);
        // Half as large: the strip in the middle, mirrored at both sides.
        let mut v = ramp.clone();
        Zoom::new(8, 1, 0.5).nearest(&mut v);
        assert_eq!(v, [3.0, 1.0, 1.0, 3.0, 5.0, 7.0, 7.0, 5.0]);
        assert_eq!(mirror(-1.0, 8), 0.0);
        assert_eq!(mirror(8.5, 8), 6.5);
        assert_eq!(mirror(17.0, 8), 1.0);
        // A mask zoomed nearest stays where the image zoomed took it.
        let block = |x: usize, y: usize| (10..14).contains(&x) && (4..8).contains(&y);
        let mut img: Vec<f32> = (0..256)
            .map(|i| block(i % 16, i / 16) as u8 as f32)
            .collect();
        let mut mask: Vec<bool> = (0..256).map(|i| block(i % 16, i / 16)).collect();
        let z = Zoom::new(16, 16, 1.3);
        z.bilinear(&mut img);
        z.nearest(&mut mask);
        for (i, (&p, &m)) in img.iter().zip(&mask).enumerate() {
            if !(0.1..=0.9).contains(&p) {
                assert_eq!(m, p > 0.5, "pixel {i}: {p}");
            }
        }
        let area = mask.iter().filter(|&&m| m).count();
        assert!((20..=36).contains(&area), "{area}: 16 px × 1.3²");
    }

    #[test]
    fn zoomed_regions_keep_their_labels_and_targets() {
        // 32×32 frames labelled whole: a dark 6×6 square somewhere away
        // from the edges in half of them, none in the others.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let mut items = Vec::new();
        for i in 0..8 {
            let (cx, cy) = (rng.random_range(8..18), rng.random_range(8..18));
            let has = i % 2 == 0;
            let inside = move |x: usize, y: usize| {
                has && (cx..cx + 6).contains(&x) && (cy..cy + 6).contains(&y)
            };
            let plane = Plane::from_fn(32, 32, |x, y| if inside(x, y) { 0.1 } else { 0.9 });
            let truth = vec![Mask::from_fn(32, 32, inside)];
            let item = item_from_plane(
                format!("f{i}"),
                &plane,
                vec![has],
                Some(truth),
                vec![],
                &Working::plain(32, 32),
            );
            items.push(item.unwrap());
        }
        let data = all_training(&["a"], items);
        let gap = nemascope_core::pooling::Pooling::Gap;
        let whole = [ClassSettings {
            cell: 0,
            min_pixels: 10,
            pooling: gap,
        }];
        let regions = grid_regions(&data, &data.train, 0, 0, &whole).unwrap();
        let targets: Vec<Option<Vec<Mask>>> =
            data.items.iter().map(|it| it.truth.clone()).collect();
        let zoomed = AugmentConfig {
            brightness: 0.0,
            contrast: 0.0,
            scale: 0.3,
            ..AugmentConfig::default()
        };
        let mut areas = Vec::new();
        for seed in 0..4 {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let b = make_batch(&data, &regions, Some(&targets), Some((&zoomed, &mut rng))).unwrap();
            let x = Vec::<f32>::try_from(b.x.flatten(0, -1)).unwrap();
            let l = Vec::<f32>::try_from(b.labels[0].flatten(0, -1)).unwrap();
            let m = Vec::<f32>::try_from(b.masks.unwrap().flatten(0, -1)).unwrap();
            for k in 0..8 {
                let xk = &x[k * 1024..(k + 1) * 1024];
                let (lo, hi) = xk
                    .iter()
                    .fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
                // Mostly dark (bilinear edges that are not stay out).
                let dark: Vec<bool> = xk
                    .iter()
                    .map(|&v| hi - lo > 1.0 && v < lo + 0.4 * (hi - lo))
                    .collect();
                let target: Vec<bool> = m[k * 1024..(k + 1) * 1024]
                    .iter()
                    .map(|&v| v > 0.5)
                    .collect();
                // The label says whether the square is there, and the
                // target is exactly the square's darkest pixels' place.
                assert_eq!(l[k] > 0.5, dark.contains(&true), "seed {seed} region {k}");
                assert!(dark.iter().zip(&target).all(|(d, t)| !d || *t));
                if l[k] > 0.5 {
                    areas.push(target.iter().filter(|&&t| t).count());
                }
            }
        }
        // Squares of 36 px drawn from 0.7²–1.3² of it.
        let (lo, hi) = (*areas.iter().min().unwrap(), *areas.iter().max().unwrap());
        assert!(lo < 30 && hi > 42 && lo >= 16 && hi <= 64, "{areas:?}");
        // Labels on a grid of cells would not follow: refused.
        let cells = [ClassSettings {
            cell: 16,
            min_pixels: 10,
            pooling: gap,
        }];
        let regions = grid_regions(&data, &data.train, 32, 32, &cells).unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let e = make_batch(&data, &regions, None, Some((&zoomed, &mut rng)));
        assert!(e.is_err_and(|e| e.to_string().contains("augment.scale")));
    }

    /// With `data.flat_field_um` the network's input (and the superpixels'
    /// stretch) is the working plane divided by its lamp, the same
    /// function `count` applies to frames; without it nothing changes.
    #[test]
    fn flat_field_inputs_are_the_plane_divided_by_its_lamp() {
        let plane = Plane::from_fn(128, 64, |x, y| {
            let lamp =
                1.0 - 0.5 * ((x as f32 / 128.0 - 0.5).powi(2) + (y as f32 / 64.0 - 0.5).powi(2));
            lamp * if (x / 8 + y / 8) % 5 == 0 { 0.3 } else { 0.9 }
        });
        let at = Working {
            width: 64,
            height: 32,
            um_per_px: 2.0,
            flat_field_um: 64.0,
        };
        // Squares of 64 µm at 4 µm working pixels (a 128 px plane at 2 µm
        // made 64 px wide): 16 px.
        assert_eq!(at.flat_field_px(128), Some(16));
        let item = item_from_plane("v".into(), &plane, vec![], None, vec![], &at).unwrap();
        let work = resample(&plane, 64, 32).unwrap();
        let mut want = Flattened::new(&work, 16).to_plane();
        assert_eq!(item.stretched, stretched(&want));
        standardise(&mut want);
        assert_eq!(item.input, want);
        let off = Working {
            flat_field_um: 0.0,
            ..at
        };
        assert_eq!(off.flat_field_px(128), None);
        let plain = item_from_plane("v".into(), &plane, vec![], None, vec![], &off).unwrap();
        let mut want = work;
        standardise(&mut want);
        assert_eq!(plain.input, want);
        assert_ne!(plain.input, item.input);
    }

    #[test]
    fn tile_grid_labels_and_known_absent_pixels() {
        // A 64×32 image with one 4×20 bar at x = 40..44, y = 6..26.
        let plane = Plane::from_fn(64, 32, |x, _| if (40..44).contains(&x) { 0.2 } else { 0.9 });
        let truth = Mask::from_fn(64, 32, |x, y| (40..44).contains(&x) && (6..26).contains(&y));
        let item = item_from_plane(
            "bar".into(),
            &plane,
            vec![true],
            Some(vec![truth]),
            vec![Some(1)],
            &Working::plain(64, 32),
        )
        .unwrap();
        let data = Data {
            classes: vec!["worm".into()],
            items: vec![item],
            train: vec![0],
            reviewed: vec![],
            val: vec![],
            skipped: vec![],
        };
        let cls = |min_pixels| {
            vec![ClassSettings {
                cell: 16,
                min_pixels,
                pooling: nemascope_core::pooling::Pooling::Gap,
            }]
        };
        let regions = grid_regions(&data, &[0], 16, 16, &cls(10)).unwrap();
        // Columns 0..16, 16..32 are empty; 32..48 holds the bar; 48..64 is
        // empty. Rows 0..16 hold 40 bar pixels, 16..32 hold 40.
        let labels: Vec<(usize, usize, bool)> = regions
            .iter()
            .map(|(r, l)| (r.x, r.y, l[0][0].unwrap()))
            .collect();
        assert_eq!(labels.len(), 8);
        assert!(labels.contains(&(32, 0, true)) && labels.contains(&(32, 16, true)));
        assert!(labels.contains(&(48, 16, false)) && labels.contains(&(0, 0, false)));
        let absent = known_absent(&data, 0, &regions);
        assert!(*absent[0].get(10, 10) && *absent[0].get(60, 30));
        assert!(!*absent[0].get(41, 10) && !*absent[0].get(33, 2));
        // Slivers are skipped: with min_pixels 50 the bar tiles (40 px) carry
        // no label, so nothing near the bar is called absent.
        let strict = grid_regions(&data, &[0], 16, 16, &cls(50)).unwrap();
        assert_eq!(strict.len(), 6);
        assert!(!*known_absent(&data, 0, &strict)[0].get(41, 10));
        // Whole-image mode keeps the image's own labels.
        let whole = grid_regions(&data, &[0], 0, 0, &cls(10)).unwrap();
        assert_eq!(whole.len(), 1);
        assert_eq!(
            (whole[0].0.w, whole[0].0.h, whole[0].1.clone()),
            (64, 32, vec![vec![Some(true)]])
        );
    }

    #[test]
    fn cell_labels_follow_the_augmented_region_and_clear_negative_cells() {
        // 32×32 frames, one dark 6×6 square at a random cell of a 2×2 grid
        // of 16-px cells; a second class absent everywhere, one cell.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let mut items = Vec::new();
        for i in 0..8 {
            let (cx, cy) = (
                rng.random_range(0..2) * 16 + 5,
                rng.random_range(0..2) * 16 + 5,
            );
            let inside =
                move |x: usize, y: usize| (cx..cx + 6).contains(&x) && (cy..cy + 6).contains(&y);
            let plane = Plane::from_fn(32, 32, |x, y| if inside(x, y) { 0.1 } else { 0.9 });
            let truth = vec![Mask::from_fn(32, 32, inside), Mask::filled(32, 32, false)];
            items.push(
                item_from_plane(
                    format!("f{i}"),
                    &plane,
                    vec![true, false],
                    Some(truth),
                    vec![],
                    &Working::plain(32, 32),
                )
                .unwrap(),
            );
        }
        let data = all_training(&["a", "b"], items);
        let gap = nemascope_core::pooling::Pooling::Gap;
        let settings = [
            ClassSettings {
                cell: 16,
                min_pixels: 10,
                pooling: gap,
            },
            ClassSettings {
                cell: 32,
                min_pixels: 10,
                pooling: gap,
            },
        ];
        let regions = grid_regions(&data, &data.train, 32, 32, &settings).unwrap();
        assert_eq!(regions.len(), 8);
        assert!(regions
            .iter()
            .all(
                |(_, l)| l[0].iter().filter(|c| **c == Some(true)).count() == 1
                    && l[1] == vec![Some(false)]
            ));
        // Everything the voting would have claimed: the whole frame.
        let targets: Vec<Option<Vec<Mask>>> = (0..8)
            .map(|_| Some(vec![Mask::filled(32, 32, true), Mask::filled(32, 32, true)]))
            .collect();
        let plain = AugmentConfig {
            brightness: 0.0,
            contrast: 0.0,
            ..AugmentConfig::default()
        };
        // Coarsened crops keep their labels and targets too.
        let coarser = AugmentConfig {
            resolution: 2.0,
            ..plain.clone()
        };
        for (seed, augment) in (0..6)
            .map(|s| (s, &plain))
            .chain((0..6).map(|s| (s, &coarser)))
        {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let b = make_batch(&data, &regions, Some(&targets), Some((augment, &mut rng))).unwrap();
            let x = Vec::<f32>::try_from(b.x.flatten(0, -1)).unwrap();
            let l = Vec::<f32>::try_from(b.labels[0].flatten(0, -1)).unwrap();
            let m = Vec::<f32>::try_from(b.masks.unwrap().flatten(0, -1)).unwrap();
            assert_eq!(b.labels[1].size(), [8, 1]);
            for k in 0..8 {
                for cell in 0..4 {
                    let (x0, y0) = ((cell % 2) * 16, (cell / 2) * 16);
                    let dark = (y0..y0 + 16)
                        .any(|y| (x0..x0 + 16).any(|xx| x[k * 1024 + y * 32 + xx] < -1.0));
                    // The positive cell is where the square went.
                    assert_eq!(
                        l[k * 4 + cell] > 0.5,
                        dark,
                        "seed {seed} region {k} cell {cell}"
                    );
                    // Negative cells have empty targets; the positive keeps its own.
                    let t = m[k * 2048 + y0 * 32 + x0 + 8 * 32 + 8];
                    assert_eq!(t > 0.5, dark);
                }
                // Class b is absent everywhere: its target is empty.
                assert!(m[k * 2048 + 1024..k * 2048 + 2048]
                    .iter()
                    .all(|&v| v == 0.0));
            }
        }
        // Seeded refinement: a "known" mask per class follows the targets;
        // here nothing is known but the cells labelled absent.
        let seeded: Vec<Option<Vec<Mask>>> = (0..8)
            .map(|_| {
                let (all, none) = (Mask::filled(32, 32, true), Mask::filled(32, 32, false));
                Some(vec![all.clone(), all, none.clone(), none])
            })
            .collect();
        let b = make_batch(&data, &regions, Some(&seeded), None).unwrap();
        let m = b.masks.unwrap();
        assert_eq!(m.size(), [8, 4, 32, 32]);
        let m = Vec::<f32>::try_from(m.flatten(0, -1)).unwrap();
        let l = Vec::<f32>::try_from(b.labels[0].flatten(0, -1)).unwrap();
        for k in 0..8 {
            for cell in 0..4 {
                let (x0, y0) = ((cell % 2) * 16, (cell / 2) * 16);
                let at = |ch: usize| m[k * 4096 + ch * 1024 + (y0 + 8) * 32 + x0 + 8];
                let present = l[k * 4 + cell] > 0.5;
                assert_eq!(at(0) > 0.5, present, "target, region {k} cell {cell}");
                assert_eq!(at(2) > 0.5, !present, "known, region {k} cell {cell}");
            }
            assert!(m[k * 4096 + 3 * 1024..(k + 1) * 4096]
                .iter()
                .all(|&v| v == 1.0));
        }
    }

    /// A generic dataset of 20 synthetic frames, three of whose rows are
    /// broken in different ways: a truncated image, a label that is not
    /// 0/1, an image that is not there.
    fn broken_table(dir: &std::path::Path) -> Config {
        use nemascope_core::imageio::save_gray8;
        use nemascope_core::synth::{generate, SynthConfig};
        let sc = SynthConfig {
            width: 64,
            height: 48,
            ..SynthConfig::default()
        };
        let mut csv = String::from("image,worm\n");
        for i in 0..20 {
            let f = generate(&sc, 5, i).unwrap();
            let name = format!("f{i:02}.png");
            save_gray8(&f.image, &dir.join(&name)).unwrap();
            let label = match i {
                7 => "2".into(),
                _ => ((f.counts[0] > 0) as u8).to_string(),
            };
            let name = if i == 13 { "gone.png".into() } else { name };
            csv += &format!("{name},{label}\n");
        }
        let bytes = std::fs::read(dir.join("f04.png")).unwrap();
        std::fs::write(dir.join("f04.png"), &bytes[..bytes.len() / 2]).unwrap();
        std::fs::write(dir.join("labels.csv"), csv).unwrap();
        let mut cfg = Config::default();
        cfg.data.kind = DataKind::Generic;
        cfg.data.root = dir.to_path_buf();
        cfg.data.width = 64;
        cfg.data.height = 48;
        cfg.data.crop = 0;
        cfg.data.val_fraction = 0.25;
        cfg
    }

    #[test]
    fn a_finer_labelling_gives_each_tile_its_cells() {
        use nemascope_core::imageio::save_gray8;
        let dir = tempfile::tempdir().unwrap();
        let folder = |name: &str, side: usize, rows: &[(&str, u8)]| {
            let root = dir.path().join(name);
            std::fs::create_dir_all(root.join("tiles")).unwrap();
            let mut csv = String::from("image,egg\n");
            for (id, label) in rows {
                let plane = Plane::from_fn(side, side, |x, y| ((x + y) % 5) as f32 / 4.0);
                save_gray8(&plane, &root.join(format!("tiles/{id}.png"))).unwrap();
                csv += &format!("tiles/{id}.png,{label}\n");
            }
            std::fs::write(root.join("labels.csv"), csv).unwrap();
            root
        };
        // A 24x16 image cut at 16 px (x 0 and 8, flush) and at 8 px; the
        // egg is in the 8 px tile at (8, 8). A second image, absent, has no
        // finer labels at all.
        let coarse = folder(
            "coarse",
            16,
            &[
                ("im.png_x0000_y0000", 1),
                ("im.png_x0008_y0000", 1),
                ("b.png_x0000_y0000", 0),
            ],
        );
        let fine: Vec<(String, u8)> = [0, 8]
            .iter()
            .flat_map(|&y| {
                [0, 8, 16].map(|x| (format!("im.png_x{x:04}_y{y:04}"), (x == 8 && y == 8) as u8))
            })
            .collect();
        let fine_rows: Vec<(&str, u8)> = fine.iter().map(|(n, l)| (n.as_str(), *l)).collect();
        let finer = folder("fine", 8, &fine_rows);
        let mut cfg = Config::default();
        cfg.data.kind = DataKind::Generic;
        cfg.data.root = coarse.clone();
        (cfg.data.width, cfg.data.height, cfg.data.crop) = (16, 16, 0);
        cfg.data.val_fraction = 0.34;
        let plain = load(&cfg).unwrap();
        cfg.data.cells = finer.clone();
        let d = load(&cfg).unwrap();
        let cells = |id: &str| {
            d.items
                .iter()
                .find(|i| i.id == id)
                .unwrap()
                .cells
                .clone()
                .unwrap()
        };
        let (t, f) = (Some(true), Some(false));
        assert_eq!(cells("im.png_x0000_y0000"), vec![vec![f, f, f, t]]);
        assert_eq!(cells("im.png_x0008_y0000"), vec![vec![f, f, t, f]]);
        assert_eq!(cells("b.png_x0000_y0000"), vec![vec![f; 4]]);
        // Whole tiles pooled and labelled per 8 px cell; without the finer
        // folder, one label per tile.
        let settings = cfg.classes(&d.classes).unwrap();
        assert_eq!(settings[0].cell, 8);
        let all: Vec<usize> = (0..3).collect();
        let regions = grid_regions(&d, &all, 0, 0, &settings).unwrap();
        assert!(regions.iter().all(|(r, l)| (r.w, l[0].len()) == (16, 4)));
        let regions = grid_regions(&plain, &all, 0, 0, &settings).unwrap();
        assert!(regions.iter().all(|(_, l)| l[0].len() == 1));

        // What cannot work is refused, naming the cause.
        let refused = |cfg: &Config, why: &str| {
            let e = load(cfg).unwrap_err().to_string();
            assert!(e.contains("data.cells") && e.contains(why), "{e}");
        };
        let mut c = cfg.clone();
        c.data.cells = dir.path().join("missing");
        refused(&c, "missing");
        c.data.cells = folder("quarter", 4, &[("im.png_x0000_y0000", 1)]);
        refused(&c, "twice the finer tiles' 4 px");
        c.data.cells = folder("named", 8, &[("im_0_0", 1)]);
        refused(&c, "`im_0_0` is not named");
        c.data.cells = finer.clone();
        std::fs::write(
            finer.join("labels.csv"),
            "image,cyst\ntiles/im.png_x0000_y0000.png,1\n",
        )
        .unwrap();
        refused(&c, "its classes (cyst)");
        c.data.width = 15;
        refused(&c, "even data.width");
        // An image with objects that the finer labelling never reached.
        c.data.width = 16;
        c.data.cells = folder("part", 8, &[("b.png_x0000_y0000", 0)]);
        refused(&c, "no tile of 1 image(s) with objects (im.png)");
    }

    #[test]
    fn binned_sets_are_the_files_at_coarser_pixels() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = broken_table(dir.path());
        cfg.data.bad_rows = BadRows::Skip;
        cfg.data.max_bad_fraction = 0.2;
        let full = load(&cfg).unwrap();
        cfg.data.bin = 2;
        cfg.data.width = 32;
        cfg.data.height = 24;
        let half = load(&cfg).unwrap();
        assert_eq!(half.items.len(), full.items.len());
        let (a, b) = (&full.items[0], &half.items[0]);
        assert_eq!(b.native_size, (32, 24));
        assert_eq!((b.input.width(), b.raw.width()), (32, 32));
        assert!((b.raw.get(3, 5) - bin_plane(&a.raw, 2).unwrap().get(3, 5)).abs() < 1e-6);
        // The same µm per file pixel, twice the µm per loaded pixel.
        assert_eq!(cfg.data.loaded_um_per_px(), 2.0 * cfg.data.um_per_px);
        assert_eq!(
            half.working_um_per_px(cfg.data.loaded_um_per_px(), 32),
            2.0 * full.working_um_per_px(cfg.data.um_per_px, 64)
        );
        cfg.data.kind = DataKind::Synth;
        assert!(cfg.validate().unwrap_err().to_string().contains("data.bin"));
    }

    #[test]
    fn bad_rows_are_refused_all_at_once_or_skipped_without_moving_the_split() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = broken_table(dir.path());
        let csv = dir.path().join("labels.csv");
        let at = |line: u64| format!("{} line {line}", csv.display());

        // refuse (the default): every bad row named, with its line and why.
        let e = load(&cfg).unwrap_err().to_string();
        assert!(e.contains("3 of 20 dataset rows"), "{e}");
        for (line, why) in [(6, "f04.png"), (9, "must be 0 or 1"), (15, "gone.png")] {
            let row = e
                .lines()
                .find(|l| l.contains(&at(line)))
                .unwrap_or_else(|| panic!("{e}"));
            assert!(row.contains(why), "{row}");
        }

        // skip: the other 17 train; the bad rows are listed.
        cfg.data.bad_rows = BadRows::Skip;
        cfg.data.max_bad_fraction = 0.2;
        let d = load(&cfg).unwrap();
        assert_eq!(d.items.len(), 17);
        assert_eq!(d.skipped.len(), 3);
        assert!(d.skipped[0].contains(&at(6)) && d.skipped[2].contains("gone.png"));
        let ids = |ix: &[usize]| {
            ix.iter()
                .map(|&i| d.items[i].id.clone())
                .collect::<Vec<_>>()
        };
        // The split is the one of all 20 rows, less the bad ones.
        let (t20, v20) = split_indices(20, 0.25, cfg.data.seed);
        let good = |ix: Vec<usize>| {
            ix.into_iter()
                .filter(|i| ![4, 7, 13].contains(i))
                .map(|i| format!("f{i:02}"))
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&d.train), good(t20));
        assert_eq!(ids(&d.val), good(v20));

        // More bad rows than allowed: refused, naming the limit.
        cfg.data.max_bad_fraction = 0.1;
        let e = load(&cfg).unwrap_err().to_string();
        assert!(e.contains("max_bad_fraction"), "{e}");

        // Two rows naming images with the same stem are refused.
        cfg.data.max_bad_fraction = 0.2;
        let mut csv_text = std::fs::read_to_string(&csv).unwrap();
        std::fs::create_dir(dir.path().join("b")).unwrap();
        std::fs::copy(dir.path().join("f01.png"), dir.path().join("b/f01.png")).unwrap();
        csv_text += "b/f01.png,0\n";
        std::fs::write(&csv, csv_text).unwrap();
        let e = load(&cfg).unwrap_err().to_string();
        assert!(e.contains("`f01`"), "{e}");
    }
}
