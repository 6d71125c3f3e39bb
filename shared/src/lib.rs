//! nemascope-core: the algorithms both halves of nemascope share.
//!
//! Data flows one way: frames ([`imageio`]) → planes ([`grid::Plane`]) →
//! tiles and thresholded maps ([`tiling`]) → superpixels ([`felzenszwalb`])
//! → voted masks ([`voting`]) → objects
//! ([`objects`]) → counts ([`counting`]); [`metrics`] scores each step and
//! [`pooling`] is the plain-f32 reference of the trainer's pooling layers.
//! [`dataset`] reads the BBBC010 and generic layouts, [`synth`] makes seeded
//! synthetic frames with exact ground truth.
//!
//! This crate builds without libtorch and tract, so it cross-compiles to the
//! aarch64 edge board unchanged.

pub mod bitmask;
pub mod canvas;
pub mod classical;
#[cfg(feature = "cli")]
pub mod cli;
pub mod counting;
pub mod dataset;
pub mod error;
pub mod felzenszwalb;
pub mod files;
pub mod flatfield;
pub mod grid;
pub mod imageio;
pub mod metrics;
pub mod npy;
pub mod objects;
pub mod pooling;
pub mod synth;
pub mod tiling;
pub mod verify;
pub mod voting;

pub use bitmask::BitMask;
pub use error::{Error, Result};
pub use grid::{Grid, Mask, Plane};

/// The foreground classes nemascope knows, in model-output order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    Worm,
    Egg,
    Cyst,
}

impl Class {
    pub const ALL: [Class; 3] = [Class::Worm, Class::Egg, Class::Cyst];

    /// Lower-case name used in files, CSV headers and reports.
    pub fn name(self) -> &'static str {
        match self {
            Class::Worm => "worm",
            Class::Egg => "egg",
            Class::Cyst => "cyst",
        }
    }

    /// Position in [`Class::ALL`] (model-output and mask order).
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn from_name(name: &str) -> Option<Class> {
        Class::ALL.into_iter().find(|c| c.name() == name)
    }
}

impl std::fmt::Display for Class {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::Class;

    #[test]
    fn class_index_and_names_follow_all() {
        for (i, c) in Class::ALL.into_iter().enumerate() {
            assert_eq!(c.index(), i);
            assert_eq!(Class::from_name(c.name()), Some(c));
        }
        assert_eq!(Class::from_name("debris"), None);
    }
}
