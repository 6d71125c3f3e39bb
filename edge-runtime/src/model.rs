//! The configured bundle of a running unit, watched: a new bundle that
//! passes every check replaces the running model, one that does not is
//! refused and the unit keeps counting with the model it has.

use std::path::Path;

use nemascope_count::{Model, ModelError};

use crate::link::protocol::check_classes;

/// A bundle as a unit accepts it: every check of [`Model::open_tiled`],
/// and classes the serial link can report (the journal, the link and the
/// screen carry the manifest's classes, so none may be dropped).
fn open_for_unit(dir: &Path, key: &Path, tile: Option<[usize; 2]>) -> Result<Model, ModelError> {
    let m = Model::open_tiled(dir, key, tile)?;
    check_classes(&m.manifest.classes).map_err(ModelError::Unsupported)?;
    Ok(m)
}

/// What a bundle's files look like now (size and time of each): a change
/// means someone put a new bundle there.
type Stamp = Vec<(u64, Option<std::time::SystemTime>)>;

fn stamp_of(dir: &Path) -> Stamp {
    [
        nemascope_bundle::MANIFEST_FILE,
        nemascope_bundle::SIGNATURE_FILE,
        nemascope_bundle::MODEL_FILE,
    ]
    .iter()
    .map(|f| match std::fs::metadata(dir.join(f)) {
        Ok(m) => (m.len(), m.modified().ok()),
        Err(_) => (u64::MAX, None),
    })
    .collect()
}

/// What a bundle folder holds.
const BUNDLE_FILES: [&str; 3] = [
    nemascope_bundle::MANIFEST_FILE,
    nemascope_bundle::SIGNATURE_FILE,
    nemascope_bundle::MODEL_FILE,
];

/// The configured bundle of a running unit, checked again whenever its
/// files change. A new bundle that passes every check replaces the running
/// model; one that does not (another key, a corrupt file, a half-copied
/// folder) is refused and the unit **keeps counting with the model it
/// has**, saying why. The last accepted bundle is kept beside the journal,
/// so a unit restarted with a refused bundle in place still runs.
#[derive(Debug)]
pub struct ModelWatch {
    dir: std::path::PathBuf,
    key: std::path::PathBuf,
    tile: Option<[usize; 2]>,
    keep: std::path::PathBuf,
    stamp: Stamp,
    every: std::time::Duration,
    last_check: std::time::Instant,
    /// Why the configured bundle is not the one running (None: it is).
    pub refused: Option<String>,
}

impl ModelWatch {
    /// Opens the bundle in `dir` (falling back to the last accepted one
    /// kept in `keep` when it is refused); `every` is how often its files
    /// are looked at.
    pub fn open(
        dir: &Path,
        key: &Path,
        tile: Option<[usize; 2]>,
        keep: &Path,
        every: std::time::Duration,
    ) -> Result<(ModelWatch, Model), ModelError> {
        let mut w = ModelWatch {
            dir: dir.to_path_buf(),
            key: key.to_path_buf(),
            tile,
            keep: keep.to_path_buf(),
            stamp: stamp_of(dir),
            every,
            last_check: std::time::Instant::now(),
            refused: None,
        };
        match open_for_unit(dir, key, tile) {
            Ok(m) => {
                w.keep_copy();
                Ok((w, m))
            }
            Err(e) => match open_for_unit(keep, key, tile) {
                Ok(m) => {
                    w.refused = Some(e.to_string());
                    Ok((w, m))
                }
                Err(_) => Err(e),
            },
        }
    }

    /// Copies the accepted bundle to `keep` (through a temporary folder and
    /// a rename, so `keep` is always a whole bundle or absent), unless the
    /// copy there is already the same: most restarts write nothing.
    fn keep_copy(&self) {
        let same = BUNDLE_FILES.iter().all(|f| {
            matches!(
                (std::fs::read(self.dir.join(f)), std::fs::read(self.keep.join(f))),
                (Ok(a), Ok(b)) if a == b
            )
        });
        if same {
            return;
        }
        if let Err(e) = nemascope_bundle::copy_bundle(&self.dir, &self.keep) {
            crate::say!(
                "model: could not keep a copy in {}: {e} (counting goes on)",
                self.keep.display()
            );
        }
    }

    /// When the bundle's files changed since the last look: the new model,
    /// or why it was refused (the running one stays). None otherwise.
    pub fn poll(&mut self, now: std::time::Instant) -> Option<Result<Model, String>> {
        if now.duration_since(self.last_check) < self.every {
            return None;
        }
        self.last_check = now;
        let stamp = stamp_of(&self.dir);
        if stamp == self.stamp {
            return None;
        }
        self.stamp = stamp;
        Some(match open_for_unit(&self.dir, &self.key, self.tile) {
            Ok(m) => {
                self.keep_copy();
                self.refused = None;
                Ok(m)
            }
            Err(e) => {
                self.refused = Some(e.to_string());
                Err(e.to_string())
            }
        })
    }
}
