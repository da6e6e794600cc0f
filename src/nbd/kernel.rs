//! Attaching a [`BlockSource`] to the kernel's NBD client: `/dev/nbdN` with one end of a socketpair, our
//! server on the other.
//!
//! The kernel speaks only the transmission phase (no handshake). Two ways to set a device up:
//!
//! - **Generic netlink** (`nbd-netlink.h`, kernel ≥ 4.12; [`super::netlink`]), preferred: the kernel picks
//!   a free device, and the connection has a *dead-connection timeout*. When the serving side dies (a
//!   panic, a severed socket), the kernel keeps the device and its queue; a keeper thread starts a new
//!   server on a new socketpair and hands it over with `NBD_CMD_RECONFIGURE`. Requests that were in flight
//!   on the dead connection are re-sent once their per-request timeout passes, queued ones at once: the
//!   filesystem above sees a pause, not an error.
//! - **ioctls** (`_IO(0xab, n)`), the fallback when the netlink family is missing: block size, size,
//!   flags, timeout, `SET_SOCK`, then `DO_IT` blocks a thread of its own until the connection ends. No
//!   reconnect: a dead server fails the device's I/O.
//!
//! Flags: `HAS_FLAGS`, `SEND_FLUSH`, `SEND_FUA`, plus `READ_ONLY` for read-only filesystems. Detaching
//! makes the kernel send `NBD_CMD_DISC`; the server answers what is in flight, flushes every write to the
//! source, and returns; the device is then free for reuse.
#![forbid(unsafe_code)]

use super::device::{block_size, connected, server_flags};
use super::ioctl::{NBD_CLEAR_SOCK, NBD_DISCONNECT};
use super::keeper::{keep, spawn_server, Keeper, Server};
use super::netlink::{ConnectParams, Nbd};
use super::sys::nbd_ioctl;

pub use super::error::Error;
use crate::blob::BlockSource;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Kernel-side timeouts of an attachment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Per request: a request unanswered this long is re-sent on a live connection (netlink), or fails
    /// (ioctls). Also bounds the pause after the serving side died with requests in flight.
    pub request: Duration,
    /// Netlink only: how long requests wait for a new connection after the serving side died.
    pub dead_connection: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            request: Duration::from_secs(60),
            dead_connection: Duration::from_secs(120),
        }
    }
}

/// An attached device. [`Attached::detach`] disconnects cleanly; dropping one detaches too (best effort).
#[derive(Debug)]
pub struct Attached {
    device: PathBuf,
    index: u32,
    link: Link,
}

#[derive(Debug)]
enum Link {
    Netlink {
        keeper: Option<JoinHandle<Result<(), Error>>>,
        state: Arc<Keeper>,
    },
    Ioctl {
        file: Option<File>,
        do_it: Option<JoinHandle<io::Result<()>>>,
        server: Option<Server>,
    },
    Detached,
}

/// Attach `src` to a free `/dev/nbdN` with the default [`Timeouts`].
pub fn attach(src: Arc<dyn BlockSource>, read_only: bool) -> Result<Attached, Error> {
    attach_with(src, read_only, Timeouts::default())
}

/// [`attach`] with explicit timeouts.
pub fn attach_with(
    src: Arc<dyn BlockSource>,
    read_only: bool,
    timeouts: Timeouts,
) -> Result<Attached, Error> {
    match Nbd::open() {
        Ok(nl) => attach_netlink(nl, src, read_only, timeouts),
        // Without the netlink family, the ioctls need an existing /dev/nbdN.
        Err(_) if !Path::new("/dev/nbd0").exists() => Err(Error::NoClient),
        Err(e) => {
            log::info!(
                "nbd: no generic-netlink interface ({e}); attaching by ioctls, without reconnect"
            );
            attach_ioctl(src, read_only, timeouts.request)
        }
    }
}

/// Attach by ioctls ([`super::ioctl`]): no reconnect.
fn attach_ioctl(
    src: Arc<dyn BlockSource>,
    read_only: bool,
    timeout: Duration,
) -> Result<Attached, Error> {
    let size = src.size();
    let c = super::ioctl::configure(src, read_only, timeout)?;
    let attached = Attached {
        device: c.path,
        index: c.index,
        link: Link::Ioctl {
            file: Some(c.file),
            do_it: Some(c.do_it),
            server: Some(c.server),
        },
    };
    attached.wait_ready()?;
    log::info!(
        "nbd: {} attached by ioctls ({size} bytes, {}-byte blocks, {})",
        attached.device.display(),
        block_size(size),
        if read_only { "read-only" } else { "read-write" }
    );
    Ok(attached)
}

fn attach_netlink(
    mut nl: Nbd,
    src: Arc<dyn BlockSource>,
    read_only: bool,
    timeouts: Timeouts,
) -> Result<Attached, Error> {
    let size = src.size();
    let params = ConnectParams {
        size,
        block_size: block_size(size),
        server_flags: server_flags(read_only),
        timeout: timeouts.request,
        dead_conn_timeout: timeouts.dead_connection,
    };
    let (ours, theirs) = UnixStream::pair().map_err(Error::SocketPair)?;
    let index = nl
        .connect(&params, theirs.as_raw_fd())
        .map_err(Error::Connect)?;
    // The kernel holds its own reference to the socket now.
    drop(theirs);
    let state = Arc::new(Keeper::default());
    let device = PathBuf::from(format!("/dev/nbd{index}"));
    let started = state
        .track(&ours)
        .map_err(Error::Socket)
        .and_then(|()| spawn_server(index, src.clone(), ours))
        .and_then(|server| {
            let st = state.clone();
            std::thread::Builder::new()
                .name(format!("nbd{index}-keeper"))
                .spawn(move || keep(index, src, nl, server, &st))
                .map_err(|source| Error::Spawn {
                    what: "the NBD keeper",
                    source,
                })
        });
    let (keeper, failed) = match started {
        Ok(k) => (Some(k), None),
        Err(e) => (None, Some(e)),
    };
    let mut attached = Attached {
        device,
        index,
        link: Link::Netlink { keeper, state },
    };
    if let Some(e) = failed {
        // The kernel has the device connected: disconnect it again.
        let _ = attached.detach_inner(false);
        return Err(e);
    }
    attached.wait_ready()?;
    log::info!(
        "nbd: {} attached by netlink ({size} bytes, {}-byte blocks, {}; request timeout {} s, reconnect within {} s)",
        attached.device.display(),
        params.block_size,
        if read_only { "read-only" } else { "read-write" },
        timeouts.request.as_secs(),
        timeouts.dead_connection.as_secs(),
    );
    Ok(attached)
}

impl Attached {
    /// `/dev/nbdN`.
    pub fn device(&self) -> &Path {
        &self.device
    }

    /// How many times the serving side was restarted and reconnected.
    pub fn restarts(&self) -> u32 {
        match &self.link {
            Link::Netlink { state, .. } => state.restarts.load(Ordering::SeqCst),
            _ => 0,
        }
    }

    /// Fault injection (tests, and test mode): end the serving side abruptly, as a crashed server would:
    /// our end of the connection is shut down and requests in flight stay unanswered. With the netlink
    /// link the keeper restarts the server; returns false when there is no such recovery (ioctl link).
    pub fn sever(&self) -> bool {
        match &self.link {
            Link::Netlink { state, .. } => {
                state.sever();
                true
            }
            _ => false,
        }
    }

    /// Why the serving side is gone for good, if it is: the netlink keeper ended without a detach (it gave up
    /// restarting, and logged why).
    pub fn gave_up(&self) -> Option<String> {
        match &self.link {
            Link::Netlink { keeper, state }
                if !state.detaching.load(Ordering::SeqCst)
                    && keeper.as_ref().is_some_and(JoinHandle::is_finished) =>
            {
                Some(format!(
                    "{}: the NBD serving side is no longer restarted (see the error above)",
                    self.device.display()
                ))
            }
            _ => None,
        }
    }

    /// The device is live once the kernel publishes the connection's pid and the device's size (a device
    /// used before may still show size 0 for a moment after it starts).
    fn wait_ready(&self) -> Result<(), Error> {
        let n = self.index;
        let deadline = Instant::now() + Duration::from_secs(5);
        let sized = || {
            std::fs::read_to_string(format!("/sys/block/nbd{n}/size"))
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .is_some_and(|s| s > 0)
        };
        let gone = || match &self.link {
            Link::Ioctl { do_it, .. } => do_it.as_ref().is_some_and(JoinHandle::is_finished),
            Link::Netlink { keeper, .. } => keeper.as_ref().is_some_and(JoinHandle::is_finished),
            Link::Detached => true,
        };
        while !(connected(n) && sized()) {
            if gone() || Instant::now() > deadline {
                return Err(Error::NotReady {
                    path: self.device.clone(),
                });
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(())
    }

    /// Disconnect: the kernel sends DISC, the server answers what is in flight and flushes every write to
    /// the source; then the device is released. Returns the server's verdict (a failed final flush is an
    /// error: data may not be durable).
    pub fn detach(mut self) -> Result<(), Error> {
        self.detach_inner(false)
    }

    /// [`Attached::detach`] while the device is still held open from above: the server is ended the same
    /// way, without waiting for the kernel to drop the configuration (it does at that user's last close).
    pub fn detach_held(mut self) -> Result<(), Error> {
        self.detach_inner(true)
    }

    fn detach_inner(&mut self, held: bool) -> Result<(), Error> {
        let served = match std::mem::replace(&mut self.link, Link::Detached) {
            Link::Detached => return Ok(()),
            Link::Netlink { keeper, state } => {
                state.detaching.store(true, Ordering::SeqCst);
                let disc = Nbd::open().and_then(|mut nl| nl.disconnect(self.index));
                if let Err(e) = &disc {
                    log::warn!("nbd: {}: disconnect: {e}", self.device.display());
                    // Without the kernel's DISC the server would wait forever: end it ourselves.
                    state.sever();
                }
                let served = match keeper.map(JoinHandle::join) {
                    Some(Ok(r)) => r,
                    Some(Err(_)) => Err(Error::ThreadPanicked("the NBD keeper thread")),
                    None => Ok(()),
                };
                // The device is free again once the kernel dropped the configuration.
                let deadline = Instant::now() + Duration::from_secs(if held { 0 } else { 5 });
                while connected(self.index) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(5));
                }
                served
            }
            Link::Ioctl {
                file,
                do_it,
                server,
            } => {
                let Some(file) = file else { return Ok(()) };
                let disc = nbd_ioctl(&file, NBD_DISCONNECT, 0);
                let do_it = do_it.map(JoinHandle::join);
                let _ = nbd_ioctl(&file, NBD_CLEAR_SOCK, 0);
                let served = match server.map(JoinHandle::join) {
                    Some(Ok(r)) => r,
                    Some(Err(_)) => Err(Error::ThreadPanicked("the NBD server thread")),
                    None => Ok(()),
                };
                if let Err(e) = disc {
                    log::warn!("nbd: {}: disconnect: {e}", self.device.display());
                }
                if let Some(Ok(Err(e))) = do_it {
                    log::debug!("nbd: {}: DO_IT ended with {e}", self.device.display());
                }
                served
            }
        };
        log::info!("nbd: {} detached", self.device.display());
        served
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        if let Err(e) = self.detach_inner(false) {
            log::error!(
                "nbd: {}: {}",
                self.device.display(),
                crate::errors::chain(&e)
            );
        }
    }
}
