//! Serving one NBD connection over any byte stream (a socketpair end for the kernel, a Unix or TCP
//! socket for `nbd serve`).
//!
//! Contract: the fixed-newstyle handshake (see [`proto`]), then a reader loop that parses requests and
//! hands them to a small pool of workers; replies go out as each request completes (out of order, as the
//! protocol allows: the cookie pairs them), each reply written whole under one lock. A FLUSH is answered
//! after every write that was answered before it is durable; a FUA write after its own data is. DISC
//! ends the loop after in-flight requests are answered, then flushes. A malformed request header closes
//! the connection (the stream cannot be resynchronized). Each request runs behind `catch_unwind`: a
//! panic becomes an EIO reply.
#![forbid(unsafe_code)]

use super::proto::{self, tflags, Check, Cmd, Errno, Export, Next, Request};
use crate::blob::{self, BlockSource};
use crate::ratelimit::RateLimit;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// A connection the server can split into a reading and a writing handle.
pub trait Stream: Read + Write + Send + Sized + 'static {
    /// A second handle on the same connection.
    fn try_clone(&self) -> io::Result<Self>;
    /// Shut both directions down (unblocks a reader).
    fn shutdown_both(&self);
}

impl Stream for UnixStream {
    fn try_clone(&self) -> io::Result<Self> {
        UnixStream::try_clone(self)
    }
    fn shutdown_both(&self) {
        let _ = self.shutdown(std::net::Shutdown::Both);
    }
}

impl Stream for TcpStream {
    fn try_clone(&self) -> io::Result<Self> {
        TcpStream::try_clone(self)
    }
    fn shutdown_both(&self) {
        let _ = self.shutdown(std::net::Shutdown::Both);
    }
}

/// Server tuning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerConfig {
    /// Requests handled at once.
    pub workers: usize,
    /// Preferred block size announced to clients.
    pub preferred_block: u32,
    /// A request that panics ends the connection (the request unanswered) instead of getting EIO: for
    /// the kernel client with a keeper that restarts the server, so that the kernel sends the request
    /// again and the filesystem sees no error.
    pub sever_on_panic: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            workers: 8,
            preferred_block: 4096,
            sever_on_panic: false,
        }
    }
}

/// Why a connection ended abnormally.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The socket failed.
    #[error("NBD connection")]
    Io(#[from] io::Error),
    /// The client sent something malformed.
    #[error("NBD client protocol error")]
    Protocol(#[from] proto::ProtoError),
    /// The final flush after DISC (or end of stream) failed: data may not be durable.
    #[error("final flush failed")]
    Flush(#[source] blob::Error),
}

/// The export a source presents.
pub fn export_of<S: BlockSource>(src: &S, config: &ServerConfig) -> Export {
    let mut flags = tflags::HAS_FLAGS | tflags::SEND_FLUSH | tflags::SEND_FUA;
    if src.read_only() {
        flags |= tflags::READ_ONLY;
    } else {
        flags |= tflags::SEND_WRITE_ZEROES;
    }
    Export {
        size: src.size(),
        flags,
        preferred_block: config.preferred_block,
    }
}

/// Run the handshake. `Ok(true)` = enter transmission, `Ok(false)` = the client left.
pub fn negotiate<T: Read + Write>(conn: &mut T, export: &Export) -> Result<bool, ServeError> {
    conn.write_all(&proto::greeting())?;
    conn.flush()?;
    let mut f = [0u8; 4];
    conn.read_exact(&mut f)?;
    let no_zeroes = proto::parse_client_flags(f)?;
    loop {
        let mut h = [0u8; 16];
        match conn.read_exact(&mut h) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        let (option, len) = proto::parse_option_header(h)?;
        if len > proto::MAX_OPTION_LEN {
            // Drain it, say so, and carry on: the length is attacker-controlled, so never allocate it.
            io::copy(
                &mut Read::by_ref(conn).take(u64::from(len)),
                &mut io::sink(),
            )?;
            conn.write_all(&proto::option_reply(option, proto::rep::ERR_TOO_BIG, b""))?;
            continue;
        }
        let mut data = vec![0u8; usize::try_from(len).unwrap_or(0)];
        conn.read_exact(&mut data)?;
        let out = proto::handle_option(option, &data, export, no_zeroes);
        conn.write_all(&out.reply)?;
        conn.flush()?;
        match out.next {
            Next::Continue => {}
            Next::Transmit => return Ok(true),
            Next::Close => return Ok(false),
        }
    }
}

struct Job {
    req: Request,
    payload: Vec<u8>,
}

/// Serve one connection until DISC or end of stream. The source is flushed before returning.
pub fn serve<S: BlockSource, T: Stream>(
    src: &S,
    mut conn: T,
    config: &ServerConfig,
) -> Result<(), ServeError> {
    let export = export_of(src, config);
    if !negotiate(&mut conn, &export)? {
        return Ok(());
    }
    serve_transmission(src, conn, config)
}

/// Serve the transmission phase only: the kernel's NBD client (attached with ioctls, see [`super::kernel`])
/// starts there, without a handshake. The source is flushed before returning.
pub fn serve_transmission<S: BlockSource, T: Stream>(
    src: &S,
    mut conn: T,
    config: &ServerConfig,
) -> Result<(), ServeError> {
    crate::io_flusher::set_io_flusher();
    let writer = Mutex::new(conn.try_clone()?);
    let (tx, rx) = sync_channel::<Job>(config.workers.max(1) * 2);
    let rx = Mutex::new(rx);
    let result = std::thread::scope(|s| {
        for _ in 0..config.workers.max(1) {
            s.spawn(|| worker(src, &rx, &writer, config.sever_on_panic));
        }
        let r = read_loop(&mut conn, &tx);
        drop(tx);
        r
    });
    let flushed = if src.read_only() {
        Ok(())
    } else {
        src.flush().map_err(ServeError::Flush)
    };
    result.and(flushed)
}

fn read_loop<T: Stream>(
    conn: &mut T,
    tx: &std::sync::mpsc::SyncSender<Job>,
) -> Result<(), ServeError> {
    loop {
        let mut h = [0u8; proto::REQUEST_LEN];
        match conn.read_exact(&mut h) {
            Ok(()) => {}
            // The client went away without DISC: treat like DISC.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        let req = match proto::parse_request(&h) {
            Ok(r) => r,
            Err(e) => {
                conn.shutdown_both();
                return Err(e.into());
            }
        };
        if req.cmd == Cmd::Disc {
            return Ok(());
        }
        let mut payload = Vec::new();
        if req.cmd == Cmd::Write {
            if req.len > proto::MAX_PAYLOAD {
                io::copy(
                    &mut Read::by_ref(conn).take(u64::from(req.len)),
                    &mut io::sink(),
                )?;
            } else {
                payload = vec![0u8; usize::try_from(req.len).unwrap_or(0)];
                conn.read_exact(&mut payload)?;
            }
        }
        if tx.send(Job { req, payload }).is_err() {
            return Ok(());
        }
    }
}

/// A worker keeps its buffer (replies; READ data from a source that does not lend its own) between
/// requests up to this size (the kernel's requests are at most `max_sectors_kb`, 1280 KiB by default): no
/// allocation, page faults or zero-filling per request.
const KEEP_REPLY_BUFFER: usize = 2 << 20;

fn worker<S: BlockSource, T: Stream>(
    src: &S,
    rx: &Mutex<Receiver<Job>>,
    writer: &Mutex<T>,
    sever_on_panic: bool,
) {
    crate::io_flusher::set_io_flusher();
    let mut buf = Vec::new();
    loop {
        let job = {
            let rx = rx.lock().unwrap_or_else(PoisonError::into_inner);
            rx.recv()
        };
        let Ok(job) = job else { return };
        let out = match catch_unwind(AssertUnwindSafe(|| execute(src, &job, &mut buf, writer))) {
            Ok(out) => out,
            Err(p) if sever_on_panic => {
                log::error!(
                    "nbd: {:?} of {} bytes at {} panicked ({}); dropping the connection so that the kernel \
                     sends it again to a restarted server",
                    job.req.cmd,
                    job.req.len,
                    job.req.offset,
                    crate::errors::panic_message(&*p)
                );
                writer
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .shutdown_both();
                return;
            }
            Err(p) => {
                log_failure(&job.req, &blob::panic_error(&*p));
                Outcome::Reply(reply_into(&mut buf, job.req.cookie, Err(Errno::Io), 0))
            }
        };
        let sent = match out {
            Outcome::Reply(n) => {
                let mut w = writer.lock().unwrap_or_else(PoisonError::into_inner);
                w.write_all(&buf[..n]).and_then(|()| w.flush())
            }
            Outcome::Sent(r) => r,
        };
        if sent.is_err() {
            // The reader notices through the shut-down socket.
            writer
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .shutdown_both();
            return;
        }
        if buf.len() > KEEP_REPLY_BUFFER {
            buf = Vec::new();
        }
    }
}

/// What [`execute`] did.
enum Outcome {
    /// The reply is `out[..n]`, still to be sent.
    Reply(usize),
    /// The reply was sent (a READ's data straight from the source's buffers), with this result.
    Sent(io::Result<()>),
}

/// Write a READ reply: the header, then the data slices, under the writer's lock.
fn send_read<T: Stream>(writer: &Mutex<T>, header: &[u8; 16], data: &[&[u8]]) -> io::Result<()> {
    let mut slices: Vec<io::IoSlice<'_>> = Vec::with_capacity(1 + data.len());
    slices.push(io::IoSlice::new(header));
    slices.extend(data.iter().map(|d| io::IoSlice::new(d)));
    let mut rest = &mut slices[..];
    let mut w = writer.lock().unwrap_or_else(PoisonError::into_inner);
    while !rest.is_empty() {
        match w.write_vectored(rest) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => io::IoSlice::advance_slices(&mut rest, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    w.flush()
}

/// Run `job`: a READ's reply is sent from here (its data lent by the source, not copied); any other
/// reply is put in `out[..n]` for the caller to send.
fn execute<S: BlockSource, T: Stream>(
    src: &S,
    job: &Job,
    out: &mut Vec<u8>,
    writer: &Mutex<T>,
) -> Outcome {
    let req = &job.req;
    let mut fail = |e| Outcome::Reply(reply_into(out, req.cookie, Err(e), 0));
    if let Check::Fail(e) = proto::check_request(req, src.size(), src.read_only()) {
        return fail(e);
    }
    let fua = req.flags & proto::CMD_FLAG_FUA != 0;
    let r = match req.cmd {
        Cmd::Read => {
            let len = usize::try_from(req.len).unwrap_or(0);
            let header = proto::simple_reply(req.cookie, None);
            let mut sent = Ok(());
            let r = src.read_lend(req.offset, len, out, &mut |data| {
                sent = send_read(writer, &header, data);
            });
            return match r {
                Ok(()) => Outcome::Sent(sent),
                Err(e) => {
                    log_failure(req, &e);
                    Outcome::Reply(reply_into(out, req.cookie, Err(errno_of(&e, false)), 0))
                }
            };
        }
        Cmd::Write if fua => src.write_at_fua(req.offset, &job.payload),
        Cmd::Write => src.write_at(req.offset, &job.payload),
        Cmd::Flush => src.flush(),
        // Not advertised; advisory anyway: succeed without discarding anything.
        Cmd::Trim => Ok(()),
        Cmd::WriteZeroes => write_zeroes(src, req.offset, u64::from(req.len), fua),
        Cmd::Disc | Cmd::Other(_) => Ok(()),
    };
    match r {
        Ok(()) => Outcome::Reply(reply_into(out, req.cookie, Ok(()), 0)),
        Err(e) => {
            log_failure(req, &e);
            fail(errno_of(&e, true))
        }
    }
}

fn write_zeroes<S: BlockSource>(src: &S, offset: u64, len: u64, fua: bool) -> blob::Result<()> {
    const CHUNK: u64 = 1 << 20;
    let zeros = vec![0u8; usize::try_from(CHUNK.min(len)).unwrap_or(0)];
    let mut at = offset;
    while at < offset + len {
        let n = CHUNK.min(offset + len - at);
        src.write_at(at, &zeros[..usize::try_from(n).unwrap_or(0)])?;
        at += n;
    }
    if fua {
        src.flush()?;
    }
    Ok(())
}

/// Write a simple reply header into `out[..16]`, make room for `data_len` bytes of data after it (grown
/// parts are zeroed; reused parts keep old bytes, which the caller overwrites), and return `16 + data_len`.
fn reply_into(out: &mut Vec<u8>, cookie: u64, r: Result<(), Errno>, data_len: usize) -> usize {
    let n = 16 + data_len;
    if out.len() < n {
        out.resize(n, 0);
    }
    out[..16].copy_from_slice(&proto::simple_reply(cookie, r.err()));
    n
}

/// The errno for a backend error.
pub fn errno_of(e: &blob::Error, write: bool) -> Errno {
    match e {
        blob::Error::OutOfRange { .. } if write => Errno::NoSpc,
        blob::Error::OutOfRange { .. } | blob::Error::Unaligned { .. } => Errno::Inval,
        blob::Error::ReadOnly => Errno::Perm,
        _ => Errno::Io,
    }
}

fn log_failure(req: &Request, e: &blob::Error) {
    static LIMIT: RateLimit = RateLimit::new(Duration::from_secs(1));
    if let Some(skipped) = LIMIT.check() {
        log::error!(
            "NBD {:?} {}+{} failed: {}{}",
            req.cmd,
            req.offset,
            req.len,
            crate::errors::chain(e),
            if skipped > 0 {
                format!(" ({skipped} more errors suppressed)")
            } else {
                String::new()
            }
        );
    }
}
