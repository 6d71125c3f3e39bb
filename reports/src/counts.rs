//! What `nemascope-edge count` reports: per image, per object, per sample,
//! and the whole run as its `--json` file, which the review page reads back.

use serde::{Deserialize, Serialize};

/// One counted image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageReport {
    pub image: String,
    pub sample: String,
    /// Per class, in the model's class order.
    pub counts: Vec<usize>,
    pub objects: Vec<ObjectReport>,
    /// Decode to counts.
    pub ms: f64,
}

/// One object as reported: class name and measurements.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectReport {
    pub class: String,
    /// Objects in this component (touching ones count by area).
    pub count: usize,
    pub area_um2: f32,
    pub length_um: f32,
    pub width_um: f32,
    pub x: f32,
    pub y: f32,
    /// The object verifier's score, where the model has a verifier for
    /// the class (reports written before it existed have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f32>,
}

/// Counts summed over a sample's images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleTotal {
    pub sample: String,
    pub images: usize,
    pub counts: Vec<usize>,
}

/// Per-sample totals, samples in order of first appearance.
pub fn samples(reports: &[ImageReport]) -> Vec<SampleTotal> {
    let mut out: Vec<SampleTotal> = Vec::new();
    for r in reports {
        match out.iter_mut().find(|s| s.sample == r.sample) {
            Some(s) => {
                s.images += 1;
                for (t, c) in s.counts.iter_mut().zip(&r.counts) {
                    *t += c;
                }
            }
            None => out.push(SampleTotal {
                sample: r.sample.clone(),
                images: 1,
                counts: r.counts.clone(),
            }),
        }
    }
    out
}

/// The whole run as `count --json` writes it and the review page reads it
/// back: the model, its classes and calibration, every counted image, the
/// sample totals, and the inputs that could not be counted with the reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CountRun {
    pub model: String,
    pub classes: Vec<String>,
    pub um_per_px: f32,
    pub images: Vec<ImageReport>,
    pub samples: Vec<SampleTotal>,
    pub failed: Vec<(String, String)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_count_writes_reads_back_as_the_review_reads_it() {
        let classes = vec!["egg".to_string()];
        let images = vec![ImageReport {
            image: "a/=1.png".into(),
            sample: "a".into(),
            counts: vec![2],
            objects: vec![ObjectReport {
                class: "egg".into(),
                count: 2,
                area_um2: 900.0,
                length_um: 40.0,
                width_um: 20.0,
                x: 12.5,
                y: 3.0,
                score: Some(0.75),
            }],
            ms: 4.0,
        }];
        let failed = vec![("b.png".to_string(), "cannot decode".to_string())];
        let run = CountRun {
            model: "m".into(),
            classes,
            um_per_px: 2.0,
            images: images.clone(),
            samples: samples(&images),
            failed: failed.clone(),
        };
        let text = serde_json::to_string_pretty(&run).unwrap();
        let keys: Vec<usize> = [
            "\"model\"",
            "\"classes\"",
            "\"um_per_px\"",
            "\"images\"",
            "\"samples\"",
            "\"failed\"",
        ]
        .iter()
        .map(|k| text.find(k).unwrap())
        .collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{text}");
        let back: CountRun = serde_json::from_str(&text).unwrap();
        assert_eq!(
            (back.model.as_str(), back.images, back.failed, back.samples),
            ("m", images.clone(), failed.clone(), samples(&images))
        );
    }
}
