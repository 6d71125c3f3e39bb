//! Pixels for the browser and for the tile files: an image is decoded once,
//! as it is stored (8-bit gray stays one byte a pixel), with the limits
//! `count` uses, and kept for the next request about the same image. What
//! the page gets is made from it at the size asked: frame previews scaled
//! down before they become RGB (JPEG), tiles cropped first (PNG, lossless
//! at 1:1). 16-bit images are stretched between their 0.5 and 99.5
//! percentiles (BBBC010 uses ~3 000 of 65 535 levels and would look black).

use std::io::Cursor;
use std::path::Path;
use std::sync::{Arc, Mutex};

use image::{DynamicImage, ImageFormat, RgbImage};
use nemascope_core::imageio::{load_image, to_frame, Frame, LoadLimits};

use crate::{Error, Result};

/// An image as decoded, with the levels its 16-bit values are shown
/// between (none for 8-bit images).
pub struct Decoded {
    pub image: DynamicImage,
    levels: Option<(f32, f32)>,
}

/// The limits every image of a session is decoded with: `count`'s, so the
/// page refuses what the unit would refuse, with the same words.
pub fn limits() -> LoadLimits {
    LoadLimits::default()
}

impl Decoded {
    /// Decodes `path` with [`limits`].
    pub fn open(path: &Path) -> Result<Decoded> {
        let image = load_image(path, limits())?;
        let levels = is16(&image).then(|| levels16(&image));
        Ok(Decoded { image, levels })
    }

    pub fn width(&self) -> u32 {
        self.image.width()
    }

    pub fn height(&self) -> u32 {
        self.image.height()
    }

    /// The image scaled to at most `max_width` wide, as JPEG; only the
    /// scaled copy is ever RGB.
    pub fn preview_jpeg(&self, max_width: u32) -> Result<Vec<u8>> {
        let (w, h) = (self.width(), self.height());
        let small = if w > max_width {
            let nh = (h as u64 * max_width as u64 / w as u64).max(1) as u32;
            self.image
                .resize_exact(max_width, nh, image::imageops::FilterType::Triangle)
        } else {
            self.image.clone()
        };
        encode(&self.rgb8(small), ImageFormat::Jpeg)
    }

    /// A rectangle at full resolution, as PNG.
    pub fn crop_png(&self, x: u32, y: u32, w: u32, h: u32) -> Result<Vec<u8>> {
        encode(
            &self.rgb8(self.image.crop_imm(x, y, w, h)),
            ImageFormat::Png,
        )
    }

    /// A rectangle as the trainer reads it (luma at the file's depth): the
    /// values `load_frame` of the whole file gives there.
    pub fn crop_frame(&self, x: u32, y: u32, w: u32, h: u32, name: &Path) -> Result<Frame> {
        Ok(to_frame(self.image.crop_imm(x, y, w, h), name)?)
    }

    fn rgb8(&self, img: DynamicImage) -> RgbImage {
        match self.levels {
            Some((lo, hi)) => {
                let scale = 255.0 / (hi - lo).max(1.0);
                let img = img.to_rgb16();
                RgbImage::from_fn(img.width(), img.height(), |x, y| {
                    let p = img.get_pixel(x, y).0;
                    image::Rgb(p.map(|c| ((c as f32 - lo) * scale).clamp(0.0, 255.0) as u8))
                })
            }
            None => img.to_rgb8(),
        }
    }
}

fn is16(img: &DynamicImage) -> bool {
    matches!(
        img,
        DynamicImage::ImageLuma16(_)
            | DynamicImage::ImageLumaA16(_)
            | DynamicImage::ImageRgb16(_)
            | DynamicImage::ImageRgba16(_)
    )
}

/// The 0.5 and 99.5 percentiles of a 16-bit image's colour values, read
/// in place (no RGB copy of the image).
fn levels16(img: &DynamicImage) -> (f32, f32) {
    let mut hist = vec![0u64; 65536];
    let mut add = |c: &u16| hist[*c as usize] += 1;
    match img {
        DynamicImage::ImageLuma16(b) => b.pixels().for_each(|p| add(&p.0[0])),
        DynamicImage::ImageLumaA16(b) => b.pixels().for_each(|p| add(&p.0[0])),
        DynamicImage::ImageRgb16(b) => b.pixels().for_each(|p| p.0.iter().for_each(&mut add)),
        DynamicImage::ImageRgba16(b) => b.pixels().for_each(|p| p.0[..3].iter().for_each(&mut add)),
        _ => {}
    }
    let total: u64 = hist.iter().sum();
    let level = |q: f64| {
        let want = (total as f64 * q) as u64;
        let mut acc = 0u64;
        for (v, &c) in hist.iter().enumerate() {
            acc += c;
            if acc > want {
                return v as f32;
            }
        }
        65535.0
    };
    (level(0.005), level(0.995))
}

/// The last image decoded, shared by the page's requests and the tile
/// files: one decode per image shown, at most one image held.
#[derive(Clone, Default)]
pub struct Cache(Arc<Mutex<Option<Held>>>);

/// The image held: its path and its pixels.
type Held = (std::path::PathBuf, Arc<Decoded>);

impl Cache {
    /// `path` decoded, from the cache when it was the last one asked for.
    /// Decoding holds the cache, so two requests for a new image decode
    /// it once.
    pub fn get(&self, path: &Path) -> Result<Arc<Decoded>> {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((p, d)) = slot.as_ref() {
            if p == path {
                return Ok(d.clone());
            }
        }
        // The old image goes before the new one is decoded: one at a time.
        *slot = None;
        let d = Arc::new(Decoded::open(path)?);
        *slot = Some((path.to_path_buf(), d.clone()));
        Ok(d)
    }
}

/// An image that is not a frame of the session (a review's overlay),
/// decoded with the same limits and scaled the same way.
pub fn preview_file(path: &Path, max_width: u32) -> Result<Vec<u8>> {
    Decoded::open(path)?.preview_jpeg(max_width)
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
        let img = DynamicImage::ImageRgb16(image::ImageBuffer::from_fn(100, 10, |x, _| {
            image::Rgb([1000 + 10 * x as u16; 3])
        }));
        let d = Decoded {
            levels: Some(levels16(&img)),
            image: img,
        };
        let out = d.rgb8(d.image.clone());
        assert_eq!(out.get_pixel(0, 0).0, [0; 3]);
        assert_eq!(out.get_pixel(99, 0).0, [255; 3]);
        assert!((120..=135).contains(&out.get_pixel(50, 0).0[0]));
        let gray = DynamicImage::ImageLuma16(image::ImageBuffer::from_fn(100, 10, |x, _| {
            image::Luma([1000 + 10 * x as u16])
        }));
        assert_eq!(levels16(&gray), levels16(&d.image));
    }

    #[test]
    fn a_tile_crop_reads_as_the_trainer_reads_the_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.png");
        image::RgbImage::from_fn(40, 30, |x, y| image::Rgb([x as u8 * 5, y as u8 * 7, 90]))
            .save(&p)
            .unwrap();
        let whole = nemascope_core::imageio::load_frame(&p, limits()).unwrap();
        let crop = Decoded::open(&p)
            .unwrap()
            .crop_frame(8, 4, 16, 16, &p)
            .unwrap();
        assert_eq!(crop.bit_depth, 8);
        assert_eq!(crop.plane.get(3, 2), whole.plane.get(11, 6));
    }
}
