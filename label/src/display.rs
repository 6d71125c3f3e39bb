//! Pixels for the browser: any image the folder holds (16-bit TIFF, RGB
//! JPEG, …) as 8-bit RGB, 16-bit ones stretched between their 0.5 and 99.5
//! percentiles (BBBC010 uses ~3 000 of 65 535 levels and would look black),
//! encoded as JPEG (frame previews) or PNG (tiles, lossless at 1:1).

use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, ImageFormat, RgbImage};

use crate::{Error, Result};

/// Largest image the page will decode (pixels), as the edge's limits.
const MAX_PIXELS: u64 = 64 * 1024 * 1024;

/// Decodes `path` into 8-bit RGB for display.
pub fn rgb8(path: &Path) -> Result<RgbImage> {
    let bad = |why: String| Error::Input(format!("{}: {why}", path.display()));
    let mut reader = image::ImageReader::open(path)
        .map_err(|e| Error::io(path, e))?
        .with_guessed_format()
        .map_err(|e| Error::io(path, e))?;
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(MAX_PIXELS * 8);
    reader.limits(limits);
    let img = reader
        .decode()
        .map_err(|e| bad(format!("cannot decode ({e})")))?;
    Ok(match img {
        DynamicImage::ImageLuma16(_)
        | DynamicImage::ImageLumaA16(_)
        | DynamicImage::ImageRgb16(_)
        | DynamicImage::ImageRgba16(_) => stretched16(&img.to_rgb16()),
        other => other.to_rgb8(),
    })
}

fn stretched16(img: &image::ImageBuffer<image::Rgb<u16>, Vec<u16>>) -> RgbImage {
    let mut hist = vec![0u32; 65536];
    for p in img.pixels() {
        for &c in &p.0 {
            hist[c as usize] += 1;
        }
    }
    let total: u64 = hist.iter().map(|&c| c as u64).sum();
    let level = |q: f64| {
        let want = (total as f64 * q) as u64;
        let mut acc = 0u64;
        for (v, &c) in hist.iter().enumerate() {
            acc += c as u64;
            if acc > want {
                return v as f32;
            }
        }
        65535.0
    };
    let (lo, hi) = (level(0.005), level(0.995));
    let scale = 255.0 / (hi - lo).max(1.0);
    RgbImage::from_fn(img.width(), img.height(), |x, y| {
        let p = img.get_pixel(x, y).0;
        image::Rgb(p.map(|c| ((c as f32 - lo) * scale).clamp(0.0, 255.0) as u8))
    })
}

/// The image scaled to at most `max_width` wide, as JPEG.
pub fn preview_jpeg(img: &RgbImage, max_width: u32) -> Result<Vec<u8>> {
    let img = if img.width() > max_width {
        let h = (img.height() as u64 * max_width as u64 / img.width() as u64).max(1) as u32;
        image::imageops::resize(img, max_width, h, image::imageops::FilterType::Triangle)
    } else {
        img.clone()
    };
    encode(&img, ImageFormat::Jpeg)
}

/// A rectangle of the image at full resolution, as PNG.
pub fn crop_png(img: &RgbImage, x: u32, y: u32, w: u32, h: u32) -> Result<Vec<u8>> {
    encode(
        &image::imageops::crop_imm(img, x, y, w, h).to_image(),
        ImageFormat::Png,
    )
}

fn encode(img: &RgbImage, format: ImageFormat) -> Result<Vec<u8>> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format)
        .map_err(|e| Error::Input(format!("cannot encode a {format:?} for the page: {e}")))?;
    Ok(out.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sixteen_bit_images_are_stretched_to_the_full_range() {
        let img =
            image::ImageBuffer::from_fn(100, 10, |x, _| image::Rgb([1000 + 10 * x as u16; 3]));
        let out = stretched16(&img);
        assert_eq!(out.get_pixel(0, 0).0, [0; 3]);
        assert_eq!(out.get_pixel(99, 0).0, [255; 3]);
        assert!((120..=135).contains(&out.get_pixel(50, 0).0[0]));
    }
}
