//! Counting that survives touching worms.
//!
//! Worms touch and cross, so one connected component can hold several.
//! Each component counts `max(1, round(area / reference))` where the
//! reference single-object area is fitted on data with known counts (or
//! set from a calibration), never hard-coded; components smaller than a
//! fraction of the reference are fragments and count zero.

use crate::{Error, Result};

/// Counts objects from component areas.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AreaCounter {
    /// Typical area of one object, in pixels.
    pub reference_area: f64,
    /// Components below `min_fraction × reference_area` count zero.
    pub min_fraction: f64,
}

/// Training data for the counter: component areas of one image and its
/// true count.
#[derive(Debug, Clone)]
pub struct CountSample {
    pub areas: Vec<usize>,
    pub count: usize,
}

impl AreaCounter {
    pub const DEFAULT_MIN_FRACTION: f64 = 0.25;

    /// A counter from a known single-object area.
    pub fn new(reference_area: f64) -> Result<Self> {
        if !(reference_area.is_finite() && reference_area > 0.0) {
            return Err(Error::Invalid(format!(
                "reference area must be positive, got {reference_area}"
            )));
        }
        Ok(AreaCounter {
            reference_area,
            min_fraction: Self::DEFAULT_MIN_FRACTION,
        })
    }

    /// Count of one component.
    pub fn count_component(&self, area: usize) -> usize {
        let r = area as f64 / self.reference_area;
        if r < self.min_fraction {
            0
        } else {
            (r.round() as usize).max(1)
        }
    }

    /// Count of an image from its component areas.
    pub fn count(&self, areas: &[usize]) -> usize {
        areas.iter().map(|&a| self.count_component(a)).sum()
    }

    /// Fits the reference area to images with known counts: starts from the
    /// ratio estimate Σarea/Σcount and searches ±50 % around it for the value
    /// with the smallest total absolute count error (ties go to the value
    /// nearest the ratio estimate).
    pub fn fit(samples: &[CountSample]) -> Result<Self> {
        let total_area: usize = samples.iter().flat_map(|s| &s.areas).sum();
        let total_count: usize = samples.iter().map(|s| s.count).sum();
        if total_count == 0 || total_area == 0 {
            return Err(Error::Invalid(
                "cannot fit a counter: no objects in the samples".into(),
            ));
        }
        let ratio = total_area as f64 / total_count as f64;
        let mut best = (f64::INFINITY, f64::INFINITY, ratio);
        for step in 0..=200 {
            let r = ratio * (0.5 + step as f64 / 200.0);
            let c = AreaCounter::new(r)?;
            let err: f64 = samples
                .iter()
                .map(|s| (c.count(&s.areas) as f64 - s.count as f64).abs())
                .sum();
            let dist = (r - ratio).abs();
            if err < best.0 || (err == best.0 && dist < best.1) {
                best = (err, dist, r);
            }
        }
        AreaCounter::new(best.2)
    }
}

/// Mean absolute count error over images.
pub fn mean_abs_error(pred: &[usize], truth: &[usize]) -> f64 {
    if pred.is_empty() {
        return 0.0;
    }
    pred.iter()
        .zip(truth)
        .map(|(&p, &t)| (p as f64 - t as f64).abs())
        .sum::<f64>()
        / pred.len() as f64
}

/// What image-level labels alone say of one class's counts, tallied over
/// tiles (or images): those labelled absent where something was counted
/// (debris counted), those labelled present where nothing was (objects
/// missed). Needs no masks, so a lab can judge its own model with it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LabelCheck {
    pub absent: usize,
    pub counted_in_absent: usize,
    /// Objects counted in absent tiles, all of them false.
    pub objects_in_absent: usize,
    pub present: usize,
    pub nothing_in_present: usize,
}

impl LabelCheck {
    /// One tile labelled `present`, on which `counted` objects were counted.
    pub fn add(&mut self, present: bool, counted: usize) {
        if present {
            self.present += 1;
            self.nothing_in_present += usize::from(counted == 0);
        } else {
            self.absent += 1;
            self.counted_in_absent += usize::from(counted > 0);
            self.objects_in_absent += counted;
        }
    }

    pub fn merge(&mut self, o: &LabelCheck) {
        self.absent += o.absent;
        self.counted_in_absent += o.counted_in_absent;
        self.objects_in_absent += o.objects_in_absent;
        self.present += o.present;
        self.nothing_in_present += o.nothing_in_present;
    }

    /// Fraction of absent tiles with something counted (`None`: no such tile).
    pub fn counted_in_absent_rate(&self) -> Option<f64> {
        (self.absent > 0).then(|| self.counted_in_absent as f64 / self.absent as f64)
    }

    /// Fraction of present tiles with nothing counted.
    pub fn nothing_in_present_rate(&self) -> Option<f64> {
        (self.present > 0).then(|| self.nothing_in_present as f64 / self.present as f64)
    }

    /// The count errors the labels prove, per tile: objects counted in
    /// absent tiles (every one false) and present tiles with nothing
    /// counted (each at least one object missed). Each error weighs the
    /// same wherever it is, as in a count's error; unlike "absent tiles
    /// with something counted" it keeps growing with the debris once every
    /// absent tile has some. 0 with no tiles.
    pub fn proven_errors(&self) -> f64 {
        let tiles = self.absent + self.present;
        if tiles == 0 {
            return 0.0;
        }
        (self.objects_in_absent + self.nothing_in_present) as f64 / tiles as f64
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn label_checks_tally_debris_counted_and_objects_missed() {
        let mut c = super::LabelCheck::default();
        for (present, n) in [(false, 0), (false, 2), (true, 0), (true, 1), (true, 3)] {
            c.add(present, n);
        }
        assert_eq!(c.counted_in_absent_rate(), Some(0.5));
        assert_eq!(c.nothing_in_present_rate(), Some(1.0 / 3.0));
        // 2 objects in absent tiles, 1 present tile empty, of 5 tiles.
        assert!((c.proven_errors() - 3.0 / 5.0).abs() < 1e-12);
        assert_eq!(super::LabelCheck::default().proven_errors(), 0.0);
        assert_eq!(super::LabelCheck::default().counted_in_absent_rate(), None);
    }

    use super::*;

    #[test]
    fn clusters_split_by_area_and_fragments_dropped() {
        let c = AreaCounter::new(100.0).unwrap();
        assert_eq!(c.count_component(100), 1);
        assert_eq!(c.count_component(60), 1);
        assert_eq!(c.count_component(160), 2);
        assert_eq!(c.count_component(290), 3);
        assert_eq!(c.count_component(20), 0);
        assert_eq!(c.count(&[100, 210, 10]), 3);
        assert!(AreaCounter::new(0.0).is_err());
    }

    #[test]
    fn fit_recovers_the_single_object_area() {
        // Images of objects of ~500 px, some touching in pairs and threes.
        let samples = vec![
            CountSample {
                areas: vec![480, 510, 1000, 495],
                count: 5,
            },
            CountSample {
                areas: vec![520, 1530, 505],
                count: 5,
            },
            CountSample {
                areas: vec![490, 500],
                count: 2,
            },
        ];
        let c = AreaCounter::fit(&samples).unwrap();
        assert!((c.reference_area - 500.0).abs() < 60.0, "{c:?}");
        for s in &samples {
            assert_eq!(c.count(&s.areas), s.count);
        }
        assert!(AreaCounter::fit(&[CountSample {
            areas: vec![],
            count: 0
        }])
        .is_err());
    }

    #[test]
    fn mean_abs_error_averages() {
        assert_eq!(mean_abs_error(&[3, 5], &[4, 5]), 0.5);
        assert_eq!(mean_abs_error(&[], &[]), 0.0);
    }
}
