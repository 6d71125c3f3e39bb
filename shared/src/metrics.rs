//! Segmentation, classification and counting scores.

use crate::objects::label_components;
use crate::{Mask, Result};

/// Dice `2|P∩T| / (|P|+|T|)`; two empty masks score 1.
pub fn dice(pred: &Mask, truth: &Mask) -> Result<f64> {
    pred.check_same_size(truth, "dice")?;
    let (i, p, t) = overlap(pred, truth);
    Ok(if p + t == 0 {
        1.0
    } else {
        2.0 * i as f64 / (p + t) as f64
    })
}

/// Intersection over union; two empty masks score 1.
pub fn iou(pred: &Mask, truth: &Mask) -> Result<f64> {
    pred.check_same_size(truth, "iou")?;
    let (i, p, t) = overlap(pred, truth);
    let u = p + t - i;
    Ok(if u == 0 { 1.0 } else { i as f64 / u as f64 })
}

fn overlap(a: &Mask, b: &Mask) -> (usize, usize, usize) {
    let mut i = 0;
    let mut p = 0;
    let mut t = 0;
    for (&x, &y) in a.data().iter().zip(b.data()) {
        i += (x && y) as usize;
        p += x as usize;
        t += y as usize;
    }
    (i, p, t)
}

/// The paper's protocol: mean Dice over the images whose truth contains
/// objects (`None` when no image does).
pub fn mean_dice_positive(pairs: &[(Mask, Mask)]) -> Result<Option<f64>> {
    let mut sum = 0.0;
    let mut n = 0usize;
    for (p, t) in pairs {
        if t.count() > 0 {
            sum += dice(p, t)?;
            n += 1;
        }
    }
    Ok((n > 0).then(|| sum / n as f64))
}

/// Fraction of image-level predictions that equal the labels.
pub fn accuracy(pred: &[bool], truth: &[bool]) -> f64 {
    if pred.is_empty() {
        return 0.0;
    }
    pred.iter().zip(truth).filter(|(a, b)| a == b).count() as f64 / pred.len() as f64
}

/// Area under the ROC curve of scores against labels: the chance that a
/// random positive outscores a random negative (ties count half). `None`
/// without both a positive and a negative. Accuracy hides a class that is
/// never found when most tiles lack it (all-absent scores 0.90 on the
/// synthetic tiles); AUC does not.
pub fn auc(scored: &[(f32, bool)]) -> Option<f64> {
    let mut v: Vec<(f32, bool)> = scored.iter().copied().filter(|s| !s.0.is_nan()).collect();
    let pos = v.iter().filter(|s| s.1).count();
    let neg = v.len() - pos;
    if pos == 0 || neg == 0 {
        return None;
    }
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Sum of the positives' ranks (1-based, ties at their mean rank).
    let (mut rank_sum, mut i) = (0.0f64, 0usize);
    while i < v.len() {
        let mut j = i;
        while j < v.len() && v[j].0 == v[i].0 {
            j += 1;
        }
        let mean_rank = (i + 1 + j) as f64 / 2.0;
        rank_sum += mean_rank * v[i..j].iter().filter(|s| s.1).count() as f64;
        i = j;
    }
    Some((rank_sum - (pos * (pos + 1)) as f64 / 2.0) / (pos * neg) as f64)
}

/// Object-level matching result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ObjectScores {
    pub true_positives: usize,
    pub false_positives: usize,
    pub false_negatives: usize,
}

impl ObjectScores {
    pub fn precision(&self) -> f64 {
        let d = self.true_positives + self.false_positives;
        if d == 0 {
            1.0
        } else {
            self.true_positives as f64 / d as f64
        }
    }
    pub fn recall(&self) -> f64 {
        let d = self.true_positives + self.false_negatives;
        if d == 0 {
            1.0
        } else {
            self.true_positives as f64 / d as f64
        }
    }
}

/// Matches the connected components of `pred` one-to-one to the truth
/// instances (each its own mask, they may overlap), greedily by IoU, and
/// counts a match when IoU ≥ `min_iou`.
pub fn match_objects(pred: &Mask, truth: &[Mask], min_iou: f64) -> Result<ObjectScores> {
    for t in truth {
        pred.check_same_size(t, "match_objects")?;
    }
    let comps = label_components(pred);
    let mut area = vec![0usize; comps.count + 1];
    for &l in comps.labels.data() {
        area[l as usize] += 1;
    }
    let mut cands = Vec::new();
    for (ti, t) in truth.iter().enumerate() {
        let mut inter = std::collections::HashMap::<u32, usize>::new();
        for (&l, &m) in comps.labels.data().iter().zip(t.data()) {
            if m && l != 0 {
                *inter.entry(l).or_default() += 1;
            }
        }
        let tarea = t.count();
        for (l, i) in inter {
            let u = area[l as usize] + tarea - i;
            cands.push((i as f64 / u as f64, ti, l));
        }
    }
    cands.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut used_t = vec![false; truth.len()];
    let mut used_p = vec![false; comps.count + 1];
    let mut tp = 0;
    for (iou, ti, l) in cands {
        if iou < min_iou {
            break;
        }
        if !used_t[ti] && !used_p[l as usize] {
            used_t[ti] = true;
            used_p[l as usize] = true;
            tp += 1;
        }
    }
    Ok(ObjectScores {
        true_positives: tp,
        false_positives: comps.count - tp,
        false_negatives: truth.len() - tp,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn auc_counts_pairs_and_ties_half() {
        use super::auc;
        assert_eq!(auc(&[(0.9, true), (0.1, false)]), Some(1.0));
        assert_eq!(auc(&[(0.1, true), (0.9, false)]), Some(0.0));
        assert_eq!(auc(&[(0.5, true), (0.5, false)]), Some(0.5));
        // 2 positives × 2 negatives: pairs won 1 + 2 = 3 of 4.
        let s = [(0.2, true), (0.8, true), (0.3, false), (0.1, false)];
        assert_eq!(auc(&s), Some(0.75));
        assert_eq!(auc(&[(0.2, true)]), None);
    }

    use super::*;

    fn m(bits: &[u8], w: usize) -> Mask {
        Mask::from_vec(w, bits.len() / w, bits.iter().map(|&b| b != 0).collect()).unwrap()
    }

    #[test]
    fn dice_and_iou_reference_values() {
        let p = m(&[1, 1, 1, 0], 4);
        let t = m(&[0, 1, 1, 1], 4);
        assert!((dice(&p, &t).unwrap() - 2.0 * 2.0 / 6.0).abs() < 1e-12);
        assert!((iou(&p, &t).unwrap() - 0.5).abs() < 1e-12);
        let e = m(&[0, 0, 0, 0], 4);
        assert_eq!(dice(&e, &e).unwrap(), 1.0);
        assert_eq!(dice(&p, &e).unwrap(), 0.0);
        assert!(dice(&p, &m(&[0, 0], 2)).is_err());
    }

    #[test]
    fn paper_protocol_skips_negative_images() {
        let e = m(&[0, 0], 2);
        let f = m(&[1, 1], 2);
        let pairs = vec![
            (f.clone(), f.clone()),
            (f.clone(), e.clone()),
            (e.clone(), f.clone()),
        ];
        assert_eq!(mean_dice_positive(&pairs).unwrap(), Some(0.5));
        assert_eq!(mean_dice_positive(&[(f, e)]).unwrap(), None);
    }

    #[test]
    fn object_matching_counts_tp_fp_fn() {
        // Prediction: two blobs; truth: one matching blob and one missed.
        let pred = m(&[1, 1, 0, 0, 0, 1], 6);
        let t1 = m(&[1, 1, 0, 0, 0, 0], 6);
        let t2 = m(&[0, 0, 0, 1, 0, 0], 6);
        let s = match_objects(&pred, &[t1, t2], 0.5).unwrap();
        assert_eq!(
            s,
            ObjectScores {
                true_positives: 1,
                false_positives: 1,
                false_negatives: 1
            }
        );
        assert_eq!(s.precision(), 0.5);
        assert_eq!(s.recall(), 0.5);
        assert_eq!(
            accuracy(&[true, false, true], &[true, true, true]),
            2.0 / 3.0
        );
    }
}
