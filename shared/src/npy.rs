//! Minimal NumPy `.npy` (v1.0) writer, so reference scripts can read label
//! maps and planes bit for bit.

use std::io::Write;
use std::path::Path;

use crate::{Error, Grid, Result};

/// Element types that have a NumPy descriptor.
pub trait NpyElement: Copy {
    const DESCR: &'static str;
    fn write_le(self, out: &mut Vec<u8>);
}

impl NpyElement for u32 {
    const DESCR: &'static str = "<u4";
    fn write_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

impl NpyElement for f32 {
    const DESCR: &'static str = "<f4";
    fn write_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

/// Encodes a grid as an `(height, width)` C-order array.
pub fn encode<T: NpyElement>(grid: &Grid<T>) -> Vec<u8> {
    let dict = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': ({}, {}), }}",
        T::DESCR,
        grid.height(),
        grid.width()
    );
    // Magic (6) + version (2) + header length (2) + dict + padding + '\n'
    // must be a multiple of 64.
    let unpadded = 10 + dict.len() + 1;
    let pad = (64 - unpadded % 64) % 64;
    let header_len = dict.len() + pad + 1;
    let mut out = Vec::with_capacity(10 + header_len + grid.len() * 4);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header_len as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.extend(std::iter::repeat_n(b' ', pad));
    out.push(b'\n');
    for &v in grid.data() {
        v.write_le(&mut out);
    }
    out
}

/// Writes a grid to a `.npy` file.
pub fn write<T: NpyElement>(grid: &Grid<T>, path: &Path) -> Result<()> {
    let mut f = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    f.write_all(&encode(grid)).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_aligned_and_data_little_endian() {
        let g = Grid::from_vec(3, 2, vec![1u32, 2, 3, 4, 5, 256]).unwrap();
        let b = encode(&g);
        let hl = u16::from_le_bytes([b[8], b[9]]) as usize;
        assert_eq!((10 + hl) % 64, 0);
        let header = std::str::from_utf8(&b[10..10 + hl]).unwrap();
        assert!(header.contains("'shape': (2, 3)") && header.ends_with('\n'));
        assert_eq!(&b[10 + hl..10 + hl + 4], &[1, 0, 0, 0]);
        assert_eq!(&b[b.len() - 4..], &[0, 1, 0, 0]);
    }
}
