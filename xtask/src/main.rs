//! `cargo xtask <task>`: the project's automation, one place for what the
//! README, CI and developers run.
//!
//! - `demo`        the main job on its built-in default (synthetic frames)
//! - `test`        everything CI checks: fmt, clippy, workspace tests, and
//!   the shared and edge crates' tests for aarch64 under qemu
//! - `cross-test`  only the aarch64 + qemu part
//! - `bench`       Felzenszwalb vs scikit-image and OpenCV, criterion, the unit's
//!   frames on one and two threads, tract vs onnxruntime
//! - `parity`      nemascope vs scikit-image Felzenszwalb on every BBBC010 well
//! - `train`       the host trainer (`nemascope-train`, release build); no
//!   arguments = the default weak run on BBBC010 into `out/train-bbbc010`
//! - `bench-step`  seconds per training step, Rust/tch vs PyTorch (Python),
//!   same network, same machine
//! - `onnx-check`  written ONNX files (test models + any given) through the
//!   official checker and onnxruntime vs tract, latencies on one core
//! - `bundles`     rebuilds the shipped model bundles (`--key` signs them)
//! - `dist`        the board's binary: aarch64 release, stripped, debug info
//!   kept beside it (`--target`, `--features`)
//!
//! System packages are installed by `scripts/setup.sh` (called by `./x`).

use std::process::ExitCode;

mod tasks;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let task = args.first().map(String::as_str).unwrap_or("help");
    let rest = args.get(1..).unwrap_or_default();
    let r = match task {
        "demo" => tasks::demo(rest),
        "test" => tasks::test(),
        "cross-test" => tasks::cross_test(),
        "train" => tasks::train(rest),
        "bench-step" => tasks::bench_step(),
        "bench" => tasks::bench(),
        "onnx-check" => tasks::onnx_check(rest),
        "bundles" => tasks::bundles(rest),
        "dist" => tasks::dist(rest),
        "parity" => tasks::parity(rest),
        _ => {
            eprintln!(
                "usage: cargo xtask <demo|test|cross-test|bench|parity|train|bench-step|onnx-check|bundles|dist> [args]"
            );
            if task == "help" {
                Ok(())
            } else {
                Err(format!("unknown task `{task}`"))
            }
        }
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}
