//! The reports a lab keeps: what `count` found per image and sample
//! ([`counts`]), what a unit reported for a frame as stored on the lab PC
//! ([`StoredReport`]), the lab's SQLite database of every unit's reports
//! ([`db`]), and text cells made safe for a spreadsheet.
//! Shared by the listener (`nemascope-edge listen`, which writes) and the
//! review page (`nemascope-label review`, which reads); no tract, no
//! libtorch.

use serde::{Deserialize, Serialize};

pub mod counts;
pub mod db;

pub use db::{DbError, ReportDb};

/// One stored report: the unit's record and when the host got it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredReport {
    pub seq: u64,
    pub time_ms: u64,
    pub sample: String,
    /// Each class the unit's model counts, with its count, in its order.
    pub counts: Vec<ClassCount>,
    pub frame_ms: u32,
    pub warnings: u8,
    pub received_ms: u64,
}

/// One class's count in a stored report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassCount {
    pub class: String,
    pub count: u32,
}

impl StoredReport {
    /// The count of `class` (0 when the unit's model does not count it).
    pub fn count(&self, class: &str) -> u32 {
        self.counts
            .iter()
            .find(|c| c.class == class)
            .map_or(0, |c| c.count)
    }
}

/// A text cell a spreadsheet shows as text: one starting with `=`, `+`,
/// `-`, `@`, a tab or a carriage return would be taken as a formula (a
/// sample named `=HYPERLINK(…)` runs when the lab opens the file), so it
/// gets a leading `'`, as OWASP advises for CSV files.
pub fn spreadsheet_text(s: &str) -> String {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_string()
    }
}
