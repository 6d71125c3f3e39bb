//! Frames → masks → objects → counts, scored object by object against the
//! synthetic generator's instance truth.

use nemascope_core::metrics::match_objects;
use nemascope_core::synth::{generate, SynthConfig};
use nemascope_core::Class;
use nemascope_edge::pipeline::Pipeline;

#[test]
fn found_objects_match_true_instances() {
    let cfg = SynthConfig {
        debris: (0, 0),
        fibres: (0, 0),
        bubbles: (0, 0),
        negative_fraction: 0.0,
        ..SynthConfig::default()
    };
    let pipe = Pipeline::default();
    let (mut tp, mut fp, mut fneg) = (0, 0, 0);
    for i in 0..8 {
        let f = generate(&cfg, 31, i).unwrap();
        let r = pipe.process(&f.image).unwrap();
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
            let s = match_objects(&r.masks[k], &truth, 0.5).unwrap();
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
    let pipe = Pipeline::default();
    let mut cysts = 0;
    for i in 0..6 {
        let f = generate(&cfg, 3, i).unwrap();
        assert_eq!(f.counts, [0, 0, 0]);
        cysts += pipe.process(&f.image).unwrap().counts[2];
    }
    assert!(cysts <= 1, "{cysts} cysts found in debris-only frames");
}
