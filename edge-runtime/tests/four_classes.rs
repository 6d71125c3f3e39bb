//! A bundle whose manifest names four classes, end to end: the unit counts
//! with it, journals all four, reports all four over the serial link to
//! `listen`, and draws a row for each on its screen. Until protocol
//! version 2 a fourth class was drawn but silently dropped from the
//! journal and the reports.
//!
//! Native only: opening a port sets its baud rate, which qemu-user cannot.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use nemascope_bundle::{Bundle, Manifest};
use nemascope_core::imageio::{load_pixels, LoadLimits};
use nemascope_core::objects::Calibration;
use nemascope_count::{count_frame, CountSettings, Model};
use nemascope_edge::journal::Journal;
use nemascope_onnx::export::{self, InputSize};
use nemascope_onnx::graph::encode;
use nemascope_onnx::UNetWeights;

mod common;
use common::unit::*;

const CLASSES: [&str; 4] = ["worm", "egg", "cyst", "juvenile"];

/// A signed four-class bundle (seeded random weights: what it finds does
/// not matter, only that every class's count travels) and its public key.
fn four_class_bundle(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (secret, public) = nemascope_bundle::generate_keys(&dir.join("lab")).unwrap();
    let key = nemascope_bundle::read_signing_key(&secret).unwrap();
    let net = UNetWeights::random(1, CLASSES.len(), 2, 2, 5);
    let bytes = encode(
        &export::fp32(
            &net,
            InputSize {
                height: 96,
                width: 128,
            },
            false,
        )
        .unwrap(),
    );
    let manifest = Manifest {
        name: "four-class".into(),
        classes: CLASSES.map(String::from).to_vec(),
        input: [1, 96, 128],
        threshold: 0.5,
        ..Manifest::example()
    };
    let out = dir.join("bundle");
    Bundle::write(&out, manifest, &bytes, &key).unwrap();
    (out, public)
}

#[test]
#[cfg_attr(target_arch = "aarch64", ignore = "qemu-user cannot set a baud rate")]
fn a_four_class_bundle_is_journaled_reported_and_shown_whole() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (bundle, public) = four_class_bundle(root);
    let incoming = root.join("incoming");
    std::fs::create_dir_all(&incoming).unwrap();
    let mut expected = BTreeSet::new();
    for i in 0..3 {
        // A file list's frames are known by their whole paths.
        let rel = acquire(&incoming, "plot-4", i);
        expected.insert(incoming.join(rel).display().to_string());
    }
    let (unit_master, unit_port) = end();
    let (host_master, host_port) = end();
    let _cable = Cable::new(unit_master, host_master);
    let config = root.join("edge.toml");
    std::fs::write(
        &config,
        format!(
            "[model]\nbundle = \"{}\"\npublic_key = \"{}\"\n\
             [source]\nkind = \"files\"\npaths = [\"incoming/plot-4\"]\n\
             [journal]\ndir = \"journal\"\nmin_free_mb = 1\n\
             [serial]\nport = \"{}\"\nwindow = 4\nresend_s = 1\nheartbeat_s = 1\nreopen_s = 1\n\
             [display]\nkind = \"png\"\npath = \"screen.png\"\n",
            bundle.display(),
            public.display(),
            unit_port.display()
        ),
    )
    .unwrap();
    let out = root.join("reports.jsonl");
    let host_log = root.join("host.log");
    let _host = start_host(&host_port, &out, &host_log);
    let log = run_until_done(&config);
    wait_for(
        "every report at the host",
        Duration::from_secs(30),
        || reports(&out).len() >= expected.len(),
        &[host_log.as_path()],
    );
    // The host holds each frame's record once, all four classes equal.
    assert_each_frame_once(&out, &root.join("journal"), &expected);

    // Each record's counts are what `count_frame` gives on its frame.
    let model = Model::open(&bundle, &public).unwrap();
    let settings = CountSettings {
        calibration: Calibration { um_per_px: 4.0 },
        ..CountSettings::default()
    };
    let mut journal = Journal::open(&root.join("journal")).unwrap();
    let mut totals = [0u32; 4];
    for seq in 1..=journal.last_seq() {
        let r = journal.get(seq).unwrap().record;
        assert_eq!(r.classes, CLASSES, "#{seq}");
        let frame = load_pixels(Path::new(&r.source), LoadLimits::default()).unwrap();
        let c = count_frame(&model, &frame, &settings).unwrap();
        let want: Vec<u32> = c.counts.iter().map(|&n| n as u32).collect();
        assert_eq!(r.counts, want, "#{seq} {}", r.source);
        for (t, n) in totals.iter_mut().zip(&r.counts) {
            *t += n;
        }
    }
    assert!(
        totals.iter().sum::<u32>() > 0,
        "the random model found nothing: the test would not see a dropped class"
    );
    for r in reports(&out) {
        let names: Vec<&str> = r.counts.iter().map(|c| c.class.as_str()).collect();
        assert_eq!(names, CLASSES);
    }
    // The screen has a row in the fourth class's colour (magenta).
    let screen = image::open(root.join("screen.png")).unwrap().to_rgb8();
    let magenta = screen
        .pixels()
        .filter(|p| p.0[0] > 200 && p.0[1] < 120 && p.0[2] > 200)
        .count();
    assert!(magenta > 100, "fourth row: {magenta} magenta pixels\n{log}");
}
