//! The readiness file: written once every filesystem is mounted and published, removed at shutdown and on
//! any failure (upstream wrote `1`/`0` to `/result`; a stale success is impossible here). Written atomically:
//! a temporary file, fsync, rename, fsync of the directory.
//!
//! The directory may be on a volume the application can write: the file is written the one atomic way
//! ([`crate::atomic`]: a new temporary relative to the directory's handle, `O_CREAT | O_EXCL | O_NOFOLLOW`,
//! a stale or planted entry there unlinked and never followed, `renameat` over the name).
//!
//! Content: one JSON object, `{"ready": true, "filesystems": [...], "secrets": [...]}` with each filesystem's
//! mount point, devices, read-only flag, blob ETag and step timings, and each released secret's file, format,
//! mode, owner, kid and kty (`secrets` only when there are some); never a secret's value. `encfs-init probe`
//! accepts it (and upstream's `1`).
#![forbid(unsafe_code)]

use std::fs;
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
    /// The block device under it: `/dev/nbdN` (transport nbd) or `/dev/loopN` (transport fuse).
    pub block_device: String,
    /// How the blob is served to the kernel: `nbd` or `fuse` (FUSE file on a loop device).
    pub transport: String,
    /// Mounted read-only.
    pub read_only: bool,
    /// The blob's ETag pinned at open (none for a local file).
    pub etag: Option<String>,
    /// Read-write Azure blobs: the write lease, `held`, `released` or `lost` (writes fail; not ready).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease: Option<crate::blob::LeaseWatch>,
    /// Milliseconds per step, in order.
    pub timings_ms: Vec<(String, u64)>,
    /// The latest health read (none before the first).
    pub health: Option<Health>,
    /// The dm-verity mapping under dm-crypt, for an image whose root hash the manifest pins.
    pub verity: Option<VerityState>,
    /// `ready`, `restarting` (a dead mount being re-opened) or `down` (dead and not re-opened).
    pub state: MountState,
    /// Why it is not `ready`: the death, then the latest failed re-open.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

/// Where a filesystem is in its life (see `crate::init::revive`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MountState {
    /// Mounted and published.
    #[default]
    Ready,
    /// Dead: detached, its open sequence running again.
    Restarting,
    /// Dead and not re-opened (`on_failure = "stay-down"`, or the restart limit was reached).
    Down,
}

/// The dm-verity mapping of a pinned filesystem, and whether it has seen a corrupted block.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VerityState {
    /// The mapping's name, `remote-verity-<i>`.
    pub name: String,
    /// Its device, `/dev/dm-M`.
    pub device: String,
    /// The pinned root hash, hex.
    pub root_hash: String,
    /// A block read did not match the tree (dm-verity's status `C`): that block reads as EIO, the others are
    /// still served. `encfs-init probe` fails from then on.
    pub corrupted: bool,
    /// The first corrupted block the kernel named (in 4096-byte blocks of the image), when it did.
    pub first_bad_block: Option<u64>,
}

/// The result of the periodic health reads of one filesystem.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Health {
    /// The latest read succeeded.
    pub ok: bool,
    /// When it ended, seconds since the Unix epoch.
    pub checked_unix: u64,
    /// How long it took.
    pub latency_ms: u64,
    /// Why it failed.
    pub error: Option<String>,
    /// Reads so far.
    pub checks: u64,
    /// Failed reads so far.
    pub failures: u64,
}

/// A released secret, as the readiness file lists it: where and how it is written, never its value.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SecretState {
    /// Position in the manifest.
    pub index: usize,
    /// The file, under the secrets' mount point.
    pub path: String,
    /// `raw`, `base64`, `jwk` or `pem`.
    pub format: String,
    /// Octal, e.g. `0400`.
    pub mode: String,
    /// `uid:gid`.
    pub owner: String,
    /// The key's name in the vault (none for a test-mode raw key).
    pub kid: Option<String>,
    /// The released key's type.
    pub kty: String,
}

#[derive(serde::Serialize)]
struct State<'a> {
    ready: bool,
    filesystems: &'a [FsState],
    #[serde(skip_serializing_if = "<[SecretState]>::is_empty")]
    secrets: &'a [SecretState],
}

/// True when `path` says ready: our JSON with `"ready": true` and no filesystem whose latest health read
/// failed, whose write lease is lost or whose dm-verity mapping saw a corrupted block ([`unhealthy`]), or
/// upstream's `1`.
pub fn is_ready(path: &Path) -> bool {
    let Ok(text) = fs::read_to_string(path) else {
        return false;
    };
    if text.trim() == "1" {
        return true;
    }
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
        return false;
    };
    v.get("ready").and_then(serde_json::Value::as_bool) == Some(true) && problems(&v).is_empty()
}

/// Why the filesystems in the readiness file at `path` keep it from saying ready, one line each (a failed
/// latest health read, a lost write lease, a dm-verity mapping that saw a corrupted block); empty when none
/// does.
pub fn unhealthy(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .map_or_else(Vec::new, |v| problems(&v))
}

/// The problems of the filesystems in a readiness document, one line each.
fn problems(v: &serde_json::Value) -> Vec<String> {
    let mut why = Vec::new();
    for f in v
        .get("filesystems")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = format!(
            "filesystem[{}] ({})",
            f.get("index").unwrap_or(&serde_json::Value::Null),
            f.get("mount_point")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("?")
        );
        let state = f.get("state").and_then(serde_json::Value::as_str);
        if let Some(st @ ("restarting" | "down")) = state {
            let because = f
                .get("why")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("see the log");
            why.push(format!("{name}: {st}: {because}"));
        }
        if f.pointer("/verity/corrupted") == Some(&serde_json::Value::Bool(true)) {
            let block = f
                .pointer("/verity/first_bad_block")
                .and_then(serde_json::Value::as_u64)
                .map_or_else(String::new, |b| format!(" (first bad block {b})"));
            why.push(format!(
                "{name}: corrupted: a block does not match verity_root_hash{block}"
            ));
        }
        if f.get("lease").and_then(serde_json::Value::as_str) == Some("lost") {
            why.push(format!(
                "{name}: the blob's write lease is lost: writes fail (see the log)"
            ));
        }
        if f.pointer("/health/ok") == Some(&serde_json::Value::Bool(false)) {
            let error = f
                .pointer("/health/error")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("?");
            why.push(format!("{name}: the latest health read failed: {error}"));
        }
    }
    why
}

/// Mark ready with no filesystem details.
pub fn mark_ready(path: &Path) -> Result<(), crate::atomic::Error> {
    mark_ready_with(path, &[], &[])
}

/// Mark ready, atomically, with each filesystem's state and each released secret's listing; creates the
/// parent directory.
pub fn mark_ready_with(
    path: &Path,
    filesystems: &[FsState],
    secrets: &[SecretState],
) -> Result<(), crate::atomic::Error> {
    let mut body = serde_json::to_vec_pretty(&State {
        ready: true,
        filesystems,
        secrets,
    })
    .map_err(|e| crate::atomic::Error {
        step: crate::atomic::Step::Write,
        name: path.as_os_str().to_os_string(),
        source: e.into(),
    })?;
    body.push(b'\n');
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("/"));
    fs::create_dir_all(dir).map_err(|source| crate::atomic::Error {
        step: crate::atomic::Step::OpenDir,
        name: dir.as_os_str().to_os_string(),
        source,
    })?;
    let name = path.file_name().unwrap_or(path.as_os_str());
    let handle = crate::atomic::open_dir(dir)?;
    crate::atomic::write_at(
        &handle,
        name,
        &body,
        crate::atomic::Options {
            mode: 0o644,
            owner: None,
        },
    )
}

/// Remove the readiness file (missing is fine).
pub fn clear(path: &Path) -> std::io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
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
            block_device: "/dev/nbd0".into(),
            transport: "nbd".into(),
            read_only: true,
            etag: Some("\"0x1\"".into()),
            lease: None,
            timings_ms: vec![("key".into(), 3)],
            health: None,
            verity: None,
            state: MountState::Ready,
            why: None,
        };
        mark_ready_with(&p, std::slice::from_ref(&fs_state), &[]).unwrap();
        let v: serde_json::Value = serde_json::from_str(&fs::read_to_string(&p).unwrap()).unwrap();
        assert_eq!(v["ready"], true);
        assert_eq!(v["filesystems"][0]["mount_point"], "/mnt/a");
        assert!(is_ready(&p));
        // A failed health read makes the probe fail; a good one does not.
        let mut sick = fs_state.clone();
        sick.health = Some(Health {
            ok: false,
            checked_unix: 1,
            latency_ms: 5,
            error: Some("I/O error".into()),
            checks: 3,
            failures: 1,
        });
        mark_ready_with(&p, &[fs_state.clone(), sick.clone()], &[]).unwrap();
        assert!(
            !is_ready(&p),
            "a filesystem failing its health read is not ready"
        );
        sick.health = sick.health.map(|h| Health {
            ok: true,
            error: None,
            ..h
        });
        mark_ready_with(&p, &[fs_state.clone(), sick], &[]).unwrap();
        assert!(is_ready(&p));
        // A verity mapping that saw a corrupted block makes the probe fail, though its health read passed.
        let mut pinned = fs_state.clone();
        pinned.verity = Some(VerityState {
            name: "remote-verity-0".into(),
            device: "/dev/dm-0".into(),
            root_hash: "ab".repeat(32),
            corrupted: false,
            first_bad_block: None,
        });
        mark_ready_with(&p, std::slice::from_ref(&pinned), &[]).unwrap();
        assert!(is_ready(&p), "a verified mapping is ready");
        if let Some(v) = pinned.verity.as_mut() {
            v.corrupted = true;
            v.first_bad_block = Some(4100);
        }
        mark_ready_with(&p, &[fs_state, pinned], &[]).unwrap();
        assert!(!is_ready(&p), "a corrupted mapping is not ready");
        assert_eq!(
            unhealthy(&p),
            vec![
                "filesystem[0] (/mnt/a): corrupted: a block does not match verity_root_hash (first bad \
                 block 4100)"
                    .to_string()
            ]
        );
        let v: serde_json::Value = serde_json::from_str(&fs::read_to_string(&p).unwrap()).unwrap();
        assert_eq!(v["filesystems"][1]["verity"]["first_bad_block"], 4100);
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

    #[test]
    fn secrets_are_listed_without_values_and_left_out_when_there_are_none() {
        let dir = std::env::temp_dir().join(format!("encfs-ready-secrets-{}", std::process::id()));
        let p = dir.join("ready");
        let s = SecretState {
            index: 1,
            path: "/mnt/remote/secrets/tls/key.pem".into(),
            format: "pem".into(),
            mode: "0440".into(),
            owner: "1000:1001".into(),
            kid: Some("tls".into()),
            kty: "RSA-HSM".into(),
        };
        mark_ready_with(&p, &[], std::slice::from_ref(&s)).unwrap();
        let v: serde_json::Value = serde_json::from_str(&fs::read_to_string(&p).unwrap()).unwrap();
        assert_eq!(
            v["secrets"][0],
            serde_json::json!({"index": 1, "path": "/mnt/remote/secrets/tls/key.pem", "format": "pem",
                "mode": "0440", "owner": "1000:1001", "kid": "tls", "kty": "RSA-HSM"})
        );
        assert!(is_ready(&p));
        mark_ready(&p).unwrap();
        let v: serde_json::Value = serde_json::from_str(&fs::read_to_string(&p).unwrap()).unwrap();
        assert!(v.get("secrets").is_none(), "no member without secrets");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_filesystem_restarting_or_down_makes_the_probe_fail_and_says_why() {
        let dir = std::env::temp_dir().join(format!("encfs-ready-state-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let p = dir.join("ready");
        for (state, ready) in [("ready", true), ("restarting", false), ("down", false)] {
            let body = format!(
                "{{\"ready\": true, \"filesystems\": [{{\"index\": 0, \"state\": \"ready\"}}, \
                 {{\"index\": 1, \"mount_point\": \"/mnt/b\", \"state\": \"{state}\", \"why\": \"dead: x\"}}]}}"
            );
            fs::write(&p, body).unwrap();
            assert_eq!(is_ready(&p), ready, "state {state}");
            if !ready {
                assert_eq!(
                    unhealthy(&p),
                    vec![format!("filesystem[1] (/mnt/b): {state}: dead: x")]
                );
            }
        }
        let st = serde_json::to_value(MountState::Restarting).unwrap();
        assert_eq!(st, "restarting");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_lost_write_lease_makes_the_probe_fail() {
        let dir = std::env::temp_dir().join(format!("encfs-ready-lease-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let p = dir.join("ready");
        for (lease, ready) in [("held", true), ("released", true), ("lost", false)] {
            let body = format!(
                "{{\"ready\": true, \"filesystems\": [{{\"index\": 0}}, {{\"index\": 1, \"lease\": \"{lease}\"}}]}}"
            );
            fs::write(&p, body).unwrap();
            assert_eq!(is_ready(&p), ready, "lease {lease}");
        }
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_symlink_at_the_temporary_name_is_never_followed() {
        let dir = std::env::temp_dir().join(format!("encfs-ready-link-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let victim = dir.join("victim");
        fs::write(&victim, "precious\n").unwrap();
        let p = dir.join("ready");
        let tmp = dir.join(".ready.tmp");
        std::os::unix::fs::symlink(&victim, &tmp).unwrap();
        // The boot's write, then the health thread's rewrites, each with the link planted again.
        for _ in 0..3 {
            mark_ready(&p).unwrap();
            assert_eq!(fs::read_to_string(&victim).unwrap(), "precious\n");
            assert!(is_ready(&p));
            assert!(!p.symlink_metadata().unwrap().file_type().is_symlink());
            std::os::unix::fs::symlink(&victim, &tmp).unwrap();
        }
        // A dangling link (to a file PID 1 would create) is not followed either.
        fs::remove_file(&tmp).unwrap();
        let created = dir.join("created-by-root");
        std::os::unix::fs::symlink(&created, &tmp).unwrap();
        mark_ready(&p).unwrap();
        assert!(!created.exists(), "nothing was created through the link");
        // A symlink at the readiness file's own name is replaced, not written through.
        fs::remove_file(&p).unwrap();
        std::os::unix::fs::symlink(&victim, &p).unwrap();
        mark_ready(&p).unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious\n");
        assert!(p.symlink_metadata().unwrap().is_file());
        fs::remove_dir_all(dir).unwrap();
    }
}
