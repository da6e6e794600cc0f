//! Restart policy: pure decisions from (how it ended, how long it ran) to (restart after a delay, stop, or
//! give up). No clocks, no processes: the supervisor measures, this decides, and the tests replay sequences.
//!
//! Semantics:
//!
//! * [`RestartMode::Never`]: the first exit ends supervision with the child's exit code (tini's behaviour).
//! * [`RestartMode::OnFailure`]: exit code 0 ends supervision with 0; a non-zero code or a signal restarts.
//! * [`RestartMode::Always`]: every exit restarts, 0 included.
//! * A run that lasted at least `stable_after` wipes the history: backoff back to `backoff_initial`, the
//!   restart count back to zero.
//! * Restart number k in a row (k = 1, 2, ...) waits `backoff_initial * 2^(k-1)`, capped at `backoff_max`
//!   ([`crate::backoff::exponential`]).
//! * At most `max_restarts` restarts in a row: the exit that would need one more gives up (the supervisor
//!   then ends with [`crate::exit::GAVE_UP`]). `max_restarts = 0` gives up at the first restartable exit.
#![forbid(unsafe_code)]

use super::reaper::Termination;
use crate::manifest::{RestartMode, SupervisePlan};
use std::time::Duration;

/// What to do after a child exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Start it again after `delay`; `attempt` counts restarts in a row (1 for the first).
    Restart {
        /// How long to wait first.
        delay: Duration,
        /// Restarts in a row, this one included.
        attempt: u32,
    },
    /// Do not restart: supervision ends with this exit code.
    Stop {
        /// The child's exit code (128 + N for signal N).
        code: i32,
    },
    /// The restart limit is reached: supervision ends with [`crate::exit::GAVE_UP`].
    GiveUp {
        /// Restarts in a row that were done before giving up.
        restarts: u32,
        /// The last exit code of the child, for the log.
        last_code: i32,
    },
}

/// Restart state of one supervised child.
#[derive(Debug, Clone)]
pub struct RestartPolicy {
    mode: RestartMode,
    plan: SupervisePlan,
    in_a_row: u32,
}

impl RestartPolicy {
    /// A fresh policy: no restarts yet.
    pub fn new(mode: RestartMode, plan: SupervisePlan) -> Self {
        Self {
            mode,
            plan,
            in_a_row: 0,
        }
    }

    /// Restarts done in a row so far (since the last stable run).
    pub fn restarts_in_a_row(&self) -> u32 {
        self.in_a_row
    }

    /// The child ended as `how` after running for `ran_for`: decide.
    pub fn on_exit(&mut self, how: Termination, ran_for: Duration) -> Decision {
        let code = how.code();
        let wants_restart = match self.mode {
            RestartMode::Never => false,
            RestartMode::OnFailure => !how.success(),
            RestartMode::Always => true,
        };
        if !wants_restart {
            return Decision::Stop { code };
        }
        if ran_for >= self.plan.stable_after {
            self.in_a_row = 0;
        }
        if self.in_a_row >= self.plan.max_restarts {
            return Decision::GiveUp {
                restarts: self.in_a_row,
                last_code: code,
            };
        }
        let delay = crate::backoff::exponential(
            self.plan.backoff_initial,
            self.plan.backoff_max,
            self.in_a_row,
        );
        self.in_a_row += 1;
        Decision::Restart {
            delay,
            attempt: self.in_a_row,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn plan(max_restarts: u32) -> SupervisePlan {
        SupervisePlan {
            grace_period: Duration::from_secs(10),
            backoff_initial: 100 * MS,
            backoff_max: 1000 * MS,
            stable_after: Duration::from_secs(10),
            max_restarts,
            health_interval: Duration::from_secs(30),
        }
    }

    const FAIL: Termination = Termination::Exited(1);
    const OK: Termination = Termination::Exited(0);
    const TERM: Termination = Termination::Signaled(15);

    fn restart(ms: u64, attempt: u32) -> Decision {
        Decision::Restart {
            delay: Duration::from_millis(ms),
            attempt,
        }
    }

    /// Replay `(termination, ran_for_ms)` events and collect the decisions.
    fn replay(
        mode: RestartMode,
        plan: SupervisePlan,
        events: &[(Termination, u64)],
    ) -> Vec<Decision> {
        let mut p = RestartPolicy::new(mode, plan);
        events
            .iter()
            .map(|(t, ms)| p.on_exit(*t, Duration::from_millis(*ms)))
            .collect()
    }

    #[test]
    fn never_passes_the_first_exit_code_through() {
        for t in [OK, FAIL, TERM, Termination::Exited(255)] {
            assert_eq!(
                replay(RestartMode::Never, plan(3), &[(t, 5)]),
                vec![Decision::Stop { code: t.code() }]
            );
        }
    }

    #[test]
    fn on_failure_restarts_failures_and_stops_on_success() {
        let got = replay(
            RestartMode::OnFailure,
            plan(3),
            &[(FAIL, 5), (TERM, 5), (FAIL, 5), (OK, 5)],
        );
        assert_eq!(
            got,
            vec![
                restart(100, 1),
                restart(200, 2),
                restart(400, 3),
                Decision::Stop { code: 0 }
            ]
        );
    }

    #[test]
    fn gives_up_after_max_restarts_in_a_row() {
        let got = replay(
            RestartMode::OnFailure,
            plan(3),
            &[(FAIL, 5), (FAIL, 5), (FAIL, 5), (Termination::Exited(7), 5)],
        );
        assert_eq!(
            got[..3],
            [restart(100, 1), restart(200, 2), restart(400, 3)]
        );
        assert_eq!(
            got[3],
            Decision::GiveUp {
                restarts: 3,
                last_code: 7
            }
        );
    }

    #[test]
    fn zero_max_restarts_gives_up_at_once() {
        assert_eq!(
            replay(RestartMode::OnFailure, plan(0), &[(TERM, 5)]),
            vec![Decision::GiveUp {
                restarts: 0,
                last_code: 143
            }]
        );
        // ... but a success under on-failure is still a plain stop.
        assert_eq!(
            replay(RestartMode::OnFailure, plan(0), &[(OK, 5)]),
            vec![Decision::Stop { code: 0 }]
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let events = vec![(FAIL, 5); 7];
        let got = replay(RestartMode::Always, plan(10), &events);
        let delays: Vec<u64> = got
            .iter()
            .map(|d| match d {
                Decision::Restart { delay, .. } => u64::try_from(delay.as_millis()).unwrap(),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(delays, vec![100, 200, 400, 800, 1000, 1000, 1000]);
    }

    #[test]
    fn a_stable_run_resets_backoff_and_count() {
        let got = replay(
            RestartMode::OnFailure,
            plan(2),
            &[
                (FAIL, 5),
                (FAIL, 5),
                (FAIL, 10_000),
                (FAIL, 9_999),
                (FAIL, 1),
            ],
        );
        assert_eq!(
            got,
            vec![
                restart(100, 1),
                restart(200, 2),
                // Ran exactly stable_after: history wiped, first restart again.
                restart(100, 1),
                restart(200, 2),
                Decision::GiveUp {
                    restarts: 2,
                    last_code: 1
                },
            ]
        );
    }

    #[test]
    fn always_restarts_clean_exits_too_and_counts_them() {
        let got = replay(RestartMode::Always, plan(2), &[(OK, 5), (OK, 5), (OK, 5)]);
        assert_eq!(
            got,
            vec![
                restart(100, 1),
                restart(200, 2),
                Decision::GiveUp {
                    restarts: 2,
                    last_code: 0
                }
            ]
        );
        // A long-lived app restarted by Always never gives up.
        let long = vec![(OK, 60_000); 50];
        assert!(replay(RestartMode::Always, plan(1), &long)
            .iter()
            .all(|d| *d == restart(100, 1)));
    }

    #[test]
    fn restarts_in_a_row_is_reported() {
        let mut p = RestartPolicy::new(RestartMode::OnFailure, plan(5));
        assert_eq!(p.restarts_in_a_row(), 0);
        p.on_exit(FAIL, Duration::ZERO);
        p.on_exit(FAIL, Duration::ZERO);
        assert_eq!(p.restarts_in_a_row(), 2);
    }
}
