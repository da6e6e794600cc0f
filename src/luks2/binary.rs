//! The two LUKS2 binary headers: layout, checksum, and which copy wins.
//!
//! Each copy is a 4096-byte binary header followed by its JSON area; one copy fills `hdr_size` bytes (16 KiB
//! .. 4 MiB, a power of two). The primary is at offset 0 with magic `LUKS\xba\xbe`, the secondary at offset
//! `hdr_size` with magic `SKUL\xba\xbe`. All integers are big-endian:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 6 | magic |
//! | 6 | 2 | version (2) |
//! | 8 | 8 | hdr_size (binary header + JSON area) |
//! | 16 | 8 | seqid (incremented on every update) |
//! | 24 | 48 | label (NUL-terminated) |
//! | 72 | 32 | checksum_alg (`sha256`) |
//! | 104 | 64 | salt (unique per copy) |
//! | 168 | 40 | uuid (text) |
//! | 208 | 48 | subsystem |
//! | 256 | 8 | hdr_offset (where this copy is) |
//! | 264 | 184 | padding |
//! | 448 | 64 | checksum |
//! | 512 | 3584 | padding |
//!
//! The checksum is SHA-256 over the whole `hdr_size` bytes of the copy with the checksum field zeroed,
//! stored in the field's first 32 bytes. A copy is *valid* when magic, version, sizes, offset and checksum
//! are right and its JSON area holds NUL-terminated, NUL-padded JSON text. Of two valid copies the higher
//! seqid wins (the other is stale: an interrupted update); one bad copy is tolerated with a warning; equal
//! seqids with different contents, or two bad copies, are refused.

use super::error::{Copy, Error, Result};
use super::reader::{slice, Reader};
use sha2::{Digest, Sha256};

/// Size of one binary header.
pub const BINARY_HEADER_SIZE: u64 = 4096;
/// Primary magic.
pub const MAGIC_PRIMARY: [u8; 6] = *b"LUKS\xba\xbe";
/// Secondary magic.
pub const MAGIC_SECONDARY: [u8; 6] = *b"SKUL\xba\xbe";
/// Offset of the checksum field.
pub const CHECKSUM_OFFSET: usize = 448;
/// The valid `hdr_size` values.
pub const HDR_SIZES: [u64; 9] = [
    16 << 10,
    32 << 10,
    64 << 10,
    128 << 10,
    256 << 10,
    512 << 10,
    1 << 20,
    2 << 20,
    4 << 20,
];

/// The public fields of one valid binary header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinaryHeader {
    /// Which copy.
    pub copy: Copy,
    /// Size of the copy (binary header + JSON area).
    pub hdr_size: u64,
    /// Update counter.
    pub seqid: u64,
    /// Label (may be empty).
    pub label: String,
    /// Device UUID.
    pub uuid: String,
    /// Subsystem (may be empty).
    pub subsystem: String,
}

/// The chosen copy: its binary header, its JSON text, and warnings about the other copy.
#[derive(Debug)]
pub struct Chosen<'a> {
    /// The winning binary header.
    pub header: BinaryHeader,
    /// Its JSON text (without the NUL padding).
    pub json: &'a [u8],
    /// Warnings (a bad or stale other copy).
    pub warnings: Vec<String>,
}

/// SHA-256 over one copy (`area` = its `hdr_size` bytes) with the checksum field taken as zero.
pub fn checksum(area: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    let end = area.len().min(CHECKSUM_OFFSET);
    h.update(&area[..end]);
    if area.len() > CHECKSUM_OFFSET {
        h.update([0u8; 64]);
        h.update(area.get(CHECKSUM_OFFSET + 64..).unwrap_or(&[]));
    }
    h.finalize().into()
}

fn cstr(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// Parse and check the copy at `offset`; returns its header and JSON text.
fn parse_copy(buf: &[u8], offset: u64, copy: Copy) -> Result<(BinaryHeader, &[u8])> {
    let bin = slice(buf, offset, BINARY_HEADER_SIZE, "binary header")?;
    let mut r = Reader::new(bin);
    let magic: [u8; 6] = r.array("magic")?;
    let want = match copy {
        Copy::Primary => MAGIC_PRIMARY,
        Copy::Secondary => MAGIC_SECONDARY,
    };
    if magic != want {
        return Err(Error::BadMagic(copy));
    }
    let version = r.u16_be("version")?;
    if version != 2 {
        return Err(Error::Version(copy, version));
    }
    let hdr_size = r.u64_be("hdr_size")?;
    if !HDR_SIZES.contains(&hdr_size) {
        return Err(Error::HdrSize(copy, hdr_size));
    }
    let seqid = r.u64_be("seqid")?;
    let label = cstr(r.take(48, "label")?);
    let alg = cstr(r.take(32, "checksum_alg")?);
    let _salt = r.take(64, "salt")?;
    let uuid = cstr(r.take(40, "uuid")?);
    let subsystem = cstr(r.take(48, "subsystem")?);
    let hdr_offset = r.u64_be("hdr_offset")?;
    let _pad = r.take(184, "padding")?;
    let stored: [u8; 64] = r.array("checksum")?;
    if hdr_offset != offset {
        return Err(Error::HdrOffset {
            copy,
            expected: offset,
            found: hdr_offset,
        });
    }
    if alg != "sha256" {
        return Err(Error::ChecksumAlg(copy, alg));
    }
    let area = slice(buf, offset, hdr_size, "header area")?;
    if checksum(area)[..] != stored[..32] {
        return Err(Error::Checksum(copy));
    }
    let json_area = &area[BINARY_HEADER_SIZE as usize..];
    let Some(end) = json_area.iter().position(|&b| b == 0) else {
        return Err(Error::JsonUnterminated(copy));
    };
    if json_area[end..].iter().any(|&b| b != 0) {
        return Err(Error::JsonPadding(copy));
    }
    let header = BinaryHeader {
        copy,
        hdr_size,
        seqid,
        label,
        uuid,
        subsystem,
    };
    Ok((header, &json_area[..end]))
}

/// The secondary copy: at the primary's `hdr_size` when the primary is readable, otherwise at the first of
/// the valid offsets that carries the secondary magic (what cryptsetup does to recover a lost primary).
fn find_secondary(buf: &[u8], primary_size: Option<u64>) -> Result<(BinaryHeader, &[u8])> {
    if let Some(size) = primary_size {
        return parse_copy(buf, size, Copy::Secondary);
    }
    for &off in &HDR_SIZES {
        if slice(buf, off, 6, "magic").is_ok_and(|m| m == MAGIC_SECONDARY) {
            return parse_copy(buf, off, Copy::Secondary);
        }
    }
    Err(Error::BadMagic(Copy::Secondary))
}

/// Read both copies and choose one (see the module docs for the rule).
pub fn choose(buf: &[u8]) -> Result<Chosen<'_>> {
    let primary = parse_copy(buf, 0, Copy::Primary);
    let primary_size = match &primary {
        Ok((h, _)) => Some(h.hdr_size),
        // A primary with a bad checksum still says where the secondary is, if its size field is sane.
        Err(_) => slice(buf, 8, 8, "hdr_size")
            .ok()
            .and_then(|b| b.try_into().ok())
            .map(u64::from_be_bytes)
            .filter(|s| {
                HDR_SIZES.contains(s) && slice(buf, 0, 6, "magic").is_ok_and(|m| m == MAGIC_PRIMARY)
            }),
    };
    let secondary = find_secondary(buf, primary_size);
    match (primary, secondary) {
        (Ok((p, pj)), Ok((s, sj))) => {
            if p.hdr_size != s.hdr_size {
                return Err(Error::HdrSizeMismatch {
                    primary: p.hdr_size,
                    secondary: s.hdr_size,
                });
            }
            if p.seqid == s.seqid {
                if pj != sj || p.uuid != s.uuid || p.label != s.label || p.subsystem != s.subsystem
                {
                    return Err(Error::SeqidConflict(p.seqid));
                }
                return Ok(Chosen {
                    header: p,
                    json: pj,
                    warnings: Vec::new(),
                });
            }
            let (win, wj, lose) = if p.seqid > s.seqid {
                (p, pj, s)
            } else {
                (s, sj, p)
            };
            let warning = format!(
                "LUKS2: {} is stale (seqid {} < {}); using the {}",
                lose.copy, lose.seqid, win.seqid, win.copy
            );
            Ok(Chosen {
                header: win,
                json: wj,
                warnings: vec![warning],
            })
        }
        (Ok((p, pj)), Err(e)) => Ok(Chosen {
            header: p,
            json: pj,
            warnings: vec![format!("LUKS2: {e}; using the primary header")],
        }),
        (Err(e), Ok((s, sj))) => Ok(Chosen {
            header: s,
            json: sj,
            warnings: vec![format!("LUKS2: {e}; using the secondary header")],
        }),
        (Err(a), Err(b)) => Err(Error::BothCopiesBad {
            primary: Box::new(a),
            secondary: Box::new(b),
        }),
    }
}

/// Fields for writing one binary header.
#[derive(Debug, Clone)]
pub struct NewBinaryHeader<'a> {
    /// `hdr_size`.
    pub hdr_size: u64,
    /// `seqid`.
    pub seqid: u64,
    /// UUID text (at most 39 bytes).
    pub uuid: &'a str,
    /// Per-copy salt.
    pub salt: [u8; 64],
}

/// Write one copy (binary header + `json` + NUL padding, checksum set) into `out`, which must be exactly
/// `hdr_size` bytes. `json` must leave at least one NUL in the JSON area.
pub fn write_copy(out: &mut [u8], copy: Copy, h: &NewBinaryHeader<'_>, json: &[u8]) -> Result<()> {
    let size = usize::try_from(h.hdr_size).unwrap_or(usize::MAX);
    let bin = BINARY_HEADER_SIZE as usize;
    if out.len() != size || !HDR_SIZES.contains(&h.hdr_size) {
        return Err(Error::HdrSize(copy, out.len() as u64));
    }
    if json.len() >= size - bin || json.contains(&0) {
        return Err(Error::JsonUnterminated(copy));
    }
    if h.uuid.len() >= 40 {
        return Err(Error::Json {
            field: "uuid".into(),
            detail: "longer than 39 bytes".into(),
        });
    }
    out.fill(0);
    let (magic, offset) = match copy {
        Copy::Primary => (MAGIC_PRIMARY, 0),
        Copy::Secondary => (MAGIC_SECONDARY, h.hdr_size),
    };
    out[0..6].copy_from_slice(&magic);
    out[6..8].copy_from_slice(&2u16.to_be_bytes());
    out[8..16].copy_from_slice(&h.hdr_size.to_be_bytes());
    out[16..24].copy_from_slice(&h.seqid.to_be_bytes());
    out[72..78].copy_from_slice(b"sha256");
    out[104..168].copy_from_slice(&h.salt);
    out[168..168 + h.uuid.len()].copy_from_slice(h.uuid.as_bytes());
    out[256..264].copy_from_slice(&offset.to_be_bytes());
    out[bin..bin + json.len()].copy_from_slice(json);
    let sum = checksum(out);
    out[CHECKSUM_OFFSET..CHECKSUM_OFFSET + 32].copy_from_slice(&sum);
    Ok(())
}

/// Recompute and store the checksum of the copy at `offset` (for tests and the fuzz target, which mutate a
/// header and still want it to reach the JSON checks). Does nothing if the copy does not fit.
pub fn fix_checksum(buf: &mut [u8], offset: usize, hdr_size: usize) {
    if let Some(area) = offset
        .checked_add(hdr_size)
        .and_then(|end| buf.get_mut(offset..end))
    {
        if area.len() > CHECKSUM_OFFSET + 64 {
            let sum = checksum(area);
            area[CHECKSUM_OFFSET..CHECKSUM_OFFSET + 32].copy_from_slice(&sum);
        }
    }
}
