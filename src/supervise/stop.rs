//! Stopping processes: the rest of the application's process group after it ended, and, as PID 1 of a
//! namespace, every process left at the end (SIGTERM, the grace period, SIGKILL), reaping meanwhile.
#![forbid(unsafe_code)]

use super::{reaper, Supervisor, TICK};
use nix::errno::Errno;
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use std::time::{Duration, Instant};

/// How long to wait for processes to vanish after a final `SIGKILL` before giving up on them.
const KILL_WAIT: Duration = Duration::from_secs(5);

impl Supervisor {
    /// The application's leader has ended for good, but processes it started in its group (a background
    /// writer, say) may live on and keep files open, which would make the read-only remount before the
    /// final flush fail. Stop them too, as the final sweep stops everything: SIGTERM (also when shutting
    /// down: the signal forwarded then may have been one that a shell's background jobs ignore, SIGINT or
    /// SIGQUIT), the grace period (what is left of it when shutting down), SIGKILL.
    pub(super) fn drain_group(&mut self, pgid: Pid) {
        let term_deadline = match self.shutdown {
            Some(sd) => sd.deadline,
            None => Instant::now() + self.opts.plan.grace_period,
        };
        self.escalate(
            Pid::from_raw(-pgid.as_raw()),
            &format!("the rest of the application's process group ({pgid})"),
            term_deadline,
            &|s: &mut Self| {
                s.reap_all();
                killpg(pgid, None).is_ok()
            },
        );
    }

    /// Stop `target` (a `kill` target: -1 for every process, -PGID for a group), politely then not:
    /// SIGTERM, wait until `term_deadline`, SIGKILL, wait at most [`KILL_WAIT`]. Ends as soon as `remaining`
    /// (which also reaps) says nobody is left. Only SIGCHLD matters meanwhile; other signals are dropped.
    fn escalate(
        &mut self,
        target: Pid,
        who: &str,
        term_deadline: Instant,
        remaining: &dyn Fn(&mut Self) -> bool,
    ) {
        for sig in [Signal::SIGTERM, Signal::SIGKILL] {
            if !remaining(self) {
                return;
            }
            log::info!("sending {sig} to {who}");
            if let Err(e) = kill(target, sig) {
                if e == Errno::ESRCH {
                    return;
                }
                log::warn!("kill({target}, {sig}): {e}");
            }
            let deadline = match sig {
                Signal::SIGTERM => term_deadline,
                _ => Instant::now() + KILL_WAIT,
            };
            while Instant::now() < deadline {
                if !remaining(self) {
                    return;
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if let Err(e) = self.signals.wait(left.min(TICK)) {
                    log::warn!("supervisor: {}", crate::errors::chain(&e));
                    return;
                }
            }
        }
        if remaining(self) {
            log::warn!(
                "{who}: survived SIGKILL for {KILL_WAIT:?} (uninterruptible sleep?): going on without them"
            );
        }
    }

    /// After [`Supervisor::run`]: as PID 1 of a namespace, end every process still alive (SIGTERM, the
    /// grace period, SIGKILL). Separate from `run` so that read-write filesystems can be flushed to the
    /// blob service first, while every process they may need is still alive.
    pub fn sweep_leftovers(&mut self) {
        if self.opts.sweep {
            self.sweep();
        }
    }

    /// As PID 1 of a namespace: stop everything still running, politely then not.
    pub(super) fn sweep(&mut self) {
        let term_deadline = Instant::now() + self.opts.plan.grace_period;
        self.escalate(
            Pid::from_raw(-1),
            "the remaining processes",
            term_deadline,
            &Self::reap_all,
        );
    }

    /// Reap without routing (during the final sweep); true while children remain.
    pub(super) fn reap_all(&mut self) -> bool {
        let children = &mut self.children;
        reaper::reap(|pid, t| {
            if children.remove(pid).is_none() {
                log::debug!("reaped orphan {pid}: {t}");
            }
        })
    }
}

/// Signal the application's group; fall back to the pid if it left the group.
pub(super) fn signal_group(pid: Pid, pgid: Pid, sig: Signal) {
    if let Err(e) = killpg(pgid, sig) {
        if let Err(e2) = kill(pid, sig) {
            log::debug!("cannot send {sig} to the application: killpg: {e}, kill: {e2}");
        }
    }
}
