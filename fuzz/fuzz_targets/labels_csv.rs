//! Any bytes as a dataset's `labels.csv`: the header is refused with a
//! message or the table is read row by row, every bad row kept as an error
//! naming the file and its line, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use nemascope_core::dataset::generic::{read_rows, LABELS};

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(LABELS), data).unwrap();
    match read_rows(dir.path()) {
        Ok(rows) => {
            assert!(!rows.classes.is_empty());
            for r in rows.rows {
                if let Err(e) = r.sample {
                    assert!(e.to_string().contains(LABELS), "{e}");
                }
            }
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
