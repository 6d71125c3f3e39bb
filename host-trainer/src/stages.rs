//! Stages 2 and 3 of the weakly supervised method: superpixel voting on the
//! network's maps, and the Dice loss the refinement rounds train with.

use nemascope_core::voting::vote_maps;
pub use nemascope_core::voting::VoteParams;
use nemascope_core::{Error, Mask, Plane, Result};

pub use crate::config::DiceKind;
use tch::{Kind, Tensor};

/// Map `[B, C, H, W]` row `b`, class `c`, as a plane.
pub fn map_plane(maps: &Tensor, b: i64, c: i64) -> Result<Plane> {
    let m = maps.get(b).get(c).to_kind(Kind::Float).contiguous();
    let size = m.size();
    let data = Vec::<f32>::try_from(m.flatten(0, -1))
        .map_err(|e| Error::Invalid(format!("map to plane: {e}")))?;
    Plane::from_vec(size[1] as usize, size[0] as usize, data)
}

/// Stage 2 for one image: each class map thresholded and voted over the
/// superpixels of `stretched` (the image after `imageio::stretched`).
/// Pixels where a class is known absent (`absent[c]`: cells labelled
/// without it, or the whole image when its label says so) are cleared
/// first, so a class labelled absent gets an empty mask. The trainer's
/// refinement rounds make their targets with this.
pub fn voted_masks(
    stretched: &Plane,
    maps: &[Plane],
    absent: &[Mask],
    p: &VoteParams,
) -> Result<Vec<Mask>> {
    if absent.len() != maps.len() {
        return Err(Error::Invalid(format!(
            "voted_masks: {} maps and {} absent masks",
            maps.len(),
            absent.len()
        )));
    }
    vote_maps(stretched, maps, p, Some(absent))
}

/// Masks `[B][C]` as a `[B, C, H, W]` float tensor of 0/1.
pub fn masks_tensor(masks: &[Vec<Mask>]) -> Result<Tensor> {
    let first = masks
        .first()
        .and_then(|m| m.first())
        .ok_or_else(|| Error::Invalid("no masks".into()))?;
    let (w, h) = (first.width() as i64, first.height() as i64);
    let c = masks[0].len() as i64;
    let mut data = Vec::with_capacity(masks.len() * (c * w * h) as usize);
    for row in masks {
        for m in row {
            first.check_same_size(m, "masks_tensor")?;
            data.extend(m.data().iter().map(|&v| v as u8 as f32));
        }
    }
    Ok(Tensor::from_slice(&data).reshape([masks.len() as i64, c, h, w]))
}

/// Soft Dice loss `1 − (2Σpt + s)/(Σp + Σt + s)`, per image and class, then
/// averaged; the smoothing `s = 1` makes an empty target with an empty
/// prediction cost nothing.
///
/// Its gradient on an empty target is `1/(Σp + 1)²`: a class whose map is
/// high everywhere on tiles without it is hardly pushed down. With several
/// classes, most of them absent from most tiles, a network can stay stuck
/// there (seen on the synthetic data: one class at 1 everywhere);
/// [`dice_loss_batch`] avoids it.
pub fn dice_loss(pred: &Tensor, target: &Tensor) -> Tensor {
    dice_over(pred, target, &[2, 3])
}

/// Soft Dice per class over the whole batch (`Σ` over images and pixels),
/// averaged over classes: empty tiles still add their false positives to
/// the denominator of a class other tiles hold, so their gradient does not
/// vanish.
pub fn dice_loss_batch(pred: &Tensor, target: &Tensor) -> Tensor {
    dice_over(pred, target, &[0, 2, 3])
}

/// The Dice loss of the configured kind (`train.dice`).
pub fn dice_loss_of(kind: DiceKind, pred: &Tensor, target: &Tensor) -> Tensor {
    match kind {
        DiceKind::PerTile => dice_loss(pred, target),
        DiceKind::Batch => dice_loss_batch(pred, target),
    }
}

fn dice_over(pred: &Tensor, target: &Tensor, dims: &[i64]) -> Tensor {
    let inter = (pred * target).sum_dim_intlist(dims, false, Kind::Float);
    let total = pred.sum_dim_intlist(dims, false, Kind::Float)
        + target.sum_dim_intlist(dims, false, Kind::Float);
    (-((inter * 2.0 + 1.0) / (total + 1.0)) + 1.0).mean(Kind::Float)
}
