//! The raw system calls of the dm area: nix has no keyctl wrappers, so `add_key(2)` and
//! `keyctl(KEYCTL_INVALIDATE)` are called here, each as a small safe function.
//!
//! The errno convention of every `sys` file: a raw call's result is checked with
//! [`Errno::result`](nix::errno::Errno::result) and returned as an [`io::Error`] (which keeps the OS text).
#![allow(unsafe_code)]

use nix::errno::Errno;
use nix::libc;
use std::ffi::CStr;
use std::io;

/// `KEY_SPEC_THREAD_KEYRING` from `<linux/keyctl.h>`.
const KEY_SPEC_THREAD_KEYRING: i32 = -1;
/// `KEYCTL_INVALIDATE` from `<linux/keyctl.h>`.
const KEYCTL_INVALIDATE: i32 = 21;

/// `add_key(kind, description, payload, KEY_SPEC_THREAD_KEYRING)`: the new key's serial.
pub(super) fn add_thread_key(kind: &CStr, description: &CStr, payload: &[u8]) -> io::Result<i32> {
    // SAFETY: add_key(2) reads two NUL-terminated strings that live for the whole call, and `payload.len()`
    // bytes from `payload`, which is a valid slice; it writes nothing into our memory. The return value is
    // a key serial or -1 with errno set, checked below.
    let rc = Errno::result(unsafe {
        libc::syscall(
            libc::SYS_add_key,
            kind.as_ptr(),
            description.as_ptr(),
            payload.as_ptr(),
            payload.len(),
            KEY_SPEC_THREAD_KEYRING,
        )
    })?;
    i32::try_from(rc).map_err(|_| io::Error::other("add_key returned an out-of-range serial"))
}

/// `keyctl(KEYCTL_INVALIDATE, serial)`.
pub(super) fn invalidate_key(serial: i32) -> io::Result<()> {
    // SAFETY: keyctl(KEYCTL_INVALIDATE, serial) takes two integers and touches no user memory.
    Errno::result(unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_INVALIDATE, serial) })?;
    Ok(())
}
