//! nemascope-edge: frames → maps → masks → objects → counts on the board.
//!
//! The folders follow the data: [`frames`] (a watched folder, a file list,
//! synthetic frames, a V4L2 camera; the `count` command's inputs) →
//! counting, which is the `nemascope_count` crate the trainer's export
//! scores with ([`model`] watches the unit's bundle) → [`journal`] (the
//! durable record) → [`screen`] (what a technician reads) and [`link`] (the
//! serial protocol, the unit's and the host's ends, the listener's store).
//! [`service`] runs that loop on a unit; [`report`] writes the `count`
//! command's CSV, JSON and overlays; [`cli`] holds the commands.

/// A line on stderr (the unit's log, journald under systemd) that, unlike
/// `eprintln!`, cannot panic: a unit whose log has gone away (a closed
/// pipe) keeps counting.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

pub mod cli;
pub mod config;
pub mod frames;
pub mod journal;
pub mod link;
pub mod model;
pub mod report;
pub mod screen;
pub mod service;
pub mod trust;
