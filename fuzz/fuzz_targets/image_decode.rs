//! Any bytes as an image file: decoded within the limits or refused, never
//! a panic or an allocation past the limits.
#![no_main]
use libfuzzer_sys::fuzz_target;
use nemascope_core::imageio::{decode_pixels, LoadLimits, Luma};

fuzz_target!(|data: &[u8]| {
    let limits = LoadLimits {
        max_side: 4096,
        max_alloc: 64 << 20,
    };
    if let Ok(p) = decode_pixels(data, std::path::Path::new("fuzz"), limits) {
        assert!(p.width() > 0 && p.height() > 0);
        let mut row = vec![0f32; p.width()];
        p.row_into(p.height() - 1, &mut row);
    }
});
