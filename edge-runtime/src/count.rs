//! Counting with a signed model: frame → tiles standardised on the fly
//! with the frame's mean and deviation → tract maps → per-class bit masks
//! (each tile owns the middle of its overlaps; optional superpixel voting as
//! the manifest describes) → components from runs → counts and
//! measurements in µm. The path the shipped bundles run on the unit.
//!
//! Memory is the frame at its own depth (2 bytes a pixel for 16-bit), one
//! band of tile rows, tract's working memory for one tile and a bit per
//! pixel and class: no full-size float copy, map or label image.

use nemascope_core::counting::AreaCounter;
use nemascope_core::felzenszwalb::{self, Params};
use nemascope_core::imageio::{resize_bilinear, resize_nearest, stretch, Luma};
use nemascope_core::objects::{measure_bits, Calibration, ShapeRules};
use nemascope_core::voting::vote;
use nemascope_core::{BitMask, Error, Mask, Result};
use nemascope_onnx::run::tile_starts;

use crate::model::Model;

/// How a model's maps become counted objects.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CountSettings {
    /// Overlap between tiles, in model pixels, for frames larger than the
    /// model input.
    pub overlap: usize,
    /// Superpixel voting with the manifest's settings. Off by default: as in
    /// the paper, voting makes the training masks and the trained network
    /// alone segments (on BBBC010 voting costs 5 Dice points, docs/edge.md).
    pub vote: bool,
    /// Components smaller than this are noise, not objects (µm²), whatever
    /// their class; each class also has its size range ([`size_range`]).
    pub min_area_um2: f32,
    /// The camera's pixel size at the frame's resolution.
    pub calibration: Calibration,
    /// The camera's bits per pixel, which the light checks judge against
    /// (`None`: found from each frame, [`light_top`]).
    pub bit_depth: Option<u8>,
}

impl Default for CountSettings {
    fn default() -> Self {
        CountSettings {
            overlap: 32,
            vote: false,
            min_area_um2: 0.0,
            calibration: Calibration::default(),
            bit_depth: None,
        }
    }
}

/// One counted object, measured at the frame's resolution.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    /// Index into the manifest's classes.
    pub class: usize,
    /// Objects this component holds (touching worms count more than one).
    pub count: usize,
    pub area_um2: f32,
    /// Skeleton length (worms) and mean width.
    pub length_um: f32,
    pub width_um: f32,
    /// Centre in frame pixels (x, y).
    pub centroid: (f32, f32),
}

/// What one frame gave.
#[derive(Debug, Clone)]
pub struct Counted {
    /// Per class, at the frame's size.
    pub masks: Vec<BitMask>,
    pub objects: Vec<Measured>,
    /// Objects per class, in the manifest's class order.
    pub counts: Vec<usize>,
    /// The frame's light, as given (before any resizing).
    pub quality: Quality,
}

impl Counted {
    /// Every class's mask in one (for the `--masks` output).
    pub fn any(&self) -> Option<Mask> {
        BitMask::union(&self.masks)
            .ok()
            .flatten()
            .map(|m| m.to_mask())
    }

    /// Class `k`'s mask, a byte per pixel.
    pub fn mask(&self, k: usize) -> Mask {
        self.masks[k].to_mask()
    }
}

/// The pixel size frames are measured at, and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct PixelSize {
    pub um_per_px: f32,
    /// "given", "the bundle's" or "the default" (bundles made before the
    /// manifest carried one).
    pub from: &'static str,
    /// Set when the given size is far from the one the model was trained
    /// at: the model then sees objects at another size than it learnt.
    pub warning: Option<String>,
}

/// A given pixel size more than this factor from the bundle's is warned of.
pub const SCALE_TOLERANCE: f32 = 1.25;

/// The largest side a frame is resampled to for the model's scale.
pub const MAX_RESAMPLED_SIDE: usize = 16_384;

/// The factor a frame is resized by before the model: the bundle's own
/// `pixel_scale`, times the camera's pixel size over the bundle's when they
/// differ by more than [`SCALE_TOLERANCE`], so the model sees objects at
/// the size it learnt them (a lab whose camera has 2 µm pixels can use a
/// model trained at 4 µm).
pub fn frame_scale(manifest: &nemascope_bundle::Manifest, camera_um_per_px: f32) -> f32 {
    let ratio = manifest.um_per_px.map_or(1.0, |m| camera_um_per_px / m);
    let far = !(1.0 / SCALE_TOLERANCE..=SCALE_TOLERANCE).contains(&ratio);
    manifest.pixel_scale * if far && ratio.is_finite() { ratio } else { 1.0 }
}

/// The pixel size to measure at: `given` (the user's or the unit's), else
/// the bundle's own (`um_per_px`, the scale its model was trained at), else
/// the generator's 4 µm.
pub fn pixel_size(given: Option<f32>, manifest: &nemascope_bundle::Manifest) -> PixelSize {
    let default = Calibration::default().um_per_px;
    match (given, manifest.um_per_px) {
        (Some(g), Some(m)) => {
            let ratio = g / m;
            let far = !(1.0 / SCALE_TOLERANCE..=SCALE_TOLERANCE).contains(&ratio);
            PixelSize {
                um_per_px: g,
                from: "given",
                warning: far.then(|| {
                    format!(
                        "{g} µm per pixel is far from the {m} µm the model {} was trained at: \
                         frames are resampled by {:.2}x to its scale before counting (a model \
                         trained at this scale sees finer detail)",
                        manifest.name,
                        g / m
                    )
                }),
            }
        }
        (Some(g), None) => PixelSize {
            um_per_px: g,
            from: "given",
            warning: None,
        },
        (None, Some(m)) => PixelSize {
            um_per_px: m,
            from: "the bundle's",
            warning: None,
        },
        (None, None) => PixelSize {
            um_per_px: default,
            from: "the default",
            warning: None,
        },
    }
}

/// The areas (µm²) a class's objects can have, from the shape rules'
/// biology rather than fitted to any data: a worm at least 150 µm long and
/// 15 µm wide; an egg 600–9 000 µm²; a cyst at least 36 000 µm². Smaller
/// pieces of a class's map are fragments or debris, larger "eggs" are
/// clumps. Classes the rules do not know have no range.
pub fn size_range(class: &str) -> (f32, f32) {
    let r = ShapeRules::default();
    match class {
        "worm" => (r.worm_min_length_um * 15.0, f32::INFINITY),
        "egg" => (r.egg_min_area_um2, r.egg_max_area_um2),
        "cyst" => (r.cyst_min_area_um2, f32::INFINITY),
        _ => (0.0, f32::INFINITY),
    }
}

/// What a frame's light says, before any model looks at it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quality {
    /// Mean and deviation as stored (fractions of the file's full scale):
    /// what counting standardises with.
    pub mean: f64,
    pub std: f64,
    /// The top of the camera's range as a fraction of the file's full
    /// scale: 4095/65535 for a 12-bit camera writing 16-bit files. The
    /// light is judged against it, not against full scale.
    pub top: f64,
    /// Fraction of pixels at the top of the camera's range (≥ 0.995 top).
    pub saturated: f32,
}

impl Quality {
    /// Why counts from this frame should not be trusted, if they should
    /// not: no light (lamp off, shutter closed), a blank field (lens cap,
    /// nothing in focus), or an over-exposed one. Deliberately coarse: it
    /// catches a broken acquisition, not a slightly dim slide.
    pub fn problem(&self) -> Option<&'static str> {
        if self.mean < 0.02 * self.top {
            Some("dark frame (lamp off or shutter closed?)")
        } else if self.saturated > 0.25 {
            Some("over-exposed frame (a quarter of the pixels saturated)")
        } else if self.std < 0.002 * self.top {
            Some("blank frame (nothing in view or far out of focus?)")
        } else {
            None
        }
    }
}

/// Camera depths that write into 16-bit files, smallest first, as far as
/// they can be told from a frame (a 10-bit camera's frames look like a dim
/// 12-bit camera's; give `camera.bit_depth` for one).
const CAMERA_BITS: [u8; 3] = [12, 14, 16];

/// The top of the camera's range as a fraction of the file's full scale.
/// `bits` is the camera's depth when known; otherwise a 16-bit file is
/// taken to come from the smallest usual camera depth (12, 14 or 16 bits)
/// that holds its brightest pixel `max`: BBBC010's 12-bit data sits in
/// 16-bit files, at a mean of 1.5 % of full scale. Never below 12 bits, so
/// a 12-bit camera with its lamp off still reads as dark; a 16-bit camera
/// with its lamp off is caught from the frame only near black (under 80 of
/// 65535), so a unit should be told its camera's depth. 8-bit and float
/// data are judged against full scale.
pub fn light_top(storage_bits: Option<u8>, bits: Option<u8>, max: f64) -> f64 {
    let Some(store) = storage_bits.filter(|&s| s > 8) else {
        return 1.0;
    };
    let full = ((1u64 << store) - 1) as f64;
    let of = |b: u8| ((1u64 << b.min(store)) - 1) as f64 / full;
    match bits {
        Some(b) => of(b),
        None => CAMERA_BITS
            .iter()
            .map(|&b| of(b))
            .find(|&t| max <= t + 0.5 / full)
            .unwrap_or(1.0),
    }
}

/// Mean, deviation and saturated fraction of `frame`: two passes over its
/// rows in f64, the same figures `imageio::standardise` uses, so counting
/// standardises with them and reads the frame no third time. `bits` is
/// the camera's depth if known ([`light_top`]).
pub fn quality<L: Luma + ?Sized>(frame: &L, bits: Option<u8>) -> Quality {
    let (w, h) = (frame.width(), frame.height());
    let mut row = vec![0f32; w];
    let n = (w * h).max(1) as f64;
    let (mut sum, mut max) = (0f64, 0f64);
    for y in 0..h {
        frame.row_into(y, &mut row);
        for &v in &row {
            sum += v as f64;
            max = max.max(v as f64);
        }
    }
    let mean = sum / n;
    let top = light_top(frame.storage_bits(), bits, max);
    let at_top = (0.995 * top) as f32;
    let (mut ss, mut sat) = (0f64, 0usize);
    for y in 0..h {
        frame.row_into(y, &mut row);
        for &v in &row {
            ss += (v as f64 - mean).powi(2);
            sat += (v >= at_top) as usize;
        }
    }
    Quality {
        mean,
        std: (ss / n).sqrt(),
        top,
        saturated: (sat as f64 / n) as f32,
    }
}

/// Counts the objects of every class in `frame` (intensities 0..1).
pub fn count_frame<L: Luma + ?Sized>(
    model: &Model,
    frame: &L,
    s: &CountSettings,
) -> Result<Counted> {
    let m = &model.manifest;
    if m.normalisation != "per-image-standardise" {
        return Err(Error::Invalid(format!(
            "model normalisation `{}` is not supported",
            m.normalisation
        )));
    }
    let (fw, fh) = (frame.width(), frame.height());
    if fw == 0 || fh == 0 {
        return Err(Error::Invalid(format!("frame of {fw}x{fh} pixels")));
    }
    let q = quality(frame, s.bit_depth);
    // Frames are brought to the training data's pixel size first.
    let scale = frame_scale(m, s.calibration.um_per_px);
    let mut counted = if (scale - 1.0).abs() > 1e-6 {
        let w = ((fw as f32 * scale).round() as usize).max(1);
        let h = ((fh as f32 * scale).round() as usize).max(1);
        if w.max(h) > MAX_RESAMPLED_SIDE {
            return Err(Error::Invalid(format!(
                "a {fw}x{fh} frame at {} µm per pixel would be resampled to {w}x{h} for the \
                 model's scale: more than {MAX_RESAMPLED_SIDE} pixels a side (use a model \
                 trained nearer this scale, or check the pixel size)",
                s.calibration.um_per_px
            )));
        }
        let scaled = resize_bilinear(&frame.to_plane(), w, h)?;
        count_at(model, &scaled, &quality(&scaled, None), Some((fw, fh)), s)?
    } else {
        count_at(model, frame, &q, None, s)?
    };
    counted.quality = q;
    Ok(counted)
}

/// Which pixels along an axis each tile decides: the middle of each
/// overlap splits it between its two tiles (the U-Net paper's overlap-tile
/// strategy), so every pixel is decided once, by the tile where it is
/// furthest from an edge.
fn owned(starts: &[usize], tile: usize, len: usize) -> Vec<std::ops::Range<usize>> {
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

/// Thresholded class maps of `work`, one bit mask per class.
fn tile_masks<L: Luma + ?Sized>(
    model: &Model,
    work: &L,
    q: &Quality,
    overlap: usize,
) -> Result<Vec<BitMask>> {
    let m = &model.manifest;
    let classes = m.classes.len();
    let (w, h) = (work.width(), work.height());
    let [_, c, th, tw] = model.runner.input_shape;
    if c != 1 {
        return Err(Error::Invalid(format!(
            "the model takes {c} channels; frames are counted as gray"
        )));
    }
    // A constant frame standardises to zeros, as `imageio::standardise`.
    let (mean, inv) = (q.mean, if q.std > 1e-12 { 1.0 / q.std } else { 0.0 });
    let (ys, xs) = (tile_starts(h, th, overlap), tile_starts(w, tw, overlap));
    let (own_y, own_x) = (owned(&ys, th, h), owned(&xs, tw, w));
    let mut masks = vec![BitMask::new(w, h); classes];
    let mut band = vec![0f32; th * w];
    let mut tile = vec![0f32; th * tw];
    for (&y0, oy) in ys.iter().zip(&own_y) {
        // The band of rows under this row of tiles, standardised; rows
        // past the end repeat the last one.
        for (ty, row) in band.chunks_exact_mut(w).enumerate() {
            work.row_into((y0 + ty).min(h - 1), row);
            for v in row.iter_mut() {
                *v = ((*v as f64 - mean) * inv) as f32;
            }
        }
        for (&x0, ox) in xs.iter().zip(&own_x) {
            for (ty, out) in tile.chunks_exact_mut(tw).enumerate() {
                let row = &band[ty * w..(ty + 1) * w];
                for (tx, o) in out.iter_mut().enumerate() {
                    *o = row[(x0 + tx).min(w - 1)];
                }
            }
            let maps = model
                .runner
                .maps(&tile)
                .map_err(|e| Error::Invalid(format!("model: {e}")))?;
            if maps.len() != classes * th * tw {
                return Err(Error::Invalid(format!(
                    "model: {} output values for {classes} classes of {th}x{tw}",
                    maps.len()
                )));
            }
            for (k, mask) in masks.iter_mut().enumerate() {
                let map = &maps[k * th * tw..(k + 1) * th * tw];
                for y in oy.clone() {
                    let r = &map[(y - y0) * tw..];
                    for x in ox.clone() {
                        if r[x - x0] >= m.threshold {
                            mask.set(x, y, true);
                        }
                    }
                }
            }
        }
    }
    Ok(masks)
}

/// Counts `work` (at the model's pixel size); masks and measurements are
/// brought back to `frame_size` when the frame was resized.
fn count_at<L: Luma + ?Sized>(
    model: &Model,
    work: &L,
    q: &Quality,
    frame_size: Option<(usize, usize)>,
    s: &CountSettings,
) -> Result<Counted> {
    let m = &model.manifest;
    let mut masks = tile_masks(model, work, q, s.overlap)?;
    if let (Some(v), true) = (&m.voting, s.vote) {
        let seg = felzenszwalb::segment(
            &stretch(&work.to_plane(), 0.005, 0.995),
            &Params {
                scale: v.scale,
                sigma: v.sigma,
                min_size: v.min_size,
            },
        )?;
        for mask in masks.iter_mut() {
            *mask = BitMask::from_mask(&vote(&seg, &mask.to_mask(), v.rate)?);
        }
    }
    if let Some((fw, fh)) = frame_size {
        for mask in masks.iter_mut() {
            *mask = BitMask::from_mask(&resize_nearest(&mask.to_mask(), fw, fh)?);
        }
    }
    let cal = s.calibration;
    let px_area = cal.um_per_px * cal.um_per_px;
    let mut objects = Vec::new();
    let mut counts = vec![0; m.classes.len()];
    for (c, mask) in masks.iter().enumerate() {
        let (lo, hi) = size_range(&m.classes[c]);
        let lo = lo.max(s.min_area_um2);
        // Touching objects: counted by area where the bundle knows one
        // object's area (frames at the training images' resolution).
        let counter = m
            .object_area_px
            .get(&m.classes[c])
            .and_then(|&a| AreaCounter::new(a).ok());
        for o in measure_bits(mask) {
            let area_um2 = o.area as f32 * px_area;
            if !(lo..=hi).contains(&area_um2) {
                continue;
            }
            // A piece under a quarter of one object counts none.
            let n = counter.as_ref().map_or(1, |k| k.count_component(o.area));
            if n == 0 {
                continue;
            }
            counts[c] += n;
            objects.push(Measured {
                class: c,
                count: n,
                area_um2,
                length_um: o.length * cal.um_per_px,
                width_um: o.width * cal.um_per_px,
                centroid: o.centroid,
            });
        }
    }
    Ok(Counted {
        masks,
        objects,
        counts,
        quality: *q,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use nemascope_core::imageio::Pixels;
    use nemascope_core::{Grid, Plane};

    #[test]
    fn frames_are_resampled_to_the_models_scale_when_far_from_it() {
        let mut m = nemascope_bundle::Manifest::example();
        assert_eq!(m.um_per_px, Some(4.0));
        assert_eq!(frame_scale(&m, 4.0), 1.0);
        assert_eq!(
            frame_scale(&m, 4.4),
            1.0,
            "within the tolerance: as trained"
        );
        assert_eq!(frame_scale(&m, 2.0), 0.5, "finer pixels: the frame shrinks");
        assert_eq!(frame_scale(&m, 10.0), 2.5);
        m.pixel_scale = 0.5;
        assert_eq!(frame_scale(&m, 2.0), 0.25);
        m.um_per_px = None;
        assert_eq!(
            frame_scale(&m, 2.0),
            0.5,
            "no scale in the bundle: its own only"
        );
    }

    /// A synthetic frame stored as a camera of `bits` bits writes it into
    /// a 16-bit file, each value through `f` (0..1 of the camera's range).
    fn as_camera(bits: u8, f: impl Fn(f32) -> f32) -> Vec<Pixels> {
        use nemascope_core::synth::{generate, SynthConfig};
        let top = ((1u32 << bits) - 1) as f32;
        (0..4)
            .map(|i| {
                let p = generate(&SynthConfig::default(), 99, i).unwrap().image;
                let v = p
                    .data()
                    .iter()
                    .map(|&x| (f(x).clamp(0.0, 1.0) * top).round() as u16)
                    .collect();
                Pixels::Gray16(Grid::from_vec(p.width(), p.height(), v).unwrap())
            })
            .collect()
    }

    #[test]
    fn broken_acquisitions_are_flagged_and_real_frames_are_not() {
        use nemascope_core::synth::{generate, SynthConfig};
        let dark = Plane::filled(64, 48, 0.005);
        assert!(quality(&dark, None).problem().unwrap().contains("dark"));
        let white = Plane::filled(64, 48, 1.0);
        let e = quality(&white, None).problem().unwrap();
        assert!(e.contains("over-exposed"), "{e}");
        let grey = Plane::filled(64, 48, 0.5);
        assert!(quality(&grey, None).problem().unwrap().contains("blank"));
        for i in 0..4 {
            let f = generate(&SynthConfig::default(), 99, i).unwrap();
            let q = quality(&f.image, None);
            assert_eq!(q.problem(), None, "{q:?}");
        }
    }

    #[test]
    fn light_is_judged_against_the_cameras_range_not_the_files() {
        // 12-bit data in 16-bit files (BBBC010's case): a mean of a few
        // percent of full scale is a well-lit frame.
        for bits in [10, 12, 14, 16] {
            for f in as_camera(bits, |x| x) {
                let q = quality(&f, None);
                assert_eq!(q.problem(), None, "{bits} bits: {q:?}");
                assert_eq!(quality(&f, Some(bits)).problem(), None);
            }
        }
        let problem = |f: &Pixels, bits| quality(f, bits).problem().unwrap_or("none");
        for bits in [12, 16] {
            for f in as_camera(bits, |x| x * 0.01) {
                // Lamp off, with the camera's depth given.
                assert!(problem(&f, Some(bits)).contains("dark"), "{bits}");
            }
            // Found from the frame alone: near the black level.
            let black = if bits == 12 { 0.01 } else { 0.0005 };
            for f in as_camera(bits, |x| x * black) {
                assert!(problem(&f, None).contains("dark"), "{bits}");
            }
            for f in as_camera(bits, |x| x * 3.0) {
                let p = problem(&f, Some(bits));
                assert!(p.contains("over-exposed"), "{bits}: {p}");
                assert!(problem(&f, None).contains("over-exposed"), "{bits}");
            }
            for f in as_camera(bits, |_| 0.4) {
                assert!(problem(&f, None).contains("blank"), "{bits}");
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
}
