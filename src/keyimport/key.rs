//! The key to import: an oct-HSM key (32 random bytes, or from a key file) or an RSA-HSM key (a new RSA-2048 or
//! a PKCS#8 PEM); its JWK for the import; the disk key the boot will derive from it; the files written only
//! where asked (0600, never overwriting, never following a symlink).
//!
//! Key material lives in [`SecretBytes`], [`Zeroizing`] buffers or `rsa`'s own zeroizing key; none is printed.
#![forbid(unsafe_code)]

use super::config::Kty;
use crate::secret::SecretBytes;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// Key material problems.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A key file cannot be read.
    #[error("cannot read the key file {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A key file for an oct key holds neither 32 bytes nor 64 hex digits.
    #[error("key file {}: holds {len} bytes, neither 32 raw bytes nor 64 hex digits; fix: give 32 raw bytes (like upstream's keyfile.bin) or 64 hex digits", path.display())]
    OctFile {
        /// The file.
        path: PathBuf,
        /// Its length.
        len: usize,
    },
    /// The RSA key file is not a PKCS#8 RSA private key.
    #[error("RSA key {}: not a PKCS#8 PEM RSA private key (\"-----BEGIN PRIVATE KEY-----\"); fix: convert it with `openssl pkcs8 -topk8 -nocrypt`", path.display())]
    RsaFile {
        /// The file.
        path: PathBuf,
    },
    /// The RSA key is not 2048, 3072 or 4096 bits.
    #[error("RSA key {}: {bits} bits; fix: give a 2048-, 3072- or 4096-bit key (what an RSA-HSM key can be)", path.display())]
    RsaSize {
        /// The file.
        path: PathBuf,
        /// Its size.
        bits: usize,
    },
    /// Random bytes or key generation failed.
    #[error("generating the key: {0}")]
    Generate(String),
    /// An output file exists (or is a symlink): not overwritten.
    #[error("{} exists; fix: remove it or choose another path (it is never overwritten)", path.display())]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// An output file cannot be written.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The key to import.
pub enum Key {
    /// oct-HSM: the 32 bytes.
    Oct(SecretBytes),
    /// RSA-HSM: the private key (zeroized by `rsa` on drop); `generated` when made here.
    Rsa {
        /// The key.
        key: Box<rsa::PrivateKey>,
        /// Made here (and so lost unless written with `--private-key-out`).
        generated: bool,
    },
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Key::Oct(k) => write!(f, "Key::Oct({k:?})"),
            Key::Rsa { generated, .. } => write!(f, "Key::Rsa(<private>, generated: {generated})"),
        }
    }
}

/// 32 random bytes.
pub fn random32() -> Result<SecretBytes, Error> {
    let mut b = vec![0u8; 32];
    getrandom::fill(&mut b).map_err(|e| Error::Generate(e.to_string()))?;
    Ok(SecretBytes::new(b))
}

/// The key for `kty`: from `oct_file` / `rsa_file` when given (the caller checked which fits), else new.
pub fn obtain(kty: Kty, oct_file: Option<&Path>, rsa_file: Option<&Path>) -> Result<Key, Error> {
    match (kty, oct_file, rsa_file) {
        (Kty::Oct, Some(p), _) => oct_from_file(p).map(Key::Oct),
        (Kty::Oct, None, _) => random32().map(Key::Oct),
        (Kty::Rsa, _, Some(p)) => Ok(Key::Rsa {
            key: Box::new(rsa_from_file(p)?),
            generated: false,
        }),
        (Kty::Rsa, _, None) => Ok(Key::Rsa {
            key: Box::new(
                rsa::PrivateKey::new(&mut getrandom::SysRng, 2048)
                    .map_err(|e| Error::Generate(format!("RSA-2048: {e}")))?,
            ),
            generated: true,
        }),
    }
}

/// A key file (`-` is stdin), at most 1 MiB, read into a wiped buffer sized for any key file (so it does
/// not grow and leave a copy behind).
fn read(path: &Path) -> Result<Zeroizing<Vec<u8>>, Error> {
    use std::io::Read;
    let mut buf = Zeroizing::new(Vec::with_capacity(16 << 10));
    let r = if path == Path::new("-") {
        std::io::stdin().lock().take(1 << 20).read_to_end(&mut buf)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(1 << 20).read_to_end(&mut buf))
    };
    r.map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(buf)
}

/// The manifest's raw key file rule: 32 raw bytes, or 64 hex digits and an optional newline.
fn oct_from_file(path: &Path) -> Result<SecretBytes, Error> {
    let bytes = read(path)?;
    if bytes.len() == 32 {
        return Ok(SecretBytes::new(bytes.to_vec()));
    }
    let text = std::str::from_utf8(&bytes).unwrap_or_default().trim();
    if text.len() == 64 {
        if let Some(k) = crate::hex::decode(text) {
            return Ok(SecretBytes::new(k));
        }
    }
    Err(Error::OctFile {
        path: path.to_path_buf(),
        len: bytes.len(),
    })
}

fn rsa_from_file(path: &Path) -> Result<rsa::PrivateKey, Error> {
    let bytes = read(path)?;
    let bad = || Error::RsaFile {
        path: path.to_path_buf(),
    };
    let text = std::str::from_utf8(&bytes).map_err(|_| bad())?;
    let key = rsa::PrivateKey::from_pkcs8_pem(text.trim()).map_err(|_| bad())?;
    let bits = rsa::traits::PublicKeyParts::size(&key) * 8;
    if !matches!(bits, 2048 | 3072 | 4096) {
        return Err(Error::RsaSize {
            path: path.to_path_buf(),
            bits,
        });
    }
    Ok(key)
}

/// The JWK to import, compact JSON in a wiped buffer: oct-HSM `{"kty":"oct-HSM","k":..,"key_size":256
/// [,"key_ops":..]}`, RSA-HSM `{"kty":"RSA-HSM","n","e","d","p","q","dp","dq","qi"[,"key_ops"]}` (base64url,
/// no padding, minimal big-endian integers).
pub fn jwk(key: &Key, key_ops: Option<&[String]>) -> Result<Zeroizing<String>, Error> {
    let mut out = Zeroizing::new(String::with_capacity(8192));
    let mut field = |name: &str, bytes: &[u8]| {
        out.push_str(&format!(",\"{name}\":\""));
        // Encoded straight into the wiped buffer.
        B64URL.encode_string(bytes, &mut out);
        out.push('"');
    };
    match key {
        Key::Oct(k) => {
            field("k", k.expose());
        }
        Key::Rsa { key, .. } => {
            let der = key
                .to_pkcs1_der()
                .map_err(|e| Error::Generate(format!("PKCS#1 encoding: {e}")))?;
            let p = rsa::pkcs1::RsaPrivateKeyRef::try_from(der.as_bytes())
                .map_err(|e| Error::Generate(format!("PKCS#1 encoding: {e}")))?;
            for (name, v) in [
                ("n", p.modulus),
                ("e", p.public_exponent),
                ("d", p.private_exponent),
                ("p", p.prime1),
                ("q", p.prime2),
                ("dp", p.exponent1),
                ("dq", p.exponent2),
                ("qi", p.coefficient),
            ] {
                field(name, v.as_bytes());
            }
        }
    }
    let (kty, size) = match key {
        Key::Oct(_) => ("oct-HSM", ",\"key_size\":256"),
        Key::Rsa { .. } => ("RSA-HSM", ""),
    };
    let ops = key_ops.map_or_else(String::new, |ops| {
        format!(",\"key_ops\":{}", serde_json::Value::from(ops.to_vec()))
    });
    let mut whole = Zeroizing::new(String::with_capacity(out.len() + 64));
    whole.push_str(&format!("{{\"kty\":\"{kty}\""));
    whole.push_str(&out);
    whole.push_str(size);
    whole.push_str(&ops);
    whole.push('}');
    Ok(whole)
}

/// The disk key the boot derives from this key (oct: the key; RSA: [`crate::keyrelease::unwrap::rsa_hkdf`]).
pub fn disk_key(key: &Key, salt: &[u8], label: &str) -> Result<SecretBytes, Error> {
    match key {
        Key::Oct(k) => Ok(SecretBytes::new(k.expose().to_vec())),
        Key::Rsa { key, .. } => crate::keyrelease::unwrap::rsa_hkdf(key, salt, label)
            .map_err(|e| Error::Generate(format!("HKDF: {e}"))),
    }
}

/// The private key as PKCS#8 PEM (for `--private-key-out`).
pub fn private_pem(key: &rsa::PrivateKey) -> Result<Zeroizing<String>, Error> {
    key.to_pkcs8_pem(rsa::pkcs8::LineEnding::LF)
        .map_err(|e| Error::Generate(format!("PKCS#8 encoding: {e}")))
}

/// Write `bytes` to a new file `path`, mode 0600: refused if anything is there (a symlink included).
pub fn write_new(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::AlreadyExists => Error::Exists {
                path: path.to_path_buf(),
            },
            _ => Error::Write {
                path: path.to_path_buf(),
                source,
            },
        })?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|source| {
            let _ = std::fs::remove_file(path);
            Error::Write {
                path: path.to_path_buf(),
                source,
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_oct_jwk_is_the_key_base64url_with_its_size_and_ops() {
        let k = Key::Oct(SecretBytes::new(vec![0xfb; 32]));
        let j = jwk(&k, Some(&["encrypt".to_string()])).unwrap();
        assert_eq!(
            &*j,
            r#"{"kty":"oct-HSM","k":"-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_s","key_size":256,"key_ops":["encrypt"]}"#
        );
    }

    #[test]
    fn an_rsa_jwk_holds_consistent_parts() {
        let key = rsa::PrivateKey::new(&mut getrandom::SysRng, 2048).unwrap();
        let j = jwk(
            &Key::Rsa {
                key: Box::new(key),
                generated: true,
            },
            None,
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v["kty"], "RSA-HSM");
        let n = B64URL.decode(v["n"].as_str().unwrap()).unwrap();
        assert_eq!(n.len(), 256);
        for f in ["e", "d", "p", "q", "dp", "dq", "qi"] {
            assert!(v[f].as_str().is_some_and(|s| !s.is_empty()), "{f}");
        }
    }
}
