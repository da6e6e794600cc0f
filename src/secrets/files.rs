//! The files in the secrets' tmpfs, always relative to the tmpfs's directory handle and never following a
//! symlink: parent directories made with `mkdirat` and opened `O_DIRECTORY | O_NOFOLLOW`, the file written
//! the one atomic way ([`crate::atomic`]), and at teardown overwritten with zeros, `fsync`ed and unlinked.
#![forbid(unsafe_code)]

use nix::errno::Errno;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{fstat, mkdirat, Mode};
use nix::unistd::{fsync, unlinkat, UnlinkatFlags};
use std::ffi::OsStr;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path};

/// A file step's failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The tmpfs is full.
    #[error("the secrets' tmpfs is full; fix: raise [secrets] size")]
    Full(#[source] crate::atomic::Error),
    /// The atomic write.
    #[error(transparent)]
    Write(crate::atomic::Error),
    /// A directory (or the file at teardown) could not be made or opened.
    #[error("{what} {}", .name.display())]
    Step {
        /// What was being done.
        what: &'static str,
        /// The entry.
        name: std::path::PathBuf,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// What is mounted there is not a tmpfs of ours.
    #[error("the directory is not the tmpfs just mounted there")]
    NotOurs,
    /// A path with something other than plain names (the validator refuses them).
    #[error("{} is not a plain relative path", .0.display())]
    NotPlain(std::path::PathBuf),
}

fn step<'a>(what: &'static str, name: &'a OsStr) -> impl FnOnce(Errno) -> Error + 'a {
    move |e| Error::Step {
        what,
        name: name.into(),
        source: e.into(),
    }
}

/// Open the tmpfs mounted at `dir` and check it is one (and ours).
pub(super) fn open_tmpfs(dir: &Path) -> Result<OwnedFd, Error> {
    let fd = crate::atomic::open_dir(dir).map_err(Error::Write)?;
    let fs = nix::sys::statfs::fstatfs(&fd).map_err(step("inspect", dir.as_os_str()))?;
    let st = fstat(&fd).map_err(step("inspect", dir.as_os_str()))?;
    if fs.filesystem_type() != nix::sys::statfs::TMPFS_MAGIC
        || st.st_uid != nix::unistd::geteuid().as_raw()
        || st.st_mode & 0o022 != 0
    {
        return Err(Error::NotOurs);
    }
    Ok(fd)
}

/// The plain names of `rel`: the directories, then the file.
fn names(rel: &Path) -> Result<(Vec<&OsStr>, &OsStr), Error> {
    let mut names = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(n) => names.push(n),
            _ => return Err(Error::NotPlain(rel.to_path_buf())),
        }
    }
    let file = names
        .pop()
        .ok_or_else(|| Error::NotPlain(rel.to_path_buf()))?;
    Ok((names, file))
}

fn open_subdir(dir: BorrowedFd<'_>, name: &OsStr) -> Result<OwnedFd, Error> {
    openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(step("open the directory", name))
}

/// Write `content` at `rel` under `root`, atomically, owned by `uid:gid` with `mode`.
pub(super) fn write(
    root: &OwnedFd,
    rel: &Path,
    content: &[u8],
    mode: u32,
    uid: u32,
    gid: u32,
) -> Result<(), Error> {
    let (dirs, file) = names(rel)?;
    let mut held: Option<OwnedFd> = None;
    for d in dirs {
        let cur = held.as_ref().map_or(root.as_fd(), AsFd::as_fd);
        match mkdirat(cur, d, Mode::from_bits_truncate(0o755)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(step("make the directory", d)(e)),
        }
        held = Some(open_subdir(cur, d)?);
    }
    let cur = held.as_ref().map_or(root.as_fd(), AsFd::as_fd);
    let opts = crate::atomic::Options {
        mode,
        owner: Some((uid, gid)),
    };
    crate::atomic::write_at(cur, file, content, opts).map_err(|e| {
        if e.errno() == Some(nix::libc::ENOSPC) {
            Error::Full(e)
        } else {
            Error::Write(e)
        }
    })
}

/// Overwrite the file at `rel` under `root` with zeros, `fsync` it, unlink it, and remove its parent
/// directories once they are empty.
pub(super) fn wipe(root: &OwnedFd, rel: &Path) -> Result<(), Error> {
    let (dirs, file) = names(rel)?;
    let mut chain: Vec<OwnedFd> = Vec::new();
    for d in &dirs {
        let cur = chain.last().map_or(root.as_fd(), AsFd::as_fd);
        let next = open_subdir(cur, d)?;
        chain.push(next);
    }
    let cur = chain.last().map_or(root.as_fd(), AsFd::as_fd);
    let fd = openat(
        cur,
        file,
        OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(step("open for wiping", file))?;
    let size = fstat(&fd).map_err(step("inspect", file))?.st_size;
    let mut f = File::from(fd);
    let zeros = [0u8; 4096];
    let mut left = u64::try_from(size).unwrap_or(0);
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        f.write_all(&zeros[..n]).map_err(|source| Error::Step {
            what: "overwrite",
            name: file.into(),
            source,
        })?;
        left -= n as u64;
    }
    fsync(&f).map_err(step("fsync", file))?;
    unlinkat(cur, file, UnlinkatFlags::NoRemoveDir).map_err(step("unlink", file))?;
    // Parent directories, deepest first, when empty (another secret may still be in one).
    for (i, d) in dirs.iter().enumerate().rev() {
        let parent = if i == 0 {
            root.as_fd()
        } else {
            chain[i - 1].as_fd()
        };
        if unlinkat(parent, *d, UnlinkatFlags::RemoveDir).is_err() {
            break;
        }
    }
    Ok(())
}
