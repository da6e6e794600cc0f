//! Reaping: collect every terminated child, ours or adopted.
//!
//! As PID 1 (or a child subreaper) we inherit every orphan in our namespace; each must be waited for or it
//! stays a zombie forever. `SIGCHLD` is a standard signal and coalesces, so one notification may stand for
//! many exits: [`reap`] loops `waitpid(-1, WNOHANG)` until it returns 0 (children remain, none exited) or
//! `ECHILD` (no children at all), and the supervisor also calls it on a periodic tick in case a notification
//! was lost (catatonit `reap_zombies`, tini's 1 s `sigtimedwait` timeout).
//!
//! **Only the supervisor reaps.** Nothing else in the process may call `waitpid`, `Command::status()` or
//! `Child::wait()`: a reaped pid is routed to its owner through [`crate::supervise::Registry`].
//!
//! `waitpid` is called through libc rather than nix (in `sys`): nix decodes the status into its [`Signal`] enum and
//! returns `EINVAL` for a child killed by a real-time signal, after the kernel has already released it — that
//! exit would be lost. We keep the raw status and decode it with the pure [`Termination::from_raw`].
#![forbid(unsafe_code)]

use nix::errno::Errno;
use nix::libc;
use nix::sys::signal::Signal;
use nix::unistd::Pid;

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Termination {
    /// It called `exit(code)`.
    Exited(i32),
    /// It was killed by signal number N.
    Signaled(i32),
}

impl Termination {
    /// Decode a raw `waitpid` status. `None` for stop/continue reports (we never ask for those).
    pub fn from_raw(status: libc::c_int) -> Option<Self> {
        if libc::WIFEXITED(status) {
            Some(Self::Exited(libc::WEXITSTATUS(status)))
        } else if libc::WIFSIGNALED(status) {
            Some(Self::Signaled(libc::WTERMSIG(status)))
        } else {
            None
        }
    }

    /// The exit code a shell would report: the code itself, or 128 + N for signal N.
    pub fn code(self) -> i32 {
        match self {
            Self::Exited(code) => code,
            Self::Signaled(signo) => 128 + signo,
        }
    }

    /// Exited with code 0.
    pub fn success(self) -> bool {
        self == Self::Exited(0)
    }
}

impl std::fmt::Display for Termination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Self::Exited(code) => write!(f, "exited with code {code}"),
            Self::Signaled(signo) => match Signal::try_from(signo) {
                Ok(sig) => write!(f, "was killed by {sig}"),
                Err(_) => write!(f, "was killed by signal {signo}"),
            },
        }
    }
}

/// Wait for every child that has terminated, without blocking, and hand each to `on_exit`. Returns whether
/// children remain (false once `waitpid` says `ECHILD`).
pub fn reap(mut on_exit: impl FnMut(Pid, Termination)) -> bool {
    loop {
        match super::sys::wait_any_nohang() {
            Ok(None) => return true,
            Ok(Some((pid, status))) => {
                if let Some(t) = Termination::from_raw(status) {
                    on_exit(pid, t);
                }
            }
            Err(e) => match e.raw_os_error().map(Errno::from_raw) {
                Some(Errno::EINTR) => continue,
                Some(Errno::ECHILD) => return false,
                _ => {
                    // Cannot happen with these arguments (EINVAL only for bad options); don't spin.
                    log::warn!("waitpid failed: {e}");
                    return true;
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Raw statuses as the kernel encodes them: exit code in bits 8-15, signal in bits 0-6, core flag 0x80.
    fn exited(code: i32) -> i32 {
        code << 8
    }

    #[test]
    fn exit_codes_pass_through() {
        for code in [0, 1, 2, 126, 127, 255] {
            let t = Termination::from_raw(exited(code)).unwrap();
            assert_eq!(t, Termination::Exited(code));
            assert_eq!(t.code(), code);
        }
        assert!(Termination::from_raw(exited(0)).unwrap().success());
        assert!(!Termination::from_raw(exited(1)).unwrap().success());
    }

    #[test]
    fn signal_deaths_are_128_plus_n() {
        assert_eq!(Termination::from_raw(libc::SIGTERM).unwrap().code(), 143);
        assert_eq!(Termination::from_raw(libc::SIGKILL).unwrap().code(), 137);
        assert_eq!(Termination::from_raw(libc::SIGINT).unwrap().code(), 130);
        // Core dumped: same code, the core flag is not part of it.
        assert_eq!(
            Termination::from_raw(libc::SIGSEGV | 0x80).unwrap(),
            Termination::Signaled(11)
        );
        // A real-time signal, which nix's WaitStatus cannot represent.
        assert_eq!(Termination::from_raw(40).unwrap().code(), 168);
        assert!(!Termination::Signaled(15).success());
    }

    #[test]
    fn stop_and_continue_reports_are_not_terminations() {
        assert_eq!(Termination::from_raw(0x7f | (libc::SIGSTOP << 8)), None);
        assert_eq!(Termination::from_raw(0xffff), None);
    }

    #[test]
    fn display_names_the_signal() {
        assert_eq!(
            Termination::Signaled(9).to_string(),
            "was killed by SIGKILL"
        );
        assert_eq!(
            Termination::Signaled(40).to_string(),
            "was killed by signal 40"
        );
        assert_eq!(Termination::Exited(3).to_string(), "exited with code 3");
    }
}
