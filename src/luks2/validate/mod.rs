//! Parsing and the allowlist: [`Header::parse`] picks the winning binary copy, compares the optional pin,
//! and the JSON document of that copy becomes a [`Header`] only if every parameter is one we have decided
//! to trust (`objects` checks each keyslot, the segment and the digest; this module the document as a
//! whole). Nothing is derived, decrypted or handed to dm-crypt before this passes.
//!
//! **Ciphers: `aes-xts-plain64` only**, for the data segment and for keyslot areas, with 32- or 64-byte keys
//! (AES-128/256-XTS). It is what upstream's images, cryptsetup's LUKS2 default and our `image create` use.
//! Everything else is refused on purpose:
//! - `cipher_null` and anything containing `null`: no encryption at all (the classic LUKS downgrade attack
//!   is a header rewritten to `cipher_null-ecb` so that a "successful" open exposes plaintext writes).
//! - `aes-xts-plain`: its 32-bit IV wraps after 2 TiB, silently reusing tweaks.
//! - `aes-cbc-essiv:sha256` (the old LUKS1 default) and other CBC/ESSIV/benbi modes: they need more kernel
//!   modules in the guest, CBC leaks more under a malleable block store, and no image we open uses them.
//! - AEAD / integrity segments (`aes-gcm-random`, an `integrity` object): need dm-integrity; "not supported
//!   yet" rather than opened without their integrity guarantee.
//!
//! Hashes: sha1, sha256, sha512 (sha1 only ever as an HMAC PRF or AF diffuser, where collisions don't matter).
//! Sectors: 512 or 4096. AF: `luks1` with 4000 stripes (all cryptsetup writes). KDF costs are bounded both
//! ways: below by cryptsetup's own minimums, above so that a hostile header cannot make us spin or
//! allocate without limit. Layout: keyslot areas lie inside the keyslots area, 4 KiB aligned and
//! non-overlapping; the data segment starts after all metadata, sector aligned; exactly one crypt segment
//! and one pbkdf2 digest; reencryption and mandatory requirements are refused.

mod objects;

use super::binary::{self, Chosen, BINARY_HEADER_SIZE};
use super::error::{Error, Result};
use super::header::{area_sha256, Header};
use super::json::{self, RawConfig};
use crate::hex::encode as hex;
use objects::{digest, id, keyslot, segment};
use serde_json::Value;

/// The one allowed cipher (segments and keyslot areas).
pub const ALLOWED_CIPHERS: &[&str] = &["aes-xts-plain64"];
/// Most keyslots LUKS2 has.
pub const MAX_KEYSLOTS: usize = 32;
/// Most tokens we accept (contents are ignored).
pub const MAX_TOKENS: usize = 32;
/// AF stripes.
pub const STRIPES: u64 = 4000;
/// Largest keyslots area (cryptsetup's limit).
pub const MAX_KEYSLOTS_SIZE: u64 = 128 << 20;
/// PBKDF2 iterations: cryptsetup's minimum and our ceiling.
pub const PBKDF2_ITERATIONS: (u64, u64) = (1000, 100_000_000);
/// Argon2 passes.
pub const ARGON2_TIME: (u64, u64) = (4, 1000);
/// Argon2 memory, KiB (cryptsetup's range: 32 KiB .. 4 GiB).
pub const ARGON2_MEMORY_KIB: (u64, u64) = (32, 4 << 20);
/// Argon2 lanes.
pub const ARGON2_CPUS: (u64, u64) = (1, 16);
/// Salt length, bytes.
pub const SALT_LEN: (usize, usize) = (16, 64);

impl Header {
    /// Parse and validate the header at the start of `buf` (at least both header copies; the keyslot areas
    /// are needed only to unlock).
    pub fn parse(buf: &[u8]) -> Result<Header> {
        Self::parse_pinned(buf, None)
    }

    /// As [`Header::parse`], but first compare the header area's SHA-256 with `pin` (the manifest's
    /// `header_sha256`): a mismatch is refused before the JSON is even read.
    pub fn parse_pinned(buf: &[u8], pin: Option<&[u8; 32]>) -> Result<Header> {
        let chosen = binary::choose(buf)?;
        let hdr_size = chosen.header.hdr_size;
        let header_sha256 = area_sha256(buf, hdr_size).ok_or(Error::Truncated {
            what: "header area",
            need: hdr_size.saturating_mul(2),
            have: buf.len() as u64,
        })?;
        if let Some(pin) = pin {
            if pin != &header_sha256 {
                return Err(Error::HeaderPin {
                    expected: hex(pin),
                    actual: hex(&header_sha256),
                });
            }
        }
        document(chosen, header_sha256)
    }
}

/// Validate the winning copy's document into a [`Header`].
fn document(chosen: Chosen<'_>, header_sha256: [u8; 32]) -> Result<Header> {
    let Chosen {
        header: binary,
        json: text,
        mut warnings,
    } = chosen;
    let doc = json::parse_document(text)?;
    let config: RawConfig = json::typed(&doc.config, "config")?;
    let hdr_size = binary.hdr_size;
    if config.json_size.0 != hdr_size - BINARY_HEADER_SIZE {
        return Err(Error::Range {
            field: "config.json_size".into(),
            value: config.json_size.0.to_string(),
            allowed: "hdr_size - 4096",
        });
    }
    let keyslots_size = config.keyslots_size.0;
    if keyslots_size % 4096 != 0 || keyslots_size > MAX_KEYSLOTS_SIZE {
        return Err(Error::Range {
            field: "config.keyslots_size".into(),
            value: keyslots_size.to_string(),
            allowed: "a multiple of 4096 up to 128 MiB",
        });
    }
    if let Some(req) = &config.requirements {
        let mandatory = req.get("mandatory").and_then(Value::as_array);
        if mandatory.is_none_or(|m| !m.is_empty()) {
            return Err(Error::NotSupported {
                field: "config.requirements".into(),
                what: format!(
                    "requirement {}",
                    req.to_string().chars().take(64).collect::<String>()
                ),
            });
        }
    }
    let config_flags = config.flags.unwrap_or_default();
    if config_flags.len() > 16 {
        return Err(Error::Range {
            field: "config.flags".into(),
            value: config_flags.len().to_string(),
            allowed: "at most 16",
        });
    }
    if doc.tokens.len() > MAX_TOKENS {
        return Err(Error::Range {
            field: "tokens".into(),
            value: doc.tokens.len().to_string(),
            allowed: "at most 32",
        });
    }
    if doc.keyslots.len() > MAX_KEYSLOTS {
        return Err(Error::Range {
            field: "keyslots".into(),
            value: doc.keyslots.len().to_string(),
            allowed: "at most 32",
        });
    }
    let ks_start = 2 * hdr_size;
    let ks_end = ks_start + keyslots_size;

    if doc.segments.len() != 1 {
        return Err(Error::SegmentCount(doc.segments.len()));
    }
    let (seg_id, seg_v) = doc.segments.iter().next().ok_or(Error::SegmentCount(0))?;
    if seg_id != "0" {
        return Err(Error::Reference {
            field: format!("segments.{seg_id:.16}"),
            detail: "the segment id must be 0".into(),
        });
    }
    let mut segment = segment(seg_v, ks_end)?;

    let mut keyslots = Vec::with_capacity(doc.keyslots.len());
    for (k, v) in &doc.keyslots {
        let n = id(&format!("keyslots.{k:.16}"), k, MAX_KEYSLOTS)?;
        keyslots.push(keyslot(v, n, ks_start, ks_end)?);
    }
    keyslots.sort_by_key(|k| k.id);
    for (i, a) in keyslots.iter().enumerate() {
        for b in &keyslots[i + 1..] {
            if a.area_offset < b.area_offset + b.area_size
                && b.area_offset < a.area_offset + a.area_size
            {
                return Err(Error::Overlap {
                    a: format!("keyslots.{}.area", a.id),
                    b: format!("keyslots.{}.area", b.id),
                });
            }
        }
    }

    if doc.digests.len() != 1 {
        return Err(Error::DigestCount(doc.digests.len()));
    }
    let dv = doc.digests.values().next().ok_or(Error::DigestCount(0))?;
    let (vk_digest, bound, segs) = digest(dv)?;
    if !segs.iter().any(|s| s == "0") || segs.len() != 1 {
        return Err(Error::Reference {
            field: "digests.0.segments".into(),
            detail: "must be exactly [\"0\"]".into(),
        });
    }
    if bound.len() > MAX_KEYSLOTS {
        return Err(Error::Range {
            field: "digests.0.keyslots".into(),
            value: bound.len().to_string(),
            allowed: "at most 32",
        });
    }
    for b in &bound {
        let n = id("digests.0.keyslots", b, MAX_KEYSLOTS)?;
        match keyslots.iter_mut().find(|k| k.id == n) {
            Some(k) => k.bound = true,
            None => {
                return Err(Error::Reference {
                    field: "digests.0.keyslots".into(),
                    detail: format!("keyslot {n} does not exist"),
                })
            }
        }
    }
    for k in keyslots.iter().filter(|k| !k.bound) {
        warnings.push(format!(
            "LUKS2: keyslot {} is not bound to the data segment's digest; not tried",
            k.id
        ));
    }
    let Some(first) = keyslots.iter().find(|k| k.bound) else {
        return Err(Error::Reference {
            field: "keyslots".into(),
            detail: "no keyslot holds the volume key".into(),
        });
    };
    segment.key_size = first.key_size;
    if let Some(k) = keyslots
        .iter()
        .find(|k| k.bound && k.key_size != segment.key_size)
    {
        return Err(Error::KeySize {
            field: format!("keyslots.{}.key_size", k.id),
            value: k.key_size as u64,
        });
    }
    Ok(Header {
        binary,
        warnings,
        keyslots_size,
        config_flags,
        segment,
        keyslots,
        digest: vk_digest,
        header_sha256,
    })
}
