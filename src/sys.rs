//! The raw calls that belong to no one area: `mlock(2)` for [`crate::memlock`] and
//! `prctl(PR_SET_IO_FLUSHER)` for [`crate::io_flusher`]. Like every `sys` file, each raw call's result is
//! checked with [`Errno::result`](nix::errno::Errno::result) and returned as an [`std::io::Error`] (which
//! keeps the OS text).
#![allow(unsafe_code)]

use nix::errno::Errno;

/// `PR_SET_IO_FLUSHER` from `<linux/prctl.h>` (Linux 5.6); the libc crate only defines it for Android.
const PR_SET_IO_FLUSHER: nix::libc::c_int = 57;

/// `mlock(2)` the pages holding `[ptr, ptr + len)`. The range need not be valid: an unmapped one fails
/// with ENOMEM.
pub fn mlock(ptr: *const u8, len: usize) -> std::io::Result<()> {
    // SAFETY: mlock(2) reads and writes no memory of ours: it marks the pages that contain
    // [ptr, ptr + len) (the kernel rounds to page boundaries) as locked; an unmapped range only makes it
    // fail with ENOMEM, which is returned.
    Errno::result(unsafe { nix::libc::mlock(ptr.cast(), len) })?;
    Ok(())
}

/// `prctl(PR_SET_IO_FLUSHER, 1)` for the calling thread.
pub fn set_io_flusher() -> std::io::Result<()> {
    // SAFETY: PR_SET_IO_FLUSHER takes only integer arguments (1 = set, the rest must be 0); prctl reads
    // no memory of ours and changes only the calling thread's flags.
    Errno::result(unsafe { nix::libc::prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0) })?;
    Ok(())
}
