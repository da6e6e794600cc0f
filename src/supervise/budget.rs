//! The restart budget of a transport's serving side (NBD and FUSE alike): at most [`MAX_RESTARTS`] restarts
//! within [`WINDOW`]. A serving side that keeps dying (a request that crashes it every time it is re-sent,
//! say) is given up instead of restarted forever; the supervisor then ends the run ([`crate::exit::GAVE_UP`]).
#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Restarts of one serving side allowed within [`WINDOW`].
pub const MAX_RESTARTS: usize = 30;
/// See [`MAX_RESTARTS`].
pub const WINDOW: Duration = Duration::from_secs(600);

/// The restarts of one serving side within the last [`WINDOW`].
#[derive(Debug, Default)]
pub struct RestartBudget {
    recent: VecDeque<Instant>,
}

impl RestartBudget {
    /// An untouched budget.
    pub fn new() -> Self {
        Self::default()
    }

    /// Record one more restart. `Err(deaths)` when the budget is spent: the serving side died `deaths` times
    /// within the window (this death included) and must not be restarted again.
    pub fn take(&mut self) -> Result<(), usize> {
        self.recent.retain(|t| t.elapsed() < WINDOW);
        if self.recent.len() >= MAX_RESTARTS {
            return Err(self.recent.len() + 1);
        }
        self.recent.push_back(Instant::now());
        Ok(())
    }

    /// The window in minutes, for messages.
    pub fn window_minutes() -> u64 {
        WINDOW.as_secs() / 60
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_spent_after_max_restarts_in_the_window() {
        let mut b = RestartBudget::new();
        for _ in 0..MAX_RESTARTS {
            assert_eq!(b.take(), Ok(()));
        }
        assert_eq!(b.take(), Err(MAX_RESTARTS + 1));
        assert_eq!(
            b.take(),
            Err(MAX_RESTARTS + 1),
            "a spent budget stays spent"
        );
    }
}
