//! The model a unit runs: a signed bundle, accepted only when its signature
//! verifies under the unit's configured public key, its model hash matches
//! and tract can run it with the input the manifest promises.

use std::path::Path;

use nemascope_bundle::{Bundle, Manifest};
use nemascope_onnx::{Precision, Runner};

/// A bundle that passed every check, its plan optimised once.
#[derive(Debug, Clone)]
pub struct Model {
    pub manifest: Manifest,
    pub runner: Runner,
}

/// Why a bundle was refused; the message is what the display and the log
/// show, so it names the check that failed.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("public key: {0}")]
    Key(nemascope_bundle::Error),
    #[error("bundle refused: {0}")]
    Bundle(nemascope_bundle::Error),
    #[error("bundle refused: {0}")]
    Onnx(nemascope_onnx::Error),
    /// The bundle is sound but asks for what this runtime cannot give.
    #[error("bundle refused: {0}")]
    Unsupported(String),
    #[error("bundle refused: manifest promises input {manifest:?}, model.onnx takes {model:?}")]
    InputMismatch {
        manifest: [usize; 3],
        model: [usize; 4],
    },
}

impl Model {
    /// Opens and checks the bundle in `dir` against the public key file.
    pub fn open(dir: &Path, public_key: &Path) -> Result<Model, ModelError> {
        Self::open_tiled(dir, public_key, None)
    }

    /// As [`Model::open`], the plan made for `tile` (`[H, W]`) instead of
    /// the bundle's input size: less memory on large frames (docs/edge.md).
    pub fn open_tiled(
        dir: &Path,
        public_key: &Path,
        tile: Option<[usize; 2]>,
    ) -> Result<Model, ModelError> {
        let key = nemascope_bundle::read_public_key(public_key).map_err(ModelError::Key)?;
        let b = Bundle::open(dir, &key).map_err(ModelError::Bundle)?;
        Self::from_bundle(b, tile)
    }

    /// A bundle already verified (by [`Bundle::open`], or just written by
    /// the trainer's export), its plan made for `tile` or its own input.
    pub fn from_bundle(b: Bundle, tile: Option<[usize; 2]>) -> Result<Model, ModelError> {
        let precision = Precision::parse(&b.manifest.precision).map_err(ModelError::Onnx)?;
        let runner = Runner::load_as(&b.model, tile, precision).map_err(ModelError::Onnx)?;
        let [_, c, h, w] = runner.declared_shape;
        if [c, h, w] != b.manifest.input {
            return Err(ModelError::InputMismatch {
                manifest: b.manifest.input,
                model: runner.declared_shape,
            });
        }
        Ok(Model {
            manifest: b.manifest,
            runner,
        })
    }
}
