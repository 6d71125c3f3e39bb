//! Counting with a signed model: frame → per-image standardised tiles →
//! tract maps → per-class masks (threshold, optional superpixel voting as
//! the manifest describes) → components → counts and measurements in µm.
//! The path the shipped bundles run on the unit.

use nemascope_core::counting::AreaCounter;
use nemascope_core::felzenszwalb::{self, Params};
use nemascope_core::imageio::{resize_bilinear, resize_nearest, standardise, stretch};
use nemascope_core::objects::{measure, Calibration, ShapeRules};
use nemascope_core::voting::vote;
use nemascope_core::{Error, Mask, Plane, Result};

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
}

impl Default for CountSettings {
    fn default() -> Self {
        CountSettings {
            overlap: 32,
            vote: false,
            min_area_um2: 0.0,
            calibration: Calibration::default(),
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
    pub masks: Vec<Mask>,
    pub objects: Vec<Measured>,
    /// Objects per class, in the manifest's class order.
    pub counts: Vec<usize>,
}

impl Counted {
    /// Every class's mask in one (for the `--masks` output).
    pub fn any(&self) -> Option<Mask> {
        Mask::union(&self.masks.iter().collect::<Vec<_>>())
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

/// Counts the objects of every class in `frame` (intensities 0..1).
pub fn count_frame(model: &Model, frame: &Plane, s: &CountSettings) -> Result<Counted> {
    let m = &model.manifest;
    if m.normalisation != "per-image-standardise" {
        return Err(Error::Invalid(format!(
            "model normalisation `{}` is not supported",
            m.normalisation
        )));
    }
    let (fw, fh) = (frame.width(), frame.height());
    // Frames are brought to the training data's pixel size first.
    let scaled = if (m.pixel_scale - 1.0).abs() > 1e-6 {
        let w = ((fw as f32 * m.pixel_scale).round() as usize).max(1);
        let h = ((fh as f32 * m.pixel_scale).round() as usize).max(1);
        Some(resize_bilinear(frame, w, h)?)
    } else {
        None
    };
    let work = scaled.as_ref().unwrap_or(frame);
    let (w, h) = (work.width(), work.height());
    let mut x = work.clone();
    standardise(&mut x);
    let maps = model
        .runner
        .predict(x.data(), h, w, s.overlap)
        .map_err(|e| Error::Invalid(format!("model: {e}")))?;
    drop(x);
    let seg = match (&m.voting, s.vote) {
        (Some(v), true) => Some(felzenszwalb::segment(
            &stretch(work, 0.005, 0.995),
            &Params {
                scale: v.scale,
                sigma: v.sigma,
                min_size: v.min_size,
            },
        )?),
        _ => None,
    };
    let cal = s.calibration;
    let px_area = cal.um_per_px * cal.um_per_px;
    let mut masks = Vec::with_capacity(m.classes.len());
    let mut objects = Vec::new();
    let mut counts = vec![0; m.classes.len()];
    for (c, map) in maps.chunks_exact(w * h).enumerate() {
        let (lo, hi) = size_range(&m.classes[c]);
        let lo = lo.max(s.min_area_um2);
        // Touching objects: counted by area where the bundle knows one
        // object's area (frames at the training images' resolution).
        let counter = m
            .object_area_px
            .get(&m.classes[c])
            .and_then(|&a| AreaCounter::new(a).ok());
        let mut mask = Mask::from_vec(w, h, map.iter().map(|&p| p >= m.threshold).collect())?;
        if let (Some(seg), Some(v)) = (&seg, &m.voting) {
            mask = vote(seg, &mask, v.rate)?;
        }
        if scaled.is_some() {
            mask = resize_nearest(&mask, fw, fh)?;
        }
        let (_, objs) = measure(&mask);
        for o in objs {
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
        masks.push(mask);
    }
    Ok(Counted {
        masks,
        objects,
        counts,
    })
}
