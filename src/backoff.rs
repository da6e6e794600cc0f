//! Exponential backoff, the one computation of a wait before trying again: HTTP retries
//! ([`crate::http::RetryPolicy`]) and the supervisor's restart delay ([`crate::supervise::policy`]).
//!
//! Wait number `n + 1` (`n` = 0 for the first) is `initial * 2^n`, capped at `max` (never above it, even if
//! `initial > max`), without overflow. [`jittered`] spreads a wait over `[d/2, d]` so that many clients
//! failing together do not retry together.
#![forbid(unsafe_code)]

use std::time::Duration;

/// `initial * 2^n`, capped at `max`.
pub fn exponential(initial: Duration, max: Duration, n: u32) -> Duration {
    let factor = 1u32.checked_shl(n).unwrap_or(u32::MAX);
    initial.saturating_mul(factor).min(max)
}

/// `d` jittered with `rand` in `[0, 2^64)`: a value in `[d/2, d]`.
pub fn jittered(d: Duration, rand: u64) -> Duration {
    let half = d / 2;
    let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
    let jitter = if nanos == 0 {
        0
    } else {
        rand % nanos.saturating_add(1)
    };
    half.saturating_add(Duration::from_nanos(jitter))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn exponential_doubles_up_to_the_cap() {
        let got: Vec<Duration> = (0..7)
            .map(|n| exponential(100 * MS, 1000 * MS, n))
            .collect();
        let want = [100, 200, 400, 800, 1000, 1000, 1000].map(|ms| ms * MS);
        assert_eq!(got, want);
    }

    #[test]
    fn exponential_is_overflow_safe_and_capped() {
        assert_eq!(exponential(100 * MS, 1000 * MS, 40), 1000 * MS);
        assert_eq!(exponential(100 * MS, 1000 * MS, 31), 1000 * MS);
        assert_eq!(exponential(Duration::MAX, 1000 * MS, 3), 1000 * MS);
        assert_eq!(exponential(5000 * MS, 1000 * MS, 0), 1000 * MS);
        assert_eq!(exponential(Duration::ZERO, 1000 * MS, 5), Duration::ZERO);
    }

    #[test]
    fn jitter_stays_within_half_and_whole() {
        let d = 400 * MS;
        assert_eq!(jittered(d, 0), 200 * MS);
        for r in [1, 7, 12345, u64::MAX - 7, u64::MAX] {
            let j = jittered(d, r);
            assert!(j >= 200 * MS && j <= d, "{r}: {j:?}");
        }
        assert_eq!(jittered(Duration::ZERO, u64::MAX), Duration::ZERO);
        assert!(jittered(Duration::MAX, u64::MAX) <= Duration::MAX);
    }
}
