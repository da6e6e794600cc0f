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

/// Whether every page of the `len` bytes at `ptr` is in a locked mapping (`lo` among the `VmFlags` of
/// `/proc/self/smaps`), for tests and diagnostics. `None` when smaps cannot be read (or a mapping's flags
/// come without its header line).
pub fn range_is_locked(ptr: *const u8, len: usize) -> Option<bool> {
    const PAGE: usize = 4096;
    let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
    let start = (ptr as usize) / PAGE * PAGE;
    let end = (ptr as usize).checked_add(len)?.div_ceil(PAGE) * PAGE;
    // The locked mappings, in address order (smaps lists them so).
    let mut locked: Vec<(usize, usize)> = Vec::new();
    let mut current: Option<(usize, usize)> = None;
    for line in smaps.lines() {
        if let Some(flags) = line.strip_prefix("VmFlags:") {
            let range = current.take()?;
            if flags.split_whitespace().any(|f| f == "lo") {
                locked.push(range);
            }
        } else if let Some((range, _)) = line.split_once(' ') {
            if let Some((a, b)) = range.split_once('-') {
                if let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
                {
                    current = Some((a, b));
                }
            }
        }
    }
    // Walk the range through the locked mappings: each one that holds the next unchecked page moves past it.
    let mut at = start;
    for (a, b) in locked {
        if a <= at && at < b {
            at = b;
        }
        if at >= end {
            return Some(true);
        }
    }
    Some(at >= end)
}
