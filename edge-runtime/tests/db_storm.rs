//! The lab database under the kill storm, with two units at once: each
//! unit counts frames and reports them over its own serial line to its own
//! listener, and both listeners write to one SQLite file; units and
//! listeners are killed (SIGKILL) at seeded random moments. At the end each
//! unit's reports are in the database exactly once, in sequence, each
//! equal to its journal record.
//!
//! CI runs 8 kills; `NEMASCOPE_KILLS=100` for a long run.

use std::collections::BTreeSet;
use std::time::Duration;

mod common;
use common::unit::*;

#[test]
#[cfg_attr(
    target_arch = "aarch64",
    ignore = "qemu-user cannot set a baud rate; the same code runs natively"
)]
fn two_units_report_into_one_database_once_each_through_kills() {
    let kills: u64 = std::env::var("NEMASCOPE_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("lab.sqlite");
    struct Side {
        root: std::path::PathBuf,
        name: &'static str,
        _cable: Cable,
        host_port: std::path::PathBuf,
        config: std::path::PathBuf,
        expected: BTreeSet<String>,
        unit: Option<Proc>,
        host: Option<Proc>,
    }
    let mut sides: Vec<Side> = ["unit-a", "unit-b"]
        .into_iter()
        .map(|name| {
            let root = dir.path().join(name);
            std::fs::create_dir_all(&root).unwrap();
            let (unit_master, unit_port) = end();
            let (host_master, host_port) = end();
            let config = linked_config(&root, &unit_port, 10, "");
            Side {
                _cable: Cable::new(unit_master, host_master),
                root,
                name,
                host_port,
                config,
                expected: BTreeSet::new(),
                unit: None,
                host: None,
            }
        })
        .collect();
    let log = |s: &Side, who: &str| s.root.join(format!("{who}.log"));
    for s in &mut sides {
        for i in 0..3 {
            s.expected.insert(acquire(
                &s.root.join("incoming"),
                &format!("{}-plot", s.name),
                i,
            ));
        }
        s.host = Some(start_db_host(&s.host_port, &db, s.name, &log(s, "host")));
        s.unit = Some(start_unit(&s.config, &log(s, "unit")));
    }
    let mut x = 0x5eed_u64;
    let mut random = move |max: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % max
    };
    for k in 0..kills {
        std::thread::sleep(Duration::from_millis(random(600)));
        let s = &mut sides[(k % 2) as usize];
        s.unit = None; // SIGKILL
        s.expected.insert(acquire(
            &s.root.join("incoming"),
            &format!("{}-plot", s.name),
            100 + k,
        ));
        if k % 3 == 2 {
            s.host = None;
            s.host = Some(start_db_host(&s.host_port, &db, s.name, &log(s, "host")));
        }
        s.unit = Some(start_unit(&s.config, &log(s, "unit")));
    }
    for s in &sides {
        let logs = [log(s, "unit"), log(s, "host")];
        let n = s.expected.len();
        wait_for(
            &format!("every report of {} in the database", s.name),
            Duration::from_secs(60 + kills),
            || unit_reports(&db, s.name).len() >= n,
            &[logs[0].as_path(), logs[1].as_path()],
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    for s in &mut sides {
        s.unit = None;
        s.host = None;
    }
    for s in &sides {
        assert_reports_are_the_journal(
            unit_reports(&db, s.name),
            &s.root.join("journal"),
            &s.expected,
        );
    }
    eprintln!(
        "{kills} kills over two units, {} and {} frames: every report once in one database",
        sides[0].expected.len(),
        sides[1].expected.len()
    );
}
