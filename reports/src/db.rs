//! The lab PC's report database: every unit's reports in one SQLite file
//! (`nemascope-edge listen --out lab.sqlite --unit NAME`), several
//! listeners writing to it at once, one per unit.
//!
//! A report is committed before it is acknowledged (WAL journal,
//! `synchronous = FULL`: the commit is on disk when `append` returns), and
//! `(unit, seq)` is the key, so a report can be neither lost nor stored
//! twice. Each listener resumes from its own unit's highest sequence
//! number.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

use crate::{ClassCount, StoredReport};

/// A database that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{path}: {msg}")]
pub struct DbError {
    pub path: PathBuf,
    pub msg: String,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS reports (
    unit TEXT NOT NULL,
    seq INTEGER NOT NULL,
    time_ms INTEGER NOT NULL,
    sample TEXT NOT NULL,
    frame_ms INTEGER NOT NULL,
    warnings INTEGER NOT NULL,
    received_ms INTEGER NOT NULL,
    PRIMARY KEY (unit, seq)
);
CREATE TABLE IF NOT EXISTS counts (
    unit TEXT NOT NULL,
    seq INTEGER NOT NULL,
    position INTEGER NOT NULL,
    class TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (unit, seq, position),
    FOREIGN KEY (unit, seq) REFERENCES reports (unit, seq)
);
CREATE INDEX IF NOT EXISTS reports_by_sample ON reports (sample);
";

/// Whether `path` names a database rather than a JSON-lines file.
pub fn is_database(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("sqlite" | "sqlite3" | "db")
    )
}

/// One unit's view of the database.
pub struct ReportDb {
    path: PathBuf,
    conn: Connection,
    unit: String,
    /// Highest sequence number stored for this unit (0: none).
    pub stored: u64,
}

impl ReportDb {
    /// Opens (or creates) the database for `unit`'s reports.
    pub fn open(path: &Path, unit: &str) -> Result<ReportDb, DbError> {
        let err = db_err(path);
        if unit.is_empty() {
            return Err(DbError {
                path: path.to_path_buf(),
                msg: "a unit needs a name (--unit)".into(),
            });
        }
        // SQLite would wait on a FIFO for ever and fail late on a folder.
        nemascope_core::files::check_regular(path).map_err(|why| DbError {
            path: path.to_path_buf(),
            msg: why,
        })?;
        let conn = Connection::open(path).map_err(&err)?;
        // Several listeners share the file: wait for each other's commits.
        conn.busy_timeout(Duration::from_secs(30)).map_err(&err)?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(&err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(DbError {
                path: path.to_path_buf(),
                msg: format!("cannot use a write-ahead log (journal mode {mode})"),
            });
        }
        conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
            .map_err(&err)?;
        conn.execute_batch(SCHEMA).map_err(&err)?;
        let stored: Option<i64> = conn
            .query_row(
                "SELECT MAX(seq) FROM reports WHERE unit = ?1",
                [unit],
                |r| r.get(0),
            )
            .optional()
            .map_err(&err)?
            .flatten();
        Ok(ReportDb {
            path: path.to_path_buf(),
            conn,
            unit: unit.to_string(),
            stored: stored.unwrap_or(0) as u64,
        })
    }

    /// Commits report `r` (the next in this unit's sequence) and its
    /// counts in one transaction.
    pub fn append(&mut self, r: StoredReport) -> Result<StoredReport, DbError> {
        if r.seq != self.stored + 1 {
            return Err(DbError {
                path: self.path.clone(),
                msg: format!("unit {}: report {} after {}", self.unit, r.seq, self.stored),
            });
        }
        let err = db_err(&self.path);
        let tx = self.conn.transaction().map_err(&err)?;
        tx.execute(
            "INSERT INTO reports (unit, seq, time_ms, sample, frame_ms, warnings, received_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                self.unit,
                r.seq as i64,
                r.time_ms as i64,
                r.sample,
                r.frame_ms,
                r.warnings,
                r.received_ms as i64
            ],
        )
        .map_err(&err)?;
        for (k, c) in r.counts.iter().enumerate() {
            tx.execute(
                "INSERT INTO counts (unit, seq, position, class, count) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![self.unit, r.seq as i64, k as i64, c.class, c.count],
            )
            .map_err(&err)?;
        }
        tx.commit().map_err(&err)?;
        self.stored = r.seq;
        Ok(r)
    }
}

fn db_err(path: &Path) -> impl Fn(rusqlite::Error) -> DbError + '_ {
    move |e| DbError {
        path: path.to_path_buf(),
        msg: e.to_string(),
    }
}

/// A stored report with the unit that sent it.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitReport {
    pub unit: String,
    pub report: StoredReport,
}

/// Every report in the database (of `sample` only, if given), by unit and
/// sequence; opened read-only, beside listeners that keep writing.
pub fn read(path: &Path, sample: Option<&str>) -> Result<Vec<UnitReport>, DbError> {
    let err = db_err(path);
    if !path.exists() {
        return Err(DbError {
            path: path.to_path_buf(),
            msg: "no such database".into(),
        });
    }
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(&err)?;
    conn.busy_timeout(Duration::from_secs(30)).map_err(&err)?;
    let mut q = conn
        .prepare(
            "SELECT unit, seq, time_ms, sample, frame_ms, warnings, received_ms FROM reports
             WHERE ?1 IS NULL OR sample = ?1 ORDER BY unit, seq",
        )
        .map_err(&err)?;
    let mut counts = conn
        .prepare("SELECT class, count FROM counts WHERE unit = ?1 AND seq = ?2 ORDER BY position")
        .map_err(&err)?;
    let rows = q
        .query_map([sample], |r| {
            Ok((
                r.get::<_, String>(0)?,
                StoredReport {
                    seq: r.get::<_, i64>(1)? as u64,
                    time_ms: r.get::<_, i64>(2)? as u64,
                    sample: r.get(3)?,
                    counts: Vec::new(),
                    frame_ms: r.get(4)?,
                    warnings: r.get(5)?,
                    received_ms: r.get::<_, i64>(6)? as u64,
                },
            ))
        })
        .map_err(&err)?;
    let mut out = Vec::new();
    for row in rows {
        let (unit, mut report) = row.map_err(&err)?;
        report.counts = counts
            .query_map(params![unit, report.seq as i64], |r| {
                Ok(ClassCount {
                    class: r.get(0)?,
                    count: r.get(1)?,
                })
            })
            .map_err(&err)?
            .collect::<Result<_, _>>()
            .map_err(&err)?;
        out.push(UnitReport { unit, report });
    }
    Ok(out)
}

/// The reports as a spreadsheet opens them: one row per report, a column
/// per class (in order of first appearance), text cells made safe
/// ([`spreadsheet_text`](crate::spreadsheet_text)).
pub fn csv(reports: &[UnitReport]) -> Vec<u8> {
    use crate::spreadsheet_text;
    let mut classes: Vec<String> = Vec::new();
    for r in reports {
        for c in &r.report.counts {
            if !classes.contains(&c.class) {
                classes.push(c.class.clone());
            }
        }
    }
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut head: Vec<String> = ["unit", "seq", "sample", "time_ms"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    head.extend(classes.iter().map(|c| spreadsheet_text(c)));
    head.extend(["frame_ms", "warnings", "received_ms"].map(String::from));
    let _ = w.write_record(&head);
    for r in reports {
        let s = &r.report;
        let mut row = vec![
            spreadsheet_text(&r.unit),
            s.seq.to_string(),
            spreadsheet_text(&s.sample),
            s.time_ms.to_string(),
        ];
        row.extend(classes.iter().map(|c| s.count(c).to_string()));
        row.extend([
            s.frame_ms.to_string(),
            s.warnings.to_string(),
            s.received_ms.to_string(),
        ]);
        let _ = w.write_record(&row);
    }
    w.into_inner().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(seq: u64, sample: &str, counts: &[(&str, u32)], received_ms: u64) -> StoredReport {
        StoredReport {
            seq,
            time_ms: 1000 + seq,
            sample: sample.into(),
            counts: counts
                .iter()
                .map(|&(class, count)| ClassCount {
                    class: class.into(),
                    count,
                })
                .collect(),
            frame_ms: 40,
            warnings: 0,
            received_ms,
        }
    }

    #[test]
    fn two_units_resume_each_from_their_own_reports() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lab.sqlite");
        let mut a = ReportDb::open(&path, "unit-a").unwrap();
        let mut b = ReportDb::open(&path, "unit-b").unwrap();
        for seq in 1..=3 {
            a.append(report(seq, "plot-1", &[("egg", seq as u32)], 5))
                .unwrap();
        }
        b.append(report(1, "plot-1", &[("worm", 7), ("egg", 2)], 6))
            .unwrap();
        // Out of sequence: refused, nothing stored.
        assert!(b.append(report(3, "plot-1", &[], 6)).is_err());
        drop((a, b));
        assert_eq!(ReportDb::open(&path, "unit-a").unwrap().stored, 3);
        assert_eq!(ReportDb::open(&path, "unit-b").unwrap().stored, 1);
        let all = read(&path, Some("plot-1")).unwrap();
        assert_eq!(all.len(), 4);
        assert_eq!(all[3].unit, "unit-b");
        assert_eq!(all[3].report.count("worm"), 7);
        let text = String::from_utf8(csv(&all)).unwrap();
        assert_eq!(
            text.lines().next().unwrap(),
            "unit,seq,sample,time_ms,egg,worm,frame_ms,warnings,received_ms"
        );
        assert_eq!(
            text.lines().nth(4).unwrap(),
            "unit-b,1,plot-1,1001,2,7,40,0,6"
        );
    }

    #[test]
    fn sample_names_a_spreadsheet_would_run_are_text() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lab.db");
        let mut a = ReportDb::open(&path, "=unit").unwrap();
        a.append(report(1, "=cmd|' /C calc'!A0", &[("egg", 1)], 5))
            .unwrap();
        let text = String::from_utf8(csv(&read(&path, None).unwrap())).unwrap();
        assert!(
            text.contains("\n'=unit,1,'=cmd|' /C calc'!A0,1001,1,"),
            "{text}"
        );
        assert!(is_database(&path) && !is_database(Path::new("r.jsonl")));
    }
}
