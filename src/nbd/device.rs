//! What both ways of attaching (netlink in [`super::kernel`], ioctls in `ioctl`) share: the transmission
//! flags we announce, the block size, and whether the kernel has `/dev/nbdN` connected.
#![forbid(unsafe_code)]

use std::path::Path;

const FLAG_HAS_FLAGS: u64 = 1 << 0;
const FLAG_READ_ONLY: u64 = 1 << 1;
const FLAG_SEND_FLUSH: u64 = 1 << 2;
const FLAG_SEND_FUA: u64 = 1 << 3;

/// Whether the kernel has `/dev/nbd<n>` connected (it publishes the connection's pid).
pub(super) fn connected(n: u32) -> bool {
    Path::new(&format!("/sys/block/nbd{n}/pid")).exists()
}

/// `HAS_FLAGS`, `SEND_FLUSH`, `SEND_FUA`, plus `READ_ONLY` for read-only filesystems.
pub(super) fn server_flags(read_only: bool) -> u64 {
    FLAG_HAS_FLAGS | FLAG_SEND_FLUSH | FLAG_SEND_FUA | if read_only { FLAG_READ_ONLY } else { 0 }
}

/// 4096-byte blocks when the size allows, else 512.
pub(super) fn block_size(size: u64) -> u64 {
    if size % 4096 == 0 {
        4096
    } else {
        512
    }
}
