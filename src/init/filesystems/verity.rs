//! dm-verity under dm-crypt, for a filesystem whose manifest pins `verity_root_hash`: the superblock is read
//! from the blob at `verity_hash_offset`, and the whole blob's block device is mapped through dm-verity
//! (`remote-verity-<i>`), read-only. The header and the data are then read through that device only.
//!
//! Before the mapping, the whole hash tree is checked against the pinned root ([`checked_superblock`]): the kernel
//! checks a tree block only when it reads a data block under it, so without this a changed tree block far
//! from the header would surface as EIO later instead of failing the boot.

use super::error::VerityError;
use super::{StepError, Steps};
use crate::blob::BlockSource;
use crate::dm::{VerityDevice, VerityParams};
use crate::manifest::VerityPin;
use crate::verity::{Superblock, SUPERBLOCK_LEN};
use std::path::Path;

/// The boot step of everything verity does before the header is read.
pub(super) const STEP: &str = "dm-verity";

/// Map `device` (the transport's block device over the blob `src`) through dm-verity as `pin` says.
pub(super) fn map(
    s: &mut Steps,
    pin: &VerityPin,
    src: &dyn BlockSource,
    device: &Path,
) -> Result<VerityDevice, StepError> {
    let offset = pin.hash_offset;
    let superblock =
        checked_superblock(src, offset, &pin.root_hash).map_err(|e| s.fail(STEP, e))?;
    let name = format!("remote-verity-{}{}", s.index, s.suffix);
    let uuid = format!(
        "CRYPT-VERITY-{}-{name}",
        crate::hex::encode(&superblock.uuid)
    );
    let params = VerityParams {
        device: device.to_path_buf(),
        superblock,
        hash_offset: offset,
        root_hash: pin.root_hash,
    };
    let dev = VerityDevice::open(&name, Some(&uuid), &params).map_err(|e| s.fail(STEP, e))?;
    s.done(STEP);
    Ok(dev)
}

/// What a pinned blob must pass before it is mapped (the boot; `doctor` and the benchmark ask the same): the
/// superblock at `offset` of `src`, covering exactly the data before it, and every block of the hash tree
/// against the pinned `root`, so that a changed byte anywhere in the tree fails here (the kernel would check a
/// tree block only when a data block under it is read). The tree is read from the blob
/// ([`crate::verity::tree::check`]): one read of about 1/128 of the image.
pub fn checked_superblock(
    src: &dyn BlockSource,
    offset: u64,
    root: &[u8; 32],
) -> Result<Superblock, VerityError> {
    use crate::verity::tree::{check, Checked};
    if src.size() < offset.saturating_add(SUPERBLOCK_LEN as u64) {
        return Err(VerityError::Short {
            size: src.size(),
            offset,
        });
    }
    let mut raw = [0u8; SUPERBLOCK_LEN];
    src.read_at(offset, &mut raw)
        .map_err(|e| VerityError::SuperblockRead(Box::new(e)))?;
    let superblock = Superblock::parse(&raw).map_err(VerityError::Superblock)?;
    if superblock.data_bytes() != offset {
        return Err(VerityError::Extent {
            covered: superblock.data_bytes(),
            offset,
        });
    }
    check(&superblock, offset, root, |at, buf| src.read_at(at, buf)).map_err(|e| match e {
        Checked::Mismatch { level, block } => VerityError::Tree { level, block },
        Checked::Read(e) => VerityError::TreeRead(Box::new(e)),
        Checked::Geometry(n) => VerityError::Geometry(n),
    })?;
    Ok(superblock)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// An image of `blocks` data blocks sealed by Debian's veritysetup (the oracle), the tree after the data
    /// in the same file; its superblock, hash offset and root. A missing veritysetup fails the test (install
    /// cryptsetup-bin), never skips it.
    fn sealed(name: &str, blocks: u64) -> (std::path::PathBuf, Superblock, u64, [u8; 32]) {
        let path = std::env::temp_dir().join(format!("encfs-verity-{name}-{}", std::process::id()));
        let data: Vec<u8> = (0..blocks * 4096).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&path, data).unwrap();
        let offset = blocks * 4096;
        let out = Command::new("veritysetup")
            .arg("format")
            .arg(format!("--data-blocks={blocks}"))
            .arg(format!("--hash-offset={offset}"))
            .args([&path, &path])
            .output()
            .expect("veritysetup (install cryptsetup-bin)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let root = text
            .lines()
            .find_map(|l| l.strip_prefix("Root hash:"))
            .map(str::trim)
            .and_then(crate::hex::decode)
            .unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let sb = Superblock::parse(&bytes[offset as usize..]).unwrap();
        (path, sb, offset, root.try_into().unwrap())
    }

    fn flip(path: &std::path::Path, at: u64) {
        let mut b = std::fs::read(path).unwrap();
        b[at as usize] ^= 1;
        std::fs::write(path, b).unwrap();
    }

    #[test]
    fn veritysetups_tree_is_accepted_and_a_changed_byte_anywhere_in_it_is_named() {
        // 300 blocks: two levels, the lower one of three blocks (the last one partly used).
        let (path, sb, offset, root) = sealed("tree", 300);
        let src = crate::blob::FileSource::open(&path, false).unwrap();
        assert_eq!(checked_superblock(&src, offset, &root).unwrap(), sb);
        // The superblock is looked for where the pin says, and must cover exactly the data before it.
        assert!(matches!(
            checked_superblock(&src, offset - 4096, &root),
            Err(VerityError::Superblock(_))
        ));
        assert!(matches!(
            checked_superblock(&src, 305 * 4096, &root),
            Err(VerityError::Short { .. })
        ));
        let mut other = root;
        other[0] ^= 1;
        assert!(matches!(
            checked_superblock(&src, offset, &other),
            Err(VerityError::Tree {
                level: 1,
                block: 301
            })
        ));
        drop(src);
        // The tree: superblock at block 300, top level at 301, level 0 at 302..=304. A byte in the unused
        // tail of the last block counts too.
        let size = std::fs::metadata(&path).unwrap().len();
        assert_eq!(size, 305 * 4096);
        flip(&path, 304 * 4096 + 4000);
        let src = crate::blob::FileSource::open(&path, false).unwrap();
        let e = checked_superblock(&src, offset, &root).unwrap_err();
        assert!(
            matches!(
                e,
                VerityError::Tree {
                    level: 0,
                    block: 304
                }
            ),
            "{e}"
        );
        std::fs::remove_file(&path).unwrap();
    }
}
