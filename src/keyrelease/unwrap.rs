//! From the release response's wrapped key to the 32-byte disk key (upstream-spec §6.4-6.5).
//!
//! Unwrap, chosen by the response's `request.enc`: ciphertext = RSA-OAEP(KEK) over the runtime key's
//! modulus size ‖ AES key wrap with padding (RFC 5649) of the key under the KEK.
//!
//! | enc | OAEP and MGF1 hash |
//! |---|---|
//! | `CKM_RSA_AES_KEY_WRAP` | SHA-1 |
//! | `RSA_AES_KEY_WRAP_256` | SHA-256 |
//! | `RSA_AES_KEY_WRAP_384` | SHA-384 |
//!
//! The plaintext by key type: `oct`/`oct-HSM` raw bytes, which must be exactly 32; `RSA`/`RSA-HSM` a
//! PKCS#8 private key, whose private exponent D (minimal big-endian bytes) is the IKM of HKDF-SHA256 with
//! the plan's salt and label, L = 32. EC and anything else are errors (upstream silently produced an
//! empty key path).
#![forbid(unsafe_code)]

use super::jwk::{minimal_be, RuntimeKey};
use crate::secret::SecretBytes;
use aes_kw::cipher::KeyInit;
use rsa::pkcs8::DecodePrivateKey;
use rsa::traits::{PrivateKeyParts, PublicKeyParts};
use std::fmt;
use zeroize::Zeroizing;

/// Upstream's default HKDF label.
pub const DEFAULT_LABEL: &str = "Symmetric Encryption Key";

/// Unwrap / derivation failures. None carries key material.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UnwrapError {
    /// `enc` is not one of the three.
    UnknownEnc(String),
    /// Ciphertext too short for the RSA part.
    Short(usize),
    /// RSA-OAEP decryption failed (wrong runtime key or hash).
    Oaep,
    /// The KEK is not an AES key size.
    KekSize(usize),
    /// The AES key wrap integrity check failed.
    KeyWrap,
    /// An oct key that is not 32 bytes.
    OctSize(usize),
    /// The RSA plaintext is not a PKCS#8 RSA key.
    RsaKey,
    /// An EC key: cannot become a disk key.
    EcKey(String),
    /// Unknown key type.
    UnknownKty(String),
}

impl fmt::Display for UnwrapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnwrapError::UnknownEnc(e) => write!(f, "unsupported key wrap algorithm (enc) {e:?}; supported: CKM_RSA_AES_KEY_WRAP, RSA_AES_KEY_WRAP_256, RSA_AES_KEY_WRAP_384"),
            UnwrapError::Short(n) => write!(f, "wrapped key is {n} bytes, shorter than the RSA-OAEP part"),
            UnwrapError::Oaep => f.write_str("RSA-OAEP decryption of the key-encryption key failed"),
            UnwrapError::KekSize(n) => write!(f, "key-encryption key is {n} bytes, not an AES key size"),
            UnwrapError::KeyWrap => f.write_str("AES key unwrap (RFC 5649) integrity check failed"),
            UnwrapError::OctSize(n) => write!(f, "released oct key is {n} bytes; a disk key must be exactly 32 bytes (import a 256-bit oct-HSM key)"),
            UnwrapError::RsaKey => f.write_str("released RSA key is not a PKCS#8 RSA private key"),
            UnwrapError::EcKey(k) => write!(f, "released key type {k} cannot be a disk key; use oct-HSM (32 bytes) or RSA-HSM"),
            UnwrapError::UnknownKty(k) => write!(f, "released key type {k:?} is not supported; use oct-HSM or RSA-HSM"),
        }
    }
}

impl std::error::Error for UnwrapError {}

/// RSA-OAEP then AES-KWP, by `enc`.
pub fn unwrap(
    enc: &str,
    ciphertext: &[u8],
    key: &RuntimeKey,
) -> Result<Zeroizing<Vec<u8>>, UnwrapError> {
    let rsa_len = key.private().size();
    if ciphertext.len() <= rsa_len {
        return Err(UnwrapError::Short(ciphertext.len()));
    }
    let (head, wrapped) = ciphertext.split_at(rsa_len);
    let k = key.private();
    let kek = Zeroizing::new(
        match enc {
            "CKM_RSA_AES_KEY_WRAP" => k.oaep_decrypt::<sha1::Sha1>(head),
            "RSA_AES_KEY_WRAP_256" => k.oaep_decrypt::<sha2::Sha256>(head),
            "RSA_AES_KEY_WRAP_384" => k.oaep_decrypt::<sha2::Sha384>(head),
            other => return Err(UnwrapError::UnknownEnc(other.to_string())),
        }
        .map_err(|_| UnwrapError::Oaep)?,
    );
    kwp_unwrap(&kek, wrapped)
}

/// RFC 5649 unwrap with an AES-128/192/256 KEK.
pub fn kwp_unwrap(kek: &[u8], wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>, UnwrapError> {
    let mut buf = Zeroizing::new(vec![0u8; wrapped.len()]);
    let n = match kek.len() {
        16 => aes_kw::KwpAes128::new_from_slice(kek)
            .map_err(|_| UnwrapError::KekSize(16))?
            .unwrap_key(wrapped, &mut buf)
            .map(<[u8]>::len),
        24 => aes_kw::KwpAes192::new_from_slice(kek)
            .map_err(|_| UnwrapError::KekSize(24))?
            .unwrap_key(wrapped, &mut buf)
            .map(<[u8]>::len),
        32 => aes_kw::KwpAes256::new_from_slice(kek)
            .map_err(|_| UnwrapError::KekSize(32))?
            .unwrap_key(wrapped, &mut buf)
            .map(<[u8]>::len),
        n => return Err(UnwrapError::KekSize(n)),
    }
    .map_err(|_| UnwrapError::KeyWrap)?;
    buf.truncate(n);
    Ok(buf)
}

/// The released plaintext → the 32-byte disk key, by `kty`.
pub fn disk_key(
    kty: &str,
    plaintext: &[u8],
    salt: &[u8],
    label: &str,
) -> Result<SecretBytes, UnwrapError> {
    match kty {
        "oct" | "oct-HSM" => {
            if plaintext.len() != 32 {
                return Err(UnwrapError::OctSize(plaintext.len()));
            }
            Ok(SecretBytes::new(plaintext.to_vec()))
        }
        "RSA" | "RSA-HSM" => {
            let key =
                rsa::PrivateKey::from_pkcs8_der(plaintext).map_err(|_| UnwrapError::RsaKey)?;
            rsa_hkdf(&key, salt, label)
        }
        "EC" | "EC-HSM" => Err(UnwrapError::EcKey(kty.to_string())),
        other => Err(UnwrapError::UnknownKty(other.to_string())),
    }
}

/// HKDF-SHA256(salt, D minimal big-endian, label or the default) → 32 bytes.
///
/// Every intermediate is wiped: D's bytes are [`Zeroizing`], the PRK that extract returns is wiped here,
/// and the HMAC states keyed with it wipe themselves on drop (the `zeroize` features of `sha2`/`hmac`).
pub fn rsa_hkdf(
    key: &rsa::PrivateKey,
    salt: &[u8],
    label: &str,
) -> Result<SecretBytes, UnwrapError> {
    let d: Zeroizing<Box<[u8]>> = Zeroizing::new(key.d().to_be_bytes());
    let label = if label.is_empty() {
        DEFAULT_LABEL
    } else {
        label
    };
    let (mut prk, hk) = hkdf::Hkdf::<sha2::Sha256>::extract(Some(salt), minimal_be(&d));
    zeroize::Zeroize::zeroize(prk.as_mut_slice());
    let mut okm = vec![0u8; 32];
    // 32 bytes is far below HKDF-SHA256's 255 * 32 limit, so expand cannot fail.
    hk.expand(label.as_bytes(), &mut okm)
        .map_err(|_| UnwrapError::RsaKey)?;
    Ok(SecretBytes::new(okm))
}

#[cfg(test)]
mod tests {
    /// Compiles only when the hash and HMAC states that hold the PRK wipe themselves on drop.
    fn wiped_on_drop<T: zeroize::ZeroizeOnDrop>() {}

    #[test]
    fn the_hkdf_states_are_wiped_on_drop() {
        wiped_on_drop::<sha2::block_api::Sha256VarCore>();
        wiped_on_drop::<sha2::block_api::Sha512VarCore>();
        wiped_on_drop::<sha1::block_api::Sha1Core>();
        wiped_on_drop::<
            sha2::digest::block_api::CtOutWrapper<
                sha2::block_api::Sha256VarCore,
                sha2::digest::consts::U32,
            >,
        >();
    }

    #[test]
    fn the_disk_key_is_a_locked_secret() {
        let k = super::disk_key("oct-HSM", &[7; 32], &[], "").unwrap();
        assert!(k.is_locked());
    }
}
