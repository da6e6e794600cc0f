//! The LUKS2 header of one filesystem read, checked (allowlist, optional pin) and unlocked with the disk key:
//! from the blob behind its cache, or, for a verity-pinned image, through the dm-verity device, so that every
//! byte the unlock uses is checked against the pinned root hash.

use super::error::{Cause, VerityError};
use super::StepError;
use super::Steps;
use crate::blob::BlockSource;
use crate::luks2::{Header, HeaderRead, VolumeKey};
use crate::secret::SecretBytes;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Where the header is read from.
pub(super) enum Reader<'a> {
    /// The blob behind its cache (no verity pin).
    Blob(&'a dyn BlockSource),
    /// The dm-verity device over the blob: a read of a block that does not match the tree fails (EIO).
    Verified {
        /// The open device.
        file: &'a File,
        /// Its node, for messages.
        node: &'a Path,
        /// Its size in bytes.
        size: u64,
    },
}

impl Reader<'_> {
    fn size(&self) -> u64 {
        match self {
            Reader::Blob(src) => src.size(),
            Reader::Verified { size, .. } => *size,
        }
    }

    /// Up to `len` bytes at `offset` (fewer at the end of the device).
    fn read(&self, offset: u64, len: u64, what: &'static str) -> Result<Vec<u8>, Cause> {
        let len = len.min(self.size().saturating_sub(offset));
        let mut buf = vec![0u8; usize::try_from(len).map_err(|_| "header too large")?];
        match self {
            Reader::Blob(src) => src.read_at(offset, &mut buf)?,
            Reader::Verified { file, node, .. } => {
                file.read_exact_at(&mut buf, offset)
                    .map_err(|source| VerityError::Read {
                        what,
                        node: node.to_path_buf(),
                        source,
                    })?
            }
        }
        Ok(buf)
    }

    /// The step a failed read is reported under: through dm-verity, a failed read is verity's verdict.
    fn read_step(&self, step: &'static str) -> &'static str {
        match self {
            Reader::Blob(_) => step,
            Reader::Verified { .. } => "dm-verity",
        }
    }
}

/// The unlocked header: its parsed form, the volume key and where the data segment lies on the device.
pub(super) struct Unlocked {
    pub header: Header,
    pub vk: VolumeKey,
    pub offset: u64,
    pub len: u64,
}

/// Read, check and unlock the header from `r` with `key`; step "LUKS2 unlock" is done on success.
pub(super) fn unlock(
    s: &mut Steps,
    r: &Reader<'_>,
    header_sha256: Option<&[u8; 32]>,
    key: SecretBytes,
) -> Result<Unlocked, StepError> {
    let index = s.index;
    let header_step = "LUKS2 header";
    // The binary header says how large the metadata is; read both copies, then through the keyslots.
    let header =
        Header::read_pinned(|len| r.read(0, len, "LUKS2 header"), header_sha256).map_err(|e| {
            match e {
                HeaderRead::Read(e) => s.fail(r.read_step(header_step), e),
                HeaderRead::Header(e) => s.fail_fix(header_step, Some(super::HEADER_FIX), e),
            }
        })?;
    for w in &header.warnings {
        log::warn!("filesystem[{index}]: LUKS2 header: {w}");
    }
    // Only the tried keyslots' material is fetched (about 256 KB each), not the 16 MiB keyslots region.
    // `image check` makes the same call: the data segment must lie on the device, the unlock must fit the
    // work budget, the machine's memory and the deadline, and the key must open a keyslot.
    let mut read_error = None;
    let opened = header.open_device(
        r.size(),
        key.expose(),
        &crate::luks2::Limits::for_this_machine(),
        |offset, len| {
            r.read(offset, len, "keyslot area").map_err(|e| {
                read_error = Some(e);
                crate::luks2::Error::Truncated {
                    what: "keyslot area",
                    need: offset.saturating_add(len),
                    have: offset,
                }
            })
        },
    );
    let (vk, (offset, len)) = match (opened, read_error) {
        (Ok(opened), _) => opened,
        (Err(_), Some(e)) => return Err(s.fail(r.read_step("LUKS2 header: reading a keyslot"), e)),
        (Err(e @ crate::luks2::Error::NoKeyslotOpened { .. }), None) => {
            return Err(s.fail_fix("unlock", Some("the key does not open this image: check kid, and for RSA keys the salt and label (`encfs-init image check` explains)"), e))
        }
        (Err(e @ crate::luks2::Error::Deadline { .. }), None) => {
            return Err(s.fail("unlock", e))
        }
        (Err(e), None) => return Err(s.fail(header_step, e)),
    };
    drop(key);
    s.done("LUKS2 unlock");
    Ok(Unlocked {
        header,
        vk,
        offset,
        len,
    })
}
