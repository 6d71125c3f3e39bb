//! Frames of any size from 1x1 up, any values: the classical pipeline
//! (flat field, Felzenszwalb, voting, components, shape rules) and the
//! light check run without a panic. Frames smaller than the superpixel
//! window once panicked in Felzenszwalb and crash-looped a unit.
#![no_main]
use libfuzzer_sys::fuzz_target;
use nemascope_core::Plane;
use nemascope_count::{quality, Classical, CountSettings, Segmenter};

fuzz_target!(|data: &[u8]| {
    let [a, b, rest @ ..] = data else {
        return;
    };
    let (w, h) = (1 + *a as usize % 40, 1 + *b as usize % 40);
    let values: Vec<f32> = (0..w * h)
        .map(|i| rest.get(i).map_or(0.5, |&v| v as f32 / 255.0))
        .collect();
    let plane = Plane::from_vec(w, h, values).expect("sized");
    let _ = quality(&plane, None).problem();
    let r = Classical::default()
        .count(&plane, &CountSettings::default())
        .expect("a frame is counted");
    assert_eq!(r.masks.len(), 3);
});
