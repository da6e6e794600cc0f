//! The fake MAA's own report check (`support::snp_check`): it accepts what the real service accepts and
//! refuses each thing the real service refuses, without the product's verifier. Reports come from the
//! product's fake attester signing with the fake VCEK's key, as in the key-release tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod support;

use encfs_init::attest::fake::{FakeAttester, Template};
use encfs_init::attest::Attester;
use std::time::SystemTime;
use support::pki::{self, AmdChain};
use support::rig::{template, CHIP};
use support::snp_check::check;

const TCB: (u8, u8, u8, u8) = (4, 0, 0x18, 0xdb);

fn report(amd: &AmdChain, t: Template) -> Vec<u8> {
    FakeAttester::new(amd.vcek_key.clone(), t)
        .report(&[9; 64])
        .expect("fake report")
        .report
}

fn refused(report: &[u8], pem: &str, ark: &[u8], why: &str) {
    match check(report, pem.as_bytes(), ark, SystemTime::now()) {
        Ok(_) => panic!("accepted, but should be refused: {why}"),
        Err(e) => assert!(e.contains(why), "refused with `{e}`, expected `{why}`"),
    }
}

#[test]
fn a_good_report_is_accepted_with_its_claims() {
    let amd = pki::amd_chain(&CHIP, TCB);
    let r = report(&amd, template());
    let c = check(&r, amd.pem.as_bytes(), &amd.ark_der, SystemTime::now()).expect("accepted");
    assert_eq!(c.report_data, [9; 64]);
    assert_eq!(c.host_data, template().host_data);
    assert_eq!(c.vmpl, 0);
    assert!(!c.debuggable);
}

#[test]
fn a_changed_signed_byte_is_refused() {
    let amd = pki::amd_chain(&CHIP, TCB);
    let mut r = report(&amd, template());
    r[0xC0] ^= 1; // host_data
    refused(&r, &amd.pem, &amd.ark_der, "not signed by the VCEK");
}

#[test]
fn a_report_from_another_vcek_is_refused() {
    let amd = pki::amd_chain(&CHIP, TCB);
    let other = pki::amd_chain(&CHIP, TCB);
    let r = report(&other, template());
    refused(&r, &amd.pem, &amd.ark_der, "not signed by the VCEK");
}

#[test]
fn a_chain_to_another_root_is_refused() {
    let amd = pki::amd_chain(&CHIP, TCB);
    let other = pki::amd_chain(&CHIP, TCB);
    let r = report(&other, template());
    refused(&r, &other.pem, &amd.ark_der, "does not end in the AMD root");
}

#[test]
fn a_vcek_not_signed_by_the_ask_is_refused() {
    let amd = pki::amd_chain(&CHIP, TCB);
    let other = pki::amd_chain(&CHIP, TCB);
    // The other chain's VCEK, then this chain's ASK and ARK.
    let first = other.pem.find("-----END CERTIFICATE-----").unwrap() + 26;
    let rest = amd.pem.find("-----END CERTIFICATE-----").unwrap() + 26;
    let pem = format!("{}{}", &other.pem[..first], &amd.pem[rest..]);
    let r = report(&other, template());
    refused(&r, &pem, &amd.ark_der, "SEV-VCEK");
}

#[test]
fn a_vcek_for_another_chip_or_tcb_is_refused() {
    let amd = pki::amd_chain(&[0x17; 64], TCB);
    refused(
        &report(&amd, template()),
        &amd.pem,
        &amd.ark_der,
        "another chip",
    );
    let amd = pki::amd_chain(&CHIP, (4, 0, 0x17, 0xdb));
    refused(
        &report(&amd, template()),
        &amd.pem,
        &amd.ark_der,
        "another snp SPL",
    );
    let amd = pki::amd_chain(&CHIP, (4, 0, 0x18, 0xd0));
    refused(
        &report(&amd, template()),
        &amd.pem,
        &amd.ark_der,
        "another ucode SPL",
    );
}

#[test]
fn the_debug_policy_bit_reaches_the_claims() {
    let amd = pki::amd_chain(&CHIP, TCB);
    let t = Template {
        policy: template().policy | 1 << 19,
        ..template()
    };
    let c = check(
        &report(&amd, t),
        amd.pem.as_bytes(),
        &amd.ark_der,
        SystemTime::now(),
    )
    .unwrap();
    assert!(c.debuggable);
}

#[test]
fn a_truncated_report_or_a_chain_outside_its_validity_is_refused() {
    let amd = pki::amd_chain(&CHIP, TCB);
    let r = report(&amd, template());
    refused(&r[..1000], &amd.pem, &amd.ark_der, "1000 bytes");
    // The fake chain is valid from 1975 on: 1970 is before it.
    let e = check(&r, amd.pem.as_bytes(), &amd.ark_der, SystemTime::UNIX_EPOCH)
        .err()
        .expect("refused");
    assert!(e.contains("validity"), "{e}");
}
