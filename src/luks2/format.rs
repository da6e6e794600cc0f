//! Writing a new LUKS2 header in cryptsetup's default layout, with one keyslot.
//!
//! Layout (as `cryptsetup luksFormat --type luks2` writes it): two 16 KiB copies (JSON area 12 KiB), the
//! keyslots area from 32 KiB to 16 MiB, keyslot 0's area at 32 KiB, the data segment at 16 MiB with
//! `size: "dynamic"`. Cipher aes-xts-plain64 for both the segment and the keyslot area, AF with 4000 sha256
//! stripes, a pbkdf2-sha256 digest. The passphrase is a uniformly random 32-byte key file (upstream's
//! rule), so the KDF cost protects nothing a guesser could exploit; it only has to be accepted by
//! cryptsetup (PBKDF2 ≥ 1000 iterations, Argon2 ≥ 4 passes).

use super::binary::{write_copy, NewBinaryHeader, BINARY_HEADER_SIZE};
use super::crypto::{self, Xts};
use super::error::{Copy, Error, Result};
use super::header::Hash;
use super::json::{
    Document, RawAf, RawArea, RawArgon2, RawConfig, RawDigest, RawKeyslot, RawPbkdf2, RawSegment,
    U64Str,
};
use base64::Engine as _;
use std::collections::BTreeMap;
use zeroize::Zeroizing;

/// Size of one header copy.
pub const HDR_SIZE: u64 = 16 << 10;
/// Offset of the data segment (and size of the metadata we write).
pub const DATA_OFFSET: u64 = 16 << 20;
/// Size of the keyslots area.
pub const KEYSLOTS_SIZE: u64 = DATA_OFFSET - 2 * HDR_SIZE;
/// Offset of keyslot 0's area.
pub const AREA_OFFSET: u64 = 2 * HDR_SIZE;
/// AF stripes.
pub const STRIPES: usize = 4000;
/// Digest iterations (cryptsetup's minimum; the volume key is 512 random bits).
pub const DIGEST_ITERATIONS: u32 = 1000;

/// The keyslot KDF to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewKdf {
    /// PBKDF2-SHA256.
    Pbkdf2 {
        /// Iterations (≥ 1000).
        iterations: u32,
    },
    /// Argon2id.
    Argon2id {
        /// Passes (≥ 4).
        time: u32,
        /// Memory, KiB.
        memory_kib: u32,
        /// Lanes.
        cpus: u32,
    },
}

/// What to format.
#[derive(Debug, Clone, Copy)]
pub struct FormatParams {
    /// Keyslot KDF.
    pub kdf: NewKdf,
    /// Data sector size (512 or 4096).
    pub sector_size: u32,
}

/// A source of random bytes (getrandom in the product, a seeded source in tests).
pub type Rng<'a> = &'a mut dyn FnMut(&mut [u8]) -> std::result::Result<(), getrandom::Error>;

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn rand_vec(rng: Rng<'_>, n: usize) -> Result<Vec<u8>> {
    let mut v = vec![0u8; n];
    rng(&mut v).map_err(Error::Random)?;
    Ok(v)
}

/// A random version-4 UUID, lowercase.
fn uuid(rng: Rng<'_>) -> Result<String> {
    let mut b = [0u8; 16];
    b.copy_from_slice(&rand_vec(rng, 16)?);
    Ok(crate::uuid::v4(b))
}

/// Build the metadata (`DATA_OFFSET` bytes: both copies and the keyslots area) for `volume_key` (32 or 64
/// bytes) with one keyslot opened by `passphrase`.
pub fn build(
    volume_key: &[u8],
    passphrase: &[u8],
    p: &FormatParams,
    rng: Rng<'_>,
) -> Result<Vec<u8>> {
    let key_size = volume_key.len();
    if key_size != 32 && key_size != 64 {
        return Err(Error::KeySize {
            field: "volume key".into(),
            value: key_size as u64,
        });
    }
    if p.sector_size != 512 && p.sector_size != 4096 {
        return Err(Error::SectorSize {
            field: "sector_size".into(),
            value: u64::from(p.sector_size),
        });
    }
    let material_len = key_size * STRIPES;
    let area_size = (material_len as u64).div_ceil(4096) * 4096;

    // Keyslot: derive the area key, AF-split the volume key, encrypt the split.
    let salt = rand_vec(rng, 32)?;
    let (kdf_json, kdf) = match p.kdf {
        NewKdf::Pbkdf2 { iterations } => (
            serde_json::to_value(RawPbkdf2 {
                kind: "pbkdf2".into(),
                hash: "sha256".into(),
                iterations: u64::from(iterations),
                salt: b64(&salt),
            }),
            super::header::Kdf::Pbkdf2 {
                hash: Hash::Sha256,
                iterations,
                salt: salt.clone(),
            },
        ),
        NewKdf::Argon2id {
            time,
            memory_kib,
            cpus,
        } => (
            serde_json::to_value(RawArgon2 {
                kind: "argon2id".into(),
                time: u64::from(time),
                memory: u64::from(memory_kib),
                cpus: u64::from(cpus),
                salt: b64(&salt),
            }),
            super::header::Kdf::Argon2 {
                variant: super::header::Argon2Variant::Argon2id,
                time,
                memory_kib,
                cpus,
                salt,
            },
        ),
    };
    let kdf_json = kdf_json.map_err(|e| Error::Json {
        field: "keyslots.0.kdf".into(),
        detail: e.to_string(),
    })?;
    let mut area_key = Zeroizing::new(vec![0u8; key_size]);
    crypto::derive(&kdf, passphrase, &mut area_key)
        .map_err(|cause| Error::Kdf { keyslot: 0, cause })?;
    let mut material = Zeroizing::new(rand_vec(rng, material_len)?);
    crypto::af_split(volume_key, STRIPES, Hash::Sha256, &mut material);
    let xts = Xts::new(&area_key).ok_or(Error::KeySize {
        field: "keyslots.0.area.key_size".into(),
        value: key_size as u64,
    })?;
    xts.encrypt(&mut material, 512, 0);

    // Digest of the volume key.
    let digest_salt = rand_vec(rng, 32)?;
    let mut digest = [0u8; 32];
    crypto::pbkdf2(
        Hash::Sha256,
        volume_key,
        &digest_salt,
        DIGEST_ITERATIONS,
        &mut digest,
    );

    let keyslot = RawKeyslot {
        kind: "luks2".into(),
        key_size: key_size as u64,
        af: RawAf {
            kind: "luks1".into(),
            stripes: STRIPES as u64,
            hash: "sha256".into(),
        },
        area: RawArea {
            kind: "raw".into(),
            offset: U64Str(AREA_OFFSET),
            size: U64Str(area_size),
            encryption: "aes-xts-plain64".into(),
            key_size: key_size as u64,
        },
        kdf: kdf_json,
        priority: None,
    };
    let segment = RawSegment {
        kind: "crypt".into(),
        offset: U64Str(DATA_OFFSET),
        size: "dynamic".into(),
        iv_tweak: U64Str(0),
        encryption: "aes-xts-plain64".into(),
        sector_size: u64::from(p.sector_size),
        integrity: None,
        flags: None,
    };
    let dg = RawDigest {
        kind: "pbkdf2".into(),
        keyslots: vec!["0".into()],
        segments: vec!["0".into()],
        hash: "sha256".into(),
        iterations: u64::from(DIGEST_ITERATIONS),
        salt: b64(&digest_salt),
        digest: b64(&digest),
    };
    let config = RawConfig {
        json_size: U64Str(HDR_SIZE - BINARY_HEADER_SIZE),
        keyslots_size: U64Str(KEYSLOTS_SIZE),
        flags: None,
        requirements: None,
    };
    let doc = Document {
        keyslots: BTreeMap::from([("0".to_string(), keyslot)]),
        tokens: BTreeMap::new(),
        segments: BTreeMap::from([("0".to_string(), segment)]),
        digests: BTreeMap::from([("0".to_string(), dg)]),
        config,
    };
    let json = serde_json::to_vec(&doc).map_err(|e| Error::Json {
        field: "json".into(),
        detail: e.to_string(),
    })?;

    let uuid = uuid(rng)?;
    let mut out = vec![0u8; DATA_OFFSET as usize];
    let hs = HDR_SIZE as usize;
    for (copy, range) in [(Copy::Primary, 0..hs), (Copy::Secondary, hs..2 * hs)] {
        let salt: [u8; 64] = rand_vec(rng, 64)?
            .try_into()
            .map_err(|_| Error::HdrSize(copy, 0))?;
        let h = NewBinaryHeader {
            hdr_size: HDR_SIZE,
            seqid: 1,
            uuid: &uuid,
            salt,
        };
        write_copy(&mut out[range], copy, &h, &json)?;
    }
    let a = AREA_OFFSET as usize;
    out[a..a + material_len].copy_from_slice(&material);
    Ok(out)
}
