//! Broken and hostile image files among good ones, through `count` and
//! through the running unit: each is refused by name with the reason, it
//! costs no memory to speak of (a decompression bomb is refused from its
//! header), and the good frames are still counted.

use std::path::Path;

use nemascope_core::imageio::save_gray16;
use nemascope_core::synth::{generate, SynthConfig};
use nemascope_edge::journal::Journal;
use nemascope_edge::link::protocol::warn;

mod common;
use common::edge;
use common::unit::{run_until_done, unit_config};

fn png(img: image::DynamicImage) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// A valid PNG whose header claims `w`×`h` pixels: a few hundred bytes that
/// would decode to gigabytes.
fn bomb(w: u32, h: u32) -> Vec<u8> {
    let mut b = png(image::GrayImage::new(1, 1).into());
    // IHDR data starts after the 8-byte signature, length and type.
    b[16..20].copy_from_slice(&w.to_be_bytes());
    b[20..24].copy_from_slice(&h.to_be_bytes());
    let crc = crc32fast::hash(&b[12..29]);
    b[29..33].copy_from_slice(&crc.to_be_bytes());
    b
}

/// The hostile files (name, bytes, a word the refusal must contain).
fn hostile() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let good = png(image::GrayImage::from_pixel(64, 48, image::Luma([90])).into());
    vec![
        ("zero.png", Vec::new(), "empty"),
        ("truncated.png", good[..good.len() / 2].to_vec(), "decode"),
        ("bomb.png", bomb(60_000, 60_000), "too large"),
        ("text.png", b"GIF89a but not really".to_vec(), "unsupported"),
        (
            "wrong-depth.tif",
            {
                // A 32-bit float TIFF holding NaN: no meaningful intensity.
                let img = image::ImageBuffer::<image::Rgb<f32>, _>::from_pixel(
                    8,
                    8,
                    image::Rgb([f32::NAN, 0.0, 0.0]),
                );
                let mut out = std::io::Cursor::new(Vec::new());
                image::DynamicImage::ImageRgb32F(img)
                    .write_to(&mut out, image::ImageFormat::Tiff)
                    .unwrap();
                out.into_inner()
            },
            "NaN",
        ),
    ]
}

/// Frames smaller than the superpixel window: they once panicked in
/// Felzenszwalb when voting was on, and the unit crash-looped on them.
/// They are frames like any other and are counted.
fn tiny() -> Vec<(String, Vec<u8>)> {
    [(1, 1), (2, 1), (1, 2), (3, 3), (5, 4), (8, 8)]
        .into_iter()
        .map(|(w, h)| {
            let img =
                image::GrayImage::from_fn(w, h, |x, y| image::Luma([(x * 40 + y * 90) as u8]));
            (format!("tiny-{w}x{h}.png"), png(img.into()))
        })
        .collect()
}

/// The hostile, tiny and one good frame, written into `frames`.
fn write_frames(frames: &Path) {
    std::fs::create_dir_all(frames).unwrap();
    for (name, bytes, _) in hostile() {
        std::fs::write(frames.join(name), bytes).unwrap();
    }
    for (name, bytes) in tiny() {
        std::fs::write(frames.join(name), bytes).unwrap();
    }
    let f = generate(&SynthConfig::default(), 8, 0).unwrap();
    save_gray16(&f.image, &frames.join("good.png")).unwrap();
}

#[test]
fn count_refuses_each_by_name_and_counts_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let frames = dir.path().join("plot-9");
    write_frames(&frames);
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
    let csv = dir.path().join("counts.csv");
    let out = edge()
        .arg("count")
        .arg(&frames)
        .arg("--model")
        .arg(models.join("synth-worm-egg-cyst"))
        .arg("--csv")
        .arg(&csv)
        .arg("--vote")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a refused file makes the run fail");
    for (name, _, why) in hostile() {
        let line = err
            .lines()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("{name} not named:\n{err}"));
        assert!(line.contains(why), "{name}: `{why}` not in `{line}`");
    }
    eprintln!("{err}");
    assert!(!err.contains("panicked"), "{err}");
    let table = std::fs::read_to_string(&csv).unwrap();
    assert!(table.contains("good.png"), "{table}");
    for (name, _) in tiny() {
        assert!(table.contains(&name), "{name} counted:\n{table}");
    }
}

#[test]
#[cfg_attr(
    target_arch = "aarch64",
    ignore = "the same files as the count test; the unit's path runs natively"
)]
fn the_unit_logs_each_and_keeps_counting() {
    let dir = tempfile::tempdir().unwrap();
    write_frames(&dir.path().join("in/plot-9"));
    // Voting on: the tiny frames go through Felzenszwalb.
    let config = unit_config(
        dir.path(),
        "[count]\nvote = true\n[source]\nkind = \"files\"\npaths = [\"in/plot-9\"]\n[journal]\ndir = \"j\"\nmin_free_mb = 1\n",
    );
    let log = run_until_done(&config);
    assert!(!log.contains("panicked"), "{log}");
    for (name, _, why) in hostile() {
        let line = log
            .lines()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("{name} not named:\n{log}"));
        assert!(line.contains("not counted") && line.contains(why), "{line}");
    }
    // Every frame is journaled once: the refused ones as refused, with why.
    let frames = hostile().len() + tiny().len() + 1;
    let records = |dir: &Path| {
        let mut j = Journal::open(&dir.join("j")).unwrap();
        (1..=j.last_seq())
            .map(|s| j.get(s).unwrap().record)
            .collect::<Vec<_>>()
    };
    let first = records(dir.path());
    assert_eq!(first.len(), frames, "{log}");
    for (name, _, why) in hostile() {
        let r = first.iter().find(|r| r.source.ends_with(name)).unwrap();
        assert_eq!(r.warnings & warn::NOT_COUNTED, warn::NOT_COUNTED, "{r:?}");
        assert!(r.error.as_ref().is_some_and(|e| e.contains(why)), "{r:?}");
        assert_eq!(r.counts, [0; 3]);
    }
    for (name, _) in tiny() {
        let r = first.iter().find(|r| r.source.ends_with(&name)).unwrap();
        assert_eq!(
            (r.error.as_ref(), r.warnings & warn::NOT_COUNTED),
            (None, 0),
            "{r:?}"
        );
    }
    // A restart tries none of them again.
    let log = run_until_done(&config);
    assert_eq!(records(dir.path()), first, "{log}");
}
