//! The raw calls of loop devices, each a small safe function: `LOOP_CTL_GET_FREE`, `LOOP_CONFIGURE` (with
//! the kernel's `struct loop_config`) and `LOOP_CLR_FD`.
//!
//! The errno convention of every `sys` file: a raw call's result is checked with
//! [`Errno::result`](nix::errno::Errno::result) and returned as an [`io::Error`] (which keeps the OS text).
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

pub(super) const LO_FLAGS_READ_ONLY: u32 = 1;
pub(super) const LO_FLAGS_AUTOCLEAR: u32 = 4;
pub(super) const LO_FLAGS_DIRECT_IO: u32 = 16;

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

/// `LOOP_CTL_GET_FREE` on the open `/dev/loop-control` `ctl`: the index of a free loop device.
pub(super) fn get_free(ctl: &File) -> io::Result<u32> {
    // SAFETY: LOOP_CTL_GET_FREE takes no argument and reads no memory of ours; `ctl` is an open
    // /dev/loop-control. A negative result is returned as an error.
    let index = unsafe { loop_ctl_get_free(ctl.as_raw_fd()) }?;
    u32::try_from(index).map_err(|_| io::Error::other(format!("bad loop device index {index}")))
}

/// `LOOP_CONFIGURE`: bind `backing` to the open loop device `dev` with `flags` and `block_size`.
pub(super) fn configure(dev: &File, backing: &File, flags: u32, block_size: u32) -> io::Result<()> {
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

/// `LOOP_CLR_FD` on the open loop device `dev`.
pub(super) fn clear_fd(dev: &File) -> io::Result<()> {
    // SAFETY: LOOP_CLR_FD takes no argument and reads no memory of ours; `dev` is the open device.
    unsafe { loop_clr_fd(dev.as_raw_fd()) }?;
    Ok(())
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
