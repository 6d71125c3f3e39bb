//! Counting with a signed model: frame → tiles standardised on the fly
//! with the frame's mean and deviation → tract maps → per-class bit masks
//! (`nemascope_core::tiling`; optional superpixel voting as the manifest
//! describes) → components from runs → counts and measurements in µm.
//!
//! Memory is the frame at its own depth (2 bytes a pixel for 16-bit), one
//! band of tile rows, tract's working memory for one tile and a bit per
//! pixel and class: no full-size float copy, map or label image.

use nemascope_bundle::manifest::{FLAT_FIELD_STANDARDISE, STANDARDISE};
use nemascope_bundle::ObjectVerifier;
use nemascope_core::counting::AreaCounter;
use nemascope_core::felzenszwalb::Params;
use nemascope_core::flatfield::Flattened;
use nemascope_core::imageio::{moments, resample, resize_nearest, Luma};
use nemascope_core::objects::{measure_bits_each, BBox, Calibration, ShapeRules};
use nemascope_core::tiling::{threshold_tiles, TilePlan};
use nemascope_core::verify::{core_level, features, pixel_stats, FEATURES};
use nemascope_core::voting::{superpixels, vote_masks};
use nemascope_core::{BitMask, Mask};

use crate::light::{quality, Quality};
use crate::model::Model;
use crate::scale::{frame_scale, MAX_RESAMPLED_SIDE};
use crate::{CountError, Result};

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
    /// Bright-field light: a background at the top of the range is not
    /// over-exposure (`light::Quality::bright_field`).
    pub bright_field: bool,
    /// Threads for the model's tiles and the measuring of objects (1: all
    /// on the caller's thread). The counts are the same for any number.
    pub threads: usize,
    /// Keep every candidate object's verifier measures in
    /// [`Counted::candidates`], verified or not: what the trainer fits a
    /// verifier on.
    pub candidates: bool,
}

impl Default for CountSettings {
    fn default() -> Self {
        CountSettings {
            overlap: 32,
            vote: false,
            min_area_um2: 0.0,
            calibration: Calibration::default(),
            bit_depth: None,
            bright_field: false,
            threads: 1,
            candidates: false,
        }
    }
}

/// One counted object, measured where the model saw the frame (at the
/// model's pixel size), placed in the frame's pixels.
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
    /// The class's verifier's score, where the model has one.
    pub score: Option<f32>,
}

/// One candidate object (a component within its class's size range) and
/// what the verifier saw of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub class: usize,
    /// Centre in frame pixels (x, y).
    pub centroid: (f32, f32),
    /// `nemascope_core::verify::FEATURES`, at the model's pixel size.
    pub features: [f32; FEATURES.len()],
    /// The verifier's score, where the class has one.
    pub score: Option<f32>,
    /// Whether it was counted.
    pub counted: bool,
}

/// What one frame gave.
#[derive(Debug, Clone)]
pub struct Counted {
    /// Per class, at the frame's size: the pixels of the objects counted,
    /// nothing else (no piece dropped by size, no candidate the verifier
    /// turned down), so an overlay outlines exactly what the count says.
    pub masks: Vec<BitMask>,
    pub objects: Vec<Measured>,
    /// Objects per class, in the manifest's class order.
    pub counts: Vec<usize>,
    /// The frame's light, as given (before any resizing).
    pub quality: Quality,
    /// Every candidate with its measures, when
    /// [`CountSettings::candidates`] asked for them.
    pub candidates: Vec<Candidate>,
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

/// A class's size range ([`size_range`], raised to a floor) in pixels of a
/// given size: whether a component of so many pixels can be one of the
/// class's objects. The one place the rule's µm² meet a frame's pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SizeRange {
    lo_um2: f64,
    hi_um2: f64,
    px_um2: f64,
}

impl SizeRange {
    /// `class`'s range, at least `min_um2`, for pixels `um_per_px` wide.
    pub fn new(class: &str, um_per_px: f32, min_um2: f32) -> Self {
        let (lo, hi) = size_range(class);
        SizeRange {
            lo_um2: f64::from(lo.max(min_um2)),
            hi_um2: f64::from(hi),
            px_um2: f64::from(um_per_px).powi(2),
        }
    }

    /// Whether `area_px` pixels lie within the range.
    pub fn holds(&self, area_px: f64) -> bool {
        (self.lo_um2..=self.hi_um2).contains(&(area_px * self.px_um2))
    }
}

/// Counts the objects of every class in `frame` (intensities 0..1).
pub fn count_frame<L: Luma + Sync + ?Sized>(
    model: &Model,
    frame: &L,
    s: &CountSettings,
) -> Result<Counted> {
    let at = [model.manifest.thresholds()];
    let mut counted = count_at(model, frame, s, &at)?;
    Ok(counted.remove(0))
}

/// Counts `frame` once per set of `thresholds` (one per class, in class
/// order) instead of the manifest's, from one pass of the model: what the
/// trainer chooses each class's threshold from.
pub fn count_at<L: Luma + Sync + ?Sized>(
    model: &Model,
    frame: &L,
    s: &CountSettings,
    thresholds: &[Vec<f32>],
) -> Result<Vec<Counted>> {
    let m = &model.manifest;
    if ![STANDARDISE, FLAT_FIELD_STANDARDISE].contains(&m.normalisation.as_str()) {
        return Err(CountError::Unsupported(format!(
            "model normalisation `{}` is not supported",
            m.normalisation
        )));
    }
    let (fw, fh) = (frame.width(), frame.height());
    if fw == 0 || fh == 0 {
        return Err(nemascope_core::Error::Invalid(format!("frame of {fw}x{fh} pixels")).into());
    }
    let mut q = quality(frame, s.bit_depth);
    q.bright_field = s.bright_field;
    // A frame at another pixel size than the model's is counted where the
    // model sees it: resampled to the model's pixel size (area-averaged
    // when it shrinks, as a coarser camera would record it), its objects
    // measured there in µm and the verifier fed what it was fitted on.
    // Only the masks and the objects' places come back to the frame, so
    // a frame counts what it counts binned or enlarged to the model's size.
    let scale = frame_scale(m, s.calibration.um_per_px);
    if (scale - 1.0).abs() <= 1e-6 {
        return count_seen(model, frame, q, s, thresholds);
    }
    let w = ((fw as f32 * scale).round() as usize).max(1);
    let h = ((fh as f32 * scale).round() as usize).max(1);
    if w.max(h) > MAX_RESAMPLED_SIDE {
        return Err(CountError::Unsupported(format!(
            "a {fw}x{fh} frame at {} µm per pixel would be resampled to {w}x{h} for the \
             model's scale: more than {MAX_RESAMPLED_SIDE} pixels a side (use a model \
             trained nearer this scale, or check the pixel size)",
            s.calibration.um_per_px
        )));
    }
    let work = resample(&frame.to_plane(), w, h)?;
    let at_model = CountSettings {
        calibration: Calibration {
            um_per_px: s.calibration.um_per_px / scale,
        },
        ..*s
    };
    let (sx, sy) = (fw as f32 / w as f32, fh as f32 / h as f32);
    let back = |(x, y): (f32, f32)| ((x + 0.5) * sx - 0.5, (y + 0.5) * sy - 0.5);
    let mut out = count_seen(model, &work, quality(&work, None), &at_model, thresholds)?;
    for c in &mut out {
        c.quality = q;
        for k in &mut c.masks {
            *k = BitMask::from_mask(&resize_nearest(&k.to_mask(), fw, fh)?);
        }
        for o in &mut c.objects {
            o.centroid = back(o.centroid);
        }
        for o in &mut c.candidates {
            o.centroid = back(o.centroid);
        }
    }
    Ok(out)
}

/// [`count_at`] for a frame at the model's pixel size, whose light is `q`.
/// A model trained on flat-field corrected images sees the frame divided
/// by its lamp, standardised with the corrected frame's figures; the
/// counts report the light as it came.
fn count_seen<L: Luma + Sync + ?Sized>(
    model: &Model,
    frame: &L,
    q: Quality,
    s: &CountSettings,
    thresholds: &[Vec<f32>],
) -> Result<Vec<Counted>> {
    let Some(block) = model.manifest.flat_field() else {
        return count_as_seen(model, frame, q, s, thresholds);
    };
    let flat = Flattened::new(frame, block);
    let m = moments(&flat, |_| f32::INFINITY);
    let seen = Quality {
        mean: m.mean,
        std: m.std,
        ..q
    };
    let mut out = count_as_seen(model, &flat, seen, s, thresholds)?;
    for c in &mut out {
        c.quality = q;
    }
    Ok(out)
}

/// [`count_seen`] once the frame is as the model saw its training images.
fn count_as_seen<L: Luma + Sync + ?Sized>(
    model: &Model,
    frame: &L,
    q: Quality,
    s: &CountSettings,
    thresholds: &[Vec<f32>],
) -> Result<Vec<Counted>> {
    let m = &model.manifest;
    let verifiers: Vec<Option<&ObjectVerifier>> =
        m.classes.iter().map(|c| m.verifiers.get(c)).collect();
    // Each set's foreground masks, then (for the verifier) each set's cores.
    let mut levels = thresholds.to_vec();
    let cored = s.candidates || verifiers.iter().any(Option::is_some);
    if cored {
        levels.extend(
            thresholds
                .iter()
                .map(|t| t.iter().map(|&x| core_level(x)).collect::<Vec<_>>()),
        );
    }
    let mut masks = class_masks(model, frame, &q, levels, thresholds.len(), s)?;
    let n = m.classes.len();
    let mut cores = masks.split_off(thresholds.len() * n).into_iter();
    let per_object = object_areas_at(m, s.calibration.um_per_px);
    let mut sets = masks.into_iter();
    let mut out = Vec::with_capacity(thresholds.len());
    for _ in thresholds {
        let fg: Vec<BitMask> = sets.by_ref().take(n).collect();
        let check = cored.then(|| Check {
            frame,
            mean: q.mean,
            std: q.std,
            cores: cores.by_ref().take(n).collect(),
            verifiers: verifiers.clone(),
        });
        out.push(counted(fg, &m.classes, |c| per_object[c], s, q, check));
    }
    Ok(out)
}

/// What the object verifier needs of a frame: the frame (measured with
/// its own standardisation, as the model saw it), each class's core mask
/// at the frame's size, and each class's verifier.
pub struct Check<'a, L: ?Sized> {
    pub frame: &'a L,
    pub mean: f64,
    pub std: f64,
    pub cores: Vec<BitMask>,
    pub verifiers: Vec<Option<&'a ObjectVerifier>>,
}

/// One object's area per class in the frame's pixels. The manifest gives
/// it in the training images' pixels (`um_per_px` of the bundle), and
/// components are measured at the frame's own size, so it scales with
/// the square of the pixel sizes' ratio: a frame at 2 µm has four pixels
/// where the model's 4 µm images had one. Without this, a touching-object
/// split at any scale but the model's multiplied the counts.
pub fn object_areas_at(m: &nemascope_bundle::Manifest, frame_um_per_px: f32) -> Vec<Option<f64>> {
    let ratio = m
        .um_per_px
        .map_or(1.0, |model| f64::from(model) / f64::from(frame_um_per_px));
    m.classes
        .iter()
        .map(|c| m.object_area_px.get(c).map(|a| a * ratio * ratio))
        .collect()
}

/// The model's class masks of `work`, a frame at the model's pixel size,
/// at each set of `levels` (set l, class k at `l · classes + k`); the
/// first `voted` sets are superpixel-voted if asked (the later ones are
/// cores: the map's own confidence, never voted).
fn class_masks<L: Luma + ?Sized>(
    model: &Model,
    work: &L,
    q: &Quality,
    levels: Vec<Vec<f32>>,
    voted: usize,
    s: &CountSettings,
) -> Result<Vec<BitMask>> {
    let m = &model.manifest;
    let [_, c, th, tw] = model.runner.input_shape;
    if c != 1 {
        return Err(CountError::Unsupported(format!(
            "the model takes {c} channels; frames are counted as gray"
        )));
    }
    let plan = TilePlan {
        tile: [th, tw],
        overlap: s.overlap,
        mean: q.mean,
        std: q.std,
        levels,
        threads: s.threads,
    };
    let n = m.classes.len();
    let mut masks = threshold_tiles(work, &plan, n, |tile| {
        model.runner.maps(tile).map_err(CountError::from)
    })?;
    let cores = masks.split_off(voted * n);
    match (&m.voting, s.vote) {
        (Some(v), true) => {
            let p = Params {
                scale: v.scale,
                sigma: v.sigma,
                min_size: v.min_size,
            };
            let seg = superpixels(&work.to_plane(), &p)?;
            let mut out = Vec::with_capacity(masks.len() + cores.len());
            for set in masks.chunks(n) {
                let plain: Vec<Mask> = set.iter().map(BitMask::to_mask).collect();
                let voted = vote_masks(&seg, &plain, v.rate, None)?;
                out.extend(voted.iter().map(BitMask::from_mask));
            }
            out.extend(cores);
            Ok(out)
        }
        _ => Ok(masks.into_iter().chain(cores).collect()),
    }
}

/// The counting rules, the same for every segmenter: each class's
/// components within its size range ([`size_range`], and at least
/// `min_area_um2`) are candidates; a class with a verifier (in `check`)
/// counts the candidates it accepts and clears the others from its mask,
/// and every candidate counts otherwise. Where one object's area (pixels)
/// is known, a component counts by area and a piece under a quarter of one
/// object counts none.
pub fn counted<L: Luma + Sync + ?Sized>(
    mut masks: Vec<BitMask>,
    classes: &[String],
    object_area_px: impl Fn(usize) -> Option<f64>,
    s: &CountSettings,
    quality: Quality,
    check: Option<Check<'_, L>>,
) -> Counted {
    let cal = s.calibration;
    let px_area = cal.um_per_px * cal.um_per_px;
    let mut objects = Vec::new();
    let mut candidates = Vec::new();
    let mut counts = vec![0; classes.len()];
    for (c, mask) in masks.iter_mut().enumerate() {
        let range = SizeRange::new(&classes[c], cal.um_per_px, s.min_area_um2);
        let counter = object_area_px(c).and_then(|a| AreaCounter::new(a).ok());
        let objects_in = |area: usize| counter.as_ref().map_or(1, |k| k.count_component(area));
        // Components outside the class's size range, or too small a piece
        // to count, are dropped before their shapes are measured.
        let counts_as = |area: usize| range.holds(area as f64) && objects_in(area) > 0;
        let verifier = check
            .as_ref()
            .and_then(|k| k.verifiers.get(c).copied().flatten());
        // Each candidate's pixel measures where a verifier or the caller
        // wants them, and its pixels: the mask is redrawn from the objects
        // counted, so pieces dropped by size and candidates the verifier
        // turns down leave no outline.
        let measured = check
            .as_ref()
            .filter(|_| verifier.is_some() || s.candidates);
        let seen = |b: BBox, crop: &BitMask| {
            let stats = measured.map(|k| pixel_stats(b, crop, &k.cores[c], k.frame, k.mean, k.std));
            (stats, (b, crop.clone()))
        };
        let mut kept = Vec::new();
        for (o, (stats, pixels)) in measure_bits_each(mask, s.threads, counts_as, seen) {
            let f = stats.map(|st| features(&o, &st, cal.um_per_px));
            let score = verifier.zip(f.as_ref()).map(|(v, f)| v.score(f));
            let accepted = match (verifier, score) {
                (Some(v), Some(p)) => p >= v.threshold,
                _ => true,
            };
            if let (true, Some(f)) = (s.candidates, f) {
                candidates.push(Candidate {
                    class: c,
                    centroid: o.centroid,
                    features: f,
                    score,
                    counted: accepted,
                });
            }
            if !accepted {
                continue;
            }
            kept.push(pixels);
            let area_um2 = o.area as f32 * px_area;
            let n = objects_in(o.area);
            counts[c] += n;
            objects.push(Measured {
                class: c,
                count: n,
                area_um2,
                length_um: o.length * cal.um_per_px,
                width_um: o.width * cal.um_per_px,
                centroid: o.centroid,
                score,
            });
        }
        *mask = BitMask::new(mask.width(), mask.height());
        for (b, crop) in kept {
            for y in b.y0..b.y1 {
                for x in b.x0..b.x1 {
                    if crop.get(x - b.x0 + 1, y - b.y0 + 1) {
                        mask.set(x, y, true);
                    }
                }
            }
        }
    }
    Counted {
        masks,
        objects,
        counts,
        quality,
        candidates,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nemascope_core::Plane;

    /// An egg is 600–9 000 µm²: 37.5–562.5 pixels at 4 µm, four times as
    /// many at 2 µm; a floor above the class's own lower bound raises it.
    #[test]
    fn a_size_range_is_the_class_rule_in_the_frame_pixels() {
        let at4 = SizeRange::new("egg", 4.0, 0.0);
        assert!(!at4.holds(37.0) && at4.holds(38.0) && at4.holds(562.0) && !at4.holds(563.0));
        let at2 = SizeRange::new("egg", 2.0, 0.0);
        assert!(!at2.holds(149.0) && at2.holds(150.0) && at2.holds(2250.0) && !at2.holds(2251.0));
        let floored = SizeRange::new("egg", 4.0, 1600.0);
        assert!(!floored.holds(99.0) && floored.holds(100.0));
        // a class the rules do not know: any area, and the floor
        assert!(SizeRange::new("larva", 4.0, 0.0).holds(1.0));
        assert!(!SizeRange::new("larva", 4.0, 32.0).holds(1.0));
    }

    /// An egg of 10×10 pixels (1 600 µm² at 4 µm) beside a 2×2 speck
    /// (64 µm², under the smallest egg): one egg is counted, and the mask
    /// (what `--masks` writes and overlays outline) holds the egg alone.
    #[test]
    fn the_masks_hold_only_the_objects_counted() {
        let (w, h) = (32, 24);
        let mut mask = BitMask::new(w, h);
        for y in 4..14 {
            for x in 4..14 {
                mask.set(x, y, true);
            }
        }
        for (x, y) in [(24, 18), (25, 18), (24, 19), (25, 19)] {
            mask.set(x, y, true);
        }
        let frame = Plane::filled(w, h, 0.5);
        let s = CountSettings {
            calibration: Calibration { um_per_px: 4.0 },
            ..CountSettings::default()
        };
        let none: Option<Check<'_, Plane>> = None;
        let c = counted(
            vec![mask],
            &["egg".to_string()],
            |_| None,
            &s,
            quality(&frame, None),
            none,
        );
        assert_eq!(c.counts, [1]);
        assert_eq!(c.masks[0].count(), 100);
        assert!(c.masks[0].get(8, 8));
        assert!(
            !c.masks[0].get(24, 18),
            "the speck is not counted, so not drawn"
        );
    }
}
