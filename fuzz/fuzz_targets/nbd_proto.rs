//! Fuzz the NBD server side of the wire: the fixed-newstyle handshake and the request decoder.
//!
//! The first byte picks the export (size, read-only) and where the rest goes:
//! - bit 0 clear: the rest is what a client sends from the start of a connection. It is fed to the real
//!   `server::negotiate` (client flags, options: EXPORT_NAME, LIST, INFO, GO, ABORT, unknown, oversized);
//!   when negotiation enters transmission, the bytes left are read as the request stream below;
//! - bit 0 set: the rest is the request stream: 28-byte headers (`parse_request`), each judged by
//!   `check_request`, a WRITE followed by its payload, as the server's read loop consumes them.
//!
//! Checked: no panic, and every header that parses re-encodes to the same 28 bytes (`encode_request`).
#![no_main]

use encfs_init::nbd::proto::{self, Check, Cmd, Export, REQUEST_LEN};
use encfs_init::nbd::server::negotiate;
use libfuzzer_sys::fuzz_target;
use std::io::{self, Read, Write};

/// A connection whose client side is the fuzz input; what the server writes is kept, bounded.
struct Conn<'a> {
    input: &'a [u8],
    written: usize,
}

impl Read for Conn<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.input.read(buf)
    }
}

impl Write for Conn<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.written += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn requests(mut rest: &[u8], export: &Export) {
    let read_only = export.flags & proto::tflags::READ_ONLY != 0;
    while rest.len() >= REQUEST_LEN {
        let (head, tail) = rest.split_at(REQUEST_LEN);
        let Ok(req) = proto::parse_request(head) else {
            // The server closes the connection on a malformed header.
            return;
        };
        assert_eq!(&proto::encode_request(&req)[..], head, "request round trip");
        let check = proto::check_request(&req, export.size, read_only);
        if let Check::Fail(e) = check {
            let _ = proto::simple_reply(req.cookie, Some(e));
        }
        if req.cmd == Cmd::Disc {
            return;
        }
        rest = tail;
        if req.cmd == Cmd::Write {
            // The payload follows the header whether or not the request is refused (the server drains it).
            let n = usize::try_from(req.len)
                .unwrap_or(usize::MAX)
                .min(rest.len());
            rest = &rest[n..];
        }
    }
    let _ = proto::parse_request(rest);
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let size = match (sel >> 1) & 3 {
        0 => 0,
        1 => 1 << 20,
        2 => (1 << 40) + 512,
        _ => u64::MAX,
    };
    let mut flags = proto::tflags::HAS_FLAGS | proto::tflags::SEND_FLUSH | proto::tflags::SEND_FUA;
    if sel & 8 != 0 {
        flags |= proto::tflags::READ_ONLY;
    } else {
        flags |= proto::tflags::SEND_WRITE_ZEROES;
    }
    let export = Export {
        size,
        flags,
        preferred_block: 4096,
    };
    if sel & 1 == 0 {
        let mut conn = Conn {
            input: rest,
            written: 0,
        };
        if let Ok(true) = negotiate(&mut conn, &export) {
            requests(conn.input, &export);
        }
    } else {
        requests(rest, &export);
    }
});
