//! Planes to tensors: per-image standardisation (the paper's input
//! normalisation) and stacking into `[B, 1, H, W]`.

use nemascope_core::imageio::standardise;
use nemascope_core::{Error, Plane, Result};
use tch::Tensor;

/// Stacks planes of one size into a standardised `[B, 1, H, W]` batch.
pub fn images(planes: &[&Plane]) -> Result<Tensor> {
    let first = planes
        .first()
        .ok_or_else(|| Error::Invalid("empty batch".into()))?;
    let (w, h) = (first.width(), first.height());
    let mut data = Vec::with_capacity(planes.len() * w * h);
    for p in planes {
        first.check_same_size(p, "batch")?;
        let mut q = (*p).clone();
        standardise(&mut q);
        data.extend_from_slice(q.data());
    }
    Ok(Tensor::from_slice(&data).reshape([planes.len() as i64, 1, h as i64, w as i64]))
}

/// Image-level labels `[B, C]` as 0/1 floats.
pub fn labels(rows: &[Vec<bool>]) -> Tensor {
    let c = rows.first().map_or(0, Vec::len);
    let data: Vec<f32> = rows
        .iter()
        .flat_map(|r| r.iter().map(|&b| b as u8 as f32))
        .collect();
    Tensor::from_slice(&data).reshape([rows.len() as i64, c as i64])
}
