//! The unit and its serial peer as processes, for the end-to-end tests:
//! synthetic frames written as acquisition software would, a null-modem
//! cable made of two pseudo-terminals, the unit's config, and helpers to
//! start, kill and wait on `run` and `listen`.
#![allow(dead_code)] // each test file uses some of these

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nemascope_core::imageio::save_gray16;
use nemascope_core::synth::{generate, SynthConfig};
use nemascope_edge::link::listener::StoredReport;
use serialport::{SerialPort, TTYPort};

use super::edge;

/// Writes synthetic frame `i` into `dir/sample/`, as acquisition software
/// would: under a hidden name, then renamed.
pub fn acquire(dir: &Path, sample: &str, i: u64) -> String {
    let d = dir.join(sample);
    std::fs::create_dir_all(&d).unwrap();
    let f = generate(&SynthConfig::default(), 77, i).unwrap();
    let tmp = d.join(format!(".f{i:03}.png"));
    save_gray16(&f.image, &tmp).unwrap();
    std::fs::rename(&tmp, d.join(format!("f{i:03}.png"))).unwrap();
    format!("{sample}/f{i:03}.png")
}

/// A null-modem cable between two pty masters.
pub struct Cable {
    pub cut: Arc<AtomicBool>,
    pub noise: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Cable {
    pub fn new(mut a: TTYPort, mut b: TTYPort) -> Cable {
        let cut = Arc::new(AtomicBool::new(false));
        let noise = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        a.set_timeout(Duration::from_millis(2)).unwrap();
        b.set_timeout(Duration::from_millis(2)).unwrap();
        let (c, n, s) = (cut.clone(), noise.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut junk = 0x9e37_79b9u32;
            while !s.load(Ordering::Relaxed) {
                for a_to_b in [true, false] {
                    let (from, to) = if a_to_b {
                        (&mut a, &mut b)
                    } else {
                        (&mut b, &mut a)
                    };
                    let bytes = match from.read(&mut buf) {
                        Ok(n) => buf[..n].to_vec(),
                        // No one on that end right now (a program restarting).
                        Err(_) => Vec::new(),
                    };
                    if c.load(Ordering::Relaxed) {
                        continue; // unplugged: lost
                    }
                    let mut out = bytes;
                    if n.load(Ordering::Relaxed) {
                        for _ in 0..8 {
                            junk ^= junk << 13;
                            junk ^= junk >> 17;
                            junk ^= junk << 5;
                            out.push(junk as u8);
                        }
                    }
                    if !out.is_empty() {
                        let _ = to.write_all(&out);
                    }
                }
                if c.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        });
        Cable {
            cut,
            noise,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Cable {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One end of the cable: the master is kept, the slave's path is where a
/// program opens it.
pub fn end() -> (TTYPort, PathBuf) {
    let (master, slave) = TTYPort::pair().expect("a pseudo-terminal pair");
    let path = PathBuf::from(slave.name().expect("the slave's path"));
    drop(slave);
    (master, path)
}

/// The end state every run of the unit must reach: the host's report
/// file (`out`) holds reports 1…n exactly once and in order, the journal
/// in `journal_dir` holds n records, each report equals its record, and
/// the records' sources are exactly the frames acquired.
pub fn assert_each_frame_once(
    out: &Path,
    journal_dir: &Path,
    expected: &std::collections::BTreeSet<String>,
) {
    assert_reports_are_the_journal(reports(out), journal_dir, expected);
}

/// `got` holds every journaled frame's report once, in order, each equal
/// to its journal record, and the journal every frame in `expected` once.
pub fn assert_reports_are_the_journal(
    got: Vec<StoredReport>,
    journal_dir: &Path,
    expected: &std::collections::BTreeSet<String>,
) {
    let n = expected.len() as u64;
    assert_eq!(
        got.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (1..=n).collect::<Vec<_>>(),
        "each report once, in order"
    );
    let mut journal = nemascope_edge::journal::Journal::open(journal_dir).unwrap();
    assert_eq!(journal.last_seq(), n, "no frame journaled twice");
    let mut sources = std::collections::BTreeSet::new();
    for r in &got {
        let e = journal.get(r.seq).unwrap().record;
        let stored: Vec<(&str, u32)> = r
            .counts
            .iter()
            .map(|c| (c.class.as_str(), c.count))
            .collect();
        assert_eq!(
            (
                e.sample.as_str(),
                e.class_counts().collect::<Vec<_>>(),
                e.frame_ms
            ),
            (r.sample.as_str(), stored, r.frame_ms)
        );
        sources.insert(e.source);
    }
    assert_eq!(&sources, expected, "every frame journaled");
}

/// The reports `unit` stored in the lab database at `db` (none yet: empty).
pub fn unit_reports(db: &Path, unit: &str) -> Vec<StoredReport> {
    nemascope_edge::link::db::read(db, None)
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.unit == unit)
        .map(|r| r.report)
        .collect()
}

pub fn reports(path: &Path) -> Vec<StoredReport> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Writes `dir/edge.toml`: the shipped synthetic model and key, then `rest`
/// (source, journal and the other tables).
pub fn unit_config(dir: &Path, rest: &str) -> PathBuf {
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
    let config = dir.join("edge.toml");
    let model = format!(
        "[model]\nbundle = \"{}\"\npublic_key = \"{}\"\n",
        models.join("synth-worm-egg-cyst").display(),
        models.join("nemascope-dev.pub").display(),
    );
    std::fs::write(&config, model + rest).unwrap();
    config
}

/// [`unit_config`] for a unit that watches `dir/incoming` (polled every
/// `poll_ms`), journals into `dir/journal` and reports over `port` with a
/// short window and one-second resend, heartbeat and reopen; then `rest`.
pub fn linked_config(dir: &Path, port: &Path, poll_ms: u64, rest: &str) -> PathBuf {
    unit_config(
        dir,
        &format!(
            "[source]\nkind = \"folder\"\npath = \"incoming\"\npoll_ms = {poll_ms}\nsettle_ms = {}\n\
             [journal]\ndir = \"journal\"\nmin_free_mb = 1\n\
             [serial]\nport = \"{}\"\nwindow = 4\nresend_s = 1\nheartbeat_s = 1\nreopen_s = 1\n{rest}",
            3 * poll_ms,
            port.display()
        ),
    )
}

/// `run --until-done`, which must succeed; its log.
pub fn run_until_done(config: &Path) -> String {
    let out = edge()
        .args(["run", "--until-done", "--config"])
        .arg(config)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{log}");
    log
}

pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `nemascope-edge ARGS…` in the background, its log appended to `log`.
pub fn spawn(args: &[&std::ffi::OsStr], log: &Path) -> Proc {
    spawn_with(args, &[], log)
}

/// [`spawn`] with `env` added to the environment.
pub fn spawn_with(args: &[&std::ffi::OsStr], env: &[(&str, &str)], log: &Path) -> Proc {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Proc(
        edge()
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

pub fn start_unit(config: &Path, log: &Path) -> Proc {
    start_unit_with(config, &[], log)
}

/// [`start_unit`] with `env` added to the unit's environment.
pub fn start_unit_with(config: &Path, env: &[(&str, &str)], log: &Path) -> Proc {
    spawn_with(
        &["run".as_ref(), "--config".as_ref(), config.as_os_str()],
        env,
        log,
    )
}

/// A listener storing into the lab database as `unit`.
pub fn start_db_host(port: &Path, db: &Path, unit: &str, log: &Path) -> Proc {
    spawn(
        &[
            "listen".as_ref(),
            "--port".as_ref(),
            port.as_os_str(),
            "--out".as_ref(),
            db.as_os_str(),
            "--unit".as_ref(),
            unit.as_ref(),
        ],
        log,
    )
}

pub fn start_host(port: &Path, out: &Path, log: &Path) -> Proc {
    let args = ["listen", "--port"].map(std::ffi::OsStr::new);
    spawn(
        &[
            args[0],
            args[1],
            port.as_os_str(),
            "--out".as_ref(),
            out.as_os_str(),
        ],
        log,
    )
}

pub fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool, logs: &[&Path]) {
    let t0 = Instant::now();
    while !ok() {
        if t0.elapsed() > limit {
            for l in logs {
                eprintln!(
                    "--- {}\n{}",
                    l.display(),
                    std::fs::read_to_string(l).unwrap_or_default()
                );
            }
            panic!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
