//! The command line: bad input ends with a message and exit status 2.

use std::process::Command;

fn label(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_nemascope-label"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_folders_and_sizes_are_refused_with_a_message() {
    let empty = tempfile::tempdir().unwrap();
    let p = empty.path().to_str().unwrap();
    let (code, err) = label(&[p, "--classes", "egg", "--port", "0"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no images in"), "{err}");

    let (code, err) = label(&["/nonexistent/folder", "--classes", "egg"]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot read the image folder"), "{err}");

    image::GrayImage::new(100, 80)
        .save(empty.path().join("a.png"))
        .unwrap();
    let (code, err) = label(&[p, "--classes", "egg", "--tile", "128", "--port", "0"]);
    assert_eq!(code, 2);
    assert!(err.contains("larger than a.png (100×80)"), "{err}");
    let (code, err) = label(&[p, "--tile", "64", "--port", "0"]);
    assert_eq!(code, 2);
    assert!(err.contains("name the classes"), "{err}");
}

/// A folder holding `a.png` (`w`×`h`, a gray ramp along x) and a labelling
/// of it for egg at `w / 2` px tiles whose record is `decisions`; returns
/// the labelling's folder.
fn recorded(dir: &std::path::Path, w: u32, h: u32, decisions: &str) -> std::path::PathBuf {
    image::GrayImage::from_fn(w, h, |x, _| image::Luma([x as u8]))
        .save(dir.join("a.png"))
        .unwrap();
    let out = dir.join("nemascope-labels");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(
        out.join("session.json"),
        format!(r#"{{"classes":["egg"],"cut":{{"tile":{}}}}}"#, w / 2),
    )
    .unwrap();
    std::fs::write(
        out.join("decisions.csv"),
        format!("image,x,y,class,present\n{decisions}"),
    )
    .unwrap();
    out
}

#[test]
fn write_only_rebuilds_the_table_and_tiles_from_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().to_str().unwrap();
    let out = recorded(dir.path(), 64, 32, "a.png,32,0,egg,1\n");
    let (code, err) = label(&[p, "--write-only"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read_to_string(out.join("labels.csv")).unwrap(),
        "image,egg\ntiles/a.png_x0032_y0000.png,1\n"
    );
    let tile = image::open(out.join("tiles/a.png_x0032_y0000.png"))
        .unwrap()
        .to_luma8();
    assert_eq!(tile.get_pixel(0, 0).0[0], 32);
}

#[test]
fn a_finer_labelling_starts_with_the_coarse_absent_tiles_decided() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().to_str().unwrap();
    // Coarse: 64 px tiles at x 0 (egg absent) and x 64 (egg present).
    let coarse = recorded(dir.path(), 128, 64, "a.png,0,0,egg,0\na.png,64,0,egg,1\n");
    std::fs::rename(&coarse, dir.path().join("coarse")).unwrap();
    let coarse = dir.path().join("coarse");
    let c = coarse.to_str().unwrap();
    let fine = dir.path().join("fine");
    let f = fine.to_str().unwrap();
    let args = |tile: &str| {
        [
            p,
            "--classes",
            "egg",
            "--tile",
            tile,
            "--out",
            f,
            "--finer-of",
            c,
            "--write-only",
        ]
        .map(str::to_string)
    };
    let run = |a: &[String]| label(&a.iter().map(String::as_str).collect::<Vec<_>>());

    // Not finer than the coarse labelling: refused, nothing written.
    let (code, err) = run(&args("64"));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not coarser than"), "{err}");
    assert!(!fine.exists(), "a refused start leaves no folder");

    // 32 px: the four tiles of the absent coarse tile are decided, the
    // four of the present one are left to the labeller.
    let (code, err) = run(&args("32"));
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("4 decisions taken as absent") && err.contains("4 left to decide"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(fine.join("labels.csv")).unwrap(),
        "image,egg\ntiles/a.png_x0000_y0000.png,0\ntiles/a.png_x0032_y0000.png,0\n\
         tiles/a.png_x0000_y0032.png,0\ntiles/a.png_x0032_y0032.png,0\n"
    );
    assert!(fine.join("tiles/a.png_x0032_y0032.png").exists());
    // Again on the resumed session: nothing new is added.
    let (code, err) = run(&args("32"));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("0 decisions taken as absent"), "{err}");
    assert_eq!(
        std::fs::read_to_string(fine.join("decisions.csv"))
            .unwrap()
            .lines()
            .count(),
        1 + 4
    );

    // A folder that is no labelling is named.
    let (code, err) = label(&[
        p,
        "--classes",
        "egg",
        "--tile",
        "32",
        "--out",
        f,
        "--finer-of",
        p,
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not a labelling folder"), "{err}");
}
