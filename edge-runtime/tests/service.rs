//! The whole unit end to end: `nemascope-edge run` watches a folder,
//! counts with the shipped synthetic model, journals, draws its screen and
//! reports over a serial line to `nemascope-edge listen` on the other end.
//! The line is two real pseudo-terminals joined by this test (a null-modem
//! cable it can fill with garbage or cut). Both programs are killed and
//! restarted at seeded random moments, frames arrive while the unit is down
//! and while the cable is cut, and at the end the host must hold every
//! frame's report exactly once, equal to the unit's journal.
//!
//! Native only: opening a port sets its baud rate, which qemu-user cannot.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use nemascope_core::imageio::save_gray16;
use nemascope_core::synth::{generate, SynthConfig};
use nemascope_edge::journal::Journal;

mod common;
use common::edge;
use common::unit::*;

#[test]
#[cfg_attr(target_arch = "aarch64", ignore = "qemu-user cannot set a baud rate")]
fn every_frame_reaches_the_host_once_through_kills_cuts_and_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let incoming = root.join("incoming");
    std::fs::create_dir_all(&incoming).unwrap();
    let (unit_master, unit_port) = end();
    let (host_master, host_port) = end();
    let cable = Cable::new(unit_master, host_master);
    let config = linked_config(
        root,
        &unit_port,
        20,
        "[display]\nkind = \"png\"\npath = \"screen.png\"\n",
    );
    let (unit_log, host_log) = (root.join("unit.log"), root.join("host.log"));
    let logs = [unit_log.as_path(), host_log.as_path()];
    let out = root.join("host/reports.jsonl");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();

    let mut expected = BTreeSet::new();
    for i in 0..6 {
        expected.insert(acquire(
            &incoming,
            if i < 3 { "plot-1" } else { "plot-2" },
            i,
        ));
    }
    let mut host = start_host(&host_port, &out, &host_log);
    let mut unit = start_unit(&config, &unit_log);
    let mut s = 0x5eed_u64;
    let mut random_ms = move |max: u64| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s % max
    };

    // 1. Reports flow; garbage on the line in both directions meanwhile.
    cable.noise.store(true, Ordering::Relaxed);
    wait_for(
        "the first reports",
        Duration::from_secs(60),
        || reports(&out).len() >= 2,
        &logs,
    );
    cable.noise.store(false, Ordering::Relaxed);

    // 2. The unit is killed at random moments, frames arriving meanwhile.
    for k in 0..4u64 {
        std::thread::sleep(Duration::from_millis(random_ms(400)));
        drop(unit);
        expected.insert(acquire(&incoming, "plot-3", 10 + k));
        unit = start_unit(&config, &unit_log);
    }

    // 3. The cable is cut while frames arrive: counted and journaled, then
    //    sent once it is back.
    cable.cut.store(true, Ordering::Relaxed);
    for i in 20..23 {
        expected.insert(acquire(&incoming, "plot-4", i));
    }
    std::thread::sleep(Duration::from_millis(1500));
    cable.cut.store(false, Ordering::Relaxed);

    // 4. The host is killed and restarted; then the unit once more.
    std::thread::sleep(Duration::from_millis(random_ms(300)));
    drop(host);
    expected.insert(acquire(&incoming, "plot-4", 23));
    host = start_host(&host_port, &out, &host_log);
    std::thread::sleep(Duration::from_millis(random_ms(300)));
    drop(unit);
    unit = start_unit(&config, &unit_log);

    let n = expected.len();
    wait_for(
        "every report at the host",
        Duration::from_secs(120),
        || reports(&out).len() >= n,
        &logs,
    );
    // Acknowledgements reach the unit too (its journal's `acked`).
    let acked = root.join("journal/acked");
    wait_for(
        "every acknowledgement at the unit",
        Duration::from_secs(30),
        || std::fs::read_to_string(&acked).is_ok_and(|s| s.trim() == n.to_string()),
        &logs,
    );
    drop(unit);
    drop(host);
    drop(cable);

    assert_each_frame_once(&out, &root.join("journal"), &expected);
    let log = std::fs::read_to_string(&unit_log).unwrap();
    assert!(log.contains("open at 115200 baud"), "{log}");
    if std::env::var_os("NEMASCOPE_SHOW_LOGS").is_some() {
        eprintln!(
            "--- unit\n{log}\n--- host\n{}",
            std::fs::read_to_string(&host_log).unwrap()
        );
    }
    let screen = image::open(root.join("screen.png")).unwrap();
    assert_eq!((screen.width(), screen.height()), (240, 320));
}

#[test]
fn a_bad_config_stops_the_unit_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("edge.toml");
    std::fs::write(
        &config,
        "[source]\nkind = \"folder\"\npath = \"in\"\n[journal]\ndir = \"j\"\n[serial]\nport = \"/dev/null\"\nbaud = 12345\n",
    )
    .unwrap();
    let out = edge()
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("serial.baud = 12345"), "{err}");
    assert!(err.contains("edge.toml"), "{err}");
    assert!(!dir.path().join("j").exists(), "nothing was started");

    let out = edge()
        .args(["run", "--config"])
        .arg(dir.path().join("missing.toml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.toml"));
}

/// The unit's log going away (its stderr a pipe nobody reads any more, as
/// when a log collector dies) must not stop it: it counts and journals on.
#[test]
fn a_unit_whose_log_went_away_counts_on() {
    let dir = tempfile::tempdir().unwrap();
    let config = unit_config(
        dir.path(),
        "[source]\nkind = \"synth\"\nframes = 3\nwidth = 128\nheight = 96\n[journal]\ndir = \"j\"\n",
    );
    let mut child = edge()
        .args(["run", "--until-done", "--config"])
        .arg(&config)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stderr.take());
    drop(child.stdout.take());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert_eq!(Journal::open(&dir.path().join("j")).unwrap().last_seq(), 3);
}

/// A config or public key anyone on the unit could rewrite would let them
/// choose what it runs: the unit refuses to start, saying which and how
/// to mend it.
#[cfg(unix)]
#[test]
fn a_config_or_key_anyone_can_write_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let key = root.join("unit.pub");
    let models = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
    std::fs::copy(models.join("nemascope-dev.pub"), &key).unwrap();
    let config = root.join("edge.toml");
    std::fs::write(
        &config,
        format!(
            "[model]\nbundle = \"{}\"\npublic_key = \"unit.pub\"\n[source]\nkind = \"synth\"\nframes = 1\nwidth = 128\nheight = 96\n[journal]\ndir = \"j\"\n",
            models.join("synth-worm-egg-cyst").display()
        ),
    )
    .unwrap();
    let mode = |p: &std::path::Path, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
    };
    for (path, what) in [(&config, "config"), (&key, "public key")] {
        mode(path, 0o666);
        let out = edge()
            .args(["run", "--until-done", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{err}");
        assert!(
            err.contains(&format!("{what} ")) && err.contains("writable by anyone"),
            "{err}"
        );
        assert!(!root.join("j").exists(), "nothing was started");
        mode(path, 0o644);
    }
    // Mended: it runs.
    run_until_done(&config);
}

#[test]
fn synthetic_source_runs_to_the_end_and_a_restart_counts_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let config = unit_config(
        dir.path(),
        r#"[source]
kind = "synth"
frames = 3
width = 256
height = 192
[journal]
dir = "j"
min_free_mb = 1
[display]
kind = "png"
path = "screen.png"
panel = "mono"
"#,
    );
    for _ in 0..2 {
        run_until_done(&config);
    }
    let mut j = Journal::open(&dir.path().join("j")).unwrap();
    assert_eq!(j.last_seq(), 3);
    let sources: Vec<String> = (1..=3).map(|s| j.get(s).unwrap().record.source).collect();
    assert_eq!(sources, ["synth-0-0", "synth-0-1", "synth-0-2"]);
    let screen = image::open(dir.path().join("screen.png")).unwrap();
    assert_eq!((screen.width(), screen.height()), (128, 64));
}

#[test]
fn demo_counts_with_the_shipped_model_and_the_classical_floor() {
    let out = edge().args(["demo", "--frames", "2"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("model synth-worm-egg-cyst"), "{text}");
    for class in ["| worm |", "| egg |", "| cyst |"] {
        assert!(text.contains(class), "{text}");
    }
    let out = edge()
        .args([
            "demo",
            "--frames",
            "1",
            "--classical",
            "--calibration-frames",
            "2",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("classical flat-field"));
}

#[test]
fn a_dark_frame_is_counted_with_a_warning_the_next_one_clears_it() {
    let dir = tempfile::tempdir().unwrap();
    let frames = dir.path().join("frames");
    std::fs::create_dir_all(&frames).unwrap();
    let dark = nemascope_core::Plane::filled(256, 192, 0.004);
    save_gray16(&dark, &frames.join("a_dark.png")).unwrap();
    let ok = generate(&SynthConfig::default(), 5, 0).unwrap();
    save_gray16(&ok.image, &frames.join("b_ok.png")).unwrap();
    // A 16-bit camera, as the unit is told: 262 of 65 535 everywhere is its
    // lamp off. (Found from the frame alone it could as well be a 12-bit
    // camera's even field, and is called blank: count.rs `light_top`.)
    let config = unit_config(
        dir.path(),
        r#"[camera]
bit_depth = 16
[source]
kind = "files"
paths = ["frames"]
[journal]
dir = "j"
min_free_mb = 1
"#,
    );
    let log = run_until_done(&config);
    assert!(log.contains("dark frame"), "{log}");
    let mut j = Journal::open(&dir.path().join("j")).unwrap();
    let w: Vec<u8> = (1..=2).map(|s| j.get(s).unwrap().record.warnings).collect();
    assert_eq!(w, [nemascope_edge::link::protocol::warn::FRAME_QUALITY, 0]);
}
