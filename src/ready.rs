//! The readiness file: `1` once every filesystem is mounted and published (upstream wrote `1`/`0` to
//! `/result`; we write `1` only when ready and remove the file otherwise, so a stale success is impossible).
//! Written atomically: a temporary file, fsync, rename, fsync of the directory.
#![forbid(unsafe_code)]

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

/// True when `path` says ready.
pub fn is_ready(path: &Path) -> bool {
    fs::read_to_string(path)
        .map(|s| s.trim() == "1")
        .unwrap_or(false)
}

/// Mark ready, atomically; creates the parent directory.
pub fn mark_ready(path: &Path) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("/"));
    fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    {
        let mut f = File::create(&tmp)?;
        f.write_all(b"1\n")?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()
}

/// Remove the readiness file (missing is fine).
pub fn clear(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_round_trip() {
        let dir = std::env::temp_dir().join(format!("encfs-ready-{}", std::process::id()));
        let p = dir.join("sub/ready");
        assert!(!is_ready(&p));
        mark_ready(&p).unwrap();
        assert!(is_ready(&p));
        clear(&p).unwrap();
        assert!(!is_ready(&p));
        clear(&p).unwrap();
        fs::write(&p, "0\n").unwrap();
        assert!(!is_ready(&p), "upstream's failure value is not ready");
        fs::remove_dir_all(dir).unwrap();
    }
}
