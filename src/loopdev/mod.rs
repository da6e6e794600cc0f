//! Loop devices: a regular file (here the FUSE transport's one file) as a block device, set up in one call
//! with `LOOP_CONFIGURE` (Linux 5.8): backing fd, logical block size, read-only, autoclear and direct I/O
//! flags at once, so that no half-configured device is ever visible.
//!
//! A free device comes from `LOOP_CTL_GET_FREE` on `/dev/loop-control`; a device somebody else takes
//! between that and our `LOOP_CONFIGURE` (`EBUSY`) is skipped. In a container whose `/dev` does not follow
//! the host's (no devtmpfs), a missing `/dev/loopN` node is made with `mknod` (block major 7).
//!
//! The three ioctls and the kernel's `struct loop_config` are in `sys`, the only `unsafe` of the area.
#![deny(unsafe_code)] // the raw calls are in `sys` (the one file allowed them)

mod sys;

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The loop control device.
pub const LOOP_CONTROL: &str = "/dev/loop-control";

const LOOP_MAJOR: u64 = 7;

/// How to set a loop device up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// The device refuses writes.
    pub read_only: bool,
    /// Ask for direct I/O on the backing file (no second page cache; whole requests at once).
    pub direct_io: bool,
    /// Logical block size: 512 or 4096.
    pub block_size: u32,
}

/// An attached loop device; [`Loop::detach`] releases it (dropping one detaches too).
#[derive(Debug)]
pub struct Loop {
    index: u32,
    path: PathBuf,
    file: Option<File>,
    direct_io: bool,
}

fn sys_dir(index: u32) -> PathBuf {
    PathBuf::from(format!("/sys/block/loop{index}/loop"))
}

/// The device node, waited for briefly (devtmpfs creates it) and made when still missing.
fn node(index: u32) -> io::Result<PathBuf> {
    let path = PathBuf::from(format!("/dev/loop{index}"));
    let deadline = Instant::now() + Duration::from_millis(500);
    while !path.exists() {
        if Instant::now() > deadline {
            nix::sys::stat::mknod(
                &path,
                nix::sys::stat::SFlag::S_IFBLK,
                nix::sys::stat::Mode::from_bits_truncate(0o600),
                nix::sys::stat::makedev(LOOP_MAJOR, u64::from(index)),
            )
            .map_err(io::Error::from)?;
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(path)
}

/// Why a loop device could not be attached or released.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A device (`/dev/loop-control`, `/dev/loopN`) could not be opened.
    #[error("open {}", path.display())]
    Open {
        /// The device.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// `LOOP_CTL_GET_FREE` failed.
    #[error("{LOOP_CONTROL}: no free loop device")]
    NoFree(#[source] io::Error),
    /// `/dev/loopN` neither appeared nor could be made.
    #[error("/dev/loop{index}")]
    Node {
        /// N.
        index: u32,
        /// The cause (`mknod`).
        #[source]
        source: io::Error,
    },
    /// `LOOP_CONFIGURE` failed.
    #[error("LOOP_CONFIGURE {}", path.display())]
    Configure {
        /// The device.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Every free device we were given was taken by somebody else first.
    #[error("no loop device could be configured ({} was the last one taken first)", path.display())]
    AllBusy {
        /// The last device tried.
        path: PathBuf,
        /// Its `EBUSY`.
        #[source]
        source: io::Error,
    },
    /// `LOOP_CLR_FD` failed.
    #[error("LOOP_CLR_FD {}", path.display())]
    Clear {
        /// The device.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The kernel did not let go of the backing file.
    #[error("{} still bound 5 s after LOOP_CLR_FD (something holds it open)", path.display())]
    StillBound {
        /// The device.
        path: PathBuf,
    },
}

/// Attach `backing` to a free loop device.
pub fn attach(backing: &File, opts: Options) -> Result<Loop, Error> {
    let open = |path: &Path, write: bool| {
        OpenOptions::new()
            .read(true)
            .write(write)
            .open(path)
            .map_err(|source| Error::Open {
                path: path.to_path_buf(),
                source,
            })
    };
    let ctl = open(Path::new(LOOP_CONTROL), true)?;
    let mut flags = sys::LO_FLAGS_AUTOCLEAR;
    if opts.read_only {
        flags |= sys::LO_FLAGS_READ_ONLY;
    }
    let mut last = None;
    for _ in 0..32 {
        let index = sys::get_free(&ctl).map_err(Error::NoFree)?;
        let path = node(index).map_err(|source| Error::Node { index, source })?;
        let dev = open(&path, !opts.read_only)?;
        let want_dio = if opts.direct_io {
            sys::LO_FLAGS_DIRECT_IO
        } else {
            0
        };
        let mut r = sys::configure(&dev, backing, flags | want_dio, opts.block_size);
        // Kernels that refuse direct I/O on this backing file at configure time (rather than quietly
        // falling back) get buffered I/O.
        if want_dio != 0
            && r.as_ref()
                .is_err_and(|e| e.raw_os_error() == Some(nix::libc::EINVAL))
        {
            r = sys::configure(&dev, backing, flags, opts.block_size);
        }
        match r {
            Ok(()) => {
                let direct_io = std::fs::read_to_string(sys_dir(index).join("dio"))
                    .is_ok_and(|s| s.trim() == "1");
                return Ok(Loop {
                    index,
                    path,
                    file: Some(dev),
                    direct_io,
                });
            }
            // Somebody else took it first.
            Err(source) if source.raw_os_error() == Some(nix::libc::EBUSY) => {
                last = Some(Error::AllBusy { path, source });
            }
            Err(source) => return Err(Error::Configure { path, source }),
        }
    }
    Err(last.unwrap_or_else(|| Error::NoFree(io::Error::from(io::ErrorKind::ResourceBusy))))
}

impl Loop {
    /// `/dev/loopN`.
    pub fn device(&self) -> &Path {
        &self.path
    }

    /// Whether the kernel does direct I/O on the backing file.
    pub fn direct_io(&self) -> bool {
        self.direct_io
    }

    /// Still bound to a backing file.
    fn bound(index: u32) -> bool {
        sys_dir(index).join("backing_file").exists()
    }

    /// Release the device: `LOOP_CLR_FD` (a device still open elsewhere is released by the kernel at its
    /// last close: autoclear), then wait up to 5 s until the kernel has let go of the backing file.
    pub fn detach(mut self) -> Result<(), Error> {
        self.detach_inner(false)
    }

    /// [`Loop::detach`] for a device still open above it: `LOOP_CLR_FD` (autoclear), without waiting for a
    /// release that happens only at that user's last close.
    pub fn detach_held(mut self) -> Result<(), Error> {
        self.detach_inner(true)
    }

    fn detach_inner(&mut self, held: bool) -> Result<(), Error> {
        let Some(file) = self.file.take() else {
            return Ok(());
        };
        let r = sys::clear_fd(&file);
        drop(file);
        match r {
            Ok(()) => {}
            // ENXIO: already cleared (autoclear after its last user went).
            Err(e) if e.raw_os_error() == Some(nix::libc::ENXIO) => {}
            Err(source) => {
                return Err(Error::Clear {
                    path: self.path.clone(),
                    source,
                })
            }
        }
        if held {
            log::info!(
                "loop: {} is still open above it: the kernel releases it at its last close",
                self.path.display()
            );
            return Ok(());
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Self::bound(self.index) {
            if Instant::now() > deadline {
                return Err(Error::StillBound {
                    path: self.path.clone(),
                });
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        if let Err(e) = self.detach_inner(false) {
            log::error!("loop: {}", crate::errors::chain(&e));
        }
    }
}
