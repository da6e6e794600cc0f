//! Keeping key material out of swap: `mlock(2)` on the pages that hold a secret. This file is itself the
//! `sys` file of its one raw call (checked with [`Errno::result`](nix::errno::Errno::result), the errno
//! convention of every `sys` file).
//!
//! [`crate::secret`] locks the buffer of every `SecretBytes` / `SecretString` when it is made. Pages are
//! never unlocked: a page can hold several secrets (and other data), and `mlock` does not count, so
//! unlocking one secret's page could unlock another's. The locked set stays small (the pages that ever
//! held a secret: a few keys and tokens per boot). A failure (RLIMIT_MEMLOCK too small, no
//! CAP_IPC_LOCK) is a warning, once: the secret is still zeroized on drop, it may just reach swap.

use nix::errno::Errno;
use std::sync::atomic::{AtomicBool, Ordering};

/// Lock the pages holding `len` bytes at `ptr` into memory. True when they are locked.
pub fn lock(ptr: *const u8, len: usize) -> bool {
    if len == 0 {
        // No allocation behind an empty buffer.
        return true;
    }
    // SAFETY: mlock(2) reads and writes no memory of ours: it marks the pages that contain
    // [ptr, ptr + len) (the kernel rounds to page boundaries) as locked. The caller passes a live
    // allocation of at least `len` bytes; an unmapped range would only make it fail with ENOMEM, checked
    // below.
    let Err(e) = Errno::result(unsafe { nix::libc::mlock(ptr.cast(), len) }) else {
        return true;
    };
    static WARNED: AtomicBool = AtomicBool::new(false);
    if !WARNED.swap(true, Ordering::Relaxed) {
        log::warn!(
            "memory lock: mlock of key material failed ({}); keys are still wiped after use but may reach swap; fix: raise RLIMIT_MEMLOCK (ulimit -l) or grant CAP_IPC_LOCK",
            std::io::Error::from(e)
        );
    }
    false
}

/// The process's locked memory in kB (`VmLck` of `/proc/self/status`), for tests and diagnostics.
pub fn locked_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmLck:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
