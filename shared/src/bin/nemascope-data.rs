//! `nemascope-data`: datasets and superpixels from the command line.
//! Parses and dispatches; the commands live in `nemascope_core::cli`.

use std::process::ExitCode;

use clap::Parser;
use nemascope_core::cli::{run, Cli};

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nemascope-data: {e}");
            ExitCode::FAILURE
        }
    }
}
