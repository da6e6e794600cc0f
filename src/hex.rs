//! Hex, the crate's one encoder and decoder: digests and ids in messages and reports, the key in a
//! dm-crypt table, pins and keys in the manifest, compiled-in pins (at compile time).
#![forbid(unsafe_code)]

use zeroize::Zeroizing;

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Lowercase hex of `bytes`.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    push(&mut out, bytes);
    out
}

/// Lowercase hex of a secret, written into one buffer allocated at its final size, so that no per-byte
/// temporary and no outgrown buffer holds any of it; wiped on drop.
pub fn encode_secret(bytes: &[u8]) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::with_capacity(bytes.len() * 2));
    push(&mut out, bytes);
    out
}

fn push(out: &mut String, bytes: &[u8]) {
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
}

/// The value of one hex digit (either case).
const fn digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// The bytes of hex text (either case; surrounding whitespace ignored), or `None` on an odd number of digits
/// or anything that is not a hex digit.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    let t = text.trim().as_bytes();
    if t.len() % 2 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(t.len() / 2);
    for pair in t.chunks_exact(2) {
        out.push((digit(pair[0])? << 4) | digit(pair[1])?);
    }
    Some(out)
}

/// [`decode`] into exactly `N` bytes, or `None` (also when the length differs).
pub fn decode_array<const N: usize>(text: &str) -> Option<[u8; N]> {
    decode(text)?.try_into().ok()
}

/// `N` bytes from `2N` hex digits at compile time, for values compiled into the binary; a bad digit or
/// length stops the build.
pub const fn decode_const<const N: usize>(hex: &[u8]) -> [u8; N] {
    assert!(hex.len() == 2 * N, "compiled-in hex has the wrong length");
    let mut out = [0u8; N];
    let mut i = 0;
    while i < N {
        match (digit(hex[2 * i]), digit(hex[2 * i + 1])) {
            (Some(h), Some(l)) => out[i] = (h << 4) | l,
            _ => panic!("compiled-in hex has a bad digit"),
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_lowercase_and_decodes_either_case() {
        assert_eq!(encode(&[0xab, 0x01, 0xff]), "ab01ff");
        assert_eq!(&*encode_secret(&[0xab, 0x01]), "ab01");
        assert_eq!(decode(" AB01ff\n"), Some(vec![0xab, 0x01, 0xff]));
        assert_eq!(decode(""), Some(vec![]));
    }

    #[test]
    fn refuses_odd_lengths_and_non_digits() {
        assert_eq!(decode("abc"), None);
        assert_eq!(decode("zz"), None);
        assert_eq!(decode("+1"), None, "from_str_radix would take a sign");
        assert_eq!(decode("é1"), None);
        assert_eq!(decode_array::<2>("abcdef"), None);
        assert_eq!(decode_array::<3>("abcdef"), Some([0xab, 0xcd, 0xef]));
    }

    #[test]
    fn compile_time_decoding_matches() {
        const V: [u8; 2] = decode_const(b"0aFf");
        assert_eq!(V, [0x0a, 0xff]);
    }

    #[test]
    fn a_secret_is_built_at_its_final_size() {
        let key = [0x5au8; 64];
        let h = encode_secret(&key);
        assert_eq!(h.len(), 128);
        assert_eq!(h.capacity(), 128);
        assert_eq!(*h, encode(&key));
    }
}
