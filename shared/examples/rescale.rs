//! Writes frames as a camera with other pixels would record them, for the
//! pixel-size checks in docs/counting.md: each input's luma resampled by
//! FACTOR (area-averaged when shrinking, bilinear when enlarging: the
//! count path's own `imageio::resample`), as a 16-bit gray PNG in OUT.
//!
//! `cargo run --release -p nemascope-core --example rescale -- FACTOR OUT IMAGES…`

use std::path::{Path, PathBuf};

use nemascope_core::imageio::{load_plane, resample, save_gray16};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [factor, out, inputs @ ..] = args.as_slice() else {
        return Err("usage: rescale FACTOR OUT IMAGES…".into());
    };
    let factor: f64 = factor
        .parse()
        .map_err(|_| format!("FACTOR `{factor}` is not a number"))?;
    if !(factor.is_finite() && factor > 0.0) || inputs.is_empty() {
        return Err("FACTOR must be a positive number, and at least one image given".into());
    }
    std::fs::create_dir_all(out)?;
    for input in inputs {
        let plane = load_plane(Path::new(input))?;
        let side = |n: usize| ((n as f64 * factor).round() as usize).max(1);
        let scaled = resample(&plane, side(plane.width()), side(plane.height()))?;
        let stem = Path::new(input)
            .file_stem()
            .ok_or("an input without a name")?;
        // `<stem>.png` whole (`with_extension` would cut a dotted stem), and
        // never over a file already there (two inputs of one stem).
        let path = PathBuf::from(out).join(format!("{}.png", stem.to_string_lossy()));
        if path.exists() {
            return Err(format!("{} exists already: not overwritten", path.display()).into());
        }
        save_gray16(&scaled, &path)?;
        println!(
            "{} → {} ({}×{})",
            input,
            path.display(),
            scaled.width(),
            scaled.height()
        );
    }
    Ok(())
}
