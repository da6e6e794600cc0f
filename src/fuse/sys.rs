//! The system calls of the FUSE transport: opening `/dev/fuse`, mounting a FUSE filesystem on it ourselves
//! (we are root: no fusermount, no libfuse), cloning the device fd per serving thread
//! (`FUSE_DEV_IOC_CLONE`), and unmounting.

#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::mount::{MntFlags, MsFlags};

/// The FUSE device.
pub const DEV_FUSE: &str = "/dev/fuse";

/// Open `/dev/fuse` (close-on-exec, as every std open: children never inherit it).
pub fn open_dev() -> io::Result<File> {
    OpenOptions::new().read(true).write(true).open(DEV_FUSE)
}

/// Mount a FUSE filesystem served through `dev` on `dir`: root's (`user_id=0,group_id=0`, no
/// `allow_other`: only root may enter), root directory mode 0700, `nosuid,nodev,noexec`, read-only when
/// asked.
pub fn mount(dev: &File, dir: &Path, read_only: bool) -> io::Result<()> {
    let data = format!("fd={},rootmode=40000,user_id=0,group_id=0", dev.as_raw_fd());
    let mut flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    if read_only {
        flags |= MsFlags::MS_RDONLY;
    }
    nix::mount::mount(
        Some("encfs-init"),
        dir,
        Some("fuse"),
        flags,
        Some(data.as_str()),
    )
    .map_err(io::Error::from)
}

// `FUSE_DEV_IOC_CLONE`: `_IOR(229, 0, uint32_t)`; the argument points to the fd to clone.
nix::ioctl_read!(fuse_dev_ioc_clone, 229, 0, u32);

/// A new `/dev/fuse` fd attached to the same connection as `master`: requests read from it are answered
/// on it, so each serving thread has a queue of its own in the kernel (Linux 4.2+). Errors (an old kernel,
/// a seccomp filter) leave the caller to share `master`.
pub fn clone_dev(master: &File) -> io::Result<File> {
    let new = open_dev()?;
    let mut fd = u32::try_from(master.as_raw_fd())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: FUSE_DEV_IOC_CLONE reads one u32 (the fd to clone) through the pointer, which points to
    // `fd`, alive and properly aligned for the whole call; `new` is an open /dev/fuse. The kernel writes
    // nothing back. The result is checked.
    unsafe { fuse_dev_ioc_clone(new.as_raw_fd(), &mut fd) }.map_err(io::Error::from)?;
    Ok(new)
}

/// Unmount the FUSE filesystem at `dir`. Busy (the loop device's last reference to the file is dropped
/// asynchronously) is retried for `patience`; still busy then (the loop device is held open from above, by a
/// filesystem detached lazily because an application holds a file there), the connection is aborted and the
/// mount detached ([`abort`]): a lazy detach alone would leave the serving threads waiting for requests
/// forever. Not mounted is success.
pub fn unmount(dir: &Path, patience: Duration) -> io::Result<()> {
    let deadline = Instant::now() + patience;
    loop {
        match nix::mount::umount2(dir, MntFlags::empty()) {
            Ok(()) => return Ok(()),
            Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => return Ok(()),
            Err(nix::errno::Errno::EBUSY) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(nix::errno::Errno::EBUSY) => {
                log::warn!(
                    "fuse: {} still busy after {} ms; aborting the connection and detaching it",
                    dir.display(),
                    patience.as_millis()
                );
                return abort(dir);
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// End the connection at once (fail closed): `MNT_FORCE` aborts the FUSE connection, so that every request
/// waiting on it fails instead of hanging; `MNT_DETACH` removes the mount even while the file is open.
pub fn abort(dir: &Path) -> io::Result<()> {
    nix::mount::umount2(dir, MntFlags::MNT_FORCE | MntFlags::MNT_DETACH).map_err(io::Error::from)
}

/// The kernel's limit on pages per FUSE request (`fs.fuse.max_pages_limit`, Linux 6.12+; 256 before).
pub fn max_pages_limit() -> u32 {
    std::fs::read_to_string("/proc/sys/fs/fuse/max_pages_limit")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(256)
}
