//! The readiness file: written once every filesystem is mounted and published, removed at shutdown and on
//! any failure (upstream wrote `1`/`0` to `/result`; a stale success is impossible here). Written atomically:
//! a temporary file, fsync, rename, fsync of the directory.
//!
//! Content: one JSON object, `{"ready": true, "filesystems": [...]}` with each filesystem's mount point,
//! devices, read-only flag, blob ETag and step timings; never a secret. `encfs-init probe` accepts it (and
//! upstream's `1`).
#![forbid(unsafe_code)]

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

/// One filesystem's state, as the readiness file reports it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FsState {
    /// Position in the plan.
    pub index: usize,
    /// Where the application finds it.
    pub mount_point: String,
    /// The dm-crypt device.
    pub device: String,
    /// The NBD device under it.
    pub nbd_device: String,
    /// Mounted read-only.
    pub read_only: bool,
    /// The blob's ETag pinned at open (none for a local file).
    pub etag: Option<String>,
    /// Milliseconds per step, in order.
    pub timings_ms: Vec<(String, u64)>,
}

#[derive(serde::Serialize)]
struct State<'a> {
    ready: bool,
    filesystems: &'a [FsState],
}

/// True when `path` says ready: our JSON with `"ready": true`, or upstream's `1`.
pub fn is_ready(path: &Path) -> bool {
    let Ok(text) = fs::read_to_string(path) else {
        return false;
    };
    if text.trim() == "1" {
        return true;
    }
    serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.get("ready").and_then(serde_json::Value::as_bool))
        .unwrap_or(false)
}

/// Mark ready with no filesystem details.
pub fn mark_ready(path: &Path) -> io::Result<()> {
    mark_ready_with(path, &[])
}

/// Mark ready, atomically, with each filesystem's state; creates the parent directory.
pub fn mark_ready_with(path: &Path, filesystems: &[FsState]) -> io::Result<()> {
    let mut body = serde_json::to_vec_pretty(&State {
        ready: true,
        filesystems,
    })
    .map_err(io::Error::other)?;
    body.push(b'\n');
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
        f.write_all(&body)?;
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
        let fs_state = FsState {
            index: 0,
            mount_point: "/mnt/a".into(),
            device: "/dev/dm-0".into(),
            nbd_device: "/dev/nbd0".into(),
            read_only: true,
            etag: Some("\"0x1\"".into()),
            timings_ms: vec![("key".into(), 3)],
        };
        mark_ready_with(&p, &[fs_state]).unwrap();
        let v: serde_json::Value = serde_json::from_str(&fs::read_to_string(&p).unwrap()).unwrap();
        assert_eq!(v["ready"], true);
        assert_eq!(v["filesystems"][0]["mount_point"], "/mnt/a");
        assert!(is_ready(&p));
        clear(&p).unwrap();
        assert!(!is_ready(&p));
        clear(&p).unwrap();
        fs::write(&p, "1\n").unwrap();
        assert!(is_ready(&p), "upstream's value is accepted");
        fs::write(&p, "0\n").unwrap();
        assert!(!is_ready(&p), "upstream's failure value is not ready");
        fs::write(&p, "{\"ready\": false}").unwrap();
        assert!(!is_ready(&p));
        fs::remove_dir_all(dir).unwrap();
    }
}
