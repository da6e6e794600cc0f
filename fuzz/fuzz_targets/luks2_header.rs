//! Fuzz the LUKS2 header reader: binary headers, copy selection, JSON and the allowlist.
//!
//! The first byte picks how the rest is used, so that mutations are not all stopped by the checksum:
//! - even: the rest is the JSON text, placed in both copies of an otherwise valid 16 KiB header;
//! - odd: the rest is raw header bytes; the checksums of the primary and of the copy at its hdr_size are
//!   recomputed (when they fit), so the fuzzer explores the binary fields and the JSON behind them.
//!
//! Unlocking is not fuzzed: a valid header may legitimately ask Argon2 for up to 4 GiB.
#![no_main]

use encfs_init::luks2::binary::{fix_checksum, write_copy, NewBinaryHeader};
use encfs_init::luks2::{Copy, Header};
use libfuzzer_sys::fuzz_target;

const HS: usize = 16384;

fn exercise(buf: &[u8]) {
    if let Ok(h) = Header::parse(buf) {
        let _ = h.data_range(buf.len() as u64);
        let _ = h.data_range(u64::MAX);
        let _ = h.try_order();
        // The unlock's cost arithmetic runs on every accepted header (saturating: no overflow may panic),
        // and the limit check never derives anything.
        let _ = encfs_init::luks2::cost::unlock_ns(&h);
        let limits = encfs_init::luks2::cost::Limits {
            memory: encfs_init::luks2::cost::Memory::Fixed(1 << 20),
            ..encfs_init::luks2::cost::Limits::for_this_machine()
        };
        let _ = h.check_limits(&limits);
        let _ = h.metadata_end();
        let _ = format!("{h:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        if rest.len() >= HS - 4096 || rest.contains(&0) {
            return;
        }
        let mut buf = vec![0u8; 2 * HS + 4096];
        for (copy, at) in [(Copy::Primary, 0), (Copy::Secondary, HS)] {
            let h = NewBinaryHeader {
                hdr_size: HS as u64,
                seqid: 1,
                uuid: "fuzz",
                salt: [0; 64],
            };
            if write_copy(&mut buf[at..at + HS], copy, &h, rest).is_err() {
                return;
            }
        }
        exercise(&buf);
    } else {
        let mut buf = rest.to_vec();
        if buf.len() >= 16 {
            let size = u64::from_be_bytes(buf[8..16].try_into().unwrap_or([0; 8]));
            if let Ok(size) = usize::try_from(size) {
                if size <= 4 << 20 {
                    fix_checksum(&mut buf, 0, size);
                    fix_checksum(&mut buf, size, size);
                }
            }
        }
        exercise(&buf);
    }
});
