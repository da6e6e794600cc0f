//! The allowlist: the JSON document of the winning copy becomes a [`Header`] only if every parameter is one
//! we have decided to trust. Nothing is derived, decrypted or handed to dm-crypt before this passes.
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

use super::binary::{Chosen, BINARY_HEADER_SIZE};
use super::error::{Error, Result};
use super::header::{
    Argon2Variant, Hash, Header, Kdf, Keyslot, Priority, Segment, SegmentSize, VkDigest,
};
use super::json::{
    self, parse_decimal, RawArgon2, RawConfig, RawDigest, RawKeyslot, RawPbkdf2, RawSegment,
};
use base64::Engine as _;
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

fn cipher_ok(field: &str, c: &str) -> Result<()> {
    if c.contains("null") || !ALLOWED_CIPHERS.contains(&c) {
        return Err(Error::Cipher {
            field: field.into(),
            value: c.chars().take(64).collect(),
        });
    }
    Ok(())
}

fn hash(field: &str, h: &str) -> Result<Hash> {
    Hash::from_name(h).ok_or_else(|| Error::Hash {
        field: field.into(),
        value: h.chars().take(64).collect(),
    })
}

fn xts_key(field: &str, n: u64) -> Result<usize> {
    match n {
        32 => Ok(32),
        64 => Ok(64),
        _ => Err(Error::KeySize {
            field: field.into(),
            value: n,
        }),
    }
}

fn in_range(field: &str, v: u64, (lo, hi): (u64, u64), allowed: &'static str) -> Result<u32> {
    if v < lo || v > hi {
        return Err(Error::Range {
            field: field.into(),
            value: v.to_string(),
            allowed,
        });
    }
    u32::try_from(v).map_err(|_| Error::Range {
        field: field.into(),
        value: v.to_string(),
        allowed,
    })
}

fn b64(field: &str, s: &str, (lo, hi): (usize, usize), allowed: &'static str) -> Result<Vec<u8>> {
    let bad = |v: String| Error::Range {
        field: field.into(),
        value: v,
        allowed,
    };
    if s.len() > 4 * hi.div_ceil(3) {
        return Err(bad(format!("{} base64 characters", s.len())));
    }
    let v = base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|e| Error::Json {
            field: field.into(),
            detail: format!("bad base64: {e}"),
        })?;
    if v.len() < lo || v.len() > hi {
        return Err(bad(format!("{} bytes", v.len())));
    }
    Ok(v)
}

fn id(field: &str, s: &str, max: usize) -> Result<u32> {
    parse_decimal(s)
        .filter(|&n| n < max as u64)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| Error::Json {
            field: field.into(),
            detail: format!("id \"{s:.16}\" is not 0..{max}"),
        })
}

fn kdf(v: &Value, field: &str) -> Result<Kdf> {
    let f = |s: &str| format!("{field}.{s}");
    match json::type_of(v, field)? {
        "pbkdf2" => {
            let k: RawPbkdf2 = json::typed(v, field)?;
            Ok(Kdf::Pbkdf2 {
                hash: hash(&f("hash"), &k.hash)?,
                iterations: in_range(
                    &f("iterations"),
                    k.iterations,
                    PBKDF2_ITERATIONS,
                    "1000..=100000000",
                )?,
                salt: b64(&f("salt"), &k.salt, SALT_LEN, "16..=64 bytes")?,
            })
        }
        t @ ("argon2i" | "argon2id") => {
            let k: RawArgon2 = json::typed(v, field)?;
            Ok(Kdf::Argon2 {
                variant: if t == "argon2i" {
                    Argon2Variant::Argon2i
                } else {
                    Argon2Variant::Argon2id
                },
                time: in_range(&f("time"), k.time, ARGON2_TIME, "4..=1000")?,
                memory_kib: in_range(
                    &f("memory"),
                    k.memory,
                    ARGON2_MEMORY_KIB,
                    "32..=4194304 KiB",
                )?,
                cpus: in_range(&f("cpus"), k.cpus, ARGON2_CPUS, "1..=16")?,
                salt: b64(&f("salt"), &k.salt, SALT_LEN, "16..=64 bytes")?,
            })
        }
        other => Err(Error::Type {
            field: f("type"),
            value: other.chars().take(32).collect(),
        }),
    }
}

fn keyslot(v: &Value, id: u32, ks_start: u64, ks_end: u64) -> Result<Keyslot> {
    let field = format!("keyslots.{id}");
    let f = |s: &str| format!("{field}.{s}");
    let t = json::type_of(v, &field)?;
    if t != "luks2" {
        return Err(Error::Type {
            field: f("type"),
            value: t.chars().take(32).collect(),
        });
    }
    let k: RawKeyslot = json::typed(v, &field)?;
    let key_size = xts_key(&f("key_size"), k.key_size)?;
    if k.af.kind != "luks1" {
        return Err(Error::Type {
            field: f("af.type"),
            value: k.af.kind.chars().take(32).collect(),
        });
    }
    if k.af.stripes != STRIPES {
        return Err(Error::Stripes {
            field: f("af.stripes"),
            value: k.af.stripes,
        });
    }
    let af_hash = hash(&f("af.hash"), &k.af.hash)?;
    let a = &k.area;
    if a.kind != "raw" {
        return Err(Error::Type {
            field: f("area.type"),
            value: a.kind.chars().take(32).collect(),
        });
    }
    cipher_ok(&f("area.encryption"), &a.encryption)?;
    let area_key_size = xts_key(&f("area.key_size"), a.key_size)?;
    let (off, size) = (a.offset.0, a.size.0);
    let end = off.checked_add(size);
    if off % 4096 != 0 || size % 4096 != 0 || off < ks_start || end.is_none_or(|e| e > ks_end) {
        return Err(Error::Offset {
            field: f("area"),
            detail: format!(
                "area {off}+{size} is not 4 KiB aligned inside the keyslots area {ks_start}..{ks_end}"
            ),
        });
    }
    if size < k.key_size * STRIPES {
        return Err(Error::Range {
            field: f("area.size"),
            value: size.to_string(),
            allowed: "at least key_size * stripes",
        });
    }
    let priority = match k.priority {
        None | Some(1) => Priority::Normal,
        Some(0) => Priority::Ignore,
        Some(2) => Priority::High,
        Some(p) => {
            return Err(Error::Range {
                field: f("priority"),
                value: p.to_string(),
                allowed: "0, 1 or 2",
            })
        }
    };
    Ok(Keyslot {
        id,
        priority,
        key_size,
        kdf: kdf(&k.kdf, &f("kdf"))?,
        stripes: STRIPES as u32,
        af_hash,
        area_offset: off,
        area_size: size,
        area_cipher: a.encryption.clone(),
        area_key_size,
        bound: false,
    })
}

fn segment(v: &Value, metadata_end: u64) -> Result<Segment> {
    let field = "segments.0";
    let t = json::type_of(v, field)?;
    if t != "crypt" {
        return Err(Error::Type {
            field: "segments.0.type".into(),
            value: t.chars().take(32).collect(),
        });
    }
    let s: RawSegment = json::typed(v, field)?;
    if s.integrity.is_some() {
        return Err(Error::NotSupported {
            field: "segments.0.integrity".into(),
            what: "an integrity-protected segment (dm-integrity)".into(),
        });
    }
    if let Some(flag) = s.flags.as_ref().and_then(|f| f.first()) {
        return Err(Error::NotSupported {
            field: "segments.0.flags".into(),
            what: format!(
                "segment flag \"{}\" (reencryption in progress?)",
                flag.chars().take(32).collect::<String>()
            ),
        });
    }
    cipher_ok("segments.0.encryption", &s.encryption)?;
    let sector_size = match s.sector_size {
        512 => 512u32,
        4096 => 4096,
        n => {
            return Err(Error::SectorSize {
                field: "segments.0.sector_size".into(),
                value: n,
            })
        }
    };
    let offset = s.offset.0;
    if offset < metadata_end || offset % u64::from(sector_size) != 0 {
        return Err(Error::Offset {
            field: "segments.0.offset".into(),
            detail: format!(
                "data offset {offset} must be {sector_size}-byte aligned and not before the end of the \
                 metadata ({metadata_end})"
            ),
        });
    }
    let size = match s.size.as_str() {
        "dynamic" => SegmentSize::Dynamic,
        n => match parse_decimal(n) {
            Some(n)
                if n > 0 && n % u64::from(sector_size) == 0 && offset.checked_add(n).is_some() =>
            {
                SegmentSize::Fixed(n)
            }
            _ => {
                return Err(Error::Range {
                    field: "segments.0.size".into(),
                    value: n.chars().take(24).collect(),
                    allowed: "\"dynamic\" or a positive multiple of sector_size",
                })
            }
        },
    };
    Ok(Segment {
        cipher: s.encryption,
        key_size: 0,
        sector_size,
        offset,
        size,
        iv_tweak: s.iv_tweak.0,
    })
}

fn digest(v: &Value) -> Result<(VkDigest, Vec<String>, Vec<String>)> {
    let field = "digests.0";
    let t = json::type_of(v, field)?;
    if t != "pbkdf2" {
        return Err(Error::Type {
            field: "digests.0.type".into(),
            value: t.chars().take(32).collect(),
        });
    }
    let d: RawDigest = json::typed(v, field)?;
    let h = hash("digests.0.hash", &d.hash)?;
    let iterations = in_range(
        "digests.0.iterations",
        d.iterations,
        PBKDF2_ITERATIONS,
        "1000..=100000000",
    )?;
    let salt = b64("digests.0.salt", &d.salt, SALT_LEN, "16..=64 bytes")?;
    let out = h.output_len();
    let dg = b64(
        "digests.0.digest",
        &d.digest,
        (out, out),
        "the hash's output length",
    )?;
    Ok((
        VkDigest {
            hash: h,
            iterations,
            salt,
            digest: dg,
        },
        d.keyslots,
        d.segments,
    ))
}

/// Validate the winning copy's document into a [`Header`].
pub fn document(chosen: Chosen<'_>, header_sha256: [u8; 32]) -> Result<Header> {
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
