//! Datasets: the BBBC010 layout, the generic `labels.csv` layout users fill
//! themselves, and tiles with image-level labels cut from masked images.

pub mod bbbc010;
pub mod generic;
pub mod tiles;

use std::path::PathBuf;

/// One image with its image-level labels and, where known, masks and counts
/// (one entry per class, in the dataset's class order).
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub id: String,
    pub image: PathBuf,
    pub present: Vec<bool>,
    pub masks: Vec<Option<PathBuf>>,
    pub counts: Vec<Option<usize>>,
}

/// A list of samples over named classes.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pub classes: Vec<String>,
    pub samples: Vec<Sample>,
}

/// Splits `n` items into (train, validation) index lists: a seeded shuffle,
/// then the first `round(n × val_fraction)` (at least one when n > 1) go to
/// validation. Split by image (or well), never by tile, so nothing leaks.
pub fn split_indices(n: usize, val_fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    let mut idx: Vec<usize> = (0..n).collect();
    idx.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
    let mut nval = (n as f64 * val_fraction.clamp(0.0, 1.0)).round() as usize;
    if n > 1 && val_fraction > 0.0 {
        nval = nval.clamp(1, n - 1);
    }
    let val: Vec<usize> = idx[..nval].to_vec();
    let mut train: Vec<usize> = idx[nval..].to_vec();
    let mut val_sorted = val;
    val_sorted.sort_unstable();
    train.sort_unstable();
    (train, val_sorted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_disjoint_complete_and_seeded() {
        let (t, v) = split_indices(62, 0.1, 7);
        assert_eq!(v.len(), 6);
        assert_eq!(t.len() + v.len(), 62);
        assert!(v.iter().all(|i| !t.contains(i)));
        assert_eq!(split_indices(62, 0.1, 7), (t.clone(), v.clone()));
        assert_ne!(split_indices(62, 0.1, 8).1, v);
        assert_eq!(split_indices(2, 0.01, 1).1.len(), 1);
    }
}
