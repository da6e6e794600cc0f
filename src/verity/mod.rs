//! dm-verity's on-disk superblock (the layout `veritysetup format` writes, version 1, "normal" hashes): the
//! 512 bytes at the start of an image's hash area that say how the hash tree was built (hash algorithm, block
//! sizes, number of data blocks, salt). The product reads it to build a dm-verity table; `image create
//! --verity` and `image seal` write it.
//!
//! The superblock itself is not trusted: every field it gives ends up in the dm-verity table, and the root hash
//! pinned in the manifest commits to all of them (salt, algorithm, block sizes and the number of data blocks
//! shape the tree), so a changed field fails the verification of the first block read.
#![forbid(unsafe_code)]

pub mod tree;

/// The superblock's size in bytes (the rest of its hash block is zero).
pub const SUPERBLOCK_LEN: usize = 512;
/// The signature at offset 0.
const SIGNATURE: &[u8; 8] = b"verity\0\0";
/// The one block size we write and accept for data and hashes (the page size).
pub const BLOCK: u32 = 4096;
/// The largest salt the format holds.
pub const MAX_SALT: usize = 256;

/// Why a superblock was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Shorter than a superblock.
    #[error("verity superblock: {0} bytes, need 512")]
    Short(usize),
    /// No `verity` signature at the hash offset.
    #[error("no dm-verity superblock at the hash offset; fix: check verity_hash_offset (`encfs-init image seal` prints it)")]
    Signature,
    /// A field we do not accept (a different format version, hash type, algorithm or block size).
    #[error("verity superblock: {field} {value} is not supported (we accept {want})")]
    Unsupported {
        /// The field.
        field: &'static str,
        /// Its value.
        value: String,
        /// What we accept.
        want: &'static str,
    },
}

/// A parsed superblock: the parameters of the tree that follows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superblock {
    /// The hash device's UUID (informational).
    pub uuid: [u8; 16],
    /// The hash algorithm (`sha256`).
    pub algorithm: String,
    /// Data block size in bytes.
    pub data_block_size: u32,
    /// Hash block size in bytes.
    pub hash_block_size: u32,
    /// Number of data blocks covered.
    pub data_blocks: u64,
    /// The salt (hash type 1: hashed before each block).
    pub salt: Vec<u8>,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

impl Superblock {
    /// Parse and check the 512 bytes at the start of the hash area.
    pub fn parse(b: &[u8]) -> Result<Self, Error> {
        if b.len() < SUPERBLOCK_LEN {
            return Err(Error::Short(b.len()));
        }
        if &b[0..8] != SIGNATURE {
            return Err(Error::Signature);
        }
        let unsupported =
            |field, value: String, want| Err(Error::Unsupported { field, value, want });
        let version = u32_at(b, 8);
        if version != 1 {
            return unsupported("version", version.to_string(), "1");
        }
        let hash_type = u32_at(b, 12);
        if hash_type != 1 {
            return unsupported("hash type", hash_type.to_string(), "1 (normal)");
        }
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&b[16..32]);
        let alg = &b[32..64];
        let alg_len = alg.iter().position(|&c| c == 0).unwrap_or(alg.len());
        let algorithm = String::from_utf8_lossy(&alg[..alg_len]).into_owned();
        if algorithm != "sha256" {
            return unsupported("algorithm", format!("{algorithm:?}"), "sha256");
        }
        let data_block_size = u32_at(b, 64);
        let hash_block_size = u32_at(b, 68);
        for (field, v) in [
            ("data block size", data_block_size),
            ("hash block size", hash_block_size),
        ] {
            if v != BLOCK {
                return unsupported(field, v.to_string(), "4096");
            }
        }
        let mut db = [0u8; 8];
        db.copy_from_slice(&b[72..80]);
        let data_blocks = u64::from_le_bytes(db);
        if data_blocks == 0 {
            return unsupported("data blocks", "0".into(), "at least 1");
        }
        let salt_size = usize::from(u16::from_le_bytes([b[80], b[81]]));
        if salt_size > MAX_SALT {
            return unsupported("salt size", salt_size.to_string(), "at most 256");
        }
        Ok(Superblock {
            uuid,
            algorithm,
            data_block_size,
            hash_block_size,
            data_blocks,
            salt: b[88..88 + salt_size].to_vec(),
        })
    }

    /// The 512-byte superblock (`veritysetup format`'s layout).
    pub fn to_bytes(&self) -> [u8; SUPERBLOCK_LEN] {
        let mut b = [0u8; SUPERBLOCK_LEN];
        b[0..8].copy_from_slice(SIGNATURE);
        b[8..12].copy_from_slice(&1u32.to_le_bytes());
        b[12..16].copy_from_slice(&1u32.to_le_bytes());
        b[16..32].copy_from_slice(&self.uuid);
        let alg = self.algorithm.as_bytes();
        let n = alg.len().min(31);
        b[32..32 + n].copy_from_slice(&alg[..n]);
        b[64..68].copy_from_slice(&self.data_block_size.to_le_bytes());
        b[68..72].copy_from_slice(&self.hash_block_size.to_le_bytes());
        b[72..80].copy_from_slice(&self.data_blocks.to_le_bytes());
        let salt = &self.salt[..self.salt.len().min(MAX_SALT)];
        b[80..82].copy_from_slice(&(salt.len() as u16).to_le_bytes());
        b[88..88 + salt.len()].copy_from_slice(salt);
        b
    }

    /// The data area's size in bytes (what the dm-verity device exposes).
    pub fn data_bytes(&self) -> u64 {
        self.data_blocks * u64::from(self.data_block_size)
    }

    /// The hash tree's first block, in hash blocks from the start of the image, when the superblock is at
    /// byte `hash_offset`: the tree follows the superblock's block (dm-verity's `hash_start_block`).
    pub fn hash_start_block(&self, hash_offset: u64) -> u64 {
        hash_offset / u64::from(self.hash_block_size) + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Superblock {
        Superblock {
            uuid: [7; 16],
            algorithm: "sha256".into(),
            data_block_size: BLOCK,
            hash_block_size: BLOCK,
            data_blocks: 8192,
            salt: vec![0xab; 32],
        }
    }

    #[test]
    fn a_superblock_round_trips_in_512_little_endian_bytes() {
        let b = sample().to_bytes();
        assert_eq!(&b[0..8], b"verity\0\0");
        assert_eq!(&b[72..80], &8192u64.to_le_bytes());
        assert_eq!(Superblock::parse(&b), Ok(sample()));
        assert_eq!(sample().data_bytes(), 8192 * 4096);
        assert_eq!(sample().hash_start_block(32 << 20), (32 << 20) / 4096 + 1);
    }

    #[test]
    fn a_foreign_or_unsupported_superblock_is_refused() {
        let mut b = sample().to_bytes();
        b[0] = b'V';
        assert_eq!(Superblock::parse(&b), Err(Error::Signature));
        let mut b = sample().to_bytes();
        b[64..68].copy_from_slice(&512u32.to_le_bytes());
        assert!(matches!(
            Superblock::parse(&b),
            Err(Error::Unsupported {
                field: "data block size",
                ..
            })
        ));
        let mut b = sample().to_bytes();
        b[32..38].copy_from_slice(b"sha1\0\0");
        assert!(matches!(
            Superblock::parse(&b),
            Err(Error::Unsupported {
                field: "algorithm",
                ..
            })
        ));
        let mut b = sample().to_bytes();
        b[80..82].copy_from_slice(&300u16.to_le_bytes());
        assert!(matches!(
            Superblock::parse(&b),
            Err(Error::Unsupported {
                field: "salt size",
                ..
            })
        ));
        assert_eq!(Superblock::parse(&b[..100]), Err(Error::Short(100)));
    }
}
