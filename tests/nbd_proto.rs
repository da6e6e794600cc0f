//! The NBD wire protocol: handshake and transmission over an in-process socketpair with a raw client,
//! plus parser round trips on random requests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use encfs_init::blob::{BlockSource, Result};
use encfs_init::nbd::proto::{self, opt, rep, tflags, Cmd, Errno, Request};
use encfs_init::nbd::{serve, ServerConfig};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::Mutex;

struct Mem(Mutex<Vec<u8>>, bool);

impl BlockSource for Mem {
    fn size(&self) -> u64 {
        self.0.lock().unwrap().len() as u64
    }
    fn read_only(&self) -> bool {
        self.1
    }
    fn read_at(&self, o: u64, b: &mut [u8]) -> Result<()> {
        encfs_init::blob::check_range(o, b.len() as u64, self.size())?;
        b.copy_from_slice(&self.0.lock().unwrap()[o as usize..o as usize + b.len()]);
        Ok(())
    }
    fn write_at(&self, o: u64, d: &[u8]) -> Result<()> {
        if self.1 {
            return Err(encfs_init::blob::Error::ReadOnly);
        }
        encfs_init::blob::check_range(o, d.len() as u64, self.size())?;
        self.0.lock().unwrap()[o as usize..o as usize + d.len()].copy_from_slice(d);
        Ok(())
    }
    fn flush(&self) -> Result<()> {
        Ok(())
    }
}

/// A socketpair whose server end times out, so a failed assertion cannot leave the server blocked.
fn pair() -> (UnixStream, UnixStream) {
    let (c, s) = UnixStream::pair().unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    c.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    (c, s)
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_be_bytes(b[i..i + 4].try_into().unwrap())
}

fn send_opt(c: &mut UnixStream, option: u32, data: &[u8]) {
    c.write_all(&proto::IHAVEOPT.to_be_bytes()).unwrap();
    c.write_all(&option.to_be_bytes()).unwrap();
    c.write_all(&(data.len() as u32).to_be_bytes()).unwrap();
    c.write_all(data).unwrap();
}

/// Read one option reply: (option, type, data).
fn read_opt_reply(c: &mut UnixStream) -> (u32, u32, Vec<u8>) {
    let mut h = [0u8; 20];
    c.read_exact(&mut h).unwrap();
    assert_eq!(
        u64::from_be_bytes(h[..8].try_into().unwrap()),
        proto::OPT_REPLY_MAGIC
    );
    let mut d = vec![0u8; u32_at(&h, 16) as usize];
    c.read_exact(&mut d).unwrap();
    (u32_at(&h, 8), u32_at(&h, 12), d)
}

fn go_payload() -> Vec<u8> {
    let mut p = 0u32.to_be_bytes().to_vec();
    p.extend_from_slice(&1u16.to_be_bytes());
    p.extend_from_slice(&proto::info::BLOCK_SIZE.to_be_bytes());
    p
}

fn request(
    c: &mut UnixStream,
    cmd: Cmd,
    flags: u16,
    cookie: u64,
    offset: u64,
    len: u32,
    data: &[u8],
) {
    let r = Request {
        flags,
        cmd,
        cookie,
        offset,
        len,
    };
    c.write_all(&proto::encode_request(&r)).unwrap();
    c.write_all(data).unwrap();
}

fn reply(c: &mut UnixStream) -> (u32, u64) {
    let mut h = [0u8; 16];
    c.read_exact(&mut h).unwrap();
    assert_eq!(u32_at(&h, 0), proto::SIMPLE_REPLY_MAGIC);
    (
        u32_at(&h, 4),
        u64::from_be_bytes(h[8..].try_into().unwrap()),
    )
}

#[test]
fn handshake_options_then_transmission() {
    let src = Mem(
        Mutex::new((0..=255u8).cycle().take(1 << 20).collect()),
        false,
    );
    let (mut c, s) = pair();
    std::thread::scope(|scope| {
        let h = scope.spawn(|| serve(&src, s, &ServerConfig::default()));
        let mut g = [0u8; 18];
        c.read_exact(&mut g).unwrap();
        assert_eq!(g, proto::greeting());
        c.write_all(&3u32.to_be_bytes()).unwrap(); // FIXED_NEWSTYLE | NO_ZEROES
                                                   // Unknown option → ERR_UNSUP, and negotiation goes on.
        send_opt(&mut c, 8, &[]);
        assert_eq!(read_opt_reply(&mut c).1, rep::ERR_UNSUP);
        // LIST: one (default) export, then ACK; LIST with data is invalid.
        send_opt(&mut c, opt::LIST, &[]);
        assert_eq!(
            read_opt_reply(&mut c),
            (opt::LIST, rep::SERVER, vec![0, 0, 0, 0])
        );
        assert_eq!(read_opt_reply(&mut c).1, rep::ACK);
        send_opt(&mut c, opt::LIST, b"x");
        assert_eq!(read_opt_reply(&mut c).1, rep::ERR_INVALID);
        // INFO: export info + block size, ACK, still negotiating; a malformed INFO is invalid.
        send_opt(&mut c, opt::INFO, &go_payload());
        let (_, t, d) = read_opt_reply(&mut c);
        assert_eq!(t, rep::INFO);
        assert_eq!(u64::from_be_bytes(d[2..10].try_into().unwrap()), 1 << 20);
        let flags = u16::from_be_bytes([d[10], d[11]]);
        assert_eq!(flags & tflags::READ_ONLY, 0);
        assert_ne!(flags & tflags::SEND_FUA, 0);
        assert_eq!(read_opt_reply(&mut c).1, rep::INFO);
        assert_eq!(read_opt_reply(&mut c).1, rep::ACK);
        send_opt(&mut c, opt::INFO, &[0, 0]);
        assert_eq!(read_opt_reply(&mut c).1, rep::ERR_INVALID);
        // GO.
        send_opt(&mut c, opt::GO, &go_payload());
        for expect in [rep::INFO, rep::INFO, rep::ACK] {
            assert_eq!(read_opt_reply(&mut c).1, expect);
        }
        // Pipelined requests; replies may come in any order, matched by cookie.
        request(&mut c, Cmd::Write, proto::CMD_FLAG_FUA, 1, 4096, 4, b"abcd");
        request(&mut c, Cmd::Flush, 0, 2, 0, 0, &[]);
        request(&mut c, Cmd::Read, 0, 3, (1 << 20) - 2, 4, &[]); // past the end
        request(&mut c, Cmd::Other(99), 0, 4, 0, 0, &[]);
        request(&mut c, Cmd::Write, 0, 5, 1 << 20, 1, b"z"); // past the end
        request(&mut c, Cmd::WriteZeroes, 0, 6, 8, 8, &[]);
        let mut got = std::collections::HashMap::new();
        for _ in 0..6 {
            let (e, cookie) = reply(&mut c);
            got.insert(cookie, e);
        }
        assert_eq!(got[&1], 0);
        assert_eq!(got[&2], 0);
        assert_eq!(got[&3], Errno::Inval as u32);
        assert_eq!(got[&4], Errno::Inval as u32);
        assert_eq!(got[&5], Errno::NoSpc as u32);
        assert_eq!(got[&6], 0);
        request(&mut c, Cmd::Read, 0, 7, 4094, 8, &[]);
        assert_eq!(reply(&mut c), (0, 7));
        let mut d = [0u8; 8];
        c.read_exact(&mut d).unwrap();
        assert_eq!(&d, &[254, 255, b'a', b'b', b'c', b'd', 4, 5]);
        let mut z = [1u8; 8];
        src.read_at(8, &mut z).unwrap();
        assert_eq!(z, [0; 8]);
        request(&mut c, Cmd::Disc, 0, 8, 0, 0, &[]);
        h.join().unwrap().unwrap();
    });
}

#[test]
fn read_only_exports_refuse_writes_with_eperm_and_export_name_works() {
    let src = Mem(Mutex::new(vec![7u8; 8192]), true);
    let (mut c, s) = pair();
    std::thread::scope(|scope| {
        let h = scope.spawn(|| serve(&src, s, &ServerConfig::default()));
        let mut g = [0u8; 18];
        c.read_exact(&mut g).unwrap();
        c.write_all(&1u32.to_be_bytes()).unwrap(); // FIXED_NEWSTYLE, zeroes wanted
        send_opt(&mut c, opt::EXPORT_NAME, b"anything");
        let mut r = [0u8; 10 + 124];
        c.read_exact(&mut r).unwrap();
        assert_eq!(u64::from_be_bytes(r[..8].try_into().unwrap()), 8192);
        let flags = u16::from_be_bytes([r[8], r[9]]);
        assert_ne!(flags & tflags::READ_ONLY, 0);
        assert_eq!(flags & tflags::SEND_WRITE_ZEROES, 0);
        assert!(r[10..].iter().all(|&b| b == 0));
        request(&mut c, Cmd::Write, 0, 1, 0, 3, b"xyz");
        assert_eq!(reply(&mut c), (Errno::Perm as u32, 1));
        request(&mut c, Cmd::Trim, 0, 2, 0, 512, &[]);
        assert_eq!(reply(&mut c), (Errno::Perm as u32, 2));
        // A bad magic closes the connection.
        c.write_all(&[0u8; 28]).unwrap();
        assert!(h.join().unwrap().is_err());
    });
    assert_eq!(src.0.lock().unwrap()[..3], [7, 7, 7]);
}

#[test]
fn clients_without_fixed_newstyle_and_abort_are_handled() {
    let src = Mem(Mutex::new(vec![0u8; 4096]), false);
    let (mut c, s) = pair();
    std::thread::scope(|scope| {
        let h = scope.spawn(|| serve(&src, s, &ServerConfig::default()));
        c.read_exact(&mut [0u8; 18]).unwrap();
        c.write_all(&0u32.to_be_bytes()).unwrap();
        assert!(h.join().unwrap().is_err());
    });
    let (mut c, s) = pair();
    std::thread::scope(|scope| {
        let h = scope.spawn(|| serve(&src, s, &ServerConfig::default()));
        c.read_exact(&mut [0u8; 18]).unwrap();
        c.write_all(&3u32.to_be_bytes()).unwrap();
        send_opt(&mut c, opt::ABORT, &[]);
        assert_eq!(read_opt_reply(&mut c).1, rep::ACK);
        h.join().unwrap().unwrap();
    });
}

#[test]
fn request_parsing_round_trips_and_rejects_bad_input() {
    let mut x = 0x1234_5678_9abc_def1u64;
    for _ in 0..10_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let r = Request {
            flags: x as u16,
            cmd: match (x >> 16) % 8 {
                0 => Cmd::Read,
                1 => Cmd::Write,
                2 => Cmd::Disc,
                3 => Cmd::Flush,
                4 => Cmd::Trim,
                6 => Cmd::WriteZeroes,
                n => Cmd::Other(n as u16 + 100),
            },
            cookie: x.rotate_left(7),
            offset: x.rotate_left(19),
            len: (x >> 32) as u32,
        };
        let b = proto::encode_request(&r);
        assert_eq!(proto::parse_request(&b), Ok(r));
        assert_eq!(
            proto::parse_request(&b[..27]),
            Err(proto::ProtoError::Short)
        );
        let mut long = b.to_vec();
        long.push(0);
        assert_eq!(
            proto::parse_request(&long),
            Err(proto::ProtoError::Trailing)
        );
        let mut bad = b;
        bad[0] ^= 1;
        assert_eq!(proto::parse_request(&bad), Err(proto::ProtoError::BadMagic));
        // check_request never panics and never lets an out-of-range READ through.
        let c = proto::check_request(&r, 1 << 30, false);
        if r.cmd == Cmd::Read
            && r.offset
                .checked_add(r.len as u64)
                .is_none_or(|e| e > 1 << 30)
        {
            assert_ne!(c, proto::Check::Ok);
        }
    }
}
