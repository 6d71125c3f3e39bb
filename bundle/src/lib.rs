//! Signed model bundles.
//!
//! A bundle is a folder: `model.onnx`, `manifest.json` (what the model is,
//! how to feed it, how it scored, the SHA-256 of `model.onnx`) and
//! `manifest.sig` (an ed25519 signature of the manifest's exact bytes, in
//! hex). Signing the manifest signs the model through its hash, so one
//! signature covers both, and the edge unit checks both before it runs a
//! model: [`Bundle::open`] says which check failed.

pub mod keys;
pub mod manifest;

pub use ed25519_dalek::{SigningKey, VerifyingKey};
pub use keys::{generate_keys, read_public_key, read_signing_key};
pub use manifest::{Manifest, ObjectVerifier, FORMAT};

use ed25519_dalek::{Signature, Signer, Verifier};
use nemascope_core::files::{read_file, read_text};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

pub const MODEL_FILE: &str = "model.onnx";
pub const MANIFEST_FILE: &str = "manifest.json";
pub const SIGNATURE_FILE: &str = "manifest.sig";

/// Why a bundle was not written or not accepted.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}: is not empty; a bundle is written into a new folder")]
    Exists(PathBuf),
    #[error("{path}: manifest is not valid: {why}")]
    Manifest { path: PathBuf, why: String },
    #[error("{0}: signature file is malformed (expected 128 hex digits)")]
    BadSignatureFile(PathBuf),
    #[error("{0}: signature does not match the configured public key (signed by another key, or the manifest was changed)")]
    SignatureMismatch(PathBuf),
    #[error("{path}: model.onnx does not match the manifest (SHA-256 {actual}, manifest says {expected})")]
    HashMismatch {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("{path}: key file: {why}")]
    Key { path: PathBuf, why: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// SHA-256 of `bytes`, lower-case hex.
/// Replaces the folder `dir` with one holding `files`, so that a crash or
/// power cut leaves the old folder or the whole new one, never half a
/// bundle: each file is written and fsynced into a temporary sibling,
/// which is fsynced, renamed over `dir` and its parent fsynced. The one
/// folder replace the project has (a written bundle, a unit's copy of its
/// last accepted one).
pub fn write_folder(dir: &Path, files: &[(&str, &[u8])]) -> Result<(), Error> {
    use std::io::Write;
    let tmp = dir.with_extension("partial");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    for (name, bytes) in files {
        let p = tmp.join(name);
        std::fs::File::create(&p)
            .and_then(|mut f| f.write_all(bytes).and_then(|_| f.sync_all()))
            .map_err(io(&p))?;
    }
    let sync_dir = |d: &Path| {
        std::fs::File::open(d)
            .and_then(|f| f.sync_all())
            .map_err(io(d))
    };
    sync_dir(&tmp)?;
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(io(dir))?;
    }
    std::fs::rename(&tmp, dir).map_err(io(dir))?;
    match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => sync_dir(p),
        _ => sync_dir(Path::new(".")),
    }
}

/// Copies the bundle in `from` to `to` ([`write_folder`]), unchecked: the
/// caller opened `from` already.
pub fn copy_bundle(from: &Path, to: &Path) -> Result<(), Error> {
    let mut files = Vec::new();
    for f in [MODEL_FILE, MANIFEST_FILE, SIGNATURE_FILE] {
        let p = from.join(f);
        files.push((f, read_file(&p).map_err(io(&p))?));
    }
    let refs: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (*n, b.as_slice())).collect();
    write_folder(to, &refs)
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A bundle whose signature and model hash were checked.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub model: Vec<u8>,
}

impl Bundle {
    /// Writes a new bundle into `dir` (created; refused if it holds
    /// anything). The manifest's `model_sha256` is filled in here.
    pub fn write(
        dir: &Path,
        mut manifest: Manifest,
        model: &[u8],
        key: &SigningKey,
    ) -> Result<Bundle, Error> {
        if dir.exists() && std::fs::read_dir(dir).map_err(io(dir))?.next().is_some() {
            return Err(Error::Exists(dir.to_path_buf()));
        }
        manifest.model_sha256 = sha256_hex(model);
        manifest.validate().map_err(|why| Error::Manifest {
            path: dir.join(MANIFEST_FILE),
            why,
        })?;
        let text = serde_json::to_vec_pretty(&manifest).expect("manifest serialises");
        let sig = key.sign(&text);
        let sig = format!("{}\n", hex::encode(sig.to_bytes())).into_bytes();
        write_folder(
            dir,
            &[
                (MODEL_FILE, model),
                (MANIFEST_FILE, &text),
                (SIGNATURE_FILE, &sig),
            ],
        )?;
        Ok(Bundle {
            dir: dir.to_path_buf(),
            manifest,
            model: model.to_vec(),
        })
    }

    /// Reads `dir` and accepts it only if the signature verifies under
    /// `key`, the model's hash is the manifest's, and the manifest's values
    /// are in range.
    pub fn open(dir: &Path, key: &VerifyingKey) -> Result<Bundle, Error> {
        let mpath = dir.join(MANIFEST_FILE);
        let spath = dir.join(SIGNATURE_FILE);
        let text = read_file(&mpath).map_err(io(&mpath))?;
        let sig_text = read_text(&spath).map_err(io(&spath))?;
        let sig_bytes: [u8; 64] = hex::decode(sig_text.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| Error::BadSignatureFile(spath.clone()))?;
        key.verify(&text, &Signature::from_bytes(&sig_bytes))
            .map_err(|_| Error::SignatureMismatch(dir.to_path_buf()))?;
        let manifest: Manifest = serde_json::from_slice(&text).map_err(|e| Error::Manifest {
            path: mpath.clone(),
            why: e.to_string(),
        })?;
        manifest.validate().map_err(|why| Error::Manifest {
            path: mpath.clone(),
            why,
        })?;
        let opath = dir.join(MODEL_FILE);
        let model = read_file(&opath).map_err(io(&opath))?;
        let actual = sha256_hex(&model);
        if actual != manifest.model_sha256 {
            return Err(Error::HashMismatch {
                path: opath,
                expected: manifest.model_sha256,
                actual,
            });
        }
        Ok(Bundle {
            dir: dir.to_path_buf(),
            manifest,
            model,
        })
    }
}

/// The public half of `key`, for tests and for printing after keygen.
pub fn public_of(key: &SigningKey) -> VerifyingKey {
    key.verifying_key()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    #[test]
    fn written_bundle_opens_and_every_tamper_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("b");
        let k = key(1);
        let b = Bundle::write(&dir, Manifest::example(), b"onnx bytes", &k).unwrap();
        assert_eq!(b.manifest.model_sha256, sha256_hex(b"onnx bytes"));
        let ok = Bundle::open(&dir, &k.verifying_key()).unwrap();
        assert_eq!(ok.model, b"onnx bytes");
        assert_eq!(ok.manifest, b.manifest);

        // another key
        let e = Bundle::open(&dir, &key(2).verifying_key()).unwrap_err();
        assert!(matches!(e, Error::SignatureMismatch(_)), "{e}");

        // model swapped
        std::fs::write(dir.join(MODEL_FILE), b"other bytes").unwrap();
        let e = Bundle::open(&dir, &k.verifying_key()).unwrap_err();
        assert!(matches!(e, Error::HashMismatch { .. }), "{e}");
        std::fs::write(dir.join(MODEL_FILE), b"onnx bytes").unwrap();

        // manifest edited by hand (threshold changed)
        let m = std::fs::read_to_string(dir.join(MANIFEST_FILE)).unwrap();
        std::fs::write(dir.join(MANIFEST_FILE), m.replace("0.5", "0.4")).unwrap();
        let e = Bundle::open(&dir, &k.verifying_key()).unwrap_err();
        assert!(matches!(e, Error::SignatureMismatch(_)), "{e}");
        std::fs::write(dir.join(MANIFEST_FILE), &m).unwrap();
        Bundle::open(&dir, &k.verifying_key()).unwrap();

        // signature garbled, then missing
        std::fs::write(dir.join(SIGNATURE_FILE), "xyz").unwrap();
        let e = Bundle::open(&dir, &k.verifying_key()).unwrap_err();
        assert!(matches!(e, Error::BadSignatureFile(_)), "{e}");
        std::fs::remove_file(dir.join(SIGNATURE_FILE)).unwrap();
        let e = Bundle::open(&dir, &k.verifying_key()).unwrap_err();
        assert!(e.to_string().contains(SIGNATURE_FILE), "{e}");
    }

    #[test]
    fn write_refuses_a_folder_with_files_and_bad_manifests() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("keep.txt"), "mine").unwrap();
        let e = Bundle::write(tmp.path(), Manifest::example(), b"m", &key(1)).unwrap_err();
        assert!(matches!(e, Error::Exists(_)));
        assert_eq!(
            std::fs::read_to_string(tmp.path().join("keep.txt")).unwrap(),
            "mine"
        );
        let mut m = Manifest::example();
        m.classes.clear();
        let e = Bundle::write(&tmp.path().join("n"), m, b"m", &key(1)).unwrap_err();
        assert!(e.to_string().contains("classes"), "{e}");
        assert!(!tmp.path().join("n").exists());
    }
}
