//! Image input and output: any 8/16-bit grayscale or RGB PNG, TIFF or JPEG
//! becomes an f32 [`Plane`] in 0..1 (value / type maximum, like
//! scikit-image's `img_as_float`), with a clear error instead of a panic for
//! empty, truncated, unsupported or absurdly large files.

use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, ImageReader, Limits};

use crate::{Error, Grid, Mask, Plane, Result};

/// Bounds that keep a hostile or broken file from exhausting memory.
#[derive(Debug, Clone, Copy)]
pub struct LoadLimits {
    /// Largest width or height accepted, in pixels.
    pub max_side: u32,
    /// Largest decoder allocation, in bytes.
    pub max_alloc: u64,
}

impl Default for LoadLimits {
    /// Generous for microscope cameras (3008×4112 is typical), small enough
    /// that a decompression bomb is refused before it allocates.
    fn default() -> Self {
        LoadLimits {
            max_side: 16_384,
            max_alloc: 1 << 30,
        }
    }
}

/// A decoded frame: the plane and what the file held.
#[derive(Debug, Clone)]
pub struct Frame {
    pub plane: Plane,
    /// Bits per channel in the file (8 or 16; 32 for float images).
    pub bit_depth: u8,
    /// Whether the file had colour channels (converted to luma).
    pub color: bool,
}

/// Reads an image file into a [`Frame`].
pub fn load_frame(path: &Path, limits: LoadLimits) -> Result<Frame> {
    crate::files::check_regular(path).map_err(|why| Error::image(path, why))?;
    let bytes = std::fs::read(path).map_err(|e| Error::image(path, e))?;
    decode_frame(&bytes, path, limits)
}

/// Reads an image file into a plane in 0..1.
pub fn load_plane(path: &Path) -> Result<Plane> {
    Ok(load_frame(path, LoadLimits::default())?.plane)
}

/// Decodes image bytes; `name` is used in error messages only.
pub fn decode_frame(bytes: &[u8], name: &Path, limits: LoadLimits) -> Result<Frame> {
    if bytes.is_empty() {
        return Err(Error::image(name, "empty file"));
    }
    to_frame(decode_image(Cursor::new(bytes), name, limits)?, name)
}

/// Decodes with the format guessed from the content and the size limits
/// checked before any pixel is allocated.
fn decode_image<R: std::io::BufRead + std::io::Seek>(
    r: R,
    name: &Path,
    limits: LoadLimits,
) -> Result<DynamicImage> {
    let mut reader = ImageReader::new(r)
        .with_guessed_format()
        .map_err(|e| Error::image(name, e))?;
    if reader.format().is_none() {
        return Err(Error::image(
            name,
            "unsupported or unrecognised format (PNG, TIFF and JPEG are read)",
        ));
    }
    let mut l = Limits::default();
    l.max_image_width = Some(limits.max_side);
    l.max_image_height = Some(limits.max_side);
    l.max_alloc = Some(limits.max_alloc);
    // The decoder checks the header's size against the limits before it
    // allocates pixels, so a decompression bomb is refused cheaply.
    reader.limits(l);
    let img = reader
        .decode()
        .map_err(|e| Error::image(name, describe(e)))?;
    if img.width() == 0 || img.height() == 0 {
        return Err(Error::image(
            name,
            format!("image has no pixels ({}x{})", img.width(), img.height()),
        ));
    }
    Ok(img)
}

/// A decoded frame at its own depth: 8- and 16-bit gray stay integers
/// (1 or 2 bytes a pixel instead of 4), everything else is luma in f32.
/// The counting path reads it a row at a time through [`Luma`].
#[derive(Debug, Clone)]
pub enum Pixels {
    Gray8(Grid<u8>),
    Gray16(Grid<u16>),
    Float(Plane),
}

/// Intensities 0..1 a row at a time, whatever the storage: the same values
/// [`load_frame`] gives (`v / 255`, `v / 65535`, Rec. 601 luma).
pub trait Luma {
    fn width(&self) -> usize;
    fn height(&self) -> usize;
    /// Writes row `y` into `out` (`width` values).
    fn row_into(&self, y: usize, out: &mut [f32]);

    /// Bits per sample of the integer storage the values came from (8 or
    /// 16), or `None` for float data: what "full scale" meant to the file.
    fn storage_bits(&self) -> Option<u8> {
        None
    }

    /// The whole frame as a plane (4 bytes a pixel).
    fn to_plane(&self) -> Plane {
        let (w, h) = (self.width(), self.height());
        let mut data = vec![0f32; w * h];
        for (y, row) in data.chunks_exact_mut(w.max(1)).enumerate().take(h) {
            self.row_into(y, row);
        }
        Plane::from_vec(w, h, data).expect("sized above")
    }
}

impl Luma for Plane {
    fn width(&self) -> usize {
        Grid::width(self)
    }
    fn height(&self) -> usize {
        Grid::height(self)
    }
    fn row_into(&self, y: usize, out: &mut [f32]) {
        out.copy_from_slice(self.row(y));
    }
}

impl Luma for Pixels {
    fn width(&self) -> usize {
        match self {
            Pixels::Gray8(g) => g.width(),
            Pixels::Gray16(g) => g.width(),
            Pixels::Float(p) => p.width(),
        }
    }
    fn height(&self) -> usize {
        match self {
            Pixels::Gray8(g) => g.height(),
            Pixels::Gray16(g) => g.height(),
            Pixels::Float(p) => p.height(),
        }
    }
    fn row_into(&self, y: usize, out: &mut [f32]) {
        match self {
            Pixels::Gray8(g) => {
                for (o, &v) in out.iter_mut().zip(g.row(y)) {
                    *o = v as f32 / 255.0;
                }
            }
            Pixels::Gray16(g) => {
                for (o, &v) in out.iter_mut().zip(g.row(y)) {
                    *o = v as f32 / 65535.0;
                }
            }
            Pixels::Float(p) => out.copy_from_slice(p.row(y)),
        }
    }
    fn storage_bits(&self) -> Option<u8> {
        match self {
            Pixels::Gray8(_) => Some(8),
            Pixels::Gray16(_) => Some(16),
            Pixels::Float(_) => None,
        }
    }
}

/// Reads an image file into [`Pixels`], streaming the file through the
/// decoder (its bytes are never all in memory beside the pixels).
pub fn load_pixels(path: &Path, limits: LoadLimits) -> Result<Pixels> {
    let file = load_image(path, limits)?;
    to_pixels(file, path)
}

/// Decodes an image file as it is stored (gray stays gray, 8 bits stay 8),
/// streaming it through the decoder, with [`LoadLimits`] checked before
/// any pixel is allocated: what the labelling page keeps for display, so
/// that it refuses exactly what `count` refuses, with the same message.
pub fn load_image(path: &Path, limits: LoadLimits) -> Result<DynamicImage> {
    crate::files::check_regular(path).map_err(|why| Error::image(path, why))?;
    let file = std::fs::File::open(path).map_err(|e| Error::image(path, e))?;
    let len = file.metadata().map_err(|e| Error::image(path, e))?.len();
    if len == 0 {
        return Err(Error::image(path, "empty file"));
    }
    decode_image(std::io::BufReader::new(file), path, limits)
}

/// Decodes image bytes into [`Pixels`].
pub fn decode_pixels(bytes: &[u8], name: &Path, limits: LoadLimits) -> Result<Pixels> {
    if bytes.is_empty() {
        return Err(Error::image(name, "empty file"));
    }
    to_pixels(decode_image(Cursor::new(bytes), name, limits)?, name)
}

fn to_pixels(img: DynamicImage, name: &Path) -> Result<Pixels> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    Ok(match img {
        DynamicImage::ImageLuma8(b) => Pixels::Gray8(Grid::from_vec(w, h, b.into_raw())?),
        DynamicImage::ImageLuma16(b) => Pixels::Gray16(Grid::from_vec(w, h, b.into_raw())?),
        other => Pixels::Float(to_frame(other, name)?.plane),
    })
}

fn describe(e: image::ImageError) -> String {
    match e {
        image::ImageError::Limits(l) => format!("too large for the configured limits ({l})"),
        image::ImageError::Unsupported(u) => format!("unsupported: {u}"),
        other => format!("cannot decode ({other})"),
    }
}

/// Luma of every pixel divided by `max`: the first channel for gray
/// images, Rec. 601 luma for colour ones (alpha ignored).
fn luma_of<P>(buf: &image::ImageBuffer<P, Vec<P::Subpixel>>, max: f32) -> Vec<f32>
where
    P: image::Pixel,
    P::Subpixel: Into<f32>,
{
    buf.pixels()
        .map(|p| {
            let c = p.channels();
            let v = if P::CHANNEL_COUNT >= 3 {
                0.299 * c[0].into() + 0.587 * c[1].into() + 0.114 * c[2].into()
            } else {
                c[0].into()
            };
            v / max
        })
        .collect()
}

/// A decoded image as a [`Frame`] (luma in 0..1 and the file's depth):
/// the same values [`load_frame`] gives, for a crop of an image already
/// decoded.
pub fn to_frame(img: DynamicImage, name: &Path) -> Result<Frame> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let (data, bit_depth, color) = match &img {
        DynamicImage::ImageLuma8(b) => (luma_of(b, 255.0), 8, false),
        DynamicImage::ImageLumaA8(b) => (luma_of(b, 255.0), 8, false),
        DynamicImage::ImageLuma16(b) => (luma_of(b, 65535.0), 16, false),
        DynamicImage::ImageLumaA16(b) => (luma_of(b, 65535.0), 16, false),
        DynamicImage::ImageRgb8(b) => (luma_of(b, 255.0), 8, true),
        DynamicImage::ImageRgba8(b) => (luma_of(b, 255.0), 8, true),
        DynamicImage::ImageRgb16(b) => (luma_of(b, 65535.0), 16, true),
        DynamicImage::ImageRgba16(b) => (luma_of(b, 65535.0), 16, true),
        DynamicImage::ImageRgb32F(b) => (luma_of(b, 1.0), 32, true),
        DynamicImage::ImageRgba32F(b) => (luma_of(b, 1.0), 32, true),
        other => {
            return Err(Error::image(
                name,
                format!("unsupported pixel type {:?}", other.color()),
            ))
        }
    };
    if data.iter().any(|v| !v.is_finite()) {
        return Err(Error::image(name, "image holds NaN or infinite values"));
    }
    Ok(Frame {
        plane: Plane::from_vec(w, h, data)?,
        bit_depth,
        color,
    })
}

/// Reads a mask image: any non-zero pixel is foreground.
pub fn load_mask(path: &Path) -> Result<Mask> {
    let frame = load_frame(path, LoadLimits::default())?;
    Ok(frame.plane.map(|&v| v > 0.0))
}

/// What two passes over a frame's rows give: mean and deviation (what
/// per-image standardisation uses, on both halves), the brightest value,
/// and how many values reach a level chosen from it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Moments {
    pub mean: f64,
    pub std: f64,
    pub max: f64,
    /// Values at or above `level(max)`.
    pub at_or_above: usize,
}

/// [`Moments`] of `frame` in f64, row by row (no full-size copy);
/// `level` picks the counted level from the brightest value (the light
/// checks' saturation; `|_| f32::INFINITY` counts none).
pub fn moments<L: Luma + ?Sized>(frame: &L, level: impl FnOnce(f64) -> f32) -> Moments {
    let (w, h) = (frame.width(), frame.height());
    let mut row = vec![0f32; w];
    let n = (w * h).max(1) as f64;
    let (mut sum, mut max) = (0f64, 0f64);
    for y in 0..h {
        frame.row_into(y, &mut row);
        for &v in &row {
            sum += v as f64;
            max = max.max(v as f64);
        }
    }
    let mean = sum / n;
    let at = level(max);
    let (mut ss, mut count) = (0f64, 0usize);
    for y in 0..h {
        frame.row_into(y, &mut row);
        for &v in &row {
            ss += (v as f64 - mean).powi(2);
            count += (v >= at) as usize;
        }
    }
    Moments {
        mean,
        std: (ss / n).sqrt(),
        max,
        at_or_above: count,
    }
}

/// `(v − mean) / std` with a frame's own figures: the paper's per-image
/// standardisation, the same on both halves. A constant frame (deviation
/// 0) becomes all zeros rather than NaN.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Standardiser {
    mean: f64,
    inv: f64,
}

impl Standardiser {
    pub fn new(mean: f64, std: f64) -> Self {
        Standardiser {
            mean,
            inv: if std > 1e-12 { 1.0 / std } else { 0.0 },
        }
    }

    pub fn apply(&self, v: f32) -> f32 {
        ((v as f64 - self.mean) * self.inv) as f32
    }
}

/// Per-image zero-mean/unit-std standardisation, in place.
pub fn standardise(plane: &mut Plane) {
    let m = moments(&*plane, |_| f32::INFINITY);
    let s = Standardiser::new(m.mean, m.std);
    for v in plane.data_mut() {
        *v = s.apply(*v);
    }
}

/// The quantiles [`stretched`] maps to 0 and 1.
pub const STRETCH: (f32, f32) = (0.005, 0.995);

/// The 0.5–99.5 % stretch superpixels are computed on and overlays are
/// drawn from, the same on both halves.
pub fn stretched(plane: &Plane) -> Plane {
    stretch(plane, STRETCH.0, STRETCH.1)
}

/// Maps the `lo`..`hi` quantiles to 0..1 and clips: the robust contrast
/// stretch used before superpixels so that `scale` means the same on 8-bit,
/// 16-bit and dim images.
pub fn stretch(plane: &Plane, lo: f32, hi: f32) -> Plane {
    let a = plane.quantile(lo).unwrap_or(0.0);
    let b = plane.quantile(hi).unwrap_or(1.0);
    let inv = if b > a { 1.0 / (b - a) } else { 0.0 };
    plane.map(|&v| ((v - a) * inv).clamp(0.0, 1.0))
}

/// Bilinear resize with half-pixel centres (PyTorch `align_corners=False`,
/// no antialiasing), so host and edge resize identically.
pub fn resize_bilinear(src: &Plane, width: usize, height: usize) -> Result<Plane> {
    if src.is_empty() || width == 0 || height == 0 {
        return Err(Error::Invalid(format!(
            "cannot resize {}x{} to {width}x{height}",
            src.width(),
            src.height()
        )));
    }
    let (sw, sh) = (src.width(), src.height());
    let axis = |dst: usize, srcn: usize| -> Vec<(usize, usize, f32)> {
        let scale = srcn as f32 / dst as f32;
        (0..dst)
            .map(|i| {
                let s = ((i as f32 + 0.5) * scale - 0.5).max(0.0);
                let i0 = (s.floor() as usize).min(srcn - 1);
                let i1 = (i0 + 1).min(srcn - 1);
                (i0, i1, s - i0 as f32)
            })
            .collect()
    };
    let xs = axis(width, sw);
    let ys = axis(height, sh);
    let mut out = Vec::with_capacity(width * height);
    for &(y0, y1, fy) in &ys {
        let (r0, r1) = (src.row(y0), src.row(y1));
        for &(x0, x1, fx) in &xs {
            let top = r0[x0] + (r0[x1] - r0[x0]) * fx;
            let bot = r1[x0] + (r1[x1] - r1[x0]) * fx;
            out.push(top + (bot - top) * fy);
        }
    }
    Plane::from_vec(width, height, out)
}

/// A frame brought to another size the way a camera with that many pixels
/// would record it: an axis that shrinks averages the source pixels each
/// output pixel covers (area weights), one that grows is interpolated as in
/// [`resize_bilinear`]. Plain bilinear reads only two of every `k` source
/// pixels when shrinking by `k` > 2, so a frame from a camera with finer
/// pixels than the model's reached it aliased and noisier than any frame
/// it was trained on. At an integer factor this is [`bin_plane`].
pub fn resample(src: &Plane, width: usize, height: usize) -> Result<Plane> {
    if src.is_empty() || width == 0 || height == 0 {
        return resize_bilinear(src, width, height);
    }
    let (sw, sh) = (src.width(), src.height());
    let narrower = if width < sw {
        let taps = area_taps(width, sw);
        let mut out = Vec::with_capacity(width * sh);
        for y in 0..sh {
            let row = src.row(y);
            out.extend(
                taps.iter()
                    .map(|t| t.iter().map(|&(j, w)| row[j] * w).sum::<f32>()),
            );
        }
        Plane::from_vec(width, sh, out)?
    } else {
        src.clone()
    };
    let shorter = if height < sh {
        let taps = area_taps(height, sh);
        let w = narrower.width();
        let mut out = vec![0.0f32; w * height];
        for (y, t) in taps.iter().enumerate() {
            let dst = &mut out[y * w..(y + 1) * w];
            for &(j, wt) in t {
                for (d, s) in dst.iter_mut().zip(narrower.row(j)) {
                    *d += s * wt;
                }
            }
        }
        Plane::from_vec(w, height, out)?
    } else {
        narrower
    };
    if (shorter.width(), shorter.height()) == (width, height) {
        Ok(shorter)
    } else {
        resize_bilinear(&shorter, width, height)
    }
}

/// For each of `dst` output pixels along an axis of `src` > `dst` pixels,
/// the source pixels it covers and the share of its width each one has.
fn area_taps(dst: usize, src: usize) -> Vec<Vec<(usize, f32)>> {
    let scale = src as f64 / dst as f64;
    (0..dst)
        .map(|i| {
            let (a, b) = (i as f64 * scale, ((i + 1) as f64 * scale).min(src as f64));
            (a.floor() as usize..(b.ceil() as usize).min(src))
                .map(|j| {
                    let cover = b.min(j as f64 + 1.0) - a.max(j as f64);
                    (j, (cover / scale) as f32)
                })
                .filter(|&(_, w)| w > 0.0)
                .collect()
        })
        .collect()
}

/// The side of a `factor`×`factor` binned copy, refused when it is empty.
fn binned_size(w: usize, h: usize, factor: usize) -> Result<(usize, usize)> {
    match factor {
        0 => Err(Error::Invalid("bin factor must be ≥ 1".into())),
        f if w / f == 0 || h / f == 0 => Err(Error::Invalid(format!(
            "cannot bin {w}x{h} pixels by {f}: nothing would be left"
        ))),
        f => Ok((w / f, h / f)),
    }
}

/// Each `factor`×`factor` block averaged into one pixel (a leftover edge
/// strip is dropped): the frame a camera with `factor`× coarser pixels
/// would take, to try a data set at another scale.
pub fn bin_plane(src: &Plane, factor: usize) -> Result<Plane> {
    let (w, h) = binned_size(src.width(), src.height(), factor)?;
    let norm = 1.0 / (factor * factor) as f32;
    Ok(Plane::from_fn(w, h, |x, y| {
        (0..factor)
            .flat_map(|dy| (0..factor).map(move |dx| (x * factor + dx, y * factor + dy)))
            .map(|(sx, sy)| *src.get(sx, sy))
            .sum::<f32>()
            * norm
    }))
}

/// A mask binned like [`bin_plane`]: a pixel is on where at least half of
/// its block is, so an object keeps its area.
pub fn bin_mask(src: &Mask, factor: usize) -> Result<Mask> {
    let (w, h) = binned_size(src.width(), src.height(), factor)?;
    Ok(Mask::from_fn(w, h, |x, y| {
        let on = (0..factor)
            .flat_map(|dy| (0..factor).map(move |dx| (x * factor + dx, y * factor + dy)))
            .filter(|&(sx, sy)| *src.get(sx, sy))
            .count();
        2 * on >= factor * factor
    }))
}

/// Nearest-neighbour resize for masks and label maps.
pub fn resize_nearest<T: Clone>(
    src: &crate::Grid<T>,
    width: usize,
    height: usize,
) -> Result<crate::Grid<T>> {
    if src.is_empty() || width == 0 || height == 0 {
        return Err(Error::Invalid(format!(
            "cannot resize {}x{} to {width}x{height}",
            src.width(),
            src.height()
        )));
    }
    let sx = src.width() as f64 / width as f64;
    let sy = src.height() as f64 / height as f64;
    Ok(crate::Grid::from_fn(width, height, |x, y| {
        let xs = (((x as f64 + 0.5) * sx) as usize).min(src.width() - 1);
        let ys = (((y as f64 + 0.5) * sy) as usize).min(src.height() - 1);
        src.get(xs, ys).clone()
    }))
}

/// Writes a plane in 0..1 as an 8-bit grayscale PNG (values are clipped).
pub fn save_gray8(plane: &Plane, path: &Path) -> Result<()> {
    let raw: Vec<u8> = plane
        .data()
        .iter()
        .map(|&v| (v.clamp(0.0, 1.0) * 255.0).round() as u8)
        .collect();
    save_raw8(raw, plane.width(), plane.height(), path)
}

/// Writes a plane in 0..1 as a 16-bit grayscale PNG: keeps the precision of
/// 16-bit sources (BBBC010 uses only ~3 000 of 65 535 levels, which 8 bits
/// would crush to a dozen).
pub fn save_gray16(plane: &Plane, path: &Path) -> Result<()> {
    let raw: Vec<u16> = plane
        .data()
        .iter()
        .map(|&v| (v.clamp(0.0, 1.0) * 65535.0).round() as u16)
        .collect();
    let (w, h) = (plane.width(), plane.height());
    let buf = image::ImageBuffer::<image::Luma<u16>, _>::from_raw(w as u32, h as u32, raw)
        .ok_or_else(|| Error::Invalid(format!("buffer does not fit {w}x{h}")))?;
    create_parent(path)?;
    buf.save(path).map_err(|e| Error::image(path, e))
}

/// Writes a plane as 8-bit when `bit_depth` is 8, else as 16-bit.
pub fn save_gray(plane: &Plane, bit_depth: u8, path: &Path) -> Result<()> {
    if bit_depth <= 8 {
        save_gray8(plane, path)
    } else {
        save_gray16(plane, path)
    }
}

fn create_parent(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    Ok(())
}

/// Writes a mask as an 8-bit PNG with 0 and 255.
pub fn save_mask(mask: &Mask, path: &Path) -> Result<()> {
    let raw: Vec<u8> = mask
        .data()
        .iter()
        .map(|&v| if v { 255 } else { 0 })
        .collect();
    save_raw8(raw, mask.width(), mask.height(), path)
}

/// Writes a small-integer label map (class or kind indices) as an 8-bit
/// grayscale PNG, values as they are.
pub fn save_labels8(labels: &Grid<u8>, path: &Path) -> Result<()> {
    save_raw8(
        labels.data().to_vec(),
        labels.width(),
        labels.height(),
        path,
    )
}

fn save_raw8(raw: Vec<u8>, w: usize, h: usize, path: &Path) -> Result<()> {
    let buf = image::GrayImage::from_raw(w as u32, h as u32, raw)
        .ok_or_else(|| Error::Invalid(format!("buffer does not fit {w}x{h}")))?;
    create_parent(path)?;
    buf.save(path).map_err(|e| Error::image(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binning_averages_blocks_and_keeps_mask_areas() {
        // 5×4 → 2×2 by 2: the last column is dropped.
        let p = Plane::from_fn(5, 4, |x, y| (x + 10 * y) as f32);
        let b = bin_plane(&p, 2).unwrap();
        assert_eq!((b.width(), b.height()), (2, 2));
        assert_eq!(b.data(), &[5.5, 7.5, 25.5, 27.5]);
        // A 2-px bar and a 1-px line (half of each block) stay; a lone
        // pixel (a quarter of its block) goes.
        let m = Mask::from_fn(8, 8, |x, y| x == 2 || x == 3 || x == 6 || (x, y) == (0, 0));
        let bm = bin_mask(&m, 2).unwrap();
        assert_eq!(bm.data().iter().filter(|&&v| v).count(), 4 + 4);
        assert!(*bm.get(1, 0) && *bm.get(3, 3) && !*bm.get(0, 0));
        assert!(bin_plane(&p, 0).is_err());
        assert!(bin_plane(&p, 5).is_err());
        assert_eq!(bin_plane(&p, 1).unwrap(), p);
    }

    fn png_bytes(img: DynamicImage) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    }

    #[test]
    fn decodes_8_and_16_bit_gray_and_rgb() {
        let p = Path::new("mem");
        let g8 = image::GrayImage::from_raw(2, 1, vec![0, 255]).unwrap();
        let f = decode_frame(&png_bytes(g8.into()), p, LoadLimits::default()).unwrap();
        assert_eq!(f.plane.data(), &[0.0, 1.0]);
        assert_eq!(f.bit_depth, 8);

        let g16 =
            image::ImageBuffer::<image::Luma<u16>, _>::from_raw(2, 1, vec![0u16, 65535]).unwrap();
        let f = decode_frame(
            &png_bytes(DynamicImage::ImageLuma16(g16)),
            p,
            LoadLimits::default(),
        )
        .unwrap();
        assert_eq!(f.plane.data(), &[0.0, 1.0]);
        assert_eq!(f.bit_depth, 16);

        let rgb = image::RgbImage::from_raw(1, 1, vec![255, 0, 0]).unwrap();
        let f = decode_frame(&png_bytes(rgb.into()), p, LoadLimits::default()).unwrap();
        assert!((f.plane.data()[0] - 0.299).abs() < 1e-6);
        assert!(f.color);
    }

    #[test]
    fn pixels_keep_the_depth_and_give_load_frames_values() {
        let g8 = DynamicImage::ImageLuma8(image::GrayImage::from_fn(7, 3, |x, y| {
            image::Luma([(x * 37 + y * 11) as u8])
        }));
        let g16 = DynamicImage::ImageLuma16(image::ImageBuffer::from_fn(7, 3, |x, y| {
            image::Luma([(x * 9001 + y * 77) as u16])
        }));
        let rgb = DynamicImage::ImageRgb8(image::RgbImage::from_fn(7, 3, |x, y| {
            image::Rgb([x as u8 * 30, y as u8 * 60, 200])
        }));
        let name = Path::new("t.png");
        for (img, kind) in [(g8, "gray8"), (g16, "gray16"), (rgb, "float")] {
            let bytes = png_bytes(img);
            let want = decode_frame(&bytes, name, LoadLimits::default())
                .unwrap()
                .plane;
            let p = decode_pixels(&bytes, name, LoadLimits::default()).unwrap();
            let got_kind = match &p {
                Pixels::Gray8(_) => "gray8",
                Pixels::Gray16(_) => "gray16",
                Pixels::Float(_) => "float",
            };
            assert_eq!(got_kind, kind);
            assert_eq!((Luma::width(&p), Luma::height(&p)), (7, 3));
            assert_eq!(p.to_plane(), want, "{kind}: the same values bit for bit");
        }
        // From a file, streamed; an empty file is refused by name.
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("e.png");
        std::fs::write(&f, b"").unwrap();
        let e = load_pixels(&f, LoadLimits::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("e.png") && e.contains("empty"), "{e}");
    }

    #[test]
    fn broken_inputs_are_errors_that_name_the_file() {
        let p = Path::new("broken.png");
        let e = decode_frame(&[], p, LoadLimits::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("broken.png") && e.contains("empty"), "{e}");
        let e = decode_frame(b"not an image at all", p, LoadLimits::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("unsupported"), "{e}");
        let g8 = image::GrayImage::from_raw(64, 64, vec![7; 64 * 64]).unwrap();
        let bytes = png_bytes(g8.into());
        let e = decode_frame(&bytes[..bytes.len() / 2], p, LoadLimits::default()).unwrap_err();
        assert!(e.to_string().contains("broken.png"), "{e}");
        let tiny = LoadLimits {
            max_side: 32,
            max_alloc: 1 << 20,
        };
        let e = decode_frame(&bytes, p, tiny).unwrap_err().to_string();
        assert!(e.contains("too large"), "{e}");
    }

    #[test]
    fn sixteen_bit_round_trip_keeps_precision() {
        let dir = std::env::temp_dir().join(format!("nemascope-io-{}", std::process::id()));
        let p = Plane::from_fn(5, 3, |x, y| (x * 3 + y * 17 + 87) as f32 / 65535.0);
        let path = dir.join("p16.png");
        save_gray(&p, 16, &path).unwrap();
        let back = load_frame(&path, LoadLimits::default()).unwrap();
        assert_eq!(back.bit_depth, 16);
        for (a, b) in back.plane.data().iter().zip(p.data()) {
            assert!((a - b).abs() < 0.5 / 65535.0);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn standardise_gives_zero_mean_unit_std_and_handles_constants() {
        let mut p = Plane::from_fn(7, 5, |x, y| (x * y) as f32);
        standardise(&mut p);
        let n = p.len() as f32;
        let mean: f32 = p.data().iter().sum::<f32>() / n;
        let var: f32 = p.data().iter().map(|v| (v - mean).powi(2)).sum::<f32>() / n;
        assert!(mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-4);
        let mut c = Plane::filled(3, 3, 0.4);
        standardise(&mut c);
        assert!(c.data().iter().all(|&v| v == 0.0));
    }

    #[test]
    fn bilinear_matches_half_pixel_reference() {
        // torch.nn.functional.interpolate([[0,1],[2,3]], size=(4,4),
        // mode="bilinear", align_corners=False) first row:
        // [0.0, 0.25, 0.75, 1.0]; last row [2.0, 2.25, 2.75, 3.0].
        let p = Plane::from_vec(2, 2, vec![0.0, 1.0, 2.0, 3.0]).unwrap();
        let r = resize_bilinear(&p, 4, 4).unwrap();
        assert_eq!(r.row(0), &[0.0, 0.25, 0.75, 1.0]);
        assert_eq!(r.row(1), &[0.5, 0.75, 1.25, 1.5]);
        assert_eq!(r.row(3), &[2.0, 2.25, 2.75, 3.0]);
        // Identity size is exact.
        let q = Plane::from_fn(5, 3, |x, y| (x + 7 * y) as f32);
        assert_eq!(resize_bilinear(&q, 5, 3).unwrap(), q);
        assert!(resize_bilinear(&q, 0, 3).is_err());
    }

    #[test]
    fn resampling_averages_what_each_pixel_covers() {
        // An integer factor is binning, whatever the content.
        let p = Plane::from_fn(12, 8, |x, y| ((x * 7 + y * 13) % 11) as f32 / 10.0);
        for k in [2, 4] {
            let (a, b) = (
                resample(&p, 12 / k, 8 / k).unwrap(),
                bin_plane(&p, k).unwrap(),
            );
            for (u, v) in a.data().iter().zip(b.data()) {
                assert!((u - v).abs() < 1e-6, "factor {k}: {u} against {v}");
            }
        }
        // A fractional factor keeps the mean, and grows like bilinear.
        let r = resample(&p, 5, 3).unwrap();
        let mean = |q: &Plane| q.data().iter().sum::<f32>() / q.len() as f32;
        assert!((mean(&r) - mean(&p)).abs() < 1e-5);
        assert_eq!(
            resample(&p, 24, 16).unwrap(),
            resize_bilinear(&p, 24, 16).unwrap()
        );
        assert_eq!(resample(&p, 12, 8).unwrap(), p);
        // One axis shrinks and the other grows.
        let pairs = Plane::from_fn(6, 8, |x, y| (p.get(2 * x, y) + p.get(2 * x + 1, y)) / 2.0);
        let want = resize_bilinear(&pairs, 6, 16).unwrap();
        let got = resample(&p, 6, 16).unwrap();
        assert_eq!((got.width(), got.height()), (6, 16));
        for (u, v) in got.data().iter().zip(want.data()) {
            assert!((u - v).abs() < 1e-6);
        }
        assert!(resample(&p, 0, 3).is_err());
        // Noise shrunk ×4 keeps a quarter of its spread (16 pixels
        // averaged); plain bilinear reads 4 of them and keeps half.
        let mut seed = 1u32;
        let noise = Plane::from_fn(256, 256, |_, _| {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as f32 / (1u32 << 24) as f32
        });
        let spread = |q: &Plane| {
            let m = mean(q);
            (q.data().iter().map(|v| (v - m).powi(2)).sum::<f32>() / q.len() as f32).sqrt()
        };
        let (s0, area, bilinear) = (
            spread(&noise),
            spread(&resample(&noise, 64, 64).unwrap()),
            spread(&resize_bilinear(&noise, 64, 64).unwrap()),
        );
        assert!((area / s0 - 0.25).abs() < 0.03, "{area} of {s0}");
        assert!((bilinear / s0 - 0.5).abs() < 0.05, "{bilinear} of {s0}");
    }

    #[test]
    fn nearest_resize_picks_source_cells() {
        let g = crate::Grid::from_vec(2, 2, vec![1u32, 2, 3, 4]).unwrap();
        let r = resize_nearest(&g, 4, 4).unwrap();
        assert_eq!(r.row(0), &[1, 1, 2, 2]);
        assert_eq!(r.row(3), &[3, 3, 4, 4]);
        assert_eq!(resize_nearest(&r, 2, 2).unwrap(), g);
        assert!(resize_nearest(&g, 0, 1).is_err());
    }

    #[test]
    fn stretch_maps_quantiles_to_unit_range() {
        let p = Plane::from_fn(101, 1, |x, _| x as f32 * 0.01 + 0.2);
        let s = stretch(&p, 0.0, 1.0);
        assert!((s.data()[0]).abs() < 1e-6 && (s.data()[100] - 1.0).abs() < 1e-6);
        assert!((s.data()[50] - 0.5).abs() < 1e-5);
    }
}
