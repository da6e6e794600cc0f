//! Why a blob can no longer be served, for the supervisor: the data path sets it when the blob was replaced
//! (a 412 on a conditional request, [`super::Error::Changed`]) or when its bearer token can no longer be
//! refreshed (a refresh failed past the token's expiry). Set once (the first cause stays); cheap to clone;
//! read by `crate::init::revive`, which then re-opens the filesystem or marks it down.
#![forbid(unsafe_code)]

use std::sync::{Arc, OnceLock};

/// A blob's fatal condition, once it has one.
#[derive(Debug, Clone, Default)]
pub struct FatalWatch(Arc<OnceLock<String>>);

impl FatalWatch {
    /// A watch with nothing to report.
    pub fn new() -> Self {
        Self::default()
    }

    /// Record `why` (the first call wins).
    pub fn set(&self, why: String) {
        let _ = self.0.set(why);
    }

    /// The recorded cause, if any.
    pub fn get(&self) -> Option<String> {
        self.0.get().cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_cause_stays_and_clones_share_it() {
        let w = FatalWatch::new();
        let seen = w.clone();
        assert_eq!(seen.get(), None);
        w.set("replaced".into());
        w.set("token".into());
        assert_eq!(seen.get().as_deref(), Some("replaced"));
    }
}
