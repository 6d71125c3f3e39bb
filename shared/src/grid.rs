//! Row-major 2-D grids: image planes, masks and label maps share one type.

use crate::{Error, Result};

/// A `width × height` grid stored row by row.
#[derive(Debug, Clone, PartialEq)]
pub struct Grid<T> {
    width: usize,
    height: usize,
    data: Vec<T>,
}

/// A grayscale image; intensities are f32 (usually 0..1 after loading).
pub type Plane = Grid<f32>;
/// A binary mask; `true` is foreground.
pub type Mask = Grid<bool>;

impl<T: Clone> Grid<T> {
    /// A grid filled with `value`.
    pub fn filled(width: usize, height: usize, value: T) -> Self {
        Grid {
            width,
            height,
            data: vec![value; width * height],
        }
    }
}

impl<T> Grid<T> {
    /// Wraps `data`; fails when its length is not `width * height`.
    pub fn from_vec(width: usize, height: usize, data: Vec<T>) -> Result<Self> {
        if width.checked_mul(height) != Some(data.len()) {
            return Err(Error::Invalid(format!(
                "grid of {width}x{height} needs {} values, got {}",
                width.saturating_mul(height),
                data.len()
            )));
        }
        Ok(Grid {
            width,
            height,
            data,
        })
    }

    /// Builds a grid from a function of (x, y).
    pub fn from_fn(width: usize, height: usize, mut f: impl FnMut(usize, usize) -> T) -> Self {
        let mut data = Vec::with_capacity(width * height);
        for y in 0..height {
            for x in 0..width {
                data.push(f(x, y));
            }
        }
        Grid {
            width,
            height,
            data,
        }
    }

    pub fn width(&self) -> usize {
        self.width
    }

    pub fn height(&self) -> usize {
        self.height
    }

    /// Number of cells.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn data(&self) -> &[T] {
        &self.data
    }

    pub fn data_mut(&mut self) -> &mut [T] {
        &mut self.data
    }

    pub fn into_vec(self) -> Vec<T> {
        self.data
    }

    pub fn get(&self, x: usize, y: usize) -> &T {
        &self.data[y * self.width + x]
    }

    pub fn set(&mut self, x: usize, y: usize, value: T) {
        self.data[y * self.width + x] = value;
    }

    pub fn row(&self, y: usize) -> &[T] {
        &self.data[y * self.width..(y + 1) * self.width]
    }

    /// Same width and height as `other`.
    pub fn same_size<U>(&self, other: &Grid<U>) -> bool {
        self.width == other.width && self.height == other.height
    }

    /// Fails with a message naming `what` when sizes differ.
    pub fn check_same_size<U>(&self, other: &Grid<U>, what: &str) -> Result<()> {
        if self.same_size(other) {
            Ok(())
        } else {
            Err(Error::Invalid(format!(
                "{what}: sizes differ ({}x{} vs {}x{})",
                self.width, self.height, other.width, other.height
            )))
        }
    }

    pub fn map<U>(&self, f: impl FnMut(&T) -> U) -> Grid<U> {
        Grid {
            width: self.width,
            height: self.height,
            data: self.data.iter().map(f).collect(),
        }
    }

    /// The cells of the rectangle `x0..x0+w, y0..y0+h` (clipped to the grid).
    pub fn crop(&self, x0: usize, y0: usize, w: usize, h: usize) -> Grid<T>
    where
        T: Clone,
    {
        let x1 = (x0 + w).min(self.width);
        let y1 = (y0 + h).min(self.height);
        let (x0, y0) = (x0.min(x1), y0.min(y1));
        let mut data = Vec::with_capacity((x1 - x0) * (y1 - y0));
        for y in y0..y1 {
            data.extend_from_slice(&self.row(y)[x0..x1]);
        }
        Grid {
            width: x1 - x0,
            height: y1 - y0,
            data,
        }
    }
}

impl Mask {
    /// Number of foreground cells.
    pub fn count(&self) -> usize {
        self.data.iter().filter(|&&v| v).count()
    }

    /// Pixel-wise OR of masks of one size; an empty list gives `None`.
    pub fn union(masks: &[&Mask]) -> Option<Mask> {
        let first = masks.first()?;
        let mut out = (*first).clone();
        for m in &masks[1..] {
            for (o, &v) in out.data.iter_mut().zip(&m.data) {
                *o |= v;
            }
        }
        Some(out)
    }
}

impl Plane {
    /// Foreground where the value is at least `threshold`.
    pub fn threshold(&self, threshold: f32) -> Mask {
        self.map(|&v| v >= threshold)
    }

    /// Smallest and largest finite value, `None` for an empty or all-NaN plane.
    pub fn min_max(&self) -> Option<(f32, f32)> {
        let mut it = self.data.iter().copied().filter(|v| v.is_finite());
        let first = it.next()?;
        Some(it.fold((first, first), |(lo, hi), v| (lo.min(v), hi.max(v))))
    }

    /// Value at quantile `q` in 0..=1 (nearest rank), `None` when empty.
    pub fn quantile(&self, q: f32) -> Option<f32> {
        let mut v: Vec<f32> = self
            .data
            .iter()
            .copied()
            .filter(|v| v.is_finite())
            .collect();
        if v.is_empty() {
            return None;
        }
        let k = ((v.len() - 1) as f32 * q.clamp(0.0, 1.0)).round() as usize;
        let (_, m, _) = v.select_nth_unstable_by(k, |a, b| a.total_cmp(b));
        Some(*m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_vec_checks_length() {
        assert!(Grid::from_vec(3, 2, vec![0u8; 6]).is_ok());
        assert!(Grid::from_vec(3, 2, vec![0u8; 5]).is_err());
        assert!(Grid::from_vec(usize::MAX, 2, vec![0u8; 5]).is_err());
    }

    #[test]
    fn crop_clips_to_grid() {
        let g = Grid::from_fn(4, 3, |x, y| (x + 10 * y) as u32);
        let c = g.crop(2, 1, 5, 5);
        assert_eq!((c.width(), c.height()), (2, 2));
        assert_eq!(c.data(), &[12, 13, 22, 23]);
    }

    #[test]
    fn quantile_and_min_max() {
        let p = Plane::from_vec(5, 1, vec![3.0, 1.0, f32::NAN, 2.0, 5.0]).unwrap();
        assert_eq!(p.min_max(), Some((1.0, 5.0)));
        assert_eq!(p.quantile(0.0), Some(1.0));
        assert_eq!(p.quantile(1.0), Some(5.0));
        assert_eq!(p.quantile(0.5), Some(3.0));
    }
}
