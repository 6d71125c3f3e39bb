//! The counting pipeline for one frame.

use nemascope_core::classical::FlatField;
use nemascope_core::counting::{AreaCounter, CountSample};
use nemascope_core::felzenszwalb::{self, Params};
use nemascope_core::imageio::stretch;
use nemascope_core::objects::{measure, Calibration, Object, ShapeRules};
use nemascope_core::voting::{vote, DEFAULT_RATE};
use nemascope_core::{Class, Mask, Plane, Result};

/// Everything that decides how a frame is counted.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub segmenter: FlatField,
    pub superpixels: Params,
    pub vote_rate: f32,
    pub rules: ShapeRules,
    pub calibration: Calibration,
    /// Per-class single-object area, fitted on frames with known counts;
    /// `None` counts one object per component.
    pub counters: [Option<AreaCounter>; 3],
}

impl Default for Pipeline {
    fn default() -> Self {
        Pipeline {
            segmenter: FlatField::default(),
            superpixels: Params::default(),
            vote_rate: DEFAULT_RATE,
            rules: ShapeRules::default(),
            calibration: Calibration::default(),
            counters: [None; 3],
        }
    }
}

/// One object with the class its shape gave.
#[derive(Debug, Clone)]
pub struct Found {
    pub class: Class,
    pub object: Object,
    /// Objects this component holds (touching worms count more than one).
    pub count: usize,
}

/// What a frame gave.
#[derive(Debug, Clone)]
pub struct FrameResult {
    /// Foreground after superpixel voting (all classes).
    pub foreground: Mask,
    /// Per-class masks in [`Class::ALL`] order.
    pub masks: Vec<Mask>,
    pub objects: Vec<Found>,
    pub counts: [usize; 3],
}

impl Pipeline {
    /// Segments, votes over superpixels, measures and counts one frame
    /// (intensities in 0..1, any bit depth).
    pub fn process(&self, frame: &Plane) -> Result<FrameResult> {
        let raw = self.segmenter.segment(frame)?;
        let seg = felzenszwalb::segment(&stretch(frame, 0.005, 0.995), &self.superpixels)?;
        let foreground = vote(&seg, &raw, self.vote_rate)?;
        let (comps, objs) = measure(&foreground);
        let mut class_of = vec![None; comps.count + 1];
        let mut objects = Vec::new();
        let mut counts = [0usize; 3];
        for o in objs {
            if let Some(c) = self.rules.classify(&o, self.calibration) {
                let k = c.index();
                let n = match &self.counters[k] {
                    Some(counter) => counter.count_component(o.area).max(1),
                    None => 1,
                };
                counts[k] += n;
                class_of[o.label as usize] = Some(c);
                objects.push(Found {
                    class: c,
                    object: o,
                    count: n,
                });
            }
        }
        let masks = Class::ALL
            .iter()
            .map(|&c| comps.labels.map(|&l| class_of[l as usize] == Some(c)))
            .collect();
        Ok(FrameResult {
            foreground,
            masks,
            objects,
            counts,
        })
    }

    /// Fits each class's single-object area on frames with known per-class
    /// masks and counts (a calibration set), so clusters split by area.
    pub fn calibrate(&mut self, truth: &[(Vec<Mask>, [usize; 3])]) -> Result<()> {
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
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_of_a_few_pixels_are_counted() {
        for (w, h) in [(1, 1), (2, 1), (1, 2), (3, 3), (8, 8), (13, 5)] {
            let data = (0..w * h).map(|i| (i % 7) as f32 / 7.0).collect();
            let r = Pipeline::default()
                .process(&Plane::from_vec(w, h, data).unwrap())
                .unwrap_or_else(|e| panic!("{w}x{h}: {e}"));
            assert_eq!(r.masks.len(), 3);
        }
    }
}
