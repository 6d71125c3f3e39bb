//! Where the screen goes: a PNG file, a Linux framebuffer, or a real panel
//! driven over SPI (ST7789, feature `st7789`) or I²C (SSD1306, feature
//! `ssd1306`). All draw the same [`Screen`] through [`crate::screen`]; a
//! panel that fails is reported and the unit goes on counting.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::config::{DisplayConfig, PanelKind};
use crate::screen::{draw_color, draw_mono, MonoBuffer, Rgb565Buffer, Screen};

#[derive(Debug, thiserror::Error)]
#[error("display {what}: {msg}")]
pub struct PanelError {
    pub what: String,
    pub msg: String,
}

fn err(what: impl std::fmt::Display, msg: impl std::fmt::Display) -> PanelError {
    PanelError {
        what: what.to_string(),
        msg: msg.to_string(),
    }
}

/// Something that shows a [`Screen`].
pub trait Panel {
    fn show(&mut self, screen: &Screen) -> Result<(), PanelError>;
}

/// The colour screen as an RGB565 buffer (240×320).
pub fn color_buffer(s: &Screen) -> Rgb565Buffer {
    let mut b = Rgb565Buffer::new(240, 320);
    draw_color(s, &mut b).expect("in-memory drawing cannot fail");
    b
}

/// The mono screen as a buffer (128×64).
pub fn mono_buffer(s: &Screen) -> MonoBuffer {
    let mut b = MonoBuffer::new(128, 64);
    draw_mono(s, &mut b).expect("in-memory drawing cannot fail");
    b
}

/// The screen as an image, each panel pixel `scale`×`scale` pixels.
pub fn render(s: &Screen, kind: PanelKind, scale: u32) -> image::DynamicImage {
    let img: image::DynamicImage = match kind {
        PanelKind::Color => color_buffer(s).to_image().into(),
        PanelKind::Mono => mono_buffer(s).to_image().into(),
    };
    let (w, h) = (img.width() * scale, img.height() * scale);
    img.resize(w, h, image::imageops::FilterType::Nearest)
}

/// Writes the screen to a PNG after every frame (atomically: a viewer
/// never reads half a file).
#[derive(Debug)]
pub struct PngPanel {
    pub path: PathBuf,
    pub kind: PanelKind,
    pub scale: u32,
}

impl Panel for PngPanel {
    fn show(&mut self, s: &Screen) -> Result<(), PanelError> {
        let mut bytes = Vec::new();
        render(s, self.kind, self.scale)
            .write_to(
                &mut std::io::Cursor::new(&mut bytes),
                image::ImageFormat::Png,
            )
            .map_err(|e| err(self.path.display(), e))?;
        nemascope_core::files::write_atomic(&self.path, &bytes)
            .map_err(|e| err(self.path.display(), e))
    }
}

/// A Linux framebuffer (16-bit RGB565 or 32-bit XRGB): the colour screen,
/// scaled by the largest whole factor that fits and centred.
#[derive(Debug)]
pub struct Framebuffer {
    device: PathBuf,
    file: File,
    width: u32,
    height: u32,
    bpp: u32,
    stride: u32,
}

fn sysfs_u32s(path: &Path) -> Result<Vec<u32>, PanelError> {
    let text = std::fs::read_to_string(path).map_err(|e| err(path.display(), e))?;
    text.trim()
        .split(',')
        .map(|v| v.trim().parse::<u32>().map_err(|e| err(path.display(), e)))
        .collect()
}

impl Framebuffer {
    /// Opens `/dev/fbN`, reading its geometry from `/sys/class/graphics/fbN`.
    pub fn open(device: &Path) -> Result<Self, PanelError> {
        let name = device
            .file_name()
            .ok_or_else(|| err(device.display(), "not a framebuffer device path"))?;
        Self::open_with(device, &Path::new("/sys/class/graphics").join(name))
    }

    /// As [`Framebuffer::open`] with the geometry from `sysfs` (tests).
    pub fn open_with(device: &Path, sysfs: &Path) -> Result<Self, PanelError> {
        let size = sysfs_u32s(&sysfs.join("virtual_size"))?;
        let bpp = sysfs_u32s(&sysfs.join("bits_per_pixel"))?;
        let (&[width, height], &[bpp]) = (size.as_slice(), bpp.as_slice()) else {
            return Err(err(
                sysfs.display(),
                "unreadable virtual_size or bits_per_pixel",
            ));
        };
        if bpp != 16 && bpp != 32 {
            return Err(err(
                device.display(),
                format!("{bpp} bits per pixel; 16 (RGB565) or 32 (XRGB) are supported"),
            ));
        }
        let stride = match sysfs_u32s(&sysfs.join("stride")) {
            Ok(v) if v.len() == 1 && v[0] >= width * bpp / 8 => v[0],
            _ => width * bpp / 8,
        };
        if width < 120 || height < 160 {
            return Err(err(
                device.display(),
                format!("{width}x{height} is too small for the screen"),
            ));
        }
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(device)
            .map_err(|e| err(device.display(), e))?;
        Ok(Framebuffer {
            device: device.to_path_buf(),
            file,
            width,
            height,
            bpp,
            stride,
        })
    }

    /// The framebuffer's bytes for `b`.
    pub fn bytes(&self, b: &Rgb565Buffer) -> Vec<u8> {
        use embedded_graphics::pixelcolor::{Rgb888, RgbColor};
        use embedded_graphics::prelude::IntoStorage;
        let k = (self.width / b.width).min(self.height / b.height).max(1);
        let (ox, oy) = (
            (self.width.saturating_sub(b.width * k)) / 2,
            (self.height.saturating_sub(b.height * k)) / 2,
        );
        let mut out = vec![0u8; (self.stride * self.height) as usize];
        let px = (self.bpp / 8) as usize;
        for y in 0..self.height.min(b.height * k) {
            for x in 0..self.width.min(b.width * k) {
                let c = b.get(x / k, y / k);
                let at = ((oy + y) * self.stride) as usize + (ox + x) as usize * px;
                if px == 2 {
                    out[at..at + 2].copy_from_slice(&c.into_storage().to_le_bytes());
                } else {
                    let c = Rgb888::from(c);
                    out[at..at + 4].copy_from_slice(&[c.b(), c.g(), c.r(), 0xff]);
                }
            }
        }
        out
    }
}

impl Panel for Framebuffer {
    fn show(&mut self, s: &Screen) -> Result<(), PanelError> {
        let bytes = self.bytes(&color_buffer(s));
        self.file
            .write_all_at(&bytes, 0)
            .map_err(|e| err(self.device.display(), e))
    }
}

/// No panel.
#[derive(Debug)]
pub struct NoPanel;

impl Panel for NoPanel {
    fn show(&mut self, _: &Screen) -> Result<(), PanelError> {
        Ok(())
    }
}

/// Opens the configured panel.
pub fn open(cfg: &DisplayConfig) -> Result<Box<dyn Panel>, PanelError> {
    Ok(match cfg {
        DisplayConfig::None => Box::new(NoPanel),
        DisplayConfig::Png { path, panel, scale } => Box::new(PngPanel {
            path: path.clone(),
            kind: *panel,
            scale: *scale,
        }),
        DisplayConfig::Framebuffer { device } => Box::new(Framebuffer::open(device)?),
        #[cfg(feature = "st7789")]
        DisplayConfig::St7789 {
            spi,
            gpiochip,
            dc,
            reset,
            spi_hz,
        } => Box::new(st7789::St7789Panel::open(
            spi, gpiochip, *dc, *reset, *spi_hz,
        )?),
        #[cfg(not(feature = "st7789"))]
        DisplayConfig::St7789 { .. } => {
            return Err(err(
                "st7789",
                "this build has no ST7789 driver (build with --features st7789)",
            ))
        }
        #[cfg(feature = "ssd1306")]
        DisplayConfig::Ssd1306 { i2c, address } => {
            Box::new(ssd1306_panel::Ssd1306Panel::open(i2c, *address)?)
        }
        #[cfg(not(feature = "ssd1306"))]
        DisplayConfig::Ssd1306 { .. } => {
            return Err(err(
                "ssd1306",
                "this build has no SSD1306 driver (build with --features ssd1306)",
            ))
        }
    })
}

#[cfg(feature = "st7789")]
mod st7789 {
    use std::path::Path;

    use linux_embedded_hal::gpio_cdev::{Chip, LineRequestFlags};
    use linux_embedded_hal::spidev::{SpiModeFlags, SpidevOptions};
    use linux_embedded_hal::{CdevPin, Delay, SpidevDevice};
    use mipidsi::interface::SpiInterface;
    use mipidsi::models::ST7789;
    use mipidsi::options::ColorInversion;

    use super::{color_buffer, err, Panel, PanelError};
    use crate::screen::Screen;

    type Display = mipidsi::Display<SpiInterface<'static, SpidevDevice, CdevPin>, ST7789, CdevPin>;

    /// A 240×320 ST7789 on spidev with D/C (and reset) on GPIO lines.
    pub struct St7789Panel {
        display: Display,
    }

    fn output(chip: &mut Chip, line: u32, what: &str) -> Result<CdevPin, PanelError> {
        let handle = chip
            .get_line(line)
            .and_then(|l| l.request(LineRequestFlags::OUTPUT, 1, "nemascope"))
            .map_err(|e| err(format!("st7789 {what} GPIO {line}"), e))?;
        CdevPin::new(handle).map_err(|e| err(format!("st7789 {what} GPIO {line}"), e))
    }

    impl St7789Panel {
        pub fn open(
            spi: &Path,
            gpiochip: &Path,
            dc: u32,
            reset: u32,
            hz: u32,
        ) -> Result<Self, PanelError> {
            let mut dev = SpidevDevice::open(spi).map_err(|e| err(spi.display(), e))?;
            dev.0
                .configure(
                    &SpidevOptions::new()
                        .bits_per_word(8)
                        .max_speed_hz(hz)
                        .mode(SpiModeFlags::SPI_MODE_0)
                        .build(),
                )
                .map_err(|e| err(spi.display(), e))?;
            let mut chip = Chip::new(gpiochip).map_err(|e| err(gpiochip.display(), e))?;
            let dc = output(&mut chip, dc, "D/C")?;
            // The panel lives as long as the process: its transfer buffer too.
            let buffer: &'static mut [u8] = Box::leak(vec![0u8; 4096].into_boxed_slice());
            let di = SpiInterface::new(dev, dc, buffer);
            let builder = mipidsi::Builder::new(ST7789, di)
                .display_size(240, 320)
                .invert_colors(ColorInversion::Inverted);
            let mut delay = Delay;
            let display = builder
                .reset_pin(output(&mut chip, reset, "reset")?)
                .init(&mut delay)
                .map_err(|e| err("st7789 init", format!("{e:?}")))?;
            Ok(St7789Panel { display })
        }
    }

    impl Panel for St7789Panel {
        fn show(&mut self, s: &Screen) -> Result<(), PanelError> {
            // Drawn in memory first, then sent as one window: no flicker.
            let b = color_buffer(s);
            self.display
                .set_pixels(0, 0, 239, 319, b.pixels.iter().copied())
                .map_err(|e| err("st7789", format!("{e:?}")))
        }
    }
}

#[cfg(feature = "ssd1306")]
mod ssd1306_panel {
    use std::path::Path;

    use linux_embedded_hal::I2cdev;
    use ssd1306::mode::BufferedGraphicsMode;
    use ssd1306::prelude::*;
    use ssd1306::{I2CDisplayInterface, Ssd1306};

    use super::{err, Panel, PanelError};
    use crate::screen::{draw_mono, Screen};

    type Display =
        Ssd1306<I2CInterface<I2cdev>, DisplaySize128x64, BufferedGraphicsMode<DisplaySize128x64>>;

    /// A 128×64 SSD1306 on `/dev/i2c-N`.
    pub struct Ssd1306Panel {
        display: Display,
    }

    impl Ssd1306Panel {
        pub fn open(bus: &Path, address: u8) -> Result<Self, PanelError> {
            let i2c = I2cdev::new(bus).map_err(|e| err(bus.display(), e))?;
            let di = I2CDisplayInterface::new_custom_address(i2c, address);
            let mut display = Ssd1306::new(di, DisplaySize128x64, DisplayRotation::Rotate0)
                .into_buffered_graphics_mode();
            display
                .init()
                .map_err(|e| err(format!("ssd1306 at {address:#x}"), format!("{e:?}")))?;
            Ok(Ssd1306Panel { display })
        }
    }

    impl Panel for Ssd1306Panel {
        fn show(&mut self, s: &Screen) -> Result<(), PanelError> {
            self.display.clear_buffer();
            draw_mono(s, &mut self.display).map_err(|e| err("ssd1306", format!("{e:?}")))?;
            self.display
                .flush()
                .map_err(|e| err("ssd1306", format!("{e:?}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::screen::LinkState;
    use embedded_graphics::prelude::IntoStorage;

    fn screen() -> Screen {
        Screen {
            sample: "plot-7".into(),
            frames: 1,
            counts: vec![crate::screen::ClassRow {
                class: "worm".into(),
                total: 12,
                frame: 12,
            }],
            frame_ms: 51,
            model: "m".into(),
            link: LinkState::Up,
            warnings: 0,
        }
    }

    fn fake_fb(dir: &Path, size: &str, bpp: &str, stride: &str) -> (PathBuf, PathBuf) {
        let sys = dir.join("sys");
        std::fs::create_dir_all(&sys).unwrap();
        std::fs::write(sys.join("virtual_size"), size).unwrap();
        std::fs::write(sys.join("bits_per_pixel"), bpp).unwrap();
        std::fs::write(sys.join("stride"), stride).unwrap();
        let dev = dir.join("fb");
        std::fs::write(&dev, b"").unwrap();
        (dev, sys)
    }

    #[test]
    fn framebuffer_gets_the_colour_screen_at_its_geometry() {
        let dir = tempfile::tempdir().unwrap();
        let b = color_buffer(&screen());
        // 16-bit, exactly the panel's size, with row padding.
        let (dev, sys) = fake_fb(dir.path(), "240,320\n", "16\n", "512\n");
        let mut fb = Framebuffer::open_with(&dev, &sys).unwrap();
        fb.show(&screen()).unwrap();
        let bytes = std::fs::read(&dev).unwrap();
        assert_eq!(bytes.len(), 512 * 320);
        for (x, y) in [(0, 0), (120, 100), (239, 319), (17, 250)] {
            let at = y * 512 + x * 2;
            let want = b.get(x as u32, y as u32).into_storage().to_le_bytes();
            assert_eq!(bytes[at..at + 2], want, "pixel {x},{y}");
        }
        // 32-bit HDMI-sized: scaled ×3, centred.
        let dir = tempfile::tempdir().unwrap();
        let (dev, sys) = fake_fb(dir.path(), "1024,1000", "32", "4096");
        let fb = Framebuffer::open_with(&dev, &sys).unwrap();
        let bytes = fb.bytes(&b);
        let (k, ox, oy) = (3u32, (1024 - 720) / 2, (1000 - 960) / 2);
        for (x, y) in [(0u32, 0u32), (120, 100), (239, 319)] {
            let at = ((oy + y * k + 1) * 4096 + (ox + x * k + 2) * 4) as usize;
            let c = embedded_graphics::pixelcolor::Rgb888::from(b.get(x, y));
            use embedded_graphics::pixelcolor::RgbColor;
            assert_eq!(bytes[at..at + 4], [c.b(), c.g(), c.r(), 0xff]);
        }
        assert_eq!(bytes[..4], [0, 0, 0, 0], "outside the screen stays black");
    }

    #[test]
    fn unsupported_framebuffers_are_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let (dev, sys) = fake_fb(dir.path(), "240,320", "24", "720");
        let e = Framebuffer::open_with(&dev, &sys).unwrap_err().to_string();
        assert!(e.contains("24 bits per pixel"), "{e}");
        let (dev, sys) = fake_fb(dir.path(), "84,48", "16", "168");
        let e = Framebuffer::open_with(&dev, &sys).unwrap_err().to_string();
        assert!(e.contains("too small"), "{e}");
        let e = Framebuffer::open(Path::new("/dev/fb-none-here"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("fb-none-here"), "{e}");
    }

    #[test]
    fn png_panel_writes_the_preview_image() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("screen.png");
        let mut p = PngPanel {
            path: path.clone(),
            kind: PanelKind::Mono,
            scale: 2,
        };
        p.show(&screen()).unwrap();
        let img = image::open(&path).unwrap();
        assert_eq!((img.width(), img.height()), (256, 128));
        assert_eq!(img, render(&screen(), PanelKind::Mono, 2));
    }
}
