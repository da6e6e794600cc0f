//! The FUSE wire format (`include/uapi/linux/fuse.h`), for the one-file filesystem of [`super`]: decoding
//! the kernel's requests and encoding our replies. Pure: no I/O, no allocation beyond the reply bytes, and
//! every length checked, so that a truncated or garbled request is an error value, never a panic.
//!
//! Every request is a 40-byte `fuse_in_header` (`len`, `opcode`, `unique`, `nodeid`, `uid`, `gid`, `pid`,
//! `total_extlen`, padding) and an opcode-specific body; every reply a 16-byte `fuse_out_header` (`len`,
//! `error` as a negative errno, `unique`) and a body. All integers are little-endian on the machines we run
//! on (the kernel uses native endianness; x86-64 and arm64 Linux are little-endian).
#![forbid(unsafe_code)]

use std::fmt;

/// `sizeof(struct fuse_in_header)`.
pub const IN_HEADER_LEN: usize = 40;
/// `sizeof(struct fuse_out_header)`.
pub const OUT_HEADER_LEN: usize = 16;
/// The protocol major version we speak.
pub const MAJOR: u32 = 7;
/// The highest minor version whose structures we encode (7.31: `max_pages`, `map_alignment`; the
/// 64-byte `fuse_init_out` exists since 7.23).
pub const MINOR: u32 = 31;
/// The lowest minor version we accept: 7.28 brought `FUSE_MAX_PAGES` (Linux 4.20).
pub const MIN_MINOR: u32 = 28;

/// The root directory's node id (fixed by the protocol).
pub const ROOT_ID: u64 = 1;
/// The one file's node id.
pub const FILE_ID: u64 = 2;
/// The one file's name.
pub const FILE_NAME: &[u8] = b"disk";
/// The one file handle we hand out (the file has no per-open state).
pub const FH: u64 = 1;

/// Opcodes (`enum fuse_opcode`).
#[allow(missing_docs)]
pub mod op {
    pub const LOOKUP: u32 = 1;
    pub const FORGET: u32 = 2;
    pub const GETATTR: u32 = 3;
    pub const SETATTR: u32 = 4;
    pub const OPEN: u32 = 14;
    pub const READ: u32 = 15;
    pub const WRITE: u32 = 16;
    pub const STATFS: u32 = 17;
    pub const RELEASE: u32 = 18;
    pub const FSYNC: u32 = 20;
    pub const FLUSH: u32 = 25;
    pub const INIT: u32 = 26;
    pub const OPENDIR: u32 = 27;
    pub const RELEASEDIR: u32 = 29;
    pub const INTERRUPT: u32 = 36;
    pub const DESTROY: u32 = 38;
    pub const BATCH_FORGET: u32 = 42;
}

/// `fuse_init_in.flags` / `fuse_init_out.flags` bits we use.
#[allow(missing_docs)]
pub mod init_flags {
    pub const ASYNC_READ: u32 = 1 << 0;
    pub const BIG_WRITES: u32 = 1 << 5;
    pub const ASYNC_DIO: u32 = 1 << 15;
    pub const MAX_PAGES: u32 = 1 << 22;
}

/// `fuse_setattr_in.valid` bits.
#[allow(missing_docs)]
pub mod fattr {
    pub const MODE: u32 = 1 << 0;
    pub const UID: u32 = 1 << 1;
    pub const GID: u32 = 1 << 2;
    pub const SIZE: u32 = 1 << 3;
}

/// `fuse_open_out.open_flags`: keep the page cache of the file across opens (only we change its data).
pub const FOPEN_KEEP_CACHE: u32 = 1 << 1;
/// `fuse_fsync_in.fsync_flags`: data only.
pub const FSYNC_FDATASYNC: u32 = 1 << 0;

/// Errno values we answer with.
#[allow(missing_docs)]
pub mod errno {
    pub const EPERM: i32 = 1;
    pub const ENOENT: i32 = 2;
    pub const EIO: i32 = 5;
    pub const EBADF: i32 = 9;
    pub const EACCES: i32 = 13;
    pub const EINVAL: i32 = 22;
    pub const ENOSPC: i32 = 28;
    pub const EROFS: i32 = 30;
    pub const ENOSYS: i32 = 38;
    pub const EPROTO: i32 = 71;
}

/// A request that cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtoError {
    /// Fewer bytes than the structure needs.
    Truncated {
        /// Which structure.
        what: &'static str,
        /// Bytes needed.
        need: usize,
        /// Bytes there.
        have: usize,
    },
    /// The header's length disagrees with the bytes read.
    Length {
        /// `fuse_in_header.len`.
        said: u32,
        /// Bytes read.
        read: usize,
    },
    /// A WRITE whose size disagrees with its data.
    WriteSize {
        /// `fuse_write_in.size`.
        said: u32,
        /// Data bytes after the structure.
        data: usize,
    },
    /// A protocol version we do not speak.
    Version {
        /// Kernel's major.
        major: u32,
        /// Kernel's minor.
        minor: u32,
    },
}

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { what, need, have } => {
                write!(f, "truncated {what}: {have} bytes, need {need}")
            }
            Self::Length { said, read } => {
                write!(f, "request header says {said} bytes, {read} were read")
            }
            Self::WriteSize { said, data } => {
                write!(f, "WRITE says {said} bytes but carries {data}")
            }
            Self::Version { major, minor } => write!(
                f,
                "the kernel speaks FUSE {major}.{minor}; we need 7.{MIN_MINOR} or later (Linux 4.20)"
            ),
        }
    }
}

impl std::error::Error for ProtoError {}

fn truncated(what: &'static str, need: usize, have: usize) -> ProtoError {
    ProtoError::Truncated { what, need, have }
}

fn u16_at(b: &[u8], o: usize) -> Option<u16> {
    b.get(o..o.checked_add(2)?)
        .and_then(|s| <[u8; 2]>::try_from(s).ok())
        .map(u16::from_le_bytes)
}

fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    b.get(o..o.checked_add(4)?)
        .and_then(|s| <[u8; 4]>::try_from(s).ok())
        .map(u32::from_le_bytes)
}

fn u64_at(b: &[u8], o: usize) -> Option<u64> {
    b.get(o..o.checked_add(8)?)
        .and_then(|s| <[u8; 8]>::try_from(s).ok())
        .map(u64::from_le_bytes)
}

/// Read the `(what, len)` structure's fields: `Err(Truncated)` unless `b` holds `len` bytes.
fn need(b: &[u8], what: &'static str, len: usize) -> Result<(), ProtoError> {
    if b.len() < len {
        Err(truncated(what, len, b.len()))
    } else {
        Ok(())
    }
}

/// `struct fuse_in_header`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InHeader {
    /// Whole request length.
    pub len: u32,
    /// The operation.
    pub opcode: u32,
    /// Pairs the reply with the request.
    pub unique: u64,
    /// The node the operation is on.
    pub nodeid: u64,
    /// Caller's uid.
    pub uid: u32,
    /// Caller's gid.
    pub gid: u32,
    /// Caller's pid.
    pub pid: u32,
}

/// A decoded request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request<'a> {
    /// `FUSE_INIT`.
    Init {
        /// Kernel's major version.
        major: u32,
        /// Kernel's minor version.
        minor: u32,
        /// Kernel's readahead limit.
        max_readahead: u32,
        /// Kernel's capability flags.
        flags: u32,
    },
    /// `FUSE_LOOKUP` of `name` in `nodeid`.
    Lookup {
        /// The name (without its NUL).
        name: &'a [u8],
    },
    /// `FUSE_FORGET`, `FUSE_BATCH_FORGET`: no reply.
    Forget,
    /// `FUSE_INTERRUPT`: no reply (the interrupted request is answered as usual).
    Interrupt,
    /// `FUSE_GETATTR`.
    Getattr,
    /// `FUSE_SETATTR`.
    Setattr {
        /// `FATTR_*` bits.
        valid: u32,
        /// New size, when `valid` has `FATTR_SIZE`.
        size: u64,
    },
    /// `FUSE_OPEN`.
    Open {
        /// `open(2)` flags.
        flags: u32,
    },
    /// `FUSE_READ`.
    Read {
        /// Offset.
        offset: u64,
        /// Bytes wanted.
        size: u32,
    },
    /// `FUSE_WRITE`.
    Write {
        /// Offset.
        offset: u64,
        /// The data.
        data: &'a [u8],
    },
    /// `FUSE_STATFS`.
    Statfs,
    /// `FUSE_RELEASE`.
    Release,
    /// `FUSE_FSYNC`.
    Fsync {
        /// `FSYNC_FDATASYNC` and others.
        flags: u32,
    },
    /// `FUSE_FLUSH` (a `close(2)`).
    Flush,
    /// `FUSE_DESTROY` (fuseblk only; not expected).
    Destroy,
    /// Anything else: refused.
    Other(u32),
}

/// Decode the header of `buf` only (to answer a request whose body is malformed).
pub fn parse_header(buf: &[u8]) -> Result<InHeader, ProtoError> {
    need(buf, "fuse_in_header", IN_HEADER_LEN)?;
    let h = InHeader {
        len: u32_at(buf, 0).unwrap_or(0),
        opcode: u32_at(buf, 4).unwrap_or(0),
        unique: u64_at(buf, 8).unwrap_or(0),
        nodeid: u64_at(buf, 16).unwrap_or(0),
        uid: u32_at(buf, 24).unwrap_or(0),
        gid: u32_at(buf, 28).unwrap_or(0),
        pid: u32_at(buf, 32).unwrap_or(0),
    };
    if usize::try_from(h.len).ok() != Some(buf.len()) {
        return Err(ProtoError::Length {
            said: h.len,
            read: buf.len(),
        });
    }
    Ok(h)
}

/// Decode one request: exactly the bytes one `read(2)` of `/dev/fuse` returned.
pub fn parse(buf: &[u8]) -> Result<(InHeader, Request<'_>), ProtoError> {
    let h = parse_header(buf)?;
    let b = buf.get(IN_HEADER_LEN..).unwrap_or_default();
    let req = match h.opcode {
        op::INIT => {
            // major, minor, max_readahead, flags (then flags2 and padding on 7.36+).
            need(b, "fuse_init_in", 16)?;
            Request::Init {
                major: u32_at(b, 0).unwrap_or(0),
                minor: u32_at(b, 4).unwrap_or(0),
                max_readahead: u32_at(b, 8).unwrap_or(0),
                flags: u32_at(b, 12).unwrap_or(0),
            }
        }
        op::LOOKUP => {
            let name = b.split(|&c| c == 0).next().unwrap_or_default();
            if name.len() == b.len() {
                return Err(truncated("LOOKUP name (no NUL)", b.len() + 1, b.len()));
            }
            Request::Lookup { name }
        }
        op::FORGET | op::BATCH_FORGET => Request::Forget,
        op::INTERRUPT => Request::Interrupt,
        op::GETATTR => Request::Getattr,
        op::SETATTR => {
            // valid, padding, fh, size, ...
            need(b, "fuse_setattr_in", 88)?;
            Request::Setattr {
                valid: u32_at(b, 0).unwrap_or(0),
                size: u64_at(b, 16).unwrap_or(0),
            }
        }
        op::OPEN => {
            need(b, "fuse_open_in", 8)?;
            Request::Open {
                flags: u32_at(b, 0).unwrap_or(0),
            }
        }
        op::READ => {
            // fh, offset, size, read_flags, lock_owner, flags, padding.
            need(b, "fuse_read_in", 40)?;
            Request::Read {
                offset: u64_at(b, 8).unwrap_or(0),
                size: u32_at(b, 16).unwrap_or(0),
            }
        }
        op::WRITE => {
            // fh, offset, size, write_flags, lock_owner, flags, padding; then the data.
            need(b, "fuse_write_in", 40)?;
            let size = u32_at(b, 16).unwrap_or(0);
            let data = b.get(40..).unwrap_or_default();
            if usize::try_from(size).ok() != Some(data.len()) {
                return Err(ProtoError::WriteSize {
                    said: size,
                    data: data.len(),
                });
            }
            Request::Write {
                offset: u64_at(b, 8).unwrap_or(0),
                data,
            }
        }
        op::STATFS => Request::Statfs,
        op::RELEASE => Request::Release,
        op::FSYNC => {
            need(b, "fuse_fsync_in", 16)?;
            Request::Fsync {
                flags: u32_at(b, 8).unwrap_or(0),
            }
        }
        op::FLUSH => Request::Flush,
        op::DESTROY => Request::Destroy,
        other => Request::Other(other),
    };
    Ok((h, req))
}

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
    use super::*;

    fn request(opcode: u32, unique: u64, nodeid: u64, body: &[u8]) -> Vec<u8> {
        let len = u32::try_from(IN_HEADER_LEN + body.len()).unwrap();
        let mut m = Vec::new();
        m.extend_from_slice(&len.to_le_bytes());
        m.extend_from_slice(&opcode.to_le_bytes());
        m.extend_from_slice(&unique.to_le_bytes());
        m.extend_from_slice(&nodeid.to_le_bytes());
        m.extend_from_slice(&[0u8; 16]); // uid, gid, pid, total_extlen, padding
        m.extend_from_slice(body);
        m
    }

    fn write_in(offset: u64, data: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; 40];
        b[8..16].copy_from_slice(&offset.to_le_bytes());
        b[16..20].copy_from_slice(&u32::try_from(data.len()).unwrap().to_le_bytes());
        b.extend_from_slice(data);
        b
    }

    #[test]
    fn requests_decode() {
        let m = request(op::LOOKUP, 7, ROOT_ID, b"disk\0");
        let (h, r) = parse(&m).unwrap();
        assert_eq!((h.unique, h.nodeid, h.opcode), (7, ROOT_ID, op::LOOKUP));
        assert_eq!(r, Request::Lookup { name: b"disk" });

        let mut read_in = [0u8; 40];
        read_in[8..16].copy_from_slice(&8192u64.to_le_bytes());
        read_in[16..20].copy_from_slice(&4096u32.to_le_bytes());
        let m = request(op::READ, 8, FILE_ID, &read_in);
        assert_eq!(
            parse(&m).unwrap().1,
            Request::Read {
                offset: 8192,
                size: 4096
            }
        );

        let m = request(op::WRITE, 9, FILE_ID, &write_in(512, b"hello"));
        assert_eq!(
            parse(&m).unwrap().1,
            Request::Write {
                offset: 512,
                data: b"hello"
            }
        );

        let mut init_in = [0u8; 64];
        init_in[0..4].copy_from_slice(&7u32.to_le_bytes());
        init_in[4..8].copy_from_slice(&41u32.to_le_bytes());
        init_in[8..12].copy_from_slice(&131072u32.to_le_bytes());
        init_in[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        let m = request(op::INIT, 1, 0, &init_in);
        assert_eq!(
            parse(&m).unwrap().1,
            Request::Init {
                major: 7,
                minor: 41,
                max_readahead: 131072,
                flags: u32::MAX
            }
        );
        let mut fsync_in = [0u8; 16];
        fsync_in[8..12].copy_from_slice(&FSYNC_FDATASYNC.to_le_bytes());
        assert_eq!(
            parse(&request(op::FSYNC, 3, FILE_ID, &fsync_in)).unwrap().1,
            Request::Fsync {
                flags: FSYNC_FDATASYNC
            }
        );
        assert_eq!(
            parse(&request(op::FLUSH, 3, FILE_ID, &[0u8; 24]))
                .unwrap()
                .1,
            Request::Flush
        );
        assert_eq!(
            parse(&request(99, 3, FILE_ID, &[])).unwrap().1,
            Request::Other(99)
        );
    }

    #[test]
    fn truncated_or_garbled_requests_are_errors_not_panics() {
        // Short of a header.
        for n in 0..IN_HEADER_LEN {
            assert!(matches!(
                parse(&vec![0xff; n]),
                Err(ProtoError::Truncated { .. })
            ));
        }
        // A header whose length disagrees with what was read.
        let mut m = request(op::GETATTR, 1, FILE_ID, &[0u8; 16]);
        m.pop();
        assert!(matches!(parse(&m), Err(ProtoError::Length { .. })));
        // Bodies cut short, for every opcode with a body.
        for (opcode, full) in [
            (op::INIT, 16usize),
            (op::SETATTR, 88),
            (op::OPEN, 8),
            (op::READ, 40),
            (op::WRITE, 40),
            (op::FSYNC, 16),
        ] {
            for n in 0..full.min(40) {
                let m = request(opcode, 1, FILE_ID, &vec![0u8; n]);
                assert!(
                    matches!(parse(&m), Err(ProtoError::Truncated { .. })),
                    "opcode {opcode} with {n} bytes"
                );
            }
        }
        // A LOOKUP name without its NUL.
        assert!(parse(&request(op::LOOKUP, 1, ROOT_ID, b"disk")).is_err());
        // A WRITE whose size disagrees with its data, either way.
        let mut w = write_in(0, b"abcd");
        w.pop();
        assert!(matches!(
            parse(&request(op::WRITE, 1, FILE_ID, &w)),
            Err(ProtoError::WriteSize { .. })
        ));
        let mut w = write_in(0, b"abcd");
        w[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(parse(&request(op::WRITE, 1, FILE_ID, &w)).is_err());
        // Pseudo-random garbage of every length: never a panic.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for len in 0..600 {
            let mut g = Vec::with_capacity(len);
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                g.push(u8::try_from(x & 0xff).unwrap());
            }
            let _ = parse(&g);
            // The same garbage with a consistent length field and each opcode.
            if len >= IN_HEADER_LEN {
                g[0..4].copy_from_slice(&u32::try_from(len).unwrap().to_le_bytes());
                for opcode in 0..60 {
                    g[4..8].copy_from_slice(&u32::to_le_bytes(opcode));
                    let _ = parse(&g);
                }
            }
        }
    }

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
