//! Marking a thread that serves block I/O as an I/O flusher: `prctl(PR_SET_IO_FLUSHER)`, the only raw
//! call here (this file is the `sys` file of that one call).
//!
//! The threads that serve a block device's I/O (the NBD and FUSE servers, the block cache's fetch
//! workers) are marked: the kernel then avoids recursing into block I/O when they allocate under memory
//! pressure, which would otherwise deadlock a device whose I/O they serve (it needs CAP_SYS_RESOURCE;
//! without it, serving goes on without the mark).
//!
//! The errno convention of every `sys` file: a raw call's result is checked with
//! [`Errno::result`](nix::errno::Errno::result) and returned as an [`std::io::Error`] (which keeps the OS
//! text).

use nix::errno::Errno;
use std::sync::atomic::{AtomicBool, Ordering};

/// `PR_SET_IO_FLUSHER` from `<linux/prctl.h>` (Linux 5.6); the libc crate only defines it for Android.
const PR_SET_IO_FLUSHER: nix::libc::c_int = 57;

/// Mark the calling thread as an I/O flusher (see the module docs). Returns whether it worked; a
/// failure (EPERM without CAP_SYS_RESOURCE, EINVAL before Linux 5.6) is logged once at debug level.
pub fn set_io_flusher() -> bool {
    // SAFETY: PR_SET_IO_FLUSHER takes only integer arguments (1 = set, the rest must be 0); prctl reads
    // no memory of ours and changes only the calling thread's flags.
    let r = Errno::result(unsafe { nix::libc::prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0) });
    if let Err(e) = r {
        static ONCE: AtomicBool = AtomicBool::new(false);
        if !ONCE.swap(true, Ordering::Relaxed) {
            log::debug!("PR_SET_IO_FLUSHER not set: {}", std::io::Error::from(e));
        }
    }
    r.is_ok()
}
