//! Writing a file atomically in a directory others may write: the one way encfs-init does it (the readiness
//! file, the released secrets).
//!
//! Everything is relative to an open handle of the directory, so a directory swapped for a symlink after it
//! was opened changes nothing. The content goes into a new temporary `.<name>.tmp`, created with
//! `O_CREAT | O_EXCL | O_NOFOLLOW` (never opened through whatever is at that name: a planted symlink would
//! make PID 1 write its target); a stale entry there is unlinked (which never follows a symlink) and creation
//! tried once more. The temporary is given its owner and mode before a byte is written (`fchown`, `fchmod`),
//! filled, `fsync`ed, and renamed over `<name>` (`renameat` replaces the entry itself, never a symlink's
//! target); then the directory is `fsync`ed.
#![forbid(unsafe_code)]

use nix::errno::Errno;
use nix::fcntl::{openat, renameat, OFlag};
use nix::sys::stat::{fchmod, Mode};
use nix::unistd::{fchown, fsync, unlinkat, Gid, Uid, UnlinkatFlags};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Who owns the new file and its permission bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Permission bits (no set-id bits are meant here).
    pub mode: u32,
    /// `(uid, gid)`, or `None` to keep the creator's.
    pub owner: Option<(u32, u32)>,
}

/// Which step of the write failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Opening the directory.
    OpenDir,
    /// Removing a stale temporary.
    RemoveStale,
    /// Creating the temporary.
    Create,
    /// `fchown`.
    Chown,
    /// `fchmod`.
    Chmod,
    /// Writing the content.
    Write,
    /// `fsync` of the file or the directory.
    Sync,
    /// `renameat` over the name.
    Rename,
}

/// A failed atomic write: the step, the name it was about, and the system's error.
#[derive(Debug, thiserror::Error)]
#[error("{}", self.describe())]
pub struct Error {
    /// The step.
    pub step: Step,
    /// The file (or temporary) name.
    pub name: OsString,
    /// The cause.
    #[source]
    pub source: io::Error,
}

impl Error {
    fn describe(&self) -> String {
        let n = Path::new(&self.name).display();
        match self.step {
            Step::OpenDir => format!("open the directory {n}"),
            Step::RemoveStale => format!("remove the stale temporary {n}"),
            Step::Create => format!("create {n}"),
            Step::Chown => format!("set the owner of {n}"),
            Step::Chmod => format!("set the mode of {n}"),
            Step::Write => format!("write {n}"),
            Step::Sync => format!("fsync {n}"),
            Step::Rename => format!("rename into {n}"),
        }
    }

    /// The system error number, when there is one (ENOSPC: the filesystem is full).
    pub fn errno(&self) -> Option<i32> {
        self.source.raw_os_error()
    }
}

fn fail(step: Step, name: &OsStr) -> impl FnOnce(Errno) -> Error + '_ {
    move |e| Error {
        step,
        name: name.to_os_string(),
        source: io::Error::from(e),
    }
}

/// Open `dir` as a directory handle for [`write_at`] (a symlink at its last component is not followed).
pub fn open_dir(dir: &Path) -> Result<OwnedFd, Error> {
    openat(
        nix::fcntl::AT_FDCWD,
        dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(fail(Step::OpenDir, dir.as_os_str()))
}

/// Write `content` as `name` (one plain name) in the directory `dir`, atomically, with `opts`.
pub fn write_at(dir: impl AsFd, name: &OsStr, content: &[u8], opts: Options) -> Result<(), Error> {
    let dir = dir.as_fd();
    let mut tmp = OsString::from(".");
    tmp.push(name);
    tmp.push(".tmp");
    let tmp = tmp.as_os_str();
    let create = || {
        openat(
            dir,
            tmp,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            // Nobody but us until fchmod: the content is not written before the mode is final.
            Mode::from_bits_truncate(0o600),
        )
    };
    let fd = match create() {
        Err(Errno::EEXIST) => {
            unlinkat(dir, tmp, UnlinkatFlags::NoRemoveDir).map_err(fail(Step::RemoveStale, tmp))?;
            create().map_err(fail(Step::Create, tmp))?
        }
        r => r.map_err(fail(Step::Create, tmp))?,
    };
    let written = (|| {
        if let Some((uid, gid)) = opts.owner {
            fchown(&fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
                .map_err(fail(Step::Chown, tmp))?;
        }
        fchmod(&fd, Mode::from_bits_truncate(opts.mode & 0o777)).map_err(fail(Step::Chmod, tmp))?;
        let mut file = File::from(fd);
        file.write_all(content).map_err(|source| Error {
            step: Step::Write,
            name: tmp.to_os_string(),
            source,
        })?;
        fsync(&file).map_err(fail(Step::Sync, tmp))?;
        renameat(dir, tmp, dir, name).map_err(fail(Step::Rename, name))
    })();
    if written.is_err() {
        let _ = unlinkat(dir, tmp, UnlinkatFlags::NoRemoveDir);
    }
    written?;
    fsync(dir).map_err(fail(Step::Sync, OsStr::from_bytes(b".")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn a_planted_temporary_is_replaced_and_the_mode_is_set() {
        let dir = std::env::temp_dir().join(format!("encfs-atomic-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let victim = dir.join("victim");
        std::fs::write(&victim, "precious").unwrap();
        std::os::unix::fs::symlink(&victim, dir.join(".f.tmp")).unwrap();
        let fd = open_dir(&dir).unwrap();
        let opts = Options {
            mode: 0o440,
            owner: None,
        };
        write_at(&fd, OsStr::new("f"), b"new", opts).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        let m = std::fs::symlink_metadata(dir.join("f")).unwrap();
        assert!(m.is_file());
        assert_eq!(m.mode() & 0o7777, 0o440);
        assert_eq!(std::fs::read(dir.join("f")).unwrap(), b"new");
        assert!(!dir.join(".f.tmp").exists());
        // A symlink at the directory's own name is not followed.
        let link = dir.join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        assert_eq!(open_dir(&link).unwrap_err().step, Step::OpenDir);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
