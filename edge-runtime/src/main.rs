//! `nemascope-edge`: count nematodes in microscope frames. Parses the
//! command line and dispatches; the commands live in `nemascope_edge::cli`.

use std::process::ExitCode;

use clap::Parser;
use nemascope_edge::cli::Cli;
use nemascope_edge::say;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.cmd.ends_on_closed_pipe() {
        // A closed pipe (`nemascope-edge count … | head`) ends the printing
        // commands quietly instead of a panic on the next print; files
        // they wrote are whole (atomic).
        // SAFETY: sets the default disposition before any thread starts.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    match cli.cmd.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            say!("nemascope-edge: {e:#}");
            ExitCode::FAILURE
        }
    }
}
