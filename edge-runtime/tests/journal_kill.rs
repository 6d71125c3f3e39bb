//! The journal under SIGKILL at random moments: a writer process appends as
//! fast as it can and prints each sequence number once it is durable; it is
//! killed at a random time, the journal is reopened, and it must hold every
//! printed record, in order, with no gap or duplicate, and take the next
//! sequence number. (A process kill leaves what reached the kernel; a torn
//! record is still possible when the kill lands inside a write, and is made
//! by hand in the unit tests for every cut position.)
//!
//! The writer is this test binary itself, started again with
//! `NEMASCOPE_JOURNAL_WRITER` set (`harness = false`), so the product CLI
//! carries no test hook.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use nemascope_edge::journal::{Journal, Record};

/// The journal folder a writer child appends to.
const WRITER: &str = "NEMASCOPE_JOURNAL_WRITER";

fn main() {
    match std::env::var_os(WRITER) {
        Some(dir) => writer(std::path::Path::new(&dir)),
        None => {
            no_record_is_lost_or_duplicated_across_kills();
            println!("journal_kill: ok");
        }
    }
}

/// Appends made-up records as fast as it can, printing each sequence
/// number once it is durable, until killed.
fn writer(dir: &std::path::Path) {
    use std::io::Write;
    let mut j = Journal::open(dir).unwrap();
    let mut out = std::io::stdout().lock();
    for i in 0.. {
        let seq = j
            .append(&Record {
                time_ms: i,
                sample: "kill-test".into(),
                source: format!("frame{i}"),
                classes: ["worm", "egg", "cyst"].map(String::from).to_vec(),
                counts: vec![i as u32, (i % 7) as u32, (i % 3) as u32],
                frame_ms: 1,
                model: "none".into(),
                warnings: 0,
                error: None,
                identity: None,
            })
            .unwrap();
        writeln!(out, "{seq}").unwrap();
        out.flush().unwrap();
    }
}

mod common;

/// This test binary, under the emulator when the tests run under one.
fn this_binary() -> Command {
    common::under_runner(&std::env::current_exe().unwrap())
}

fn no_record_is_lost_or_duplicated_across_kills() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("j");
    // A seeded xorshift picks the kill times: runs are repeatable.
    let mut s = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let mut confirmed = 0u64;
    let kills = 25;
    for round in 0..kills {
        let mut child = this_binary()
            .env(WRITER, &journal)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut last = None;
            for line in BufReader::new(stdout).lines() {
                match line {
                    Ok(l) => {
                        let seq = l.trim().parse::<u64>().unwrap();
                        last = Some(seq);
                        let _ = tx.send(seq);
                    }
                    Err(_) => break,
                }
            }
            last
        });
        // Odd rounds kill at a random time after the start (possibly while
        // the journal is being opened and repaired); even rounds first wait
        // for the writer to be appending (slow under an emulator).
        if round % 2 == 0 {
            rx.recv_timeout(Duration::from_secs(30))
                .expect("the writer appends");
        }
        std::thread::sleep(Duration::from_millis(next() % 60));
        child.kill().unwrap();
        child.wait().unwrap();
        let printed = reader.join().unwrap();
        if let Some(p) = printed {
            assert!(p > confirmed, "round {round}: sequence went back");
            confirmed = p;
        }
        let mut j = Journal::open(&journal).unwrap();
        assert!(
            j.last_seq() >= confirmed,
            "round {round}: {} durable records printed, journal holds {}",
            confirmed,
            j.last_seq()
        );
        // Whatever was written beyond the last printed one is whole too.
        confirmed = j.last_seq();
        if confirmed > 0 {
            let all = j.from(1).unwrap();
            assert_eq!(all.len() as u64, confirmed);
            for (i, e) in all.iter().enumerate() {
                assert_eq!(e.seq, i as u64 + 1);
            }
        }
    }
    assert!(confirmed > 0, "the writer never got going");
}
