//! `preview` renders the unit's screens to PNG at the panel's size (times
//! the scale), refuses to replace a file, and names bad options.

mod common;
use common::edge;

#[test]
fn preview_renders_both_panels_and_refuses_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    let color = tmp.path().join("color.png");
    let o = edge()
        .args(["preview", "--out"])
        .arg(&color)
        .args(["--counts", "4,0,1", "--warnings", "2"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let img = image::open(&color).unwrap();
    assert_eq!((img.width(), img.height()), (480, 640));
    let mono = tmp.path().join("mono.png");
    let o = edge()
        .args(["preview", "--panel", "mono", "--scale", "1", "--out"])
        .arg(&mono)
        .output()
        .unwrap();
    assert!(o.status.success());
    let img = image::open(&mono).unwrap();
    assert_eq!((img.width(), img.height()), (128, 64));
    for (args, want) in [
        (vec!["--counts", "1,2"], "3 classes but 2 counts"),
        (vec!["--counts", "x,1,2"], "expected numbers"),
        (vec!["--link", "maybe"], "expected up, down, off"),
        (vec!["--panel", "oled"], "expected color or mono"),
    ] {
        let o = edge()
            .args(["preview", "--out"])
            .arg(tmp.path().join("bad.png"))
            .args(&args)
            .output()
            .unwrap();
        assert!(!o.status.success());
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(e.contains(want), "{args:?}: {e}");
    }
    // an existing file is kept
    let before = std::fs::read(&color).unwrap();
    let o = edge()
        .args(["preview", "--out"])
        .arg(&color)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert_eq!(std::fs::read(&color).unwrap(), before);
}
