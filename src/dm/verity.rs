//! dm-verity through device-mapper ioctls: a read-only mapping whose every block read is checked against a
//! hash tree, whose root hash the manifest pins (`verity_root_hash`). The table is built from the verity
//! superblock ([`crate::verity::Superblock`]) read from the image at `verity_hash_offset`; the superblock is
//! not trusted, as the root hash commits to every parameter it gives.
//!
//! The kernel contract (Documentation/admin-guide/device-mapper/verity.rst): the parameters are
//! `<version> <data_dev> <hash_dev> <data_block_size> <hash_block_size> <num_data_blocks> <hash_start_block>
//! <algorithm> <root_digest> <salt>` (`-` for an empty salt); no optional arguments, so a corrupted block
//! reads as EIO (the default) and the status line's first word turns from `V` to `C`.
#![forbid(unsafe_code)]

use super::mapping::step;
use super::{Error, Ioctl, Mapping};
use crate::verity::Superblock;
use devicemapper::{DevId, DmFlags, DmName, DmOptions, DM};
use std::path::PathBuf;

/// What a verity mapping needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerityParams {
    /// The device holding data and tree (the transport's `/dev/nbdN` or `/dev/loopN`).
    pub device: PathBuf,
    /// The tree's parameters (from the superblock at `hash_offset`).
    pub superblock: Superblock,
    /// Byte offset of the superblock on `device`.
    pub hash_offset: u64,
    /// The pinned root hash.
    pub root_hash: [u8; 32],
}

impl VerityParams {
    /// The target's parameter string.
    pub fn table(&self) -> String {
        let sb = &self.superblock;
        let dev = self.device.display();
        let salt = if sb.salt.is_empty() {
            "-".to_string()
        } else {
            crate::hex::encode(&sb.salt)
        };
        format!(
            "1 {dev} {dev} {} {} {} {} {} {} {salt}",
            sb.data_block_size,
            sb.hash_block_size,
            sb.data_blocks,
            sb.hash_start_block(self.hash_offset),
            sb.algorithm,
            crate::hex::encode(&self.root_hash),
        )
    }

    /// The mapping's length in 512-byte sectors: the verified data.
    pub fn size_sectors(&self) -> u64 {
        self.superblock.data_bytes() / 512
    }
}

/// dm-verity's verdict so far, the first word of its status line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// `V`: every block read so far matched the tree.
    Verified,
    /// `C`: at least one block did not (it read as EIO).
    Corrupted,
}

impl Status {
    /// From the target's status text (`V`, `C`, and on newer kernels a second word for FEC).
    pub fn parse(text: &str) -> Option<Status> {
        match text.split_whitespace().next()? {
            "V" => Some(Status::Verified),
            "C" => Some(Status::Corrupted),
            _ => None,
        }
    }
}

/// An active verity mapping, read-only: a [`Mapping`] (its node and name), removed by
/// [`VerityDevice::remove`] or when dropped.
#[derive(Debug)]
pub struct VerityDevice(Mapping);

impl std::ops::Deref for VerityDevice {
    type Target = Mapping;
    fn deref(&self) -> &Mapping {
        &self.0
    }
}

impl VerityDevice {
    /// Create `name` as a verity mapping as `p` says. `uuid`, when given, becomes the dm uuid.
    pub fn open(name: &str, uuid: Option<&str>, p: &VerityParams) -> Result<Self, Error> {
        let (dm, mut dev) = Mapping::create(name, uuid, DmFlags::DM_READONLY)?;
        let targets = [(0, p.size_sectors(), "verity".to_string(), p.table())];
        dm.table_load(
            &dev.id()?,
            &targets,
            DmOptions::default().set_flags(DmFlags::DM_READONLY),
        )
        .map_err(step(super::LOAD_VERITY, name))?;
        dev.resume(&dm)?;
        log::info!(
            "dm {name}: {} over {} (verity, {} data blocks, root {}, read-only)",
            dev.node().display(),
            p.device.display(),
            p.superblock.data_blocks,
            crate::hex::encode(&p.root_hash)
        );
        Ok(VerityDevice(dev))
    }

    /// Remove the mapping.
    pub fn remove(self) -> Result<(), Error> {
        self.0.remove()
    }

    /// Remove the mapping, at its last close when it is still `held` (see [`Mapping::remove_held`]).
    pub fn remove_held(self, held: bool) -> Result<(), Error> {
        self.0.remove_held(held)
    }
}

/// dm-verity's status of mapping `name` (`dmsetup status`: `V` or `C`).
pub fn status(name: &str) -> Result<Status, Error> {
    let dm = DM::new().map_err(Error::Control)?;
    let dm_name = DmName::new(name).map_err(|_| Error::Name(name.to_string()))?;
    let (_, targets) = dm
        .table_status(&DevId::Name(dm_name), DmOptions::default())
        .map_err(|e| Error::Step {
            step: "status of",
            name: name.to_string(),
            source: Ioctl(e),
        })?;
    targets
        .iter()
        .find(|t| t.2 == "verity")
        .and_then(|t| Status::parse(&t.3))
        .ok_or_else(|| Error::NotVerity(name.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(salt: Vec<u8>) -> VerityParams {
        VerityParams {
            device: "/dev/nbd0".into(),
            superblock: Superblock {
                uuid: [0; 16],
                algorithm: "sha256".into(),
                data_block_size: 4096,
                hash_block_size: 4096,
                data_blocks: 12288,
                salt,
            },
            hash_offset: 12288 * 4096,
            root_hash: [0xab; 32],
        }
    }

    #[test]
    fn the_table_names_one_device_twice_and_the_tree_after_the_superblock() {
        let p = params(vec![0x01, 0xfe]);
        assert_eq!(
            p.table(),
            format!(
                "1 /dev/nbd0 /dev/nbd0 4096 4096 12288 12289 sha256 {} 01fe",
                "ab".repeat(32)
            )
        );
        assert_eq!(p.size_sectors(), 12288 * 8);
        assert!(
            params(Vec::new()).table().ends_with(" -"),
            "an empty salt is '-'"
        );
    }

    #[test]
    fn the_status_word_says_verified_or_corrupted() {
        assert_eq!(Status::parse("V"), Some(Status::Verified));
        assert_eq!(Status::parse("C"), Some(Status::Corrupted));
        assert_eq!(Status::parse("C -"), Some(Status::Corrupted));
        assert_eq!(Status::parse("V 0"), Some(Status::Verified));
        assert_eq!(Status::parse(""), None);
        assert_eq!(Status::parse("X"), None);
    }
}
