//! `nemascope-train labelled`: a folder as nemascope-label writes it
//! (labels.csv with present/absent bits, tiles/) → teacher → student →
//! signed bundle in one command, and the folders it refuses.

use std::path::Path;
use std::process::Command;

/// Writes `n` 32×32 tiles, every other one with a dark ellipse ("egg"),
/// and the labels.csv the labelling page would write for them.
fn labelled_folder(dir: &Path, n: usize, bits: impl Fn(usize) -> bool) {
    std::fs::create_dir_all(dir.join("tiles")).unwrap();
    let mut csv = String::from("image,egg\n");
    for k in 0..n {
        let egg = k % 2 == 0;
        let img = image::GrayImage::from_fn(32, 32, |x, y| {
            let (dx, dy) = (x as f32 - 10.0 - k as f32, (y as f32 - 16.0) / 0.6);
            let inside = egg && dx * dx + dy * dy < 36.0;
            image::Luma([if inside {
                40
            } else {
                200 + (x * 7 + y * 3) as u8 % 20
            }])
        });
        let name = format!("tiles/f.png_x{:04}_y0000.png", 32 * k);
        img.save(dir.join(&name)).unwrap();
        csv.push_str(&format!("{name},{}\n", bits(k) as u8));
    }
    std::fs::write(dir.join("labels.csv"), csv).unwrap();
}

fn labelled(folder: &Path, out: &Path, key: &Path) -> std::process::Output {
    labelled_with(folder, out, key, &[])
}

fn labelled_with(folder: &Path, out: &Path, key: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_nemascope-train"))
        .arg("labelled")
        .arg(folder)
        .args(extra)
        .arg("--key")
        .arg(key)
        .arg("--out")
        .arg(out)
        .args(["--steps", "2", "--base", "2", "--depth", "2"])
        .args([
            "--set",
            "model.base=4",
            "--set",
            "model.depth=2",
            "--set",
            "train.batch=4",
            "--set",
            "train.steps_per_epoch=2",
            "--set",
            "train.classify_epochs=1",
            "--set",
            "train.refine_epochs=1",
            "--set",
            "train.rounds=1",
            "--set",
            "train.threads=1",
            "--set",
            "data.val_fraction=0.25",
        ])
        .output()
        .unwrap()
}

#[test]
fn a_labelled_folder_becomes_a_signed_bundle_and_bad_ones_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k");
    nemascope_bundle::generate_keys(&key).unwrap();
    let key = dir.path().join("k.key");

    let folder = dir.path().join("labels");
    labelled_folder(&folder, 8, |k| k % 2 == 0);
    let out = dir.path().join("run");
    let o = labelled(&folder, &out, &key);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    for stage in ["[1/3]", "[2/3]", "[3/3]"] {
        assert!(err.contains(stage), "{stage} in {err}");
    }
    let manifest = std::fs::read_to_string(out.join("bundle/manifest.json")).unwrap();
    assert!(manifest.contains("\"egg\""), "{manifest}");
    // The checks from the labels alone are in the manifest and printed.
    assert!(
        manifest.contains("val_counted_in_absent_egg")
            || manifest.contains("val_nothing_in_present_egg"),
        "{manifest}"
    );
    // Per image: the eight tiles of f.png (four labelled present, four
    // absent, training and validation alike) in one row.
    let printed = String::from_utf8_lossy(&o.stdout);
    let row = printed
        .lines()
        .find(|l| l.trim_start().starts_with("f.png / egg: "))
        .unwrap_or_else(|| panic!("no per-image row in {printed}"));
    assert!(
        row.contains(" of 4 absent; ") && row.ends_with(" of 4 present"),
        "{row}"
    );
    assert!(out.join("bundle/manifest.sig").exists());
    let cfg = std::fs::read_to_string(out.join("teacher/config.toml")).unwrap();
    for want in [
        "kind = \"generic\"",
        "width = 32",
        "height = 32",
        "crop = 0",
    ] {
        assert!(cfg.contains(want), "{want} in {cfg}");
    }
    // --ship-teacher: no student is distilled, the bundle is the
    // teacher's network (model.base 4, depth 2). --seeds 2: a second
    // teacher from the next seed, and the one the labels prefer is kept,
    // said in the manifest. It trains on flat-field corrected tiles
    // (squares of 64 µm, 16 px at 4 µm), which the bundle says, so that
    // `count` corrects its frames the same way.
    let out_t = dir.path().join("run-teacher");
    let o = labelled_with(
        &folder,
        &out_t,
        &key,
        &[
            "--ship-teacher",
            "--seeds",
            "2",
            "--set",
            "data.flat_field_um=64",
        ],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("no student: the teacher is shipped"), "{err}");
    assert!(!out_t.join("student").exists());
    for (dir, seed) in [("teacher", 7), ("teacher-2", 8)] {
        let cfg = std::fs::read_to_string(out_t.join(dir).join("config.toml")).unwrap();
        assert!(cfg.contains(&format!("\nseed = {seed}\n")), "{dir}: {cfg}");
        assert!(err.contains(&format!("seed {seed}: ")), "{err}");
    }
    let m = std::fs::read_to_string(out_t.join("bundle/manifest.json")).unwrap();
    assert!(m.contains("widths [4, 8, 16]"), "{m}");
    assert!(m.contains("\"teacher_chosen\": \"teacher "), "{m}");
    assert!(
        m.contains("\"normalisation\": \"flat-field-standardise\"")
            && m.contains("\"flat_field_px\": 16"),
        "{m}"
    );
    let o = labelled_with(&folder, &dir.path().join("r0"), &key, &["--seeds", "0"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("--seeds 0"));

    // Again: the bundle is there, nothing is overwritten.
    let o = labelled(&folder, &out, &key);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("already holds a bundle"));

    // Every tile absent: nothing to learn the class from.
    let none = dir.path().join("none");
    labelled_folder(&none, 4, |_| false);
    let o = labelled(&none, &dir.path().join("r2"), &key);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("0 of 4 labelled tiles are marked present"),
        "{err}"
    );

    // Nothing labelled yet.
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::write(empty.join("labels.csv"), "image,egg\n").unwrap();
    let o = labelled(&empty, &dir.path().join("r3"), &key);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("no labelled tiles yet"), "{err}");
}

#[test]
fn corrections_replace_labels_add_tiles_and_leave_the_labels_as_they_were() {
    let dir = tempfile::tempdir().unwrap();
    nemascope_bundle::generate_keys(&dir.path().join("k")).unwrap();
    let key = dir.path().join("k.key");
    let folder = dir.path().join("labels");
    labelled_folder(&folder, 8, |k| k % 2 == 0);
    let before = std::fs::read(folder.join("labels.csv")).unwrap();
    // The review: tile 1 (labelled absent) has the class, tile 8 is new.
    let fix = dir.path().join("fix");
    labelled_folder(&fix, 9, |k| k % 2 == 0 || k == 1);
    std::fs::write(
        fix.join("labels.csv"),
        "image,egg\ntiles/f.png_x0032_y0000.png,1\ntiles/f.png_x0256_y0000.png,1\n",
    )
    .unwrap();
    let out = dir.path().join("run");
    let fix_arg = fix.display().to_string();
    let o = labelled_with(&folder, &out, &key, &["--corrections", &fix_arg]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("0 confirm a label, 1 change one, 1 are new tiles (9 rows"),
        "{err}"
    );
    let table = std::fs::read_to_string(out.join("labels.csv")).unwrap();
    let rows: Vec<&str> = table.lines().collect();
    assert_eq!(rows.len(), 10, "{table}");
    assert!(
        rows[2].ends_with("fix/tiles/f.png_x0032_y0000.png,1"),
        "{table}"
    );
    assert!(
        rows[9].ends_with("fix/tiles/f.png_x0256_y0000.png,1"),
        "{table}"
    );
    assert!(
        rows[1].ends_with("labels/tiles/f.png_x0000_y0000.png,1"),
        "{table}"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("reviewed.txt")).unwrap(),
        "f.png_x0032_y0000.png\nf.png_x0256_y0000.png\n"
    );
    let cfg = std::fs::read_to_string(out.join("teacher/config.toml")).unwrap();
    assert!(
        cfg.contains("reviewed_repeat = 3") && cfg.contains("reviewed.txt"),
        "{cfg}"
    );
    assert_eq!(std::fs::read(folder.join("labels.csv")).unwrap(), before);

    // Corrections cut at another tile size are refused.
    let other = dir.path().join("other");
    std::fs::create_dir_all(other.join("tiles")).unwrap();
    image::GrayImage::new(48, 48)
        .save(other.join("tiles/g.png_x0000_y0000.png"))
        .unwrap();
    std::fs::write(
        other.join("labels.csv"),
        "image,egg\ntiles/g.png_x0000_y0000.png,1\n",
    )
    .unwrap();
    let other_arg = other.display().to_string();
    let o = labelled_with(
        &folder,
        &dir.path().join("r2"),
        &key,
        &["--corrections", &other_arg],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("48×48 px, the labels in") && err.contains("tile size"),
        "{err}"
    );
}
