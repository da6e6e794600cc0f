//! Signals, children and restart policy: the catatonit/tini core.
//!
//! OWNED BY the PID-1 work (issue 3).

pub mod signals {
    //! Signal mask discipline.

    /// Block every asynchronous signal in the calling (main) thread before any thread starts; the supervisor
    /// loop consumes them. Returns nothing yet.
    pub fn block_all() {}
}
