//! The classical floor on synthetic frames with exact truth.

use nemascope_core::metrics::{dice, match_objects};
use nemascope_core::synth::{generate, SynthConfig};
use nemascope_core::{Class, Mask};
use nemascope_count::{Classical, CountSettings, Segmenter};

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
    let mut pipe = Classical::default();
    let calib: Vec<_> = (0..12)
        .map(|i| {
            let f = generate(&cfg, 99, i).unwrap();
            (f.masks, f.counts)
        })
        .collect();
    pipe.calibrate(&calib);
    let (mut err, mut dsum, mut n) = ([0usize; 3], 0.0, 0);
    for i in 0..10 {
        let f = generate(&cfg, 7, i).unwrap();
        let (foreground, r) = pipe.process(&f.image, &CountSettings::default()).unwrap();
        for (e, (&found, &want)) in err.iter_mut().zip(r.counts.iter().zip(&f.counts)) {
            *e += found.abs_diff(want);
        }
        let truth = Mask::union(&f.masks.iter().collect::<Vec<_>>()).unwrap();
        dsum += dice(&foreground, &truth).unwrap();
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
    let (foreground, r) = Classical::default()
        .process(&flat, &CountSettings::default())
        .unwrap();
    assert_eq!(r.counts, [0, 0, 0]);
    assert_eq!(foreground.count(), 0);
    assert_eq!(Classical::default().classes(), ["worm", "egg", "cyst"]);
}

/// Frames → masks → objects → counts, scored object by object against
/// the generator's instance truth.
#[test]
fn found_objects_match_true_instances() {
    let cfg = SynthConfig {
        debris: (0, 0),
        fibres: (0, 0),
        bubbles: (0, 0),
        negative_fraction: 0.0,
        ..SynthConfig::default()
    };
    let pipe = Classical::default();
    let (mut tp, mut fp, mut fneg) = (0, 0, 0);
    for i in 0..8 {
        let f = generate(&cfg, 31, i).unwrap();
        let r = pipe.count(&f.image, &CountSettings::default()).unwrap();
        // Eggs and cysts never touch, so one component per instance is the
        // right answer for them.
        for (k, c) in [(1, Class::Egg), (2, Class::Cyst)] {
            let truth: Vec<_> = f
                .instance_class
                .iter()
                .enumerate()
                .filter(|(_, &ic)| ic == c)
                .map(|(j, _)| f.instance_mask(j as u32 + 1))
                .collect();
            let s = match_objects(&r.mask(k), &truth, 0.5).unwrap();
            tp += s.true_positives;
            fp += s.false_positives;
            fneg += s.false_negatives;
        }
    }
    assert!(tp > 0);
    let precision = tp as f64 / (tp + fp) as f64;
    let recall = tp as f64 / (tp + fneg) as f64;
    eprintln!("eggs+cysts on clean frames: precision {precision:.2}, recall {recall:.2} ({tp} TP)");
    assert!(
        precision > 0.8 && recall > 0.8,
        "precision {precision}, recall {recall}"
    );
}

#[test]
fn debris_only_frames_are_mostly_empty_of_cysts() {
    // Negative frames hold debris, fibres and bubbles only; no cyst-sized
    // compact object should appear.
    let cfg = SynthConfig {
        negative_fraction: 1.0,
        ..SynthConfig::default()
    };
    let pipe = Classical::default();
    let mut cysts = 0;
    for i in 0..6 {
        let f = generate(&cfg, 3, i).unwrap();
        assert_eq!(f.counts, [0, 0, 0]);
        cysts += pipe
            .count(&f.image, &CountSettings::default())
            .unwrap()
            .counts[2];
    }
    assert!(cysts <= 1, "{cysts} cysts found in debris-only frames");
}
