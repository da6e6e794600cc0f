//! The kernel keyring, for handing dm-crypt its key by reference.
//!
//! dm-crypt accepts `:<size>:logon:<description>` in place of the hex key: at table load it looks the key up
//! with `request_key()` in the *calling thread's* keyrings and copies the payload. So the key is added to the
//! thread keyring (`KEY_SPEC_THREAD_KEYRING`) right before the table load, in the same thread, and invalidated
//! right after: the key exists in the kernel only for the duration of one ioctl, and the dm table (which the
//! kernel shows in `dmsetup table`, and the devicemapper crate logs at trace level) carries only the name.
//! A `logon` key's payload cannot be read back from user space at all, unlike a `user` key.
//!
//! The two raw calls (`add_key`, `keyctl`) are in `sys`.
#![forbid(unsafe_code)]

use std::ffi::CString;
use std::io;

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
        let serial = super::sys::add_thread_key(&kind, &desc, payload)?;
        Ok(Self { serial })
    }
}

impl Drop for LogonKey {
    fn drop(&mut self) {
        // A failure (the key already gone) leaves nothing to clean up; the thread keyring dies with the
        // thread anyway.
        if let Err(e) = super::sys::invalidate_key(self.serial) {
            log::debug!("keyring: invalidate key {}: {e}", self.serial);
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
