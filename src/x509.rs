//! X.509 certificates: parse a DER/PEM certificate (x509-cert), read its names, key, validity and
//! extensions, and check the signature an issuer made over it. Used by the AMD collateral check
//! ([`crate::attest::verify`]), the key release's x5c chain ([`crate::keyrelease::akv`]) and the manifest's
//! test ARK pin; it depends on none of them.
//!
//! Supported signature algorithms: RSASSA-PSS (SHA-256/384/512, the salt length from the parameters;
//! what AMD's ARK/ASK use), sha{256,384,512}WithRSAEncryption, and ecdsa-with-SHA384 with a P-384 key.
//! Anything else is an explicit error. Pure code over `&[u8]`.
#![forbid(unsafe_code)]

use der::asn1::ObjectIdentifier as Oid;
use der::{Decode, Encode};
use rsa::pkcs8::DecodePublicKey;
use sha2::{Digest, Sha256, Sha384, Sha512};
use std::fmt;
use std::time::SystemTime;
use x509_cert::Certificate;

const RSA_PSS: Oid = Oid::new_unwrap("1.2.840.113549.1.1.10");
const RSA_SHA256: Oid = Oid::new_unwrap("1.2.840.113549.1.1.11");
const RSA_SHA384: Oid = Oid::new_unwrap("1.2.840.113549.1.1.12");
const RSA_SHA512: Oid = Oid::new_unwrap("1.2.840.113549.1.1.13");
const ECDSA_SHA384: Oid = Oid::new_unwrap("1.2.840.10045.4.3.3");
const SHA256: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.1");
const SHA384: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.2");
const SHA512: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.3");

/// A certificate problem: a leaf. What a DER/PEM parser said (der, x509-cert, pkcs1, ecdsa: four error types)
/// is kept as text in [`CertError::Malformed`], printed once.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertError {
    /// Not DER/PEM we can read.
    Malformed(String),
    /// A signature algorithm we do not implement.
    UnsupportedAlgorithm(String),
    /// The issuer's key is not of the kind the algorithm needs.
    KeyMismatch,
    /// The signature does not verify.
    BadSignature,
}

impl fmt::Display for CertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertError::Malformed(m) => write!(f, "malformed certificate: {m}"),
            CertError::UnsupportedAlgorithm(o) => write!(f, "unsupported signature algorithm {o}"),
            CertError::KeyMismatch => {
                f.write_str("the issuer's key type does not match the signature algorithm")
            }
            CertError::BadSignature => f.write_str("signature does not verify"),
        }
    }
}

impl std::error::Error for CertError {}

/// A parsed certificate with its DER.
#[derive(Clone)]
pub struct Cert {
    der: Vec<u8>,
    cert: Certificate,
}

impl fmt::Debug for Cert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cert({})", self.common_name().unwrap_or_default())
    }
}

fn malformed(e: impl fmt::Display) -> CertError {
    CertError::Malformed(e.to_string())
}

impl Cert {
    /// Parse one DER certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, CertError> {
        let cert = Certificate::from_der(der).map_err(malformed)?;
        Ok(Cert {
            der: der.to_vec(),
            cert,
        })
    }

    /// Parse every `CERTIFICATE` block of a PEM text, in order.
    pub fn from_pem_chain(pem: &[u8]) -> Result<Vec<Self>, CertError> {
        let certs = Certificate::load_pem_chain(pem).map_err(malformed)?;
        certs
            .into_iter()
            .map(|cert| {
                Ok(Cert {
                    der: cert.to_der().map_err(malformed)?,
                    cert,
                })
            })
            .collect()
    }

    /// The DER bytes.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// Subject common name.
    pub fn common_name(&self) -> Option<String> {
        self.cert
            .tbs_certificate()
            .subject()
            .common_name()
            .ok()
            .flatten()
            .map(String::from)
    }

    /// Subject and issuer are the same name.
    pub fn is_self_issued(&self) -> bool {
        self.cert.tbs_certificate().subject() == self.cert.tbs_certificate().issuer()
    }

    /// This certificate's issuer is `other`'s subject.
    pub fn issued_by_name(&self, other: &Cert) -> bool {
        self.cert.tbs_certificate().issuer() == other.cert.tbs_certificate().subject()
    }

    /// DER of the SubjectPublicKeyInfo.
    pub fn spki_der(&self) -> Result<Vec<u8>, CertError> {
        self.cert
            .tbs_certificate()
            .subject_public_key_info()
            .to_der()
            .map_err(malformed)
    }

    /// SHA-256 of the SubjectPublicKeyInfo (the pin for roots).
    pub fn spki_sha256(&self) -> Result<[u8; 32], CertError> {
        Ok(Sha256::digest(self.spki_der()?).into())
    }

    /// The raw subjectPublicKey bits (an uncompressed EC point for the VCEK).
    pub fn public_key_bits(&self) -> &[u8] {
        self.cert
            .tbs_certificate()
            .subject_public_key_info()
            .subject_public_key
            .raw_bytes()
    }

    /// notBefore and notAfter.
    pub fn validity(&self) -> (SystemTime, SystemTime) {
        let v = self.cert.tbs_certificate().validity();
        (v.not_before.to_system_time(), v.not_after.to_system_time())
    }

    /// The value of the extension `oid`, if present.
    pub fn extension(&self, oid: &str) -> Option<&[u8]> {
        let oid = Oid::new(oid).ok()?;
        self.cert
            .tbs_certificate()
            .extensions()?
            .iter()
            .find(|e| e.extn_id == oid)
            .map(|e| e.extn_value.as_bytes())
    }

    /// Check that `issuer`'s key signed this certificate.
    pub fn verify_signed_by(&self, issuer: &Cert) -> Result<(), CertError> {
        let tbs = self.cert.tbs_certificate().to_der().map_err(malformed)?;
        let alg = self.cert.signature_algorithm();
        let sig = self
            .cert
            .signature()
            .as_bytes()
            .ok_or_else(|| malformed("signature has unused bits"))?;
        let spki = issuer.spki_der()?;
        let rsa_key =
            || rsa::PublicKey::from_public_key_der(&spki).map_err(|_| CertError::KeyMismatch);
        let ok = if alg.oid == RSA_PSS {
            let params = alg
                .parameters
                .as_ref()
                .ok_or_else(|| malformed("RSA-PSS without parameters"))?;
            let params_der = params.to_der().map_err(malformed)?;
            let params = rsa::pkcs1::RsaPssParamsOwned::from_der(&params_der).map_err(malformed)?;
            let salt = usize::from(params.salt_len);
            let key = rsa_key()?;
            let hash = params.hash.oid;
            // The MGF1 hash must be the same as the message hash (AMD's certificates do so).
            let mgf_hash = params.mask_gen.parameters.as_ref().map(|p| p.oid);
            if mgf_hash.is_some_and(|m| m != hash) {
                return Err(CertError::UnsupportedAlgorithm(
                    "RSA-PSS with a different MGF1 hash".into(),
                ));
            }
            if hash == SHA384 {
                key.verify(
                    rsa::Pss::<Sha384>::new_with_salt(salt),
                    &Sha384::digest(&tbs),
                    sig,
                )
            } else if hash == SHA256 {
                key.verify(
                    rsa::Pss::<Sha256>::new_with_salt(salt),
                    &Sha256::digest(&tbs),
                    sig,
                )
            } else if hash == SHA512 {
                key.verify(
                    rsa::Pss::<Sha512>::new_with_salt(salt),
                    &Sha512::digest(&tbs),
                    sig,
                )
            } else {
                return Err(CertError::UnsupportedAlgorithm(format!(
                    "RSA-PSS with hash {hash}"
                )));
            }
            .is_ok()
        } else if alg.oid == RSA_SHA256 {
            rsa_key()?
                .verify(
                    rsa::Pkcs1v15Sign::new::<Sha256>(),
                    &Sha256::digest(&tbs),
                    sig,
                )
                .is_ok()
        } else if alg.oid == RSA_SHA384 {
            rsa_key()?
                .verify(
                    rsa::Pkcs1v15Sign::new::<Sha384>(),
                    &Sha384::digest(&tbs),
                    sig,
                )
                .is_ok()
        } else if alg.oid == RSA_SHA512 {
            rsa_key()?
                .verify(
                    rsa::Pkcs1v15Sign::new::<Sha512>(),
                    &Sha512::digest(&tbs),
                    sig,
                )
                .is_ok()
        } else if alg.oid == ECDSA_SHA384 {
            use p384::ecdsa::signature::Verifier;
            let key = p384::ecdsa::VerifyingKey::from_sec1_bytes(issuer.public_key_bits())
                .map_err(|_| CertError::KeyMismatch)?;
            let sig = p384::ecdsa::Signature::from_der(sig).map_err(malformed)?;
            key.verify(&tbs, &sig).is_ok()
        } else {
            return Err(CertError::UnsupportedAlgorithm(alg.oid.to_string()));
        };
        if ok {
            Ok(())
        } else {
            Err(CertError::BadSignature)
        }
    }
}

/// Read a DER INTEGER holding a small non-negative value (an AMD TCB SPL). `02 01 xx` for xx < 0x80,
/// `02 02 00 xx` for xx >= 0x80: upstream read a fixed byte and got 0 for the second form.
pub fn der_small_uint(v: &[u8]) -> Option<u64> {
    let (&tag, rest) = v.split_first()?;
    let (&len, content) = rest.split_first()?;
    if tag != 0x02 || usize::from(len) != content.len() || content.is_empty() || content.len() > 9 {
        return None;
    }
    if content[0] & 0x80 != 0 {
        return None; // negative
    }
    if content.len() > 1 && content[0] == 0 && content[1] & 0x80 == 0 {
        return None; // not minimal DER
    }
    let content = if content[0] == 0 && content.len() > 1 {
        &content[1..]
    } else {
        content
    };
    if content.len() > 8 {
        return None;
    }
    Some(
        content
            .iter()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_integers_as_amd_encodes_them() {
        assert_eq!(der_small_uint(&[0x02, 0x01, 0x73]), Some(0x73));
        assert_eq!(der_small_uint(&[0x02, 0x02, 0x00, 0xdb]), Some(0xdb));
        assert_eq!(der_small_uint(&[0x02, 0x01, 0x00]), Some(0));
        assert_eq!(der_small_uint(&[0x02, 0x01, 0xdb]), None, "negative");
        assert_eq!(
            der_small_uint(&[0x02, 0x02, 0x00, 0x05]),
            None,
            "not minimal"
        );
        assert_eq!(der_small_uint(&[0x04, 0x01, 0x05]), None, "not an INTEGER");
        assert_eq!(der_small_uint(&[0x02, 0x02, 0x05]), None, "short");
        assert_eq!(der_small_uint(&[]), None);
    }
}
