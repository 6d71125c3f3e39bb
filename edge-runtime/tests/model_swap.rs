//! A running unit and the bundle in its model folder being replaced: a
//! bundle signed by another key is refused and the unit keeps counting with
//! the model it has, saying why (log, MODEL warning on the screen and in
//! every record); restarted with the refused bundle still in place it runs
//! the last accepted one; a good bundle put back is taken up without a
//! restart.

use std::path::Path;
use std::time::{Duration, Instant};

use nemascope_bundle::{Bundle, SigningKey};
use nemascope_core::imageio::save_gray16;
use nemascope_core::synth::{generate, SynthConfig};
use nemascope_edge::journal::Journal;
use nemascope_edge::link::protocol::warn;

mod common;
use common::edge;
use common::unit::start_unit;

fn copy_bundle(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for f in ["manifest.json", "manifest.sig", "model.onnx"] {
        std::fs::copy(from.join(f), to.join(f)).unwrap();
    }
}

fn wait_log(log: &Path, what: &str) {
    let t0 = Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(what) {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no `{what}` in the log:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn frame(dir: &Path, i: u64) {
    let f = generate(&SynthConfig::default(), 31, i).unwrap();
    let tmp = dir.join(format!(".f{i}.png"));
    save_gray16(&f.image, &tmp).unwrap();
    std::fs::rename(&tmp, dir.join(format!("f{i}.png"))).unwrap();
}

#[test]
fn a_foreign_bundle_is_refused_and_the_unit_keeps_counting() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/synth-worm-egg-cyst");
    let key = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/nemascope-dev.pub");
    let bundle = root.join("bundle");
    copy_bundle(&shipped, &bundle);
    // The same model and manifest, signed by someone else's key.
    let good = Bundle::open(&shipped, &nemascope_bundle::read_public_key(&key).unwrap()).unwrap();
    let foreign = root.join("foreign");
    Bundle::write(
        &foreign,
        good.manifest.clone(),
        &good.model,
        &SigningKey::from_bytes(&[7u8; 32]),
    )
    .unwrap();
    let incoming = root.join("incoming");
    std::fs::create_dir_all(&incoming).unwrap();
    let config = root.join("edge.toml");
    std::fs::write(
        &config,
        format!(
            "[model]\nbundle = \"bundle\"\npublic_key = \"{}\"\ncheck_s = 1\n[source]\nkind = \"folder\"\npath = \"incoming\"\npoll_ms = 20\nsettle_ms = 50\n[journal]\ndir = \"j\"\nmin_free_mb = 1\n",
            key.display()
        ),
    )
    .unwrap();
    let log = root.join("unit.log");

    let unit = start_unit(&config, &log);
    frame(&incoming, 1);
    wait_log(&log, "#1 ");

    // Someone swaps in the foreign bundle while the unit runs.
    std::fs::rename(&bundle, root.join("bundle.good")).unwrap();
    std::fs::rename(&foreign, &bundle).unwrap();
    wait_log(&log, "the new bundle was refused");
    frame(&incoming, 2);
    wait_log(&log, "#2 ");
    drop(unit);

    // Restarted with the foreign bundle still there: the last accepted one.
    let unit = start_unit(&config, &log);
    wait_log(&log, "running the last accepted bundle");
    frame(&incoming, 3);
    wait_log(&log, "#3 ");

    // The good bundle is put back: taken up without a restart.
    std::fs::remove_dir_all(&bundle).unwrap();
    std::fs::rename(root.join("bundle.good"), &bundle).unwrap();
    wait_log(&log, "model: now synth-worm-egg-cyst");
    frame(&incoming, 4);
    wait_log(&log, "#4 ");
    drop(unit);

    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("signature"), "the reason is given:\n{text}");
    let mut j = Journal::open(&root.join("j")).unwrap();
    assert_eq!(j.last_seq(), 4);
    let model_warned: Vec<bool> = (1..=4)
        .map(|s| j.get(s).unwrap().record.warnings & warn::MODEL != 0)
        .collect();
    assert_eq!(model_warned, [false, true, true, false]);
    for s in 1..=4 {
        assert_eq!(j.get(s).unwrap().record.model, "synth-worm-egg-cyst");
    }
}

#[test]
fn a_refused_bundle_with_nothing_to_fall_back_on_stops_the_unit_saying_why() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/synth-worm-egg-cyst");
    let key = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/nemascope-dev.pub");
    let bundle = root.join("bundle");
    copy_bundle(&shipped, &bundle);
    // A model file cut short (a copy that did not finish).
    let m = std::fs::read(bundle.join("model.onnx")).unwrap();
    std::fs::write(bundle.join("model.onnx"), &m[..m.len() / 2]).unwrap();
    std::fs::create_dir_all(root.join("in")).unwrap();
    let config = root.join("edge.toml");
    std::fs::write(
        &config,
        format!(
            "[model]\nbundle = \"bundle\"\npublic_key = \"{}\"\n[source]\nkind = \"folder\"\npath = \"in\"\n[journal]\ndir = \"j\"\n",
            key.display()
        ),
    )
    .unwrap();
    let out = edge()
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("model.onnx") && err.contains("does not match the manifest"),
        "{err}"
    );
}
