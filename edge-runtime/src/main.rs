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
            say!("nemascope-edge: {}", causes(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, each said once: an I/O error's text is often
/// in its wrapper's message already ("x: Is a directory (os error 21)").
fn causes(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for c in e.chain() {
        let s = c.to_string();
        if out.contains(&s) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&s);
    }
    out
}
