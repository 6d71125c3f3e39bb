//! Superpixel voting: the paper turns a coarse activation mask into one that
//! follows image edges by making each superpixel all-foreground when at least
//! `rate` (default 20 %) of its pixels are foreground, all-background
//! otherwise. Applied per class.

use crate::felzenszwalb::{self, Params, Segmentation};
use crate::imageio::stretched;
use crate::{Error, Mask, Plane, Result};

/// The paper's vote rate.
pub const DEFAULT_RATE: f32 = 0.2;

/// Votes `mask` over the superpixels of `seg`.
pub fn vote(seg: &Segmentation, mask: &Mask, rate: f32) -> Result<Mask> {
    seg.labels
        .check_same_size(mask, "vote: superpixels and mask")?;
    if !(rate > 0.0 && rate <= 1.0) {
        return Err(Error::Invalid(format!(
            "vote rate must be in (0, 1], got {rate}"
        )));
    }
    let mut total = vec![0u32; seg.count];
    let mut fg = vec![0u32; seg.count];
    for (&l, &m) in seg.labels.data().iter().zip(mask.data()) {
        total[l as usize] += 1;
        fg[l as usize] += m as u32;
    }
    let on: Vec<bool> = total
        .iter()
        .zip(&fg)
        .map(|(&t, &f)| t > 0 && f as f64 >= rate as f64 * t as f64 * (1.0 - 1e-6))
        .collect();
    Ok(seg.labels.map(|&l| on[l as usize]))
}

/// How class maps become voted masks: the trainer's stage 2 and the
/// unit's optional voting read the same settings (the manifest's).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VoteParams {
    /// Map threshold before voting.
    pub threshold: f32,
    /// The paper's 20 % rule.
    pub rate: f32,
    pub superpixels: Params,
}

impl Default for VoteParams {
    fn default() -> Self {
        VoteParams {
            threshold: 0.5,
            rate: DEFAULT_RATE,
            superpixels: Params::default(),
        }
    }
}

/// The superpixels of a frame: Felzenszwalb on its 0.5–99.5 % stretch, so
/// `scale` means the same on 8-bit, 16-bit and dim frames.
pub fn superpixels(frame: &Plane, p: &Params) -> Result<Segmentation> {
    felzenszwalb::segment(&stretched(frame), p)
}

/// Every class's mask voted over the same superpixels. Pixels in
/// `absent[c]` (where a label says class `c` is not) are cleared before
/// the vote, so map noise there cannot claim a large superpixel.
pub fn vote_masks(
    seg: &Segmentation,
    masks: &[Mask],
    rate: f32,
    absent: Option<&[Mask]>,
) -> Result<Vec<Mask>> {
    masks
        .iter()
        .enumerate()
        .map(|(c, m)| match absent.and_then(|a| a.get(c)) {
            Some(a) => {
                m.check_same_size(a, "known-absent mask")?;
                let mut fg = m.clone();
                for (f, &no) in fg.data_mut().iter_mut().zip(a.data()) {
                    *f &= !no;
                }
                vote(seg, &fg, rate)
            }
            None => vote(seg, m, rate),
        })
        .collect()
}

/// Class maps thresholded and voted over the superpixels of `stretched`
/// (the frame after [`stretched`]): stage 2's masks.
pub fn vote_maps(
    stretched: &Plane,
    maps: &[Plane],
    p: &VoteParams,
    absent: Option<&[Mask]>,
) -> Result<Vec<Mask>> {
    let seg = felzenszwalb::segment(stretched, &p.superpixels)?;
    let masks: Vec<Mask> = maps.iter().map(|m| m.threshold(p.threshold)).collect();
    vote_masks(&seg, &masks, p.rate, absent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Grid;
    use proptest::prelude::*;

    fn seg_of(labels: Vec<u32>, w: usize, h: usize) -> Segmentation {
        let count = labels.iter().max().map_or(0, |&m| m as usize + 1);
        Segmentation {
            labels: Grid::from_vec(w, h, labels).unwrap(),
            count,
        }
    }

    #[test]
    fn twenty_percent_rule() {
        // Two superpixels of 5 pixels: one with 1 foreground pixel (20 %),
        // one with 0.
        let seg = seg_of(vec![0, 0, 0, 0, 0, 1, 1, 1, 1, 1], 10, 1);
        let mut m = Mask::filled(10, 1, false);
        m.set(2, 0, true);
        let v = vote(&seg, &m, 0.2).unwrap();
        assert_eq!(
            v.data(),
            &[true, true, true, true, true, false, false, false, false, false]
        );
        let v = vote(&seg, &m, 0.21).unwrap();
        assert_eq!(v.count(), 0);
    }

    #[test]
    fn errors_on_size_mismatch_and_bad_rate() {
        let seg = seg_of(vec![0; 4], 2, 2);
        assert!(vote(&seg, &Mask::filled(3, 1, false), 0.2).is_err());
        assert!(vote(&seg, &Mask::filled(2, 2, false), 0.0).is_err());
        assert!(vote(&seg, &Mask::filled(2, 2, false), f32::NAN).is_err());
    }

    #[test]
    fn absent_pixels_cannot_claim_a_superpixel() {
        let seg = seg_of(vec![0, 0, 0, 0, 0, 1, 1, 1, 1, 1], 10, 1);
        let mut m = Mask::filled(10, 1, false);
        m.set(2, 0, true);
        let no = Mask::from_fn(10, 1, |x, _| x < 5);
        let v = vote_masks(&seg, &[m.clone(), m.clone()], 0.2, Some(&[no])).unwrap();
        assert_eq!(v[0].count(), 0, "cleared where absent");
        assert_eq!(v[1].count(), 5, "no absent mask for class 1");
        let maps = [Plane::from_fn(10, 1, |x, _| if x == 2 { 0.9 } else { 0.1 })];
        let flat = Plane::from_fn(10, 1, |x, _| x as f32 / 9.0);
        let p = VoteParams::default();
        assert_eq!(vote_maps(&flat, &maps, &p, None).unwrap().len(), 1);
    }

    proptest! {
        /// Voting is constant on superpixels, idempotent, and monotone in the
        /// rate; rate 1 keeps only fully covered superpixels.
        #[test]
        fn voting_invariants(
            w in 1usize..12, h in 1usize..12, nseg in 1u32..6,
            seed in any::<u64>(), rate in 0.01f32..1.0,
        ) {
            let mut s = seed;
            let mut next = || { s ^= s << 13; s ^= s >> 7; s ^= s << 17; s };
            let labels: Vec<u32> = (0..w * h).map(|_| (next() % nseg as u64) as u32).collect();
            let seg = seg_of(labels, w, h);
            let mask = Mask::from_vec(w, h, (0..w * h).map(|_| next() % 3 == 0).collect()).unwrap();
            let v = vote(&seg, &mask, rate).unwrap();
            for (i, &l) in seg.labels.data().iter().enumerate() {
                for (j, &l2) in seg.labels.data().iter().enumerate() {
                    if l == l2 { prop_assert_eq!(v.data()[i], v.data()[j]); }
                }
            }
            prop_assert_eq!(&vote(&seg, &v, rate).unwrap(), &v);
            let stricter = vote(&seg, &mask, (rate + 0.3).min(1.0)).unwrap();
            for (a, b) in stricter.data().iter().zip(v.data()) { prop_assert!(!a || *b); }
            let full = vote(&seg, &mask, 1.0).unwrap();
            for (i, &on) in full.data().iter().enumerate() {
                if on {
                    let l = seg.labels.data()[i];
                    for (j, &l2) in seg.labels.data().iter().enumerate() {
                        if l2 == l { prop_assert!(mask.data()[j]); }
                    }
                }
            }
        }
    }
}
