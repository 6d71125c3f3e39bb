//! nemascope-edge: frames → maps → masks → objects → counts on the board.
//!
//! Counting itself is `nemascope_count` (shared with the trainer's export
//! scoring); [`model`] watches the unit's bundle; [`inputs`] and [`report`]
//! are the batch `count` command's ends. [`display`]
//! draws the unit's screens. [`journal`],
//! [`protocol`] and [`link`] keep results and report them over serial.

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

#[cfg(feature = "v4l2")]
pub mod camera;
pub mod cli;
pub mod config;
pub mod display;
pub mod inputs;
pub mod journal;
pub mod link;
pub mod listener;
pub mod model;
pub mod panels;
pub mod protocol;
pub mod report;
pub mod serial;
pub mod service;
pub mod source;
pub mod trust;
