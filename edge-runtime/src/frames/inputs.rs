//! Frames for batch counting: the files and folders named on the command
//! line, each image with the sample it belongs to (a folder is a sample,
//! as a lab keeps one extraction's images together).

use std::path::{Path, PathBuf};

use nemascope_core::{Error, Result};

/// File endings read as images (PNG, TIFF, JPEG; 8 or 16 bit, gray or RGB).
pub const IMAGE_EXTENSIONS: [&str; 5] = ["png", "tif", "tiff", "jpg", "jpeg"];

/// One image to count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    pub path: PathBuf,
    pub sample: String,
}

/// Whether `p`'s ending is one of [`IMAGE_EXTENSIONS`] (any case).
pub fn is_image(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// A path as text that names it exactly, for keys and logs: UTF-8 as
/// itself, a backslash as `\\`, any byte that is not UTF-8 as `\xNN`. Two
/// different names never share a key (`to_string_lossy` would give every
/// broken name the same `�`), and none is dropped.
pub fn path_key(p: &Path) -> String {
    use std::fmt::Write;
    use std::os::unix::ffi::OsStrExt;
    let mut out = String::new();
    for chunk in p.as_os_str().as_bytes().utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\\' {
                out.push_str("\\\\");
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

fn name_of(p: &Path) -> String {
    p.file_name()
        .map(|n| path_key(Path::new(n)))
        .unwrap_or_else(|| "sample".into())
}

/// Expands `args`: a folder gives its images (sorted by name, not
/// recursive) under the folder's name as sample; a file is its own entry
/// under its parent folder's name. `sample` overrides both. A path that
/// does not exist, or a folder without images, is an error naming it.
pub fn expand(args: &[PathBuf], sample: Option<&str>) -> Result<Vec<Input>> {
    let mut out = Vec::new();
    for a in args {
        let meta = std::fs::metadata(a).map_err(|e| Error::io(a, e))?;
        if meta.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(a)
                .map_err(|e| Error::io(a, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && is_image(p))
                .collect();
            if files.is_empty() {
                return Err(Error::Invalid(format!(
                    "{}: no images ({}) in this folder",
                    a.display(),
                    IMAGE_EXTENSIONS.join(", ")
                )));
            }
            files.sort();
            let s = sample.map_or_else(
                || name_of(&std::path::absolute(a).unwrap_or(a.clone())),
                str::to_owned,
            );
            out.extend(files.into_iter().map(|path| Input {
                path,
                sample: s.clone(),
            }));
        } else {
            let parent = std::path::absolute(a)
                .ok()
                .and_then(|p| p.parent().map(name_of))
                .unwrap_or_else(|| "sample".into());
            out.push(Input {
                path: a.clone(),
                sample: sample.map_or(parent, str::to_owned),
            });
        }
    }
    Ok(out)
}

/// Output file stems must be unique, or one image's mask would overwrite
/// another's: the first clash is an error naming both inputs.
pub fn check_unique_stems(inputs: &[Input]) -> Result<()> {
    let mut seen = std::collections::HashMap::new();
    for i in inputs {
        let stem = i
            .path
            .file_stem()
            .map(|s| path_key(Path::new(s)))
            .unwrap_or_default();
        if let Some(prev) = seen.insert(stem.clone(), &i.path) {
            return Err(Error::Invalid(format!(
                "{} and {} would both write `{stem}.png`; count them in separate runs or rename one",
                prev.display(),
                i.path.display()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_are_samples_and_files_keep_their_parent() {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("soil-A");
        std::fs::create_dir(&a).unwrap();
        for f in ["b.png", "a.TIF", "notes.txt"] {
            std::fs::write(a.join(f), b"x").unwrap();
        }
        let lone = tmp.path().join("lone.jpg");
        std::fs::write(&lone, b"x").unwrap();
        let got = expand(&[a.clone(), lone.clone()], None).unwrap();
        let names: Vec<_> = got
            .iter()
            .map(|i| (name_of(&i.path), i.sample.clone()))
            .collect();
        let tmp_name = name_of(tmp.path());
        assert_eq!(
            names,
            [
                ("a.TIF".to_string(), "soil-A".to_string()),
                ("b.png".into(), "soil-A".into()),
                ("lone.jpg".into(), tmp_name),
            ]
        );
        let got = expand(std::slice::from_ref(&a), Some("S1")).unwrap();
        assert!(got.iter().all(|i| i.sample == "S1"));
        // missing path, empty folder
        assert!(expand(&[tmp.path().join("nope")], None).is_err());
        let empty = tmp.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        let e = expand(&[empty], None).unwrap_err().to_string();
        assert!(e.contains("no images"), "{e}");
    }

    #[test]
    fn clashing_stems_are_refused() {
        let i = |p: &str| Input {
            path: p.into(),
            sample: "s".into(),
        };
        assert!(check_unique_stems(&[i("a/x.png"), i("b/y.png")]).is_ok());
        let e = check_unique_stems(&[i("a/x.png"), i("b/x.tif")]).unwrap_err();
        assert!(e.to_string().contains("x.png"), "{e}");
    }
}
