//! The child registry: which live pid belongs to whom.
//!
//! The reaper collects every exit in the namespace; most are orphans nobody asked about. A child started
//! through [`crate::supervise::spawn`] is registered here under an [`Owner`], so its exit is routed back to
//! that owner instead of being dropped. Thread workers (NBD serving loops and the like, coming later) report
//! through the supervisor as well; processes that helpers start get an [`Owner::Worker`] tag.
#![forbid(unsafe_code)]

use nix::unistd::Pid;
use std::collections::HashMap;
use std::time::Instant;

/// Who started a child and wants its exit.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Owner {
    /// The supervised application.
    App,
    /// A helper process started on behalf of a named worker.
    Worker(String),
}

/// A registered child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Who wants its exit.
    pub owner: Owner,
    /// Its process group (signals go to the group).
    pub pgid: Pid,
    /// When it was started.
    pub started: Instant,
}

/// Live children by pid.
#[derive(Debug, Default)]
pub struct Registry {
    by_pid: HashMap<Pid, Entry>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Record a started child.
    pub fn insert(&mut self, pid: Pid, entry: Entry) {
        self.by_pid.insert(pid, entry);
    }

    /// A child was reaped: forget it and return its entry (`None` for an orphan we never started).
    pub fn remove(&mut self, pid: Pid) -> Option<Entry> {
        self.by_pid.remove(&pid)
    }

    /// The live child with this owner, if any.
    pub fn find(&self, owner: &Owner) -> Option<(Pid, &Entry)> {
        self.by_pid
            .iter()
            .find(|(_, e)| &e.owner == owner)
            .map(|(pid, e)| (*pid, e))
    }

    /// Number of live registered children.
    pub fn len(&self) -> usize {
        self.by_pid.len()
    }

    /// No live registered children.
    pub fn is_empty(&self) -> bool {
        self.by_pid.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_reaped_pids_to_their_owner() {
        let mut r = Registry::new();
        let now = Instant::now();
        let app = Pid::from_raw(10);
        let helper = Pid::from_raw(11);
        r.insert(
            app,
            Entry {
                owner: Owner::App,
                pgid: app,
                started: now,
            },
        );
        r.insert(
            helper,
            Entry {
                owner: Owner::Worker("nbd0".into()),
                pgid: helper,
                started: now,
            },
        );
        assert_eq!(r.len(), 2);
        assert_eq!(r.find(&Owner::App).map(|(p, _)| p), Some(app));
        // An orphan is not ours.
        assert_eq!(r.remove(Pid::from_raw(99)), None);
        assert_eq!(
            r.remove(helper).map(|e| e.owner),
            Some(Owner::Worker("nbd0".into()))
        );
        assert_eq!(r.remove(helper), None);
        assert_eq!(r.remove(app).map(|e| e.owner), Some(Owner::App));
        assert!(r.is_empty());
        assert_eq!(r.find(&Owner::App), None);
    }
}
