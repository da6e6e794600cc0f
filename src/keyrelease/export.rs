//! A released key in the forms an application reads: the raw bytes, base64, a JWK (what upstream's SKR
//! sidecar answers `POST /key/release` with), or PEM (an RSA or EC private key, PKCS#8).
//!
//! Every output is a [`SecretBytes`]: the buffers holding key material on the way are wiped. A JWK is
//! compact JSON with its members in alphabetical order, as upstream's jwx writes it
//! (`{"k":"..","key_ops":[..],"kty":"oct"}`).
#![forbid(unsafe_code)]

use super::ReleasedKey;
use crate::secret::SecretBytes;

/// Why a released key cannot be written in a form.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The form does not exist for this key type (PEM of a symmetric key).
    #[error("a {kty} key cannot be written as {form}; fix: {fix}")]
    Form {
        /// The key's type.
        kty: String,
        /// The form asked for.
        form: &'static str,
        /// What to ask for instead.
        fix: &'static str,
    },
    /// The key type is not one a vault releases.
    #[error("released key type \"{0}\" is not supported; fix: release an oct, RSA or EC key")]
    Kty(String),
    /// The plaintext does not parse as the key type says.
    #[error("the released {kty} key does not parse: {detail}")]
    Malformed {
        /// The key's type.
        kty: String,
        /// What did not parse.
        detail: String,
    },
}

/// The key's family, from its `kty`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `oct`, `oct-HSM`: raw bytes.
    Oct,
    /// `RSA`, `RSA-HSM`: PKCS#8 DER.
    Rsa,
    /// `EC`, `EC-HSM`: PKCS#8 DER.
    Ec,
}

impl Family {
    /// The family of `kty`.
    pub fn of(kty: &str) -> Result<Family, Error> {
        match kty {
            "oct" | "oct-HSM" => Ok(Family::Oct),
            "RSA" | "RSA-HSM" => Ok(Family::Rsa),
            "EC" | "EC-HSM" => Ok(Family::Ec),
            other => Err(Error::Kty(other.to_string())),
        }
    }
}

/// The raw bytes as released (oct: the key; RSA, EC: PKCS#8 DER).
pub fn raw(key: &ReleasedKey) -> SecretBytes {
    SecretBytes::new(key.plaintext.expose().to_vec())
}

/// Standard base64 (with padding) of [`raw`].
pub fn base64(key: &ReleasedKey) -> SecretBytes {
    use base64::Engine;
    SecretBytes::new(
        base64::engine::general_purpose::STANDARD
            .encode(key.plaintext.expose())
            .into_bytes(),
    )
}

/// The key as a private JWK (compact JSON, members sorted): oct `{"k","key_ops","kty":"oct"}`; RSA
/// `{"d","dp","dq","e","key_ops","kty":"RSA","n","p","q","qi"}`; EC `{"crv","d","key_ops","kty":"EC","x","y"}`.
/// `key_ops` is the vault's list (left out when it gave none).
pub fn jwk(key: &ReleasedKey) -> Result<SecretBytes, Error> {
    match Family::of(&key.kty)? {
        Family::Oct => {
            use base64::Engine;
            let k = zeroize::Zeroizing::new(
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.plaintext.expose()),
            );
            let mut members: Vec<(&str, Member<'_>)> = vec![("k", Member::Text(&k))];
            if !key.key_ops.is_empty() {
                members.push(("key_ops", Member::List(&key.key_ops)));
            }
            members.push(("kty", Member::Text("oct")));
            Ok(object(&members))
        }
        // The secrets work (issue 16) fills these in.
        Family::Rsa | Family::Ec => Err(Error::Form {
            kty: key.kty.clone(),
            form: "a JWK",
            fix: "not yet",
        }),
    }
}

/// The private key as PEM (`-----BEGIN PRIVATE KEY-----`, PKCS#8): RSA and EC keys only.
pub fn pem(key: &ReleasedKey) -> Result<SecretBytes, Error> {
    match Family::of(&key.kty)? {
        Family::Oct => Err(Error::Form {
            kty: key.kty.clone(),
            form: "PEM",
            fix: "write a symmetric key as raw, base64 or jwk",
        }),
        Family::Rsa | Family::Ec => Err(Error::Form {
            kty: key.kty.clone(),
            form: "PEM",
            fix: "not yet",
        }),
    }
}

/// One JSON member's value.
enum Member<'a> {
    Text(&'a str),
    List(&'a [String]),
}

/// `{"name":value,...}` in the order given (callers give it sorted), written straight into a secret
/// buffer: serde_json would leave copies of the key's text in buffers nobody wipes.
fn object(members: &[(&str, Member<'_>)]) -> SecretBytes {
    // Room for the worst case (every character escaped as \u00XX), so the buffer never grows: growing
    // would leave a copy of the key behind in the old allocation.
    let cap = 2 + members
        .iter()
        .map(|(n, v)| {
            6 * n.len()
                + 4
                + match v {
                    Member::Text(t) => 6 * t.len() + 2,
                    Member::List(l) => 2 + l.iter().map(|s| 6 * s.len() + 3).sum::<usize>(),
                }
        })
        .sum::<usize>();
    let mut out = Vec::with_capacity(cap);
    out.push(b'{');
    for (i, (name, value)) in members.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(&mut out, name);
        out.push(b':');
        match value {
            Member::Text(t) => string(&mut out, t),
            Member::List(l) => {
                out.push(b'[');
                for (j, s) in l.iter().enumerate() {
                    if j > 0 {
                        out.push(b',');
                    }
                    string(&mut out, s);
                }
                out.push(b']');
            }
        }
    }
    out.push(b'}');
    debug_assert!(out.len() <= cap, "{} > {cap}", out.len());
    SecretBytes::new(out)
}

/// A JSON string. Key material is base64url (nothing to escape); names and key_ops from the vault are
/// escaped as JSON requires.
fn string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes())
            }
            c => {
                let mut b = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
            }
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oct(bytes: &[u8], ops: &[&str]) -> ReleasedKey {
        ReleasedKey {
            kty: "oct-HSM".into(),
            key_ops: ops.iter().map(|s| s.to_string()).collect(),
            enc: "CKM_RSA_AES_KEY_WRAP".into(),
            plaintext: SecretBytes::new(bytes.to_vec()),
        }
    }

    #[test]
    fn an_oct_jwk_is_upstreams_compact_sorted_json() {
        let k = oct(&[0xfb; 4], &["wrapKey", "unwrapKey"]);
        let j = jwk(&k).unwrap();
        assert_eq!(
            std::str::from_utf8(j.expose()).unwrap(),
            r#"{"k":"-_v7-w","key_ops":["wrapKey","unwrapKey"],"kty":"oct"}"#
        );
        let v: serde_json::Value = serde_json::from_slice(j.expose()).unwrap();
        assert_eq!(v["kty"], "oct");
        let j = jwk(&oct(&[1], &[])).unwrap();
        assert_eq!(
            std::str::from_utf8(j.expose()).unwrap(),
            r#"{"k":"AQ","kty":"oct"}"#
        );
    }

    #[test]
    fn names_are_escaped_and_base64_is_standard() {
        let k = oct(&[0xfb, 0xff], &["a\"b\\c\n"]);
        let j = jwk(&k).unwrap();
        let v: serde_json::Value = serde_json::from_slice(j.expose()).unwrap();
        assert_eq!(v["key_ops"][0], "a\"b\\c\n");
        assert_eq!(base64(&k).expose(), b"+/8=");
        assert_eq!(raw(&k).expose(), [0xfb, 0xff]);
        assert!(pem(&k)
            .unwrap_err()
            .to_string()
            .contains("raw, base64 or jwk"));
    }
}
