//! The readiness file: `1\n` once boot is done, absent otherwise.
//!
//! Readers (a `probe` command, a sidecar's health check) must never see a partial file or a stale one:
//!
//! * at the start of a boot any old file is removed, so a crashed previous run cannot claim readiness;
//! * the file is written as `<dir>/.<name>.tmp`, `fsync`ed, renamed over the final name (atomic within a
//!   directory), and the directory is `fsync`ed so the rename itself is durable;
//! * at shutdown it is removed before teardown starts.
#![forbid(unsafe_code)]

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// What readiness means on disk.
pub const CONTENT: &[u8] = b"1\n";

fn tmp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp"))
}

/// Remove the file (and a leftover temporary); absent is fine.
pub fn remove(path: &Path) -> io::Result<()> {
    for p in [tmp_path(path), path.to_owned()] {
        match fs::remove_file(&p) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// Write `1\n` atomically and durably, creating the parent directory.
pub fn write(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&dir)?;
    let tmp = tmp_path(path);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)?;
        f.write_all(CONTENT)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("encfs-init-ready-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn writes_one_newline_creating_the_directory_and_leaves_no_temporary() {
        let dir = tempdir("write");
        let path = dir.join("sub/ready");
        write(&path).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"1\n");
        let names: Vec<_> = fs::read_dir(dir.join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("ready")]);
        // Idempotent: a second write replaces the first.
        write(&path).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"1\n");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn remove_clears_stale_file_and_temporary_and_tolerates_absence() {
        let dir = tempdir("remove");
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ready");
        fs::write(&path, "1\n").unwrap();
        fs::write(tmp_path(&path), "partial").unwrap();
        remove(&path).unwrap();
        assert!(!path.exists() && !tmp_path(&path).exists());
        remove(&path).unwrap();
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn write_fails_when_the_directory_cannot_be_made() {
        let dir = tempdir("blocked");
        fs::create_dir_all(&dir).unwrap();
        let file = dir.join("plainfile");
        fs::write(&file, "").unwrap();
        assert!(write(&file.join("ready")).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}
