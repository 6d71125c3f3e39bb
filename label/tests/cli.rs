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

#[test]
fn write_only_rebuilds_the_table_and_tiles_from_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().to_str().unwrap();
    image::GrayImage::from_fn(64, 32, |x, _| image::Luma([x as u8]))
        .save(dir.path().join("a.png"))
        .unwrap();
    let out = dir.path().join("nemascope-labels");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(
        out.join("session.json"),
        r#"{"classes":["egg"],"cut":{"tile":32}}"#,
    )
    .unwrap();
    std::fs::write(
        out.join("decisions.csv"),
        "image,x,y,class,present\na.png,32,0,egg,1\n",
    )
    .unwrap();
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
