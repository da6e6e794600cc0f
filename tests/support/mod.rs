//! Test helpers for the http, blob and nbd tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod nbd_serve;
pub mod range_server;

use encfs_init::manifest::NetworkPlan;
use std::time::Duration;

/// A network plan with short timeouts and fast retries.
pub fn fast_network(retries: u32) -> NetworkPlan {
    NetworkPlan {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_millis(1500),
        retries,
        retry_backoff_max: Duration::from_millis(40),
        ca_bundle: None,
    }
}

/// Deterministic pseudo-random bytes.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}
