//! LUKS2: read and check a header, open a keyslot, write a new header.
//!
//! The contract is cryptsetup's *LUKS2 On-Disk Format Specification* (`docs/on-disk-format-luks2.pdf` in
//! the cryptsetup repository). A LUKS2 device starts with two copies of the metadata, each a 4096-byte
//! binary header followed by a JSON area ([`binary`] has the layout); after both copies comes the keyslots
//! area (`config.keyslots_size` bytes) holding each keyslot's AF-split, encrypted copy of the volume key;
//! the encrypted data segment follows (cryptsetup's default layout: 16 KiB copies, data at 16 MiB).
//!
//! Opening a keyslot: passphrase → KDF (PBKDF2 or Argon2) → area key; the keyslot area is decrypted with
//! aes-xts-plain64 in 512-byte sectors, AF-merged into a candidate volume key, and accepted only if its
//! PBKDF2 digest matches the header's digest (constant-time compare). See [`crypto`].
//!
//! Trust: everything is parsed from `&[u8]` through a bounded [`reader`], both copies are checksummed,
//! and the JSON becomes a typed [`Header`] only after the allowlist in [`validate`] (one
//! aes-xts-plain64 segment, 512/4096 sectors, bounded KDF costs, sane layout). The optional pin
//! (`header_sha256` of the manifest) covers `[0, 2 * hdr_size)`, i.e. both copies with their JSON; the
//! keyslot areas are not covered, but a swapped keyslot can only fail to open: the accepted volume key must
//! match the (pinned) digest.
//!
//! Unlock work is bounded as a whole ([`cost`]): the sum over the keyslots that would be tried (KDF plus
//! digest check), each Argon2 keyslot's memory against what the machine has, and the wall time.
//!
//! This module is pure (no I/O, no `unsafe`) but for [`cost::Limits::for_this_machine`] reading
//! `/proc/meminfo`; [`crate::image`] does the file work.
#![forbid(unsafe_code)]

pub mod binary;
pub mod cost;
pub mod crypto;
pub mod error;
pub mod format;
mod header;
pub mod json;
pub mod reader;
mod unlock;
pub mod validate;

pub use cost::Limits;
pub use error::{Copy, Error, Result};
pub use header::{
    area_sha256, both_copies_len, Argon2Variant, Hash, Header, HeaderRead, Kdf, Keyslot, Priority,
    Segment, SegmentSize, VkDigest,
};
pub use unlock::{unlock, unlock_pinned, VolumeKey};
