//! Counting with the shipped synthetic worm/egg/cyst bundle on fresh
//! synthetic frames (a seed never used in training) with exact counts, and
//! the `count` command's files and refusals.

use std::path::{Path, PathBuf};
use std::process::Command;

use nemascope_core::counting::mean_abs_error;
use nemascope_core::imageio::save_gray16;
use nemascope_core::synth::{generate, SynthConfig, BENCHMARK_PRESET};
use nemascope_count::Model;
use nemascope_count::{count_frame, CountSettings};

mod common;
use common::edge;

fn models() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models")
}

fn synth_model() -> Model {
    Model::open(
        &models().join("synth-worm-egg-cyst"),
        &models().join("nemascope-dev.pub"),
    )
    .unwrap()
}

/// Measured on 24 `mixed` frames of seed 515 with the shipped weakly
/// trained student (since 2026-12-04 the 2× hard-negative teacher's, its
/// object areas fitted to its own masks; docs/models.md): per-frame count
/// error worm 1.58, egg 0.92, cyst 0.04; found / true 71/67, 27/31, 2/3
/// (with the true masks' areas 89/67, 12/31, 2/3; the student before
/// found 166/67, 155/31, 11/3). The tolerances catch it getting worse.
/// Frames this sparse give a model that finds nothing a small error (egg
/// 1.29 a frame), so each class must also count better than counting
/// nothing and find between 0.6 and 1.5 times its objects.
#[test]
#[cfg_attr(
    target_arch = "aarch64",
    ignore = "24 inferences take minutes under qemu; the same code runs natively"
)]
fn counts_fresh_synthetic_frames_within_tolerance() {
    let model = synth_model();
    let s = CountSettings::default();
    let (mut truth, mut found) = ([vec![], vec![], vec![]], [vec![], vec![], vec![]]);
    for i in 0..24 {
        // The benchmark's preset (light and dense debris), which the
        // shipped model was trained on, from a seed it never saw.
        let cfg = SynthConfig::preset(BENCHMARK_PRESET, i, 512, 384, 4.0).unwrap();
        let f = generate(&cfg, 515, i).unwrap();
        let c = count_frame(&model, &f.image, &s).unwrap();
        assert_eq!(c.masks.len(), 3);
        assert_eq!(c.masks[0].width(), f.image.width());
        for k in 0..3 {
            truth[k].push(f.counts[k]);
            found[k].push(c.counts[k]);
        }
        // every object's measurements are in µm and positive
        assert!(c
            .objects
            .iter()
            .all(|o| o.area_um2 >= 600.0 && o.length_um > 0.0 && o.width_um > 0.0));
    }
    let mae: Vec<f64> = (0..3)
        .map(|k| mean_abs_error(&found[k], &truth[k]))
        .collect();
    eprintln!(
        "per-frame count MAE worm/egg/cyst {:.2}/{:.2}/{:.2}; totals true {:?} found {:?}",
        mae[0],
        mae[1],
        mae[2],
        truth
            .iter()
            .map(|t| t.iter().sum::<usize>())
            .collect::<Vec<_>>(),
        found
            .iter()
            .map(|t| t.iter().sum::<usize>())
            .collect::<Vec<_>>()
    );
    assert!(mae[0] <= 2.0, "worm count error {}", mae[0]);
    assert!(mae[1] <= 1.1, "egg count error {}", mae[1]);
    assert!(mae[2] <= 0.25, "cyst count error {}", mae[2]);
    for k in 0..3 {
        let nothing = mean_abs_error(&vec![0; truth[k].len()], &truth[k]);
        assert!(
            mae[k] < nothing,
            "class {k}: {} against {nothing} for none",
            mae[k]
        );
        let (t, f): (usize, usize) = (truth[k].iter().sum(), found[k].iter().sum());
        assert!(
            5 * f >= 3 * t && 2 * f <= 3 * t,
            "class {k}: found {f} of {t}"
        );
    }
}

/// `count` over a folder: the table, CSV and JSON agree with the library,
/// one mask and one overlay per image; existing outputs are never replaced;
/// a broken image is reported, the others are still counted, and the
/// command fails.
#[test]
fn count_command_writes_its_files_and_refuses_to_overwrite() {
    let tmp = tempfile::tempdir().unwrap();
    let sample = tmp.path().join("plot-7");
    std::fs::create_dir(&sample).unwrap();
    let model = synth_model();
    let mut want = Vec::new();
    for i in 0..2 {
        let f = generate(&SynthConfig::default(), 616, i).unwrap();
        let p = sample.join(format!("f{i}.png"));
        save_gray16(&f.image, &p).unwrap();
        // what the library counts on the same (16-bit rounded) file
        let plane = nemascope_core::imageio::load_plane(&p).unwrap();
        want.push(
            count_frame(&model, &plane, &CountSettings::default())
                .unwrap()
                .counts,
        );
    }
    let out = tmp.path().join("out");
    let args = |c: &mut Command| {
        c.arg("count")
            .arg("--model")
            .arg(models().join("synth-worm-egg-cyst"))
            .arg("--public-key")
            .arg(models().join("nemascope-dev.pub"))
            .arg("--masks")
            .arg(out.join("masks"))
            .arg("--overlays")
            .arg(out.join("overlays"))
            .arg("--csv")
            .arg(out.join("counts.csv"))
            .arg("--json")
            .arg(out.join("counts.json"))
            .arg(&sample);
    };
    let mut c = edge();
    args(&mut c);
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let csv = std::fs::read_to_string(out.join("counts.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows[0], "image,sample,worm,egg,cyst,ms");
    for (i, w) in want.iter().enumerate() {
        let cells: Vec<&str> = rows[i + 1].split(',').collect();
        assert!(cells[0].ends_with(&format!("f{i}.png")));
        assert_eq!(cells[1], "plot-7");
        let got: Vec<usize> = cells[2..5].iter().map(|v| v.parse().unwrap()).collect();
        assert_eq!(&got, w);
    }
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("counts.json")).unwrap()).unwrap();
    let total: Vec<usize> = (0..3).map(|k| want[0][k] + want[1][k]).collect();
    assert_eq!(json["samples"][0]["sample"], "plot-7");
    assert_eq!(json["samples"][0]["images"], 2);
    assert_eq!(
        json["samples"][0]["counts"],
        serde_json::to_value(&total).unwrap()
    );
    for d in ["masks", "overlays"] {
        for i in 0..2 {
            assert!(out.join(d).join(format!("f{i}.png")).exists(), "{d} f{i}");
        }
    }
    // the same command again: refused, the first run's files untouched
    let mut c = edge();
    args(&mut c);
    let o = c.output().unwrap();
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("already exists") && e.contains("--overwrite"),
        "{e}"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("counts.csv")).unwrap(),
        csv
    );
    // a broken image beside good ones: reported, the rest counted, failure
    std::fs::write(sample.join("f2.png"), b"not a png").unwrap();
    let o = edge()
        .arg("count")
        .arg("--model")
        .arg(models().join("synth-worm-egg-cyst"))
        .arg("--public-key")
        .arg(models().join("nemascope-dev.pub"))
        .arg("--csv")
        .arg(tmp.path().join("again.csv"))
        .arg(&sample)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("f2.png") && e.contains("1 of 3 images"), "{e}");
    let again = std::fs::read_to_string(tmp.path().join("again.csv")).unwrap();
    assert_eq!(again.lines().count(), 3);
}

/// A frame four times the model's input, counted on the bundle's own tiles
/// and on small ones (the low-memory setting): every pixel is decided by
/// one tile either way, and the two agree closely (they differ only near
/// tile seams).
#[test]
#[cfg_attr(
    target_arch = "aarch64",
    ignore = "dozens of inferences take minutes under qemu; the same code runs natively"
)]
fn small_tiles_count_a_large_frame_like_the_models_own() {
    let cfg = SynthConfig {
        width: 1024,
        height: 768,
        worms: nemascope_core::synth::Occurrence {
            probability: 1.0,
            max: 12,
        },
        negative_fraction: 0.0,
        ..SynthConfig::default()
    };
    let f = generate(&cfg, 4242, 0).unwrap();
    eprintln!("truth {:?}", f.counts);
    let s = CountSettings::default();
    let own = count_frame(&synth_model(), &f.image, &s).unwrap();
    let small = Model::open_tiled(
        &models().join("synth-worm-egg-cyst"),
        &models().join("nemascope-dev.pub"),
        Some([192, 256]),
    )
    .unwrap();
    assert_eq!(small.runner.input_shape, [1, 1, 192, 256]);
    let tiled = count_frame(&small, &f.image, &s).unwrap();
    for k in 0..3 {
        let (a, b) = (own.mask(k), tiled.mask(k));
        let d = nemascope_core::metrics::dice(&a, &b).unwrap();
        eprintln!(
            "class {k}: {} vs {} objects, {} vs {} pixels, Dice {d:.3}",
            own.counts[k],
            tiled.counts[k],
            a.count(),
            b.count()
        );
        if a.count() + b.count() > 0 {
            assert!(d > 0.9, "class {k}: Dice {d}");
        }
        assert!(own.counts[k].abs_diff(tiled.counts[k]) <= 2, "class {k}");
    }
    // Worms are there to be found in this frame.
    assert!(own.counts[0] > 0, "{:?}", own.counts);
}

/// `count` with outputs that would collide, or replace an input: refused
/// before any frame is counted, and nothing is written or replaced.
#[test]
fn colliding_outputs_are_refused_before_anything_is_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let sample = tmp.path().join("plot-7");
    std::fs::create_dir(&sample).unwrap();
    let f = generate(&SynthConfig::default(), 616, 0).unwrap();
    let input = sample.join("f0.png");
    save_gray16(&f.image, &input).unwrap();
    let original = std::fs::read(&input).unwrap();
    let run = |extra: &[&std::ffi::OsStr]| {
        let o = edge()
            .arg("count")
            .arg("--model")
            .arg(models().join("synth-worm-egg-cyst"))
            .args(extra)
            .arg(&sample)
            .output()
            .unwrap();
        assert!(!o.status.success());
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let same = tmp.path().join("out");
    let e = run(&[
        "--masks".as_ref(),
        same.as_os_str(),
        "--overlays".as_ref(),
        same.as_os_str(),
    ]);
    assert!(e.contains("--masks and --overlays"), "{e}");
    let report = tmp.path().join("report");
    let e = run(&[
        "--csv".as_ref(),
        report.as_os_str(),
        "--json".as_ref(),
        report.as_os_str(),
    ]);
    assert!(e.contains("--csv and --json"), "{e}");
    assert!(!report.exists(), "nothing written");
    let e = run(&["--csv".as_ref(), input.as_os_str(), "--overwrite".as_ref()]);
    assert!(e.contains("input image"), "{e}");
    // masks into the input folder would write f0.png over the input
    let e = run(&[
        "--masks".as_ref(),
        sample.as_os_str(),
        "--overwrite".as_ref(),
    ]);
    assert!(e.contains("input image"), "{e}");
    assert_eq!(
        std::fs::read(&input).unwrap(),
        original,
        "the input is intact"
    );
    assert!(
        !e.contains("| f0.png") && !e.contains("ms |"),
        "nothing was counted: {e}"
    );
    // `--json DIR --overwrite` and `--overlays FILE`: refused up front,
    // each cause said once.
    let dir = tmp.path().join("a-folder");
    std::fs::create_dir(&dir).unwrap();
    let e = run(&["--json".as_ref(), dir.as_os_str(), "--overwrite".as_ref()]);
    assert!(
        e.contains("a-folder is a folder, not a regular file"),
        "{e}"
    );
    assert!(!e.contains("ms |"), "nothing was counted: {e}");
    let file = tmp.path().join("a-file");
    std::fs::write(&file, b"keep").unwrap();
    let e = run(&["--overlays".as_ref(), file.as_os_str()]);
    assert!(e.contains("a-file is a file, not a folder"), "{e}");
    assert_eq!(e.matches("a-file").count(), 1, "said once: {e}");
}

/// A FIFO named on the command line, as an image or as the public key, is
/// refused by name; it never hangs `count`.
#[cfg(unix)]
#[test]
fn fifos_on_the_command_line_are_refused_not_waited_on() {
    use std::time::{Duration, Instant};
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("pipe.png");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let run = |args: &[&std::ffi::OsStr]| {
        let mut child = edge()
            .arg("count")
            .arg("--model")
            .arg(models().join("synth-worm-egg-cyst"))
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let start = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if start.elapsed() > Duration::from_secs(60) {
                child.kill().unwrap();
                panic!("count hung on a FIFO: {args:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let o = child.wait_with_output().unwrap();
        assert!(!o.status.success());
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let e = run(&[fifo.as_os_str()]);
    assert!(
        e.contains("pipe.png: is a FIFO (named pipe), not a regular file"),
        "{e}"
    );
    let good = tmp.path().join("f0.png");
    save_gray16(
        &generate(&SynthConfig::default(), 616, 0).unwrap().image,
        &good,
    )
    .unwrap();
    let e = run(&["--public-key".as_ref(), fifo.as_os_str(), good.as_os_str()]);
    assert!(e.contains("pipe.png") && e.contains("FIFO"), "{e}");
}

/// The pixel size comes from the bundle unless given, `count` says which,
/// and a given size far from the bundle's is warned of.
#[test]
fn count_measures_at_the_bundles_scale_unless_told() {
    let tmp = tempfile::tempdir().unwrap();
    let f = generate(&SynthConfig::default(), 616, 1).unwrap();
    let input = tmp.path().join("f1.png");
    save_gray16(&f.image, &input).unwrap();
    let run = |extra: &[&str]| {
        let o = edge()
            .arg("count")
            .arg("--model")
            .arg(models().join("synth-worm-egg-cyst"))
            .args(extra)
            .arg(&input)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        (
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let bundle = synth_model()
        .manifest
        .um_per_px
        .expect("the bundle says its scale");
    let (out, err) = run(&[]);
    assert!(
        out.contains(&format!("{bundle} µm per pixel (the bundle's)")),
        "{out}"
    );
    assert!(!err.contains("warning"), "{err}");
    let (out, err) = run(&["--um-per-px", "1"]);
    assert!(out.contains("1 µm per pixel (given)"), "{out}");
    assert!(
        err.contains("far from") && err.contains("trained at"),
        "{err}"
    );
    let (_, err) = run(&["--um-per-px", &format!("{}", bundle * 1.1)]);
    assert!(!err.contains("far from"), "10 % off is fine: {err}");
}
