//! Checks on the real BBBC010 wells in `../shared/data/bbbc010`.

use nemascope_core::counting::{mean_abs_error, AreaCounter, CountSample};
use nemascope_core::dataset::{bbbc010, split_indices, tiles};
use nemascope_core::imageio::{load_frame, load_mask, LoadLimits};
use nemascope_core::metrics::dice;
use nemascope_core::objects::{basic_stats, label_components};
use nemascope_core::Mask;

fn wells() -> Vec<bbbc010::Well> {
    bbbc010::open(&bbbc010::default_root())
        .expect("BBBC010 development set (../shared/data/bbbc010)")
}

#[test]
fn layout_is_read_with_all_files() {
    let w = wells();
    assert_eq!(w.len(), 62);
    assert!(w
        .iter()
        .all(|w| (11..=15).contains(&w.worm_count) && w.worms.len() == w.worm_count));
    let f = load_frame(&w[0].image, LoadLimits::default()).unwrap();
    assert_eq!(
        (f.plane.width(), f.plane.height(), f.bit_depth),
        (696, 520, 16)
    );
}

/// The two BBBC010 mask sets come from different annotation steps: the
/// union of the per-worm masks covers the same pixels as the foreground
/// mask but is not identical to it (Dice 0.92 on A05).
#[test]
fn union_of_worm_masks_is_close_to_the_foreground_mask() {
    let w = &wells()[3];
    let worms: Vec<Mask> = w.worms.iter().map(|p| load_mask(p).unwrap()).collect();
    let union = Mask::union(&worms.iter().collect::<Vec<_>>()).unwrap();
    let fg = load_mask(&w.mask).unwrap();
    assert_eq!(union.count(), fg.count());
    assert!(dice(&union, &fg).unwrap() > 0.9);
}

/// On the true masks, plain components miss touching worms; splitting by
/// area with a reference fitted on other wells brings the error near zero.
#[test]
fn area_split_counts_touching_worms() {
    let wells = wells();
    let samples: Vec<CountSample> = wells
        .iter()
        .map(|w| CountSample {
            areas: basic_stats(&label_components(&load_mask(&w.mask).unwrap()))
                .iter()
                .map(|o| o.area)
                .collect(),
            count: w.worm_count,
        })
        .collect();
    let (train, val) = split_indices(samples.len(), 0.5, 1);
    let fit: Vec<CountSample> = train.iter().map(|&i| samples[i].clone()).collect();
    let counter = AreaCounter::fit(&fit).unwrap();
    let truth: Vec<usize> = val.iter().map(|&i| samples[i].count).collect();
    let plain: Vec<usize> = val.iter().map(|&i| samples[i].areas.len()).collect();
    let split: Vec<usize> = val
        .iter()
        .map(|&i| counter.count(&samples[i].areas))
        .collect();
    let (e_plain, e_split) = (
        mean_abs_error(&plain, &truth),
        mean_abs_error(&split, &truth),
    );
    assert!(e_plain > 2.5, "plain {e_plain}");
    assert!(e_split < 0.5, "split {e_split}");
}

#[test]
fn tiles_carry_only_image_level_labels_and_include_negatives() {
    let w = &wells()[..2];
    let out = std::env::temp_dir().join(format!("nemascope-tiles-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let ds = bbbc010::to_dataset(w);
    let s = tiles::write_tiles(&ds, tiles::TileSpec::default(), &out).unwrap();
    assert!(
        s.tiles > 20 && s.negatives > 0 && s.negatives < s.tiles,
        "{s:?}"
    );
    let csv = std::fs::read_to_string(out.join("labels.csv")).unwrap();
    assert_eq!(csv.lines().next(), Some("image,worm"));
    assert_eq!(csv.lines().count(), s.tiles + 1);
    let back = nemascope_core::dataset::generic::read(&out).unwrap();
    assert!(back
        .samples
        .iter()
        .all(|s| s.masks == vec![None] && s.counts == vec![None]));
    std::fs::remove_dir_all(&out).unwrap();
}
