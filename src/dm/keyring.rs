//! The kernel keyring, for handing dm-crypt its key by reference.
//!
//! dm-crypt accepts `:<size>:logon:<description>` in place of the hex key: at table load it looks the key up
//! with `request_key()` in the *calling thread's* keyrings and copies the payload. So the key is added to the
//! thread keyring (`KEY_SPEC_THREAD_KEYRING`) right before the table load, in the same thread, and invalidated
//! right after: the key exists in the kernel only for the duration of one ioctl, and the dm table (which the
//! kernel shows in `dmsetup table`, and the devicemapper crate logs at trace level) carries only the name.
//! A `logon` key's payload cannot be read back from user space at all, unlike a `user` key.
//!
//! nix has no keyctl wrappers; these are the only two raw syscalls, kept here.

use std::ffi::CString;
use std::io;

/// `KEY_SPEC_THREAD_KEYRING` from `<linux/keyctl.h>`.
const KEY_SPEC_THREAD_KEYRING: i32 = -1;
/// `KEYCTL_INVALIDATE` from `<linux/keyctl.h>`.
const KEYCTL_INVALIDATE: i32 = 21;

/// A key added to the thread keyring; invalidated on drop.
#[derive(Debug)]
pub struct LogonKey {
    serial: i32,
}

impl LogonKey {
    /// Add a `logon` key named `description` holding `payload` to the calling thread's keyring.
    /// `ENOSYS` / `EOPNOTSUPP` mean the kernel has no keyring (Azure's CVM kernels): the caller falls back.
    pub fn add(description: &str, payload: &[u8]) -> io::Result<Self> {
        let kind = CString::new("logon").map_err(io::Error::other)?;
        let desc =
            CString::new(description).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: add_key(2) reads two NUL-terminated strings that live for the whole call, and `payload.len()`
        // bytes from `payload`, which is a valid slice; it writes nothing into our memory. The return value is
        // a key serial or -1 with errno set, checked below.
        let rc = unsafe {
            nix::libc::syscall(
                nix::libc::SYS_add_key,
                kind.as_ptr(),
                desc.as_ptr(),
                payload.as_ptr(),
                payload.len(),
                KEY_SPEC_THREAD_KEYRING,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        let serial = i32::try_from(rc)
            .map_err(|_| io::Error::other("add_key returned an out-of-range serial"))?;
        Ok(Self { serial })
    }
}

impl Drop for LogonKey {
    fn drop(&mut self) {
        // SAFETY: keyctl(KEYCTL_INVALIDATE, serial) takes two integers and touches no user memory. A failure
        // (the key already gone) leaves nothing to clean up; the thread keyring dies with the thread anyway.
        let rc =
            unsafe { nix::libc::syscall(nix::libc::SYS_keyctl, KEYCTL_INVALIDATE, self.serial) };
        if rc < 0 {
            log::debug!(
                "keyring: invalidate key {}: {}",
                self.serial,
                io::Error::last_os_error()
            );
        }
    }
}

/// Whether `e` means "this kernel has no keyring support" (as opposed to a real failure).
pub fn unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(nix::libc::ENOSYS) | Some(nix::libc::EOPNOTSUPP)
    )
}
