//! Fuzz upstream's `EncfsSideCarArgs`: `manifest::load_legacy` (base64 in any alphabet and padding, or
//! raw JSON; Go-style key matching; strict types), then validation and `render`.
//!
//! Round trip: raw JSON and the standard base64 of the same JSON must give the same result (the same
//! rendered plan and warnings, or the same errors). Inputs naming device or kernel files are skipped, as in
//! `manifest_toml`.
#![no_main]

use encfs_init::manifest;
use libfuzzer_sys::fuzz_target;

fn b64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                s.push(char::from(A[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                s.push('=');
            }
        }
    }
    s
}

fn outcome(text: &str) -> Result<(String, Vec<String>), String> {
    match manifest::load_legacy("EncfsSideCarArgs", text) {
        Ok(l) => Ok((manifest::render(&l.plan), l.warnings)),
        Err(errs) => {
            assert!(!errs.0.is_empty(), "an error without a message");
            Err(errs.to_string())
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if ["/dev", "/proc", "/sys"].iter().any(|p| text.contains(p)) {
        return;
    }
    let direct = outcome(text);
    let trimmed = text.trim();
    if trimmed.starts_with('{') {
        let via_b64 = outcome(&b64(trimmed.as_bytes()));
        assert_eq!(direct, via_b64, "raw JSON and its base64 differ");
    }
});
