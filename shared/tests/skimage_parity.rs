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
    let lab = load_frame(
        &dir.join(format!("{name}_skimage_labels.png")),
        LoadLimits::default(),
    )
    .unwrap();
    let labels = lab
        .plane
        .data()
        .iter()
        .map(|&v| (v * 65535.0).round() as u32)
        .collect();
    (img.plane, labels)
}

#[test]
fn bbbc010_crop_matches_scikit_image_label_for_label() {
    let (plane, want) = fixture("bbbc010_a01_crop");
    let got = segment(&plane, &Params::default()).unwrap();
    assert_eq!(got.count, 40);
    assert_eq!(got.labels.data(), &want[..]);
}

/// Fraction of pixels whose label is the majority reference label of its
/// segment, both ways round (1.0 = same partition).
fn agreement(a: &[u32], b: &[u32]) -> f64 {
    use std::collections::HashMap;
    let one_way = |x: &[u32], y: &[u32]| {
        let mut votes: HashMap<u32, HashMap<u32, usize>> = HashMap::new();
        for (&i, &j) in x.iter().zip(y) {
            *votes.entry(i).or_default().entry(j).or_default() += 1;
        }
        votes
            .values()
            .map(|m| m.values().max().copied().unwrap_or(0))
            .sum::<usize>() as f64
            / x.len() as f64
    };
    one_way(a, b).min(one_way(b, a))
}

/// The blurred mosaic has long straight edges whose weights tie exactly;
/// scikit-image's introsort orders ties arbitrarily, nemascope by edge id,
/// so a few border pixels may go to the other side.
#[test]
fn mosaic_matches_scikit_image_up_to_tie_order() {
    let (plane, want) = fixture("mosaic");
    let got = segment(&plane, &Params::default()).unwrap();
    assert!((got.count as i64 - 29).abs() <= 2, "{}", got.count);
    let a = agreement(got.labels.data(), &want);
    assert!(a > 0.97, "{a}");
}
