//! Felzenszwalb against scikit-image 0.26 on fixtures it labelled
//! (`tests/reference/superpixels.py fixtures`): a stretched BBBC010 crop and
//! a piecewise-constant mosaic, both 16-bit PNGs read as value/65535 exactly
//! like scikit-image's `img_as_float`.

use std::path::Path;

use nemascope_core::felzenszwalb::{segment, Params};
use nemascope_core::imageio::{load_frame, LoadLimits};

fn fixture(name: &str) -> (nemascope_core::Plane, Vec<u32>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let img = load_frame(&dir.join(format!("{name}.png")), LoadLimits::default()).unwrap();
    assert_eq!(img.bit_depth, 16);
    let lab = load_frame(&dir.join(format!("{name}_skimage_labels.png")), LoadLimits::default()).unwrap();
    let labels = lab.plane.data().iter().map(|&v| (v * 65535.0).round() as u32).collect();
    (img.plane, labels)
}

#[test]
fn bbbc010_crop_matches_scikit_image_label_for_label() {
    let (plane, want) = fixture("bbbc010_a01_crop");
    let got = segment(&plane, &Params::default()).unwrap();
    assert_eq!(got.count, 40);
    assert_eq!(got.labels.data(), &want[..]);
}

#[test]
fn mosaic_matches_scikit_image_label_for_label() {
    let (plane, want) = fixture("mosaic");
    let got = segment(&plane, &Params::default()).unwrap();
    assert_eq!(got.count, 29);
    assert_eq!(got.labels.data(), &want[..]);
}
