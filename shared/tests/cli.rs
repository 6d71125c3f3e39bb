//! The `nemascope-data` command, run as a user would.

use std::path::{Path, PathBuf};
use std::process::Command;

use nemascope_core::dataset::generic;
use nemascope_core::imageio::load_mask;
use nemascope_core::objects::label_components;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_nemascope-data"))
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("nemascope-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn synth(dir: &Path, seed: &str) {
    let out = bin()
        .args([
            "synth", "--count", "6", "--seed", seed, "--width", "256", "--height", "192", "--out",
        ])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn synth_writes_a_generic_dataset_with_exact_truth_and_is_reproducible() {
    let (a, b) = (tmp("a"), tmp("b"));
    synth(&a, "5");
    synth(&b, "5");
    let ds = generic::read(&a).unwrap();
    assert_eq!(ds.classes, vec!["worm", "egg", "cyst"]);
    assert_eq!(ds.samples.len(), 6);
    for s in &ds.samples {
        for k in 0..3 {
            let m = load_mask(s.masks[k].as_ref().unwrap()).unwrap();
            let n = s.counts[k].unwrap();
            assert_eq!(m.count() > 0, n > 0);
            if k > 0 {
                // Eggs and cysts never touch: one component each.
                assert_eq!(label_components(&m).count, n);
            }
        }
        let rel = s.image.strip_prefix(&a).unwrap();
        assert_eq!(
            std::fs::read(&s.image).unwrap(),
            std::fs::read(b.join(rel)).unwrap()
        );
    }
    std::fs::remove_dir_all(&a).unwrap();
    std::fs::remove_dir_all(&b).unwrap();
}

#[test]
fn bad_image_gives_a_clear_error_and_a_failing_exit() {
    let d = tmp("bad");
    std::fs::create_dir_all(&d).unwrap();
    let f = d.join("empty.png");
    std::fs::write(&f, b"").unwrap();
    let out = bin().arg("superpixels").arg(&f).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("empty.png") && err.contains("empty file"),
        "{err}"
    );
    let out = bin()
        .args(["superpixels", "--resize", "0x3"])
        .arg(&f)
        .output()
        .unwrap();
    assert!(!out.status.success());
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn superpixels_writes_a_label_map() {
    let d = tmp("sp");
    synth(&d, "9");
    let img = d.join("images/synth_9_00000.png");
    let out = bin()
        .arg("superpixels")
        .arg(&img)
        .arg("--out")
        .arg(d.join("l.npy"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let n: usize = stdout.split_whitespace().next().unwrap().parse().unwrap();
    assert!(n > 1);
    let bytes = std::fs::read(d.join("l.npy")).unwrap();
    assert_eq!(&bytes[..6], b"\x93NUMPY");
    assert!(bytes.len() > 256 * 192 * 4);
    std::fs::remove_dir_all(&d).unwrap();
}
