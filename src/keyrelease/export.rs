//! A released key in the forms an application reads: the raw bytes, base64, a JWK (what upstream's SKR
//! sidecar answers `POST /key/release` with), or PEM (an RSA or EC private key, PKCS#8).
//!
//! Every output is a [`SecretBytes`]: the buffers holding key material on the way are wiped. A JWK is
//! compact JSON with its members in alphabetical order, as upstream's jwx writes it
//! (`{"k":"..","key_ops":[..],"kty":"oct"}`).
#![forbid(unsafe_code)]

use super::ReleasedKey;
use crate::secret::SecretBytes;

mod ec;
mod rsa_parts;
#[cfg(test)]
mod tests;

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
    #[error("the released {kty} key does not parse: {detail}; fix: release a key whose plaintext is PKCS#8 DER (what Key Vault gives for RSA and EC keys)")]
    Malformed {
        /// The key's type.
        kty: String,
        /// What did not parse.
        detail: &'static str,
    },
    /// The PKCS#8 DER does not decode (its structure).
    #[error("the released {kty} key is not PKCS#8 DER; fix: release a key whose plaintext is PKCS#8 DER (what Key Vault gives for RSA and EC keys)")]
    Der {
        /// The key's type.
        kty: String,
        /// The decoder's error.
        #[source]
        source: der::Error,
    },
    /// The RSA key does not parse or is not consistent.
    #[error("the released RSA key is not a valid PKCS#8 RSA private key; fix: release an RSA key")]
    Rsa(#[source] rsa::pkcs8::Error),
    /// The RSA key's CRT values cannot be computed (a broken key).
    #[error("the released RSA key's CRT values cannot be computed (a broken key); fix: release a valid RSA key")]
    RsaCrt(#[source] rsa::Error),
    /// An EC key on a curve a JWK has no name for here.
    #[error("the released EC key is on curve {0}, not P-256, P-384 or P-521; fix: release a key on one of those curves")]
    Curve(String),
    /// An EC key without its public point: a JWK needs x and y.
    #[error("the released EC key carries no public key (RFC 5915 publicKey); fix: release a key whose PKCS#8 includes the public key, or ask for raw, base64 or pem")]
    NoPublicKey,
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
        Family::Rsa => {
            let parts = rsa_parts::parts(key.plaintext.expose())?;
            let b = |v: &[u8]| zeroize::Zeroizing::new(b64url(v));
            let (d, dp, dq, e, n, p, q, qi) = (
                b(&parts.d),
                b(&parts.dp),
                b(&parts.dq),
                b(&parts.e),
                b(&parts.n),
                b(&parts.p),
                b(&parts.q),
                b(&parts.qi),
            );
            let mut members: Vec<(&str, Member<'_>)> = vec![
                ("d", Member::Text(&d)),
                ("dp", Member::Text(&dp)),
                ("dq", Member::Text(&dq)),
                ("e", Member::Text(&e)),
            ];
            if !key.key_ops.is_empty() {
                members.push(("key_ops", Member::List(&key.key_ops)));
            }
            members.extend([
                ("kty", Member::Text("RSA")),
                ("n", Member::Text(&n)),
                ("p", Member::Text(&p)),
                ("q", Member::Text(&q)),
                ("qi", Member::Text(&qi)),
            ]);
            Ok(object(&members))
        }
        Family::Ec => {
            let k = ec::parts(&key.kty, key.plaintext.expose())?;
            let (d, x, y) = (
                zeroize::Zeroizing::new(b64url(&k.d)),
                b64url(k.x),
                b64url(k.y),
            );
            let mut members: Vec<(&str, Member<'_>)> =
                vec![("crv", Member::Text(k.crv)), ("d", Member::Text(&d))];
            if !key.key_ops.is_empty() {
                members.push(("key_ops", Member::List(&key.key_ops)));
            }
            members.extend([
                ("kty", Member::Text("EC")),
                ("x", Member::Text(&x)),
                ("y", Member::Text(&y)),
            ]);
            Ok(object(&members))
        }
    }
}

/// Unpadded base64url, in a string of exactly its size (no reallocation leaves a copy behind).
fn b64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The private key as PEM (`-----BEGIN PRIVATE KEY-----`, PKCS#8): RSA and EC keys only.
pub fn pem(key: &ReleasedKey) -> Result<SecretBytes, Error> {
    match Family::of(&key.kty)? {
        Family::Oct => {
            return Err(Error::Form {
                kty: key.kty.clone(),
                form: "PEM",
                fix: "write a symmetric key as raw, base64 or jwk",
            })
        }
        // Checked first: PEM of something that is not the key it claims to be would only fail later, in
        // the application.
        Family::Rsa => drop(rsa_parts::parts(key.plaintext.expose())?),
        Family::Ec => drop(ec::parts(&key.kty, key.plaintext.expose())?),
    }
    Ok(pem_of(key.plaintext.expose()))
}

/// `-----BEGIN PRIVATE KEY-----`, the DER in standard base64 lines of 64 characters, `-----END ...`,
/// written into a buffer sized exactly beforehand.
fn pem_of(der: &[u8]) -> SecretBytes {
    use base64::Engine;
    const BEGIN: &[u8] = b"-----BEGIN PRIVATE KEY-----\n";
    const END: &[u8] = b"-----END PRIVATE KEY-----\n";
    let text = der.len().div_ceil(3) * 4;
    let lines = text.div_ceil(64);
    let mut out = zeroize::Zeroizing::new(vec![0u8; BEGIN.len() + text + lines + END.len()]);
    out[..BEGIN.len()].copy_from_slice(BEGIN);
    let mut at = BEGIN.len();
    // 48 bytes are 64 characters: each chunk is one line.
    for chunk in der.chunks(48) {
        let n = base64::engine::general_purpose::STANDARD
            .encode_slice(chunk, &mut out[at..])
            .unwrap_or(0);
        at += n;
        out[at] = b'\n';
        at += 1;
    }
    out[at..at + END.len()].copy_from_slice(END);
    debug_assert_eq!(at + END.len(), out.len());
    SecretBytes::new(std::mem::take(&mut *out))
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
