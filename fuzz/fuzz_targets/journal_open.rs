//! Any bytes as the journal file found at start-up (a damaged card): the
//! journal opens (cutting or setting aside what is damaged) or refuses
//! with an error, never panics, and what it keeps reads back.
#![no_main]
use libfuzzer_sys::fuzz_target;
use nemascope_edge::journal::Journal;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("journal.bin"), data).unwrap();
    if let Ok(mut j) = Journal::open(dir.path()) {
        for s in 1..=j.last_seq() {
            let _ = j.get(s);
        }
    }
});
