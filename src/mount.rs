//! Mounting the opened filesystem and publishing it, upstream's way (upstream-spec §3 step 4.5-4.6): the
//! filesystem is mounted at `<parent>/.filesystem-<i>` and published by a relative symlink
//! `mount_point -> .filesystem-<i>`, created last, so an application waiting for `mount_point` never sees a
//! half-mounted directory.
//!
//! Read-only mounts use `noload` (no journal replay: the blob is not written, and a replay on a read-only
//! device would fail); read-write mounts use the defaults.
//!
//! `<parent>` is usually a volume the application container can write, so nothing there is followed: the
//! mount directory is checked with `lstat` (a symlink or file at `.filesystem-<i>` is unlinked, a directory
//! not ours is refused unless empty) and then opened with `O_PATH | O_NOFOLLOW | O_DIRECTORY`, checked again
//! on the open handle, and mounted on through `/proc/self/fd/N`, so a swap after the check cannot redirect
//! the mount. The link is created at a temporary name and renamed over `mount_point`: atomic, and a
//! symlink already there is replaced, never followed.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use sys_mount::{Mount, MountFlags};

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

/// Mount ext4 from `device` at `dir` (created if missing; see [`mount_dir`]).
pub fn mount_ext4(device: &Path, dir: &Path, read_only: bool) -> Result<(), Error> {
    let (flags, data) = if read_only {
        (
            MountFlags::RDONLY | MountFlags::NODEV | MountFlags::NOSUID,
            "noload",
        )
    } else {
        (MountFlags::NODEV | MountFlags::NOSUID, "")
    };
    mount_at(device, dir, "ext4", flags, data)
}

/// Mount `source` (a `fstype` filesystem) on the directory [`mount_dir`] makes of `dir`, through its open
/// handle: whatever is put at `dir`'s name meanwhile, the mount lands on the directory that was checked.
pub fn mount_at(
    source: &Path,
    dir: &Path,
    fstype: &str,
    flags: MountFlags,
    data: &str,
) -> Result<(), Error> {
    let handle = mount_dir(dir)?;
    let target = PathBuf::from(format!("/proc/self/fd/{}", handle.as_raw_fd()));
    Mount::builder()
        .fstype(fstype)
        .flags(flags)
        .data(data)
        .mount(source, &target)
        .map(|_| ())
        .map_err(err(format!(
            "mount {fstype} {} on {}",
            source.display(),
            dir.display()
        )))
}

/// Make `dir` a directory of ours to mount on, without following anything at its name, and open it
/// (`O_PATH`). A symlink or other non-directory there is unlinked; a directory not ours (another owner, or
/// writable by group or others) is removed when empty and refused otherwise. The handle is checked again:
/// a directory, ours, not group- or world-writable.
pub fn mount_dir(dir: &Path) -> Result<File, Error> {
    let refuse = |why: &str| Error {
        step: format!("prepare the mount directory {}", dir.display()),
        source: io::Error::new(io::ErrorKind::AlreadyExists, why.to_string()),
    };
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent).map_err(err(format!("create {}", parent.display())))?;
    }
    let euid = nix::unistd::geteuid().as_raw();
    let ours = |m: &std::fs::Metadata| m.is_dir() && m.uid() == euid && m.mode() & 0o022 == 0;
    match dir.symlink_metadata() {
        Ok(m) if ours(&m) => {}
        Ok(m) => {
            let removed = if m.is_dir() {
                std::fs::remove_dir(dir)
            } else {
                // unlink: removes a symlink itself, never what it points to.
                std::fs::remove_file(dir)
            };
            removed.map_err(|e| {
                refuse(&format!(
                    "something not ours is there ({}) and cannot be removed: {e}; fix: remove it, and keep the application from writing next to mount_point",
                    describe(&m)
                ))
            })?;
            create_dir(dir)?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => create_dir(dir)?,
        Err(e) => return Err(err(format!("inspect {}", dir.display()))(e)),
    }
    let handle = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_PATH | nix::libc::O_NOFOLLOW | nix::libc::O_DIRECTORY)
        .open(dir)
        .map_err(|e| {
            refuse(&format!(
                "it changed after the check and is no directory now ({e}); fix: keep the application from writing next to mount_point"
            ))
        })?;
    let m = handle
        .metadata()
        .map_err(err(format!("inspect {}", dir.display())))?;
    if !ours(&m) {
        return Err(refuse(&format!(
            "it changed after the check to {}; fix: keep the application from writing next to mount_point",
            describe(&m)
        )));
    }
    Ok(handle)
}

fn create_dir(dir: &Path) -> Result<(), Error> {
    std::fs::DirBuilder::new()
        .mode(0o755)
        .create(dir)
        .map_err(err(format!("create {}", dir.display())))
}

/// What an entry is, for an error message.
fn describe(m: &std::fs::Metadata) -> String {
    let t = m.file_type();
    let kind = if t.is_symlink() {
        "a symlink"
    } else if t.is_dir() {
        "a directory"
    } else {
        "a file"
    };
    format!("{kind} of uid {}, mode {:o}", m.uid(), m.mode() & 0o7777)
}

/// Publish: `mount_point -> .filesystem-<i>` (relative). The link is made at a temporary name and renamed
/// over `mount_point`, so a symlink already there (a stale one of ours, or planted) is replaced atomically and
/// never followed; a file or directory at `mount_point` is an error (we never replace a user's data).
pub fn publish(mount_point: &Path, hidden: &Path) -> Result<(), Error> {
    let target = hidden.file_name().map(PathBuf::from).unwrap_or_default();
    let parent = mount_point
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("/"));
    std::fs::create_dir_all(parent).map_err(err(format!("create {}", parent.display())))?;
    match mount_point.symlink_metadata() {
        Ok(m) if !m.file_type().is_symlink() => {
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
    let name = mount_point
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = parent.join(format!(".{name}.link-tmp"));
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            return Err(err(format!("remove the stale {}", tmp.display()))(e))
        }
        _ => {}
    }
    std::os::unix::fs::symlink(&target, &tmp).map_err(err(format!(
        "link {} -> {}",
        tmp.display(),
        target.display()
    )))?;
    // rename(2) replaces the entry at mount_point (never what a symlink there points to), and refuses to
    // put a link over a directory that appeared meanwhile.
    std::fs::rename(&tmp, mount_point).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        err(format!("publish at {}", mount_point.display()))(e)
    })
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

/// How [`unmount`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmounted {
    /// Unmounted: the filesystem is shut down (ext4 flushed and closed).
    Clean,
    /// Still busy after the patience (a process, such as an application in a sibling container, holds a
    /// file or directory open there): detached lazily (`MNT_DETACH`). It is gone from every mount namespace
    /// it had propagated to, so the path is empty (ENOENT behind the link) instead of a filesystem whose
    /// device is about to go away (EIO); the kernel ends the filesystem when the last open file is closed.
    Lazily,
}

/// Unmount `dir` (retrying while busy for up to `patience`, then detaching lazily), then remove the empty
/// directory.
pub fn unmount(dir: &Path, patience: std::time::Duration) -> Result<Unmounted, Error> {
    use nix::mount::MntFlags;
    let deadline = std::time::Instant::now() + patience;
    let how = loop {
        // UMOUNT_NOFOLLOW: if the name is a symlink now, it is not followed to unmount something else.
        // (sys_mount's UnmountFlags::NOFOLLOW is O_NOFOLLOW's value, which umount2 refuses with EINVAL.)
        match nix::mount::umount2(dir, MntFlags::UMOUNT_NOFOLLOW) {
            Ok(()) => break Unmounted::Clean,
            Err(nix::errno::Errno::EBUSY) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Err(nix::errno::Errno::EBUSY) => {
                nix::mount::umount2(dir, MntFlags::UMOUNT_NOFOLLOW | MntFlags::MNT_DETACH)
                    .map_err(|e| Error {
                        step: format!("unmount {} lazily", dir.display()),
                        source: io::Error::from(e),
                    })?;
                break Unmounted::Lazily;
            }
            Err(e) => {
                return Err(Error {
                    step: format!("unmount {}", dir.display()),
                    source: io::Error::from(e),
                })
            }
        }
    };
    let _ = std::fs::remove_dir(dir);
    Ok(how)
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

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("encfs-mount-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_symlink_at_the_mount_directory_is_replaced_never_followed() {
        let d = scratch("dir-link");
        let victim = d.join("victim");
        std::fs::create_dir(&victim).unwrap();
        std::fs::write(victim.join("data"), "x").unwrap();
        let hidden = hidden_dir(&d.join("share"), 0);
        std::os::unix::fs::symlink(&victim, &hidden).unwrap();
        let handle = mount_dir(&hidden).unwrap();
        let m = hidden.symlink_metadata().unwrap();
        assert!(m.is_dir(), "a real directory replaced the link");
        assert_eq!(
            handle.metadata().unwrap().ino(),
            m.ino(),
            "the handle is it"
        );
        assert_ne!(m.ino(), victim.metadata().unwrap().ino());
        assert_eq!(std::fs::read_to_string(victim.join("data")).unwrap(), "x");
        // A planted file is replaced too; our own directory is kept.
        std::fs::remove_dir(&hidden).unwrap();
        std::fs::write(&hidden, "planted").unwrap();
        mount_dir(&hidden).unwrap();
        assert!(hidden.symlink_metadata().unwrap().is_dir());
        let ino = hidden.metadata().unwrap().ino();
        mount_dir(&hidden).unwrap();
        assert_eq!(hidden.metadata().unwrap().ino(), ino, "ours is reused");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_directory_not_ours_is_replaced_when_empty_and_refused_otherwise() {
        let d = scratch("dir-foreign");
        let hidden = d.join(".filesystem-0");
        std::fs::create_dir(&hidden).unwrap();
        std::os::unix::fs::chown(&hidden, Some(65534), Some(65534)).unwrap();
        mount_dir(&hidden).unwrap();
        let m = hidden.symlink_metadata().unwrap();
        assert_eq!(
            m.uid(),
            nix::unistd::geteuid().as_raw(),
            "an empty one is replaced"
        );
        std::fs::set_permissions(&hidden, std::os::unix::fs::PermissionsExt::from_mode(0o777))
            .unwrap();
        std::fs::write(hidden.join("app-file"), "y").unwrap();
        let e = mount_dir(&hidden).unwrap_err();
        assert!(e.to_string().contains("cannot be removed"), "{e}");
        assert!(e.to_string().contains("mode 777"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn publish_replaces_a_planted_symlink_without_following_it() {
        let d = scratch("publish-link");
        let victim = d.join("victim");
        std::fs::create_dir(&victim).unwrap();
        let hidden = d.join(".filesystem-0");
        std::fs::create_dir(&hidden).unwrap();
        let mp = d.join("share");
        std::os::unix::fs::symlink(&victim, &mp).unwrap();
        publish(&mp, &hidden).unwrap();
        assert_eq!(
            std::fs::read_link(&mp).unwrap(),
            PathBuf::from(".filesystem-0")
        );
        assert_eq!(
            std::fs::read_dir(&victim).unwrap().count(),
            0,
            "nothing made in the victim"
        );
        // A stale temporary (planted as a symlink to the victim) is removed, not followed.
        std::os::unix::fs::symlink(&victim, d.join(".share.link-tmp")).unwrap();
        publish(&mp, &hidden).unwrap();
        assert!(d.join(".share.link-tmp").symlink_metadata().is_err());
        assert_eq!(std::fs::read_dir(&victim).unwrap().count(), 0);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
