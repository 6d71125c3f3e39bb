//! The shipped BBBC010 worm bundle through the edge's own counting path
//! (tract, threshold, superpixel voting from the manifest, size range, one
//! count per component) on the validation wells the trainer held out
//! (split seed 7, 10 %): Dice against the true masks and worm-count error.

use nemascope_core::dataset::{bbbc010, split_indices};
use nemascope_core::imageio::{load_frame, load_mask, LoadLimits};
use nemascope_core::metrics::dice;
use nemascope_count::Model;
use nemascope_count::{count_frame, CountSettings};

mod common;
use common::edge;

/// `count` on every development well: BBBC010 is 12-bit data in 16-bit
/// files (mean ≈ 1.5 % of full scale), and once every well was called a
/// dark frame. Judged against the camera's range, none is.
#[test]
#[cfg_attr(
    target_arch = "aarch64",
    ignore = "62 inferences take minutes under qemu; the same code runs natively"
)]
fn no_well_is_called_dark() {
    let root = bbbc010::default_root();
    let wells = bbbc010::open(&root).unwrap();
    assert_eq!(wells.len(), 62);
    let o = edge()
        .arg("count")
        .arg(root.join("images"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(!err.contains("warning"), "{err}");
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        out.lines().filter(|l| l.contains(".tif |")).count(),
        62,
        "{out}"
    );
}

#[test]
#[cfg_attr(
    target_arch = "aarch64",
    ignore = "six 528×704 inferences take minutes under qemu; the same code runs natively"
)]
fn shipped_worm_model_on_held_out_wells() {
    let models = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
    let model = Model::open(
        &models.join("bbbc010-worm"),
        &models.join("nemascope-dev.pub"),
    )
    .unwrap();
    let wells = bbbc010::open(&bbbc010::default_root()).unwrap();
    let (train, val) = split_indices(wells.len(), 0.1, 7);
    // the manifest's split
    assert!(model.manifest.training["images"].starts_with(&format!(
        "{} training, {} validation",
        train.len(),
        val.len()
    )));
    let (mut dsum, mut esum) = (0.0, 0.0);
    for &i in &val {
        let w = &wells[i];
        let frame = load_frame(&w.image, LoadLimits::default()).unwrap().plane;
        let c = count_frame(&model, &frame, &CountSettings::default()).unwrap();
        let truth = load_mask(&w.mask).unwrap();
        let d = dice(&c.mask(0), &truth).unwrap();
        let e = c.counts[0].abs_diff(w.worm_count);
        eprintln!(
            "{}: Dice {d:.3}, worms {} found {}",
            w.well, w.worm_count, c.counts[0]
        );
        dsum += d;
        esum += e as f64;
    }
    let (d, e) = (dsum / val.len() as f64, esum / val.len() as f64);
    eprintln!("held-out wells: mean Dice {d:.3}, worm-count error {e:.2} per well");
    // measured: 0.8721 and 0.50 (docs/edge.md; the separable student
    // shipped before: 0.856 and 0.33). Both bounds are the BBBC010 goal's
    // (issue 28): a bundle one worm further off on six wells (0.67) fails.
    assert!(d >= 0.86, "Dice {d}");
    assert!(e <= 0.5, "count error {e}");
    // The scores the signed manifest carries are this count's (the
    // trainer scores its export with the unit's `count_frame`).
    let signed = |k: &str| model.manifest.metrics[k];
    assert!(
        (signed("val_dice_worm") - d).abs() < 1e-9,
        "manifest vs count: Dice"
    );
    assert!(
        (signed("val_count_mae") - e).abs() < 1e-9,
        "manifest vs count: error"
    );
}
