//! nemascope-edge: frames → maps → masks → objects → counts on the board.
//!
//! [`count`] runs a signed model bundle ([`model`]) over a frame; [`inputs`]
//! and [`report`] are the batch `count` command's ends. [`pipeline`] is the
//! classical flat-field segmenter path the demo still uses. [`display`]
//! draws the unit's screens. [`journal`],
//! [`protocol`] and [`link`] keep results and report them over serial.

pub mod count;
pub mod display;
pub mod inputs;
pub mod journal;
pub mod link;
pub mod model;
pub mod pipeline;
pub mod protocol;
pub mod report;
