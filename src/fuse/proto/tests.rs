//! Decoding tests of the FUSE wire format.

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
