//! What a run leaves for people: `results.json`, `results.md`, a loss-curve
//! PNG and mask overlays. Plots are drawn with embedded-graphics' built-in
//! fonts onto the project's in-memory canvas, so no system fonts are needed.

use std::path::Path;

use embedded_graphics::mono_font::{ascii::FONT_6X10, MonoTextStyle};
use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::{Line, PrimitiveStyle, Rectangle};
use embedded_graphics::text::Text;
use image::{Rgb, RgbImage};
use nemascope_core::canvas::Buffer;
use nemascope_core::{Error, Mask, Plane, Result};

use crate::train::{EpochLog, StageResult, State};

fn fmt_opt(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{v:.3}"))
}

/// The Markdown table of a run's stage results.
pub fn markdown(state: &State, title: &str) -> String {
    let mut s = format!("# {title}\n\n");
    let classes = &state.classes;
    s.push_str("| stage |");
    for c in classes {
        s.push_str(&format!(" Dice {c} |"));
    }
    s.push_str(" image accuracy | count error / image | training-target Dice |\n|---|");
    for _ in classes {
        s.push_str("---|");
    }
    s.push_str("---|---|---|\n");
    for r in &state.results {
        s.push_str(&format!("| {} |", r.stage));
        for d in &r.dice {
            s.push_str(&format!(" {} |", fmt_opt(*d)));
        }
        s.push_str(&format!(
            " {} | {} | {} |\n",
            fmt_opt(r.accuracy),
            r.count_mae.map_or("–".into(), |v| format!("{v:.2}")),
            fmt_opt(r.target_dice)
        ));
    }
    s.push_str(&per_class(state));
    s.push_str(&format!(
        "\n{} training steps in {:.0} s ({:.3} s/step).\n",
        state.steps,
        state.seconds,
        state.seconds / state.steps.max(1) as f64
    ));
    if !state.skipped.is_empty() {
        s.push_str(&format!(
            "\n{} dataset row(s) skipped (`data.bad_rows = \"skip\"`):\n\n",
            state.skipped.len()
        ));
        for b in &state.skipped {
            s.push_str(&format!("- {b}\n"));
        }
    }
    s
}

/// Class `c`'s objects found and true with the relative error
/// (`12 / 10 (+20 %)`), or a dash where nothing true was counted.
pub fn found_true(found: &[usize], truth: &[usize], c: usize) -> String {
    match (found.get(c), truth.get(c)) {
        (Some(f), Some(&t)) if t > 0 => {
            format!("{f} / {t} ({:+.0} %)", 100.0 * (*f as f64 / t as f64 - 1.0))
        }
        _ => "–".into(),
    }
}

/// Per stage and class: Dice, the pooled score's AUC, recall and precision
/// on the validation cells, count error, found/true and the Dice of the
/// masks the round learned from, and what the cells' labels alone say of
/// the counts; a class that collapses shows here even when the image
/// accuracy looks good.
fn per_class(state: &State) -> String {
    let mut s = String::from(
        "\n| stage | class | Dice | AUC | recall | precision | count error / image | found / true | target Dice | absent cells counted | present cells empty |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    let at = |v: &[Option<f64>], c: usize| fmt_opt(v.get(c).copied().flatten());
    for r in &state.results {
        for (c, name) in state.classes.iter().enumerate() {
            let ft = found_true(&r.found, &r.truth, c);
            s.push_str(&format!(
                "| {} | {name} | {} | {} | {} | {} | {} | {ft} | {} | {} | {} |\n",
                r.stage,
                at(&r.dice, c),
                at(&r.auc, c),
                at(&r.recall, c),
                at(&r.precision, c),
                r.count_mae_per_class
                    .get(c)
                    .copied()
                    .flatten()
                    .map_or("–".into(), |v| format!("{v:.2}")),
                at(&r.target_dice_per_class, c),
                at(&r.absent_counted, c),
                at(&r.present_empty, c),
            ));
        }
    }
    s
}

/// Writes `results.json`, `results.md` and `curves.png` into `dir`.
pub fn write(dir: &Path, state: &State, title: &str) -> Result<()> {
    let json = serde_json::to_vec_pretty(state).expect("state serialises");
    std::fs::write(dir.join("results.json"), json).map_err(|e| Error::io(dir, e))?;
    std::fs::write(dir.join("results.md"), markdown(state, title))
        .map_err(|e| Error::io(dir, e))?;
    curves(&state.history, &dir.join("curves.png"))
}

/// Training and validation loss per epoch, phases one after another.
pub fn curves(history: &[EpochLog], path: &Path) -> Result<()> {
    let (w, h) = (640u32, 360u32);
    let mut c = Buffer::filled(w, h, Rgb888::WHITE);
    let (x0, y0, x1, y1) = (50i32, 20i32, w as i32 - 20, h as i32 - 40);
    let black = PrimitiveStyle::with_stroke(Rgb888::BLACK, 1);
    let text = MonoTextStyle::new(&FONT_6X10, Rgb888::BLACK);
    let _ = Rectangle::with_corners(Point::new(x0, y0), Point::new(x1, y1))
        .into_styled(black)
        .draw(&mut c);
    let ymax = history
        .iter()
        .flat_map(|e| [e.train_loss, e.val_loss])
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max)
        .max(1e-6);
    let n = history.len().max(2);
    let px = |i: usize| x0 + ((x1 - x0) as f64 * i as f64 / (n - 1) as f64) as i32;
    let py = |v: f64| y1 - ((y1 - y0) as f64 * (v / ymax).clamp(0.0, 1.0)) as i32;
    for (k, colour) in [
        (0, Rgb888::new(31, 119, 180)),
        (1, Rgb888::new(214, 39, 40)),
    ] {
        let style = PrimitiveStyle::with_stroke(colour, 2);
        for i in 1..history.len() {
            let v = |e: &EpochLog| if k == 0 { e.train_loss } else { e.val_loss };
            if history[i].phase != history[i - 1].phase {
                continue;
            }
            let _ = Line::new(
                Point::new(px(i - 1), py(v(&history[i - 1]))),
                Point::new(px(i), py(v(&history[i]))),
            )
            .into_styled(style)
            .draw(&mut c);
        }
        let label = if k == 0 {
            "training loss"
        } else {
            "validation loss"
        };
        let ly = y0 + 12 + 12 * k;
        let _ = Line::new(Point::new(x1 - 130, ly - 3), Point::new(x1 - 110, ly - 3))
            .into_styled(style)
            .draw(&mut c);
        let _ = Text::new(label, Point::new(x1 - 105, ly), text).draw(&mut c);
    }
    // Phase boundaries and names.
    for i in 0..history.len() {
        if i == 0 || history[i].phase != history[i - 1].phase {
            let x = px(i);
            let _ = Line::new(Point::new(x, y0), Point::new(x, y1))
                .into_styled(PrimitiveStyle::with_stroke(Rgb888::CSS_GRAY, 1))
                .draw(&mut c);
            let _ = Text::new(&history[i].phase, Point::new(x + 3, y1 - 4), text).draw(&mut c);
        }
    }
    let _ = Text::new(&format!("{ymax:.3}"), Point::new(4, y0 + 4), text).draw(&mut c);
    let _ = Text::new("0", Point::new(30, y1), text).draw(&mut c);
    let _ = Text::new("epochs", Point::new((x0 + x1) / 2 - 18, y1 + 25), text).draw(&mut c);
    c.to_image().save(path).map_err(|e| Error::image(path, e))
}

/// The image in grey with true-only pixels green, predicted-only magenta and
/// both white.
pub fn overlay(image: &Plane, pred: &Mask, truth: Option<&Mask>, path: &Path) -> Result<()> {
    image.check_same_size(pred, "overlay")?;
    let mut img = RgbImage::new(image.width() as u32, image.height() as u32);
    for (i, (&v, &p)) in image.data().iter().zip(pred.data()).enumerate() {
        let g = (v.clamp(0.0, 1.0) * 200.0) as u8;
        let t = truth.is_some_and(|t| t.data()[i]);
        let px = match (p, t) {
            (true, true) => Rgb([255, 255, 255]),
            (true, false) => Rgb([230, 0, 200]),
            (false, true) => Rgb([0, 220, 0]),
            _ => Rgb([g, g, g]),
        };
        img.put_pixel((i % image.width()) as u32, (i / image.width()) as u32, px);
    }
    img.save(path).map_err(|e| Error::image(path, e))
}

/// Stage results as the rows of a sweep table.
pub fn sweep_row(name: &str, classes: &[String], results: &[StageResult]) -> String {
    let get = |stage: &str| results.iter().find(|r| r.stage == stage);
    let at = |v: Option<&Vec<Option<f64>>>, c: usize| {
        fmt_opt(v.and_then(|v| v.get(c).copied().flatten()))
    };
    let mut s = String::new();
    for (c, class) in classes.iter().enumerate() {
        let dice = |stage: &str| at(get(stage).map(|r| &r.dice), c);
        s.push_str(&format!(
            "| {name} | {class} | {} | {} | {} | {} | {} | {} |\n",
            at(get("raw maps").map(|r| &r.auc), c),
            fmt_opt(get("raw maps").and_then(|r| r.accuracy)),
            dice("raw maps"),
            dice("voting"),
            dice("refine 1"),
            dice("refine 2"),
        ));
    }
    s
}
