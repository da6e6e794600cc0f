//! Retries for transient HTTP failures: exponential backoff with jitter, bounded by a number of retries
//! and an optional deadline, honouring the server's `Retry-After`.
//!
//! Policy: attempt `n` (0-based) that fails transiently waits a random time in `[d/2, d]` with
//! `d = min(initial * 2^n, max)`, or the server's `Retry-After` when that is longer (a throttling service
//! means it). `Retry-After` is a number the server chooses, so it is bounded: with a deadline, a wait that
//! would end past the deadline is not started (the last error is returned at once, wrapped in
//! [`Error::Deadline`], which says what the server asked for); without one, it is honoured only up to
//! `max`. Non-transient failures (4xx other than 408/429, TLS, bad requests) are returned immediately.
#![forbid(unsafe_code)]

use super::error::Error;
use crate::ratelimit::RateLimit;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How a call is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub retries: u32,
    /// First backoff.
    pub initial: Duration,
    /// Longest backoff.
    pub max: Duration,
    /// Overall budget for all attempts and waits, measured from the first attempt.
    pub deadline: Option<Duration>,
}

impl RetryPolicy {
    /// No retries at all.
    pub const NONE: RetryPolicy = RetryPolicy {
        retries: 0,
        initial: Duration::ZERO,
        max: Duration::ZERO,
        deadline: None,
    };

    /// The backoff before retry number `attempt + 1` (without `Retry-After`), jittered with `rand` in
    /// `[0, 2^64)`: a value in `[d/2, d]`.
    pub fn backoff(&self, attempt: u32, rand: u64) -> Duration {
        let d = crate::backoff::exponential(self.initial, self.max, attempt);
        crate::backoff::jittered(d, rand)
    }

    /// The wait before retry number `attempt + 1`: the backoff, or the server's `retry_after` when that is
    /// longer. Without a deadline the server's value counts only up to `max` (it is the server's choice,
    /// and nothing else would bound it); with one, the caller compares the result with the time left.
    pub fn wait(&self, attempt: u32, retry_after: Option<Duration>, rand: u64) -> Duration {
        let backoff = self.backoff(attempt, rand);
        match (retry_after, self.deadline) {
            (None, _) => backoff,
            (Some(ra), Some(_)) => backoff.max(ra),
            (Some(ra), None) => backoff.max(ra.min(self.max)),
        }
    }
}

/// Set once shutdown has flushed what it must: from then on nothing is retried, so that a request in flight
/// (a readahead, say) cannot hold up the teardown for a whole deadline while the service is away.
static STOPPED: AtomicBool = AtomicBool::new(false);

/// No more retries in this process (shutdown); calls in progress fail at their next transient error.
pub fn stop_retrying() {
    STOPPED.store(true, Ordering::SeqCst);
}

/// Run `op` until it succeeds, fails for good, or the policy is exhausted. `op` gets the attempt number.
pub fn retry<T>(
    policy: &RetryPolicy,
    mut op: impl FnMut(u32) -> Result<T, Error>,
) -> Result<T, Error> {
    let start = Instant::now();
    let mut attempt = 0u32;
    loop {
        let err = match op(attempt) {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        if !err.is_transient() || attempt >= policy.retries || STOPPED.load(Ordering::SeqCst) {
            return Err(err);
        }
        let wait = policy.wait(attempt, err.retry_after(), getrandom::u64().unwrap_or(0));
        if let Some(deadline) = policy.deadline {
            // Saturating: the wait may be a server's 2^64-1 seconds.
            if wait >= deadline.saturating_sub(start.elapsed()) {
                return Err(Error::Deadline {
                    attempts: attempt + 1,
                    deadline,
                    retry_after: err.retry_after(),
                    last: Box::new(err),
                });
            }
        }
        log_retry(&err, attempt + 1, wait);
        std::thread::sleep(wait);
        attempt += 1;
    }
}

/// Retry messages are triggered by a remote peer: at most one line per second for the whole process,
/// with a count of the ones left out.
fn log_retry(err: &Error, attempt: u32, wait: Duration) {
    static LIMIT: RateLimit = RateLimit::new(Duration::from_secs(1));
    if let Some(skipped) = LIMIT.check() {
        log::warn!(
            "retry {attempt} in {} ms after: {}{}",
            wait.as_millis(),
            crate::errors::chain(err),
            if skipped > 0 {
                format!(" ({skipped} similar messages suppressed)")
            } else {
                String::new()
            }
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(s: u16, ra: Option<Duration>) -> Error {
        Error::Status {
            method: "GET".into(),
            url: "http://h/p".into(),
            status: s,
            code: None,
            snippet: String::new(),
            retry_after: ra,
        }
    }

    const FAST: RetryPolicy = RetryPolicy {
        retries: 3,
        initial: Duration::from_millis(1),
        max: Duration::from_millis(4),
        deadline: None,
    };

    #[test]
    fn backoff_grows_and_is_capped_with_jitter() {
        let p = RetryPolicy {
            retries: 10,
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
            deadline: None,
        };
        assert_eq!(p.backoff(0, 0), Duration::from_millis(50));
        assert_eq!(p.backoff(0, u64::MAX), p.backoff(0, u64::MAX));
        assert!(p.backoff(0, u64::MAX - 7) <= Duration::from_millis(100));
        assert_eq!(p.backoff(3, 0), Duration::from_millis(400));
        assert_eq!(p.backoff(30, 0), Duration::from_millis(500));
        assert!(p.backoff(40, 12345) <= Duration::from_secs(1));
    }

    #[test]
    fn transient_errors_are_retried_until_success() {
        let mut calls = 0;
        let r = retry(&FAST, |_| {
            calls += 1;
            if calls < 3 {
                Err(status(503, None))
            } else {
                Ok(calls)
            }
        });
        assert_eq!(r, Ok(3));
    }

    #[test]
    fn permanent_errors_are_not_retried() {
        let mut calls = 0;
        let r: Result<(), _> = retry(&FAST, |_| {
            calls += 1;
            Err(status(404, None))
        });
        assert_eq!(r.map_err(|e| e.status()), Err(Some(404)));
        assert_eq!(calls, 1);
    }

    #[test]
    fn retries_are_bounded() {
        let mut calls = 0;
        let r: Result<(), _> = retry(&FAST, |_| {
            calls += 1;
            Err(status(500, None))
        });
        assert!(r.is_err());
        assert_eq!(calls, 4);
    }

    #[test]
    fn retry_after_is_honoured_and_the_deadline_stops_long_waits() {
        // Within a deadline, or up to `max` without one.
        let within = RetryPolicy {
            deadline: Some(Duration::from_secs(10)),
            ..FAST
        };
        let capped = RetryPolicy {
            max: Duration::from_millis(200),
            ..FAST
        };
        for p in [within, capped] {
            let t = Instant::now();
            let mut calls = 0;
            let r = retry(&p, |_| {
                calls += 1;
                if calls == 1 {
                    Err(status(429, Some(Duration::from_millis(120))))
                } else {
                    Ok(())
                }
            });
            assert!(r.is_ok());
            assert!(t.elapsed() >= Duration::from_millis(120));
        }

        let p = RetryPolicy {
            deadline: Some(Duration::from_millis(50)),
            ..FAST
        };
        let t = Instant::now();
        let r: Result<(), _> = retry(&p, |_| Err(status(503, Some(Duration::from_secs(30)))));
        assert!(
            matches!(r, Err(Error::Deadline { attempts: 1, .. })),
            "{r:?}"
        );
        assert!(t.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn a_huge_retry_after_is_bounded_by_max_without_a_deadline() {
        let huge = [
            Duration::from_secs(u64::MAX),
            Duration::from_millis(u64::MAX),
            Duration::MAX,
        ];
        for ra in huge {
            assert!(FAST.wait(0, Some(ra), u64::MAX) <= FAST.max, "{ra:?}");
            let t = Instant::now();
            let mut calls = 0;
            let r: Result<(), _> = retry(&FAST, |_| {
                calls += 1;
                Err(status(503, Some(ra)))
            });
            assert_eq!(r.map_err(|e| e.status()), Err(Some(503)));
            assert_eq!(calls, 4);
            assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        }
    }

    #[test]
    fn a_retry_after_past_the_deadline_ends_the_retries_at_once_with_a_clear_error() {
        let p = RetryPolicy {
            retries: u32::MAX,
            deadline: Some(Duration::from_secs(2)),
            ..FAST
        };
        for ra in [
            Duration::from_secs(u64::MAX),
            Duration::MAX,
            Duration::from_secs(5),
        ] {
            let t = Instant::now();
            let r: Result<(), _> = retry(&p, |_| Err(status(503, Some(ra))));
            let e = r.unwrap_err();
            assert!(matches!(e, Error::Deadline { attempts: 1, .. }), "{e:?}");
            let msg = e.to_string();
            assert!(
                msg.starts_with("gave up after 1 attempts within the 2 s deadline (the server asked to retry after "),
                "{msg}"
            );
            assert!(msg.contains("HTTP 503"), "{msg}");
            assert!(
                t.elapsed() < Duration::from_millis(500),
                "{:?}",
                t.elapsed()
            );
        }
    }
}
