//! What the unit's small screen shows, drawn with embedded-graphics on any
//! `DrawTarget`: a 240×320 colour panel (ST7789) and a 128×64 monochrome one
//! (SSD1306). Counts are drawn as large seven-segment digits so a technician
//! reads them at arm's length. [`Rgb565Buffer`] and [`MonoBuffer`] are
//! in-memory panels: PNG previews, and the Linux framebuffer's RGB565 bytes.

pub mod panels;

use embedded_graphics::mono_font::ascii::{FONT_10X20, FONT_6X10, FONT_9X15_BOLD};
use embedded_graphics::mono_font::MonoTextStyle;
use embedded_graphics::pixelcolor::{BinaryColor, Rgb565};
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::{Circle, PrimitiveStyle, Rectangle};
use embedded_graphics::text::{Alignment, Text};

use crate::link::protocol::warn;

/// The serial link as the screen shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// Every report acknowledged.
    Up,
    /// Reports waiting for the host's acknowledgement.
    Backlog(u64),
    /// No host heard from.
    Down,
    /// No serial port configured.
    Off,
}

/// Everything on the screen.
#[derive(Debug, Clone, PartialEq)]
pub struct Screen {
    pub sample: String,
    /// Class name and count, in the model's order (up to three shown).
    pub counts: Vec<(String, u32)>,
    pub frame_ms: u32,
    pub model: String,
    pub link: LinkState,
    /// `protocol::warn` bits.
    pub warnings: u8,
}

/// Short words for the warning bits, most urgent first.
pub fn warning_words(bits: u8) -> Vec<&'static str> {
    [
        (warn::MODEL, "MODEL"),
        (warn::DISK, "DISK FULL"),
        (warn::NOT_COUNTED, "NOT COUNTED"),
        (warn::FRAME_QUALITY, "CHECK FOCUS/LIGHT"),
        (warn::BACKLOG, "UNSENT"),
    ]
    .iter()
    .filter(|(b, _)| bits & b != 0)
    .map(|(_, w)| *w)
    .collect()
}

/// `s` cut to `n` characters, with `~` marking the cut.
fn fit(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('~');
        t
    }
}

/// Class colours on the colour panel: the overlays' (worm red, egg yellow,
/// cyst cyan).
const CLASS_COLOURS: [Rgb565; 3] = [
    Rgb565::new(31, 12, 6),
    Rgb565::new(31, 55, 0),
    Rgb565::new(0, 55, 31),
];

/// Segments a–g of the digits 0–9 (bit 0 = a, top; clockwise; g middle).
const SEGMENTS: [u8; 10] = [0x3f, 0x06, 0x5b, 0x4f, 0x66, 0x6d, 0x7d, 0x07, 0x7f, 0x6f];

/// Draws `n` as seven-segment digits `w × h` with stroke `t`, right edge at
/// `right`, top at `top`. Numbers above 9999 show as 9999.
fn draw_number<D: DrawTarget>(
    d: &mut D,
    n: u32,
    right: i32,
    top: i32,
    (w, h, t): (i32, i32, i32),
    colour: D::Color,
) -> Result<(), D::Error> {
    let text = n.min(9999).to_string();
    let style = PrimitiveStyle::with_fill(colour);
    let gap = t;
    for (i, ch) in text.chars().rev().enumerate() {
        let x = right - (i as i32 + 1) * (w + gap) + gap;
        let seg = SEGMENTS[ch.to_digit(10).unwrap_or(0) as usize];
        let half = h / 2;
        let rects = [
            (x, top, w, t),                       // a
            (x + w - t, top, t, half + t / 2),    // b
            (x + w - t, top + half, t, h - half), // c
            (x, top + h - t, w, t),               // d
            (x, top + half, t, h - half),         // e
            (x, top, t, half + t / 2),            // f
            (x, top + half - t / 2, w, t),        // g
        ];
        for (k, &(rx, ry, rw, rh)) in rects.iter().enumerate() {
            if seg & (1 << k) != 0 {
                Rectangle::new(Point::new(rx, ry), Size::new(rw as u32, rh as u32))
                    .into_styled(style)
                    .draw(d)?;
            }
        }
    }
    Ok(())
}

/// The 240×320 colour screen (portrait).
pub fn draw_color<D: DrawTarget<Color = Rgb565>>(s: &Screen, d: &mut D) -> Result<(), D::Error> {
    d.clear(Rgb565::BLACK)?;
    let small = MonoTextStyle::new(&FONT_6X10, Rgb565::new(20, 40, 20));
    let text = MonoTextStyle::new(&FONT_10X20, Rgb565::WHITE);
    // top bar: model, link
    Text::new(&fit(&s.model, 26), Point::new(4, 12), small).draw(d)?;
    let (dot, label) = match s.link {
        LinkState::Up => (Rgb565::GREEN, "LINK".to_string()),
        LinkState::Backlog(n) => (Rgb565::YELLOW, format!("{n} UNSENT")),
        LinkState::Down => (Rgb565::RED, "NO HOST".to_string()),
        LinkState::Off => (Rgb565::new(12, 24, 12), "NO LINK".to_string()),
    };
    Circle::new(Point::new(228, 4), 9)
        .into_styled(PrimitiveStyle::with_fill(dot))
        .draw(d)?;
    Text::with_alignment(&label, Point::new(224, 12), small, Alignment::Right).draw(d)?;
    // sample
    Text::new(&fit(&s.sample, 23), Point::new(4, 40), text).draw(d)?;
    // one row per class: name, big count
    for (i, (name, n)) in s.counts.iter().take(3).enumerate() {
        let top = 56 + i as i32 * 76;
        let colour = CLASS_COLOURS[i];
        Text::new(
            &fit(&name.to_uppercase(), 8),
            Point::new(4, top + 36),
            MonoTextStyle::new(&FONT_10X20, colour),
        )
        .draw(d)?;
        draw_number(d, *n, 236, top + 6, (26, 58, 6), colour)?;
    }
    // bottom: frame time, warnings on a red band
    let words = warning_words(s.warnings);
    if words.is_empty() {
        Text::new(
            &format!("frame {} ms", s.frame_ms),
            Point::new(4, 312),
            small,
        )
        .draw(d)?;
    } else {
        Rectangle::new(Point::new(0, 288), Size::new(240, 32))
            .into_styled(PrimitiveStyle::with_fill(Rgb565::RED))
            .draw(d)?;
        Text::new(
            &fit(&words.join(" "), 23),
            Point::new(4, 310),
            MonoTextStyle::new(&FONT_10X20, Rgb565::WHITE),
        )
        .draw(d)?;
    }
    Ok(())
}

/// The 128×64 monochrome screen: a header line (inverted when there are
/// warnings), then one line per class with a bold count.
pub fn draw_mono<D: DrawTarget<Color = BinaryColor>>(
    s: &Screen,
    d: &mut D,
) -> Result<(), D::Error> {
    d.clear(BinaryColor::Off)?;
    let words = warning_words(s.warnings);
    let (fg, bg) = if words.is_empty() {
        (BinaryColor::On, BinaryColor::Off)
    } else {
        (BinaryColor::Off, BinaryColor::On)
    };
    Rectangle::new(Point::zero(), Size::new(128, 11))
        .into_styled(PrimitiveStyle::with_fill(bg))
        .draw(d)?;
    let link = match s.link {
        LinkState::Up => "ok",
        LinkState::Backlog(_) => "..",
        LinkState::Down => "!!",
        LinkState::Off => "--",
    };
    let head = match words.first() {
        Some(w) => fit(w, 18),
        None => fit(&s.sample, 18),
    };
    let small = MonoTextStyle::new(&FONT_6X10, fg);
    Text::new(&head, Point::new(1, 8), small).draw(d)?;
    Text::with_alignment(link, Point::new(127, 8), small, Alignment::Right).draw(d)?;
    let bold = MonoTextStyle::new(&FONT_9X15_BOLD, BinaryColor::On);
    for (i, (name, n)) in s.counts.iter().take(3).enumerate() {
        let y = 25 + i as i32 * 18;
        Text::new(&fit(name, 7), Point::new(1, y), bold).draw(d)?;
        Text::with_alignment(
            &(*n).min(99_999).to_string(),
            Point::new(127, y),
            bold,
            Alignment::Right,
        )
        .draw(d)?;
    }
    Ok(())
}

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
            let c = embedded_graphics::pixelcolor::Rgb888::from(self.get(x, y));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn screen() -> Screen {
        Screen {
            sample: "plot-7 / extraction 2".into(),
            counts: vec![("worm".into(), 12), ("egg".into(), 3), ("cyst".into(), 0)],
            frame_ms: 51,
            model: "bbbc010-worm-student".into(),
            link: LinkState::Up,
            warnings: 0,
        }
    }

    /// Lit pixels of `colour` inside a rectangle.
    fn lit(b: &Rgb565Buffer, (x0, y0, x1, y1): (u32, u32, u32, u32), colour: Rgb565) -> usize {
        (y0..y1)
            .flat_map(|y| (x0..x1).map(move |x| (x, y)))
            .filter(|&(x, y)| b.get(x, y) == colour)
            .count()
    }

    #[test]
    fn seven_segments_light_the_right_bars() {
        // "1" lights b and c only: the right column, not the left
        let mut b = Rgb565Buffer::new(40, 70);
        draw_number(&mut b, 1, 36, 2, (26, 58, 6), Rgb565::WHITE).unwrap();
        assert!(lit(&b, (30, 10, 36, 55), Rgb565::WHITE) > 200);
        assert_eq!(lit(&b, (10, 0, 16, 70), Rgb565::WHITE), 0);
        // "8" lights all seven: top, middle and bottom bars
        let mut b = Rgb565Buffer::new(40, 70);
        draw_number(&mut b, 8, 36, 2, (26, 58, 6), Rgb565::WHITE).unwrap();
        for y in [4, 32, 57] {
            assert_eq!(b.get(20, y), Rgb565::WHITE, "row {y}");
        }
        // two digits: the tens sit left of the units
        let mut b = Rgb565Buffer::new(80, 70);
        draw_number(&mut b, 10, 76, 2, (26, 58, 6), Rgb565::WHITE).unwrap();
        assert!(lit(&b, (0, 0, 44, 70), Rgb565::WHITE) > 0);
    }

    #[test]
    fn colour_screen_shows_each_class_in_its_colour() {
        let mut b = Rgb565Buffer::new(240, 320);
        draw_color(&screen(), &mut b).unwrap();
        for (i, c) in CLASS_COLOURS.iter().enumerate() {
            let top = 56 + i as u32 * 76;
            // the big count on the right of the class's row
            assert!(lit(&b, (150, top, 240, top + 70), *c) > 300, "class {i}");
        }
        // no warnings: no red band
        assert_eq!(lit(&b, (0, 290, 240, 320), Rgb565::RED), 0);
        let mut w = screen();
        w.warnings = warn::MODEL | warn::DISK;
        w.link = LinkState::Down;
        draw_color(&w, &mut b).unwrap();
        assert!(lit(&b, (0, 290, 240, 320), Rgb565::RED) > 4000);
        assert!(lit(&b, (226, 2, 240, 16), Rgb565::RED) > 20, "link dot");
        assert_eq!(b.to_fb_bytes().len(), 240 * 320 * 2);
    }

    #[test]
    fn mono_screen_fits_and_inverts_on_warnings() {
        let mut b = MonoBuffer::new(128, 64);
        draw_mono(&screen(), &mut b).unwrap();
        let header_on = |b: &MonoBuffer| (0..128).filter(|&x| b.get(x, 0).is_on()).count();
        assert_eq!(header_on(&b), 0);
        // every count line has ink
        for i in 0..3u32 {
            let y0 = 13 + i * 18;
            assert!(
                (y0..y0 + 15).any(|y| (0..128).any(|x| b.get(x, y).is_on())),
                "line {i}"
            );
        }
        let mut w = screen();
        w.warnings = warn::FRAME_QUALITY;
        draw_mono(&w, &mut b).unwrap();
        assert_eq!(header_on(&b), 128);
    }

    #[test]
    fn long_text_is_cut_and_warnings_are_named() {
        assert_eq!(fit("abcdef", 4), "abc~");
        assert_eq!(fit("abc", 4), "abc");
        assert_eq!(
            warning_words(warn::BACKLOG | warn::MODEL),
            ["MODEL", "UNSENT"]
        );
        assert!(warning_words(0).is_empty());
    }
}
