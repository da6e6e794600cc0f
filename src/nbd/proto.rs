//! The NBD wire protocol, pure: the fixed-newstyle handshake and the transmission phase's simple replies.
//! No I/O here: functions turn bytes into typed values and back, so they are unit- and fuzz-testable.
//!
//! Reference: NetworkBlockDevice/nbd `doc/proto.md`. All integers are big-endian.
//! - Greeting (server): `NBDMAGIC` (u64), `IHAVEOPT` (u64), handshake flags (u16: FIXED_NEWSTYLE,
//!   NO_ZEROES). Client flags (u32) follow; a client without FIXED_NEWSTYLE is refused.
//! - Option (client): `IHAVEOPT`, option (u32), length (u32), data. Replies: magic `0x3e889045565a9`,
//!   option, reply type, length, data. We support EXPORT_NAME, ABORT, LIST, INFO and GO; everything else
//!   gets `NBD_REP_ERR_UNSUP`. There is one export; every name selects it.
//! - Request: magic `0x25609513`, flags (u16), type (u16), cookie (u64), offset (u64), length (u32), then
//!   `length` bytes for WRITE. Simple reply: magic `0x67446698`, error (u32 errno), cookie, then the data
//!   for a successful READ.
#![forbid(unsafe_code)]

use std::fmt;

/// `NBDMAGIC`.
pub const NBDMAGIC: u64 = 0x4e42_444d_4147_4943;
/// `IHAVEOPT`.
pub const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
/// Option reply magic.
pub const OPT_REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
/// Request magic.
pub const REQUEST_MAGIC: u32 = 0x2560_9513;
/// Simple reply magic.
pub const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;
/// Request header length.
pub const REQUEST_LEN: usize = 28;
/// Longest option payload we read (export names are at most 4096 bytes).
pub const MAX_OPTION_LEN: u32 = 8192;
/// Largest READ/WRITE payload we accept (advertised as the maximum block size).
pub const MAX_PAYLOAD: u32 = 32 << 20;

/// Handshake flags.
pub const FLAG_FIXED_NEWSTYLE: u16 = 1 << 0;
/// Handshake flag: no 124 zero bytes after EXPORT_NAME.
pub const FLAG_NO_ZEROES: u16 = 1 << 1;

/// Transmission flags.
pub mod tflags {
    /// Always set.
    pub const HAS_FLAGS: u16 = 1 << 0;
    /// Writes refused.
    pub const READ_ONLY: u16 = 1 << 1;
    /// FLUSH supported.
    pub const SEND_FLUSH: u16 = 1 << 2;
    /// FUA supported.
    pub const SEND_FUA: u16 = 1 << 3;
    /// TRIM supported.
    pub const SEND_TRIM: u16 = 1 << 5;
    /// WRITE_ZEROES supported.
    pub const SEND_WRITE_ZEROES: u16 = 1 << 6;
}

/// Command flag: force unit access.
pub const CMD_FLAG_FUA: u16 = 1 << 0;
/// Command flag: no hole (WRITE_ZEROES).
pub const CMD_FLAG_NO_HOLE: u16 = 1 << 1;
/// Command flag: fast zero (WRITE_ZEROES), not advertised.
pub const CMD_FLAG_FAST_ZERO: u16 = 1 << 4;

/// Options.
pub mod opt {
    /// NBD_OPT_EXPORT_NAME.
    pub const EXPORT_NAME: u32 = 1;
    /// NBD_OPT_ABORT.
    pub const ABORT: u32 = 2;
    /// NBD_OPT_LIST.
    pub const LIST: u32 = 3;
    /// NBD_OPT_INFO.
    pub const INFO: u32 = 6;
    /// NBD_OPT_GO.
    pub const GO: u32 = 7;
}

/// Option reply types.
pub mod rep {
    /// NBD_REP_ACK.
    pub const ACK: u32 = 1;
    /// NBD_REP_SERVER.
    pub const SERVER: u32 = 2;
    /// NBD_REP_INFO.
    pub const INFO: u32 = 3;
    /// NBD_REP_ERR_UNSUP.
    pub const ERR_UNSUP: u32 = (1 << 31) + 1;
    /// NBD_REP_ERR_INVALID.
    pub const ERR_INVALID: u32 = (1 << 31) + 3;
    /// NBD_REP_ERR_TOO_BIG.
    pub const ERR_TOO_BIG: u32 = (1 << 31) + 9;
}

/// NBD_INFO types.
pub mod info {
    /// NBD_INFO_EXPORT.
    pub const EXPORT: u16 = 0;
    /// NBD_INFO_BLOCK_SIZE.
    pub const BLOCK_SIZE: u16 = 3;
}

/// Error values in replies (Linux errno numbers, as the protocol defines).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Errno {
    /// Write to a read-only export.
    Perm = 1,
    /// I/O error.
    Io = 5,
    /// Out of memory.
    NoMem = 12,
    /// Invalid request.
    Inval = 22,
    /// Write past the end.
    NoSpc = 28,
    /// Length too large.
    Overflow = 75,
    /// Not supported.
    NotSup = 95,
    /// Server shutting down.
    Shutdown = 108,
}

/// Malformed input (the connection is then closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtoError {
    /// Fewer bytes than the structure needs.
    Short,
    /// Bytes left after the structure.
    Trailing,
    /// Wrong magic number.
    BadMagic,
    /// The client does not speak fixed newstyle.
    NotFixedNewstyle,
    /// The client sent flags we do not know.
    UnknownClientFlags,
}

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Short => "message too short",
            Self::Trailing => "trailing bytes after message",
            Self::BadMagic => "bad magic number",
            Self::NotFixedNewstyle => "client does not support fixed newstyle negotiation",
            Self::UnknownClientFlags => "unknown client flags",
        })
    }
}

impl std::error::Error for ProtoError {}

/// A bounded big-endian reader that errors on short input; `finish` errors on trailing bytes.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Read from `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], ProtoError> {
        if self.buf.len() < n {
            return Err(ProtoError::Short);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], ProtoError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    /// u16.
    pub fn u16(&mut self) -> Result<u16, ProtoError> {
        self.array().map(u16::from_be_bytes)
    }

    /// u32.
    pub fn u32(&mut self) -> Result<u32, ProtoError> {
        self.array().map(u32::from_be_bytes)
    }

    /// u64.
    pub fn u64(&mut self) -> Result<u64, ProtoError> {
        self.array().map(u64::from_be_bytes)
    }

    /// Require that everything was consumed.
    pub fn finish(self) -> Result<(), ProtoError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(ProtoError::Trailing)
        }
    }
}

/// The server's greeting.
pub fn greeting() -> [u8; 18] {
    let mut g = [0u8; 18];
    g[..8].copy_from_slice(&NBDMAGIC.to_be_bytes());
    g[8..16].copy_from_slice(&IHAVEOPT.to_be_bytes());
    g[16..].copy_from_slice(&(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES).to_be_bytes());
    g
}

/// Parse the client's flags; returns whether the client asked for NO_ZEROES.
pub fn parse_client_flags(b: [u8; 4]) -> Result<bool, ProtoError> {
    let f = u32::from_be_bytes(b);
    if f & u32::from(FLAG_FIXED_NEWSTYLE) == 0 {
        return Err(ProtoError::NotFixedNewstyle);
    }
    if f & !u32::from(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES) != 0 {
        return Err(ProtoError::UnknownClientFlags);
    }
    Ok(f & u32::from(FLAG_NO_ZEROES) != 0)
}

/// An option header: (option, payload length).
pub fn parse_option_header(b: [u8; 16]) -> Result<(u32, u32), ProtoError> {
    let mut r = Reader::new(&b);
    if r.u64()? != IHAVEOPT {
        return Err(ProtoError::BadMagic);
    }
    Ok((r.u32()?, r.u32()?))
}

/// What the export looks like to a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Export {
    /// Size in bytes.
    pub size: u64,
    /// Transmission flags.
    pub flags: u16,
    /// Preferred block size (NBD_INFO_BLOCK_SIZE).
    pub preferred_block: u32,
}

/// What to do after an option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Read the next option.
    Continue,
    /// Negotiation is over: enter the transmission phase.
    Transmit,
    /// Close the connection.
    Close,
}

/// Bytes to send and what to do next, for one option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionOutcome {
    /// The whole reply (possibly several option replies).
    pub reply: Vec<u8>,
    /// Then.
    pub next: Next,
}

/// One option reply.
pub fn option_reply(option: u32, kind: u32, data: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(20 + data.len());
    v.extend_from_slice(&OPT_REPLY_MAGIC.to_be_bytes());
    v.extend_from_slice(&option.to_be_bytes());
    v.extend_from_slice(&kind.to_be_bytes());
    v.extend_from_slice(&u32::try_from(data.len()).unwrap_or(u32::MAX).to_be_bytes());
    v.extend_from_slice(data);
    v
}

fn invalid(option: u32) -> OptionOutcome {
    OptionOutcome {
        reply: option_reply(option, rep::ERR_INVALID, b"malformed option"),
        next: Next::Continue,
    }
}

/// Decide the answer to option `option` with payload `data`. `no_zeroes` is the client's flag.
pub fn handle_option(option: u32, data: &[u8], export: &Export, no_zeroes: bool) -> OptionOutcome {
    match option {
        opt::EXPORT_NAME => {
            // No option reply: size, flags, and (unless NO_ZEROES) 124 zero bytes.
            let mut reply = Vec::with_capacity(134);
            reply.extend_from_slice(&export.size.to_be_bytes());
            reply.extend_from_slice(&export.flags.to_be_bytes());
            if !no_zeroes {
                reply.extend_from_slice(&[0u8; 124]);
            }
            OptionOutcome {
                reply,
                next: Next::Transmit,
            }
        }
        opt::ABORT => OptionOutcome {
            reply: option_reply(option, rep::ACK, &[]),
            next: Next::Close,
        },
        opt::LIST => {
            if !data.is_empty() {
                return invalid(option);
            }
            // One export, the default (empty) name.
            let mut reply = option_reply(option, rep::SERVER, &0u32.to_be_bytes());
            reply.extend(option_reply(option, rep::ACK, &[]));
            OptionOutcome {
                reply,
                next: Next::Continue,
            }
        }
        opt::INFO | opt::GO => {
            if parse_info_request(data).is_err() {
                return invalid(option);
            }
            let mut ex = Vec::with_capacity(12);
            ex.extend_from_slice(&info::EXPORT.to_be_bytes());
            ex.extend_from_slice(&export.size.to_be_bytes());
            ex.extend_from_slice(&export.flags.to_be_bytes());
            let mut bs = Vec::with_capacity(14);
            bs.extend_from_slice(&info::BLOCK_SIZE.to_be_bytes());
            bs.extend_from_slice(&1u32.to_be_bytes());
            bs.extend_from_slice(&export.preferred_block.to_be_bytes());
            bs.extend_from_slice(&MAX_PAYLOAD.to_be_bytes());
            let mut reply = option_reply(option, rep::INFO, &ex);
            reply.extend(option_reply(option, rep::INFO, &bs));
            reply.extend(option_reply(option, rep::ACK, &[]));
            OptionOutcome {
                reply,
                next: if option == opt::GO {
                    Next::Transmit
                } else {
                    Next::Continue
                },
            }
        }
        _ => OptionOutcome {
            reply: option_reply(option, rep::ERR_UNSUP, b"option not supported"),
            next: Next::Continue,
        },
    }
}

/// Parse an INFO/GO payload: name length, name, number of info requests, requests.
pub fn parse_info_request(data: &[u8]) -> Result<(String, Vec<u16>), ProtoError> {
    let mut r = Reader::new(data);
    let n = r.u32()?;
    let name = r.take(usize::try_from(n).map_err(|_| ProtoError::Short)?)?;
    let count = r.u16()?;
    let mut reqs = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        reqs.push(r.u16()?);
    }
    r.finish()?;
    Ok((String::from_utf8_lossy(name).into_owned(), reqs))
}

/// Transmission commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmd {
    /// NBD_CMD_READ.
    Read,
    /// NBD_CMD_WRITE.
    Write,
    /// NBD_CMD_DISC.
    Disc,
    /// NBD_CMD_FLUSH.
    Flush,
    /// NBD_CMD_TRIM.
    Trim,
    /// NBD_CMD_WRITE_ZEROES.
    WriteZeroes,
    /// Anything else (answered with EINVAL).
    Other(u16),
}

impl Cmd {
    fn from_u16(v: u16) -> Self {
        match v {
            0 => Self::Read,
            1 => Self::Write,
            2 => Self::Disc,
            3 => Self::Flush,
            4 => Self::Trim,
            6 => Self::WriteZeroes,
            o => Self::Other(o),
        }
    }

    /// The wire value.
    pub fn to_u16(self) -> u16 {
        match self {
            Self::Read => 0,
            Self::Write => 1,
            Self::Disc => 2,
            Self::Flush => 3,
            Self::Trim => 4,
            Self::WriteZeroes => 6,
            Self::Other(o) => o,
        }
    }
}

/// A request header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// Command flags.
    pub flags: u16,
    /// Command.
    pub cmd: Cmd,
    /// Opaque cookie echoed in the reply.
    pub cookie: u64,
    /// Offset.
    pub offset: u64,
    /// Length.
    pub len: u32,
}

/// Parse a 28-byte request header.
pub fn parse_request(b: &[u8]) -> Result<Request, ProtoError> {
    let mut r = Reader::new(b);
    if r.u32()? != REQUEST_MAGIC {
        return Err(ProtoError::BadMagic);
    }
    let req = Request {
        flags: r.u16()?,
        cmd: Cmd::from_u16(r.u16()?),
        cookie: r.u64()?,
        offset: r.u64()?,
        len: r.u32()?,
    };
    r.finish()?;
    Ok(req)
}

/// Serialize a request header (for tests and clients).
pub fn encode_request(req: &Request) -> [u8; REQUEST_LEN] {
    let mut b = [0u8; REQUEST_LEN];
    b[..4].copy_from_slice(&REQUEST_MAGIC.to_be_bytes());
    b[4..6].copy_from_slice(&req.flags.to_be_bytes());
    b[6..8].copy_from_slice(&req.cmd.to_u16().to_be_bytes());
    b[8..16].copy_from_slice(&req.cookie.to_be_bytes());
    b[16..24].copy_from_slice(&req.offset.to_be_bytes());
    b[24..28].copy_from_slice(&req.len.to_be_bytes());
    b
}

/// A simple reply header.
pub fn simple_reply(cookie: u64, error: Option<Errno>) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..4].copy_from_slice(&SIMPLE_REPLY_MAGIC.to_be_bytes());
    b[4..8].copy_from_slice(&error.map_or(0, |e| e as u32).to_be_bytes());
    b[8..].copy_from_slice(&cookie.to_be_bytes());
    b
}

/// What a request may do, decided before touching the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Go ahead.
    Ok,
    /// Reply with this error (the WRITE payload, if any, has still to be consumed).
    Fail(Errno),
}

/// Validate a request against the export (size, read-only, payload limits, flags).
pub fn check_request(req: &Request, size: u64, read_only: bool) -> Check {
    let end = req.offset.checked_add(u64::from(req.len));
    let in_range = end.is_some_and(|e| e <= size);
    let writes = matches!(req.cmd, Cmd::Write | Cmd::Trim | Cmd::WriteZeroes);
    match req.cmd {
        Cmd::Other(_) => return Check::Fail(Errno::Inval),
        Cmd::Disc | Cmd::Flush => return Check::Ok,
        _ => {}
    }
    if writes && read_only {
        return Check::Fail(Errno::Perm);
    }
    if matches!(req.cmd, Cmd::Read | Cmd::Write) && req.len > MAX_PAYLOAD {
        return Check::Fail(Errno::Overflow);
    }
    if req.cmd == Cmd::WriteZeroes && req.flags & CMD_FLAG_FAST_ZERO != 0 {
        // Not advertised: a client must not send it.
        return Check::Fail(Errno::Inval);
    }
    if !in_range {
        return Check::Fail(if writes { Errno::NoSpc } else { Errno::Inval });
    }
    Check::Ok
}
