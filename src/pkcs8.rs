//! P-384 private keys in PKCS#8 form, read from a PEM (`-----BEGIN PRIVATE KEY-----`) or DER file: the
//! fake VCEK key of a test-mode manifest, checked when the manifest is validated and turned into the fake
//! attester's signing key at boot. Pure code over `&[u8]`.
#![forbid(unsafe_code)]

use crate::secret::SecretBytes;
use base64::Engine as _;
use p384::ecdsa::SigningKey;
use p384::pkcs8::DecodePrivateKey as _;

/// Why bytes are not a PKCS#8 P-384 key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A `PRIVATE KEY` PEM block whose body does not decode.
    #[error("the PEM body is not base64")]
    PemBody,
    /// PEM of another kind (an `EC PRIVATE KEY`, a certificate, ...).
    #[error("not a PKCS#8 PEM key (want -----BEGIN PRIVATE KEY-----)")]
    PemLabel,
    /// DER that is not a PKCS#8 P-384 private key.
    #[error("not a PKCS#8 P-384 key")]
    Key(#[source] p384::pkcs8::Error),
}

/// The PKCS#8 DER of a P-384 private key given as PEM (`-----BEGIN PRIVATE KEY-----`) or DER; checked.
pub fn p384_der(bytes: &[u8]) -> Result<SecretBytes, Error> {
    const BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
    let der = match std::str::from_utf8(bytes) {
        Ok(text) if text.contains(BEGIN) => {
            let body: String = text
                .lines()
                .skip_while(|l| !l.starts_with(BEGIN))
                .skip(1)
                .take_while(|l| !l.starts_with("-----END"))
                .flat_map(|l| l.trim().chars())
                .collect();
            base64::engine::general_purpose::STANDARD
                .decode(body)
                .map_err(|_| Error::PemBody)?
        }
        Ok(text) if text.contains("-----BEGIN") => return Err(Error::PemLabel),
        _ => bytes.to_vec(),
    };
    let der = SecretBytes::new(der);
    p384_signing_key(&der)?;
    Ok(der)
}

/// The signing key of a PKCS#8 DER P-384 key.
pub fn p384_signing_key(der: &SecretBytes) -> Result<SigningKey, Error> {
    SigningKey::from_pkcs8_der(der.expose()).map_err(Error::Key)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use p384::pkcs8::EncodePrivateKey;

    #[test]
    fn a_key_reads_from_pem_or_der() {
        let key = SigningKey::from_slice(&[7u8; 48]).unwrap();
        let der = key.to_pkcs8_der().unwrap().as_bytes().to_vec();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&der);
        let pem = format!(
            "junk before\n-----BEGIN PRIVATE KEY-----\n{}\n{}\n-----END PRIVATE KEY-----\n",
            &b64[..64],
            &b64[64..]
        );
        for input in [der.clone(), pem.into_bytes()] {
            let got = p384_der(&input).unwrap();
            assert_eq!(got.expose(), der.as_slice());
            assert_eq!(p384_signing_key(&got).unwrap(), key);
        }
        let other = b"-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n";
        assert!(p384_der(other).unwrap_err().to_string().contains("PKCS#8"));
        let e = p384_der(&der[..der.len() - 1]).unwrap_err();
        assert!(matches!(e, Error::Key(_)), "{e:?}");
        assert!(std::error::Error::source(&e).is_some());
    }
}
