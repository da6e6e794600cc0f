//! Attaching by ioctls, the fallback when the kernel has no NBD generic-netlink family: a free
//! `/dev/nbdN` is configured (block size, size, timeout, flags, `SET_SOCK`), then `DO_IT` blocks a thread
//! of its own until the connection ends. No reconnect: a dead server fails the device's I/O.
//! [`super::kernel`] makes the configured device an `Attached` one.
#![forbid(unsafe_code)]

use super::device::{block_size, connected, server_flags};
use super::error::Error;
use super::keeper::{spawn_server, Server};
use super::sys::nbd_ioctl;
use crate::blob::BlockSource;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

pub(super) const NBD_SET_SOCK: u8 = 0;
pub(super) const NBD_SET_BLKSIZE: u8 = 1;
pub(super) const NBD_SET_SIZE: u8 = 2;
pub(super) const NBD_DO_IT: u8 = 3;
pub(super) const NBD_CLEAR_SOCK: u8 = 4;
pub(super) const NBD_DISCONNECT: u8 = 8;
pub(super) const NBD_SET_TIMEOUT: u8 = 9;
pub(super) const NBD_SET_FLAGS: u8 = 10;

/// How many /dev/nbdN to look through (the module's default nbds_max is 16).
const MAX_DEVICES: u32 = 64;

/// A `/dev/nbdN` configured by ioctls, its server and its `DO_IT` thread running.
pub(super) struct Configured {
    /// `/dev/nbdN`.
    pub path: PathBuf,
    /// N.
    pub index: u32,
    /// The open device.
    pub file: File,
    /// The thread blocked in `DO_IT` until the connection ends.
    pub do_it: JoinHandle<io::Result<()>>,
    /// Our server.
    pub server: Server,
}

/// Configure the first free `/dev/nbdN` by ioctls for `src` and start serving it.
pub(super) fn configure(
    src: Arc<dyn BlockSource>,
    read_only: bool,
    timeout: Duration,
) -> Result<Configured, Error> {
    let size = src.size();
    let blksize = block_size(size);
    let mut last: Option<Error> = None;
    for n in 0..MAX_DEVICES {
        let path = PathBuf::from(format!("/dev/nbd{n}"));
        if !path.exists() {
            break;
        }
        if connected(n) {
            continue;
        }
        let file = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(f) => f,
            Err(source) => {
                last = Some(Error::Device { path, source });
                continue;
            }
        };
        let (ours, theirs) = UnixStream::pair().map_err(Error::SocketPair)?;
        let setup = nbd_ioctl(&file, NBD_SET_BLKSIZE, blksize)
            .and_then(|()| nbd_ioctl(&file, NBD_SET_SIZE, size))
            .and_then(|()| nbd_ioctl(&file, NBD_SET_TIMEOUT, timeout.as_secs().max(1)))
            .and_then(|()| nbd_ioctl(&file, NBD_SET_FLAGS, server_flags(read_only)))
            .and_then(|()| {
                nbd_ioctl(
                    &file,
                    NBD_SET_SOCK,
                    u64::try_from(theirs.as_raw_fd()).unwrap_or(0),
                )
            });
        if let Err(source) = setup {
            // EBUSY: someone took it between our check and the ioctl; try the next one.
            let _ = nbd_ioctl(&file, NBD_CLEAR_SOCK, 0);
            let busy = source.raw_os_error() == Some(nix::libc::EBUSY);
            let e = Error::Device { path, source };
            if busy {
                last = Some(e);
                continue;
            }
            return Err(e);
        }
        // The kernel holds its own reference to the socket now.
        drop(theirs);
        let server = spawn_server(n, src.clone(), ours)?;
        let runner = file.try_clone().map_err(|source| Error::Device {
            path: path.clone(),
            source,
        })?;
        let do_it = std::thread::Builder::new()
            .name(format!("nbd{n}-do-it"))
            .spawn(move || nbd_ioctl(&runner, NBD_DO_IT, 0))
            .map_err(|source| Error::Spawn {
                what: "the NBD runner",
                source,
            })?;
        return Ok(Configured {
            path,
            index: n,
            file,
            do_it,
            server,
        });
    }
    Err(Error::NoFreeDevice {
        last: last.map(Box::new),
    })
}
