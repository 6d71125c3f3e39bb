//! What `count` writes: per-image and per-sample counts as CSV and JSON,
//! and overlays that outline each class's objects on the frame.

use std::path::{Path, PathBuf};

use nemascope_core::{Error, Mask, Plane, Result};

use nemascope_count::Measured;

pub use nemascope_reports::counts::{samples, CountRun, ImageReport, ObjectReport, SampleTotal};

/// The report of a measured object of the model whose classes are `classes`.
pub fn object_report(m: &Measured, classes: &[String]) -> ObjectReport {
    ObjectReport {
        class: classes.get(m.class).cloned().unwrap_or_default(),
        count: m.count,
        area_um2: m.area_um2,
        length_um: m.length_um,
        width_um: m.width_um,
        x: m.centroid.0,
        y: m.centroid.1,
        score: m.score,
    }
}

pub use nemascope_reports::spreadsheet_text;

/// One row per image: `image,sample,<class>…,ms`; names are
/// [`spreadsheet_text`].
pub fn csv(classes: &[String], reports: &[ImageReport]) -> Result<Vec<u8>> {
    let err = |e: csv::Error| Error::Invalid(format!("csv: {e}"));
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut head = vec!["image".to_string(), "sample".into()];
    head.extend(classes.iter().map(|c| spreadsheet_text(c)));
    head.push("ms".into());
    w.write_record(&head).map_err(err)?;
    for r in reports {
        let mut row = vec![spreadsheet_text(&r.image), spreadsheet_text(&r.sample)];
        row.extend(r.counts.iter().map(usize::to_string));
        row.push(format!("{:.1}", r.ms));
        w.write_record(&row).map_err(err)?;
    }
    w.into_inner()
        .map_err(|e| Error::Invalid(format!("csv: {e}")))
}

/// Each class's outline colour on overlays, in the model's class order.
const COLOURS: [[u8; 3]; 4] = [[255, 48, 48], [255, 220, 0], [0, 220, 255], [160, 255, 96]];

/// Outlines each class's objects in its colour on the gray frame (pass it
/// contrast-stretched: camera frames are often dark), with the legend and
/// the counts (`legend`: class name and count, in the masks' order) in the
/// top left corner, so the picture says what it shows on its own.
pub fn overlay(frame: &Plane, masks: &[Mask], legend: &[(String, usize)]) -> image::RgbImage {
    let (w, h) = (frame.width(), frame.height());
    let mut img = image::RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let v = (frame.get(x as usize, y as usize).clamp(0.0, 1.0) * 255.0).round() as u8;
        image::Rgb([v, v, v])
    });
    for (c, m) in masks.iter().enumerate() {
        let colour = image::Rgb(COLOURS[c % COLOURS.len()]);
        for y in 0..h {
            for x in 0..w {
                if !*m.get(x, y) {
                    continue;
                }
                let edge = x == 0
                    || y == 0
                    || x + 1 == w
                    || y + 1 == h
                    || !*m.get(x - 1, y)
                    || !*m.get(x + 1, y)
                    || !*m.get(x, y - 1)
                    || !*m.get(x, y + 1);
                if edge {
                    img.put_pixel(x as u32, y as u32, colour);
                }
            }
        }
    }
    draw_legend(&mut img, legend);
    img
}

/// Draws "■ class count" per line on a dark box in the bottom right
/// corner, scaled with the frame (1× up to 700 px wide, 2× to 1400, …) so
/// it stays readable on a camera frame shown scaled down to a page.
fn draw_legend(img: &mut image::RgbImage, legend: &[(String, usize)]) {
    use embedded_graphics::mono_font::{ascii::FONT_10X20, MonoTextStyle};
    use embedded_graphics::pixelcolor::Rgb888;
    use embedded_graphics::prelude::*;
    use embedded_graphics::primitives::{PrimitiveStyle, Rectangle};
    use embedded_graphics::text::{Baseline, Text};
    if legend.is_empty() {
        return;
    }
    let chars = legend
        .iter()
        .map(|(c, n)| c.chars().count() + n.to_string().len() + 1)
        .max()
        .unwrap_or(0) as u32;
    let (w, h) = (34 + 10 * chars + 8, 24 * legend.len() as u32 + 8);
    let mut panel = nemascope_core::canvas::Buffer::filled(w, h, Rgb888::new(20, 20, 20));
    for (k, (class, n)) in legend.iter().enumerate() {
        let y = 4 + 24 * k as i32;
        let [r, g, b] = COLOURS[k % COLOURS.len()];
        let _ = Rectangle::new(Point::new(6, y + 3), Size::new(18, 18))
            .into_styled(PrimitiveStyle::with_fill(Rgb888::new(r, g, b)))
            .draw(&mut panel);
        let style = MonoTextStyle::new(&FONT_10X20, Rgb888::WHITE);
        let _ = Text::with_baseline(
            &format!("{class} {n}"),
            Point::new(32, y + 2),
            style,
            Baseline::Top,
        )
        .draw(&mut panel);
    }
    let scale = img.width().div_ceil(700).max(1);
    let panel = panel.to_image();
    // Bottom right: the review page writes each tile's count at the
    // tile's top left, where a legend at the frame's corner would hide
    // the first one.
    let (x0, y0) = (
        img.width().saturating_sub(w * scale),
        img.height().saturating_sub(h * scale),
    );
    for y in 0..(h * scale).min(img.height()) {
        for x in 0..(w * scale).min(img.width()) {
            img.put_pixel(x0 + x, y0 + y, *panel.get_pixel(x / scale, y / scale));
        }
    }
}

/// Refuses to start when an output file is already there, so a run never
/// replaces what the user had (`--overwrite` allows it).
pub fn check_free(path: &Path, overwrite: bool) -> Result<()> {
    if let Err(why) = nemascope_core::files::check_regular(path) {
        return Err(Error::Invalid(format!(
            "{} {why}: give the name of a file to write",
            path.display()
        )));
    }
    if !overwrite && path.exists() {
        return Err(Error::Invalid(format!(
            "{} already exists; pass --overwrite to replace it",
            path.display()
        )));
    }
    Ok(())
}

/// `p` made absolute with its folder's links resolved, so two spellings of
/// one file compare equal whether or not the file exists yet.
fn resolved(p: &Path) -> PathBuf {
    if let Ok(c) = p.canonicalize() {
        return c;
    }
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    match (abs.parent(), abs.file_name()) {
        (Some(dir), Some(name)) => dir
            .canonicalize()
            .map_or_else(|_| abs.clone(), |d| d.join(name)),
        _ => abs,
    }
}

/// Checks every file a run will write before anything is counted: no two
/// outputs are the same file (`--masks X --overlays X`, `--csv F --json
/// F`), no output is an input (never, even with `--overwrite`), none exists
/// unless `overwrite`, and every output folder can be written (made if
/// missing). `outputs` are (option, path) pairs, the option for messages.
pub fn check_outputs(
    inputs: &[PathBuf],
    outputs: &[(&str, PathBuf)],
    overwrite: bool,
) -> Result<()> {
    let ins: std::collections::HashMap<PathBuf, &PathBuf> =
        inputs.iter().map(|p| (resolved(p), p)).collect();
    let mut seen: std::collections::HashMap<PathBuf, &str> = Default::default();
    for (opt, p) in outputs {
        let r = resolved(p);
        if let Some(input) = ins.get(&r) {
            return Err(Error::Invalid(format!(
                "{opt} {} is the input image {}: an input is never overwritten",
                p.display(),
                input.display()
            )));
        }
        if let Some(other) = seen.insert(r, opt) {
            return Err(Error::Invalid(if other == *opt {
                format!("{opt}: two outputs would be {}", p.display())
            } else {
                format!(
                    "{other} and {opt} would both write {}: give them different places",
                    p.display()
                )
            }));
        }
        check_free(p, overwrite)?;
    }
    let mut dirs: Vec<PathBuf> = outputs
        .iter()
        .map(|(_, p)| {
            let d = p.parent().unwrap_or(Path::new(""));
            if d.as_os_str().is_empty() {
                Path::new(".").into()
            } else {
                d.to_path_buf()
            }
        })
        .collect();
    dirs.sort();
    dirs.dedup();
    for d in dirs {
        if d.exists() && !d.is_dir() {
            return Err(Error::Invalid(format!(
                "{} is a file, not a folder: outputs cannot go into it",
                d.display()
            )));
        }
        std::fs::create_dir_all(&d).map_err(|e| Error::io(&d, e))?;
        let probe = d.join(format!(".nemascope-write-check-{}", std::process::id()));
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&probe)
            .map_err(|e| Error::io(&d, e))?;
        let _ = std::fs::remove_file(&probe);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_that_collide_or_replace_an_input_are_refused_before_counting() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let input = d.join("in/A01.tif");
        std::fs::create_dir_all(input.parent().unwrap()).unwrap();
        std::fs::write(&input, b"x").unwrap();
        let inputs = [input.clone()];
        let check = |outs: &[(&str, PathBuf)], overwrite| {
            check_outputs(&inputs, outs, overwrite).map_err(|e| e.to_string())
        };
        let e = check(
            &[
                ("--masks", d.join("o/A01.png")),
                ("--overlays", d.join("o/./A01.png")),
            ],
            false,
        )
        .unwrap_err();
        assert!(e.contains("--masks and --overlays"), "{e}");
        let e = check(
            &[("--csv", d.join("r")), ("--json", d.join("in/../r"))],
            false,
        )
        .unwrap_err();
        assert!(e.contains("--csv and --json"), "{e}");
        for overwrite in [false, true] {
            let e = check(&[("--csv", d.join("in/A01.tif"))], overwrite).unwrap_err();
            assert!(e.contains("input image"), "{e}");
        }
        std::fs::write(d.join("old.csv"), b"keep").unwrap();
        assert!(check(&[("--csv", d.join("old.csv"))], false)
            .unwrap_err()
            .contains("exists"));
        check(
            &[
                ("--csv", d.join("old.csv")),
                ("--masks", d.join("m/A01.png")),
            ],
            true,
        )
        .unwrap();
        assert!(d.join("m").is_dir(), "output folders are made up front");
        assert_eq!(
            std::fs::read(d.join("old.csv")).unwrap(),
            b"keep",
            "nothing written yet"
        );
        // A folder that cannot be made (a file is in the way).
        let e = check(&[("--masks", d.join("old.csv/m/A01.png"))], false).unwrap_err();
        assert!(e.contains("old.csv"), "{e}");
        // `--overlays FILE`: said once, before anything is counted.
        let e = check(&[("--overlays", d.join("old.csv/A01.png"))], true).unwrap_err();
        assert!(e.contains("old.csv is a file, not a folder"), "{e}");
        // `--json DIR --overwrite`: a folder is never a file to replace.
        let e = check(&[("--json", d.join("m"))], true).unwrap_err();
        assert!(e.contains("is a folder, not a regular file"), "{e}");
    }

    fn rep(image: &str, sample: &str, counts: Vec<usize>) -> ImageReport {
        ImageReport {
            image: image.into(),
            sample: sample.into(),
            counts,
            objects: vec![],
            ms: 1.25,
        }
    }

    #[test]
    fn samples_sum_their_images_in_first_seen_order() {
        let r = [
            rep("a1", "A", vec![2, 0]),
            rep("b1", "B", vec![1, 1]),
            rep("a2", "A", vec![3, 4]),
        ];
        let s = samples(&r);
        assert_eq!(s.len(), 2);
        assert_eq!(
            (s[0].sample.as_str(), s[0].images, &s[0].counts[..]),
            ("A", 2, &[5, 4][..])
        );
        assert_eq!(
            (s[1].sample.as_str(), s[1].images, &s[1].counts[..]),
            ("B", 1, &[1, 1][..])
        );
    }

    #[test]
    fn csv_quotes_awkward_names() {
        let classes = vec!["worm".to_string(), "egg".into()];
        let out = csv(&classes, &[rep("x, y.png", "S", vec![3, 0])]).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text, "image,sample,worm,egg,ms\n\"x, y.png\",S,3,0,1.2\n");
    }

    #[test]
    fn overlay_draws_the_legend_with_each_class_colour_and_count() {
        let frame = Plane::filled(300, 200, 0.5);
        let legend = [("worm".to_string(), 3), ("egg".to_string(), 12)];
        let img = overlay(&frame, &[], &legend);
        // In the bottom right corner (a 102×56 box): the swatches, in the
        // class colours, one line apart.
        let (x0, y0) = (300 - 102, 200 - 56);
        assert_eq!(img.get_pixel(x0 + 10, y0 + 12).0, COLOURS[0]);
        assert_eq!(img.get_pixel(x0 + 10, y0 + 36).0, COLOURS[1]);
        // White text on the dark box, and the frame untouched beyond it:
        // the top left, where the first tile's count goes, is clear.
        let white = (x0 + 32..300).flat_map(|x| (y0 + 30..y0 + 52).map(move |y| (x, y)));
        assert!(white
            .into_iter()
            .any(|(x, y)| img.get_pixel(x, y).0 == [255; 3]));
        assert_eq!(img.get_pixel(0, 0).0, [128; 3]);
        assert_eq!(img.get_pixel(x0 - 1, 199).0, [128; 3]);
        // Twice the size on a frame over 700 px wide.
        let big = overlay(&Plane::filled(1000, 400, 0.5), &[], &legend);
        assert_eq!(big.get_pixel(1000 - 204 + 20, 400 - 112 + 24).0, COLOURS[0]);
    }

    #[test]
    fn csv_cells_a_spreadsheet_would_run_are_text() {
        let classes = vec!["worm".to_string()];
        let r = [
            rep("=HYPERLINK(\"x\").png", "+plot", vec![1]),
            rep("-1.png", "@A", vec![2]),
            rep("a=b.png", "plot 3", vec![3]),
        ];
        let text = String::from_utf8(csv(&classes, &r).unwrap()).unwrap();
        assert_eq!(
            text,
            "image,sample,worm,ms\n\"'=HYPERLINK(\"\"x\"\").png\",'+plot,1,1.2\n'-1.png,'@A,2,1.2\na=b.png,plot 3,3,1.2\n"
        );
    }

    #[test]
    fn overlay_outlines_only_the_edge() {
        let frame = Plane::filled(5, 5, 0.5);
        let m = Mask::from_fn(5, 5, |x, y| (1..4).contains(&x) && (1..4).contains(&y));
        let img = overlay(&frame, &[m], &[]);
        assert_eq!(img.get_pixel(1, 1).0, [255, 48, 48]);
        assert_eq!(img.get_pixel(2, 2).0, [128, 128, 128]); // inside stays gray
        assert_eq!(img.get_pixel(0, 0).0, [128, 128, 128]);
    }
}
