//! Marking a thread that serves block I/O as an I/O flusher: `prctl(PR_SET_IO_FLUSHER)` (the raw call is
//! in [`crate::sys`]).
//!
//! The threads that serve a block device's I/O (the NBD and FUSE servers, the block cache's fetch
//! workers) are marked: the kernel then avoids recursing into block I/O when they allocate under memory
//! pressure, which would otherwise deadlock a device whose I/O they serve (it needs CAP_SYS_RESOURCE;
//! without it, serving goes on without the mark).

#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicBool, Ordering};

/// Mark the calling thread as an I/O flusher (see the module docs). Returns whether it worked; a
/// failure (EPERM without CAP_SYS_RESOURCE, EINVAL before Linux 5.6) is logged once at debug level.
pub fn set_io_flusher() -> bool {
    let r = crate::sys::set_io_flusher();
    if let Err(e) = &r {
        static ONCE: AtomicBool = AtomicBool::new(false);
        if !ONCE.swap(true, Ordering::Relaxed) {
            log::debug!("PR_SET_IO_FLUSHER not set: {e}");
        }
    }
    r.is_ok()
}
