//! The classical floor a model is compared with: a flat-field threshold,
//! superpixel voting, and each component classed by its shape (worms are
//! long and thin, eggs small ovals, cysts large discs). Counted by the
//! same rules as a model's masks ([`crate::count::counted`]).

use nemascope_core::classical::FlatField;
use nemascope_core::counting::{AreaCounter, CountSample};
use nemascope_core::felzenszwalb::Params;
use nemascope_core::imageio::Luma;
use nemascope_core::objects::{measure, ShapeRules};
use nemascope_core::voting::{superpixels, vote, DEFAULT_RATE};
use nemascope_core::{BitMask, Class, Mask, Plane};

use crate::count::{counted, Check, CountSettings, Counted};
use crate::light::quality;
use crate::{Result, Segmenter};

/// Everything that decides how the classical path counts a frame.
#[derive(Debug, Clone)]
pub struct Classical {
    pub segmenter: FlatField,
    pub superpixels: Params,
    pub vote_rate: f32,
    pub rules: ShapeRules,
    /// Per-class single-object area (pixels), fitted on frames with known
    /// counts ([`Classical::calibrate`]); `None` counts one object per
    /// component.
    pub counters: [Option<AreaCounter>; 3],
    classes: Vec<String>,
}

impl Default for Classical {
    fn default() -> Self {
        Classical {
            segmenter: FlatField::default(),
            superpixels: Params::default(),
            vote_rate: DEFAULT_RATE,
            rules: ShapeRules::default(),
            counters: [None; 3],
            classes: Class::ALL.iter().map(|c| c.name().to_string()).collect(),
        }
    }
}

impl Classical {
    /// The voted foreground of all classes, and the counted result with
    /// each component in the class its shape gives.
    pub fn process(&self, frame: &dyn Luma, s: &CountSettings) -> Result<(Mask, Counted)> {
        let mut q = quality(frame, s.bit_depth);
        q.bright_field = s.bright_field;
        let plane = frame.to_plane();
        let raw = self.segmenter.segment(&plane)?;
        let foreground = vote(
            &superpixels(&plane, &self.superpixels)?,
            &raw,
            self.vote_rate,
        )?;
        let (comps, objs) = measure(&foreground);
        let mut class_of = vec![None; comps.count + 1];
        for o in &objs {
            class_of[o.label as usize] = self.rules.classify(o, s.calibration);
        }
        let masks = Class::ALL
            .iter()
            .map(|&c| BitMask::from_mask(&comps.labels.map(|&l| class_of[l as usize] == Some(c))))
            .collect();
        let area_px = |k: usize| self.counters[k].map(|c| c.reference_area);
        let none: Option<Check<'_, Plane>> = None;
        Ok((
            foreground,
            counted(masks, &self.classes, area_px, s, q, none),
        ))
    }

    /// Fits each class's single-object area on frames with known per-class
    /// masks and counts (a calibration set), so clusters split by area.
    pub fn calibrate(&mut self, truth: &[(Vec<Mask>, [usize; 3])]) {
        for k in 0..3 {
            let samples: Vec<CountSample> = truth
                .iter()
                .map(|(masks, counts)| {
                    let (_, objs) = measure(&masks[k]);
                    CountSample {
                        areas: objs.iter().map(|o| o.area).collect(),
                        count: counts[k],
                    }
                })
                .collect();
            self.counters[k] = AreaCounter::fit(&samples).ok();
        }
    }
}

impl Segmenter for Classical {
    fn classes(&self) -> &[String] {
        &self.classes
    }
    fn count(&self, frame: &(dyn Luma + Sync), s: &CountSettings) -> Result<Counted> {
        Ok(self.process(frame, s)?.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nemascope_core::Plane;

    #[test]
    fn frames_of_a_few_pixels_are_counted() {
        for (w, h) in [(1, 1), (2, 1), (1, 2), (3, 3), (8, 8), (13, 5)] {
            let data = (0..w * h).map(|i| (i % 7) as f32 / 7.0).collect();
            let r = Classical::default()
                .count(
                    &Plane::from_vec(w, h, data).unwrap(),
                    &CountSettings::default(),
                )
                .unwrap_or_else(|e| panic!("{w}x{h}: {e}"));
            assert_eq!(r.masks.len(), 3);
            assert_eq!(r.counts.len(), 3);
        }
    }
}
