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

use super::netlink::{ConnectParams, Nbd};
use super::server::{serve_transmission, ServerConfig};
use crate::blob::BlockSource;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const NBD_SET_SOCK: u8 = 0;
const NBD_SET_BLKSIZE: u8 = 1;
const NBD_SET_SIZE: u8 = 2;
const NBD_DO_IT: u8 = 3;
const NBD_CLEAR_SOCK: u8 = 4;
const NBD_DISCONNECT: u8 = 8;
const NBD_SET_TIMEOUT: u8 = 9;
const NBD_SET_FLAGS: u8 = 10;

const FLAG_HAS_FLAGS: u64 = 1 << 0;
const FLAG_READ_ONLY: u64 = 1 << 1;
const FLAG_SEND_FLUSH: u64 = 1 << 2;
const FLAG_SEND_FUA: u64 = 1 << 3;

/// How many /dev/nbdN to look through (the module's default nbds_max is 16).
const MAX_DEVICES: u32 = 64;

/// The one ioctl shape NBD uses: `_IO(0xab, nr)` with an integer argument.
fn nbd_ioctl(dev: &File, nr: u8, arg: u64) -> io::Result<()> {
    let request = (0xab_u64 << 8) | u64::from(nr);
    // SAFETY: NBD ioctls take their argument by value (an integer or an fd number), never a pointer, so the
    // kernel reads no memory of ours; `dev` is an open /dev/nbdN for the whole call. The return value is
    // checked.
    let rc = unsafe { nix::libc::ioctl(dev.as_raw_fd(), request as _, arg as nix::libc::c_ulong) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

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
        keeper: Option<JoinHandle<Result<(), String>>>,
        state: Arc<Keeper>,
    },
    Ioctl {
        file: Option<File>,
        do_it: Option<JoinHandle<io::Result<()>>>,
        server: Option<JoinHandle<Result<(), String>>>,
    },
    Detached,
}

/// What the keeper thread shares with [`Attached`].
#[derive(Debug, Default)]
struct Keeper {
    /// Set before a disconnect: the server's end is then expected.
    detaching: AtomicBool,
    /// Our end of the live connection (a clone), to sever it.
    current: Mutex<Option<UnixStream>>,
    /// Serving-side restarts completed so far (new server running, kernel reconnected).
    restarts: AtomicU32,
}

impl Keeper {
    /// Remember (a clone of) our end of the live connection, so that [`Keeper::sever`] reaches it.
    fn track(&self, ours: &UnixStream) -> io::Result<()> {
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = Some(ours.try_clone()?);
        Ok(())
    }

    /// Shut down our end of the live connection, as a crashed server would leave it.
    fn sever(&self) {
        if let Some(s) = self
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

fn connected(n: u32) -> bool {
    Path::new(&format!("/sys/block/nbd{n}/pid")).exists()
}

fn server_flags(read_only: bool) -> u64 {
    FLAG_HAS_FLAGS | FLAG_SEND_FLUSH | FLAG_SEND_FUA | if read_only { FLAG_READ_ONLY } else { 0 }
}

/// Run our server on `ours` in a thread of its own.
fn spawn_server(
    index: u32,
    src: Arc<dyn BlockSource>,
    ours: UnixStream,
) -> Result<JoinHandle<Result<(), String>>, String> {
    std::thread::Builder::new()
        .name(format!("nbd{index}-server"))
        .spawn(move || {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let config = ServerConfig {
                    sever_on_panic: true,
                    ..ServerConfig::default()
                };
                serve_transmission(&src, ours, &config).map_err(|e| e.to_string())
            }))
            .unwrap_or_else(|p| {
                Err(format!(
                    "the NBD server panicked: {}",
                    crate::errors::panic_message(&*p)
                ))
            })
        })
        .map_err(|e| format!("spawn the NBD server: {e}"))
}

/// Attach `src` to a free `/dev/nbdN` with the default [`Timeouts`].
pub fn attach(src: Arc<dyn BlockSource>, read_only: bool) -> Result<Attached, String> {
    attach_with(src, read_only, Timeouts::default())
}

/// [`attach`] with explicit timeouts.
pub fn attach_with(
    src: Arc<dyn BlockSource>,
    read_only: bool,
    timeouts: Timeouts,
) -> Result<Attached, String> {
    match Nbd::open() {
        Ok(nl) => attach_netlink(nl, src, read_only, timeouts),
        // Without the netlink family, the ioctls need an existing /dev/nbdN.
        Err(_) if !Path::new("/dev/nbd0").exists() => Err(
            "no /dev/nbd0: the kernel has no NBD client loaded; fix: add \"nbd\" to kernel_modules (VM) or \
             load the nbd module in the utility VM"
                .to_string(),
        ),
        Err(e) => {
            log::info!(
                "nbd: no generic-netlink interface ({e}); attaching by ioctls, without reconnect"
            );
            attach_ioctl(src, read_only, timeouts.request)
        }
    }
}

fn block_size(size: u64) -> u64 {
    if size % 4096 == 0 {
        4096
    } else {
        512
    }
}

fn attach_netlink(
    mut nl: Nbd,
    src: Arc<dyn BlockSource>,
    read_only: bool,
    timeouts: Timeouts,
) -> Result<Attached, String> {
    let size = src.size();
    let params = ConnectParams {
        size,
        block_size: block_size(size),
        server_flags: server_flags(read_only),
        timeout: timeouts.request,
        dead_conn_timeout: timeouts.dead_connection,
    };
    let (ours, theirs) = UnixStream::pair().map_err(|e| format!("socketpair: {e}"))?;
    let index = nl
        .connect(&params, theirs.as_raw_fd())
        .map_err(|e| format!("netlink NBD connect: {e}"))?;
    // The kernel holds its own reference to the socket now.
    drop(theirs);
    let state = Arc::new(Keeper::default());
    let device = PathBuf::from(format!("/dev/nbd{index}"));
    let started = state
        .track(&ours)
        .map_err(|e| format!("socket: {e}"))
        .and_then(|()| spawn_server(index, src.clone(), ours))
        .and_then(|server| {
            let st = state.clone();
            std::thread::Builder::new()
                .name(format!("nbd{index}-keeper"))
                .spawn(move || keep(index, src, nl, server, &st))
                .map_err(|e| format!("spawn the NBD keeper: {e}"))
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

/// The keeper: wait for the serving side to end; unless a detach asked for it, start a new one on a new
/// socketpair and hand the socket to the kernel. Returns the last server's verdict after a detach.
fn keep(
    index: u32,
    src: Arc<dyn BlockSource>,
    mut nl: Nbd,
    first: JoinHandle<Result<(), String>>,
    st: &Keeper,
) -> Result<(), String> {
    let mut server = first;
    let mut last_restart: Option<Instant> = None;
    let mut budget = crate::supervise::budget::RestartBudget::new();
    loop {
        let ended = server
            .join()
            .unwrap_or_else(|_| Err("the NBD server thread panicked".to_string()));
        if st.detaching.load(Ordering::SeqCst) {
            return ended;
        }
        let n = st.restarts.load(Ordering::SeqCst) + 1;
        log::warn!(
            "nbd: /dev/nbd{index}: the serving side ended ({}); restarting it and reconnecting (restart {n})",
            ended.err().unwrap_or_else(|| "connection closed".to_string())
        );
        // A serving side that keeps dying (a request that crashes it every time it is re-sent, say) is not
        // restarted forever: the device's I/O then fails once the dead-connection timeout passes.
        if let Err(deaths) = budget.take() {
            let msg = format!(
                "/dev/nbd{index}: the serving side died {deaths} times in {} minutes; not restarting it again, its I/O fails",
                crate::supervise::budget::RestartBudget::window_minutes()
            );
            log::error!("nbd: {msg}");
            return Err(msg);
        }
        // A server that dies at once, again and again, must not spin.
        if last_restart.is_some_and(|t| t.elapsed() < Duration::from_millis(500)) {
            std::thread::sleep(Duration::from_millis(500));
        }
        last_restart = Some(Instant::now());
        let deadline = Instant::now() + Duration::from_secs(10);
        server = loop {
            let (ours, theirs) = UnixStream::pair().map_err(|e| format!("socketpair: {e}"))?;
            match nl.reconfigure(index, theirs.as_raw_fd()) {
                Ok(()) => {
                    drop(theirs);
                    // Without a clone the new server still serves; only fault injection misses it.
                    let _ = st.track(&ours);
                    break spawn_server(index, src.clone(), ours)?;
                }
                Err(_) if st.detaching.load(Ordering::SeqCst) => return Ok(()),
                // ENOSPC: the kernel has not marked the old connection dead yet.
                Err(e)
                    if e.raw_os_error() == Some(nix::libc::ENOSPC) && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => {
                    let msg = format!(
                        "/dev/nbd{index}: cannot hand the kernel a new connection: {e}; its I/O fails"
                    );
                    log::error!("nbd: {msg}");
                    return Err(msg);
                }
            }
        };
        st.restarts.fetch_add(1, Ordering::SeqCst);
        log::info!("nbd: /dev/nbd{index}: reconnected (restart {n})");
    }
}

fn attach_ioctl(
    src: Arc<dyn BlockSource>,
    read_only: bool,
    timeout: Duration,
) -> Result<Attached, String> {
    let size = src.size();
    let blksize = block_size(size);
    let mut last_err = String::new();
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
            Err(e) => {
                last_err = format!("{}: {e}", path.display());
                continue;
            }
        };
        let (ours, theirs) = UnixStream::pair().map_err(|e| format!("socketpair: {e}"))?;
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
        if let Err(e) = setup {
            // EBUSY: someone took it between our check and the ioctl; try the next one.
            let _ = nbd_ioctl(&file, NBD_CLEAR_SOCK, 0);
            last_err = format!("{}: {e}", path.display());
            if e.raw_os_error() == Some(nix::libc::EBUSY) {
                continue;
            }
            return Err(last_err);
        }
        // The kernel holds its own reference to the socket now.
        drop(theirs);
        let server = spawn_server(n, src.clone(), ours)?;
        let runner = file
            .try_clone()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let do_it = std::thread::Builder::new()
            .name(format!("nbd{n}-do-it"))
            .spawn(move || nbd_ioctl(&runner, NBD_DO_IT, 0))
            .map_err(|e| format!("spawn the NBD runner: {e}"))?;
        let attached = Attached {
            device: path,
            index: n,
            link: Link::Ioctl {
                file: Some(file),
                do_it: Some(do_it),
                server: Some(server),
            },
        };
        attached.wait_ready()?;
        log::info!(
            "nbd: {} attached by ioctls ({} bytes, {blksize}-byte blocks, {})",
            attached.device.display(),
            size,
            if read_only { "read-only" } else { "read-write" }
        );
        return Ok(attached);
    }
    Err(format!(
        "no free NBD device ({last_err}); fix: load nbd with a larger nbds_max"
    ))
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
    fn wait_ready(&self) -> Result<(), String> {
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
                return Err(format!("{} did not come up", self.device.display()));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(())
    }

    /// Disconnect: the kernel sends DISC, the server answers what is in flight and flushes every write to
    /// the source; then the device is released. Returns the server's verdict (a failed final flush is an
    /// error: data may not be durable).
    pub fn detach(mut self) -> Result<(), String> {
        self.detach_inner(false)
    }

    /// [`Attached::detach`] while the device is still held open from above: the server is ended the same
    /// way, without waiting for the kernel to drop the configuration (it does at that user's last close).
    pub fn detach_held(mut self) -> Result<(), String> {
        self.detach_inner(true)
    }

    fn detach_inner(&mut self, held: bool) -> Result<(), String> {
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
                    Some(Err(_)) => Err("the NBD keeper thread panicked".to_string()),
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
                    Some(Err(_)) => Err("the NBD server thread panicked".to_string()),
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
            log::error!("nbd: {}: {e}", self.device.display());
        }
    }
}
