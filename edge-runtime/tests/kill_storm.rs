//! Fault injection under load: the unit counts a folder of frames and
//! reports them over a serial line while it is killed (SIGKILL) again and
//! again at seeded random moments — while loading its model, counting,
//! journaling, sending — and the host's listener is killed every few
//! rounds too. At the end every frame is journaled exactly once, the host
//! holds every report exactly once in sequence, and each report equals its
//! journal record.
//!
//! CI runs 12 kills; `NEMASCOPE_KILLS=200 cargo test --release -p
//! nemascope-edge --test kill_storm -- --nocapture` is the long run
//! (docs/hardening.md).

use std::collections::BTreeSet;
use std::time::Duration;

mod common;
use common::unit::*;

#[test]
#[cfg_attr(
    target_arch = "aarch64",
    ignore = "qemu-user cannot set a baud rate; the same code runs natively"
)]
fn every_report_arrives_once_through_a_storm_of_kills() {
    let kills: u64 = std::env::var("NEMASCOPE_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let incoming = root.join("incoming");
    let (unit_master, unit_port) = end();
    let (host_master, host_port) = end();
    let _cable = Cable::new(unit_master, host_master);
    let config = linked_config(root, &unit_port, 10, "");
    let (unit_log, host_log) = (root.join("unit.log"), root.join("host.log"));
    let logs = [unit_log.as_path(), host_log.as_path()];
    let out = root.join("reports.jsonl");

    // Load: frames keep arriving through the storm, two per kill.
    let mut expected = BTreeSet::new();
    for i in 0..4 {
        expected.insert(acquire(&incoming, "plot-0", i));
    }
    let mut host = start_host(&host_port, &out, &host_log);
    let mut unit = start_unit(&config, &unit_log);
    let mut s = 0x0dd_ba11_u64;
    let mut random = move |max: u64| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s % max
    };
    for k in 0..kills {
        std::thread::sleep(Duration::from_millis(random(600)));
        drop(unit); // SIGKILL
        for j in 0..2 {
            expected.insert(acquire(
                &incoming,
                &format!("plot-{}", 1 + k / 5),
                100 + 2 * k + j,
            ));
        }
        if k % 4 == 3 {
            drop(host);
            host = start_host(&host_port, &out, &host_log);
        }
        unit = start_unit(&config, &unit_log);
    }
    let n = expected.len();
    wait_for(
        "every report at the host",
        Duration::from_secs(60 + kills),
        || reports(&out).len() >= n,
        &logs,
    );
    std::thread::sleep(Duration::from_millis(300));
    drop(unit);
    drop(host);

    assert_each_frame_once(&out, &root.join("journal"), &expected);
    let starts = std::fs::read_to_string(&unit_log)
        .unwrap()
        .matches("nemascope-edge 0.1.0: model")
        .count();
    eprintln!(
        "{kills} kills ({starts} unit starts), {n} frames: every report once; torn journal tails cut: {}",
        std::fs::read_to_string(&unit_log)
            .unwrap()
            .matches("cut a torn last record")
            .count()
    );
}
