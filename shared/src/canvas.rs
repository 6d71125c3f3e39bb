//! One in-memory embedded-graphics draw target for the whole project: the
//! unit's screens (PNG previews, the RGB565 bytes a Linux framebuffer
//! takes) and the trainer's plots draw on it.

use embedded_graphics::pixelcolor::{BinaryColor, Rgb565, Rgb888};
use embedded_graphics::prelude::*;

/// An in-memory panel of any colour type: previews, and the bytes a
/// framebuffer takes.
#[derive(Debug, Clone, PartialEq)]
pub struct Buffer<C> {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<C>,
}

/// The 240×320 colour panel's buffer.
pub type Rgb565Buffer = Buffer<Rgb565>;
/// The 128×64 monochrome panel's buffer.
pub type MonoBuffer = Buffer<BinaryColor>;

impl<C: PixelColor + Default> Buffer<C> {
    pub fn new(width: u32, height: u32) -> Self {
        Buffer {
            width,
            height,
            pixels: vec![C::default(); (width * height) as usize],
        }
    }

    pub fn get(&self, x: u32, y: u32) -> C {
        self.pixels[(y * self.width + x) as usize]
    }
}

impl Rgb565Buffer {
    /// The bytes a Linux framebuffer in RGB565 takes (little-endian).
    pub fn to_fb_bytes(&self) -> Vec<u8> {
        self.pixels
            .iter()
            .flat_map(|p| p.into_storage().to_le_bytes())
            .collect()
    }

    /// An 8-bit RGB image of the panel (for PNG previews).
    pub fn to_image(&self) -> image::RgbImage {
        image::RgbImage::from_fn(self.width, self.height, |x, y| {
            let c = Rgb888::from(self.get(x, y));
            image::Rgb([c.r(), c.g(), c.b()])
        })
    }
}

impl MonoBuffer {
    /// White on black, as the OLED looks.
    pub fn to_image(&self) -> image::GrayImage {
        image::GrayImage::from_fn(self.width, self.height, |x, y| {
            image::Luma([if self.get(x, y).is_on() { 255 } else { 0 }])
        })
    }
}

impl<C: PixelColor> OriginDimensions for Buffer<C> {
    fn size(&self) -> Size {
        Size::new(self.width, self.height)
    }
}

impl<C: PixelColor> DrawTarget for Buffer<C> {
    type Color = C;
    type Error = core::convert::Infallible;

    fn draw_iter<I: IntoIterator<Item = Pixel<C>>>(
        &mut self,
        pixels: I,
    ) -> Result<(), Self::Error> {
        for Pixel(p, c) in pixels {
            if p.x >= 0 && p.y >= 0 && (p.x as u32) < self.width && (p.y as u32) < self.height {
                self.pixels[(p.y as u32 * self.width + p.x as u32) as usize] = c;
            }
        }
        Ok(())
    }
}

impl Buffer<Rgb888> {
    /// A `width × height` canvas filled with `colour`.
    pub fn filled(width: u32, height: u32, colour: Rgb888) -> Self {
        Buffer {
            width,
            height,
            pixels: vec![colour; (width * height) as usize],
        }
    }

    /// The canvas as an 8-bit RGB image.
    pub fn to_image(&self) -> image::RgbImage {
        image::RgbImage::from_fn(self.width, self.height, |x, y| {
            let c = self.get(x, y);
            image::Rgb([c.r(), c.g(), c.b()])
        })
    }
}
