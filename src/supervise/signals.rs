//! Signal discipline: one mask for the whole process, one reader for the supervisor loop.
//!
//! The contract (catatonit's and tini's, which we follow):
//!
//! * For `run` only, [`block_all`] runs first in `main` (after parsing the command line, which starts no thread),
//!   before any thread exists (threads inherit the mask); the tools keep default dispositions. It
//!   blocks every signal except the synchronous ones the kernel raises for a fault in *our* code (`SIGFPE`,
//!   `SIGILL`, `SIGSEGV`, `SIGBUS`, `SIGABRT`, `SIGTRAP`, `SIGSYS`): blocking those would only turn a crash
//!   into a hang. It also resets inherited `SIG_IGN` dispositions to the default: an ignored `SIGCHLD` would
//!   make the kernel auto-reap our children and hide their exit status (`waitpid` would say `ECHILD`).
//! * A blocked signal is never discarded, not even for a PID 1 whose default action would otherwise be "drop"
//!   (`kernel/signal.c: sig_ignored()`: "Blocked signals are never ignored"). It stays pending until the
//!   supervisor reads it from the [`SignalSource`], a `signalfd(2)` with the same set. No handler runs, so
//!   nothing here has to be async-signal-safe, and one loop owns every signal.
//! * Children must not inherit the mask: [`crate::supervise::spawn`] clears it (to empty, not merely to the
//!   [`original_mask`]: a container runtime may start PID 1 with signals blocked) and resets dispositions,
//!   including those of the real-time signals libc reserves (see `sys`).
//!
//! Real-time signals are blocked (so they don't kill us) and read, but only the classic named ones are
//! reported: nix's [`Signal`] has no variants for them and nothing in this project uses them.
#![forbid(unsafe_code)]

use nix::errno::Errno;
use nix::libc;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use std::os::fd::AsFd;
use std::sync::OnceLock;
use std::time::Duration;

/// Signals the kernel raises synchronously for a fault in the running thread; they stay unblocked.
pub const SYNCHRONOUS: [Signal; 7] = [
    Signal::SIGFPE,
    Signal::SIGILL,
    Signal::SIGSEGV,
    Signal::SIGBUS,
    Signal::SIGABRT,
    Signal::SIGTRAP,
    Signal::SIGSYS,
];

/// The mask the process started with (set once by [`block_all`]).
static ORIGINAL_MASK: OnceLock<SigSet> = OnceLock::new();

/// The set [`block_all`] blocks and [`SignalSource`] reads: everything but [`SYNCHRONOUS`].
pub fn blocked_set() -> SigSet {
    let mut set = SigSet::all();
    for sig in SYNCHRONOUS {
        set.remove(sig);
    }
    set
}

/// Block every asynchronous signal in the calling thread and reset inherited `SIG_IGN` dispositions.
///
/// Call it first in `main`, while the process has one thread. It cannot report failure (the logger is not up
/// yet); [`SignalSource::new`] checks the mask again and refuses to start if it is not in force.
pub fn block_all() {
    let mut old = SigSet::empty();
    if sigprocmask(
        SigmaskHow::SIG_SETMASK,
        Some(&blocked_set()),
        Some(&mut old),
    )
    .is_ok()
    {
        // A second call keeps the first original mask, which is the one that matters.
        let _ = ORIGINAL_MASK.set(old);
    }
    for signo in 1..=libc::SIGRTMAX() {
        // Keep std's SIGPIPE = SIG_IGN (a write to a closed pipe returns EPIPE instead of raising), and the
        // synchronous ones (std's stack-overflow handler lives on SIGSEGV/SIGBUS).
        let keep = signo == libc::SIGPIPE || SYNCHRONOUS.iter().any(|s| *s as libc::c_int == signo);
        if !keep {
            // SIGKILL, SIGSTOP and the signals libc reserves refuse; libc keeps managing those.
            let _ = super::sys::reset_to_default(signo);
        }
    }
}

/// The signal mask the process was started with, if [`block_all`] ran.
pub fn original_mask() -> Option<SigSet> {
    ORIGINAL_MASK.get().copied()
}

/// Errors of the signal source.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The process mask does not block the signals the supervisor reads (`block_all` did not run first).
    #[error("Signals are not blocked (supervise::signals::block_all must run first)")]
    NotBlocked,
    /// A signalfd call failed.
    #[error("Cannot read signals through signalfd")]
    SignalFd(#[source] Errno),
}

/// The supervisor's single signal source: a non-blocking `signalfd` over [`blocked_set`].
#[derive(Debug)]
pub struct SignalSource {
    fd: SignalFd,
}

impl SignalSource {
    /// Open the source. Fails if the calling thread's mask does not block the signals (they would then be
    /// delivered with their default action instead of being read here).
    pub fn new() -> Result<Self, Error> {
        let mask = SigSet::thread_get_mask().map_err(Error::SignalFd)?;
        let wanted = [
            Signal::SIGCHLD,
            Signal::SIGTERM,
            Signal::SIGINT,
            Signal::SIGHUP,
        ];
        if wanted.iter().any(|s| !mask.contains(*s)) {
            return Err(Error::NotBlocked);
        }
        let fd = SignalFd::with_flags(
            &blocked_set(),
            SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC,
        )
        .map_err(Error::SignalFd)?;
        Ok(Self { fd })
    }

    /// Wait up to `timeout` for signals and return every one pending, oldest first (an empty list on
    /// timeout). Standard signals coalesce: two `SIGCHLD`s may arrive as one, so callers reap until empty.
    pub fn wait(&self, timeout: Duration) -> Result<Vec<Signal>, Error> {
        // Clamp: the supervisor never needs more than its tick, and u16 milliseconds is always representable.
        let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(Error::SignalFd(e)),
        }
        self.drain()
    }

    /// Read every pending signal without waiting.
    pub fn drain(&self) -> Result<Vec<Signal>, Error> {
        let mut out = Vec::new();
        loop {
            match self.fd.read_signal() {
                Ok(Some(info)) => {
                    let signo = libc::c_int::try_from(info.ssi_signo).unwrap_or(0);
                    match Signal::try_from(signo) {
                        Ok(sig) => out.push(sig),
                        Err(_) => log::debug!("ignoring signal {signo}"),
                    }
                }
                Ok(None) => return Ok(out),
                Err(Errno::EINTR) => {}
                Err(e) => return Err(Error::SignalFd(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocked_set_keeps_synchronous_signals_deliverable() {
        let set = blocked_set();
        for sig in SYNCHRONOUS {
            assert!(!set.contains(sig), "{sig} must stay unblocked");
        }
        for sig in [
            Signal::SIGTERM,
            Signal::SIGINT,
            Signal::SIGCHLD,
            Signal::SIGHUP,
            Signal::SIGUSR1,
        ] {
            assert!(set.contains(sig), "{sig} must be blocked");
        }
    }

    #[test]
    fn source_refuses_when_signals_are_not_blocked() {
        // The test harness thread has an empty mask: reading through signalfd would miss signals.
        let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
        assert!(matches!(SignalSource::new(), Err(Error::NotBlocked)));
    }

    #[test]
    fn source_reads_a_blocked_signal_sent_to_this_thread() {
        // Run in a fresh thread so the mask change does not leak into other tests.
        std::thread::spawn(|| {
            sigprocmask(SigmaskHow::SIG_BLOCK, Some(&blocked_set()), None).unwrap();
            let source = SignalSource::new().unwrap();
            // raise(3) signals the calling thread; SIGUSR2 is blocked in this thread, so it stays pending for
            // the signalfd instead of running its default action.
            nix::sys::signal::raise(Signal::SIGUSR2).unwrap();
            let got = source.wait(Duration::from_secs(5)).unwrap();
            assert_eq!(got, vec![Signal::SIGUSR2]);
            assert!(source.wait(Duration::from_millis(10)).unwrap().is_empty());
        })
        .join()
        .unwrap();
    }
}
