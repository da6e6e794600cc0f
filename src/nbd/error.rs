//! The one error type of attaching a block source to the kernel's NBD client ([`super::kernel`]).
#![forbid(unsafe_code)]

use std::io;
use std::path::PathBuf;

/// Why attaching or detaching `/dev/nbdN` failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Neither the netlink family nor `/dev/nbd0`.
    #[error("no /dev/nbd0: the kernel has no NBD client loaded; fix: add \"nbd\" to kernel_modules (VM) or load the nbd module in the utility VM")]
    NoClient,
    /// `socketpair(2)` failed.
    #[error("socketpair")]
    SocketPair(#[source] io::Error),
    /// The netlink `NBD_CMD_CONNECT` failed.
    #[error("netlink NBD connect")]
    Connect(#[source] io::Error),
    /// Our end of the socket could not be cloned.
    #[error("socket")]
    Socket(#[source] io::Error),
    /// A thread could not be started.
    #[error("spawn {what}")]
    Spawn {
        /// Which thread.
        what: &'static str,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The server ended abnormally.
    #[error(transparent)]
    Serve(super::ServeError),
    /// The server panicked.
    #[error("the NBD server panicked: {0}")]
    ServerPanicked(String),
    /// A thread of ours panicked.
    #[error("{0} panicked")]
    ThreadPanicked(&'static str),
    /// The keeper stopped restarting the serving side.
    #[error("/dev/nbd{index}: the serving side died {deaths} times in {minutes} minutes; not restarting it again, its I/O fails")]
    GaveUp {
        /// N.
        index: u32,
        /// Deaths within the window.
        deaths: usize,
        /// The window.
        minutes: u64,
    },
    /// The kernel refused a new connection after the serving side died.
    #[error("/dev/nbd{index}: cannot hand the kernel a new connection (its I/O fails)")]
    Reconnect {
        /// N.
        index: u32,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A device could not be opened or configured (an ioctl failed).
    #[error("{}", path.display())]
    Device {
        /// `/dev/nbdN`.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Every `/dev/nbdN` is in use.
    #[error("no free NBD device; fix: load nbd with a larger nbds_max")]
    NoFreeDevice {
        /// Why the last one tried could not be used.
        #[source]
        last: Option<Box<Error>>,
    },
    /// The device did not come up.
    #[error("{} did not come up", path.display())]
    NotReady {
        /// `/dev/nbdN`.
        path: PathBuf,
    },
}
