//! The object verifier, fitted from the image-level labels alone by
//! multiple-instance learning on the exported model's own candidates.
//!
//! `count` finds candidate objects (components of each class's map) and
//! measures them (`nemascope_core::verify::FEATURES`). A cell labelled
//! absent makes every candidate in it a negative; a cell labelled present
//! is a bag holding at least one positive. A logistic model is fitted with
//! every bag member positive, then the members it scores below one half
//! become negatives (the best of each bag staying positive) and it is
//! fitted again (mi-SVM's alternation, with a logistic loss). The
//! threshold is the one with the fewest count errors the validation cells'
//! labels prove (objects counted in absent cells, present cells with
//! nothing counted); where no threshold beats counting every candidate,
//! the class gets no verifier.

use std::collections::BTreeMap;

use nemascope_bundle::ObjectVerifier;
use nemascope_core::counting::LabelCheck;
use nemascope_core::verify::FEATURES;
use nemascope_core::{Error, Result};
use nemascope_count::{count_frame, Candidate, CountSettings, Model};
use tch::nn::{self, OptimizerConfig};
use tch::{Kind, Tensor};

use crate::data::{grid_regions, Data, Labelled};
use crate::thresholds;

const N: usize = FEATURES.len();

/// One labelled cell of one class, in the file's own pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cell {
    pub item: usize,
    pub class: usize,
    pub x0: f32,
    pub y0: f32,
    pub x1: f32,
    pub y1: f32,
    pub present: bool,
}

/// The labelled cells of `regions` (cells at the working size, mapped to
/// each item's own size, where `count` measures).
pub fn cells(data: &Data, regions: &[Labelled]) -> Vec<Cell> {
    let mut out = Vec::new();
    for (r, labels) in regions {
        let it = &data.items[r.item];
        let sx = it.native_size.0 as f32 / it.input.width() as f32;
        let sy = it.native_size.1 as f32 / it.input.height() as f32;
        for (c, ls) in labels.iter().enumerate() {
            let n = (ls.len() as f64).sqrt().round().max(1.0) as usize;
            let (cw, ch) = (r.w / n, r.h / n);
            for (k, l) in ls.iter().enumerate() {
                let Some(present) = *l else { continue };
                let (x, y) = (r.x + (k % n) * cw, r.y + (k / n) * ch);
                out.push(Cell {
                    item: r.item,
                    class: c,
                    x0: x as f32 * sx,
                    y0: y as f32 * sy,
                    x1: (x + cw) as f32 * sx,
                    y1: (y + ch) as f32 * sy,
                    present,
                });
            }
        }
    }
    out
}

impl Cell {
    /// Whether an object of `class` centred at `(x, y)` (the file's
    /// pixels) lies in this cell.
    pub fn holds(&self, class: usize, (x, y): (f32, f32)) -> bool {
        class == self.class && (self.x0..self.x1).contains(&x) && (self.y0..self.y1).contains(&y)
    }
}

/// Per cell, the candidates of its class whose centre lies in it.
fn members<'a>(cells: &[Cell], cands: &'a [Vec<Candidate>]) -> Vec<Vec<&'a Candidate>> {
    cells
        .iter()
        .map(|cell| {
            cands[cell.item]
                .iter()
                .filter(|k| cell.holds(k.class, k.centroid))
                .collect()
        })
        .collect()
}

/// Per item of `data` (empty for those not in `items`), every candidate
/// object `model` finds in the item's file as the unit counts it, with its
/// measures, ignoring any verifier the manifest already holds.
pub fn candidates(
    model: &Model,
    data: &Data,
    items: &[usize],
    count: &CountSettings,
) -> Result<Vec<Vec<Candidate>>> {
    let s = CountSettings {
        candidates: true,
        ..*count
    };
    let mut bare = model.clone();
    bare.manifest.verifiers.clear();
    let mut cands = vec![Vec::new(); data.items.len()];
    for &i in items {
        let c = count_frame(&bare, &data.items[i].raw, &s)
            .map_err(|e| Error::Invalid(format!("{}: {e}", data.items[i].id)))?;
        cands[i] = c.candidates;
    }
    Ok(cands)
}

/// A logistic model fitted on known labels (`ys`), each side weighing
/// half: the ceiling the labels-only fit is measured against.
pub fn supervised(xs: &[[f32; N]], ys: &[bool]) -> ObjectVerifier {
    let mut v = unfitted(xs);
    logistic_fit(&mut v, xs, ys);
    v
}

/// A verifier with zero weights whose standardisation is `all`'s mean
/// and spread.
fn unfitted(all: &[[f32; N]]) -> ObjectVerifier {
    let n = all.len().max(1) as f32;
    let mean: Vec<f32> = (0..N)
        .map(|j| all.iter().map(|f| f[j]).sum::<f32>() / n)
        .collect();
    let scale: Vec<f32> = (0..N)
        .map(|j| {
            let v = all.iter().map(|f| (f[j] - mean[j]).powi(2)).sum::<f32>() / n;
            v.sqrt().max(1e-3)
        })
        .collect();
    ObjectVerifier {
        mean,
        scale,
        weights: vec![0.0; N],
        bias: 0.0,
        threshold: 0.5,
    }
}

/// What fitting found for one class.
#[derive(Debug, Clone)]
pub struct Fitted {
    pub class: String,
    /// Training candidates in absent cells, and present bags.
    pub negatives: usize,
    pub bags: usize,
    /// Validation cells' proven errors (`LabelCheck::proven_errors`) with
    /// every candidate counted, and
    /// with the verifier at its threshold.
    pub error_all: f64,
    pub error_verified: f64,
    /// The verifier the manifest gets, if it beat counting every candidate.
    pub verifier: Option<ObjectVerifier>,
    /// The multiple-instance fit at its best threshold, kept or not
    /// (`None` with under 5 negatives or bags).
    pub fit: Option<ObjectVerifier>,
}

/// Fits a verifier per class for `model` on `data`'s training cells and
/// chooses its threshold on the validation cells. `crop` is the labelled
/// tile (0: whole images); `count` is how the unit counts.
pub fn fit(
    model: &Model,
    data: &Data,
    crop: usize,
    classes: &[crate::config::ClassSettings],
    count: &CountSettings,
) -> Result<Vec<Fitted>> {
    let items: Vec<usize> = data.train.iter().chain(&data.val).copied().collect();
    let cands = candidates(model, data, &items, count)?;
    let train = cells(data, &grid_regions(data, &data.train, crop, crop, classes)?);
    let val = cells(data, &grid_regions(data, &data.val, crop, crop, classes)?);
    let (train_m, val_m) = (members(&train, &cands), members(&val, &cands));
    let mut out = Vec::new();
    for (c, name) in data.classes.iter().enumerate() {
        let of = |cells: &[Cell], m: &[Vec<&Candidate>]| -> Vec<(bool, Vec<[f32; N]>)> {
            cells
                .iter()
                .zip(m)
                .filter(|(cell, _)| cell.class == c)
                .map(|(cell, m)| (cell.present, m.iter().map(|k| k.features).collect()))
                .collect()
        };
        let (tr, va) = (of(&train, &train_m), of(&val, &val_m));
        let negatives = tr.iter().filter(|(p, _)| !p).map(|(_, f)| f.len()).sum();
        let bags: Vec<&Vec<[f32; N]>> = tr
            .iter()
            .filter(|(p, f)| *p && !f.is_empty())
            .map(|(_, f)| f)
            .collect();
        let all = check_at(&va, |_| 1.0, 0.0);
        let error_all = all.proven_errors();
        let mut fitted = Fitted {
            class: name.clone(),
            negatives,
            bags: bags.len(),
            error_all,
            error_verified: error_all,
            verifier: None,
            fit: None,
        };
        if negatives >= 5 && bags.len() >= 5 {
            let negs: Vec<[f32; N]> = tr
                .iter()
                .filter(|(p, _)| !p)
                .flat_map(|(_, f)| f.iter().copied())
                .collect();
            let v = mil(&negs, &bags);
            if let Some((t, e)) = best_threshold(&va, &v, &all) {
                let v = ObjectVerifier { threshold: t, ..v };
                if e < error_all {
                    fitted.error_verified = e;
                    fitted.verifier = Some(v.clone());
                }
                fitted.fit = Some(v);
            }
        }
        out.push(fitted);
    }
    Ok(out)
}

/// The verifiers of `fitted`, by class name, for the manifest.
pub fn verifiers(fitted: &[Fitted]) -> BTreeMap<String, ObjectVerifier> {
    fitted
        .iter()
        .filter_map(|f| Some((f.class.clone(), f.verifier.clone()?)))
        .collect()
}

/// What the cells' labels say when the candidates scoring at least `t`
/// count.
fn check_at(
    cells: &[(bool, Vec<[f32; N]>)],
    score: impl Fn(&[f32; N]) -> f32,
    t: f32,
) -> LabelCheck {
    let mut check = LabelCheck::default();
    for (present, fs) in cells {
        check.add(*present, fs.iter().filter(|f| score(f) >= t).count());
    }
    check
}

/// The threshold in 0.05 … 0.95 with the fewest count errors the
/// validation cells prove, among those that still find the class
/// (`thresholds::best`, against counting every candidate: `all`), and its
/// errors; the lowest such threshold on ties.
fn best_threshold(
    cells: &[(bool, Vec<[f32; N]>)],
    v: &ObjectVerifier,
    all: &LabelCheck,
) -> Option<(f32, f64)> {
    let levels = thresholds::grid();
    let checks: Vec<LabelCheck> = levels
        .iter()
        .map(|&t| check_at(cells, |f| v.score(f), t))
        .collect();
    let k = thresholds::best(&levels, &checks, 0.0, all)?;
    Some((levels[k], checks[k].proven_errors()))
}

/// Multiple-instance logistic regression: negatives are certain, each bag
/// holds at least one positive. Three rounds of fit and relabel.
pub fn mil(negatives: &[[f32; N]], bags: &[&Vec<[f32; N]>]) -> ObjectVerifier {
    let all: Vec<[f32; N]> = negatives
        .iter()
        .chain(bags.iter().flat_map(|b| b.iter()))
        .copied()
        .collect();
    let mut v = unfitted(&all);
    let mut labels: Vec<Vec<bool>> = bags.iter().map(|b| vec![true; b.len()]).collect();
    for round in 0..3 {
        let mut xs = negatives.to_vec();
        let mut ys = vec![false; negatives.len()];
        for (b, ls) in bags.iter().zip(&labels) {
            xs.extend(b.iter().copied());
            ys.extend(ls.iter().copied());
        }
        logistic_fit(&mut v, &xs, &ys);
        if round == 2 {
            break;
        }
        for (b, ls) in bags.iter().zip(labels.iter_mut()) {
            let scores: Vec<f32> = b.iter().map(|f| v.score(f)).collect();
            let best = scores
                .iter()
                .enumerate()
                .fold(0, |k, (j, s)| if *s > scores[k] { j } else { k });
            for (j, (l, s)) in ls.iter_mut().zip(&scores).enumerate() {
                *l = j == best || *s >= 0.5;
            }
        }
    }
    v
}

/// L2-regularised logistic regression on standardised features, each
/// side weighing half (`xs`, `ys`), by full-batch Adam from `v`'s weights.
fn logistic_fit(v: &mut ObjectVerifier, xs: &[[f32; N]], ys: &[bool]) {
    let pos = ys.iter().filter(|y| **y).count().max(1) as f32;
    let neg = ys.iter().filter(|y| !**y).count().max(1) as f32;
    let (mean, scale) = (&v.mean, &v.scale);
    let z: Vec<f32> = xs
        .iter()
        .flat_map(|f| (0..N).map(move |j| (f[j] - mean[j]) / scale[j]))
        .collect();
    let x = Tensor::from_slice(&z).reshape([xs.len() as i64, N as i64]);
    let y = Tensor::from_slice(
        &ys.iter()
            .map(|&b| f32::from(u8::from(b)))
            .collect::<Vec<_>>(),
    );
    let w8 = Tensor::from_slice(
        &ys.iter()
            .map(|&b| if b { 0.5 / pos } else { 0.5 / neg })
            .collect::<Vec<_>>(),
    );
    let vs = nn::VarStore::new(tch::Device::Cpu);
    let w = vs.root().var_copy("w", &Tensor::from_slice(&v.weights));
    let b = vs.root().var_copy("b", &Tensor::from_slice(&[v.bias]));
    let Ok(mut opt) = nn::Adam::default().build(&vs, 0.05) else {
        return;
    };
    for _ in 0..400 {
        let logits = x.matmul(&w) + &b;
        let loss = (logits.binary_cross_entropy_with_logits::<Tensor>(
            &y,
            None,
            None,
            tch::Reduction::None,
        ) * &w8)
            .sum(Kind::Float)
            + w.square().sum(Kind::Float) * 1e-3;
        opt.backward_step(&loss);
    }
    if let Ok(fitted) = Vec::<f32>::try_from(&w.detach()) {
        v.weights = fitted;
    }
    v.bias = b.double_value(&[0]) as f32;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Debris (feature 4 low) fills absent and present cells alike; each
    /// present cell also holds one object (feature 4 high). The fit must
    /// find it from the bags alone and its threshold must separate them.
    #[test]
    fn mil_finds_the_object_that_only_present_cells_hold() {
        let debris = |k: usize| {
            let mut f = [0.0; N];
            f[0] = (k % 7) as f32 * 0.3;
            f[4] = 0.1 + (k % 5) as f32 * 0.05;
            f
        };
        let object = |k: usize| {
            let mut f = debris(k);
            f[4] = 0.8 + (k % 3) as f32 * 0.05;
            f
        };
        let negatives: Vec<[f32; N]> = (0..60).map(debris).collect();
        let bags: Vec<Vec<[f32; N]>> = (0..30)
            .map(|k| vec![debris(k + 3), object(k), debris(k + 1)])
            .collect();
        let refs: Vec<&Vec<[f32; N]>> = bags.iter().collect();
        let v = mil(&negatives, &refs);
        assert!(v.weights[4] > 0.0, "{:?}", v.weights);
        let val: Vec<(bool, Vec<[f32; N]>)> = (0..20)
            .map(|k| {
                if k % 2 == 0 {
                    (true, vec![object(k), debris(k)])
                } else {
                    (false, vec![debris(k), debris(k + 2)])
                }
            })
            .collect();
        // Counting every candidate: two false objects per absent cell.
        let all = check_at(&val, |_| 1.0, 0.0);
        assert_eq!(all.proven_errors(), 1.0);
        let (t, e) = best_threshold(&val, &v, &all).unwrap();
        assert_eq!(e, 0.0, "threshold {t}");
    }
}
