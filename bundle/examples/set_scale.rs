//! Re-signs a bundle with the pixel size its model was trained at
//! (`um_per_px`, for bundles made before the manifest had it):
//!
//! ```sh
//! cargo run -p nemascope-bundle --example set_scale -- \
//!     BUNDLE OLD.pub NEW.key UM_PER_PX OUT
//! ```
//!
//! The bundle must verify under `OLD.pub`; the model is copied unchanged
//! and the amended manifest is signed with `NEW.key` into `OUT`.

use std::path::PathBuf;

use nemascope_bundle::{read_public_key, read_signing_key, Bundle};

fn main() -> Result<(), String> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let [bundle, old, new, um, out] = a.as_slice() else {
        return Err("usage: set_scale BUNDLE OLD.pub NEW.key UM_PER_PX OUT".into());
    };
    let um: f32 = um
        .parse()
        .map_err(|_| format!("UM_PER_PX {um}: a number"))?;
    let old = read_public_key(&PathBuf::from(old)).map_err(|e| e.to_string())?;
    let new = read_signing_key(&PathBuf::from(new)).map_err(|e| e.to_string())?;
    let b = Bundle::open(&PathBuf::from(bundle), &old).map_err(|e| e.to_string())?;
    let mut m = b.manifest;
    m.um_per_px = Some(um);
    Bundle::write(&PathBuf::from(out), m, &b.model, &new).map_err(|e| e.to_string())?;
    println!("{out}: {} at {um} µm per pixel", bundle);
    Ok(())
}
