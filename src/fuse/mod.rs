//! The FUSE + loop transport: a [`BlockSource`] served as one regular file of a FUSE filesystem that
//! encfs-init mounts itself through `/dev/fuse` (it is root: no fusermount, no libfuse, the binary stays
//! static), then a loop device over that file. For kernels without NBD (Microsoft's UVM kernels, Kata's
//! confidential guest kernels), on the same engine as [`crate::nbd`].
//!
//! - [`proto`]: the wire format (pure, `forbid(unsafe_code)`);
//! - [`server`]: the serving threads' request handling;
//! - `sys`: mount, `FUSE_DEV_IOC_CLONE`, unmount (the only `unsafe` of the area);
//! - `keeper`: replacing serving threads that die;
//! - the loop device, `LOOP_CONFIGURE`: [`crate::loopdev`].
//!
//! [`attach`]: mount in a private directory (mode 0700, only root may enter), answer `FUSE_INIT` (the
//! largest `max_pages` the kernel allows, asynchronous direct I/O), start the serving threads (each with a
//! clone of the `/dev/fuse` fd when the kernel allows), open the file and attach a loop device (read-only
//! for read-only filesystems; direct I/O when asked and the kernel takes it).
//!
//! Supervision: the connection's first fd and every thread's fd stay open in this process for the life of
//! the mount. A keeper thread replaces a serving thread that ends abnormally (a panic): the successor keeps
//! the thread's fd and first serves the request the dead thread held (see [`server`]), so the filesystem
//! above sees a pause, not an error. A serving side that keeps dying (more than [`crate::supervise::budget::MAX_RESTARTS`]
//! restarts in ten minutes) is not restarted again: the connection is aborted, so I/O fails (the health
//! reads then report it) instead of hanging.
//!
//! [`Attached::detach`] follows the teardown order from the loop device down: loop detach, FUSE unmount
//! (the serving threads see the connection end), a final flush of the source, the directory removed.

#![deny(unsafe_code)] // the raw calls are in `sys` (the one file allowed them)

mod error;
mod keeper;
pub mod proto;
pub mod server;
mod sys;

use crate::blob::BlockSource;
use crate::loopdev::{self, Loop};
use keeper::{keep, spawn_worker, KeeperState};
use server::{Shared, Slot};
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::channel;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

pub use error::Error;
pub use sys::DEV_FUSE;

/// Pages per request we ask for at most (4 MiB), whatever larger limit the kernel has.
const MAX_PAGES_WANTED: u32 = 1024;

/// How to attach.
#[derive(Debug, Clone)]
pub struct Config {
    /// The private mount directory (created 0700; removed at detach).
    pub dir: PathBuf,
    /// Serving threads.
    pub threads: usize,
    /// Read-only filesystem: mounted read-only, loop device read-only.
    pub read_only: bool,
    /// Ask the loop device for direct I/O on the FUSE file.
    pub direct_io: bool,
}

impl Config {
    /// The defaults for `dir`: 8 serving threads, direct I/O.
    pub fn new(dir: PathBuf, read_only: bool) -> Self {
        Config {
            dir,
            threads: 8,
            read_only,
            direct_io: true,
        }
    }
}

/// What the negotiation gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// FUSE minor version.
    pub minor: u32,
    /// Bytes per READ and WRITE.
    pub max_write: u32,
    /// Serving threads with a cloned fd of their own (the others share the first fd).
    pub cloned: usize,
}

/// An attached FUSE file and loop device.
#[derive(Debug)]
pub struct Attached {
    dir: PathBuf,
    device: PathBuf,
    loop_dev: Option<Loop>,
    /// The file the loop device was configured with (kept open until the loop device is gone).
    file: Option<File>,
    shared: Arc<Shared>,
    state: Arc<KeeperState>,
    keeper: Option<JoinHandle<Result<(), Error>>>,
    mounted: bool,
    negotiated: Negotiated,
}

/// Answer `FUSE_INIT`, the first request of a new connection.
fn init(dev: &File) -> Result<proto::InitReply, Error> {
    // The INIT request is small; the kernel wants a buffer of at least 8 KiB for any read.
    let mut buf = vec![0u8; 64 << 10];
    let n = loop {
        match (&*dev).read(&mut buf) {
            Ok(n) => break n,
            Err(e) if e.raw_os_error() == Some(nix::libc::EINTR) => {}
            Err(e) => return Err(Error::ReadInit(e)),
        }
    };
    let (h, req) = proto::parse(&buf[..n]).map_err(Error::Init)?;
    let proto::Request::Init {
        major,
        minor,
        max_readahead,
        flags,
    } = req
    else {
        return Err(Error::NotInit(h.opcode));
    };
    let pages = u16::try_from(sys::max_pages_limit().min(MAX_PAGES_WANTED)).unwrap_or(256);
    let reply = match proto::negotiate_init(major, minor, max_readahead, flags, pages) {
        Ok(r) => r,
        Err(e) => {
            let _ = write_once(dev, &proto::error_reply(h.unique, proto::errno::EPROTO));
            return Err(Error::Init(e));
        }
    };
    write_once(dev, &proto::reply(h.unique, &proto::init_out(&reply)))
        .map_err(Error::AnswerInit)?;
    if reply.flags & proto::init_flags::MAX_PAGES == 0 {
        log::warn!("fuse: the kernel did not take max_pages: requests stay at 128 KiB");
    }
    Ok(reply)
}

/// One `write(2)` of a whole message (the kernel takes a reply only whole).
fn write_once(mut dev: &File, m: &[u8]) -> std::io::Result<()> {
    let n = std::io::Write::write(&mut dev, m)?;
    if n == m.len() {
        Ok(())
    } else {
        Err(std::io::ErrorKind::WriteZero.into())
    }
}

/// Mount, serve, attach a loop device: see the module docs.
pub fn attach(src: Arc<dyn BlockSource>, cfg: &Config) -> Result<Attached, Error> {
    let dir = &cfg.dir;
    // The parent (/run/encfs-init) also holds the readiness file, which applications read: its mode is
    // left as is; the mount directory itself is root's alone.
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent).map_err(|source| Error::CreateDir {
            path: parent.to_path_buf(),
            source,
        })?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(
                |source| Error::Chmod {
                    path: dir.clone(),
                    source,
                },
            )?;
        }
        Err(source) => {
            return Err(Error::CreateDir {
                path: dir.clone(),
                source,
            })
        }
    }
    let master = sys::open_dev().map_err(Error::OpenDev)?;
    sys::mount(&master, dir, cfg.read_only).map_err(|source| Error::Mount {
        dir: dir.clone(),
        source,
    })?;
    let mut attached = Attached {
        dir: dir.clone(),
        device: PathBuf::new(),
        loop_dev: None,
        file: None,
        shared: Arc::new(Shared {
            src,
            read_only: cfg.read_only,
            max_write: 4096,
            panics: AtomicU32::new(0),
        }),
        state: Arc::new(KeeperState::default()),
        keeper: None,
        mounted: true,
        negotiated: Negotiated {
            minor: 0,
            max_write: 0,
            cloned: 0,
        },
    };
    // From here on, dropping `attached` unmounts again.
    let reply = init(&master)?;
    let shared = Arc::new(Shared {
        src: attached.shared.src.clone(),
        read_only: cfg.read_only,
        max_write: reply.max_write,
        panics: AtomicU32::new(0),
    });
    attached.shared = shared.clone();
    let threads = cfg.threads.max(1);
    let mut slots = Vec::with_capacity(threads);
    let mut cloned = 0;
    for _ in 0..threads {
        let dev = match sys::clone_dev(&master) {
            Ok(d) => {
                cloned += 1;
                d
            }
            Err(e) => {
                if cloned == 0 && slots.is_empty() {
                    log::info!("fuse: no per-thread /dev/fuse clones ({e}); the serving threads share one fd");
                }
                master.try_clone().map_err(Error::Dup)?
            }
        };
        slots.push(Arc::new(Slot::new(dev)));
    }
    attached.negotiated = Negotiated {
        minor: reply.minor,
        max_write: reply.max_write,
        cloned,
    };
    let (tx, rx) = channel();
    let mut handles = Vec::with_capacity(threads);
    for (i, slot) in slots.iter().enumerate() {
        handles.push(Some(
            spawn_worker(i, shared.clone(), slot.clone(), tx.clone()).map_err(|source| {
                Error::Spawn {
                    what: "a FUSE serving thread",
                    source,
                }
            })?,
        ));
    }
    let state = attached.state.clone();
    let keeper_dir = dir.clone();
    attached.keeper = Some(
        std::thread::Builder::new()
            .name("fuse-keeper".into())
            .spawn(move || {
                keep(
                    &shared,
                    master,
                    &slots,
                    handles,
                    &tx,
                    &rx,
                    &state,
                    &keeper_dir,
                )
            })
            .map_err(|source| Error::Spawn {
                what: "the FUSE keeper",
                source,
            })?,
    );

    let path = dir.join(std::str::from_utf8(proto::FILE_NAME).unwrap_or("disk"));
    let file = OpenOptions::new()
        .read(true)
        .write(!cfg.read_only)
        .open(&path)
        .map_err(|source| Error::OpenFile {
            path: path.clone(),
            source,
        })?;
    let size = attached.shared.src.size();
    let opts = loopdev::Options {
        read_only: cfg.read_only,
        direct_io: cfg.direct_io,
        block_size: if size % 4096 == 0 { 4096 } else { 512 },
    };
    let lo = loopdev::attach(&file, opts)?;
    attached.device = lo.device().to_path_buf();
    log::info!(
        "fuse: {} over {} ({size} bytes, {}; FUSE 7.{}, {} KiB per request, {threads} serving threads, {cloned} with a cloned fd; loop direct I/O {})",
        attached.device.display(),
        path.display(),
        if cfg.read_only { "read-only" } else { "read-write" },
        reply.minor,
        reply.max_write / 1024,
        if lo.direct_io() { "on" } else { "off" },
    );
    attached.loop_dev = Some(lo);
    attached.file = Some(file);
    Ok(attached)
}

impl Attached {
    /// `/dev/loopN`.
    pub fn device(&self) -> &Path {
        &self.device
    }

    /// The private mount directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What INIT and the fd clones gave.
    pub fn negotiated(&self) -> Negotiated {
        self.negotiated
    }

    /// Serving threads replaced so far.
    pub fn restarts(&self) -> u32 {
        self.state.restarts.load(Ordering::SeqCst)
    }

    /// Why the serving side is gone for good (the keeper gave up replacing threads), if it is.
    pub fn gave_up(&self) -> Option<String> {
        self.state
            .gave_up
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Whether the loop device does direct I/O.
    pub fn direct_io(&self) -> bool {
        self.loop_dev.as_ref().is_some_and(Loop::direct_io)
    }

    /// Fault injection (tests, and test mode): the serving thread that takes the next READ or WRITE panics
    /// while holding it; the keeper replaces the thread and the successor serves the request. Always true
    /// (the FUSE transport always recovers this way).
    pub fn sever(&self) -> bool {
        self.shared.panics.fetch_add(1, Ordering::SeqCst);
        true
    }

    /// Loop detach, FUSE unmount (the serving threads end), final flush of the source, directory removed.
    /// Every step is attempted; the first error is returned.
    pub fn detach(mut self) -> Result<(), Error> {
        self.detach_inner(false)
    }

    /// [`Attached::detach`] while the loop device is still held open from above: the loop device is left to
    /// the kernel's autoclear, and the FUSE connection is aborted at once (the loop device keeps the file
    /// open, so an unmount would only wait, and the serving threads with it).
    pub fn detach_held(mut self) -> Result<(), Error> {
        self.detach_inner(true)
    }

    fn detach_inner(&mut self, held: bool) -> Result<(), Error> {
        let mut first: Option<Error> = None;
        if let Some(lo) = self.loop_dev.take() {
            let r = if held { lo.detach_held() } else { lo.detach() };
            if let Err(e) = r {
                first.get_or_insert(e.into());
            }
        }
        drop(self.file.take());
        self.state.stopping.store(true, Ordering::SeqCst);
        if self.mounted && held {
            self.mounted = false;
            log::warn!(
                "fuse: {}: the loop device is still held open; aborting the connection and detaching it",
                self.dir.display()
            );
            if let Err(source) = sys::abort(&self.dir) {
                first.get_or_insert(Error::Abort {
                    dir: self.dir.clone(),
                    source,
                });
            }
        }
        if self.mounted {
            self.mounted = false;
            if let Err(source) = sys::unmount(&self.dir, Duration::from_secs(5)) {
                first.get_or_insert(Error::Unmount {
                    dir: self.dir.clone(),
                    source,
                });
                // The threads would wait for requests forever: end the connection.
                let _ = sys::abort(&self.dir);
            }
        }
        if let Some(k) = self.keeper.take() {
            match k.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    first.get_or_insert(e);
                }
                Err(_) => {
                    first.get_or_insert(Error::KeeperPanicked);
                }
            }
        }
        if !self.shared.read_only {
            if let Err(e) = self.shared.src.flush() {
                first.get_or_insert(Error::Flush(e));
            }
        }
        if let Err(e) = std::fs::remove_dir(&self.dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                log::warn!("fuse: remove {}: {e}", self.dir.display());
            }
        }
        match first {
            None => {
                log::info!("fuse: {} detached", self.device.display());
                Ok(())
            }
            Some(e) => Err(e),
        }
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        if self.mounted || self.loop_dev.is_some() || self.keeper.is_some() {
            if let Err(e) = self.detach_inner(false) {
                log::error!("fuse: {}: {}", self.dir.display(), crate::errors::chain(&e));
            }
        }
    }
}
