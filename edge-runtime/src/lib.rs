//! nemascope-edge: frames → maps → masks → objects → counts on the board.
//!
//! [`count`] runs a signed model bundle ([`model`]) over a frame; [`inputs`]
//! and [`report`] are the batch `count` command's ends. [`pipeline`] is the
//! classical flat-field segmenter path the demo still uses. [`display`]
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
pub mod config;
pub mod count;
pub mod display;
pub mod inputs;
pub mod journal;
pub mod link;
pub mod listener;
pub mod model;
pub mod panels;
pub mod pipeline;
pub mod protocol;
pub mod report;
pub mod serial;
pub mod service;
pub mod source;
pub mod trust;
