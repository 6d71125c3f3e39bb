//! What opening a long-lived journal costs: time and memory for a journal
//! of N records, keeping every source (as a `files` list would) or none
//! (a watched folder that was emptied).
//!
//! ```sh
//! cargo run --release -p nemascope-edge --example journal_scale -- 500000 /dev/shm/j
//! ```
//! (on tmpfs: each append is fsynced, which takes hours on a disk for this
//! many records).

use std::time::Instant;

use nemascope_edge::journal::{Journal, Record};

fn anon_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let dir = std::path::PathBuf::from(args.next().unwrap_or("/dev/shm/nemascope-journal".into()));
    let _ = std::fs::remove_dir_all(&dir);
    {
        let mut j = Journal::open(&dir).expect("journal");
        for i in 0..n {
            j.append(&Record {
                time_ms: 1_764_000_000_000 + i * 10_000,
                sample: format!("plot-{}", i / 200),
                source: format!("plot-{}/frame{:06}.png", i / 200, i % 200),
                classes: ["worm", "egg", "cyst"].map(String::from).to_vec(),
                counts: vec![(i % 7) as u32, (i % 13) as u32, (i % 3) as u32],
                frame_ms: 64,
                model: "bbbc010-worm-b4d4".into(),
                warnings: 0,
                error: None,
                identity: None,
            })
            .expect("append");
        }
    }
    let bytes = std::fs::metadata(dir.join("journal.bin")).map_or(0, |m| m.len());
    for (what, keep_all) in [("no sources kept", false), ("every source kept", true)] {
        let before = anon_kib();
        let t = Instant::now();
        let j = Journal::open_keeping(&dir, &mut |_| keep_all).expect("open");
        let ms = t.elapsed().as_secs_f64() * 1e3;
        let after = anon_kib();
        println!(
            "{n} records ({:.1} MB): open {ms:.0} ms, {what}: +{:.1} MiB resident ({} sources)",
            bytes as f64 / 1e6,
            after.saturating_sub(before) as f64 / 1024.0,
            j.sources().len()
        );
        drop(j);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
