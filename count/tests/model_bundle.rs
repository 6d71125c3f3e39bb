//! The unit runs a bundle only when it is signed by the configured key and
//! tract can run it as the manifest describes; otherwise it says why.

use nemascope_bundle::{Bundle, Manifest, SigningKey};
use nemascope_count::{count_frame, CountSettings, Model, ModelError};
use nemascope_onnx::export::{self, InputSize};
use nemascope_onnx::graph::encode;
use nemascope_onnx::UNetWeights;

fn model_bytes(h: usize, w: usize) -> Vec<u8> {
    let net = UNetWeights::random(1, 1, 2, 2, 9);
    encode(
        &export::fp32(
            &net,
            InputSize {
                height: h,
                width: w,
            },
            false,
        )
        .unwrap(),
    )
}

fn write_key(dir: &std::path::Path, name: &str, key: &SigningKey) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, hex(&key.verifying_key().to_bytes())).unwrap();
    p
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The shipped synthetic bundle (worm, egg, cyst at 4 µm, with verifiers).
fn shipped_synthetic() -> Model {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
    Model::open(
        &root.join("synth-worm-egg-cyst"),
        &root.join("nemascope-dev.pub"),
    )
    .unwrap()
}

/// The default settings for a frame of `um` µm a pixel.
fn at_um(um: f32) -> CountSettings {
    CountSettings {
        calibration: nemascope_core::objects::Calibration { um_per_px: um },
        ..CountSettings::default()
    }
}

#[test]
fn signed_bundle_runs_and_others_are_refused_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let ours = SigningKey::from_bytes(&[7; 32]);
    let theirs = SigningKey::from_bytes(&[8; 32]);
    let pub_ours = write_key(tmp.path(), "ours.pub", &ours);
    let mut m = Manifest::example();
    m.input = [1, 32, 48];
    let good = tmp.path().join("good");
    Bundle::write(&good, m.clone(), &model_bytes(32, 48), &ours).unwrap();
    let model = Model::open(&good, &pub_ours).unwrap();
    let maps = model.runner.maps(&vec![0.5; 32 * 48]).unwrap();
    assert_eq!(maps.len(), 32 * 48);

    // signed by another key
    let other = tmp.path().join("other");
    Bundle::write(&other, m.clone(), &model_bytes(32, 48), &theirs).unwrap();
    let e = Model::open(&other, &pub_ours).unwrap_err();
    assert!(matches!(
        e,
        ModelError::Bundle(nemascope_bundle::Error::SignatureMismatch(_))
    ));
    assert!(
        e.to_string()
            .contains("does not match the configured public key"),
        "{e}"
    );

    // manifest says one input size, the model takes another
    let lying = tmp.path().join("lying");
    Bundle::write(&lying, m.clone(), &model_bytes(16, 16), &ours).unwrap();
    let e = Model::open(&lying, &pub_ours).unwrap_err();
    assert!(matches!(e, ModelError::InputMismatch { .. }), "{e}");

    // signed garbage: the signature is fine but tract cannot read it
    let junk = tmp.path().join("junk");
    Bundle::write(&junk, m, b"not onnx", &ours).unwrap();
    let e = Model::open(&junk, &pub_ours).unwrap_err();
    assert!(matches!(e, ModelError::Onnx(_)), "{e}");

    // no key configured where the config points
    let e = Model::open(&good, &tmp.path().join("missing.pub")).unwrap_err();
    assert!(matches!(e, ModelError::Key(_)), "{e}");
}

/// The bundle the repository ships passes the unit's checks under the
/// shipped public key, and its manifest carries its validation scores.
#[test]
fn shipped_bbbc010_bundle_is_accepted() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
    let m = Model::open(&root.join("bbbc010-worm"), &root.join("nemascope-dev.pub")).unwrap();
    assert_eq!(m.manifest.classes, ["worm"]);
    assert_eq!(m.runner.input_shape, [1, 1, 528, 704]);
    assert!(m.manifest.metrics["val_dice_worm"] > 0.8);
}

/// The shipped synthetic worm/egg/cyst bundle: accepted under the shipped
/// key, three classes at the generator's 384×512, and it finds the classes
/// of a fresh synthetic frame (seed unseen in training) where they are.
#[test]
fn shipped_synthetic_bundle_is_accepted_and_segments_a_fresh_frame() {
    use nemascope_core::synth::{generate, SynthConfig};
    let m = shipped_synthetic();
    assert_eq!(m.manifest.classes, ["worm", "egg", "cyst"]);
    assert_eq!(m.runner.input_shape, [1, 1, 384, 512]);
    assert_eq!(
        m.manifest.training["supervision"],
        "image-level labels only"
    );
    for c in ["worm", "egg", "cyst"] {
        assert!(m
            .manifest
            .metrics
            .contains_key(&format!("benchmark_dice_{c}")));
    }
    // A frame with worms and a cyst, of the preset the model was trained
    // on.
    let f = (0..40)
        .map(|i| {
            let cfg = SynthConfig::preset("mixed", i, 512, 384, 4.0).unwrap();
            generate(&cfg, 424_242, i).unwrap()
        })
        .find(|f| f.counts[0] > 0 && f.counts[2] > 0)
        .expect("a frame with worms and a cyst");
    // Counted as the unit counts it: tiles, threshold, masks.
    let counted = count_frame(&m, &f.image, &CountSettings::default()).unwrap();
    for (c, want) in [(0usize, 0.3), (2, 0.5)] {
        let truth = f.masks[c].data();
        let (mut inter, mut found) = (0usize, 0usize);
        let mask = counted.mask(c);
        for (i, &t) in truth.iter().enumerate() {
            let on = mask.data()[i];
            found += on as usize;
            inter += (on && t) as usize;
        }
        let dice = 2.0 * inter as f64 / (found + f.masks[c].count()) as f64;
        eprintln!("class {c}: Dice {dice:.3}");
        assert!(dice > want, "class {c}: Dice {dice:.3}");
    }
}

/// Tiles side by side and objects measured in parallel give the same
/// masks, objects and counts as one thread (a frame of nine tiles).
#[test]
fn threads_do_not_change_the_count() {
    use nemascope_core::synth::{generate, SynthConfig};
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
    let m = Model::open_tiled(
        &root.join("synth-worm-egg-cyst"),
        &root.join("nemascope-dev.pub"),
        Some([256, 256]),
    )
    .unwrap();
    let cfg = SynthConfig::preset("mixed", 1, 700, 500, 4.0).unwrap();
    let f = generate(&cfg, 77, 1).unwrap();
    let one = count_frame(&m, &f.image, &CountSettings::default()).unwrap();
    assert!(one.counts.iter().sum::<usize>() > 0, "{:?}", one.counts);
    for threads in [2, 3] {
        let s = CountSettings {
            threads,
            ..CountSettings::default()
        };
        let par = count_frame(&m, &f.image, &s).unwrap();
        assert_eq!(par.masks, one.masks, "{threads} threads");
        assert_eq!(par.objects, one.objects, "{threads} threads");
        assert_eq!(par.counts, one.counts, "{threads} threads");
    }
}

/// The forms a board owner chooses between: the shipped synthetic model's
/// file signed as `f16` counts a fresh frame with masks within 1 % of the
/// fp32 ones (half precision, checked on aarch64 under qemu in CI); a
/// manifest that names a form the file does not hold is refused.
#[test]
fn the_f16_form_counts_as_fp32_and_a_false_form_is_refused() {
    use nemascope_core::synth::{generate, SynthConfig};
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
    let shipped = Bundle::open(
        &root.join("synth-worm-egg-cyst"),
        &nemascope_bundle::read_public_key(&root.join("nemascope-dev.pub")).unwrap(),
    )
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let key = SigningKey::from_bytes(&[9; 32]);
    let public = write_key(tmp.path(), "k.pub", &key);
    let form = |p: &str| {
        let mut m = shipped.manifest.clone();
        m.precision = p.into();
        let dir = tmp.path().join(p);
        Bundle::write(&dir, m, &shipped.model, &key).unwrap();
        Model::open_tiled(&dir, &public, Some([256, 256]))
    };
    let (full, half) = (form("fp32").unwrap(), form("f16").unwrap());
    // One tile: half precision is emulated off FP16 cores (slow under qemu).
    let cfg = SynthConfig::preset("mixed", 1, 256, 256, 4.0).unwrap();
    // The first frame with objects in which the fp32 form counts some, so
    // that the masks compared are not empty.
    let (f, a) = (0..20)
        .map(|i| generate(&cfg, 4242, i).unwrap())
        .filter(|f| f.counts.iter().sum::<usize>() > 2)
        .map(|f| {
            let a = count_frame(&full, &f.image, &CountSettings::default()).unwrap();
            (f, a)
        })
        .find(|(_, a)| a.counts.iter().sum::<usize>() > 0)
        .expect("a frame in which the fp32 form counts something");
    let b = count_frame(&half, &f.image, &CountSettings::default()).unwrap();
    for (k, (ma, mb)) in a.masks.iter().zip(&b.masks).enumerate() {
        let (ma, mb) = (ma.to_mask(), mb.to_mask());
        let differ = ma
            .data()
            .iter()
            .zip(mb.data())
            .filter(|(x, y)| x != y)
            .count();
        assert!(
            differ * 100 <= ma.len(),
            "class {k}: {differ} of {} pixels differ",
            ma.len()
        );
    }
    let e = form("int8").unwrap_err();
    assert!(e.to_string().contains("has no integer convolutions"), "{e}");
}

/// A frame at another pixel size is counted where the model sees it: at
/// 2 µm (×2) and 8 µm (×½) a 4 µm model counts, objects and all, what it
/// counts on the frame resampled to 4 µm, verifier included; masks and
/// centres come back in the frame's pixels. Before, objects were measured
/// at the frame's pixels against areas in the model's (a 4 µm model split
/// every worm about four times at 2 µm), and the verifier measured noise
/// and surroundings at a pixel size it was not fitted at.
#[test]
#[cfg_attr(
    target_arch = "aarch64",
    ignore = "30 inferences take minutes under qemu; the same code runs natively"
)]
fn counts_do_not_depend_on_the_pixel_size_of_the_same_frames() {
    use nemascope_core::imageio::{resample, resize_bilinear, resize_nearest};
    use nemascope_core::synth::{generate, SynthConfig};
    let m = shipped_synthetic();
    assert_eq!(m.manifest.um_per_px, Some(4.0));
    assert!(!m.manifest.verifiers.is_empty());
    let (mut original, mut doubled, mut halved) = ([0usize; 3], [0usize; 3], [0usize; 3]);
    for i in 0..6 {
        let cfg = SynthConfig::preset("mixed", i, 512, 384, 4.0).unwrap();
        let f = generate(&cfg, 31_337, i).unwrap().image;
        let (w, h) = (f.width(), f.height());
        // ×2 at 2 µm: the model sees the frame brought back to 512×384.
        let up = resize_bilinear(&f, w * 2, h * 2).unwrap();
        let a = count_frame(&m, &up, &at_um(2.0)).unwrap();
        let b = count_frame(&m, &resample(&up, w, h).unwrap(), &at_um(4.0)).unwrap();
        assert_eq!(a.counts, b.counts, "frame {i}");
        assert_eq!(a.objects.len(), b.objects.len(), "frame {i}");
        for (x, y) in a.objects.iter().zip(&b.objects) {
            assert_eq!(
                (x.class, x.count, x.area_um2, x.length_um, x.score),
                (y.class, y.count, y.area_um2, y.length_um, y.score),
                "frame {i}"
            );
            let centre = |v: f32| (v + 0.5) * 2.0 - 0.5;
            assert!(
                (x.centroid.0 - centre(y.centroid.0)).abs() < 1e-3,
                "frame {i}"
            );
            assert!(
                (x.centroid.1 - centre(y.centroid.1)).abs() < 1e-3,
                "frame {i}"
            );
        }
        for (x, y) in a.masks.iter().zip(&b.masks) {
            let back = resize_nearest(&y.to_mask(), w * 2, h * 2).unwrap();
            assert_eq!(x.to_mask(), back, "frame {i}");
        }
        // ×½ at 8 µm: the model sees the half frame enlarged to 512×384.
        let half = resample(&f, w / 2, h / 2).unwrap();
        let c = count_frame(&m, &half, &at_um(8.0)).unwrap().counts;
        let d = count_frame(&m, &resample(&half, w, h).unwrap(), &at_um(4.0))
            .unwrap()
            .counts;
        assert_eq!(c, d, "frame {i}");
        let o = count_frame(&m, &f, &at_um(4.0)).unwrap().counts;
        for k in 0..3 {
            original[k] += o[k];
            doubled[k] += a.counts[k];
            halved[k] += c[k];
        }
    }
    // The goal (±5 % of the originals) is the model's: it answers the
    // resampling blur, printed here, not asserted.
    eprintln!("originals at 4 µm {original:?}; ×2 at 2 µm {doubled:?}; ×½ at 8 µm {halved:?}");
}

/// A camera with 4× finer pixels than the model's (1 µm against 4 µm)
/// counts what the same camera binned 4×4 counts at the model's pixel
/// size, verifier included: the frame reaches the model averaged over each
/// pixel's area, not sampled (bilinear reads 2 of every 4 rows and
/// columns, so the model saw an aliased frame twice as noisy as the binned
/// one), and its objects are measured there.
#[test]
#[cfg_attr(
    target_arch = "aarch64",
    ignore = "inferences take minutes under qemu; the same code runs natively"
)]
fn a_finer_camera_counts_what_its_binned_frames_count() {
    use nemascope_core::imageio::bin_plane;
    use nemascope_core::synth::{generate, SynthConfig};
    let m = shipped_synthetic();
    let (mut fine, mut binned) = ([0usize; 3], [0usize; 3]);
    for i in 0..4 {
        let cfg = SynthConfig::preset("mixed", i, 2048, 1536, 1.0).unwrap();
        let f = generate(&cfg, 4_242, i).unwrap().image;
        let a = count_frame(&m, &f, &at_um(1.0)).unwrap().counts;
        let b = count_frame(&m, &bin_plane(&f, 4).unwrap(), &at_um(4.0))
            .unwrap()
            .counts;
        eprintln!("frame {i}: 1 µm {a:?}, binned to 4 µm {b:?}");
        for k in 0..3 {
            fine[k] += a[k];
            binned[k] += b[k];
        }
    }
    eprintln!("1 µm {fine:?}; binned to 4 µm {binned:?}");
    assert_eq!(fine, binned);
}

/// A class's verifier decides which of its candidates count: one that
/// accepts every candidate changes nothing, one that refuses every
/// candidate counts none and clears them from the mask, and one that
/// weighs the core fraction counts exactly the candidates whose measured
/// core it accepts. The candidates and their measures are what the
/// trainer fits on.
#[test]
#[cfg_attr(
    target_arch = "aarch64",
    ignore = "inferences take minutes under qemu; the same code runs natively"
)]
fn a_verifier_counts_the_candidates_it_accepts() {
    use nemascope_bundle::ObjectVerifier;
    use nemascope_core::synth::{generate, SynthConfig};
    let mut bare = shipped_synthetic();
    // The shipped bundle has verifiers for eggs and cysts; start without.
    assert!(bare.manifest.verifiers.contains_key("egg"));
    bare.manifest.verifiers.clear();
    let cfg = SynthConfig::preset("mixed", 0, 512, 384, 4.0).unwrap();
    let f = generate(&cfg, 4242, 0).unwrap().image;
    let s = CountSettings {
        candidates: true,
        ..CountSettings::default()
    };
    let plain = count_frame(&bare, &f, &s).unwrap();
    assert!(plain.counts[1] > 0, "no eggs to verify: {:?}", plain.counts);
    let eggs: Vec<_> = plain.candidates.iter().filter(|c| c.class == 1).collect();
    assert!(eggs.iter().all(|c| c.counted && c.score.is_none()));
    assert!(eggs
        .iter()
        .all(|c| c.features.iter().all(|v| v.is_finite()) && (0.0..=1.0).contains(&c.features[4])));
    let with = |bias: f32, weights: Vec<f32>| {
        let mut m = bare.clone();
        let v = ObjectVerifier {
            bias,
            weights,
            ..ObjectVerifier::example()
        };
        m.manifest.verifiers.insert("egg".into(), v);
        count_frame(&m, &f, &s).unwrap()
    };
    let n = nemascope_core::verify::FEATURES.len();
    let all = with(50.0, vec![0.0; n]);
    assert_eq!(all.counts, plain.counts);
    assert_eq!(all.masks, plain.masks);
    let none = with(-50.0, vec![0.0; n]);
    assert_eq!(none.counts[1], 0);
    assert_eq!(
        (none.counts[0], none.counts[2]),
        (plain.counts[0], plain.counts[2])
    );
    // The refused candidates' pixels leave the mask; specks that were
    // never candidates (under the size range) stay.
    let counted_px: f32 = plain
        .objects
        .iter()
        .filter(|o| o.class == 1)
        .map(|o| o.area_um2 / 16.0)
        .sum();
    assert_eq!(
        none.masks[1].count(),
        plain.masks[1].count() - counted_px.round() as usize,
        "refused eggs stay in the mask"
    );
    assert!(none
        .candidates
        .iter()
        .filter(|c| c.class == 1)
        .all(|c| !c.counted));
    // Core fraction ≥ ½ counts (weight 40 on a unit-scaled feature, bias −20).
    let mut w = vec![0.0; n];
    w[4] = 40.0;
    let core = with(-20.0, w);
    let want = eggs.iter().filter(|c| c.features[4] > 0.5).count();
    let got = core
        .candidates
        .iter()
        .filter(|c| c.class == 1 && c.counted)
        .count();
    assert_eq!(got, want);
    assert_eq!(
        core.objects.iter().filter(|o| o.class == 1).count(),
        want,
        "objects follow the accepted candidates"
    );
}

/// Counting at several sets of thresholds from one pass of the model
/// gives, set by set, what `count_frame` gives with those thresholds in the
/// manifest; a class's own threshold changes that class alone; a set of
/// the wrong length is an error, not a guess.
#[test]
fn counting_at_several_thresholds_is_counting_at_each() {
    use nemascope_core::synth::{generate, SynthConfig};
    use nemascope_count::count_at;
    let m = shipped_synthetic();
    let cfg = SynthConfig::preset("mixed", 0, 512, 384, 4.0).unwrap();
    let f = generate(&cfg, 4242, 0).unwrap().image;
    let s = CountSettings {
        candidates: true,
        ..CountSettings::default()
    };
    let sets = vec![vec![0.3, 0.5, 0.5], vec![0.5, 0.2, 0.8], vec![0.7; 3]];
    let at = count_at(&m, &f, &s, &sets).unwrap();
    assert_eq!(at.len(), 3);
    for (set, got) in sets.iter().zip(&at) {
        let mut one = m.clone();
        one.manifest.threshold = set[0];
        one.manifest.class_thresholds = [("egg".to_string(), set[1]), ("cyst".into(), set[2])]
            .into_iter()
            .collect();
        assert_eq!(one.manifest.thresholds(), *set);
        let want = count_frame(&one, &f, &s).unwrap();
        assert_eq!(got.masks, want.masks, "{set:?}");
        assert_eq!(got.objects, want.objects, "{set:?}");
        assert_eq!(got.candidates, want.candidates, "{set:?}");
    }
    // Worms at 0.3 and 0.5 (sets 0 and 1) differ; the egg set alone moves eggs.
    assert_ne!(at[0].masks[0], at[1].masks[0]);
    assert_eq!(
        at[0].masks[2],
        count_at(&m, &f, &s, &[vec![0.9, 0.9, 0.5]]).unwrap()[0].masks[2]
    );
    assert!(at[1].masks[1].count() > at[2].masks[1].count());
    let e = count_at(&m, &f, &s, &[vec![0.5; 2]]).unwrap_err();
    assert!(e.to_string().contains("2 levels for 3 classes"), "{e}");
}

/// A bundle trained on flat-field corrected images (`data.flat_field_um`)
/// counts a frame exactly as the same network without it counts the frame
/// divided by its lamp, and reports the frame's light as it came; counted
/// plainly, the vignetted frame gives other masks.
#[test]
#[cfg_attr(
    target_arch = "aarch64",
    ignore = "inferences take minutes under qemu; the same code runs natively"
)]
fn a_flat_field_bundle_counts_the_frame_divided_by_its_lamp() {
    use nemascope_core::flatfield::Flattened;
    use nemascope_core::imageio::Luma;
    use nemascope_core::synth::{generate, SynthConfig};
    use nemascope_core::Plane;
    let plain = shipped_synthetic();
    let mut flat = plain.clone();
    flat.manifest.normalisation = "flat-field-standardise".into();
    flat.manifest.flat_field_px = Some(64);
    flat.manifest.validate().unwrap();
    let cfg = SynthConfig::preset("mixed", 0, 512, 384, 4.0).unwrap();
    let f = generate(&cfg, 4242, 0).unwrap().image;
    // A lamp falling to 60 % of the centre's light in the corners.
    let lit = Plane::from_fn(512, 384, |x, y| {
        let (u, v) = (x as f32 / 512.0 - 0.5, y as f32 / 384.0 - 0.5);
        f.get(x, y) * (1.0 - 0.8 * (u * u + v * v))
    });
    let s = CountSettings {
        candidates: true,
        ..CountSettings::default()
    };
    let got = count_frame(&flat, &lit, &s).unwrap();
    let corrected = Flattened::new(&lit, 64).to_plane();
    let want = count_frame(&plain, &corrected, &s).unwrap();
    assert_eq!(got.masks, want.masks);
    assert_eq!(got.objects, want.objects);
    assert_eq!(got.candidates, want.candidates);
    assert!(got.masks.iter().any(|m| m.count() > 0));
    let as_lit = count_frame(&plain, &lit, &s).unwrap();
    assert_eq!(got.quality, as_lit.quality, "the light as it came");
    assert_ne!(got.masks, as_lit.masks);
}
