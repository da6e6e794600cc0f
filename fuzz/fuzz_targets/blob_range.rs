//! Fuzz the check of an Azure blob's answer to a ranged GET (`blob::azure::check_range_response`: status,
//! `Content-Range`, body length, a 200 carrying the whole blob) and `http::parse_retry_after`.
//!
//! Input: byte 0 = flags (status 200/206/other, `filled`, whether the blob size is the body's length and
//! the offset inside it), then offset (u64 BE), length (u16 BE), size (u64 BE), the `Content-Range`
//! value up to the first newline, and the body.
//!
//! Checked: no panic; `Filled` only for a filled 206; `Copy(b)` is exactly `len` bytes, and for a 200 it is
//! the whole body (the range is the whole blob); a 206 with a `Content-Range` is accepted only when it names
//! exactly `offset..offset + len`; `SizeChanged(t)` only for a 206 whose total `t` differs from `size`.
#![no_main]

use encfs_init::blob::azure::{check_range_response, RangeResponse, RangeVerdict};
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
    // Whitespace around the numbers is tolerated (a header value is trimmed anyway).
    let names_the_range = |cr: &str| {
        let span = cr
            .trim()
            .strip_prefix("bytes ")
            .and_then(|r| r.split('/').next());
        let nums: Option<Vec<u64>> = span
            .map(|s| {
                s.split('-')
                    .map(|n| n.trim().parse().ok())
                    .collect::<Option<Vec<u64>>>()
            })
            .flatten();
        let last = offset.saturating_add(len as u64).saturating_sub(1);
        nums == Some(vec![offset, last])
    };
    match check_range_response(&resp, offset, len, size) {
        Ok(RangeVerdict::Filled) => assert!(status == 206 && filled),
        Ok(RangeVerdict::Copy(b)) => {
            assert_eq!(b.len(), len);
            if status == 200 {
                assert_eq!(offset, 0);
                assert_eq!(b, body);
                assert_eq!(size, body.len() as u64);
            }
            if let (206, Some(cr)) = (status, cr) {
                assert!(names_the_range(cr), "{cr} for {offset}+{len}");
            }
        }
        Ok(RangeVerdict::SizeChanged(t)) => {
            assert_eq!(status, 206);
            assert_ne!(t, size);
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    let _ = parse_retry_after(cr, cr);
});
