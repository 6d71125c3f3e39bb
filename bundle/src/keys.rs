//! ed25519 key files: the signing key stays with whoever trains models,
//! the public key is configured on each edge unit. Both are hex text.

use crate::Error;
use ed25519_dalek::{SigningKey, VerifyingKey};
use std::path::{Path, PathBuf};

/// Makes a new key pair from the OS's randomness and writes `<stem>.key`
/// (secret, mode 0600) and `<stem>.pub`. Refuses to overwrite either.
pub fn generate_keys(stem: &Path) -> Result<(PathBuf, PathBuf), Error> {
    let secret = stem.with_extension("key");
    let public = stem.with_extension("pub");
    for p in [&secret, &public] {
        if p.exists() {
            return Err(Error::Key {
                path: p.clone(),
                why: "exists; not overwritten".into(),
            });
        }
    }
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(|e| Error::Key {
        path: secret.clone(),
        why: format!("no randomness from the OS: {e}"),
    })?;
    let key = SigningKey::from_bytes(&seed);
    write_private(&secret, &format!("{}\n", hex::encode(key.to_bytes())))?;
    std::fs::write(
        &public,
        format!("{}\n", hex::encode(key.verifying_key().to_bytes())),
    )
    .map_err(|source| Error::Io {
        path: public.clone(),
        source,
    })?;
    Ok((secret, public))
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> Result<(), Error> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    f.write_all(text.as_bytes()).map_err(io)
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> Result<(), Error> {
    std::fs::write(path, text).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn read32(path: &Path) -> Result<[u8; 32], Error> {
    let text = nemascope_core::files::read_text(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    hex::decode(text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| Error::Key {
            path: path.to_path_buf(),
            why: "expected 64 hex digits".into(),
        })
}

pub fn read_signing_key(path: &Path) -> Result<SigningKey, Error> {
    Ok(SigningKey::from_bytes(&read32(path)?))
}

pub fn read_public_key(path: &Path) -> Result<VerifyingKey, Error> {
    VerifyingKey::from_bytes(&read32(path)?).map_err(|_| Error::Key {
        path: path.to_path_buf(),
        why: "not a valid ed25519 public key".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_read_back_as_a_pair_and_are_not_overwritten() {
        let tmp = tempfile::tempdir().unwrap();
        let stem = tmp.path().join("lab");
        let (s, p) = generate_keys(&stem).unwrap();
        let sk = read_signing_key(&s).unwrap();
        assert_eq!(read_public_key(&p).unwrap(), sk.verifying_key());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&s).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let before = std::fs::read(&s).unwrap();
        assert!(generate_keys(&stem).is_err());
        assert_eq!(std::fs::read(&s).unwrap(), before);
        // a second pair differs (randomness is used)
        let (s2, _) = generate_keys(&tmp.path().join("other")).unwrap();
        assert_ne!(std::fs::read(&s2).unwrap(), before);
        std::fs::write(&p, "12").unwrap();
        assert!(read_public_key(&p)
            .unwrap_err()
            .to_string()
            .contains("64 hex"));
    }
}
