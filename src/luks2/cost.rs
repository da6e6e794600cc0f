//! What an unlock may cost: the work of every keyslot that would be tried (its KDF and the digest check
//! after it), the memory of each Argon2 derivation, and the wall time of the whole step.
//!
//! The allowlist ([`super::validate`]) bounds each field on its own; this bounds the product and the sum,
//! which a hostile header chooses too: 8 keyslots with a digest at 10^8 PBKDF2 iterations pass every field
//! check and would keep a wrong key busy for minutes, and a 4 GiB Argon2 keyslot would make PID 1 allocate
//! more than the VM has (no OOM killer can help PID 1). Everything here is decided **before** anything is
//! derived, from the validated header alone.
//!
//! Work is estimated in nanoseconds of one reference core: RustCrypto's implementations (the ones we run)
//! on an uncontended x86-64 core with SHA extensions. The ratios were measured (sha1 1.2, sha256 1, sha512
//! 4.8, argon2 per KiB-pass 7.8 PBKDF2-sha256 iterations) and rounded up:
//! - PBKDF2, per iteration and per output block of the hash: sha1 120 ns, sha256 100 ns, sha512 500 ns
//!   (no SHA-512 instructions). A keyslot derives `area.key_size` bytes (a 64-byte key is 2 sha256
//!   blocks); the digest derives one block.
//! - Argon2 (computed on one thread whatever `cpus` says), per KiB of memory and per pass: 1000 ns.
//!
//! A slower or busier core takes longer than estimated; [`UNLOCK_DEADLINE`] bounds the wall time.
//!
//! This module reads `/proc/meminfo` ([`Limits::for_this_machine`]); the rest of [`super`] stays pure.

use super::header::{Hash, Header, Kdf, Keyslot};
use std::time::Duration;

/// Work budget for one unlock (all tried keyslots, each with its digest check), reference nanoseconds:
/// 60 s. cryptsetup's defaults cost far less: argon2id 1 GiB x 4 passes is about 4 s, PBKDF2-sha256 at
/// 2 M iterations for a 64-byte area key about 0.4 s, its digest (tens to hundreds of thousands of
/// iterations) under 0.1 s; `encfs-init image create` about 1 ms. 60 s still takes a few keyslots made
/// with cryptsetup's defaults on a fast machine (argon2id 1 GiB, 10+ passes) and refuses 8 keyslots with
/// a digest at 10^8 iterations (80 s) or one Argon2 keyslot at 4 GiB x 16 passes.
pub const WORK_BUDGET_NS: u64 = 60_000_000_000;

/// Wall time of the unlock step after which no further keyslot is started (the one running finishes: a
/// KDF cannot be interrupted, and the work budget bounds it). Twice the work budget, for slower cores.
pub const UNLOCK_DEADLINE: Duration = Duration::from_secs(120);

/// Memory kept free for everything else when an Argon2 derivation is sized against `MemAvailable`: an
/// eighth of it, at least 128 MiB (the block cache, dm-crypt, the kernel's own needs).
pub const MEMORY_HEADROOM_MIN_KIB: u64 = 128 << 10;

const PBKDF2_NS: [(Hash, u64); 3] = [(Hash::Sha1, 120), (Hash::Sha256, 100), (Hash::Sha512, 500)];
const ARGON2_NS_PER_KIB_PASS: u64 = 1000;

/// How much memory an Argon2 derivation may allocate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Memory {
    /// What this machine has now: `MemAvailable` less the headroom, read again before each derivation.
    Machine,
    /// A fixed amount, KiB (tests, or a caller that knows better).
    Fixed(u64),
}

/// What one unlock may spend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Work, reference nanoseconds (see the module documentation).
    pub work_ns: u64,
    /// Memory for one Argon2 derivation.
    pub memory: Memory,
    /// No keyslot is started after this much wall time (the first one always is).
    pub deadline: Duration,
}

impl Limits {
    /// The budgets above, memory as this machine has it: what the boot and `image check` use.
    pub fn for_this_machine() -> Self {
        Limits {
            work_ns: WORK_BUDGET_NS,
            memory: Memory::Machine,
            deadline: UNLOCK_DEADLINE,
        }
    }

    /// KiB an Argon2 derivation may allocate now; `None` when unknown (no `/proc/meminfo`): then only
    /// the allowlist's 4 GiB ceiling applies.
    pub fn memory_kib(&self) -> Option<u64> {
        match self.memory {
            Memory::Fixed(k) => Some(k),
            Memory::Machine => {
                let text = std::fs::read_to_string("/proc/meminfo").ok()?;
                usable_kib(&text)
            }
        }
    }
}

/// From `/proc/meminfo`'s text: `MemAvailable` less the headroom (an eighth, at least
/// [`MEMORY_HEADROOM_MIN_KIB`]), KiB; `None` without a `MemAvailable` line.
pub fn usable_kib(meminfo: &str) -> Option<u64> {
    let avail = meminfo.lines().find_map(|l| {
        let rest = l.strip_prefix("MemAvailable:")?;
        rest.trim().strip_suffix("kB")?.trim().parse::<u64>().ok()
    })?;
    Some(avail.saturating_sub((avail / 8).max(MEMORY_HEADROOM_MIN_KIB)))
}

fn pbkdf2_ns(hash: Hash, iterations: u32, out_len: usize) -> u64 {
    let per = PBKDF2_NS
        .iter()
        .find(|(h, _)| *h == hash)
        .map_or(500, |(_, ns)| *ns);
    let blocks = out_len.div_ceil(hash.output_len()) as u64;
    per.saturating_mul(u64::from(iterations))
        .saturating_mul(blocks)
}

/// Estimated work of deriving `k`'s area key, reference nanoseconds.
pub fn kdf_ns(k: &Keyslot) -> u64 {
    match &k.kdf {
        Kdf::Pbkdf2 {
            hash, iterations, ..
        } => pbkdf2_ns(*hash, *iterations, k.area_key_size),
        Kdf::Argon2 {
            time, memory_kib, ..
        } => ARGON2_NS_PER_KIB_PASS
            .saturating_mul(u64::from(*time))
            .saturating_mul(u64::from(*memory_kib)),
    }
}

/// Estimated work of one digest check, reference nanoseconds.
pub fn digest_ns(h: &Header) -> u64 {
    let d = &h.digest;
    pbkdf2_ns(d.hash, d.iterations, d.digest.len())
}

/// Estimated work of trying every keyslot in [`Header::try_order`] (each KDF and its digest check).
pub fn unlock_ns(h: &Header) -> u64 {
    let digest = digest_ns(h);
    h.try_order()
        .iter()
        .map(|k| kdf_ns(k).saturating_add(digest))
        .fold(0, u64::saturating_add)
}

/// Seconds, one decimal, for messages.
pub fn secs(ns: u64) -> String {
    format!("{:.1} s", ns as f64 / 1e9)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usable_memory_leaves_headroom() {
        let m = "MemTotal:       2000000 kB\nMemFree:  10 kB\nMemAvailable:    1600000 kB\n";
        assert_eq!(usable_kib(m), Some(1_400_000));
        // Small machines keep at least 128 MiB.
        assert_eq!(
            usable_kib("MemAvailable: 200000 kB\n"),
            Some(200_000 - 131_072)
        );
        assert_eq!(usable_kib("MemAvailable: 1000 kB\n"), Some(0));
        assert_eq!(usable_kib("MemFree: 1000 kB\n"), None);
    }

    #[test]
    fn pbkdf2_counts_output_blocks() {
        assert_eq!(pbkdf2_ns(Hash::Sha256, 1000, 64), 200_000);
        assert_eq!(pbkdf2_ns(Hash::Sha256, 1000, 32), 100_000);
        assert_eq!(pbkdf2_ns(Hash::Sha1, 1000, 64), 480_000);
        assert_eq!(pbkdf2_ns(Hash::Sha512, 1000, 64), 500_000);
        assert_eq!(
            pbkdf2_ns(Hash::Sha512, u32::MAX, 64),
            500 * u64::from(u32::MAX)
        );
    }
}
