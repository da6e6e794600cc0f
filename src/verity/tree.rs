//! dm-verity's hash tree in veritysetup's "normal" layout (hash type 1, sha256, 4096-byte data and hash
//! blocks), built over a file's own data in bounded memory and appended to it.
//!
//! The layout (checked byte for byte against `veritysetup format --hash-offset` in tests/verity_format.rs):
//! - the data: blocks `0 .. data_blocks` of the file;
//! - the superblock: 512 bytes at `hash_offset` (a multiple of 4096), the rest of its 4096-byte block zero;
//! - the tree from block `hash_offset / 4096 + 1` ([`Superblock::hash_start_block`]), its levels stored from
//!   the top level (one block) down to the level that hashes the data blocks. Level `i` (0 hashes the data)
//!   has `ceil(data_blocks / 128^(i+1))` blocks; there are as many levels as it takes to reach one block
//!   (none for a single data block);
//! - each hash is `sha256(salt || block)`, 128 of them packed per hash block, the last block of a level
//!   padded with zeros; the root hash is `sha256(salt || the top block)` (of the data block when there is no
//!   level).
//!
//! The kernel's dm-verity computes the same positions from `data_blocks` and `hash_start_block`.
#![forbid(unsafe_code)]

use super::{Superblock, BLOCK, SUPERBLOCK_LEN};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::os::unix::fs::FileExt;

/// A sha256 digest.
pub type Hash = [u8; 32];

const B: u64 = BLOCK as u64;
/// Hashes per hash block, as a power of two (128 = 4096 / 32).
const PER_BLOCK_BITS: u32 = 7;
/// Blocks read per call (1 MiB); their hashes fill two hash blocks.
const CHUNK_BLOCKS: u64 = 256;
/// Hash bytes gathered before a write (64 hash blocks).
const OUT_BYTES: usize = 64 * BLOCK as usize;

/// Building or reading a hash tree failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A read or write of the image failed.
    #[error("{what} at byte {offset}")]
    Io {
        /// What was read or written.
        what: &'static str,
        /// Where.
        offset: u64,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The superblock does not describe a tree this module builds.
    #[error("{0} data blocks do not make a dm-verity tree (4096-byte blocks, at least one)")]
    Geometry(u64),
}

/// One level of the tree: its first block (from the start of the file) and its size in blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Level {
    /// First block.
    pub first_block: u64,
    /// Blocks.
    pub blocks: u64,
}

/// Where the tree over `data_blocks` blocks lies when it starts at `hash_start_block`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Data blocks covered.
    pub data_blocks: u64,
    /// The levels, index 0 hashing the data; the last one is the top (one block). On disk the top comes
    /// first, at `hash_start_block`.
    pub levels: Vec<Level>,
    /// The block after the tree: the sealed file's size in blocks.
    pub end_block: u64,
}

impl Layout {
    /// The layout, or `None` for no data blocks or a tree that would not fit in 64-bit byte offsets.
    pub fn new(data_blocks: u64, hash_start_block: u64) -> Option<Layout> {
        if data_blocks == 0 || data_blocks > u64::MAX / B {
            return None;
        }
        let mut count = 0u32;
        while (data_blocks - 1) >> (PER_BLOCK_BITS * count) != 0 {
            count += 1;
        }
        // Sizes from the data up; positions from the top down (veritysetup's hash_levels()).
        let sizes: Vec<u64> = (1..=count)
            .map(|i| data_blocks.div_ceil(1u64 << (PER_BLOCK_BITS * i)))
            .collect();
        let mut levels = vec![
            Level {
                first_block: 0,
                blocks: 0
            };
            sizes.len()
        ];
        let mut at = hash_start_block;
        for (i, &blocks) in sizes.iter().enumerate().rev() {
            levels[i] = Level {
                first_block: at,
                blocks,
            };
            at = at.checked_add(blocks)?;
        }
        at.checked_mul(B)?;
        Some(Layout {
            data_blocks,
            levels,
            end_block: at,
        })
    }

    /// The tree's size in blocks (without the superblock's block).
    pub fn tree_blocks(&self) -> u64 {
        self.levels.iter().map(|l| l.blocks).sum()
    }

    /// The sealed file's size in bytes.
    pub fn end_bytes(&self) -> u64 {
        self.end_block * B
    }
}

/// The layout of the tree `sb` describes with its superblock at `hash_offset`.
pub fn layout(sb: &Superblock, hash_offset: u64) -> Result<Layout, Error> {
    Layout::new(sb.data_blocks, sb.hash_start_block(hash_offset))
        .ok_or(Error::Geometry(sb.data_blocks))
}

/// `sha256(salt || block)`, from a hasher that has already taken the salt.
fn salted(prefix: &Sha256, block: &[u8]) -> Hash {
    let mut h = prefix.clone();
    h.update(block);
    h.finalize().into()
}

/// Why a tree read back from an image does not check out (see [`check`]).
#[derive(Debug)]
pub enum Checked<E> {
    /// The superblock's data blocks make no tree.
    Geometry(u64),
    /// A block of the tree does not match its entry in the level above (or, for the top block, the root).
    Mismatch {
        /// The level (0: the hashes of the data blocks).
        level: u32,
        /// The block, in 4096-byte blocks from the start of the image.
        block: u64,
    },
    /// Reading the tree failed.
    Read(E),
}

/// Check every block of the tree `sb` describes (superblock at `hash_offset`) against `root`, reading the
/// tree through `read(offset, buf)`: from the top level down, each block's `sha256(salt || block)` must equal
/// its entry in the level above. Holds at most one level above the data's level in memory (1/128 of the
/// tree) and reads 1 MiB at a time.
pub fn check<E>(
    sb: &Superblock,
    hash_offset: u64,
    root: &Hash,
    mut read: impl FnMut(u64, &mut [u8]) -> Result<(), E>,
) -> Result<(), Checked<E>> {
    let layout = Layout::new(sb.data_blocks, sb.hash_start_block(hash_offset))
        .ok_or(Checked::Geometry(sb.data_blocks))?;
    let mut prefix = Sha256::new();
    prefix.update(&sb.salt);
    // The digests of the level above, in order; the top level's parent is the root.
    let mut parent: Vec<u8> = root.to_vec();
    for (level, l) in layout.levels.iter().enumerate().rev() {
        let keep = level > 0;
        let mut this = Vec::new();
        let mut j = 0u64;
        while j < l.blocks {
            let k = CHUNK_BLOCKS.min(l.blocks - j);
            let mut buf = vec![0u8; usize::try_from(k * B).unwrap_or(0)];
            read((l.first_block + j) * B, &mut buf).map_err(Checked::Read)?;
            for (i, b) in buf.chunks(BLOCK as usize).enumerate() {
                let index = j + i as u64;
                let want = usize::try_from(index)
                    .ok()
                    .and_then(|x| parent.get(x * 32..x * 32 + 32));
                if want != Some(&salted(&prefix, b)[..]) {
                    return Err(Checked::Mismatch {
                        level: level as u32,
                        block: l.first_block + index,
                    });
                }
            }
            if keep {
                this.extend_from_slice(&buf);
            }
            j += k;
        }
        parent = this;
    }
    Ok(())
}

fn read_at(file: &File, buf: &mut [u8], offset: u64, what: &'static str) -> Result<(), Error> {
    file.read_exact_at(buf, offset).map_err(|source| Error::Io {
        what,
        offset,
        source,
    })
}

fn write_at(file: &File, buf: &[u8], offset: u64, what: &'static str) -> Result<(), Error> {
    file.write_all_at(buf, offset).map_err(|source| Error::Io {
        what,
        offset,
        source,
    })
}

/// Hash `blocks` blocks of `src` from block `from` into hash blocks written to `dst` from block `to`;
/// `progress` gets the blocks hashed so far.
fn hash_level(
    prefix: &Sha256,
    (src, from, blocks): (&File, u64, u64),
    (dst, to): (&File, u64),
    what: &'static str,
    progress: &mut dyn FnMut(u64),
) -> Result<(), Error> {
    let mut buf = vec![0u8; (CHUNK_BLOCKS * B) as usize];
    let mut out: Vec<u8> = Vec::with_capacity(OUT_BYTES + BLOCK as usize);
    let mut at = to * B;
    let mut done = 0;
    while done < blocks {
        let n = (blocks - done).min(CHUNK_BLOCKS);
        let chunk = &mut buf[..(n * B) as usize];
        read_at(src, chunk, (from + done) * B, what)?;
        for block in chunk.chunks_exact(BLOCK as usize) {
            out.extend_from_slice(&salted(prefix, block));
        }
        done += n;
        progress(done);
        if out.len() >= OUT_BYTES || done == blocks {
            if done == blocks {
                out.resize(out.len().div_ceil(BLOCK as usize) * BLOCK as usize, 0);
            }
            let whole = out.len() / BLOCK as usize * BLOCK as usize;
            write_at(dst, &out[..whole], at, "hash tree (scratch file)")?;
            at += whole as u64;
            out.drain(..whole);
        }
    }
    Ok(())
}

/// Seal `file`: the tree over its first `sb.data_blocks` blocks, then `sb` at `hash_offset` (a multiple of
/// 4096, at or past the end of the file's data). The tree is built in `scratch` (an empty file, e.g. an
/// unlinked one beside the image), one level at a time, reading the level below from the files (memory
/// stays about 1.3 MiB whatever the size); only then is it copied after the superblock's block and the
/// superblock written, last. So an interrupted seal leaves the image as it was (but for zeros up to
/// `hash_offset` when its size is not a multiple of 4096), except while the tree is copied. Data blocks
/// past the file's end read as zeros. Returns the root hash; `progress` gets the data blocks hashed.
pub fn seal(
    file: &File,
    scratch: &File,
    sb: &Superblock,
    hash_offset: u64,
    progress: &mut dyn FnMut(u64),
) -> Result<Hash, Error> {
    if hash_offset % B != 0 || hash_offset < sb.data_bytes() {
        return Err(Error::Geometry(sb.data_blocks));
    }
    let layout = layout(sb, hash_offset)?;
    let size = file.metadata().map_err(|source| Error::Io {
        what: "the image's size",
        offset: 0,
        source,
    })?;
    if size.len() < hash_offset {
        file.set_len(hash_offset).map_err(|source| Error::Io {
            what: "padding the image to a whole block",
            offset: size.len(),
            source,
        })?;
    }
    let start = sb.hash_start_block(hash_offset);
    let prefix = Sha256::new_with_prefix(&sb.salt);
    let mut source = (file, 0, sb.data_blocks);
    for (i, level) in layout.levels.iter().enumerate() {
        let what = if i == 0 {
            "data"
        } else {
            "hash tree (scratch file)"
        };
        let mut quiet = |_: u64| ();
        let report: &mut dyn FnMut(u64) = if i == 0 { &mut *progress } else { &mut quiet };
        let to = level.first_block - start;
        hash_level(&prefix, source, (scratch, to), what, report)?;
        source = (scratch, to, level.blocks);
    }
    // The root: the top block's hash (scratch block 0), or the one data block's.
    let (src, what) = if layout.levels.is_empty() {
        (file, "data")
    } else {
        (scratch, "hash tree (scratch file)")
    };
    let mut buf = vec![0u8; (CHUNK_BLOCKS * B) as usize];
    read_at(src, &mut buf[..BLOCK as usize], 0, what)?;
    let root = salted(&prefix, &buf[..BLOCK as usize]);
    // Copy the tree after the superblock's block, then write the superblock.
    let tree = layout.tree_blocks();
    let mut done = 0;
    while done < tree {
        let n = (tree - done).min(CHUNK_BLOCKS);
        let chunk = &mut buf[..(n * B) as usize];
        read_at(scratch, chunk, done * B, "hash tree (scratch file)")?;
        write_at(file, chunk, (start + done) * B, "hash tree")?;
        done += n;
    }
    let mut block = vec![0u8; BLOCK as usize];
    block[..SUPERBLOCK_LEN].copy_from_slice(&sb.to_bytes());
    write_at(file, &block, hash_offset, "verity superblock")?;
    Ok(root)
}

/// The root hash of the tree on `file` (read, not verified: the hash of its top block, or of the one data
/// block when the tree has no level).
pub fn root_hash(file: &File, sb: &Superblock, hash_offset: u64) -> Result<Hash, Error> {
    let layout = layout(sb, hash_offset)?;
    let (at, what) = match layout.levels.last() {
        Some(top) => (top.first_block, "hash tree"),
        None => (0, "data"),
    };
    let mut block = vec![0u8; BLOCK as usize];
    read_at(file, &mut block, at * B, what)?;
    Ok(salted(&Sha256::new_with_prefix(&sb.salt), &block))
}

/// Where a file of `file_size` bytes would have its superblock if it ended with a tree of ours: the one
/// `hash_offset` whose data, superblock block and tree end exactly at `file_size`, if there is one.
pub fn sealed_offset(file_size: u64) -> Option<u64> {
    let end = |d: u64| Layout::new(d, d + 1).map(|l| l.end_bytes());
    // The end grows strictly with the data blocks: a binary search.
    let (mut lo, mut hi) = (1u64, file_size / B);
    while lo <= hi {
        let mid = lo + (hi - lo) / 2;
        match end(mid)?.cmp(&file_size) {
            std::cmp::Ordering::Equal => return Some(mid * B),
            std::cmp::Ordering::Less => lo = mid + 1,
            std::cmp::Ordering::Greater => hi = mid - 1,
        }
    }
    None
}

/// The superblock a file of `file_size` bytes carries at its end region, when it is sealed as [`seal`]
/// leaves it: `(hash_offset, the superblock's 512 bytes)` when they start with dm-verity's signature.
pub fn find_superblock(
    file: &File,
    file_size: u64,
) -> Result<Option<(u64, [u8; SUPERBLOCK_LEN])>, Error> {
    let Some(offset) = sealed_offset(file_size) else {
        return Ok(None);
    };
    let mut sb = [0u8; SUPERBLOCK_LEN];
    read_at(file, &mut sb, offset, "verity superblock")?;
    Ok(sb.starts_with(b"verity\0\0").then_some((offset, sb)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_stored_top_down_after_the_superblock_block() {
        // veritysetup format --hash-offset=$((259*4096)) on 259 blocks: top (1 block) at 260, then the
        // 3 blocks hashing the data at 261..263; the file ends at block 264.
        let l = Layout::new(259, 260).unwrap();
        assert_eq!(
            l.levels,
            vec![
                Level {
                    first_block: 261,
                    blocks: 3
                },
                Level {
                    first_block: 260,
                    blocks: 1
                }
            ]
        );
        assert_eq!((l.tree_blocks(), l.end_block), (4, 264));
        // One data block: no level, the root is the data block's hash.
        let one = Layout::new(1, 2).unwrap();
        assert_eq!((one.levels.len(), one.end_block), (0, 2));
        // 128 blocks: one level of one block; 129: two levels.
        assert_eq!(Layout::new(128, 0).unwrap().levels.len(), 1);
        assert_eq!(Layout::new(129, 0).unwrap().levels.len(), 2);
        // 10 GiB: 20480 + 160 + 2 + 1 blocks (80 MiB + 652 KiB, 0.79 %).
        let big = Layout::new(10 << 18, (10 << 18) + 1).unwrap();
        let sizes: Vec<u64> = big.levels.iter().map(|l| l.blocks).collect();
        assert_eq!(sizes, [20480, 160, 2, 1]);
        assert_eq!(Layout::new(0, 1), None);
        assert_eq!(Layout::new(u64::MAX / 4096 + 1, 0), None);
    }

    #[test]
    fn the_sealed_offset_is_found_from_the_file_size_alone() {
        for d in [1u64, 2, 127, 128, 129, 259, 4096, 16384, 16385, 10 << 18] {
            let end = Layout::new(d, d + 1).unwrap().end_bytes();
            assert_eq!(sealed_offset(end), Some(d * 4096), "{d} blocks");
            assert_ne!(sealed_offset(end + 4096), Some(d * 4096));
        }
        // 256 data blocks seal to 260 blocks, 257 to 262: no data size seals to 261.
        assert_eq!(sealed_offset(261 * 4096), None);
        assert_eq!(sealed_offset(0), None);
    }
}
