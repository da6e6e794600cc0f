//! Fuzz the check of an Azure blob's answer to a ranged GET (`blob::azure::check_range_response`: status,
//! `Content-Range`, body length, a 200 carrying the whole blob) and `http::parse_retry_after`.
//!
//! Input: byte 0 = flags (status 200/206/other, `filled`, whether the blob size is the body's length and
//! the offset inside it), then offset (u64 BE), length (u16 BE), size (u64 BE), the `Content-Range`
//! value up to the first newline, and the body.
//!
//! Checked: no panic; `Ok(None)` only for a filled 206; `Ok(Some(b))` is exactly `len` bytes, and for a
//! 200 it is `body[offset..offset + len]`; a 206 with a `Content-Range` that does not start at `offset`
//! is refused.
#![no_main]

use encfs_init::blob::azure::{check_range_response, RangeResponse};
use encfs_init::http::parse_retry_after;
use libfuzzer_sys::fuzz_target;

fn u64_at(d: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&d[..8]);
    u64::from_be_bytes(a)
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 19 {
        return;
    }
    let flags = data[0];
    let mut offset = u64_at(&data[1..9]);
    let len = usize::from(u16::from_be_bytes([data[9], data[10]]));
    let mut size = u64_at(&data[11..19]);
    let rest = &data[19..];
    let (cr, body) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (Some(&rest[..i]), &rest[i + 1..]),
        None => (None, rest),
    };
    let Ok(cr) = cr.map(std::str::from_utf8).transpose() else {
        return;
    };
    let status = match flags & 3 {
        0 | 1 => 206,
        2 => 200,
        _ => 416,
    };
    let filled = flags & 4 != 0;
    if flags & 8 != 0 {
        // What the client sees for a well-behaved request: a blob the size of a 200's body, a range
        // inside it.
        size = body.len() as u64;
        offset %= size + 1;
    }
    let resp = RangeResponse {
        status,
        content_range: cr,
        body,
        filled,
    };
    match check_range_response(&resp, offset, len, size) {
        Ok(None) => assert!(status == 206 && filled),
        Ok(Some(b)) => {
            assert_eq!(b.len(), len);
            if status == 200 {
                let o = usize::try_from(offset).expect("offset inside the body");
                assert_eq!(b, &body[o..o + len]);
            }
            if let (206, Some(cr)) = (status, cr) {
                let start = cr.trim_start_matches("bytes ").split('-').next();
                assert_eq!(start.and_then(|s| s.parse::<u64>().ok()), Some(offset));
            }
        }
        Err(detail) => assert!(!detail.is_empty()),
    }
    let _ = parse_retry_after(cr, cr);
});
