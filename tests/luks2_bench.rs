//! Benchmark (not a test): our unlock against `cryptsetup open --test-passphrase` on the same image, made
//! with cryptsetup's defaults (argon2id, benchmarked cost). Run in release mode:
//!
//! ```text
//! cargo test --release --test luks2_bench -- --ignored --nocapture
//! ```
//!
//! Our Argon2 runs its lanes on one thread (the argon2 crate without its `parallel` feature); cryptsetup
//! uses one thread per lane, so the ratio grows with the header's `cpus`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod luks2_util;

use encfs_init::luks2::{self, Header};
use luks2_util::*;
use std::process::Command;
use std::time::Instant;

#[test]
#[ignore = "benchmark: run with --release -- --ignored --nocapture"]
fn unlock_time_vs_cryptsetup() {
    let s = Scratch::new("bench");
    let (img, key) = (s.path("img"), s.path("key"));
    sparse(&img, 20);
    let pass = key_file(&key, 32);
    luks_format(&img, &key, &[]);
    let buf = head(&img, 16 << 20);
    let h = Header::parse(&buf).unwrap();
    println!("keyslot 0: {}", h.keyslots[0].kdf);
    let runs = 3;
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let vk = luks2::unlock(&buf, &pass).unwrap();
        ours.push(t.elapsed().as_secs_f64());
        assert_eq!(vk.keyslot(), 0);
        let t = Instant::now();
        run(Command::new(cryptsetup())
            .args(["open", "--test-passphrase", "--key-file"])
            .arg(&key)
            .arg(&img));
        theirs.push(t.elapsed().as_secs_f64());
    }
    let min = |v: &[f64]| v.iter().cloned().fold(f64::INFINITY, f64::min);
    let (o, c) = (min(&ours), min(&theirs));
    println!("unlock: ours {o:.3} s, cryptsetup {c:.3} s (best of {runs}); ratio ours/cryptsetup = {:.2}", o / c);
    println!("all runs: ours {ours:?}, cryptsetup {theirs:?}");
}
