//! The training driver end to end on a few small synthetic frames: every
//! stage runs, losses fall, results and reports are written, a run stopped
//! mid-way resumes without repeating or losing epochs, and `predict` writes
//! one mask per image at the image's size.

use nemascope_core::imageio::{load_mask, save_gray8};
use nemascope_core::synth::{self, SynthConfig};
use nemascope_train::train::{Trainer, MODEL};

mod common;
use common::tiny_config;

#[test]
fn stages_run_resume_and_report() {
    tch::manual_seed(1);
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let mut cfg = tiny_config();
    // Every stage runs here, whatever its AUC: this test is about the
    // phases, epochs and resuming (the keeping rule: `Judged::worse_than`).
    cfg.train.keep_margin = 1.0;

    // A "crash" after two epochs: the state and last checkpoint survive.
    let mut t = Trainer::open(&run, Some(cfg.clone()), false).unwrap();
    t.verbose = false;
    t.stop_after = Some(2);
    let e = t.run().unwrap_err();
    assert!(e.to_string().contains("--resume"), "{e}");
    let last = t
        .state
        .last
        .clone()
        .expect("a checkpoint named in the state");
    assert!(run.join(&last).exists());
    drop(t);
    // A second start without --resume must not clobber the run.
    let e = Trainer::open(&run, Some(cfg.clone()), false).err().unwrap();
    assert!(e.to_string().contains("already holds a run"), "{e}");

    let mut t = Trainer::open(&run, None, true).unwrap();
    t.verbose = false;
    assert_eq!((t.state.phase, t.state.epoch), (0, 2));
    t.run().unwrap();
    let s = &t.state;
    assert!(s.done);
    let names: Vec<(String, usize)> = s
        .history
        .iter()
        .map(|e| (e.phase.clone(), e.epoch))
        .collect();
    assert_eq!(
        names,
        vec![
            ("classify".into(), 0),
            ("classify".into(), 1),
            ("classify".into(), 2),
            ("refine1".into(), 0),
            ("refine2".into(), 0),
        ],
        "every epoch once, in order"
    );
    assert!(
        s.history[2].train_loss < s.history[0].train_loss,
        "classification loss falls: {:?}",
        s.history
    );
    let stages: Vec<&str> = s.results.iter().map(|r| r.stage.as_str()).collect();
    assert!(stages[0].starts_with("classical"), "{stages:?}");
    assert_eq!(&stages[1..], ["raw maps", "voting", "refine 1", "refine 2"]);
    for r in &s.results {
        assert_eq!(r.dice.len(), 3, "worm, egg, cyst");
        for d in r.dice.iter().flatten() {
            assert!((0.0..=1.0).contains(d), "{r:?}");
        }
    }
    assert!(s.results[1].accuracy.is_some_and(|a| a > 0.0));
    assert!(run.join(MODEL).exists());
    assert!(run.join("masks/refine2/complete").exists());

    nemascope_train::report::write(&run, s, "test").unwrap();
    let md = std::fs::read_to_string(run.join("results.md")).unwrap();
    assert!(md.contains("| refine 2 |"), "{md}");
    assert!(image::open(run.join("curves.png")).is_ok());

    // predict: a mask per image, named after it, at the image's own size.
    let frame = synth::generate(
        &SynthConfig {
            width: 160,
            height: 120,
            ..SynthConfig::default()
        },
        99,
        0,
    )
    .unwrap();
    let img = dir.path().join("field 1.png");
    save_gray8(&frame.image, &img).unwrap();
    let bad = dir.path().join("broken.png");
    std::fs::write(&bad, b"not a png").unwrap();
    let out = dir.path().join("masks");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_nemascope-train"))
        .args(["predict", "--run"])
        .arg(&run)
        .arg("--out")
        .arg(&out)
        .arg(&img)
        .arg(&bad)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&status.stderr);
    assert!(!status.status.success(), "one input was broken");
    assert!(stderr.contains("broken.png"), "{stderr}");
    let m = load_mask(&out.join("field 1.png")).unwrap();
    assert_eq!((m.width(), m.height()), (160, 120));
}

#[test]
fn supervised_baseline_learns_from_true_masks() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = tiny_config();
    cfg.train.supervised = true;
    cfg.train.classify_epochs = 2;
    cfg.train.rounds = 1;
    let mut t = Trainer::open(&dir.path().join("sup"), Some(cfg), false).unwrap();
    t.verbose = false;
    t.run().unwrap();
    let s = &t.state;
    // Same step budget as the weak run: 2 + 1 × 1 epochs.
    assert_eq!(s.history.len(), 3);
    assert!(s.history.iter().all(|e| e.phase == "supervised"));
    assert!(
        s.history[2].train_loss < s.history[0].train_loss,
        "{:?}",
        s.history
    );
    let stages: Vec<&str> = s.results.iter().map(|r| r.stage.as_str()).collect();
    assert_eq!(stages.len(), 2);
    assert_eq!(stages[1], "supervised");
}

/// A stopped run on a generic set that skips a bad row: resumed on the
/// same data it goes on, skipping the same row; once another image has
/// gone bad it is refused, naming that image, because the rest of the run
/// would train on other images than its start.
#[test]
fn a_resumed_run_refuses_a_dataset_that_changed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let sc = SynthConfig {
        width: 64,
        height: 48,
        ..SynthConfig::default()
    };
    let mut csv = String::from("image,worm,egg,cyst\n");
    for i in 0..12 {
        let f = synth::generate(&sc, 3, i).unwrap();
        save_gray8(&f.image, &data.join(format!("f{i}.png"))).unwrap();
        let p = |c: usize| (f.counts[c] > 0) as u8;
        csv += &format!("f{i}.png,{},{},{}\n", p(0), p(1), p(2));
    }
    csv += "missing.png,0,0,0\n";
    std::fs::write(data.join("labels.csv"), csv).unwrap();
    let mut cfg = tiny_config();
    cfg.data.kind = nemascope_train::config::DataKind::Generic;
    cfg.data.root = data.clone();
    cfg.data.width = 64;
    cfg.data.height = 48;
    cfg.data.bad_rows = nemascope_train::config::BadRows::Skip;
    cfg.data.max_bad_fraction = 0.2;
    let run = dir.path().join("run");
    let mut t = Trainer::open(&run, Some(cfg), false).unwrap();
    t.verbose = false;
    t.stop_after = Some(1);
    assert!(t.run().is_err(), "stopped after one epoch");
    assert_eq!(t.state.skipped.len(), 1);
    assert!(t.state.skipped[0].contains("missing.png"));
    drop(t);
    // Same data: it resumes.
    assert!(Trainer::open(&run, None, true).is_ok());
    // f5.png is cut short meanwhile.
    let f5 = data.join("f5.png");
    let bytes = std::fs::read(&f5).unwrap();
    std::fs::write(&f5, &bytes[..bytes.len() / 3]).unwrap();
    let e = Trainer::open(&run, None, true).err().unwrap().to_string();
    assert!(
        e.contains("dataset changed") && e.contains("new:") && e.contains("f5.png"),
        "{e}"
    );
}
