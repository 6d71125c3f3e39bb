//! The journal's disk fills up under a running unit. The fault is real
//! at the system-call level: the unit runs with a file-size limit
//! (RLIMIT_FSIZE, SIGXFSZ ignored), so its journal append fails with EFBIG
//! part-way through a record, as a write to a full disk fails. The unit
//! must keep the counted result, say so, count nothing new, and once there
//! is room again (the limit is raised on the running process) write it and
//! go on: every frame journaled exactly once, no torn record.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nemascope_core::imageio::save_gray16;
use nemascope_core::synth::{generate, SynthConfig};
use nemascope_edge::journal::Journal;

mod common;
use common::edge;
use common::unit::unit_config;

fn set_fsize(pid: i32, limit: u64) {
    let l = libc::rlimit {
        rlim_cur: limit,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: a valid rlimit for a process this test started.
    let r = unsafe { libc::prlimit(pid, libc::RLIMIT_FSIZE, &l, std::ptr::null_mut()) };
    assert_eq!(r, 0, "prlimit: {}", std::io::Error::last_os_error());
}

#[test]
#[cfg_attr(
    target_arch = "aarch64",
    ignore = "native only: the limit is set on the emulator's process"
)]
fn a_full_disk_pauses_counting_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let incoming = root.join("in/plot-1");
    std::fs::create_dir_all(&incoming).unwrap();
    for i in 0..4 {
        let f = generate(&SynthConfig::default(), 12, i).unwrap();
        save_gray16(&f.image, &incoming.join(format!("f{i}.png"))).unwrap();
    }
    let config = unit_config(
        root,
        "[source]\nkind = \"folder\"\npath = \"in\"\npoll_ms = 20\nsettle_ms = 50\n[journal]\ndir = \"j\"\nmin_free_mb = 1\n",
    );
    // Room for the journal's header and about two records.
    let limit = 420;
    let mut cmd = edge();
    cmd.args(["run", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let l = libc::rlimit {
                rlim_cur: limit,
                rlim_max: libc::RLIM_INFINITY,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &l) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    // The log goes through a pipe: a pipe has no file-size limit.
    let log = Arc::new(Mutex::new(String::new()));
    let (l2, stderr) = (log.clone(), child.stderr.take().unwrap());
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let mut l = l2.lock().unwrap();
            l.push_str(&line);
            l.push('\n');
        }
    });
    let wait = |what: &str| {
        let t0 = Instant::now();
        loop {
            let text = log.lock().unwrap().clone();
            if text.contains(what) {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "no `{what}`:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait("journal: cannot write");
    std::thread::sleep(Duration::from_millis(1500));
    let counted = {
        let l = log.lock().unwrap();
        l.lines().filter(|x| x.starts_with('#')).count()
    };
    assert!(counted < 4, "counting paused while the disk is full");
    // Room again.
    set_fsize(child.id() as i32, libc::RLIM_INFINITY);
    wait("journal: written again");
    wait("#4 ");
    let _ = child.kill();
    let _ = child.wait();

    let text = log.lock().unwrap().clone();
    eprintln!("{text}");
    assert!(
        text.contains("File too large") || text.contains("No space"),
        "{text}"
    );
    let mut j = Journal::open(&root.join("j")).unwrap();
    assert_eq!(
        j.recovery.torn_bytes, 0,
        "the failed append left nothing behind"
    );
    assert_eq!(j.last_seq(), 4);
    let mut sources: Vec<String> = (1..=4).map(|s| j.get(s).unwrap().record.source).collect();
    sources.sort();
    assert_eq!(
        sources,
        [
            "plot-1/f0.png",
            "plot-1/f1.png",
            "plot-1/f2.png",
            "plot-1/f3.png"
        ]
    );
}
