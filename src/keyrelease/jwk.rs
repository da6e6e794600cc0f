//! The ephemeral wrapping key and the runtime data MAA binds into the report (upstream-spec §6.2).
//!
//! A fresh RSA-2048 key per attestation, generated while boot runs ([`RuntimeKey::prepare`]). Its public
//! half is sent as a JWK set, compact JSON with the keys in alphabetical order (what upstream's jwx
//! produces, so the same bytes hash the same way):
//! `{"keys":[{"e":"AQAB","key_ops":["encrypt"],"kid":"<RFC 7638 thumbprint>","kty":"RSA","n":"<b64url>"}]}`.
//! `kid` is the RFC 7638 SHA-256 thumbprint of `{"e":..,"kty":"RSA","n":..}`, base64url without padding.
//! report_data = SHA-256(these exact bytes) ‖ 32 zero bytes.
#![forbid(unsafe_code)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use rsa::traits::PublicKeyParts;
use sha2::{Digest, Sha256};
use std::fmt;
use std::sync::Mutex;
use std::thread::JoinHandle;

/// The ephemeral private key; zeroized on drop by `rsa`, never printed.
pub struct RuntimeKey {
    key: rsa::PrivateKey,
}

impl fmt::Debug for RuntimeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<RSA-{} runtime key>", self.key.size() * 8)
    }
}

/// A runtime key being generated ahead of need (see [`RuntimeKey::prepare`]).
static PREPARED: Mutex<Option<JoinHandle<Result<RuntimeKey, rsa::Error>>>> = Mutex::new(None);

impl RuntimeKey {
    /// Generate a new RSA-2048 key.
    pub fn generate() -> Result<Self, rsa::Error> {
        let key = rsa::PrivateKey::new(&mut getrandom::SysRng, 2048)?;
        Ok(RuntimeKey { key })
    }

    /// Start generating the next runtime key on a thread of its own, so that the prime search (the costliest
    /// single step of an attestation) overlaps with what boot does meanwhile (kernel modules, UVM
    /// information, TLS setup). The next [`RuntimeKey::take_or_generate`] gets it; one prepared key serves
    /// one attestation. Does nothing when a key is already being prepared.
    pub fn prepare() {
        let Ok(mut slot) = PREPARED.lock() else {
            return;
        };
        if slot.is_none() {
            *slot = std::thread::Builder::new()
                .name("runtime-key".into())
                .spawn(Self::generate)
                .ok();
        }
    }

    /// The prepared key (waiting for it if needed), else a new one.
    pub fn take_or_generate() -> Result<Self, rsa::Error> {
        let prepared = PREPARED.lock().ok().and_then(|mut slot| slot.take());
        match prepared.map(JoinHandle::join) {
            Some(Ok(key)) => key,
            // The generating thread panicked (a bug): generate here instead.
            Some(Err(_)) | None => Self::generate(),
        }
    }

    /// Wrap an existing key (tests, vectors).
    pub fn from_key(key: rsa::PrivateKey) -> Self {
        RuntimeKey { key }
    }

    /// The private key, for unwrapping.
    pub fn private(&self) -> &rsa::PrivateKey {
        &self.key
    }

    fn n_e(&self) -> (String, String) {
        (
            B64URL.encode(self.key.n_bytes()),
            B64URL.encode(self.key.e_bytes()),
        )
    }

    /// RFC 7638 thumbprint.
    pub fn kid(&self) -> String {
        let (n, e) = self.n_e();
        let canonical = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
        B64URL.encode(Sha256::digest(canonical.as_bytes()))
    }

    /// The runtime JSON bytes (keys sorted, compact).
    pub fn runtime_json(&self) -> String {
        let (n, e) = self.n_e();
        format!(
            r#"{{"keys":[{{"e":"{e}","key_ops":["encrypt"],"kid":"{}","kty":"RSA","n":"{n}"}}]}}"#,
            self.kid()
        )
    }
}

/// Minimal big-endian bytes of a big integer (no leading zeros), as Go's `big.Int.Bytes()`.
pub fn minimal_be(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    &bytes[first..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prepared_key_is_used_once_then_keys_are_fresh() {
        RuntimeKey::prepare();
        // Preparing again while one is pending starts nothing new.
        RuntimeKey::prepare();
        let first = RuntimeKey::take_or_generate().unwrap();
        assert!(
            PREPARED.lock().unwrap().is_none(),
            "the prepared key was taken"
        );
        let second = RuntimeKey::take_or_generate().unwrap();
        assert_eq!(first.private().size(), 256);
        assert_eq!(second.private().size(), 256);
        assert_ne!(
            first.n_e().0,
            second.n_e().0,
            "each attestation gets its own key"
        );
    }
}
