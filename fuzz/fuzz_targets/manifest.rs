//! Any bytes as a bundle manifest: parsed and validated, or refused,
//! never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use nemascope_bundle::Manifest;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = serde_json::from_slice::<Manifest>(data) {
        let _ = m.validate();
    }
});
