//! Exit codes of encfs-init, documented in the README ("Exit codes").
//!
//! When an application is supervised, its own exit code is passed through (128 + N when it died of signal N);
//! the codes below are used when encfs-init itself decides how to end.

/// Everything went as asked (or the application exited 0).
pub const OK: i32 = 0;
/// `probe`: the readiness file does not say ready.
pub const NOT_READY: i32 = 1;
/// Bad command line or invalid manifest: nothing was attempted.
pub const USAGE: i32 = 2;
/// A boot step (attestation, key release, block device, dm-crypt, mount, publish) failed before readiness;
/// everything set up so far was torn down.
pub const BOOT_FAILED: i32 = 3;
/// Supervision gave up: a worker or the application kept failing past the restart limit.
pub const GAVE_UP: i32 = 4;
/// An internal error (a bug): reported, and treated like a boot failure.
pub const INTERNAL: i32 = 70;
