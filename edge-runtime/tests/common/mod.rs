//! Helpers shared by the edge tests.
#![allow(dead_code)] // each test file uses some of these

use std::process::Command;

pub mod unit;

/// The `nemascope-edge` program; under a cross target's emulator (no
/// binfmt here), `NEMASCOPE_TEST_RUNNER` (e.g. `qemu-aarch64 -L
/// /usr/aarch64-linux-gnu`, set by `cargo xtask cross-test`) runs it.
pub fn edge() -> Command {
    under_runner(std::path::Path::new(env!("CARGO_BIN_EXE_nemascope-edge")))
}

/// A command for the target binary `exe`, through `NEMASCOPE_TEST_RUNNER`
/// when one is set.
pub fn under_runner(exe: &std::path::Path) -> Command {
    let runner = std::env::var("NEMASCOPE_TEST_RUNNER").unwrap_or_default();
    let mut parts = runner.split_whitespace();
    match parts.next() {
        Some(prog) => {
            let mut c = Command::new(prog);
            c.args(parts).arg(exe);
            c
        }
        None => Command::new(exe),
    }
}
