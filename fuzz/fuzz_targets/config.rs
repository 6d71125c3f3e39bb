//! Any text as the unit's config: parsed and checked, or refused with a
//! message, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use nemascope_edge::config::Config;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(msg) = Config::parse(text) {
            assert!(!msg.is_empty());
        }
    }
});
