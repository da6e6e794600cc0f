//! Serving the one-file FUSE filesystem: each serving thread reads requests from its own `/dev/fuse` fd
//! (a clone of the connection where the kernel allows it) and answers them on the same fd.
//!
//! Contract:
//! - the root directory holds one regular file, `disk`, of the source's fixed size (0600, 0400 when
//!   read-only); names and attributes are cached by the kernel for a year, since they never change;
//! - READ lends the source's blocks straight into the reply (one `writev`); WRITE writes through to the
//!   source (no writeback cache in the kernel: the loop device's writes reach us before they complete);
//! - FSYNC and FLUSH are answered only after the source's `flush` returned, that is after the blob service
//!   acknowledged every dirty range; the read cache is kept (unlike upstream, which purged it);
//! - STATFS reports 4096-byte blocks; size changes, mode and owner changes, namespace changes and
//!   everything else are refused (`EPERM`, `EROFS` on a read-only filesystem, `ENOSYS`);
//! - a request whose serving thread panicked is kept in that thread's [`Slot`]: the successor the keeper
//!   starts serves it again; if it panics a second time, it is answered `EIO` (no crash loop).
#![forbid(unsafe_code)]

use super::proto::{self, errno, op, Attr, Request};
use crate::blob::{self, BlockSource};
use crate::ratelimit::RateLimit;
use std::fs::File;
use std::io::{self, IoSlice, Read, Write};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// A request is tried this many times (by a thread and its successors) before it is answered `EIO`.
pub const MAX_ATTEMPTS: u32 = 2;

/// What every serving thread of one filesystem shares.
pub struct Shared {
    /// The source.
    pub src: Arc<dyn BlockSource>,
    /// Refuse writes.
    pub read_only: bool,
    /// Bytes per WRITE, as negotiated (the read buffer must hold one WRITE).
    pub max_write: u32,
    /// Fault injection: this many READ or WRITE requests panic.
    pub panics: AtomicU32,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("size", &self.src.size())
            .field("read_only", &self.read_only)
            .field("max_write", &self.max_write)
            .finish_non_exhaustive()
    }
}

/// One serving thread's place: its `/dev/fuse` fd (the kernel pairs a reply with a request read from the
/// same fd, so a successor keeps it) and the request it is serving.
#[derive(Debug)]
pub struct Slot {
    /// The fd.
    pub dev: File,
    state: Mutex<SlotState>,
}

#[derive(Debug, Default)]
struct SlotState {
    buf: Vec<u8>,
    len: usize,
    /// 0: no request held; n: the request in `buf[..len]` was started n times.
    attempts: u32,
    scratch: Vec<u8>,
}

impl Slot {
    /// A slot reading from `dev`.
    pub fn new(dev: File) -> Self {
        Slot {
            dev,
            state: Mutex::new(SlotState::default()),
        }
    }
}

/// How a serving thread ended.
#[derive(Debug)]
pub enum End {
    /// The connection is gone (unmounted or aborted): nothing more to serve.
    Gone,
    /// Reading from or writing to `/dev/fuse` failed.
    Io(io::Error),
}

/// Serve requests from `slot` until the connection goes away. First serves the request a predecessor held,
/// if any (see the module docs). A panic while serving leaves the request in the slot and ends the thread.
pub fn serve(sh: &Shared, slot: &Slot) -> End {
    crate::io_flusher::set_io_flusher();
    let mut guard = slot.state.lock().unwrap_or_else(PoisonError::into_inner);
    let st = &mut *guard;
    // A WRITE's header, its `fuse_write_in` and max_write bytes, with room to spare.
    let need = usize::try_from(sh.max_write).unwrap_or(1 << 20) + 4096;
    if st.buf.len() < need {
        st.buf.resize(need, 0);
    }
    if st.attempts >= MAX_ATTEMPTS {
        let unique = proto::le_u64(&st.buf[..st.len], 8).unwrap_or(0);
        log::error!(
            "fuse: a request (opcode {}) crashed its serving thread {} times; answering EIO",
            proto::le_u32(&st.buf[..st.len], 4).unwrap_or(0),
            st.attempts
        );
        st.attempts = 0;
        send(&slot.dev, &[&proto::error_reply(unique, errno::EIO)]);
    } else if st.attempts > 0 {
        st.attempts += 1;
        handle(sh, &slot.dev, &st.buf[..st.len], &mut st.scratch);
    }
    loop {
        st.attempts = 0;
        let n = match (&slot.dev).read(&mut st.buf) {
            Ok(n) => n,
            Err(e) => match e.raw_os_error() {
                // A request that was interrupted and went away, or a signal.
                Some(nix::libc::ENOENT | nix::libc::EINTR | nix::libc::EAGAIN) => continue,
                Some(nix::libc::ENODEV) => return End::Gone,
                _ => return End::Io(e),
            },
        };
        st.len = n;
        st.attempts = 1;
        handle(sh, &slot.dev, &st.buf[..n], &mut st.scratch);
        if st.scratch.len() > 2 << 20 {
            st.scratch = Vec::new();
        }
    }
}

/// Send one reply in one `writev` (the kernel takes a reply only whole). A request that was interrupted
/// meanwhile (`ENOENT`) needs no answer; other errors are logged (the connection is then going away).
fn send(dev: &File, parts: &[&[u8]]) {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let slices: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
    match (&*dev).write_vectored(&slices) {
        Ok(n) if n == total => {}
        Ok(n) => log_error(&format!("reply: {n} of {total} bytes written")),
        Err(e) if e.raw_os_error() == Some(nix::libc::ENOENT) => {}
        Err(e) if e.raw_os_error() == Some(nix::libc::ENODEV) => {}
        Err(e) => log_error(&format!("reply: {e}")),
    }
}

fn ok(dev: &File, unique: u64, body: &[u8]) {
    send(dev, &[&proto::out_header(unique, 0, body.len()), body]);
}

fn fail(dev: &File, unique: u64, e: i32) {
    send(dev, &[&proto::error_reply(unique, e)]);
}

fn log_error(msg: &str) {
    static LIMIT: RateLimit = RateLimit::new(Duration::from_secs(1));
    if let Some(skipped) = LIMIT.check() {
        if skipped > 0 {
            log::error!("fuse: {msg} ({skipped} more errors suppressed)");
        } else {
            log::error!("fuse: {msg}");
        }
    }
}

/// The errno for a source error.
fn errno_of(e: &blob::Error, write: bool) -> i32 {
    match e {
        blob::Error::OutOfRange { .. } if write => errno::ENOSPC,
        blob::Error::OutOfRange { .. } | blob::Error::Unaligned { .. } => errno::EINVAL,
        blob::Error::ReadOnly => errno::EROFS,
        _ => errno::EIO,
    }
}

/// Operations that would change the namespace, attributes or allocation: refused as not permitted (or
/// read-only), not as unknown, so that nobody mistakes them for a missing feature.
const MUTATING: &[u32] = &[
    6,  // SYMLINK
    8,  // MKNOD
    9,  // MKDIR
    10, // UNLINK
    11, // RMDIR
    12, // RENAME
    13, // LINK
    21, // SETXATTR
    24, // REMOVEXATTR
    35, // CREATE
    45, // RENAME2
    51, // TMPFILE
];

/// Answer one request (INIT is answered before the serving threads start; a second one is a protocol
/// error).
fn handle(sh: &Shared, dev: &File, msg: &[u8], scratch: &mut Vec<u8>) {
    let (h, req) = match proto::parse(msg) {
        Ok(r) => r,
        Err(e) => {
            log_error(&format!("malformed request: {e}"));
            // The unique is at bytes 8..16 when there are that many: answer it so nothing waits.
            if let Some(unique) = proto::le_u64(msg, 8) {
                fail(dev, unique, errno::EIO);
            }
            return;
        }
    };
    let size = sh.src.size();
    let file = Attr::file(size, sh.read_only);
    let u = h.unique;
    if matches!(req, Request::Read { .. } | Request::Write { .. })
        && sh
            .panics
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    {
        panic!("fault injection: a serving thread panics while it holds request {u}");
    }
    match req {
        Request::Init { .. } => fail(dev, u, errno::EPROTO),
        Request::Lookup { name } if h.nodeid == proto::ROOT_ID && name == proto::FILE_NAME => {
            ok(dev, u, &proto::entry_out(&file));
        }
        Request::Lookup { .. } => fail(dev, u, errno::ENOENT),
        // No reply: FORGET has none, and an interrupted request is answered when it completes.
        Request::Forget | Request::Interrupt => {}
        Request::Getattr if h.nodeid == proto::ROOT_ID => {
            ok(dev, u, &proto::attr_out(&Attr::root()));
        }
        Request::Getattr if h.nodeid == proto::FILE_ID => ok(dev, u, &proto::attr_out(&file)),
        Request::Getattr => fail(dev, u, errno::ENOENT),
        Request::Setattr { valid, size: new } => {
            let changes_size = valid & proto::fattr::SIZE != 0 && new != size;
            let changes_owner =
                valid & (proto::fattr::MODE | proto::fattr::UID | proto::fattr::GID) != 0;
            if h.nodeid != proto::FILE_ID || changes_size || changes_owner {
                fail(
                    dev,
                    u,
                    if sh.read_only {
                        errno::EROFS
                    } else {
                        errno::EPERM
                    },
                );
            } else {
                // Times only (or the size it already has): nothing to change, the attributes stay.
                ok(dev, u, &proto::attr_out(&file));
            }
        }
        Request::Open { flags } if h.nodeid == proto::FILE_ID => {
            let access = flags & 3;
            if sh.read_only && access != 0 {
                fail(dev, u, errno::EROFS);
            } else if flags & u32::try_from(nix::libc::O_TRUNC).unwrap_or(0) != 0 && size > 0 {
                fail(dev, u, errno::EPERM);
            } else {
                ok(dev, u, &proto::open_out(proto::FOPEN_KEEP_CACHE));
            }
        }
        Request::Open { .. } => fail(dev, u, errno::EACCES),
        Request::Read { offset, size: n } if h.nodeid == proto::FILE_ID => {
            // Past the end: a short (or empty) read, as for any file.
            let len = u64::from(n).min(size.saturating_sub(offset));
            let len = usize::try_from(len).unwrap_or(0);
            if len == 0 {
                ok(dev, u, &[]);
                return;
            }
            let header = proto::out_header(u, 0, len);
            let r = sh.src.read_lend(offset, len, scratch, &mut |data| {
                let mut parts: Vec<&[u8]> = Vec::with_capacity(1 + data.len());
                parts.push(&header);
                parts.extend_from_slice(data);
                send(dev, &parts);
            });
            if let Err(e) = r {
                log_error(&format!(
                    "READ {offset}+{len}: {}",
                    crate::errors::chain(&e)
                ));
                fail(dev, u, errno_of(&e, false));
            }
        }
        Request::Write { offset, data } if h.nodeid == proto::FILE_ID => {
            let len = u64::try_from(data.len()).unwrap_or(u64::MAX);
            if sh.read_only {
                fail(dev, u, errno::EROFS);
            } else if offset.checked_add(len).is_none_or(|end| end > size) {
                // The size is fixed: a write may not grow the file.
                fail(dev, u, errno::ENOSPC);
            } else {
                match sh.src.write_at(offset, data) {
                    Ok(()) => ok(
                        dev,
                        u,
                        &proto::write_out(u32::try_from(data.len()).unwrap_or(0)),
                    ),
                    Err(e) => {
                        log_error(&format!(
                            "WRITE {offset}+{len}: {}",
                            crate::errors::chain(&e)
                        ));
                        fail(dev, u, errno_of(&e, true));
                    }
                }
            }
        }
        Request::Read { .. } | Request::Write { .. } => fail(dev, u, errno::EBADF),
        Request::Statfs => ok(dev, u, &proto::statfs_out(size)),
        Request::Release | Request::Destroy => ok(dev, u, &[]),
        // Durable before we answer: every dirty range acknowledged by the blob service. Never ENOSYS: the
        // kernel would stop sending them and answer later fsyncs itself.
        Request::Fsync { .. } | Request::Flush => {
            if sh.read_only {
                ok(dev, u, &[]);
            } else {
                match sh.src.flush() {
                    Ok(()) => ok(dev, u, &[]),
                    Err(e) => {
                        log_error(&format!("flush: {}", crate::errors::chain(&e)));
                        fail(dev, u, errno::EIO);
                    }
                }
            }
        }
        Request::Other(code) if MUTATING.contains(&code) => fail(
            dev,
            u,
            if sh.read_only {
                errno::EROFS
            } else {
                errno::EPERM
            },
        ),
        Request::Other(code) => {
            if code == op::OPENDIR || code == op::RELEASEDIR {
                log::debug!("fuse: directory listing refused");
            }
            fail(dev, u, errno::ENOSYS);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    struct Zero(u64, bool);

    impl BlockSource for Zero {
        fn size(&self) -> u64 {
            self.0
        }
        fn read_only(&self) -> bool {
            self.1
        }
        fn read_at(&self, offset: u64, buf: &mut [u8]) -> blob::Result<()> {
            blob::check_range(offset, buf.len() as u64, self.0)?;
            buf.fill(7);
            Ok(())
        }
        fn write_at(&self, offset: u64, data: &[u8]) -> blob::Result<()> {
            blob::check_range(offset, data.len() as u64, self.0)
        }
        fn flush(&self) -> blob::Result<()> {
            Ok(())
        }
    }

    fn request(opcode: u32, unique: u64, nodeid: u64, body: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&u32::try_from(40 + body.len()).unwrap().to_le_bytes());
        m.extend_from_slice(&opcode.to_le_bytes());
        m.extend_from_slice(&unique.to_le_bytes());
        m.extend_from_slice(&nodeid.to_le_bytes());
        m.extend_from_slice(&[0u8; 16]);
        m.extend_from_slice(body);
        m
    }

    /// Answer `msg` and return the reply's (len, error, unique) and body, read back through a pipe.
    fn answer(read_only: bool, msg: &[u8]) -> Option<((u32, i32, u64), Vec<u8>)> {
        let sh = Shared {
            src: Arc::new(Zero(1 << 20, read_only)),
            read_only,
            max_write: 1 << 20,
            panics: AtomicU32::new(0),
        };
        let (r, w) = nix::unistd::pipe().unwrap();
        let (mut r, w) = (File::from(r), File::from(w));
        handle(&sh, &w, msg, &mut Vec::new());
        drop(w);
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        let h = proto::parse_out_header(&out)?;
        assert_eq!(usize::try_from(h.0).unwrap(), out.len(), "reply length");
        Some((h, out[16..].to_vec()))
    }

    #[test]
    fn every_request_gets_the_answer_its_contract_says() {
        use proto::{FILE_ID, ROOT_ID};
        let lookup = |name: &[u8]| request(op::LOOKUP, 3, ROOT_ID, &[name, b"\0"].concat());
        assert_eq!(answer(false, &lookup(b"disk")).unwrap().1.len(), 128);
        assert_eq!(
            answer(false, &lookup(b"other")).unwrap().0 .1,
            -errno::ENOENT
        );
        // Malformed: answered EIO with its unique, so nothing waits.
        let mut bad = request(op::READ, 99, FILE_ID, &[0u8; 40]);
        bad.truncate(50);
        bad[0..4].copy_from_slice(&50u32.to_le_bytes());
        assert_eq!(answer(false, &bad).unwrap().0, (16, -errno::EIO, 99));
        // Unknown: ENOSYS; changing the namespace: EPERM, or EROFS when read-only.
        assert_eq!(
            answer(false, &request(27, 4, ROOT_ID, &[0u8; 8]))
                .unwrap()
                .0
                 .1,
            -errno::ENOSYS
        );
        assert_eq!(
            answer(false, &request(10, 4, ROOT_ID, b"disk\0"))
                .unwrap()
                .0
                 .1,
            -errno::EPERM
        );
        assert_eq!(
            answer(true, &request(35, 4, ROOT_ID, &[0u8; 20]))
                .unwrap()
                .0
                 .1,
            -errno::EROFS
        );
        // SETATTR: a size change refused, a time change answered with the unchanged attributes.
        let mut setattr = [0u8; 88];
        setattr[0..4].copy_from_slice(&proto::fattr::SIZE.to_le_bytes());
        assert_eq!(
            answer(false, &request(op::SETATTR, 5, FILE_ID, &setattr))
                .unwrap()
                .0
                 .1,
            -errno::EPERM
        );
        setattr[0..4].copy_from_slice(&(1u32 << 5).to_le_bytes());
        let (h, body) = answer(false, &request(op::SETATTR, 5, FILE_ID, &setattr)).unwrap();
        assert_eq!(h.1, 0);
        assert_eq!(
            proto::le_u64(&body, 16 + 8),
            Some(1 << 20),
            "size unchanged"
        );
        // OPEN for writing on a read-only filesystem.
        let open_rw = request(op::OPEN, 6, FILE_ID, &2u64.to_le_bytes());
        assert_eq!(answer(true, &open_rw).unwrap().0 .1, -errno::EROFS);
        assert_eq!(answer(false, &open_rw).unwrap().0 .1, 0);
        // READ: data, short at the end; WRITE past the end: ENOSPC; read-only: EROFS.
        let mut read_in = [0u8; 40];
        read_in[8..16].copy_from_slice(&((1u64 << 20) - 100).to_le_bytes());
        read_in[16..20].copy_from_slice(&4096u32.to_le_bytes());
        let (h, body) = answer(false, &request(op::READ, 7, FILE_ID, &read_in)).unwrap();
        assert_eq!((h.1, body.len()), (0, 100));
        assert!(body.iter().all(|&b| b == 7));
        let mut write_in = vec![0u8; 40];
        write_in[8..16].copy_from_slice(&((1u64 << 20) - 2).to_le_bytes());
        write_in[16..20].copy_from_slice(&4u32.to_le_bytes());
        write_in.extend_from_slice(b"abcd");
        let w = request(op::WRITE, 8, FILE_ID, &write_in);
        assert_eq!(answer(false, &w).unwrap().0 .1, -errno::ENOSPC);
        assert_eq!(answer(true, &w).unwrap().0 .1, -errno::EROFS);
        // STATFS: f_bsize 4096. FORGET and INTERRUPT: no reply at all.
        let (_, st) = answer(false, &request(op::STATFS, 9, ROOT_ID, &[])).unwrap();
        assert_eq!(proto::le_u32(&st, 40), Some(4096));
        assert!(answer(false, &request(op::FORGET, 10, FILE_ID, &[0u8; 8])).is_none());
        assert!(answer(false, &request(op::INTERRUPT, 11, 0, &[0u8; 8])).is_none());
        // FSYNC and FLUSH: success after the source's flush; a second INIT: EPROTO.
        assert_eq!(
            answer(false, &request(op::FSYNC, 12, FILE_ID, &[0u8; 16]))
                .unwrap()
                .0
                 .1,
            0
        );
        assert_eq!(
            answer(false, &request(op::INIT, 13, 0, &[0u8; 64]))
                .unwrap()
                .0
                 .1,
            -errno::EPROTO
        );
    }
}
