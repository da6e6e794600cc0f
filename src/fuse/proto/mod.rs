//! The FUSE wire format (`include/uapi/linux/fuse.h`), for the one-file filesystem of [`super`]: decoding
//! the kernel's requests and encoding our replies. Pure: no I/O, no allocation beyond the reply bytes, and
//! every length checked, so that a truncated or garbled request is an error value, never a panic.
//!
//! Every request is a 40-byte `fuse_in_header` (`len`, `opcode`, `unique`, `nodeid`, `uid`, `gid`, `pid`,
//! `total_extlen`, padding) and an opcode-specific body; every reply a 16-byte `fuse_out_header` (`len`,
//! `error` as a negative errno, `unique`) and a body. All integers are little-endian on the machines we run
//! on (the kernel uses native endianness; x86-64 and arm64 Linux are little-endian).
//!
//! Requests are decoded here; replies are encoded in `reply`.
#![forbid(unsafe_code)]

use std::fmt;

mod reply;
#[cfg(test)]
mod tests;

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

pub use reply::*;
