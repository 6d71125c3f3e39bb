//! A bit-packed mask: one bit per pixel, so a 4112×3008 frame's mask is
//! 1.5 MiB instead of 12 MiB, and its objects are found from runs
//! ([`crate::objects::measure_bits`]) without a per-pixel label map.

use crate::{Error, Mask, Result};

/// `width × height` bits, each row starting on a new 64-bit word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BitMask {
    width: usize,
    height: usize,
    words_per_row: usize,
    words: Vec<u64>,
}

impl BitMask {
    /// All background.
    pub fn new(width: usize, height: usize) -> Self {
        let words_per_row = width.div_ceil(64);
        BitMask {
            width,
            height,
            words_per_row,
            words: vec![0; words_per_row * height],
        }
    }

    pub fn width(&self) -> usize {
        self.width
    }

    pub fn height(&self) -> usize {
        self.height
    }

    pub fn get(&self, x: usize, y: usize) -> bool {
        debug_assert!(x < self.width && y < self.height);
        self.words[y * self.words_per_row + x / 64] >> (x % 64) & 1 == 1
    }

    pub fn set(&mut self, x: usize, y: usize, on: bool) {
        debug_assert!(x < self.width && y < self.height);
        let w = &mut self.words[y * self.words_per_row + x / 64];
        if on {
            *w |= 1 << (x % 64);
        } else {
            *w &= !(1 << (x % 64));
        }
    }

    /// Foreground pixels.
    pub fn count(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// The runs of foreground in row `y` as `x0..x1` (exclusive end), left
    /// to right.
    pub fn runs(&self, y: usize, mut on: impl FnMut(usize, usize)) {
        let row = &self.words[y * self.words_per_row..(y + 1) * self.words_per_row];
        let mut start: Option<usize> = None;
        for (i, &word) in row.iter().enumerate() {
            // Whole words of one value are skipped in one step.
            if word == 0 && start.is_none() || word == u64::MAX && start.is_some() {
                continue;
            }
            for b in 0..64 {
                let x = i * 64 + b;
                if x >= self.width {
                    break;
                }
                let bit = word >> b & 1 == 1;
                match (bit, start) {
                    (true, None) => start = Some(x),
                    (false, Some(s)) => {
                        on(s, x);
                        start = None;
                    }
                    _ => {}
                }
            }
        }
        if let Some(s) = start {
            on(s, self.width);
        }
    }

    pub fn from_mask(m: &Mask) -> Self {
        let mut b = BitMask::new(m.width(), m.height());
        for y in 0..m.height() {
            for (x, &v) in m.row(y).iter().enumerate() {
                if v {
                    b.set(x, y, true);
                }
            }
        }
        b
    }

    /// One byte per pixel (for PNG output, voting, resizing).
    pub fn to_mask(&self) -> Mask {
        Mask::from_fn(self.width, self.height, |x, y| self.get(x, y))
    }

    /// Every pixel set in any of `masks` (all the same size).
    pub fn union(masks: &[BitMask]) -> Result<Option<BitMask>> {
        let Some(first) = masks.first() else {
            return Ok(None);
        };
        let mut out = first.clone();
        for m in &masks[1..] {
            if (m.width, m.height) != (out.width, out.height) {
                return Err(Error::Invalid(format!(
                    "mask union: {}x{} and {}x{}",
                    m.width, m.height, out.width, out.height
                )));
            }
            for (a, b) in out.words.iter_mut().zip(&m.words) {
                *a |= b;
            }
        }
        Ok(Some(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_runs_across_word_edges() {
        let m = Mask::from_fn(130, 3, |x, y| match y {
            0 => (60..70).contains(&x) || x == 129,
            1 => true,
            _ => x % 2 == 0 && x < 5,
        });
        let b = BitMask::from_mask(&m);
        assert_eq!(b.to_mask(), m);
        assert_eq!(b.count(), m.count());
        let runs = |y| {
            let mut r = Vec::new();
            b.runs(y, |a, z| r.push((a, z)));
            r
        };
        assert_eq!(runs(0), [(60, 70), (129, 130)]);
        assert_eq!(runs(1), [(0, 130)]);
        assert_eq!(runs(2), [(0, 1), (2, 3), (4, 5)]);
        let u = BitMask::union(&[b.clone(), BitMask::new(130, 3)])
            .unwrap()
            .unwrap();
        assert_eq!(u, b);
        assert!(BitMask::union(&[b, BitMask::new(1, 1)]).is_err());
    }
}
