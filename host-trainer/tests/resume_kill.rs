//! A training run killed (SIGKILL, as the OOM killer or a power cut would)
//! at seeded random moments — loading data, training, writing a checkpoint,
//! voting refinement masks — is started again with `--resume` each time and
//! finishes: every epoch appears in the history once and in order, the
//! state names checkpoints that exist, and no stray checkpoint is left.
//!
//! CI kills it 6 times; `NEMASCOPE_TRAIN_KILLS=40 cargo test -p
//! nemascope-train --test resume_kill -- --nocapture` is the long run
//! (docs/hardening.md).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nemascope_train::train::{State, MODEL, STATE_FILE};
use rand::{Rng, SeedableRng};

mod common;
use common::tiny_config;

fn start(run: &Path, config: &Path, log: &Path) -> std::process::Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nemascope-train"));
    cmd.arg("train").arg("--out").arg(run);
    if run.join(STATE_FILE).exists() {
        cmd.arg("--resume");
    } else {
        cmd.arg("--config").arg(config);
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    cmd.stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("nemascope-train starts")
}

#[test]
fn a_run_killed_at_random_moments_resumes_to_the_end() {
    let kills: usize = std::env::var("NEMASCOPE_TRAIN_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    let dir = tempfile::tempdir().unwrap();
    let (run, config, log) = (
        dir.path().join("run"),
        dir.path().join("tiny.toml"),
        dir.path().join("train.log"),
    );
    // Enough epochs that every kill lands on a live process: each lives
    // 50–1500 ms (a tiny epoch takes well under a second here), so the run
    // creeps forward through start-up, epochs, checkpoints and voting.
    let n_epochs = 4 + kills / 2;
    let mut cfg = tiny_config();
    cfg.train.classify_epochs = n_epochs;
    // Every stage runs, whatever its AUC: this test is about resuming.
    cfg.train.keep_margin = 1.0;
    std::fs::write(&config, cfg.to_toml()).unwrap();
    let t = Instant::now();

    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(6);
    let (mut killed, mut starts) = (0, 0);
    loop {
        let mut child = start(&run, &config, &log);
        starts += 1;
        assert!(
            starts < kills + 20,
            "{}",
            std::fs::read_to_string(&log).unwrap()
        );
        if killed < kills {
            std::thread::sleep(Duration::from_millis(rng.random_range(50..1500)));
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap();
                child.wait().unwrap();
                killed += 1;
                continue;
            }
        }
        let status = child.wait().unwrap();
        assert!(
            status.success(),
            "{}",
            std::fs::read_to_string(&log).unwrap()
        );
        break;
    }

    assert_eq!(killed, kills, "every kill landed on a live process");
    let text = std::fs::read_to_string(run.join(STATE_FILE)).unwrap();
    let s: State = serde_json::from_str(&text).unwrap();
    assert!(s.done);
    let epochs: Vec<(String, usize)> = s
        .history
        .iter()
        .map(|e| (e.phase.clone(), e.epoch))
        .collect();
    let want: Vec<(String, usize)> = (0..n_epochs)
        .map(|e| ("classify".to_string(), e))
        .chain([("refine1".into(), 0), ("refine2".into(), 0)])
        .collect();
    assert_eq!(epochs, want, "every epoch once, in order");
    let stages: Vec<&str> = s.results.iter().map(|r| r.stage.as_str()).collect();
    assert_eq!(&stages[1..], ["raw maps", "voting", "refine 1", "refine 2"]);
    assert!(run.join(MODEL).exists());
    let named: Vec<&String> = s.last.iter().chain(&s.best).collect();
    let mut ckpts: Vec<String> = std::fs::read_dir(&run)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("ckpt-") || n.contains("nemascope-tmp"))
        .collect();
    ckpts.sort();
    assert!(
        ckpts.iter().all(|c| named.contains(&c)),
        "only the checkpoints the state names are kept: {ckpts:?} vs {named:?}"
    );
    assert!(named.iter().all(|n| run.join(n).exists()));
    eprintln!(
        "{killed} kills, {starts} starts, {n_epochs} + 2 epochs: every epoch once, in {:.0} s",
        t.elapsed().as_secs_f64()
    );
}
