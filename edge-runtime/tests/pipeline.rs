//! The counting pipeline on synthetic frames with exact truth.

use nemascope_core::metrics::dice;
use nemascope_core::synth::{generate, SynthConfig};
use nemascope_core::Mask;
use nemascope_edge::pipeline::Pipeline;

fn clean() -> SynthConfig {
    SynthConfig {
        debris: (0, 0),
        fibres: (0, 0),
        bubbles: (0, 0),
        negative_fraction: 0.0,
        ..SynthConfig::default()
    }
}

/// Without confusers the classical segmenter plus voting finds the objects:
/// high Dice and counts close to the truth once calibrated.
#[test]
fn counts_clean_frames_after_calibration() {
    let cfg = clean();
    let mut pipe = Pipeline::default();
    let calib: Vec<_> = (0..12)
        .map(|i| {
            let f = generate(&cfg, 99, i).unwrap();
            (f.masks, f.counts)
        })
        .collect();
    pipe.calibrate(&calib).unwrap();
    let (mut err, mut dsum, mut n) = ([0usize; 3], 0.0, 0);
    for i in 0..10 {
        let f = generate(&cfg, 7, i).unwrap();
        let r = pipe.process(&f.image).unwrap();
        for (e, (&found, &want)) in err.iter_mut().zip(r.counts.iter().zip(&f.counts)) {
            *e += found.abs_diff(want);
        }
        let truth = Mask::union(&f.masks.iter().collect::<Vec<_>>()).unwrap();
        dsum += dice(&r.foreground, &truth).unwrap();
        n += 1;
    }
    let mean_dice = dsum / n as f64;
    eprintln!(
        "clean frames: mean Dice {mean_dice:.3}, summed count errors {err:?} over {n} frames"
    );
    assert!(mean_dice > 0.8, "Dice {mean_dice}");
    // Mean absolute error per frame below one object for every class.
    assert!(err.iter().all(|&e| e < 10), "{err:?}");
}

#[test]
fn empty_frame_counts_nothing() {
    let flat = nemascope_core::Plane::filled(256, 192, 0.7);
    let r = Pipeline::default().process(&flat).unwrap();
    assert_eq!(r.counts, [0, 0, 0]);
    assert_eq!(r.foreground.count(), 0);
}
