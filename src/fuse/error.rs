//! The FUSE transport's one error type.
#![forbid(unsafe_code)]

use super::proto;
use super::sys::DEV_FUSE;
use crate::loopdev;
use std::io;
use std::path::PathBuf;

/// Why attaching or detaching the FUSE transport failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A directory could not be created.
    #[error("create {}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The mount directory's mode could not be set.
    #[error("chmod {}", path.display())]
    Chmod {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// `/dev/fuse` could not be opened.
    #[error("open {DEV_FUSE}; fix: the kernel needs CONFIG_FUSE_FS (or the fuse module), and a container needs the device")]
    OpenDev(#[source] io::Error),
    /// The FUSE mount failed.
    #[error("mount FUSE on {}", dir.display())]
    Mount {
        /// The mount directory.
        dir: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Reading the kernel's `FUSE_INIT` failed.
    #[error("read FUSE_INIT")]
    ReadInit(#[source] io::Error),
    /// The kernel's `FUSE_INIT` could not be decoded or negotiated.
    #[error("FUSE_INIT")]
    Init(#[source] proto::ProtoError),
    /// The kernel's first request was another one.
    #[error("the kernel's first request is opcode {0}, not FUSE_INIT")]
    NotInit(u32),
    /// Answering `FUSE_INIT` failed.
    #[error("answer FUSE_INIT")]
    AnswerInit(#[source] io::Error),
    /// The `/dev/fuse` fd could not be duplicated.
    #[error("dup the {DEV_FUSE} fd")]
    Dup(#[source] io::Error),
    /// A thread could not be started.
    #[error("spawn {what}")]
    Spawn {
        /// Which thread.
        what: &'static str,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The FUSE file could not be opened.
    #[error("open {}", path.display())]
    OpenFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The loop device over the file.
    #[error(transparent)]
    Loop(#[from] loopdev::Error),
    /// Aborting the connection failed.
    #[error("abort FUSE {}", dir.display())]
    Abort {
        /// The mount directory.
        dir: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Unmounting failed.
    #[error("unmount FUSE {}", dir.display())]
    Unmount {
        /// The mount directory.
        dir: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The keeper stopped replacing serving threads (the message says why).
    #[error("{0}")]
    GaveUp(String),
    /// The keeper thread panicked.
    #[error("the FUSE keeper thread panicked")]
    KeeperPanicked,
    /// The final flush of the source failed.
    #[error("final flush failed")]
    Flush(#[source] crate::blob::Error),
}
