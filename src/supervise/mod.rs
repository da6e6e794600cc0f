//! Signals, children and restart policy: the catatonit/tini core.
