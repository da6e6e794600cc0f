//! `[[filesystem]] verity_root_hash` + `verity_hash_offset`: the dm-verity pin of a read-only image.

use super::*;

/// The pin, when both fields are given and valid: a root hash of 64 hex digits, an offset that is a positive
/// multiple of 4096, on a read-only filesystem (dm-verity cannot be written).
pub(super) fn verity_pin(
    v: &mut V<'_>,
    p: &FieldPath,
    root_hash: Option<&str>,
    hash_offset: Option<u64>,
    read_write: bool,
) -> Option<VerityPin> {
    let seal = "`encfs-init image seal IMAGE` (or `image create --verity`) prints both lines";
    let (root, offset) = match (root_hash, hash_offset) {
        (None, None) => return None,
        (Some(r), Some(o)) => (r, o),
        (Some(_), None) => {
            v.err(
                &p.key("verity_hash_offset"),
                "verity_root_hash is set but verity_hash_offset is not: where the hash tree starts is unknown",
                format!("add verity_hash_offset; {seal}"),
            );
            return None;
        }
        (None, Some(_)) => {
            v.err(
                &p.key("verity_root_hash"),
                "verity_hash_offset is set but verity_root_hash is not: nothing pins the image",
                format!("add verity_root_hash; {seal}"),
            );
            return None;
        }
    };
    let mut ok = true;
    if read_write {
        v.err(
            &p.key("verity_root_hash"),
            "verity_root_hash pins a read-only image, but read_write = true",
            "remove read_write (dm-verity images are mounted read-only), or remove the verity fields for a writable filesystem",
        );
        ok = false;
    }
    let block = u64::from(crate::verity::BLOCK);
    if offset == 0 || offset % block != 0 {
        v.err(
            &p.key("verity_hash_offset"),
            format!("verity_hash_offset {offset} is not a positive multiple of 4096"),
            format!("give the byte offset of the verity superblock; {seal}"),
        );
        ok = false;
    }
    let root = v.hex(
        &p.key("verity_root_hash"),
        root,
        Some(32),
        "verity_root_hash",
    );
    let root_hash = <[u8; 32]>::try_from(root?.as_slice()).ok()?;
    ok.then_some(VerityPin {
        root_hash,
        hash_offset: offset,
    })
}
