//! Any bytes as a file name under a watched folder: the journal key names
//! it exactly (decodes back to the same bytes), so no two names share a
//! key and no name is skipped for not being UTF-8.
#![no_main]
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use nemascope_edge::frames::inputs::path_key;

/// The inverse of `path_key`.
fn unkey(k: &str) -> Vec<u8> {
    let (b, mut out, mut i) = (k.as_bytes(), Vec::new(), 0);
    while i < b.len() {
        match (b[i], b.get(i + 1)) {
            (b'\\', Some(b'\\')) => {
                out.push(b'\\');
                i += 2;
            }
            (b'\\', Some(b'x')) => {
                let hex = std::str::from_utf8(&b[i + 2..i + 4]).expect("two hex digits");
                out.push(u8::from_str_radix(hex, 16).expect("hex"));
                i += 4;
            }
            (b'\\', _) => panic!("a lone backslash in {k:?}"),
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let k = path_key(Path::new(OsStr::from_bytes(data)));
    assert_eq!(unkey(&k), data, "{k:?}");
});
