//! The files that decide what the unit runs — its config and the public
//! key every model must be signed with — must be owned by root or the
//! unit's own user and not writable by everyone; so must the folder
//! holding them (unless it is sticky, like /tmp). Otherwise anyone with an
//! account on the unit could make it run their configuration, or trust
//! their key and then their model. Group write is left to the admin (a
//! `nemascope` group that may edit the config is a choice, and umask 002
//! systems make it the default), unlike `sshd`'s stricter `StrictModes`.

use std::path::Path;

/// Why `path` (the unit's `what`) cannot be trusted, if it cannot.
#[cfg(unix)]
pub fn check(path: &Path, what: &str) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let euid = unsafe { libc::geteuid() };
    let real = path
        .canonicalize()
        .map_err(|e| format!("{what} {}: {e}", path.display()))?;
    // The file, then its folder.
    for (first, p) in [
        (true, real.as_path()),
        (false, real.parent().unwrap_or(&real)),
    ] {
        let m = std::fs::metadata(p).map_err(|e| format!("{what} {}: {e}", p.display()))?;
        let mode = m.mode();
        let who = if first {
            what.to_string()
        } else {
            format!("folder holding the {what}")
        };
        if m.uid() != 0 && m.uid() != euid {
            return Err(format!(
                "{who} {} is owned by uid {}, neither root nor this unit's user ({euid}); \
                 it decides what the unit runs",
                p.display(),
                m.uid()
            ));
        }
        // A sticky folder (/tmp) lets no one replace another's file.
        let sticky = !first && mode & 0o1000 != 0;
        if mode & 0o002 != 0 && !sticky {
            return Err(format!(
                "{who} {} is writable by anyone (mode {:o}); it decides what the unit runs: \
                 `chmod o-w {}`",
                p.display(),
                mode & 0o7777,
                p.display()
            ));
        }
    }
    Ok(())
}

#[cfg(not(unix))]
pub fn check(_path: &Path, _what: &str) -> Result<(), String> {
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn chmod(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn files_and_folders_others_can_write_are_refused() {
        let d = tempfile::tempdir().unwrap();
        chmod(d.path(), 0o755);
        let key = d.path().join("unit.pub");
        std::fs::write(&key, "key").unwrap();
        chmod(&key, 0o644);
        check(&key, "public key").unwrap();
        chmod(&key, 0o646);
        let e = check(&key, "public key").unwrap_err();
        assert!(
            e.contains("writable by anyone") && e.contains("chmod o-w"),
            "{e}"
        );
        chmod(&key, 0o664); // a group the admin chose
        check(&key, "public key").unwrap();
        // The folder: anyone could swap the file for another.
        chmod(d.path(), 0o777);
        let e = check(&key, "public key").unwrap_err();
        assert!(e.contains("folder holding the public key"), "{e}");
        // Unless it is sticky, like /tmp.
        chmod(d.path(), 0o1777);
        check(&key, "public key").unwrap();
        chmod(d.path(), 0o700);
        assert!(check(&d.path().join("gone"), "config")
            .unwrap_err()
            .contains("gone"));
    }
}
