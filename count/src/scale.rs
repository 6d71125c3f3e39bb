//! The pixel size frames are measured at, and the factor they are
//! resampled by so a model sees objects at the size it learnt them.

use nemascope_bundle::Manifest;
use nemascope_core::objects::Calibration;

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

/// Whether a camera's pixel size `ratio` times the bundle's is far enough
/// from it to resample (and to warn of).
fn far(ratio: f32) -> bool {
    ratio.is_finite() && !(1.0 / SCALE_TOLERANCE..=SCALE_TOLERANCE).contains(&ratio)
}

/// The factor a frame is resized by before the model: the bundle's own
/// `pixel_scale`, times the camera's pixel size over the bundle's when they
/// differ by more than [`SCALE_TOLERANCE`], so the model sees objects at
/// the size it learnt them (a lab whose camera has 2 µm pixels can use a
/// model trained at 4 µm).
pub fn frame_scale(manifest: &Manifest, camera_um_per_px: f32) -> f32 {
    let ratio = manifest.um_per_px.map_or(1.0, |m| camera_um_per_px / m);
    manifest.pixel_scale * if far(ratio) { ratio } else { 1.0 }
}

/// The pixel size to measure at: `given` (the user's or the unit's), else
/// the bundle's own (`um_per_px`, the scale its model was trained at), else
/// the generator's 4 µm.
pub fn pixel_size(given: Option<f32>, manifest: &Manifest) -> PixelSize {
    let default = Calibration::default().um_per_px;
    match (given, manifest.um_per_px) {
        (Some(g), Some(m)) => PixelSize {
            um_per_px: g,
            from: "given",
            warning: far(g / m).then(|| {
                format!(
                    "{g} µm per pixel is far from the {m} µm the model {} was trained at: \
                         frames are resampled by {:.2}x to its scale before counting (a model \
                         trained at this scale sees finer detail)",
                    manifest.name,
                    g / m
                )
            }),
        },
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
