//! The mutation table: a valid header (made by our writer, which cryptsetup accepts: see
//! `image_create.rs`) is changed one way at a time, and each change must be refused with its own error
//! naming the field. Mutations of the JSON rewrite both copies and recompute their checksums, so they get
//! past the binary checks and reach the semantic ones.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod luks2_util;

use encfs_init::luks2::binary::fix_checksum;
use encfs_init::luks2::cost::{Memory, WORK_BUDGET_NS};
use encfs_init::luks2::format::{build, FormatParams, NewKdf, AREA_OFFSET};
use encfs_init::luks2::{self, Copy, Error, Header, Limits};
use luks2_util::Scratch;
use serde_json::{json, Value};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

const HS: usize = 16384;
const PASS: &[u8] = b"0123456789abcdef0123456789abcdef";

fn base() -> Vec<u8> {
    let mut seed = 1u8;
    let mut rng = |b: &mut [u8]| -> Result<(), getrandom::Error> {
        for x in b.iter_mut() {
            seed = seed.wrapping_mul(31).wrapping_add(7);
            *x = seed;
        }
        Ok(())
    };
    let key: Vec<u8> = (0..64u8).collect();
    let p = FormatParams {
        kdf: NewKdf::Pbkdf2 { iterations: 1000 },
        sector_size: 4096,
    };
    let mut buf = build(&key, PASS, &p, &mut rng).unwrap();
    buf.resize(buf.len() + (1 << 20), 0);
    buf
}

fn json_of(buf: &[u8], copy: usize) -> Value {
    let area = &buf[copy * HS + 4096..(copy + 1) * HS];
    let end = area.iter().position(|&b| b == 0).unwrap();
    serde_json::from_slice(&area[..end]).unwrap()
}

fn put_json(buf: &mut [u8], copy: usize, text: &[u8]) {
    let area = &mut buf[copy * HS + 4096..(copy + 1) * HS];
    area.fill(0);
    area[..text.len()].copy_from_slice(text);
    fix_checksum(buf, copy * HS, HS);
}

/// Apply `f` to the JSON of both copies.
fn both(buf: &mut [u8], f: impl Fn(&mut Value)) {
    for c in 0..2 {
        let mut v = json_of(buf, c);
        f(&mut v);
        put_json(buf, c, &serde_json::to_vec(&v).unwrap());
    }
}

fn set_u64(buf: &mut [u8], at: usize, v: u64, fix: bool) {
    buf[at..at + 8].copy_from_slice(&v.to_be_bytes());
    if fix {
        let off = at / HS * HS;
        fix_checksum(buf, off, HS);
    }
}

/// Parse, then what the boot and `image check` do (place on the device, unlock within the limits): the
/// first error.
fn open(buf: &[u8]) -> Result<Header, Error> {
    let h = Header::parse(buf)?;
    h.open_device(
        buf.len() as u64,
        PASS,
        &Limits::for_this_machine(),
        |off, len| luks2::reader::slice(buf, off, len, "keyslot area").map(<[u8]>::to_vec),
    )?;
    Ok(h)
}

fn field(e: &Error) -> Option<&str> {
    match e {
        Error::Json { field, .. }
        | Error::Range { field, .. }
        | Error::Cipher { field, .. }
        | Error::Hash { field, .. }
        | Error::Type { field, .. }
        | Error::KeySize { field, .. }
        | Error::SectorSize { field, .. }
        | Error::Stripes { field, .. }
        | Error::Offset { field, .. }
        | Error::NotSupported { field, .. }
        | Error::Reference { field, .. } => Some(field),
        _ => None,
    }
}

type Mutation = Box<dyn Fn(&mut Vec<u8>)>;
type Expect = Box<dyn Fn(&Error) -> bool>;

fn m(f: impl Fn(&mut Vec<u8>) + 'static) -> Mutation {
    Box::new(f)
}
fn j(f: impl Fn(&mut Value) + 'static) -> Mutation {
    Box::new(move |b: &mut Vec<u8>| both(b, &f))
}
fn is(want: Error) -> Expect {
    Box::new(move |e| *e == want)
}
fn at(variant: &'static str, f: &'static str) -> Expect {
    Box::new(move |e| field(e) == Some(f) && format!("{e:?}").starts_with(variant))
}
fn both_bad(p: Error, s: Error) -> Expect {
    is(Error::BothCopiesBad {
        primary: Box::new(p),
        secondary: Box::new(s),
    })
}

fn seg(v: &mut Value) -> &mut Value {
    &mut v["segments"]["0"]
}
fn ks(v: &mut Value) -> &mut Value {
    &mut v["keyslots"]["0"]
}

fn cases() -> Vec<(&'static str, Mutation, Expect)> {
    use Copy::{Primary as P, Secondary as S};
    vec![
        (
            "bad magic, both copies",
            m(|b| {
                b[0] = b'X';
                b[HS] = b'X';
            }),
            both_bad(Error::BadMagic(P), Error::BadMagic(S)),
        ),
        (
            "version 1, both copies",
            m(|b| {
                b[7] = 1;
                b[HS + 7] = 1;
                fix_checksum(b, 0, HS);
                fix_checksum(b, HS, HS);
            }),
            both_bad(Error::Version(P, 1), Error::Version(S, 1)),
        ),
        (
            "hdr_size not a power of two, both",
            m(|b| {
                set_u64(b, 8, 12345, true);
                set_u64(b, HS + 8, 12345, true);
            }),
            both_bad(Error::HdrSize(P, 12345), Error::HdrSize(S, 12345)),
        ),
        (
            "checksum wrong in both copies",
            m(|b| {
                b[200] ^= 1;
                b[HS + 200] ^= 1;
            }),
            both_bad(Error::Checksum(P), Error::Checksum(S)),
        ),
        (
            "hdr_offset wrong in both copies",
            m(|b| {
                set_u64(b, 256, 4096, true);
                set_u64(b, HS + 256, 0, true);
            }),
            both_bad(
                Error::HdrOffset {
                    copy: P,
                    expected: 0,
                    found: 4096,
                },
                Error::HdrOffset {
                    copy: S,
                    expected: HS as u64,
                    found: 0,
                },
            ),
        ),
        (
            "checksum_alg sha1",
            m(|b| {
                for o in [72, HS + 72] {
                    b[o..o + 6].copy_from_slice(b"sha1\0\0");
                }
                fix_checksum(b, 0, HS);
                fix_checksum(b, HS, HS);
            }),
            both_bad(
                Error::ChecksumAlg(P, "sha1".into()),
                Error::ChecksumAlg(S, "sha1".into()),
            ),
        ),
        (
            "copies disagree at equal seqid",
            m(|b| {
                let mut v = json_of(b, 1);
                v["keyslots"]["0"]["priority"] = json!(2);
                put_json(b, 1, &serde_json::to_vec(&v).unwrap());
            }),
            is(Error::SeqidConflict(1)),
        ),
        (
            "JSON unterminated",
            m(|b| {
                for c in 0..2 {
                    let t = vec![b' '; HS - 4096];
                    put_json(b, c, &t);
                }
            }),
            both_bad(Error::JsonUnterminated(P), Error::JsonUnterminated(S)),
        ),
        (
            "garbage after the JSON's NUL",
            m(|b| {
                b[HS - 1] = b'x';
                b[2 * HS - 1] = b'x';
                fix_checksum(b, 0, HS);
                fix_checksum(b, HS, HS);
            }),
            both_bad(Error::JsonPadding(P), Error::JsonPadding(S)),
        ),
        (
            "JSON syntax error",
            m(|b| {
                for c in 0..2 {
                    put_json(b, c, b"{\"keyslots\":");
                }
            }),
            at("Json", "json"),
        ),
        (
            "JSON claims a larger area (json_size)",
            j(|v| v["config"]["json_size"] = json!("65536")),
            at("Range", "config.json_size"),
        ),
        (
            "keyslots_size beyond 128 MiB",
            j(|v| v["config"]["keyslots_size"] = json!("268435456")),
            at("Range", "config.keyslots_size"),
        ),
        (
            "cipher_null in the segment",
            j(|v| seg(v)["encryption"] = json!("cipher_null-ecb")),
            at("Cipher", "segments.0.encryption"),
        ),
        (
            "cipher_null in a keyslot area",
            j(|v| ks(v)["area"]["encryption"] = json!("cipher_null-ecb")),
            at("Cipher", "keyslots.0.area.encryption"),
        ),
        (
            "aes-cbc-essiv segment",
            j(|v| seg(v)["encryption"] = json!("aes-cbc-essiv:sha256")),
            at("Cipher", "segments.0.encryption"),
        ),
        (
            "aes-xts-plain (32-bit IV) segment",
            j(|v| seg(v)["encryption"] = json!("aes-xts-plain")),
            at("Cipher", "segments.0.encryption"),
        ),
        (
            "unknown KDF",
            j(|v| ks(v)["kdf"]["type"] = json!("scrypt")),
            at("Type", "keyslots.0.kdf.type"),
        ),
        (
            "PBKDF2 with md5",
            j(|v| ks(v)["kdf"]["hash"] = json!("md5")),
            at("Hash", "keyslots.0.kdf.hash"),
        ),
        (
            "PBKDF2 with 10 iterations",
            j(|v| ks(v)["kdf"]["iterations"] = json!(10)),
            at("Range", "keyslots.0.kdf.iterations"),
        ),
        (
            "argon2id with 8 GiB",
            j(
                |v| ks(v)["kdf"] = json!({"type": "argon2id", "time": 4, "memory": 8u64 << 20, "cpus": 1, "salt": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}),
            ),
            at("Range", "keyslots.0.kdf.memory"),
        ),
        (
            "salt not base64",
            j(|v| ks(v)["kdf"]["salt"] = json!("!!!!")),
            at("Json", "keyslots.0.kdf.salt"),
        ),
        (
            "AF hash whirlpool",
            j(|v| ks(v)["af"]["hash"] = json!("whirlpool")),
            at("Hash", "keyslots.0.af.hash"),
        ),
        (
            "stripes 0",
            j(|v| ks(v)["af"]["stripes"] = json!(0)),
            at("Stripes", "keyslots.0.af.stripes"),
        ),
        (
            "keyslot key size 48",
            j(|v| ks(v)["key_size"] = json!(48)),
            at("KeySize", "keyslots.0.key_size"),
        ),
        (
            "area key size 16",
            j(|v| ks(v)["area"]["key_size"] = json!(16)),
            at("KeySize", "keyslots.0.area.key_size"),
        ),
        (
            "keyslot type reencrypt",
            j(|v| ks(v)["type"] = json!("reencrypt")),
            at("Type", "keyslots.0.type"),
        ),
        (
            "keyslot area inside the header copies",
            j(|v| ks(v)["area"]["offset"] = json!("4096")),
            at("Offset", "keyslots.0.area"),
        ),
        (
            "keyslot area past the keyslots area",
            j(|v| ks(v)["area"]["offset"] = json!("16773120")),
            at("Offset", "keyslots.0.area"),
        ),
        (
            "keyslot area too small for the stripes",
            j(|v| ks(v)["area"]["size"] = json!("4096")),
            at("Range", "keyslots.0.area.size"),
        ),
        (
            "two keyslot areas overlap",
            j(|v| {
                let k = v["keyslots"]["0"].clone();
                v["keyslots"]["1"] = k;
            }),
            is(Error::Overlap {
                a: "keyslots.0.area".into(),
                b: "keyslots.1.area".into(),
            }),
        ),
        (
            "segment inside the metadata",
            j(|v| seg(v)["offset"] = json!("16384")),
            at("Offset", "segments.0.offset"),
        ),
        (
            "segment starts past the device",
            j(|v| seg(v)["offset"] = json!("1073741824")),
            at("Offset", "segments.0.offset"),
        ),
        (
            "fixed segment size past the device",
            j(|v| seg(v)["size"] = json!("1073741824")),
            at("Offset", "segments.0.size"),
        ),
        (
            "segment offset with a sign",
            j(|v| seg(v)["offset"] = json!("+16777216")),
            at("Json", "segments.0"),
        ),
        (
            "sector size 1024",
            j(|v| seg(v)["sector_size"] = json!(1024)),
            at("SectorSize", "segments.0.sector_size"),
        ),
        (
            "integrity segment",
            j(
                |v| seg(v)["integrity"] = json!({"type": "hmac(sha256)", "journal_encryption": "none", "journal_integrity": "none"}),
            ),
            at("NotSupported", "segments.0.integrity"),
        ),
        (
            "reencryption segment flag",
            j(|v| seg(v)["flags"] = json!(["in-reencryption"])),
            at("NotSupported", "segments.0.flags"),
        ),
        (
            "linear segment",
            j(|v| seg(v)["type"] = json!("linear")),
            at("Type", "segments.0.type"),
        ),
        (
            "unknown segment field",
            j(|v| seg(v)["iv_large_sectors"] = json!(true)),
            at("Json", "segments.0"),
        ),
        (
            "two segments",
            j(|v| {
                let s = v["segments"]["0"].clone();
                v["segments"]["1"] = s;
            }),
            is(Error::SegmentCount(2)),
        ),
        (
            "two digests",
            j(|v| {
                let d = v["digests"]["0"].clone();
                v["digests"]["1"] = d;
            }),
            is(Error::DigestCount(2)),
        ),
        (
            "digest of a missing keyslot",
            j(|v| v["digests"]["0"]["keyslots"] = json!(["0", "7"])),
            at("Reference", "digests.0.keyslots"),
        ),
        (
            "no keyslot bound to the digest",
            j(|v| v["digests"]["0"]["keyslots"] = json!([])),
            at("Reference", "keyslots"),
        ),
        (
            "digest length wrong",
            j(|v| v["digests"]["0"]["digest"] = json!("AAAA")),
            at("Range", "digests.0.digest"),
        ),
        (
            "wrong digest",
            j(|v| {
                v["digests"]["0"]["digest"] = json!("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
            }),
            is(Error::NoKeyslotOpened { tried: vec![0] }),
        ),
        (
            "mandatory requirement",
            j(|v| v["config"]["requirements"] = json!({"mandatory": ["online-reencrypt-v2"]})),
            at("NotSupported", "config.requirements"),
        ),
        (
            "keyslot priority 7",
            j(|v| ks(v)["priority"] = json!(7)),
            at("Range", "keyslots.0.priority"),
        ),
        (
            "truncated to the primary header",
            m(|b| b.truncate(5000)),
            both_bad(
                Error::Truncated {
                    what: "header area",
                    need: HS as u64,
                    have: 5000,
                },
                Error::Truncated {
                    what: "binary header",
                    need: HS as u64 + 4096,
                    have: 5000,
                },
            ),
        ),
        (
            "device ends inside the metadata",
            m(|b| b.truncate(2 * HS + 4096)),
            at("Offset", "segments.0.offset"),
        ),
    ]
}

#[test]
fn the_base_header_opens() {
    let buf = base();
    let h = open(&buf).unwrap();
    assert!(h.warnings.is_empty());
    assert_eq!(
        luks2::unlock(&buf, PASS).unwrap().expose(),
        (0..64u8).collect::<Vec<_>>().as_slice()
    );
}

#[test]
fn every_mutation_is_refused_with_its_own_error() {
    let base = base();
    let cases = cases();
    assert!(cases.len() >= 25);
    let mut failures = Vec::new();
    for (name, mutate, expect) in &cases {
        let mut b = base.clone();
        mutate(&mut b);
        match open(&b) {
            Ok(_) => failures.push(format!("{name}: accepted")),
            Err(e) if expect(&e) => {
                let msg = e.to_string();
                assert!(!msg.is_empty() && msg.len() < 600, "{name}: {msg}");
            }
            Err(e) => failures.push(format!("{name}: wrong error {e:?}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// One bad copy is tolerated with a warning; which copy wins is observable through a JSON difference.
#[test]
fn one_bad_copy_is_tolerated_and_the_higher_seqid_wins() {
    let base = base();
    // Primary checksum broken: the secondary is used.
    let mut b = base.clone();
    b[300] ^= 1;
    let h = open(&b).unwrap();
    assert_eq!(h.binary.copy, Copy::Secondary);
    assert!(
        h.warnings[0].contains("primary header: checksum mismatch"),
        "{:?}",
        h.warnings
    );
    // Secondary bad magic: the primary is used.
    let mut b = base.clone();
    b[HS] = 0;
    let h = open(&b).unwrap();
    assert_eq!(h.binary.copy, Copy::Primary);
    assert!(h.warnings[0].contains("secondary"), "{:?}", h.warnings);
    // Primary with an invalid hdr_size: the secondary is found by scanning.
    let mut b = base.clone();
    set_u64(&mut b, 8, 999, true);
    assert_eq!(open(&b).unwrap().binary.copy, Copy::Secondary);
    // A newer secondary (seqid 2, priority high) wins over the primary (seqid 1).
    let mut b = base.clone();
    let mut v = json_of(&b, 1);
    v["keyslots"]["0"]["priority"] = json!(2);
    put_json(&mut b, 1, &serde_json::to_vec(&v).unwrap());
    set_u64(&mut b, HS + 16, 2, true);
    let h = open(&b).unwrap();
    assert_eq!((h.binary.copy, h.binary.seqid), (Copy::Secondary, 2));
    assert_eq!(h.keyslots[0].priority, luks2::Priority::High);
    assert!(
        h.warnings[0].contains("primary header is stale"),
        "{:?}",
        h.warnings
    );
    // A newer primary wins the same way.
    let mut b = base.clone();
    set_u64(&mut b, 16, 5, true);
    assert_eq!(open(&b).unwrap().binary.copy, Copy::Primary);
}

/// The two header copies are enough to parse; unlocking also needs the keyslot area.
#[test]
fn header_only_parses_but_unlock_needs_the_keyslot_area() {
    let base = base();
    let short = &base[..2 * HS];
    let h = Header::parse(short).unwrap();
    assert_eq!(h.metadata_end(), 16 << 20);
    match h.unlock(short, PASS).unwrap_err() {
        Error::Truncated {
            what: "keyslot area",
            need,
            have,
        } => {
            assert_eq!((need, have), (2 * HS as u64 + 256_000, 2 * HS as u64))
        }
        e => panic!("{e:?}"),
    }
}

/// `unlock_with` fetches only the material of the keyslots it tries.
#[test]
fn unlock_with_reads_only_the_keyslot_material() {
    let base = base();
    let h = Header::parse(&base[..2 * HS]).unwrap();
    let mut reads = Vec::new();
    let vk = h
        .unlock_with(PASS, |off, len| {
            reads.push((off, len));
            Ok(base[off as usize..(off + len) as usize].to_vec())
        })
        .unwrap();
    assert_eq!(vk.keyslot(), 0);
    assert_eq!(reads, vec![(2 * HS as u64, 256_000)]);
    // A short read is refused, not padded.
    let e = h.unlock_with(PASS, |_, _| Ok(vec![0; 10])).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Truncated {
                what: "keyslot area",
                ..
            }
        ),
        "{e:?}"
    );
}

/// Keyslot 0 copied into keyslots 1..n (each its own area after the one before), all bound to the digest.
fn with_keyslots(buf: &mut [u8], n: u64) {
    both(buf, |v| {
        let k = v["keyslots"]["0"].clone();
        let size: u64 = k["area"]["size"].as_str().unwrap().parse().unwrap();
        let mut bound = vec![json!("0")];
        for i in 1..n {
            let mut c = k.clone();
            c["area"]["offset"] = json!((AREA_OFFSET + i * size).to_string());
            v["keyslots"][i.to_string()] = c;
            bound.push(json!(i.to_string()));
        }
        v["digests"]["0"]["keyslots"] = json!(bound);
    });
}

/// `f` on another thread; panics if it takes `limit` or more (the thread is left to the process's end).
fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let t = Instant::now();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    let out = rx
        .recv_timeout(limit)
        .unwrap_or_else(|_| panic!("still running after {limit:?}: it derives before checking"));
    assert!(t.elapsed() < limit);
    out
}

/// The audit's header: 8 bound keyslots and a digest at 10^8 PBKDF2 iterations, every field inside the
/// allowlist (it kept a wrong key busy for over 400 s).
fn eight_heavy_keyslots() -> Vec<u8> {
    let mut b = base();
    with_keyslots(&mut b, 8);
    both(&mut b, |v| {
        v["digests"]["0"]["iterations"] = json!(100_000_000)
    });
    b
}

/// Finding 4: the total unlock work is bounded, before anything is derived.
#[test]
fn unlock_work_over_the_budget_is_refused_before_deriving() {
    let buf = eight_heavy_keyslots();
    let h = Header::parse(&buf).unwrap();
    assert_eq!(h.try_order().len(), 8);
    let e = within(Duration::from_secs(1), move || {
        h.unlock(&buf, b"wrong key").unwrap_err()
    });
    match &e {
        Error::Work { fields, .. } => {
            assert_eq!(fields, "keyslots.0,1,2,3,4,5,6,7.kdf, digests.0.iterations")
        }
        e => panic!("{e:?}"),
    }
    let msg = e.to_string();
    assert!(
        msg.contains("digest checks at 100000000 iterations")
            && msg.contains("80.0 s of work, over the budget of 60.0 s"),
        "{msg}"
    );
    // The same header with one keyslot is inside the budget and opens.
    let mut one = base();
    both(&mut one, |v| v["digests"]["0"]["iterations"] = json!(1000));
    assert_eq!(luks2::unlock(&one, PASS).unwrap().keyslot(), 0);
    assert!(
        luks2::cost::unlock_ns(&Header::parse(&eight_heavy_keyslots()).unwrap()) > WORK_BUDGET_NS
    );
}

/// Finding 4: an Argon2 keyslot that needs more memory than the machine can spare is refused before the
/// allocation (which, for PID 1, ends in an abort or the machine's OOM).
#[test]
fn argon2_memory_beyond_the_machine_is_refused_before_allocating() {
    let mut buf = base();
    both(&mut buf, |v| {
        v["keyslots"]["0"]["kdf"] = json!({"type": "argon2id", "time": 4, "memory": 262144, "cpus": 1,
            "salt": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="})
    });
    let h = Header::parse(&buf).unwrap();
    let limits = Limits {
        memory: Memory::Fixed(131072),
        ..Limits::for_this_machine()
    };
    let e = within(Duration::from_secs(1), move || {
        h.unlock_within(PASS, &limits, |off, len| {
            luks2::reader::slice(&buf, off, len, "keyslot area").map(<[u8]>::to_vec)
        })
        .unwrap_err()
    });
    assert_eq!(
        e,
        Error::Memory {
            field: "keyslots.0.kdf.memory".into(),
            need_kib: 262144,
            have_kib: 131072
        }
    );
    assert!(
        e.to_string()
            .starts_with("keyslots.0.kdf.memory: argon2 needs 262144 KiB"),
        "{e}"
    );
}

/// Finding 4: no keyslot is started after the unlock's deadline; the ones left are named.
#[test]
fn no_keyslot_is_started_after_the_deadline() {
    let mut buf = base();
    with_keyslots(&mut buf, 3);
    let h = Header::parse(&buf).unwrap();
    let read = |off: u64, len: u64| {
        luks2::reader::slice(&buf, off, len, "keyslot area").map(<[u8]>::to_vec)
    };
    let late = Limits {
        deadline: Duration::ZERO,
        ..Limits::for_this_machine()
    };
    let e = h.unlock_within(b"wrong key", &late, read).unwrap_err();
    assert_eq!(
        e,
        Error::Deadline {
            tried: vec![0],
            untried: vec![1, 2],
            secs: 0
        }
    );
    assert!(
        e.to_string()
            .starts_with("keyslots: the key opened none of keyslots 0 within"),
        "{e}"
    );
    // Within the deadline every keyslot is tried.
    let e = h.unlock_with(b"wrong key", read).unwrap_err();
    assert_eq!(
        e,
        Error::NoKeyslotOpened {
            tried: vec![0, 1, 2]
        }
    );
}

fn image_check(s: &Scratch, buf: &[u8]) -> (Option<i32>, String, Duration) {
    let (img, key) = (s.path("img"), s.path("key"));
    std::fs::write(&img, buf).unwrap();
    std::fs::write(&key, PASS).unwrap();
    let t = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_encfs-init"))
        .args(["image", "check", "--key-file"])
        .arg(&key)
        .arg(&img)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    while child.try_wait().unwrap().is_none() {
        if t.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = child.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    (o.status.code(), text, t.elapsed())
}

/// Finding 12: `image check` refuses what the boot refuses, with the boot's error (both call
/// `Header::open_device`): here a data segment at 2^50 on a 32 MiB device, checksums valid.
#[test]
fn image_check_refuses_a_segment_past_the_device_as_the_boot_does() {
    let s = Scratch::new("check-offset");
    let mut buf = base();
    both(&mut buf, |v| {
        v["segments"]["0"]["offset"] = json!((1u64 << 50).to_string())
    });
    buf.resize(32 << 20, 0);
    let boot_error = Header::parse(&buf)
        .unwrap()
        .open_device(
            buf.len() as u64,
            PASS,
            &Limits::for_this_machine(),
            |_, _| panic!("nothing is read for a header the device cannot hold"),
        )
        .unwrap_err()
        .to_string();
    assert_eq!(
        boot_error,
        "segments.0.offset: 1125899906842624 is past the end of the 33554432-byte device"
    );
    let (code, text, _) = image_check(&s, &buf);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains(&format!("LUKS2 header refused: {boot_error}"))
            && !text.contains("opens keyslot"),
        "{text}"
    );
}

/// Finding 4 through the tool: `image check` refuses the audit's header at once, not after minutes.
#[test]
fn image_check_refuses_the_heavy_header_quickly() {
    let s = Scratch::new("check-heavy");
    let (code, text, took) = image_check(&s, &eight_heavy_keyslots());
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("LUKS2 header refused: keyslots.0,1,2,3,4,5,6,7.kdf, digests.0.iterations: unlocking costs too much"),
        "{text}"
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
}
