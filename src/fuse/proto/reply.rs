//! Encoding our replies to the kernel (`fuse_out_header` and the bodies), and negotiating `FUSE_INIT`.
#![forbid(unsafe_code)]

use super::*;

/// A reply's header: `len` covers the header and `body_len` bytes after it; `errno` 0 is success.
pub fn out_header(unique: u64, errno: i32, body_len: usize) -> [u8; OUT_HEADER_LEN] {
    let len = u32::try_from(OUT_HEADER_LEN + body_len).unwrap_or(u32::MAX);
    let mut h = [0u8; OUT_HEADER_LEN];
    h[0..4].copy_from_slice(&len.to_le_bytes());
    h[4..8].copy_from_slice(&(-errno).to_le_bytes());
    h[8..16].copy_from_slice(&unique.to_le_bytes());
    h
}

/// A whole reply: header and body.
pub fn reply(unique: u64, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(OUT_HEADER_LEN + body.len());
    m.extend_from_slice(&out_header(unique, 0, body.len()));
    m.extend_from_slice(body);
    m
}

/// An error reply (header only).
pub fn error_reply(unique: u64, errno: i32) -> [u8; OUT_HEADER_LEN] {
    out_header(unique, errno, 0)
}

/// What we answer `FUSE_INIT` with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitReply {
    /// The minor version both sides speak.
    pub minor: u32,
    /// Readahead limit (the kernel's own).
    pub max_readahead: u32,
    /// Flags we take of the kernel's.
    pub flags: u32,
    /// Background requests (async reads and direct I/O) in flight at once.
    pub max_background: u16,
    /// Requests per WRITE and READ, in pages.
    pub max_pages: u16,
    /// Bytes per WRITE.
    pub max_write: u32,
}

/// The flags we would like: parallel reads, large writes, asynchronous direct I/O (the loop device's
/// direct I/O sends a whole block request at once), and `max_pages`.
pub const WANTED_FLAGS: u32 =
    init_flags::ASYNC_READ | init_flags::BIG_WRITES | init_flags::ASYNC_DIO | init_flags::MAX_PAGES;

/// Negotiate: the minor both speak, the flags both know, `max_pages` pages per request.
pub fn negotiate_init(
    major: u32,
    minor: u32,
    max_readahead: u32,
    kernel_flags: u32,
    max_pages: u16,
) -> Result<InitReply, ProtoError> {
    if major != MAJOR || minor < MIN_MINOR {
        return Err(ProtoError::Version { major, minor });
    }
    let max_pages = max_pages.max(1);
    Ok(InitReply {
        minor: minor.min(MINOR),
        max_readahead,
        flags: kernel_flags & WANTED_FLAGS,
        max_background: 64,
        max_pages,
        max_write: u32::from(max_pages) * 4096,
    })
}

/// `struct fuse_init_out` (64 bytes).
pub fn init_out(r: &InitReply) -> [u8; 64] {
    let mut b = [0u8; 64];
    b[0..4].copy_from_slice(&MAJOR.to_le_bytes());
    b[4..8].copy_from_slice(&r.minor.to_le_bytes());
    b[8..12].copy_from_slice(&r.max_readahead.to_le_bytes());
    b[12..16].copy_from_slice(&r.flags.to_le_bytes());
    b[16..18].copy_from_slice(&r.max_background.to_le_bytes());
    // congestion_threshold: three quarters of max_background, as the kernel's default.
    b[18..20].copy_from_slice(&(r.max_background / 4 * 3).to_le_bytes());
    b[20..24].copy_from_slice(&r.max_write.to_le_bytes());
    b[24..28].copy_from_slice(&1u32.to_le_bytes()); // time_gran: 1 ns
    b[28..30].copy_from_slice(&r.max_pages.to_le_bytes());
    // map_alignment, flags2, max_stack_depth, unused: zero.
    b
}

/// The attributes of the root or of the file (`struct fuse_attr`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    /// Inode number.
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// `st_mode` (type and permissions).
    pub mode: u32,
    /// Links.
    pub nlink: u32,
}

/// `S_IFDIR`.
pub const S_IFDIR: u32 = 0o040_000;
/// `S_IFREG`.
pub const S_IFREG: u32 = 0o100_000;

impl Attr {
    /// The root directory: root's, mode 0700.
    pub fn root() -> Self {
        Attr {
            ino: ROOT_ID,
            size: 0,
            mode: S_IFDIR | 0o700,
            nlink: 2,
        }
    }

    /// The file: root's, 0600 (0400 when read-only), `size` bytes.
    pub fn file(size: u64, read_only: bool) -> Self {
        Attr {
            ino: FILE_ID,
            size,
            mode: S_IFREG | if read_only { 0o400 } else { 0o600 },
            nlink: 1,
        }
    }

    /// `struct fuse_attr` (88 bytes): times zero, uid/gid 0, `blksize` 4096.
    pub fn encode(&self) -> [u8; 88] {
        let mut b = [0u8; 88];
        b[0..8].copy_from_slice(&self.ino.to_le_bytes());
        b[8..16].copy_from_slice(&self.size.to_le_bytes());
        // blocks; then atime, mtime, ctime (24..48) and their nsec (48..60): zero.
        b[16..24].copy_from_slice(&self.size.div_ceil(512).to_le_bytes());
        b[60..64].copy_from_slice(&self.mode.to_le_bytes());
        b[64..68].copy_from_slice(&self.nlink.to_le_bytes());
        // uid, gid, rdev (68..80): zero; blksize; flags (84..88): zero.
        b[80..84].copy_from_slice(&4096u32.to_le_bytes());
        b
    }
}

/// How long the kernel may cache names and attributes: they never change while mounted.
pub const VALID_SECS: u64 = 365 * 24 * 3600;

/// `struct fuse_entry_out` (128 bytes) for a LOOKUP.
pub fn entry_out(attr: &Attr) -> [u8; 128] {
    let mut b = [0u8; 128];
    // nodeid, generation (zero), entry_valid, attr_valid, their nsec (zero), the attributes.
    b[0..8].copy_from_slice(&attr.ino.to_le_bytes());
    b[16..24].copy_from_slice(&VALID_SECS.to_le_bytes());
    b[24..32].copy_from_slice(&VALID_SECS.to_le_bytes());
    b[40..128].copy_from_slice(&attr.encode());
    b
}

/// `struct fuse_attr_out` (104 bytes) for a GETATTR or SETATTR.
pub fn attr_out(attr: &Attr) -> [u8; 104] {
    let mut b = [0u8; 104];
    b[0..8].copy_from_slice(&VALID_SECS.to_le_bytes());
    b[16..104].copy_from_slice(&attr.encode());
    b
}

/// `struct fuse_open_out` (16 bytes).
pub fn open_out(open_flags: u32) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[0..8].copy_from_slice(&FH.to_le_bytes());
    b[8..12].copy_from_slice(&open_flags.to_le_bytes());
    b
}

/// `struct fuse_write_out` (8 bytes).
pub fn write_out(size: u32) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[0..4].copy_from_slice(&size.to_le_bytes());
    b
}

/// `struct fuse_statfs_out` (80 bytes) for a filesystem holding one file of `size` bytes: 4096-byte
/// blocks (cryptsetup and others divide by `f_bsize`; upstream's 0 broke them), none free, one inode used.
pub fn statfs_out(size: u64) -> [u8; 80] {
    let mut b = [0u8; 80];
    // blocks, bfree and bavail (zero), files, ffree (zero), bsize, namelen, frsize.
    b[0..8].copy_from_slice(&size.div_ceil(4096).to_le_bytes());
    b[24..32].copy_from_slice(&1u64.to_le_bytes());
    b[40..44].copy_from_slice(&4096u32.to_le_bytes());
    b[44..48].copy_from_slice(&255u32.to_le_bytes());
    b[48..52].copy_from_slice(&4096u32.to_le_bytes());
    b
}

/// `fuse_out_header` fields of an encoded reply (tests and diagnostics).
pub fn parse_out_header(b: &[u8]) -> Option<(u32, i32, u64)> {
    Some((
        u32_at(b, 0)?,
        i32::from_le_bytes(b.get(4..8)?.try_into().ok()?),
        u64_at(b, 8)?,
    ))
}

/// The `u16` at `o` (tests).
pub fn le_u16(b: &[u8], o: usize) -> Option<u16> {
    u16_at(b, o)
}

/// The `u32` at `o` (tests).
pub fn le_u32(b: &[u8], o: usize) -> Option<u32> {
    u32_at(b, o)
}

/// The `u64` at `o` (tests).
pub fn le_u64(b: &[u8], o: usize) -> Option<u64> {
    u64_at(b, o)
}

#[cfg(test)]
mod tests {
    use super::super::*;

    #[test]
    fn init_negotiates_version_flags_and_pages() {
        let r = negotiate_init(7, 41, 131072, u32::MAX, 256).unwrap();
        assert_eq!(r.minor, MINOR);
        assert_eq!(r.flags, WANTED_FLAGS);
        assert_eq!(r.max_write, 1 << 20);
        let b = init_out(&r);
        assert_eq!(le_u32(&b, 0), Some(7));
        assert_eq!(le_u32(&b, 4), Some(MINOR));
        assert_eq!(le_u32(&b, 20), Some(1 << 20));
        assert_eq!(le_u16(&b, 28), Some(256));
        // Only flags the kernel offered are taken.
        assert_eq!(
            negotiate_init(7, 31, 0, init_flags::ASYNC_READ, 32)
                .unwrap()
                .flags,
            init_flags::ASYNC_READ
        );
        // Too old, or another major.
        assert!(negotiate_init(7, 27, 0, 0, 32).is_err());
        assert!(negotiate_init(8, 31, 0, 0, 32).is_err());
    }

    #[test]
    fn replies_encode() {
        let h = error_reply(42, errno::ENOSYS);
        assert_eq!(parse_out_header(&h), Some((16, -38, 42)));
        let r = reply(5, &write_out(4096));
        assert_eq!(parse_out_header(&r), Some((24, 0, 5)));
        assert_eq!(le_u32(&r, 16), Some(4096));
        let s = statfs_out(1 << 30);
        assert_eq!(le_u32(&s, 40), Some(4096), "f_bsize");
        assert_eq!(le_u64(&s, 0), Some((1 << 30) / 4096));
        let e = entry_out(&Attr::file(1 << 20, true));
        assert_eq!(le_u64(&e, 0), Some(FILE_ID));
        assert_eq!(le_u64(&e, 40 + 8), Some(1 << 20), "size");
        assert_eq!(le_u32(&e, 40 + 60), Some(S_IFREG | 0o400), "mode");
        assert_eq!(le_u32(&e, 40 + 80), Some(4096), "blksize");
        let a = attr_out(&Attr::root());
        assert_eq!(le_u32(&a, 16 + 60), Some(S_IFDIR | 0o700));
        assert_eq!(le_u64(&open_out(FOPEN_KEEP_CACHE), 0), Some(FH));
    }
}
