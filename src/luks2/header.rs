//! The validated header's types: the only form in which the rest of the program sees a LUKS2 header, and
//! what can be asked of one (data range, keyslot order, header-area hash). Only [`super::validate`] builds
//! one ([`Header::parse`] lives there), so these types depend on nothing above them.

use super::binary::BinaryHeader;
use super::error::{Error, Result};
use sha2::{Digest as _, Sha256};
use std::fmt;

/// A hash allowed for PBKDF2, the AF diffuser and the digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    /// SHA-1 (only as HMAC/PBKDF2 PRF and AF diffuser, where it is still sound; cryptsetup < 1.7 default).
    Sha1,
    /// SHA-256 (cryptsetup's default).
    Sha256,
    /// SHA-512.
    Sha512,
}

impl Hash {
    /// From the header's name.
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "sha1" => Some(Hash::Sha1),
            "sha256" => Some(Hash::Sha256),
            "sha512" => Some(Hash::Sha512),
            _ => None,
        }
    }

    /// The header's name.
    pub fn name(self) -> &'static str {
        match self {
            Hash::Sha1 => "sha1",
            Hash::Sha256 => "sha256",
            Hash::Sha512 => "sha512",
        }
    }

    /// Output length, bytes.
    pub fn output_len(self) -> usize {
        match self {
            Hash::Sha1 => 20,
            Hash::Sha256 => 32,
            Hash::Sha512 => 64,
        }
    }
}

/// Argon2 variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Argon2Variant {
    /// `argon2i`.
    Argon2i,
    /// `argon2id` (cryptsetup's LUKS2 default).
    Argon2id,
}

/// A keyslot's key derivation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kdf {
    /// PBKDF2-HMAC.
    Pbkdf2 {
        /// PRF hash.
        hash: Hash,
        /// Iterations.
        iterations: u32,
        /// Salt.
        salt: Vec<u8>,
    },
    /// Argon2 (version 0x13).
    Argon2 {
        /// Variant.
        variant: Argon2Variant,
        /// Passes.
        time: u32,
        /// Memory, KiB.
        memory_kib: u32,
        /// Lanes.
        cpus: u32,
        /// Salt.
        salt: Vec<u8>,
    },
}

impl fmt::Display for Kdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kdf::Pbkdf2 {
                hash, iterations, ..
            } => {
                write!(f, "pbkdf2 ({}, {iterations} iterations)", hash.name())
            }
            Kdf::Argon2 {
                variant,
                time,
                memory_kib,
                cpus,
                ..
            } => {
                let name = match variant {
                    Argon2Variant::Argon2i => "argon2i",
                    Argon2Variant::Argon2id => "argon2id",
                };
                write!(
                    f,
                    "{name} (time {time}, memory {memory_kib} KiB, {cpus} threads)"
                )
            }
        }
    }
}

/// Keyslot priority: which slots are tried first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    /// 0: never tried unless named.
    Ignore,
    /// 1: the default.
    Normal,
    /// 2: tried before normal slots.
    High,
}

/// A validated keyslot.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Keyslot {
    /// Keyslot id (0..32).
    pub id: u32,
    /// Priority.
    pub priority: Priority,
    /// Volume key size, bytes.
    pub key_size: usize,
    /// KDF.
    pub kdf: Kdf,
    /// AF stripes (4000).
    pub stripes: u32,
    /// AF diffuser hash.
    pub af_hash: Hash,
    /// Area offset from the device start, bytes.
    pub area_offset: u64,
    /// Area size, bytes.
    pub area_size: u64,
    /// Area cipher (allowlisted).
    pub area_cipher: String,
    /// Area key size, bytes.
    pub area_key_size: usize,
    /// Whether the digest covers this keyslot (an unbound slot is never tried).
    pub bound: bool,
}

/// The data segment's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentSize {
    /// Up to the end of the device.
    Dynamic,
    /// Exactly this many bytes.
    Fixed(u64),
}

/// What dm-crypt needs about the data segment.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Segment {
    /// dm-crypt cipher string (allowlisted), e.g. `aes-xts-plain64`.
    pub cipher: String,
    /// Volume key size, bytes.
    pub key_size: usize,
    /// Encryption sector size (512 or 4096).
    pub sector_size: u32,
    /// Offset of the data from the device start, bytes.
    pub offset: u64,
    /// Size of the data.
    pub size: SegmentSize,
    /// dm-crypt `iv_offset`, in 512-byte sectors.
    pub iv_tweak: u64,
}

/// The volume key digest.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VkDigest {
    /// PRF hash.
    pub hash: Hash,
    /// Iterations.
    pub iterations: u32,
    /// Salt.
    pub salt: Vec<u8>,
    /// Expected PBKDF2 output.
    pub digest: Vec<u8>,
}

/// A parsed, validated LUKS2 header.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Header {
    /// The winning binary header (uuid, label, seqid, hdr_size, which copy).
    pub binary: BinaryHeader,
    /// Warnings (a bad or stale copy, unbound keyslots).
    pub warnings: Vec<String>,
    /// Size of the keyslots area after the two copies.
    pub keyslots_size: u64,
    /// Persistent activation flags (`allow-discards`, ...).
    pub config_flags: Vec<String>,
    /// The one data segment.
    pub segment: Segment,
    /// Keyslots ordered by id.
    pub keyslots: Vec<Keyslot>,
    /// The volume key digest.
    pub digest: VkDigest,
    /// SHA-256 of the header area (`[0, 2 * hdr_size)`): what the manifest's `header_sha256` pins.
    pub header_sha256: [u8; 32],
}

/// How many bytes to read from the start of a device for both copies of the LUKS2 header, given its first
/// 4096 bytes: twice `hdr_size` (the big-endian u64 at offset 8 of the primary binary header), within
/// LUKS2's bounds (16 KiB to 4 MiB per copy). Only a read size: [`Header::parse`] checks the field itself,
/// and both copies.
pub fn both_copies_len(first: &[u8]) -> u64 {
    let hdr_size = first
        .get(8..16)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map_or(16 << 10, u64::from_be_bytes)
        .clamp(16 << 10, 4 << 20);
    hdr_size * 2
}

/// Why [`Header::read_pinned`] failed: the read of the device, or the header it read.
#[derive(Debug)]
pub enum HeaderRead<E> {
    /// Reading the first bytes of the device failed.
    Read(E),
    /// The bytes read are not an acceptable header (or not the pinned one).
    Header(Error),
}

/// SHA-256 of `[0, 2 * hdr_size)` of `buf`, or `None` if `buf` is shorter.
pub fn area_sha256(buf: &[u8], hdr_size: u64) -> Option<[u8; 32]> {
    let end = usize::try_from(hdr_size.checked_mul(2)?).ok()?;
    Some(Sha256::digest(buf.get(..end)?).into())
}

impl Header {
    /// The header at the start of a device, through `read(len)` (its first `len` bytes): the first 4096
    /// bytes, then both copies as the primary binary header's `hdr_size` says ([`both_copies_len`]), parsed
    /// and checked against `pin` ([`Header::parse_pinned`]). The boot's unlock and doctor read it this way.
    pub fn read_pinned<E>(
        mut read: impl FnMut(u64) -> std::result::Result<Vec<u8>, E>,
        pin: Option<&[u8; 32]>,
    ) -> std::result::Result<Header, HeaderRead<E>> {
        let first = read(4096).map_err(HeaderRead::Read)?;
        let head = read(both_copies_len(&first)).map_err(HeaderRead::Read)?;
        Header::parse_pinned(&head, pin).map_err(HeaderRead::Header)
    }

    /// End of the metadata (both copies and the keyslots area), bytes: what [`Header::unlock`] needs.
    pub fn metadata_end(&self) -> u64 {
        self.binary.hdr_size * 2 + self.keyslots_size
    }

    /// The data area on a device of `device_size` bytes: `(offset, length)` in bytes. Refuses a segment
    /// that starts or ends past the device, or whose length is not a whole number of sectors.
    pub fn data_range(&self, device_size: u64) -> Result<(u64, u64)> {
        let s = &self.segment;
        if s.offset >= device_size {
            return Err(Error::Offset {
                field: "segments.0.offset".into(),
                detail: format!(
                    "{} is past the end of the {device_size}-byte device",
                    s.offset
                ),
            });
        }
        let len = match s.size {
            SegmentSize::Dynamic => device_size - s.offset,
            SegmentSize::Fixed(n) if n <= device_size - s.offset => n,
            SegmentSize::Fixed(n) => {
                return Err(Error::Offset {
                    field: "segments.0.size".into(),
                    detail: format!(
                        "{n} bytes at {} end past the {device_size}-byte device",
                        s.offset
                    ),
                })
            }
        };
        if len % u64::from(s.sector_size) != 0 {
            return Err(Error::Offset {
                field: "segments.0.size".into(),
                detail: format!(
                    "data length {len} is not a multiple of the {}-byte sector",
                    s.sector_size
                ),
            });
        }
        Ok((s.offset, len))
    }

    /// Keyslots in the order they are tried: bound, not `ignore`, high priority first, then by id.
    pub fn try_order(&self) -> Vec<&Keyslot> {
        let mut v: Vec<&Keyslot> = self
            .keyslots
            .iter()
            .filter(|k| k.bound && k.priority != Priority::Ignore)
            .collect();
        v.sort_by_key(|k| (std::cmp::Reverse(k.priority), k.id));
        v
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn both_copies_len_is_twice_hdr_size_within_luks2s_bounds() {
        let with = |hdr_size: u64| {
            let mut first = vec![0u8; 4096];
            first[8..16].copy_from_slice(&hdr_size.to_be_bytes());
            super::both_copies_len(&first)
        };
        assert_eq!(with(16 << 10), 32 << 10);
        assert_eq!(with(64 << 10), 128 << 10);
        assert_eq!(with(1), 32 << 10);
        assert_eq!(with(u64::MAX), 8 << 20);
        assert_eq!(super::both_copies_len(&[0u8; 10]), 32 << 10);
    }

    #[test]
    fn read_pinned_reads_the_first_page_then_both_copies_and_checks_the_pin() {
        use super::{Header, HeaderRead};
        use crate::luks2::format::{build, FormatParams, NewKdf};
        let params = FormatParams {
            kdf: NewKdf::Pbkdf2 { iterations: 1000 },
            sector_size: 512,
        };
        let mut n = 0u8;
        let mut rng = |b: &mut [u8]| {
            b.iter_mut().for_each(|x| {
                n = n.wrapping_add(1);
                *x = n;
            });
            Ok(())
        };
        let meta = build(&[7u8; 64], b"pass", &params, &mut rng).unwrap();
        let mut asked = Vec::new();
        let h = Header::read_pinned(
            |len| {
                asked.push(len);
                Ok::<_, ()>(meta[..len as usize].to_vec())
            },
            None,
        )
        .unwrap();
        let both = 2 * h.binary.hdr_size;
        assert_eq!(asked, [4096, both]);
        // The pin is checked: its own digest passes, another is refused as a header problem.
        let read = |len: u64| Ok::<_, ()>(meta[..len as usize].to_vec());
        assert!(Header::read_pinned(read, Some(&h.header_sha256)).is_ok());
        assert!(matches!(
            Header::read_pinned(read, Some(&[0u8; 32])),
            Err(HeaderRead::Header(_))
        ));
        // A failed read is the reader's error, whichever read it was.
        let mut calls = 0;
        let second_fails = Header::read_pinned(
            |len| {
                calls += 1;
                if calls == 2 {
                    Err("gone")
                } else {
                    Ok(meta[..len as usize].to_vec())
                }
            },
            None,
        );
        assert!(matches!(second_fails, Err(HeaderRead::Read("gone"))));
    }
}
