//! Each JSON object of the winning copy's document checked against the allowlist (see [`super`]) into its
//! typed form: a keyslot with its KDF, the data segment, the volume key digest; and the field checks they
//! share (cipher, hash, key size, ranges, base64, ids).

use super::{
    ALLOWED_CIPHERS, ARGON2_CPUS, ARGON2_MEMORY_KIB, ARGON2_TIME, PBKDF2_ITERATIONS, SALT_LEN,
    STRIPES,
};
use crate::luks2::error::{Error, Result};
use crate::luks2::header::{
    Argon2Variant, Hash, Kdf, Keyslot, Priority, Segment, SegmentSize, VkDigest,
};
use crate::luks2::json::{
    self, parse_decimal, RawArgon2, RawDigest, RawKeyslot, RawPbkdf2, RawSegment,
};
use base64::Engine as _;
use serde_json::Value;

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

pub(super) fn in_range(
    field: &str,
    v: u64,
    (lo, hi): (u64, u64),
    allowed: &'static str,
) -> Result<u32> {
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

pub(super) fn id(field: &str, s: &str, max: usize) -> Result<u32> {
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

pub(super) fn keyslot(v: &Value, id: u32, ks_start: u64, ks_end: u64) -> Result<Keyslot> {
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

pub(super) fn segment(v: &Value, metadata_end: u64) -> Result<Segment> {
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

pub(super) fn digest(v: &Value) -> Result<(VkDigest, Vec<String>, Vec<String>)> {
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
