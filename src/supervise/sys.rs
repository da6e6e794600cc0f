//! The raw system calls of supervision, each a small safe function: resetting a signal's disposition
//! (through libc, and with the raw `rt_sigaction` for the signals libc reserves), a non-blocking
//! `waitpid(-1)` that keeps the raw status, and the hook that gives a child a clean state between `fork`
//! and `exec`.
//!
//! The errno convention of every `sys` file: a raw call's result is checked with
//! [`Errno::result`](nix::errno::Errno::result) and returned as an [`io::Error`] (which keeps the OS text).
#![allow(unsafe_code)]

use nix::errno::Errno;
use nix::libc;
use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow};
use nix::unistd::{getpid, isatty, setpgid, tcsetpgrp, Pid};
use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Set the disposition of signal number `signo` to `SIG_DFL` in this process, through libc.
/// `SIGKILL`, `SIGSTOP` and the signals libc reserves for itself refuse (an error).
pub(super) fn reset_to_default(signo: libc::c_int) -> io::Result<()> {
    // SAFETY: `sigaction` is a plain C struct for which all-zero bytes are a valid value (empty mask, no
    // flags); `sa_sigaction = SIG_DFL` (0) installs no handler, so no Rust code can be run from signal
    // context. The pointers passed are to a live local and null (old action not wanted).
    let rc = unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = libc::SIG_DFL;
        libc::sigaction(signo, &action, std::ptr::null_mut())
    };
    Errno::result(rc)?;
    Ok(())
}

/// Set signal number `signo` to `SIG_DFL` with the raw `rt_sigaction` system call, errors ignored.
///
/// Unlike [`reset_to_default`] this also reaches the real-time signals glibc and musl reserve for
/// themselves (32-34), which libc's `sigaction` refuses to touch: an environment that ignores one of them
/// would otherwise pass `SIG_IGN` on to the application (measured: signal 32 arrived ignored on a CI-like
/// host). Only for a child about to `exec`, where libc's own use of those signals no longer matters.
/// Async-signal-safe: one system call, no allocation.
fn reset_to_default_raw(signo: libc::c_int) {
    // The kernel's `struct sigaction` is at most handler, flags, restorer and a 64-bit mask (32 bytes on
    // x86_64); all zero means SIG_DFL, no flags, empty mask. The set size is the kernel's (64 signals).
    let action = [0u64; 4];
    const KERNEL_SIGSET_SIZE: libc::size_t = 8;
    // SAFETY: rt_sigaction reads `action`, a live, suitably aligned, zero-filled buffer at least as large as
    // the kernel's struct sigaction on every Linux architecture, and writes nothing (old action pointer is
    // null). SIG_DFL installs no handler.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigaction,
            libc::c_long::from(signo),
            action.as_ptr(),
            std::ptr::null_mut::<libc::c_void>(),
            KERNEL_SIGSET_SIZE,
        );
    }
}

/// `waitpid(-1, WNOHANG)` with the raw status: `Ok(None)` when children remain but none has ended,
/// `Ok(Some((pid, status)))` for one that has. Errors keep their errno (`EINTR`, `ECHILD`).
///
/// Through libc rather than nix: nix decodes the status into its `Signal` enum and returns `EINVAL` for a
/// child killed by a real-time signal, after the kernel has already released it.
pub(super) fn wait_any_nohang() -> io::Result<Option<(Pid, libc::c_int)>> {
    let mut status: libc::c_int = 0;
    // SAFETY: `status` is a live local the kernel writes an int into; pid -1 and WNOHANG make this a
    // non-blocking query of any child, with no other memory involved.
    let rc = Errno::result(unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) })?;
    Ok((rc != 0).then(|| (Pid::from_raw(rc), status)))
}

/// Make `cmd` run [`child_setup`] in the child between `fork` and `exec`: its own process group, the
/// terminal's foreground when `foreground_tty` and stdin is a terminal, every disposition `SIG_DFL`, an
/// empty signal mask.
pub(super) fn clean_child_state(cmd: &mut Command, foreground_tty: bool) {
    // SAFETY: the hook runs in the child between fork and exec, where only async-signal-safe calls are
    // allowed: setpgid, isatty (an ioctl), tcsetpgrp (an ioctl), getpid, rt_sigaction (reset_to_default_raw)
    // and sigprocmask are all on the POSIX async-signal-safe list, and nothing in it allocates or takes a
    // lock.
    unsafe {
        cmd.pre_exec(move || child_setup(foreground_tty));
    }
}

/// Runs in the child after fork (see [`clean_child_state`]).
fn child_setup(foreground_tty: bool) -> io::Result<()> {
    let me = Pid::from_raw(0);
    setpgid(me, me)?;
    if foreground_tty {
        let stdin = std::io::stdin();
        if isatty(&stdin).unwrap_or(false) {
            // ENOTTY (not our controlling terminal) and friends are fine: there is nothing to hand over.
            let _ = tcsetpgrp(&stdin, getpid());
        }
    }
    for signo in 1..=libc::SIGRTMAX() {
        reset_to_default_raw(signo);
    }
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)?;
    Ok(())
}
