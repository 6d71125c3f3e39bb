//! What a bundle says about its model. Everything the edge runtime needs to
//! feed the model and read its output travels here, so a unit never guesses.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Manifest format version; a runtime refuses formats it does not know.
pub const FORMAT: u32 = 1;

/// The plain input normalisation: zero mean, unit deviation over the frame.
pub const STANDARDISE: &str = "per-image-standardise";
/// The frame divided by its lamp first (`flat_field_px`), then standardised.
pub const FLAT_FIELD_STANDARDISE: &str = "flat-field-standardise";

/// The largest pixel size anything accepts (µm in the sample plane): far
/// beyond any microscope, small enough to catch a value in nm or mm.
pub const MAX_UM_PER_PX: f32 = 1000.0;

/// Whether `um` is a pixel size: above 0 and at most [`MAX_UM_PER_PX`].
/// The one check the manifest, the unit's config, `count` and the trainer
/// share.
pub fn valid_um_per_px(um: f32) -> bool {
    um.is_finite() && um > 0.0 && um <= MAX_UM_PER_PX
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    /// Short name shown on the display, e.g. "bbbc010-worm-student-int8".
    pub name: String,
    /// One sigmoid map per class, in output-channel order.
    pub classes: Vec<String>,
    /// Fixed model input `[channels, height, width]`; frames are tiled.
    pub input: [usize; 3],
    /// Frames are resized so that one pixel matches the training data's
    /// pixel: `frame pixels × scale` (1.0 = same magnification).
    pub pixel_scale: f32,
    /// Input normalisation: "per-image-standardise" (zero mean, unit
    /// standard deviation over the whole frame), or
    /// "flat-field-standardise" (the frame first divided by its lamp,
    /// measured over squares of `flat_field_px`; `nemascope_core::flatfield`).
    pub normalisation: String,
    /// With "flat-field-standardise": the side of the squares whose
    /// medians give the lamp, in pixels at the model's scale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flat_field_px: Option<u32>,
    /// Probability above which a pixel is foreground (for classes without
    /// a threshold of their own in `class_thresholds`).
    pub threshold: f32,
    /// Per class, the level its map is cut at, where it is not
    /// `threshold`: chosen at export from the image-level labels (the level
    /// that best tells present from absent tiles by "an object is
    /// counted"), because a weakly trained map's confidence differs by
    /// class and by data. Bundles made before it existed have none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub class_thresholds: BTreeMap<String, f32>,
    /// On-device superpixel voting, if the model is meant to be used with it.
    pub voting: Option<Voting>,
    /// Global weighted pooling parameter the teacher was trained with.
    pub gwp_r: f32,
    /// "fp32" or "int8".
    pub precision: String,
    /// Training data and stages, free text per key.
    pub training: BTreeMap<String, String>,
    /// Validation metrics, e.g. "dice_worm".
    pub metrics: BTreeMap<String, f64>,
    /// Typical area of one object per class, in pixels of the training
    /// images' own resolution, fitted on their masks and counts: the
    /// runtime counts a component of touching objects by its area. Classes
    /// without one count one object per component.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub object_area_px: BTreeMap<String, f64>,
    /// The camera's pixel size (µm in the sample plane) of the images the
    /// model was trained on, at their own resolution: the scale `count` and
    /// a unit measure at unless told otherwise. Bundles made before it
    /// existed have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub um_per_px: Option<f32>,
    /// Per class, the object verifier `count` applies to each candidate
    /// object (a component of the class's map): trained from the
    /// image-level labels alone, it drops candidates that look like the
    /// debris of absent tiles. Classes without one count every candidate.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub verifiers: BTreeMap<String, ObjectVerifier>,
    /// SHA-256 of model.onnx, lower-case hex.
    pub model_sha256: String,
}

/// A logistic model over an object's measures
/// (`nemascope_core::verify::FEATURES`, in that order), each standardised
/// with the training candidates' mean and scale; objects scoring at least
/// `threshold` are counted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectVerifier {
    pub mean: Vec<f32>,
    pub scale: Vec<f32>,
    pub weights: Vec<f32>,
    pub bias: f32,
    pub threshold: f32,
}

impl ObjectVerifier {
    /// The probability that an object with these measures is one.
    pub fn score(&self, features: &[f32]) -> f32 {
        nemascope_core::verify::logistic(
            features,
            &self.mean,
            &self.scale,
            &self.weights,
            self.bias,
        )
    }

    /// A valid verifier for tests: weighs the core fraction alone.
    pub fn example() -> ObjectVerifier {
        let n = nemascope_core::verify::FEATURES.len();
        let mut weights = vec![0.0; n];
        weights[4] = 4.0;
        ObjectVerifier {
            mean: vec![0.0; n],
            scale: vec![1.0; n],
            weights,
            bias: -2.0,
            threshold: 0.5,
        }
    }

    fn validate(&self) -> Result<(), String> {
        let n = nemascope_core::verify::FEATURES.len();
        if [&self.mean, &self.scale, &self.weights]
            .iter()
            .any(|v| v.len() != n)
        {
            return Err(format!("needs {n} means, scales and weights"));
        }
        let finite = |v: &[f32]| v.iter().all(|x| x.is_finite());
        if !(finite(&self.mean)
            && finite(&self.weights)
            && self.scale.iter().all(|s| s.is_finite() && *s > 0.0)
            && self.bias.is_finite())
        {
            return Err("a mean, weight or bias is not finite, or a scale is not above 0".into());
        }
        if !(0.0..=1.0).contains(&self.threshold) {
            return Err(format!("threshold {} not in [0, 1]", self.threshold));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Voting {
    pub scale: f32,
    pub sigma: f32,
    pub min_size: usize,
    pub rate: f32,
}

impl Manifest {
    /// The side of the flat-field squares, in pixels at the model's scale,
    /// if frames are divided by their lamp before standardising.
    pub fn flat_field(&self) -> Option<usize> {
        (self.normalisation == FLAT_FIELD_STANDARDISE)
            .then_some(self.flat_field_px)
            .flatten()
            .map(|px| px as usize)
    }

    /// Each class's map threshold, in class order.
    pub fn thresholds(&self) -> Vec<f32> {
        self.classes
            .iter()
            .map(|c| *self.class_thresholds.get(c).unwrap_or(&self.threshold))
            .collect()
    }

    /// Checks every value a runtime relies on; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.format != FORMAT {
            return Err(format!(
                "format {} (this build reads format {FORMAT})",
                self.format
            ));
        }
        if self.classes.is_empty() || self.classes.len() > 8 {
            return Err(format!(
                "classes: {} given, 1 to 8 allowed",
                self.classes.len()
            ));
        }
        for (i, c) in self.classes.iter().enumerate() {
            if c.is_empty() || self.classes[..i].contains(c) {
                return Err(format!("classes: empty or repeated name {c:?}"));
            }
        }
        let [c, h, w] = self.input;
        if !(c == 1 || c == 3) || h == 0 || w == 0 || h > 8192 || w > 8192 {
            return Err(format!(
                "input: {:?} is not [1 or 3, 1..8192, 1..8192]",
                self.input
            ));
        }
        if !(self.pixel_scale.is_finite() && self.pixel_scale > 0.01 && self.pixel_scale <= 100.0) {
            return Err(format!(
                "pixel_scale: {} not in (0.01, 100]",
                self.pixel_scale
            ));
        }
        match (self.normalisation.as_str(), self.flat_field_px) {
            (STANDARDISE, None) => {}
            (FLAT_FIELD_STANDARDISE, Some(px)) if (8..=8192).contains(&px) => {}
            (STANDARDISE | FLAT_FIELD_STANDARDISE, px) => {
                return Err(format!(
                    "normalisation {:?} with flat_field_px {px:?} (flat-field needs 8..=8192 \
                     pixels, the plain standardisation none)",
                    self.normalisation
                ))
            }
            _ => return Err(format!("normalisation: unknown {:?}", self.normalisation)),
        }
        if !(self.threshold > 0.0 && self.threshold < 1.0) {
            return Err(format!("threshold: {} not in (0, 1)", self.threshold));
        }
        for (c, t) in &self.class_thresholds {
            if !(self.classes.contains(c) && *t > 0.0 && *t < 1.0) {
                return Err(format!(
                    "class_thresholds: {c:?} = {t} (a class, in (0, 1))"
                ));
            }
        }
        if let Some(v) = &self.voting {
            let ok = v.scale > 0.0
                && v.scale.is_finite()
                && (0.0..10.0).contains(&v.sigma)
                && v.rate > 0.0
                && v.rate <= 1.0;
            if !ok {
                return Err(format!(
                    "voting: scale {} sigma {} rate {} out of range",
                    v.scale, v.sigma, v.rate
                ));
            }
        }
        if !(self.gwp_r >= 0.0 && self.gwp_r.is_finite()) {
            return Err(format!("gwp_r: {}", self.gwp_r));
        }
        if !["fp32", "int8", "f16"].contains(&self.precision.as_str()) {
            return Err(format!(
                "precision: {:?} is not fp32, int8 or f16",
                self.precision
            ));
        }
        for (c, a) in &self.object_area_px {
            if !(self.classes.contains(c) && a.is_finite() && *a > 0.0) {
                return Err(format!("object_area_px: {c:?} = {a}"));
            }
        }
        if let Some(um) = self.um_per_px {
            if !valid_um_per_px(um) {
                return Err(format!("um_per_px: {um} (above 0, at most 1000)"));
            }
        }
        for (c, v) in &self.verifiers {
            if !self.classes.contains(c) {
                return Err(format!("verifiers: {c:?} is not a class"));
            }
            v.validate().map_err(|e| format!("verifiers: {c:?}: {e}"))?;
        }
        if self.model_sha256.len() != 64
            || !self.model_sha256.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err("model_sha256: not 64 hex digits".into());
        }
        Ok(())
    }

    /// A complete manifest for tests and tools.
    pub fn example() -> Manifest {
        Manifest {
            format: FORMAT,
            name: "example".into(),
            classes: vec!["worm".into()],
            input: [1, 64, 64],
            pixel_scale: 1.0,
            normalisation: STANDARDISE.into(),
            flat_field_px: None,
            threshold: 0.5,
            class_thresholds: BTreeMap::new(),
            voting: None,
            gwp_r: 7.0,
            precision: "fp32".into(),
            training: BTreeMap::new(),
            metrics: BTreeMap::new(),
            object_area_px: BTreeMap::new(),
            um_per_px: Some(4.0),
            verifiers: BTreeMap::new(),
            model_sha256: "0".repeat(64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_class_without_a_threshold_of_its_own_uses_the_manifest_s() {
        let mut m = Manifest::example();
        m.classes = vec!["worm".into(), "egg".into(), "cyst".into()];
        m.class_thresholds.insert("egg".into(), 0.25);
        m.validate().unwrap();
        assert_eq!(m.thresholds(), vec![0.5, 0.25, 0.5]);
    }

    #[test]
    fn example_is_valid_and_each_bad_field_is_named() {
        Manifest::example().validate().unwrap();
        type Edit = fn(&mut Manifest);
        let cases: Vec<(Edit, &str)> = vec![
            (|m| m.format = 9, "format"),
            (|m| m.classes = vec!["a".into(), "a".into()], "classes"),
            (
                |m| {
                    m.object_area_px.insert("worm".into(), -1.0);
                },
                "object_area_px",
            ),
            (
                |m| {
                    m.object_area_px.insert("cyst".into(), 50.0);
                },
                "object_area_px",
            ),
            (
                |m| {
                    m.verifiers.insert("cyst".into(), ObjectVerifier::example());
                },
                "verifiers",
            ),
            (
                |m| {
                    let mut v = ObjectVerifier::example();
                    v.scale[3] = 0.0;
                    m.verifiers.insert("worm".into(), v);
                },
                "verifiers",
            ),
            (
                |m| {
                    let mut v = ObjectVerifier::example();
                    v.weights.pop();
                    m.verifiers.insert("worm".into(), v);
                },
                "verifiers",
            ),
            (|m| m.input = [2, 64, 64], "input"),
            (|m| m.pixel_scale = f32::NAN, "pixel_scale"),
            (|m| m.normalisation = "none".into(), "normalisation"),
            (|m| m.flat_field_px = Some(64), "normalisation"),
            (
                |m| m.normalisation = "flat-field-standardise".into(),
                "normalisation",
            ),
            (
                |m| {
                    m.normalisation = "flat-field-standardise".into();
                    m.flat_field_px = Some(4);
                },
                "normalisation",
            ),
            (|m| m.threshold = 1.0, "threshold"),
            (
                |m| {
                    m.class_thresholds.insert("worm".into(), 0.0);
                },
                "class_thresholds",
            ),
            (
                |m| {
                    m.class_thresholds.insert("egg".into(), 0.3);
                },
                "class_thresholds",
            ),
            (|m| m.precision = "int4".into(), "precision"),
            (|m| m.model_sha256 = "zz".into(), "model_sha256"),
            (
                |m| {
                    m.voting = Some(Voting {
                        scale: 25.0,
                        sigma: 0.5,
                        min_size: 10,
                        rate: 0.0,
                    })
                },
                "voting",
            ),
        ];
        for (edit, field) in cases {
            let mut m = Manifest::example();
            edit(&mut m);
            let e = m.validate().unwrap_err();
            assert!(e.starts_with(field), "{field}: {e}");
        }
    }

    #[test]
    fn metrics_read_back_exactly_as_written() {
        // serde_json's default parser may miss the last bit of an f64
        // (this one came back 0.242399093658732): the workspace enables
        // its `float_roundtrip`, so a manifest says what export measured
        let mut m = Manifest::example();
        let x = 0.242_399_093_658_732_02_f64;
        m.metrics.insert("val_dice_egg".into(), x);
        let text = serde_json::to_vec_pretty(&m).unwrap();
        let back: Manifest = serde_json::from_slice(&text).unwrap();
        assert_eq!(back.metrics["val_dice_egg"].to_bits(), x.to_bits());
    }

    #[test]
    fn unknown_fields_are_refused() {
        let mut v = serde_json::to_value(Manifest::example()).unwrap();
        v["extra"] = 1.into();
        assert!(serde_json::from_value::<Manifest>(v).is_err());
    }
}
