//! Whole-image prediction and the scores the reports hold: Dice per image
//! (the paper's protocol: images with objects), image-level accuracy, and
//! worm counts per image.

use nemascope_core::classical::FlatField;
use nemascope_core::counting::{AreaCounter, CountSample, LabelCheck};
use nemascope_core::imageio::{resize_bilinear, resize_nearest};
use nemascope_core::metrics::{auc, dice, mean_dice_positive};
use nemascope_core::objects::{basic_stats, label_components, Object};
use nemascope_core::voting::{vote_maps, VoteParams};
use nemascope_core::{Error, Mask, Plane, Result};
use serde::Serialize;
use tch::nn::ModuleT;
use tch::{Device, Kind, Tensor};

use crate::config::ClassSettings;
use crate::data::{make_batch, Data, Item, Labelled};
use crate::pooling::pool_cells;
use crate::stages::map_plane;
use crate::unet::UNet;
use crate::verifier::Cell;

/// Per-class probability maps of one image at the working size. The input
/// is padded by repeating its edge pixels up to a multiple of 2^depth and
/// the maps cropped back (zero padding drew a false edge, and false
/// objects along it, where the image border is dark).
pub fn predict_maps(net: &UNet, input: &Plane, device: Device) -> Result<Vec<Plane>> {
    let m = 1i64 << net.config.depth;
    let (w, h) = (input.width() as i64, input.height() as i64);
    let (pw, ph) = ((m - w % m) % m, (m - h % m) % m);
    let x = Tensor::from_slice(input.data())
        .reshape([1, 1, h, w])
        .replication_pad2d([0, pw, 0, ph])
        .to_device(device);
    let maps = tch::no_grad(|| net.forward_t(&x, false))
        .narrow(2, 0, h)
        .narrow(3, 0, w)
        .to_device(Device::Cpu);
    (0..net.config.classes)
        .map(|c| map_plane(&maps, 0, c))
        .collect()
}

/// A working-size map as a mask at the file's size: bilinear upsampling of
/// the map, then the threshold (smoother edges than upsampling the mask).
pub fn native_mask(map: &Plane, size: (usize, usize), threshold: f32) -> Result<Mask> {
    if (map.width(), map.height()) == size {
        return Ok(map.threshold(threshold));
    }
    Ok(resize_bilinear(map, size.0, size.1)?.threshold(threshold))
}

/// Each class's working-size map as a mask at the item's own size
/// ([`native_mask`]): what "the network alone" segments.
pub fn native_masks(item: &Item, maps: &[Plane], threshold: f32) -> Result<Vec<Mask>> {
    maps.iter()
        .map(|m| native_mask(m, item.native_size, threshold))
        .collect()
}

/// Maps voted over the item's superpixels ([`vote_maps`], at the working
/// size), brought to the item's own size (nearest neighbour).
pub fn voted_native(
    item: &Item,
    maps: &[Plane],
    p: &VoteParams,
    absent: Option<&[Mask]>,
) -> Result<Vec<Mask>> {
    vote_maps(&item.stretched, maps, p, absent)?
        .iter()
        .map(|m| resize_nearest(m, item.native_size.0, item.native_size.1))
        .collect()
}

/// Scores of one way of segmenting the validation images.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SegScores {
    /// Mean Dice over images that contain the class, per class.
    pub dice: Vec<Option<f64>>,
    /// Per image and class (None where the class is absent).
    pub per_image: Vec<Vec<Option<f64>>>,
    /// First-class count mean absolute error per image, where counts are
    /// known (BBBC010's worms/well).
    pub count_mae: Option<f64>,
    /// First class: image, counted, true.
    pub counts: Vec<(String, usize, usize)>,
    /// Per class: count error per image, and objects found and true over
    /// all the images (where the class has a counter and known counts).
    pub count_mae_per_class: Vec<Option<f64>>,
    pub found: Vec<usize>,
    pub truth: Vec<usize>,
}

/// What the labelled cells say of native-size masks, per class: each
/// component of at least `min_area[c]` pixels (the class's sliver size, in
/// the file's pixels) is one object. An absent cell counts the objects
/// whose centre it holds (each false object once); a present cell is
/// found where any pixel of an object lies in it. By centres alone a worm
/// crossing four cells left three "empty", so worms broken into pieces
/// looked better than whole ones, and on BBBC010 the keeping rule threw
/// away a refinement round that counted 85 worms for 81 for a stage-1
/// map that counted 111 (docs/trainer.md).
/// Needs no true masks, so a round can be judged from the labels alone.
pub fn cell_checks(
    cells: &[Cell],
    items: &[usize],
    masks: &[Vec<Mask>],
    min_area: &[usize],
) -> Vec<LabelCheck> {
    let mut checks = vec![LabelCheck::default(); min_area.len()];
    for (&i, pred) in items.iter().zip(masks) {
        for (c, (m, &min)) in pred.iter().zip(min_area).enumerate() {
            let parts = label_components(m);
            let objects: Vec<Object> = basic_stats(&parts);
            // kept[label]: whether component `label` (1-based) is an object.
            let kept: Vec<bool> = std::iter::once(false)
                .chain(objects.iter().map(|o| o.area >= min.max(1)))
                .collect();
            let labels = &parts.labels;
            let (w, h) = (labels.width(), labels.height());
            let lit = |cell: &Cell| {
                let (x0, x1) = (cell.x0.max(0.0) as usize, (cell.x1.ceil() as usize).min(w));
                let (y0, y1) = (cell.y0.max(0.0) as usize, (cell.y1.ceil() as usize).min(h));
                (y0..y1).any(|y| (x0..x1).any(|x| kept[*labels.get(x, y) as usize]))
            };
            for cell in cells.iter().filter(|k| k.item == i && k.class == c) {
                let n = if cell.present {
                    usize::from(lit(cell))
                } else {
                    objects
                        .iter()
                        .filter(|o| kept[o.label as usize] && cell.holds(c, o.centroid))
                        .count()
                };
                checks[c].add(cell.present, n);
            }
        }
    }
    checks
}

/// Scores native-size masks against the items' true masks; each class is
/// counted by its area counter (fitted on training images).
pub fn score(
    data: &Data,
    items: &[usize],
    preds: &[Vec<Mask>],
    counters: &[Option<AreaCounter>],
) -> Result<SegScores> {
    let counts: Vec<Vec<Option<usize>>> = preds
        .iter()
        .map(|pred| {
            pred.iter()
                .enumerate()
                .map(|(c, m)| {
                    let counter = counters.get(c)?.as_ref()?;
                    let areas: Vec<usize> = basic_stats(&label_components(m))
                        .iter()
                        .map(|o| o.area)
                        .collect();
                    Some(counter.count(&areas))
                })
                .collect()
        })
        .collect();
    score_counted(data, items, preds, &counts)
}

/// Scores native-size masks against the items' true masks, and `found`
/// counts (per image and class, `None` where not counted) against the
/// known counts.
pub fn score_counted(
    data: &Data,
    items: &[usize],
    preds: &[Vec<Mask>],
    found: &[Vec<Option<usize>>],
) -> Result<SegScores> {
    let classes = data.classes.len();
    let mut per_image = Vec::new();
    let mut pairs: Vec<Vec<(Mask, Mask)>> = vec![Vec::new(); classes];
    let mut counts: Vec<Vec<(String, usize, usize)>> = vec![Vec::new(); classes];
    for ((&i, pred), found) in items.iter().zip(preds).zip(found) {
        let it = &data.items[i];
        // Image-level labels only (a labelled folder): nothing to score
        // pixels against; the stage's AUC and accuracy still say how it does.
        let Some(truth) = it.native.as_ref() else {
            per_image.push(vec![None; classes]);
            continue;
        };
        let mut row = Vec::new();
        for c in 0..classes {
            row.push(if truth[c].count() > 0 {
                Some(dice(&pred[c], &truth[c])?)
            } else {
                None
            });
            pairs[c].push((pred[c].clone(), truth[c].clone()));
            if let (Some(Some(f)), Some(Some(n))) = (found.get(c), it.counts.get(c)) {
                counts[c].push((it.id.clone(), *f, *n));
            }
        }
        per_image.push(row);
    }
    let dice = pairs
        .iter()
        .map(|p| mean_dice_positive(p))
        .collect::<Result<Vec<_>>>()?;
    let mae = |counts: &[(String, usize, usize)]| {
        (!counts.is_empty()).then(|| {
            counts
                .iter()
                .map(|(_, p, t)| (*p as f64 - *t as f64).abs())
                .sum::<f64>()
                / counts.len() as f64
        })
    };
    let count_mae_per_class: Vec<Option<f64>> = counts.iter().map(|c| mae(c)).collect();
    Ok(SegScores {
        dice,
        per_image,
        count_mae: count_mae_per_class.first().copied().flatten(),
        found: counts.iter().map(|c| c.iter().map(|x| x.1).sum()).collect(),
        truth: counts.iter().map(|c| c.iter().map(|x| x.2).sum()).collect(),
        count_mae_per_class,
        counts: counts.into_iter().next().unwrap_or_default(),
    })
}

/// Per class, the image-level labels of `items` against what was counted
/// on each (`counts`, in `items` order): tiles labelled absent with
/// something counted, tiles labelled present with nothing.
pub fn label_checks(
    data: &Data,
    items: &[usize],
    counts: &[Vec<Option<usize>>],
) -> Vec<LabelCheck> {
    let mut out = vec![LabelCheck::default(); data.classes.len()];
    for (&i, counted) in items.iter().zip(counts) {
        for (c, check) in out.iter_mut().enumerate() {
            if let (Some(&present), Some(Some(n))) = (data.items[i].present.get(c), counted.get(c))
            {
                check.add(present, *n);
            }
        }
    }
    out
}

/// [`label_checks`] per source image of a labelled folder's tiles
/// (`nemascope_core::dataset::tiles::source_image`; an item whose name is
/// not a tile's is its own image), in name order.
pub fn label_checks_per_image(
    data: &Data,
    items: &[usize],
    counts: &[Vec<Option<usize>>],
) -> Vec<(String, Vec<LabelCheck>)> {
    // Positions into `items` and `counts`, per image.
    let mut groups: std::collections::BTreeMap<&str, Vec<usize>> = Default::default();
    for (k, &i) in items.iter().enumerate() {
        let id = data.items[i].id.as_str();
        let image = nemascope_core::dataset::tiles::source_image(id).unwrap_or(id);
        groups.entry(image).or_default().push(k);
    }
    groups
        .into_iter()
        .map(|(image, ks)| {
            let is: Vec<usize> = ks.iter().map(|&k| items[k]).collect();
            let cs: Vec<Vec<Option<usize>>> = ks.iter().map(|&k| counts[k].clone()).collect();
            (image.to_string(), label_checks(data, &is, &cs))
        })
        .collect()
}

/// Per class, an area counter fitted on the true masks of `items` (None
/// where the class has no known counts or no objects there).
pub fn fit_counters(data: &Data, items: &[usize]) -> Vec<Option<AreaCounter>> {
    (0..data.classes.len())
        .map(|c| {
            let samples: Vec<CountSample> = items
                .iter()
                .filter_map(|&i| {
                    let it = &data.items[i];
                    let n = (*it.counts.get(c)?)?;
                    let m = &it.native.as_ref()?[c];
                    Some(CountSample {
                        areas: basic_stats(&label_components(m))
                            .iter()
                            .map(|o| o.area)
                            .collect(),
                        count: n,
                    })
                })
                .collect();
            AreaCounter::fit(&samples).ok()
        })
        .collect()
}

/// The classical flat-field threshold (class 0) on the images at their own
/// size. Its background (block medians, or a sliding median of radius 15)
/// and dark-pixel ratio are tuned on `tune` (the training images) for the
/// best mean Dice, so the baseline is as good as it honestly can be.
/// Returns the chosen settings and the masks of `items`.
pub fn classical(
    data: &Data,
    tune: &[usize],
    items: &[usize],
) -> Result<(FlatField, Vec<Vec<Mask>>)> {
    let ratios: Vec<f32> = (0..=24).map(|k| 0.70 + 0.0125 * k as f32).collect();
    let kinds = [
        FlatField::default(),
        FlatField {
            median_radius: 15,
            ..FlatField::default()
        },
    ];
    let mut best = (f64::NEG_INFINITY, kinds[0]);
    for kind in kinds {
        let mut sums = vec![(0.0f64, 0usize); ratios.len()];
        for &i in tune {
            let it = &data.items[i];
            let Some(truth) = it.native.as_ref().map(|t| &t[0]) else {
                continue;
            };
            if truth.count() == 0 {
                continue;
            }
            let bg = kind.background(&it.raw)?;
            for (k, &r) in ratios.iter().enumerate() {
                let m = FlatField {
                    dark_ratio: r,
                    ..kind
                }
                .segment_with(&it.raw, &bg)?;
                sums[k].0 += dice(&m, truth)?;
                sums[k].1 += 1;
            }
        }
        for (s, &r) in sums.iter().zip(&ratios) {
            if s.1 > 0 && s.0 / s.1 as f64 > best.0 {
                best = (
                    s.0 / s.1 as f64,
                    FlatField {
                        dark_ratio: r,
                        ..kind
                    },
                );
            }
        }
    }
    let ff = best.1;
    let masks = items
        .iter()
        .map(|&i| {
            let it = &data.items[i];
            let mut row = vec![ff.segment(&it.raw)?];
            for _ in 1..data.classes.len() {
                row.push(Mask::filled(it.native_size.0, it.native_size.1, false));
            }
            Ok(row)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((ff, masks))
}

/// How well the pooled maps classify the validation cells, per class.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CellScores {
    /// Over all classes' labelled cells, scores above 0.5 against labels.
    pub accuracy: f64,
    pub auc: Vec<Option<f64>>,
    pub recall: Vec<Option<f64>>,
    pub precision: Vec<Option<f64>>,
}

/// Each class's maps pooled over its cells on `regions`, against the cell
/// labels (unlabelled cells left out).
pub fn cell_scores(
    net: &UNet,
    data: &Data,
    regions: &[Labelled],
    settings: &[ClassSettings],
    batch: usize,
    device: Device,
) -> Result<CellScores> {
    let mut scored: Vec<Vec<(f32, bool)>> = vec![Vec::new(); settings.len()];
    for chunk in regions.chunks(batch.max(1)) {
        let b = make_batch(data, chunk, None, None)?;
        let maps = tch::no_grad(|| net.forward_t(&b.x.to_device(device), false));
        for (c, s) in settings.iter().enumerate() {
            let pooled = pool_cells(&maps.select(1, c as i64), s.cell, s.pooling);
            let v = |t: &Tensor| {
                Vec::<f32>::try_from(t.to_device(Device::Cpu).to_kind(Kind::Float).flatten(0, -1))
                    .map_err(|e| Error::Invalid(e.to_string()))
            };
            let (p, l, w) = (v(&pooled)?, v(&b.labels[c])?, v(&b.weights[c])?);
            scored[c].extend(
                p.iter()
                    .zip(l.iter().zip(&w))
                    .filter(|(_, (_, &w))| w > 0.0)
                    .map(|(&p, (&l, _))| (p, l > 0.5)),
            );
        }
    }
    let (right, total) = scored.iter().flatten().fold((0, 0), |(r, t), &(p, l)| {
        (r + ((p > 0.5) == l) as usize, t + 1)
    });
    let ratio = |num: usize, den: usize| (den > 0).then(|| num as f64 / den as f64);
    let (mut recall, mut precision) = (Vec::new(), Vec::new());
    for s in &scored {
        let tp = s.iter().filter(|&&(p, l)| p > 0.5 && l).count();
        recall.push(ratio(tp, s.iter().filter(|x| x.1).count()));
        precision.push(ratio(tp, s.iter().filter(|x| x.0 > 0.5).count()));
    }
    Ok(CellScores {
        accuracy: right as f64 / total.max(1) as f64,
        auc: scored.iter().map(|s| auc(s)).collect(),
        recall,
        precision,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(class: usize, x0: f32, present: bool) -> Cell {
        Cell {
            item: 0,
            class,
            x0,
            y0: 0.0,
            x1: x0 + 10.0,
            y1: 10.0,
            present,
        }
    }

    #[test]
    fn cell_checks_count_each_object_of_at_least_the_sliver_size_in_the_cell_of_its_centre() {
        // One class, a 30×10 image: cells [0,10) absent, [10,20) present,
        // [20,30) present. A 3×3 object centred in the first, a 1-px speck
        // in the second (below the sliver size 4), nothing in the third.
        let mut m = Mask::filled(30, 10, false);
        for y in 2..5 {
            for x in 2..5 {
                m.set(x, y, true);
            }
        }
        m.set(15, 5, true);
        let cells = [
            cell(0, 0.0, false),
            cell(0, 10.0, true),
            cell(0, 20.0, true),
        ];
        let checks = cell_checks(&cells, &[0], &[vec![m.clone()]], &[4]);
        assert_eq!(
            checks[0],
            LabelCheck {
                absent: 1,
                counted_in_absent: 1,
                objects_in_absent: 1,
                present: 2,
                nothing_in_present: 2,
            }
        );
        // With no sliver floor the speck is an object of the middle cell.
        let checks = cell_checks(&cells, &[0], &[vec![m]], &[0]);
        assert_eq!(checks[0].nothing_in_present, 1);
        // A cell of another class sees nothing of this class's mask.
        let other = cell_checks(
            &[cell(1, 0.0, false)],
            &[0],
            &[vec![
                Mask::filled(30, 10, true),
                Mask::filled(30, 10, false),
            ]],
            &[1, 1],
        );
        assert_eq!(other[1].counted_in_absent, 0);
    }

    /// A worm across three present cells finds all three, whole or broken
    /// into pieces (by centres alone, whole it left two "empty" and each
    /// piece filled one more); its centre is one false object in an
    /// absent cell, and only there.
    #[test]
    fn cell_checks_find_a_present_cell_wherever_an_object_lies_in_it() {
        let worm = |gaps: &[usize]| {
            let mut m = Mask::filled(40, 10, false);
            for y in 4..6 {
                for x in (2..28).filter(|x| !gaps.contains(x)) {
                    m.set(x, y, true);
                }
            }
            m
        };
        let cells = [
            cell(0, 0.0, true),
            cell(0, 10.0, true),
            cell(0, 20.0, true),
            cell(0, 30.0, true),
        ];
        for m in [worm(&[]), worm(&[9, 19])] {
            let checks = cell_checks(&cells, &[0], &[vec![m]], &[4]);
            assert_eq!((checks[0].present, checks[0].nothing_in_present), (4, 1));
        }
        // The same whole worm where the middle cell is labelled absent.
        let mixed = [
            cell(0, 0.0, true),
            cell(0, 10.0, false),
            cell(0, 20.0, true),
        ];
        let checks = cell_checks(&mixed, &[0], &[vec![worm(&[])]], &[4]);
        assert_eq!(
            (checks[0].objects_in_absent, checks[0].nothing_in_present),
            (1, 0)
        );
    }
}
