//! Model test: random valid parameters → our writer → our reader must give back exactly those parameters
//! and the volume key (the writer's output is checked against cryptsetup in `image_create.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use encfs_init::luks2::format::{build, FormatParams, NewKdf, AREA_OFFSET, DATA_OFFSET};
use encfs_init::luks2::{self, Argon2Variant, Hash, Header, Kdf, Priority, SegmentSize};

fn rand_u32() -> u32 {
    getrandom::u32().unwrap()
}

#[test]
fn random_valid_headers_round_trip() {
    for i in 0..12 {
        let key_size = if rand_u32() % 2 == 0 { 32 } else { 64 };
        let sector_size = if rand_u32() % 2 == 0 { 512 } else { 4096 };
        let kdf = if i % 4 == 3 {
            NewKdf::Argon2id {
                time: 4,
                memory_kib: 64 + rand_u32() % 64,
                cpus: 1 + rand_u32() % 2,
            }
        } else {
            NewKdf::Pbkdf2 {
                iterations: 1000 + rand_u32() % 1000,
            }
        };
        let mut vk = vec![0u8; key_size];
        getrandom::fill(&mut vk).unwrap();
        let pass: Vec<u8> = (0..1 + rand_u32() % 64).map(|_| rand_u32() as u8).collect();
        let mut rng = |b: &mut [u8]| getrandom::fill(b);
        let buf = build(&vk, &pass, &FormatParams { kdf, sector_size }, &mut rng).unwrap();
        assert_eq!(buf.len() as u64, DATA_OFFSET);

        let h = Header::parse(&buf).unwrap();
        assert!(h.warnings.is_empty());
        assert_eq!((h.binary.hdr_size, h.binary.seqid), (16384, 1));
        assert_eq!(h.binary.uuid.len(), 36);
        let s = &h.segment;
        assert_eq!(
            (s.cipher.as_str(), s.key_size, s.sector_size),
            ("aes-xts-plain64", key_size, sector_size)
        );
        assert_eq!(
            (s.offset, s.size, s.iv_tweak),
            (DATA_OFFSET, SegmentSize::Dynamic, 0)
        );
        let [k] = h.keyslots.as_slice() else {
            panic!("{:?}", h.keyslots)
        };
        assert_eq!(
            (k.id, k.priority, k.key_size, k.bound),
            (0, Priority::Normal, key_size, true)
        );
        assert_eq!(
            (k.area_offset, k.area_size % 4096, k.stripes, k.af_hash),
            (AREA_OFFSET, 0, 4000, Hash::Sha256)
        );
        match (kdf, &k.kdf) {
            (
                NewKdf::Pbkdf2 { iterations },
                Kdf::Pbkdf2 {
                    hash,
                    iterations: got,
                    salt,
                },
            ) => {
                assert_eq!((*hash, *got, salt.len()), (Hash::Sha256, iterations, 32))
            }
            (
                NewKdf::Argon2id {
                    time,
                    memory_kib,
                    cpus,
                },
                Kdf::Argon2 {
                    variant,
                    time: t,
                    memory_kib: m,
                    cpus: c,
                    ..
                },
            ) => {
                assert_eq!(
                    (*variant, *t, *m, *c),
                    (Argon2Variant::Argon2id, time, memory_kib, cpus)
                )
            }
            (want, got) => panic!("{want:?} vs {got:?}"),
        }
        let got = luks2::unlock(&buf, &pass).unwrap();
        assert_eq!((got.expose(), got.keyslot()), (vk.as_slice(), 0));
        // (Not `pass + [0]`: HMAC zero-pads short keys, so PBKDF2 cannot tell those apart; nor can cryptsetup.)
        let mut wrong = pass.clone();
        wrong[0] ^= 0x80;
        assert!(luks2::unlock(&buf, &wrong).is_err());
    }
}
