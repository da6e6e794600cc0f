//! The one raw call of the NBD area: the `_IO(0xab, nr)` ioctls of the kernel's NBD client, used by the
//! ioctl attachment ([`super::kernel`]) when the generic-netlink family is missing.
//!
//! The errno convention of every `sys` file: a raw call's result is checked with
//! [`Errno::result`](nix::errno::Errno::result) and returned as an [`io::Error`] (which keeps the OS text).
#![allow(unsafe_code)]

use nix::errno::Errno;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// The one ioctl shape NBD uses: `_IO(0xab, nr)` with an integer argument.
pub(super) fn nbd_ioctl(dev: &File, nr: u8, arg: u64) -> io::Result<()> {
    let request = (0xab_u64 << 8) | u64::from(nr);
    // SAFETY: NBD ioctls take their argument by value (an integer or an fd number), never a pointer, so the
    // kernel reads no memory of ours; `dev` is an open /dev/nbdN for the whole call. The return value is
    // checked.
    Errno::result(unsafe {
        nix::libc::ioctl(dev.as_raw_fd(), request as _, arg as nix::libc::c_ulong)
    })?;
    Ok(())
}
