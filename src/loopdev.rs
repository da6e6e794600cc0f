//! Loop devices: a regular file (here the FUSE transport's one file) as a block device, set up in one call
//! with `LOOP_CONFIGURE` (Linux 5.8): backing fd, logical block size, read-only, autoclear and direct I/O
//! flags at once, so that no half-configured device is ever visible.
//!
//! A free device comes from `LOOP_CTL_GET_FREE` on `/dev/loop-control`; a device somebody else takes
//! between that and our `LOOP_CONFIGURE` (`EBUSY`) is skipped. In a container whose `/dev` does not follow
//! the host's (no devtmpfs), a missing `/dev/loopN` node is made with `mknod` (block major 7).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The loop control device.
pub const LOOP_CONTROL: &str = "/dev/loop-control";

const LO_FLAGS_READ_ONLY: u32 = 1;
const LO_FLAGS_AUTOCLEAR: u32 = 4;
const LO_FLAGS_DIRECT_IO: u32 = 16;
const LOOP_MAJOR: u64 = 7;

/// `struct loop_info64` (`include/uapi/linux/loop.h`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; 64],
    lo_crypt_name: [u8; 64],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

/// `struct loop_config`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

nix::ioctl_none_bad!(
    /// `LOOP_CTL_GET_FREE`: the index of a free loop device (made when none is free).
    loop_ctl_get_free,
    0x4C82
);
nix::ioctl_write_ptr_bad!(
    /// `LOOP_CONFIGURE`: bind a backing fd with all settings at once.
    loop_configure,
    0x4C0A,
    LoopConfig
);
nix::ioctl_none_bad!(
    /// `LOOP_CLR_FD`: unbind.
    loop_clr_fd,
    0x4C01
);

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

fn configure(dev: &File, backing: &File, flags: u32, block_size: u32) -> io::Result<()> {
    let mut info = LoopInfo64 {
        lo_device: 0,
        lo_inode: 0,
        lo_rdevice: 0,
        lo_offset: 0,
        lo_sizelimit: 0,
        lo_number: 0,
        lo_encrypt_type: 0,
        lo_encrypt_key_size: 0,
        lo_flags: flags,
        lo_file_name: [0; 64],
        lo_crypt_name: [0; 64],
        lo_encrypt_key: [0; 32],
        lo_init: [0; 2],
    };
    let name = b"encfs-init";
    info.lo_file_name[..name.len()].copy_from_slice(name);
    let config = LoopConfig {
        fd: u32::try_from(backing.as_raw_fd())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?,
        block_size,
        info,
        reserved: [0; 8],
    };
    // SAFETY: LOOP_CONFIGURE reads one `struct loop_config` through the pointer; `config` is a #[repr(C)]
    // copy of the kernel's layout (304 bytes, checked by a test), alive for the whole call. `dev` is an
    // open loop device and `config.fd` an open file. The kernel writes nothing back. The result is checked.
    unsafe { loop_configure(dev.as_raw_fd(), &config) }
        .map(|_| ())
        .map_err(io::Error::from)
}

/// Attach `backing` to a free loop device.
pub fn attach(backing: &File, opts: Options) -> Result<Loop, String> {
    let ctl = OpenOptions::new()
        .read(true)
        .write(true)
        .open(LOOP_CONTROL)
        .map_err(|e| format!("open {LOOP_CONTROL}: {e}"))?;
    let mut flags = LO_FLAGS_AUTOCLEAR;
    if opts.read_only {
        flags |= LO_FLAGS_READ_ONLY;
    }
    let mut last = String::new();
    for _ in 0..32 {
        // SAFETY: LOOP_CTL_GET_FREE takes no argument and reads no memory of ours; `ctl` is an open
        // /dev/loop-control. A negative result is returned as an error.
        let index = unsafe { loop_ctl_get_free(ctl.as_raw_fd()) }
            .map_err(|e| format!("{LOOP_CONTROL}: no free loop device: {e}"))?;
        let index = u32::try_from(index).map_err(|_| format!("{LOOP_CONTROL}: bad index"))?;
        let path = node(index).map_err(|e| format!("/dev/loop{index}: {e}"))?;
        let dev = OpenOptions::new()
            .read(true)
            .write(!opts.read_only)
            .open(&path)
            .map_err(|e| format!("open {}: {e}", path.display()))?;
        let want_dio = if opts.direct_io {
            LO_FLAGS_DIRECT_IO
        } else {
            0
        };
        let mut r = configure(&dev, backing, flags | want_dio, opts.block_size);
        // Kernels that refuse direct I/O on this backing file at configure time (rather than quietly
        // falling back) get buffered I/O.
        if want_dio != 0
            && r.as_ref()
                .is_err_and(|e| e.raw_os_error() == Some(nix::libc::EINVAL))
        {
            r = configure(&dev, backing, flags, opts.block_size);
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
            Err(e) if e.raw_os_error() == Some(nix::libc::EBUSY) => {
                last = format!("{}: {e}", path.display());
            }
            Err(e) => return Err(format!("LOOP_CONFIGURE {}: {e}", path.display())),
        }
    }
    Err(format!("no loop device could be configured ({last})"))
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
    pub fn detach(mut self) -> Result<(), String> {
        self.detach_inner(false)
    }

    /// [`Loop::detach`] for a device still open above it: `LOOP_CLR_FD` (autoclear), without waiting for a
    /// release that happens only at that user's last close.
    pub fn detach_held(mut self) -> Result<(), String> {
        self.detach_inner(true)
    }

    fn detach_inner(&mut self, held: bool) -> Result<(), String> {
        let Some(file) = self.file.take() else {
            return Ok(());
        };
        // SAFETY: LOOP_CLR_FD takes no argument and reads no memory of ours; `file` is the open device.
        let r = unsafe { loop_clr_fd(file.as_raw_fd()) };
        drop(file);
        match r {
            // ENXIO: already cleared (autoclear after its last user went).
            Ok(_) | Err(nix::errno::Errno::ENXIO) => {}
            Err(e) => return Err(format!("LOOP_CLR_FD {}: {e}", self.path.display())),
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
                return Err(format!(
                    "{} still bound 5 s after LOOP_CLR_FD (something holds it open)",
                    self.path.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        if let Err(e) = self.detach_inner(false) {
            log::error!("loop: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loop_config_has_the_kernels_layout() {
        assert_eq!(std::mem::size_of::<LoopInfo64>(), 232);
        assert_eq!(std::mem::size_of::<LoopConfig>(), 304);
    }
}
