//! Upstream's SKR sidecar API on loopback, served from a thread of encfs-init (issue 16).
