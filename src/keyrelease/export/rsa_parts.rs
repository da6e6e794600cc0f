//! An RSA private key's JWK numbers (RFC 7518 §6.3) from its PKCS#8 DER, through the `rsa` crate (which
//! checks the key: n = p·q, d consistent with e).
#![forbid(unsafe_code)]

use super::Error;
use rsa::pkcs8::DecodePrivateKey as _;
use rsa::traits::{PrivateKeyParts as _, PublicKeyParts as _};
use rsa::BoxedUint;
use zeroize::Zeroizing;

/// The numbers, big-endian without leading zeros (Base64urlUInt's "minimum number of octets"); every
/// buffer is wiped on drop.
pub(super) struct Parts {
    pub n: Zeroizing<Box<[u8]>>,
    pub e: Zeroizing<Box<[u8]>>,
    pub d: Zeroizing<Box<[u8]>>,
    pub p: Zeroizing<Box<[u8]>>,
    pub q: Zeroizing<Box<[u8]>>,
    pub dp: Zeroizing<Box<[u8]>>,
    pub dq: Zeroizing<Box<[u8]>>,
    pub qi: Zeroizing<Box<[u8]>>,
}

/// The numbers of the two-prime RSA key in `der` (PKCS#8).
pub(super) fn parts(der: &[u8]) -> Result<Parts, Error> {
    // PrivateKey wipes itself on drop.
    let mut key = rsa::PrivateKey::from_pkcs8_der(der).map_err(Error::Rsa)?;
    if key.primes().len() != 2 {
        return Err(Error::Malformed {
            kty: "RSA".into(),
            detail: "a multi-prime RSA key (a JWK here has p and q only)",
        });
    }
    key.precompute().map_err(Error::RsaCrt)?;
    let broken = || Error::Malformed {
        kty: "RSA".into(),
        detail: "its CRT values are missing",
    };
    let qi = Zeroizing::new(key.crt_coefficient().ok_or_else(broken)?);
    Ok(Parts {
        n: be(key.n().as_ref()),
        e: be(key.e()),
        d: be(key.d()),
        p: be(key.primes()[0].as_ref()),
        q: be(key.primes()[1].as_ref()),
        dp: be(key.dp().ok_or_else(broken)?),
        dq: be(key.dq().ok_or_else(broken)?),
        qi: be(&qi),
    })
}

/// `v` big-endian, leading zero bytes dropped (zero itself is one byte).
fn be(v: &BoxedUint) -> Zeroizing<Box<[u8]>> {
    let full = Zeroizing::new(v.to_be_bytes());
    let skip = full
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(full.len().saturating_sub(1));
    Zeroizing::new(full[skip..].into())
}
