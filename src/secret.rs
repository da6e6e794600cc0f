//! Secrets as types: keys and tokens live in zeroizing buffers without `Debug`/`Display` of their contents.
//!
//! A secret can be used (`expose`) but never printed: the `Debug` impls print only the kind and length, so a
//! `{:?}` of any structure holding a secret is safe to log. Nothing here writes a secret anywhere.
//!
//! The buffer of each secret is locked into memory when the secret is made ([`crate::memlock`]: kept out
//! of swap; a failure warns once and the secret works anyway). A secret never grows or moves, so no stale
//! copy is left behind in a reallocated buffer.
#![forbid(unsafe_code)]

use std::fmt;
use zeroize::Zeroizing;

/// Secret bytes (a raw key, a released key). Zeroized on drop, locked in memory.
pub struct SecretBytes(Zeroizing<Vec<u8>>, bool);

impl SecretBytes {
    /// Takes ownership of `bytes`; the caller's buffer moves in, no copy is left behind.
    pub fn new(bytes: Vec<u8>) -> Self {
        let locked = crate::memlock::lock(bytes.as_ptr(), bytes.capacity());
        Self(Zeroizing::new(bytes), locked)
    }

    /// Whether the secret's pages are locked in memory (mlock succeeded).
    pub fn is_locked(&self) -> bool {
        self.1
    }

    /// The secret's bytes, for the one place that needs them.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes (not secret).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<secret: {} bytes>", self.0.len())
    }
}

/// A secret string (a bearer token, a SAS signature). Zeroized on drop, locked in memory.
pub struct SecretString(Zeroizing<String>, bool);

impl SecretString {
    /// Takes ownership of `s`.
    pub fn new(s: String) -> Self {
        let locked = crate::memlock::lock(s.as_ptr(), s.capacity());
        Self(Zeroizing::new(s), locked)
    }

    /// Whether the secret's pages are locked in memory (mlock succeeded).
    pub fn is_locked(&self) -> bool {
        self.1
    }

    /// The secret text, for the one place that needs it (an HTTP header, a query string).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Length in bytes (not secret).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<secret: {} chars>", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_secret() {
        let b = SecretBytes::new(b"hunter2-bytes".to_vec());
        let s = SecretString::new("hunter2-token".into());
        let out = format!("{b:?} {s:?}");
        assert!(!out.contains("hunter2"), "{out}");
        assert!(out.contains("13 bytes"), "{out}");
        assert_eq!(s.expose(), "hunter2-token");
        assert_eq!(b.expose(), b"hunter2-bytes");
    }

    #[test]
    fn a_secret_is_locked_in_memory() {
        // Pages are never unlocked and the allocator reuses memory, so an earlier secret may have locked the
        // pages a new buffer lands on: take buffers that are not locked yet (setting others aside), so that
        // only making the secret can have locked them.
        fn unlocked<T: AsRef<[u8]>>(make: impl Fn() -> T, aside: &mut Vec<T>) -> T {
            for _ in 0..64 {
                let v = make();
                let b = v.as_ref();
                if crate::memlock::range_is_locked(b.as_ptr(), b.len()) == Some(false) {
                    return v;
                }
                aside.push(v);
            }
            panic!("every buffer came out locked (or /proc/self/smaps is unreadable)");
        }
        let (mut aside_b, mut aside_s) = (Vec::new(), Vec::new());
        let v = unlocked(|| vec![0x5a; 2 * 4096], &mut aside_b);
        let (bp, bn) = (v.as_ptr(), v.len());
        let b = SecretBytes::new(v);
        let t = unlocked(|| "t".repeat(2 * 4096), &mut aside_s);
        let (sp, sn) = (t.as_ptr(), t.len());
        let s = SecretString::new(t);
        assert!(
            b.is_locked() && s.is_locked(),
            "mlock failed (RLIMIT_MEMLOCK?)"
        );
        for (what, ptr, len) in [("bytes", bp, bn), ("string", sp, sn)] {
            assert_eq!(
                crate::memlock::range_is_locked(ptr, len),
                Some(true),
                "the {what} secret's pages are not all in a locked mapping"
            );
        }
    }
}
