//! Log rate limiting: lines a remote peer or a guest can trigger at will (HTTP retries, NBD and FUSE
//! request errors) are logged at most once per period per call site, with a count of the ones left out.
#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A per-callsite log limiter: `check` says whether to log now and how many were suppressed since.
#[derive(Debug)]
pub struct RateLimit {
    period_ms: u64,
    last_ms: AtomicU64,
    suppressed: AtomicU64,
}

impl RateLimit {
    /// One message per `period`.
    pub const fn new(period: Duration) -> Self {
        Self {
            period_ms: period.as_millis() as u64,
            last_ms: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(suppressed)` when a message may be logged now.
    pub fn check(&self) -> Option<u64> {
        let now = monotonic_ms();
        let last = self.last_ms.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < self.period_ms {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        if self
            .last_ms
            .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(self.suppressed.swap(0, Ordering::Relaxed))
    }
}

fn monotonic_ms() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_millis())
        .unwrap_or(u64::MAX)
        .saturating_add(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_period_then_the_count_of_the_ones_left_out() {
        let limit = RateLimit::new(Duration::from_millis(200));
        assert_eq!(limit.check(), Some(0));
        assert_eq!(limit.check(), None);
        assert_eq!(limit.check(), None);
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(limit.check(), Some(2));
        assert_eq!(limit.check(), None);
    }
}
