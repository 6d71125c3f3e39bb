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

/// One class's line on the screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassRow {
    pub class: String,
    /// The sample's running total: what a technician reads off a slide
    /// counted over many frames.
    pub total: u32,
    /// The last frame's count, shown beside it.
    pub frame: u32,
}

impl ClassRow {
    /// A class with nothing counted yet.
    pub fn new(class: &str) -> Self {
        ClassRow {
            class: class.to_string(),
            total: 0,
            frame: 0,
        }
    }
}

/// Everything on the screen.
#[derive(Debug, Clone, PartialEq)]
pub struct Screen {
    pub sample: String,
    /// Frames of the sample counted so far.
    pub frames: u32,
    /// One line per class, in the model's order (up to four on the colour
    /// panel, five on the monochrome one; more are named as left out).
    pub counts: Vec<ClassRow>,
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
/// cyst cyan), then magenta for a fourth class.
const CLASS_COLOURS: [Rgb565; 4] = [
    Rgb565::new(31, 12, 6),
    Rgb565::new(31, 55, 0),
    Rgb565::new(0, 55, 31),
    Rgb565::new(31, 20, 31),
];

/// Largest count four seven-segment digits show.
const MAX_DIGITS_COUNT: u32 = 9999;

/// Segments a–g of the digits 0–9 (bit 0 = a, top; clockwise; g middle).
const SEGMENTS: [u8; 10] = [0x3f, 0x06, 0x5b, 0x4f, 0x66, 0x6d, 0x7d, 0x07, 0x7f, 0x6f];

/// Draws `n` as seven-segment digits `w × h` with stroke `t`, right edge at
/// `right`, top at `top`. A number above [`MAX_DIGITS_COUNT`] shows as four
/// dashes, never as a wrong number; the caller names it ("> 9999").
fn draw_number<D: DrawTarget>(
    d: &mut D,
    n: u32,
    right: i32,
    top: i32,
    (w, h, t): (i32, i32, i32),
    colour: D::Color,
) -> Result<(), D::Error> {
    let over = n > MAX_DIGITS_COUNT;
    let text = if over {
        "----".to_string()
    } else {
        n.to_string()
    };
    let style = PrimitiveStyle::with_fill(colour);
    let gap = t;
    for (i, ch) in text.chars().rev().enumerate() {
        let x = right - (i as i32 + 1) * (w + gap) + gap;
        // segment g alone is a dash
        let seg = ch.to_digit(10).map_or(0x40, |v| SEGMENTS[v as usize]);
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
    // one row per class: name, this frame's count, the sample's total big
    let shown = s.counts.len().min(CLASS_COLOURS.len());
    let (row, digits) = if shown <= 3 {
        (76, (26, 58, 6))
    } else {
        (58, (18, 40, 5))
    };
    for (i, c) in s.counts.iter().take(shown).enumerate() {
        let top = 56 + i as i32 * row;
        let colour = CLASS_COLOURS[i];
        let label = MonoTextStyle::new(&FONT_6X10, colour);
        Text::new(
            &fit(&c.class.to_uppercase(), 8),
            Point::new(4, top + row / 2 - 2),
            MonoTextStyle::new(&FONT_10X20, colour),
        )
        .draw(d)?;
        Text::new(
            &format!("+{} frame", c.frame),
            Point::new(4, top + row / 2 + 14),
            label,
        )
        .draw(d)?;
        if c.total > MAX_DIGITS_COUNT {
            Text::new(
                &format!("> {MAX_DIGITS_COUNT}"),
                Point::new(4, top + row / 2 + 26),
                label,
            )
            .draw(d)?;
        }
        draw_number(d, c.total, 236, top + 6, digits, colour)?;
    }
    // bottom: frames of the sample, frame time, classes left out; warnings
    // on a red band
    let words = warning_words(s.warnings);
    if words.is_empty() {
        let more = s.counts.len() - shown;
        let tail = if more > 0 {
            format!(", {more} more classes")
        } else {
            String::new()
        };
        Text::new(
            &fit(
                &format!("{} frames, last {} ms{tail}", s.frames, s.frame_ms),
                39,
            ),
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
    // Three classes in bold; more in the small font, five at most.
    let (font, step, first, rows) = if s.counts.len() <= 3 {
        (&FONT_9X15_BOLD, 18, 25, 3)
    } else {
        (&FONT_6X10, 10, 20, 5)
    };
    let big = MonoTextStyle::new(font, BinaryColor::On);
    let note = MonoTextStyle::new(&FONT_6X10, BinaryColor::On);
    for (i, c) in s.counts.iter().take(rows).enumerate() {
        let y = first + i as i32 * step;
        Text::new(&fit(&c.class, 5), Point::new(1, y), big).draw(d)?;
        Text::new(&format!("+{}", c.frame.min(9999)), Point::new(50, y), note).draw(d)?;
        let total = if c.total > 99_999 {
            ">99999".to_string()
        } else {
            c.total.to_string()
        };
        Text::with_alignment(&total, Point::new(127, y), big, Alignment::Right).draw(d)?;
    }
    Ok(())
}

pub use nemascope_core::canvas::{Buffer, MonoBuffer, Rgb565Buffer};

#[cfg(test)]
mod tests {
    use super::*;

    fn screen() -> Screen {
        Screen {
            sample: "plot-7 / extraction 2".into(),
            frames: 4,
            counts: [("worm", 12, 2), ("egg", 3, 1), ("cyst", 0, 0)]
                .map(|(c, total, frame)| ClassRow {
                    class: c.into(),
                    total,
                    frame,
                })
                .to_vec(),
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
        for (i, c) in CLASS_COLOURS.iter().take(3).enumerate() {
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

    /// A fourth class gets a row in its own colour; a total too large for
    /// the digits is dashes and named, never a wrong number.
    #[test]
    fn four_classes_and_totals_over_the_digits() {
        let mut s = screen();
        s.counts.push(ClassRow {
            class: "juvenile".into(),
            total: 123_456,
            frame: 7,
        });
        let mut b = Rgb565Buffer::new(240, 320);
        draw_color(&s, &mut b).unwrap();
        for (i, c) in CLASS_COLOURS.iter().enumerate() {
            let top = 56 + i as u32 * 58;
            assert!(lit(&b, (150, top, 240, top + 52), *c) > 150, "class {i}");
        }
        // four dashes: the middle bars lit, the top bars dark
        let (top, c) = (56 + 3 * 58, CLASS_COLOURS[3]);
        assert!(lit(&b, (150, top + 6 + 17, 240, top + 6 + 23), c) > 200);
        assert_eq!(lit(&b, (150, top + 6, 240, top + 11), c), 0);
        let mut m = MonoBuffer::new(128, 64);
        draw_mono(&s, &mut m).unwrap();
        for i in 0..4u32 {
            let y0 = 11 + i * 10;
            assert!(
                (y0..y0 + 10).any(|y| (0..128).any(|x| m.get(x, y).is_on())),
                "line {i}"
            );
        }
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
