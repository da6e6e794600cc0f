//! The fake MAA's own check of an SEV-SNP attestation report and its VCEK chain, as the real service does it:
//! the chain VCEK ← ASK ← ARK ends in the ARK the fake AMD made, each certificate is in its validity period
//! and signed by the next, the VCEK's P-384 key signed the report, and the VCEK certifies the report's chip
//! and reported TCB.
//!
//! It is written from AMD's SEV-SNP ABI (the ATTESTATION_REPORT layout) and X.509 directly, and uses none of
//! the product's report parser, certificate wrapper or verifier, so that a bug there is not mirrored here and
//! hidden from the tests. Only what the fake AMD chain uses is supported: ECDSA P-384 with SHA-384 throughout.
use der::Encode;
use p384::ecdsa::signature::Verifier;
use p384::ecdsa::{Signature, VerifyingKey};
use std::time::SystemTime;
use x509_cert::Certificate;

/// The length of a report as the firmware returns it.
const REPORT_LEN: usize = 0x4A0;
/// The signature covers bytes `[0, SIGNED)`; R and S follow, little-endian, in 72-byte slots.
const SIGNED: usize = 0x2A0;
/// `signature_algo` 1: ECDSA P-384 with SHA-384.
const ECDSA_P384_SHA384: u32 = 1;
/// `ecdsa-with-SHA384`.
const OID_ECDSA_SHA384: &str = "1.2.840.10045.4.3.3";
/// AMD's VCEK extensions: the TCB components (`...1.3.N`) and the chip id (`...1.4`).
const OID_AMD_TCB: &str = "1.3.6.1.4.1.3704.1.3.";
const OID_AMD_HWID: &str = "1.3.6.1.4.1.3704.1.4";

/// What MAA puts into its token from a report it accepted.
pub struct Checked {
    pub report_data: [u8; 64],
    pub host_data: [u8; 32],
    pub vmpl: u32,
    pub debuggable: bool,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// One certificate's name for messages: its subject.
fn subject(c: &Certificate) -> String {
    c.tbs_certificate().subject().to_string()
}

/// The P-384 key of a certificate.
fn p384_key(c: &Certificate) -> Result<VerifyingKey, String> {
    let spki = c.tbs_certificate().subject_public_key_info();
    let bits = spki
        .subject_public_key
        .as_bytes()
        .ok_or_else(|| format!("{}: key bits are not whole bytes", subject(c)))?;
    VerifyingKey::from_sec1_bytes(bits).map_err(|_| format!("{}: not a P-384 key", subject(c)))
}

/// Whether `child` is signed by `parent`'s key and valid at `now`.
fn signed_by(child: &Certificate, parent: &Certificate, now: SystemTime) -> Result<(), String> {
    let name = subject(child);
    if child.signature_algorithm().oid.to_string() != OID_ECDSA_SHA384 {
        return Err(format!(
            "{name}: signature algorithm is not ecdsa-with-SHA384"
        ));
    }
    let tbs = child
        .tbs_certificate()
        .to_der()
        .map_err(|e| format!("{name}: {e}"))?;
    let sig = child
        .signature()
        .as_bytes()
        .and_then(|b| Signature::from_der(b).ok())
        .ok_or_else(|| format!("{name}: signature is not a DER ECDSA signature"))?;
    p384_key(parent)?
        .verify(&tbs, &sig)
        .map_err(|_| format!("{name}: not signed by {}", subject(parent)))?;
    let v = child.tbs_certificate().validity();
    if now < v.not_before.to_system_time() || now > v.not_after.to_system_time() {
        return Err(format!("{name}: outside its validity period"));
    }
    Ok(())
}

/// The value of one of AMD's small-integer TCB extensions (a DER INTEGER of 0..=255).
fn tcb_ext(vcek: &Certificate, n: u8) -> Result<u8, String> {
    let oid = format!("{OID_AMD_TCB}{n}");
    let raw = ext(vcek, &oid).ok_or_else(|| format!("VCEK has no extension {oid}"))?;
    match raw {
        [0x02, 0x01, v] if *v < 0x80 => Ok(*v),
        [0x02, 0x02, 0x00, v] if *v >= 0x80 => Ok(*v),
        _ => Err(format!("VCEK extension {oid} is not a small INTEGER")),
    }
}

fn ext<'a>(c: &'a Certificate, oid: &str) -> Option<&'a [u8]> {
    c.tbs_certificate()
        .extensions()?
        .iter()
        .find(|e| e.extn_id.to_string() == oid)
        .map(|e| e.extn_value.as_bytes())
}

/// Check `report` (raw bytes) with `chain_pem` (VCEK, ASK, ARK in that order) against the ARK `ark_der`.
pub fn check(
    report: &[u8],
    chain_pem: &[u8],
    ark_der: &[u8],
    now: SystemTime,
) -> Result<Checked, String> {
    if report.len() != REPORT_LEN {
        return Err(format!(
            "report is {} bytes, not {REPORT_LEN}",
            report.len()
        ));
    }
    let version = u32_at(report, 0x00);
    if !(2..=5).contains(&version) {
        return Err(format!("report version {version}"));
    }
    if u32_at(report, 0x34) != ECDSA_P384_SHA384 {
        return Err("report signature algorithm is not ECDSA P-384".into());
    }
    // Key flags at 0x48, bits 2..=4: which key signed (0: the VCEK; 1: a VLEK; 7: none).
    if (u32_at(report, 0x48) >> 2) & 7 != 0 {
        return Err("report is not signed with a VCEK".into());
    }
    let certs = Certificate::load_pem_chain(chain_pem).map_err(|e| format!("chain: {e}"))?;
    let [vcek, ask, ark] = certs.as_slice() else {
        return Err(format!(
            "chain has {} certificates, not VCEK, ASK, ARK",
            certs.len()
        ));
    };
    if ark.to_der().map_err(|e| format!("ARK: {e}"))? != ark_der {
        return Err("the chain does not end in the AMD root this service trusts".into());
    }
    signed_by(ark, ark, now)?;
    signed_by(ask, ark, now)?;
    signed_by(vcek, ask, now)?;

    // R and S: 48 significant bytes each, little-endian, the rest of each 72-byte slot zero.
    let slot = |at: usize| -> Result<[u8; 48], String> {
        let s = &report[at..at + 72];
        if s[48..].iter().any(|&b| b != 0) {
            return Err("report signature slot has bytes past 48".into());
        }
        let mut be = [0u8; 48];
        for (d, s) in be.iter_mut().zip(s[..48].iter().rev()) {
            *d = *s;
        }
        Ok(be)
    };
    let (r, s) = (slot(SIGNED)?, slot(SIGNED + 72)?);
    let sig =
        Signature::from_scalars(r, s).map_err(|_| "report signature is not a valid scalar pair")?;
    p384_key(vcek)?
        .verify(&report[..SIGNED], &sig)
        .map_err(|_| "report is not signed by the VCEK".to_string())?;

    let chip = ext(vcek, OID_AMD_HWID).ok_or("VCEK has no chip id extension")?;
    if chip != &report[0x1A0..0x1E0] {
        return Err("VCEK is for another chip".into());
    }
    // reported_tcb at 0x180; from CPUID family 0x1A (Turin) on its bytes are FMC, BL, TEE, SNP, .., UCODE,
    // before that BL, TEE, .., SNP, UCODE. The family is at 0x188 from report version 3 on.
    let tcb = u64_at(report, 0x180).to_le_bytes();
    let turin = version >= 3 && report[0x188] == 0x1A;
    let (bl, tee, snp, ucode) = if turin {
        if tcb_ext(vcek, 9)? != tcb[0] {
            return Err("VCEK certifies another FMC SPL than the report's".into());
        }
        (tcb[1], tcb[2], tcb[3], tcb[7])
    } else {
        (tcb[0], tcb[1], tcb[6], tcb[7])
    };
    for (n, name, have) in [
        (1, "bl", bl),
        (2, "tee", tee),
        (3, "snp", snp),
        (8, "ucode", ucode),
    ] {
        if tcb_ext(vcek, n)? != have {
            return Err(format!(
                "VCEK certifies another {name} SPL than the report's"
            ));
        }
    }
    Ok(Checked {
        report_data: report[0x50..0x90].try_into().expect("64 bytes"),
        host_data: report[0xC0..0xE0].try_into().expect("32 bytes"),
        vmpl: u32_at(report, 0x30),
        debuggable: u64_at(report, 0x08) & (1 << 19) != 0,
    })
}
