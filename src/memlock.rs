//! Keeping key material out of swap: `mlock(2)` on the pages that hold a secret (the raw call is in
//! [`crate::sys`]).
//!
//! [`crate::secret`] locks the buffer of every `SecretBytes` / `SecretString` when it is made. Pages are
//! never unlocked: a page can hold several secrets (and other data), and `mlock` does not count, so
//! unlocking one secret's page could unlock another's. The locked set stays small (the pages that ever
//! held a secret: a few keys and tokens per boot). A failure (RLIMIT_MEMLOCK too small, no
//! CAP_IPC_LOCK) is a warning, once: the secret is still zeroized on drop, it may just reach swap.

#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicBool, Ordering};

/// Lock the pages holding `len` bytes at `ptr` into memory. True when they are locked.
pub fn lock(ptr: *const u8, len: usize) -> bool {
    if len == 0 {
        // No allocation behind an empty buffer.
        return true;
    }
    let Err(e) = crate::sys::mlock(ptr, len) else {
        return true;
    };
    static WARNED: AtomicBool = AtomicBool::new(false);
    if !WARNED.swap(true, Ordering::Relaxed) {
        log::warn!(
            "memory lock: mlock of key material failed ({e}); keys are still wiped after use but may reach swap; fix: raise RLIMIT_MEMLOCK (ulimit -l) or grant CAP_IPC_LOCK"
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
