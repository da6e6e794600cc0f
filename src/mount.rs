//! Mounting the opened filesystem and publishing it, upstream's way (upstream-spec §3 step 4.5-4.6): the
//! filesystem is mounted at `<parent>/.filesystem-<i>` and published by a relative symlink
//! `mount_point -> .filesystem-<i>`, created last, so an application waiting for `mount_point` never sees a
//! half-mounted directory.
//!
//! Read-only mounts use `noload` (no journal replay: the blob is not written, and a replay on a read-only
//! device would fail); read-write mounts use the defaults.

use std::io;
use std::path::{Path, PathBuf};
use sys_mount::{Mount, MountFlags, UnmountFlags};

/// A mount step's error: what, where, why.
#[derive(Debug)]
pub struct Error {
    /// What we were doing.
    pub step: String,
    /// The cause.
    pub source: io::Error,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.step, self.source)
    }
}

impl std::error::Error for Error {}

fn err(step: String) -> impl FnOnce(io::Error) -> Error {
    move |source| Error { step, source }
}

/// Where filesystem `index` of `mount_point` is mounted: `<parent>/.filesystem-<index>`.
pub fn hidden_dir(mount_point: &Path, index: usize) -> PathBuf {
    let parent = mount_point.parent().unwrap_or(Path::new("/"));
    parent.join(format!(".filesystem-{index}"))
}

/// Mount ext4 from `device` at `dir` (created if missing).
pub fn mount_ext4(device: &Path, dir: &Path, read_only: bool) -> Result<(), Error> {
    std::fs::create_dir_all(dir).map_err(err(format!("create {}", dir.display())))?;
    let (flags, data) = if read_only {
        (
            MountFlags::RDONLY | MountFlags::NODEV | MountFlags::NOSUID,
            "noload",
        )
    } else {
        (MountFlags::NODEV | MountFlags::NOSUID, "")
    };
    Mount::builder()
        .fstype("ext4")
        .flags(flags)
        .data(data)
        .mount(device, dir)
        .map(|_| ())
        .map_err(err(format!(
            "mount ext4 {} on {}",
            device.display(),
            dir.display()
        )))
}

/// Publish: `mount_point -> .filesystem-<i>` (relative). A stale link of ours is replaced; anything else at
/// `mount_point` is an error (we never replace a user's file or directory).
pub fn publish(mount_point: &Path, hidden: &Path) -> Result<(), Error> {
    let target = hidden.file_name().map(PathBuf::from).unwrap_or_default();
    if let Some(parent) = mount_point.parent() {
        std::fs::create_dir_all(parent).map_err(err(format!("create {}", parent.display())))?;
    }
    match std::fs::read_link(mount_point) {
        Ok(old) if old == target => std::fs::remove_file(mount_point).map_err(err(format!(
            "replace the stale link {}",
            mount_point.display()
        )))?,
        Ok(_) | Err(_) if mount_point.symlink_metadata().is_ok() => {
            return Err(Error {
                step: format!("publish at {}", mount_point.display()),
                source: io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "something else is already there; remove it or pick another mount_point",
                ),
            })
        }
        _ => {}
    }
    std::os::unix::fs::symlink(&target, mount_point).map_err(err(format!(
        "link {} -> {}",
        mount_point.display(),
        target.display()
    )))
}

/// Remove the published link, if it is ours.
pub fn unpublish(mount_point: &Path, hidden: &Path) {
    let ours = hidden.file_name().map(PathBuf::from);
    if std::fs::read_link(mount_point).ok() == ours {
        if let Err(e) = std::fs::remove_file(mount_point) {
            log::warn!("remove the link {}: {e}", mount_point.display());
        }
    }
}

/// Remount the filesystem at `dir` read-only: the kernel writes back every dirty page and the journal,
/// and marks the filesystem clean. Refused (EBUSY) while a file is open for writing.
pub fn remount_read_only(dir: &Path) -> Result<(), Error> {
    use nix::mount::{mount, MsFlags};
    mount(
        None::<&str>,
        dir,
        None::<&str>,
        MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
        None::<&str>,
    )
    .map_err(|e| Error {
        step: format!("remount {} read-only", dir.display()),
        source: std::io::Error::from_raw_os_error(e as i32),
    })
}

/// Unmount `dir` (retrying while busy for up to `patience`), then remove the empty directory.
pub fn unmount(dir: &Path, patience: std::time::Duration) -> Result<(), Error> {
    let deadline = std::time::Instant::now() + patience;
    loop {
        match sys_mount::unmount(dir, UnmountFlags::empty()) {
            Ok(()) => break,
            Err(e)
                if e.raw_os_error() == Some(nix::libc::EBUSY)
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Err(e) => {
                return Err(Error {
                    step: format!("unmount {}", dir.display()),
                    source: e,
                })
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_dir_is_next_to_the_mount_point() {
        assert_eq!(
            hidden_dir(Path::new("/mnt/remote/share"), 2),
            PathBuf::from("/mnt/remote/.filesystem-2")
        );
    }

    #[test]
    fn publish_links_relatively_and_refuses_foreign_files() {
        let d = std::env::temp_dir().join(format!("encfs-publish-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let hidden = d.join(".filesystem-0");
        std::fs::create_dir_all(&hidden).unwrap();
        let mp = d.join("share");
        publish(&mp, &hidden).unwrap();
        assert_eq!(
            std::fs::read_link(&mp).unwrap(),
            PathBuf::from(".filesystem-0")
        );
        publish(&mp, &hidden).unwrap(); // a stale link of ours is replaced
        unpublish(&mp, &hidden);
        assert!(mp.symlink_metadata().is_err());
        std::fs::create_dir(&mp).unwrap();
        let e = publish(&mp, &hidden).unwrap_err();
        assert!(e.to_string().contains("already there"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
