//! Writing files so that a crash or power cut leaves either the old content
//! or the whole new one: what every result, checkpoint and report uses.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The temporary name beside `path`: hidden, and named so it cannot be a
/// file of the user's (`counts.csv` → `.counts.csv.nemascope-tmp.csv`).
/// The extension stays last, for writers that pick the format from it
/// (libtorch's `VarStore::save`).
fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match path.extension() {
        Some(ext) => {
            path.with_file_name(format!(".{name}.nemascope-tmp.{}", ext.to_string_lossy()))
        }
        None => path.with_file_name(format!(".{name}.nemascope-tmp")),
    }
}

/// Replaces `path` with what `write` puts into the temporary file it is
/// given: that file is then fsynced, renamed over `path`, and the folder
/// fsynced. A failure removes the temporary file and leaves `path` as it
/// was.
pub fn replace_with(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let tmp = temp_path(path);
    let written = write(&tmp).and_then(|_| {
        File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::io(&tmp, e))
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

/// Why `path` cannot be read as a file, when it exists but is not a
/// regular one (links followed): a FIFO would block the reader with no
/// message, a device or socket never ends, and a folder fails late with a
/// bare "Is a directory". A path that does not exist passes: opening it
/// says so.
pub fn check_regular(path: &Path) -> std::result::Result<(), String> {
    match std::fs::metadata(path) {
        Ok(meta) if !meta.is_file() => Err(format!(
            "is {}, not a regular file",
            file_kind(&meta.file_type())
        )),
        _ => Ok(()),
    }
}

/// `std::fs::read` for a path a user named: what is not a regular file is
/// refused ([`check_regular`], an `InvalidInput` error naming what it is)
/// instead of blocking on a FIFO or reading a device without end.
pub fn read_file(path: &Path) -> std::io::Result<Vec<u8>> {
    guard(path)?;
    std::fs::read(path)
}

/// `std::fs::read_to_string`, refusing what [`read_file`] refuses.
pub fn read_text(path: &Path) -> std::io::Result<String> {
    guard(path)?;
    std::fs::read_to_string(path)
}

fn guard(path: &Path) -> std::io::Result<()> {
    check_regular(path).map_err(|why| std::io::Error::new(std::io::ErrorKind::InvalidInput, why))
}

/// What a non-regular file is, in words.
fn file_kind(t: &std::fs::FileType) -> &'static str {
    if t.is_dir() {
        return "a folder";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if t.is_socket() {
            return "a socket";
        }
        if t.is_block_device() || t.is_char_device() {
            return "a device";
        }
    }
    "not a plain file"
}

/// Writes `bytes` to `path` durably ([`replace_with`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    replace_with(path, |tmp| {
        File::create(tmp)
            .and_then(|mut f| f.write_all(bytes))
            .map_err(|e| Error::io(tmp, e))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn fifos_and_folders_are_refused_by_name() {
        let tmp = tempfile::tempdir().unwrap();
        let fifo = tmp.path().join("pipe.png");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let e = check_regular(&fifo).unwrap_err();
        assert_eq!(e, "is a FIFO (named pipe), not a regular file");
        let e = check_regular(tmp.path()).unwrap_err();
        assert_eq!(e, "is a folder, not a regular file");
        let file = tmp.path().join("a.png");
        std::fs::write(&file, b"x").unwrap();
        check_regular(&file).unwrap();
        check_regular(&tmp.path().join("missing")).unwrap();
        let e = read_text(&fifo).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
        assert!(read_file(&fifo).is_err());
        assert_eq!(read_text(&file).unwrap(), "x");
    }

    #[test]
    fn replaces_whole_and_leaves_no_temporary() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("counts.csv");
        write_atomic(&p, b"old").unwrap();
        // a user's file that a naive `with_extension("tmp")` would clobber
        std::fs::write(tmp.path().join("counts.tmp"), b"mine").unwrap();
        write_atomic(&p, b"new").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        assert_eq!(
            std::fs::read(tmp.path().join("counts.tmp")).unwrap(),
            b"mine"
        );
        let names: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        // The extension stays last (libtorch picks a format from it).
        let t = temp_path(&tmp.path().join("model.safetensors"));
        let t = t.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(t, ".model.safetensors.nemascope-tmp.safetensors");
    }

    #[test]
    fn a_failed_write_keeps_the_old_file() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("state.json");
        write_atomic(&p, b"old").unwrap();
        // the target is a folder: rename fails, nothing changes
        let d = tmp.path().join("dir");
        std::fs::create_dir(&d).unwrap();
        std::fs::write(d.join("x"), b"x").unwrap();
        assert!(write_atomic(&d, b"new").is_err());
        assert!(!temp_path(&d).exists());
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        // a folder that does not exist: a clear error naming it
        let e = write_atomic(&tmp.path().join("nope/a.json"), b"x").unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
    }
}
