//! Attaching a [`BlockSource`] to the kernel's NBD client: `/dev/nbdN` with one end of a socketpair, our
//! server on the other.
//!
//! The kernel contract (`include/uapi/linux/nbd.h`, `drivers/block/nbd.c`): the ioctls are `_IO(0xab, n)`
//! with an integer argument. Configure block size and size, the transmission flags (`HAS_FLAGS`,
//! `SEND_FLUSH`, `SEND_FUA`, `READ_ONLY`), a request timeout, hand over the socket (`SET_SOCK`), then
//! `DO_IT` runs the device and blocks its caller until the connection ends, so it gets a thread of its own.
//! The kernel speaks only the transmission phase (no handshake). `DISCONNECT` makes the kernel send
//! `NBD_CMD_DISC`; the server then answers what is in flight, flushes, and returns; `DO_IT` returns and
//! `CLEAR_SOCK` releases the device for reuse.
//!
//! ioctls rather than the netlink interface: they need no generic-netlink family lookup, exist in every
//! kernel with NBD, and are a handful of integer calls; what netlink adds (reconnect on a dead connection)
//! is not used yet.

use super::server::{serve_transmission, ServerConfig};
use crate::blob::BlockSource;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
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

/// An attached device. [`Attached::detach`] disconnects cleanly; dropping one detaches too (best effort).
#[derive(Debug)]
pub struct Attached {
    device: PathBuf,
    file: Option<File>,
    do_it: Option<JoinHandle<io::Result<()>>>,
    server: Option<JoinHandle<Result<(), String>>>,
}

fn connected(n: u32) -> bool {
    Path::new(&format!("/sys/block/nbd{n}/pid")).exists()
}

/// Attach `src` to a free `/dev/nbdN`. `timeout` is the kernel's per-request timeout (our server retries
/// within it and answers EIO when its own deadline passes).
pub fn attach(src: Arc<dyn BlockSource>, read_only: bool) -> Result<Attached, String> {
    attach_with(src, read_only, Duration::from_secs(300))
}

/// [`attach`] with an explicit request timeout.
pub fn attach_with(
    src: Arc<dyn BlockSource>,
    read_only: bool,
    timeout: Duration,
) -> Result<Attached, String> {
    if !Path::new("/dev/nbd0").exists() {
        return Err("no /dev/nbd0: the kernel has no NBD client loaded; fix: add \"nbd\" to kernel_modules (VM) or \
                    load the nbd module in the utility VM"
            .to_string());
    }
    let size = src.size();
    let blksize: u64 = if size % 4096 == 0 { 4096 } else { 512 };
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
        let flags = FLAG_HAS_FLAGS
            | FLAG_SEND_FLUSH
            | FLAG_SEND_FUA
            | if read_only { FLAG_READ_ONLY } else { 0 };
        let (ours, theirs) = UnixStream::pair().map_err(|e| format!("socketpair: {e}"))?;
        let setup = nbd_ioctl(&file, NBD_SET_BLKSIZE, blksize)
            .and_then(|()| nbd_ioctl(&file, NBD_SET_SIZE, size))
            .and_then(|()| nbd_ioctl(&file, NBD_SET_TIMEOUT, timeout.as_secs().max(1)))
            .and_then(|()| nbd_ioctl(&file, NBD_SET_FLAGS, flags))
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
        let serving = src.clone();
        let server = std::thread::Builder::new()
            .name(format!("nbd{n}-server"))
            .spawn(move || {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    serve_transmission(&serving, ours, &ServerConfig::default())
                        .map_err(|e| e.to_string())
                }))
                .unwrap_or_else(|_| Err("the NBD server panicked".to_string()))
            })
            .map_err(|e| format!("spawn the NBD server: {e}"))?;
        let runner = file
            .try_clone()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let do_it = std::thread::Builder::new()
            .name(format!("nbd{n}-do-it"))
            .spawn(move || nbd_ioctl(&runner, NBD_DO_IT, 0))
            .map_err(|e| format!("spawn the NBD runner: {e}"))?;
        let attached = Attached {
            device: path,
            file: Some(file),
            do_it: Some(do_it),
            server: Some(server),
        };
        attached.wait_ready(n)?;
        log::info!(
            "nbd: {} attached ({} bytes, {blksize}-byte blocks, {})",
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

    /// The device is live once the kernel publishes the connection's pid and the device's size (a device
    /// used before may still show size 0 for a moment after `DO_IT` starts).
    fn wait_ready(&self, n: u32) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let sized = || {
            std::fs::read_to_string(format!("/sys/block/nbd{n}/size"))
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .is_some_and(|s| s > 0)
        };
        while !(connected(n) && sized()) {
            if self.do_it.as_ref().is_some_and(JoinHandle::is_finished) || Instant::now() > deadline
            {
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
        self.detach_inner()
    }

    fn detach_inner(&mut self) -> Result<(), String> {
        let Some(file) = self.file.take() else {
            return Ok(());
        };
        let disc = nbd_ioctl(&file, NBD_DISCONNECT, 0);
        let do_it = self.do_it.take().map(|h| h.join());
        let _ = nbd_ioctl(&file, NBD_CLEAR_SOCK, 0);
        let served = match self.server.take().map(JoinHandle::join) {
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
        log::info!("nbd: {} detached", self.device.display());
        served
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        if let Err(e) = self.detach_inner() {
            log::error!("nbd: {}: {e}", self.device.display());
        }
    }
}
