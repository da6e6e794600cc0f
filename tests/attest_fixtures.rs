//! The SNP parser and verifier against upstream's real captured data (../shared/fixtures/upstream).
#![allow(clippy::unwrap_used, clippy::expect_used)]
use encfs_init::attest::report::Report;
use encfs_init::attest::uvm::{decode_b64, ThimCerts};
use encfs_init::attest::verify::{self, VerifyError, AMD_ARK_PINS};
use encfs_init::hex::encode as hex;
use encfs_init::x509::Cert;
use sha2::{Digest, Sha256};
use std::time::{Duration, SystemTime};

const FIX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures/upstream");

fn read(p: &str) -> Vec<u8> {
    std::fs::read(format!("{FIX}/{p}")).unwrap_or_else(|e| panic!("{FIX}/{p}: {e}"))
}

/// A time inside every fixture certificate's validity.
fn when() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

#[test]
#[ignore = "needs ../shared/fixtures"]
fn v2_report_verifies_against_its_vcek_chain() {
    let r = Report::parse(&read("attest/snp_report.bin")).unwrap();
    assert_eq!(r.version, 2);
    assert_eq!(r.reported_tcb, 0x7308000000000003);
    assert_eq!(r.reported().ucode, 0x73);
    assert_eq!(r.reported().snp, 8);
    assert_eq!(r.reported().bl, 3);
    assert_eq!(r.policy, 0x3001f);
    assert_eq!(r.vmpl, 0);
    assert!(r.chip_id_hex().starts_with("b12164b4"));
    let certs = Cert::from_pem_chain(&read("attest/uvm_host_amd_certificate.pem")).unwrap();
    let product = verify::verify_report(&r, &certs, AMD_ARK_PINS, when()).unwrap();
    assert_eq!(product, "Milan");
}

#[test]
#[ignore = "needs ../shared/fixtures"]
fn v2_report_data_and_host_data() {
    let r = Report::parse(&read("attest/snp_report.bin")).unwrap();
    let runtime = b"{\n   \"akey\" : \"avalue\"\n}\n";
    assert_eq!(r.report_data[..32], Sha256::digest(runtime)[..]);
    assert_eq!(r.report_data[32..], [0u8; 32]);
    let policy =
        decode_b64(&String::from_utf8(read("attest/uvm_security_policy.base64")).unwrap()).unwrap();
    assert_eq!(r.host_data[..], Sha256::digest(&policy)[..]);
    assert!(hex(&r.host_data).starts_with("cadd74f7"));
}

#[test]
#[ignore = "needs ../shared/fixtures"]
fn thim_json_matches_the_pem_and_the_tcb() {
    let t = ThimCerts::parse(&read("attest/uvm_host_amd_certificate.json")).unwrap();
    assert_eq!(t.tcbm().unwrap(), 0x7308000000000003);
    let certs = Cert::from_pem_chain(t.pem_chain().as_bytes()).unwrap();
    assert_eq!(certs.len(), 3);
    let r = Report::parse(&read("attest/snp_report.bin")).unwrap();
    verify::verify_report(&r, &certs, AMD_ARK_PINS, when()).unwrap();
}

#[test]
#[ignore = "needs ../shared/fixtures"]
fn v3_vcek_has_ucode_spl_0xdb_and_verifies() {
    let r = Report::parse(&read("vectors/certfetcher_report_v3.bin")).unwrap();
    assert_eq!(r.version, 3);
    assert_eq!(r.reported_tcb, 0xdb18000000000004);
    let certs = Cert::from_pem_chain(&read("vectors/certfetcher_chain.pem")).unwrap();
    let chain = verify::verify_chain(&certs, AMD_ARK_PINS, when()).unwrap();
    let tcb = verify::cert_tcb(&chain.leaf, r.tcb_layout()).unwrap();
    assert_eq!(
        tcb.ucode, 0xdb,
        "02 02 00 DB must read as 0xDB (upstream bug)"
    );
    assert_eq!((tcb.snp, tcb.tee, tcb.bl), (0x18, 0, 4));
    assert_eq!(tcb.raw, r.reported_tcb);
    verify::verify_report(&r, &certs, AMD_ARK_PINS, when()).unwrap();
}

#[test]
#[ignore = "needs ../shared/fixtures"]
fn tampering_is_caught_and_named() {
    let raw = read("attest/snp_report.bin");
    let certs = Cert::from_pem_chain(&read("attest/uvm_host_amd_certificate.pem")).unwrap();
    // Any signed byte.
    let mut t = raw.clone();
    t[0x90] ^= 1;
    let e = verify::verify_report(&Report::parse(&t).unwrap(), &certs, AMD_ARK_PINS, when())
        .unwrap_err();
    assert_eq!(e, VerifyError::ReportSignature);
    // The other chip's VCEK.
    let other = Cert::from_pem_chain(&read("vectors/certfetcher_chain.pem")).unwrap();
    let e = verify::verify_report(&Report::parse(&raw).unwrap(), &other, AMD_ARK_PINS, when())
        .unwrap_err();
    assert_eq!(e, VerifyError::ReportSignature);
    // TCB: the v3 chain's TCB against the v2 report (checked directly).
    let chain = verify::verify_chain(&other, AMD_ARK_PINS, when()).unwrap();
    let e = verify::check_tcb_and_chip(&Report::parse(&raw).unwrap(), &chain.leaf).unwrap_err();
    assert!(
        matches!(
            e,
            VerifyError::TcbMismatch {
                field: "ucode",
                report: 0x73,
                cert: 0xdb,
                ..
            }
        ),
        "{e}"
    );
    // No pins → untrusted root.
    let e = verify::verify_chain(&certs, &[], when()).unwrap_err();
    assert!(
        matches!(e, VerifyError::UntrustedRoot { ref cn, .. } if cn == "ARK-Milan"),
        "{e}"
    );
    // Missing ASK.
    let e = verify::verify_chain(&[certs[0].clone(), certs[2].clone()], AMD_ARK_PINS, when())
        .unwrap_err();
    assert!(
        matches!(e, VerifyError::MissingIssuer { ref of } if of == "SEV-VCEK"),
        "{e}"
    );
    // Expired.
    let late = SystemTime::UNIX_EPOCH + Duration::from_secs(4_000_000_000);
    let e = verify::verify_chain(&certs, AMD_ARK_PINS, late).unwrap_err();
    assert!(matches!(e, VerifyError::Expired { .. }), "{e}");
}

#[test]
#[ignore = "needs ../shared/fixtures"]
fn security_context_dir_parses() {
    use encfs_init::attest::uvm;
    let env =
        |k: &str| (k == "UVM_SECURITY_CONTEXT_DIR").then(|| format!("{FIX}/security-context"));
    let info = uvm::load(&env, std::path::Path::new("/nonexistent")).unwrap();
    let certs = info.host_certs.unwrap();
    assert_eq!(certs.tcbm().unwrap(), 0x7308000000000003);
    assert_eq!(
        Cert::from_pem_chain(certs.pem_chain().as_bytes())
            .unwrap()
            .len(),
        3
    );
    assert!(String::from_utf8(info.policy.unwrap())
        .unwrap()
        .contains("package policy"));
    assert_eq!(info.reference_info.unwrap()[0], 0xd2, "COSE_Sign1 tag 18");
}
