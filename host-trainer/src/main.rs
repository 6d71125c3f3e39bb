//! `nemascope-train`: train, evaluate, predict, sweep, distil and export
//! from the command line. Parses and dispatches; the commands live in
//! `nemascope_train::cli`.

use clap::Parser;
use nemascope_train::cli::Cli;

fn main() {
    if let Err(e) = Cli::parse().cmd.run() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
