//! The one raw call the serving path needs: `prctl(PR_SET_IO_FLUSHER)`.

use std::sync::atomic::{AtomicBool, Ordering};

/// `PR_SET_IO_FLUSHER` from `<linux/prctl.h>` (Linux 5.6); the libc crate only defines it for Android.
const PR_SET_IO_FLUSHER: nix::libc::c_int = 57;

/// Mark the calling thread as an I/O flusher (see the module docs). Returns whether it worked; a
/// failure (EPERM without CAP_SYS_RESOURCE, EINVAL before Linux 5.6) is logged once at debug level.
pub fn set_io_flusher() -> bool {
    // SAFETY: PR_SET_IO_FLUSHER takes only integer arguments (1 = set, the rest must be 0); prctl reads
    // no memory of ours and changes only the calling thread's flags.
    let rc = unsafe { nix::libc::prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0) };
    if rc != 0 {
        static ONCE: AtomicBool = AtomicBool::new(false);
        if !ONCE.swap(true, Ordering::Relaxed) {
            log::debug!(
                "PR_SET_IO_FLUSHER not set: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    rc == 0
}
