//! The process's own attributes: no core dumps and no ptrace-style reads of PID 1's memory, and the legacy
//! variable's value wiped from the original environment block (the raw calls are in `sys`).
//!
//! `std::env::remove_var` only takes the variable out of libc's `environ` array: the bytes the kernel copied
//! onto the initial stack at `execve` stay, and `/proc/<pid>/environ` shows exactly that block (the range
//! `env_start..env_end` of `/proc/<pid>/stat`). [`scrub_env_value`] overwrites the value there in place.
#![forbid(unsafe_code)]

use std::io;

/// Why hardening the process or wiping the environment block failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `prctl(PR_SET_DUMPABLE, 0)` failed.
    #[error("process hardening: prctl(PR_SET_DUMPABLE, 0) failed; fix: run on Linux with prctl allowed by the seccomp profile")]
    Dumpable(#[source] io::Error),
    /// `setrlimit(RLIMIT_CORE, 0)` failed.
    #[error("process hardening: setrlimit(RLIMIT_CORE, 0) failed; fix: run on Linux with setrlimit allowed by the seccomp profile")]
    CoreLimit(#[source] io::Error),
    /// The original environment block could not be found or written.
    #[error("locate it with /proc/self/stat")]
    EnvBlock(#[source] io::Error),
}

/// Make the process non-dumpable (`PR_SET_DUMPABLE` 0: no core dump, `/proc/<pid>/{mem,environ,...}` owned
/// by root and closed to ptrace-less readers) and set `RLIMIT_CORE` to 0.
pub fn harden() -> Result<(), Error> {
    nix::sys::prctl::set_dumpable(false).map_err(|e| Error::Dumpable(e.into()))?;
    super::sys::no_core_dumps().map_err(Error::CoreLimit)
}

/// Overwrite with zero bytes the value of every `name=value` entry in the process's original environment
/// block (what `/proc/<pid>/environ` shows); the name and `=` stay. Returns how many entries were wiped.
/// Call it after the value was read, and after `std::env::remove_var(name)` so that nothing refers to
/// those bytes any more. Sound only while no other thread reads the environment. Works when the process
/// is not dumpable (it reads the block from memory, not through `/proc/self/environ`, which is then root's).
pub fn scrub_env_value(name: &str) -> Result<usize, Error> {
    super::sys::wipe_env_values(name).map_err(Error::EnvBlock)
}
