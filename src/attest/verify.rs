//! Local verification of an SNP report (what MAA does, done here first so failures are explained):
//!
//! 1. the collateral chain VCEK (or VLEK) → ASK (ASVK) → ARK, each signature checked (RSA-PSS in AMD's
//!    chain), the ARK self-signed and its SubjectPublicKeyInfo pinned (SHA-256) to AMD's published roots;
//! 2. the report's ECDSA P-384/SHA-384 signature over bytes `[0, 0x2A0)` with the VCEK's key;
//! 3. the reported TCB against the VCEK's TCB extensions `1.3.6.1.4.1.3704.1.3.{1 bl, 2 tee, 3 snp,
//!    8 ucode}` (and `.9` fmc on Turin), read as DER INTEGERs (upstream-spec §5.5 bug 14);
//! 4. the VCEK's hwID (`1.3.6.1.4.1.3704.1.4`) against the report's chip id, unless masked.
//!
//! Every failure names the certificate or the field that differs.
#![forbid(unsafe_code)]

use super::report::{Report, SigningKey, Tcb, TcbLayout, SIG_ALGO_ECDSA_P384_SHA384};
use crate::hex::encode as hex;
use crate::x509::{der_small_uint, Cert, CertError};
use std::fmt;
use std::time::SystemTime;

/// A pinned root: a product name and the SHA-256 of the ARK's SubjectPublicKeyInfo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArkPin {
    /// Product (`Milan`, `Genoa`, `Turin`, or a test name).
    pub product: &'static str,
    /// SHA-256 of the SubjectPublicKeyInfo DER.
    pub spki_sha256: [u8; 32],
}

const fn pin(product: &'static str, hex: &[u8; 64]) -> ArkPin {
    ArkPin {
        product,
        spki_sha256: crate::hex::decode_const(hex),
    }
}

/// AMD's root keys. Milan: checked against the fixtures' real chains (ARK-Milan, valid 2020-10-22 to
/// 2045). Genoa (ARK-Genoa, 2022-01-26 to 2047) and Turin (ARK-Turin, 2023-05-15 to 2048): from the ARK
/// certificates AMD publishes at `https://kdsintf.amd.com/vcek/v1/<product>/cert_chain`, as shipped in
/// the `sev` 8.0.0 crate (`src/certs/snp/builtin/*/ark.pem`).
pub const AMD_ARK_PINS: &[ArkPin] = &[
    pin(
        "Milan",
        b"9f056bee44377e29308cb5ffa895bdfb62d18881fa6bed8d6f075b0204089cb9",
    ),
    pin(
        "Genoa",
        b"429a69c9422aa258ee4d8db5fcda9c6470ef15f8cd5a9cebd6cbc7d90b863831",
    ),
    pin(
        "Turin",
        b"4f125410563a2ab9a50356f9243f6fe0b6f73de98603f53f90339c70e9d7ad08",
    ),
];

/// Why verification failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum VerifyError {
    /// No certificate named SEV-VCEK / SEV-VLEK (or with an EC key) in the collateral.
    NoLeaf,
    /// `of`'s issuer is not in the collateral.
    MissingIssuer {
        /// The certificate whose issuer is missing.
        of: String,
    },
    /// The root is not one of the pinned AMD ARKs.
    UntrustedRoot {
        /// Its common name.
        cn: String,
        /// SHA-256 of its key.
        spki_sha256: String,
    },
    /// A certificate problem.
    Cert {
        /// Which certificate.
        cert: String,
        /// What.
        cause: CertError,
    },
    /// A certificate is not valid now.
    Expired {
        /// Which.
        cert: String,
    },
    /// The report's signature algorithm is not ECDSA P-384/SHA-384.
    SignatureAlgo(u32),
    /// The report's signing-key field says it is not signed by a VCEK/VLEK.
    SigningKey(SigningKey),
    /// The report signature does not verify with the VCEK.
    ReportSignature,
    /// A VCEK TCB extension is missing or not a small DER INTEGER.
    TcbExtension {
        /// The field.
        field: &'static str,
    },
    /// A TCB field differs.
    TcbMismatch {
        /// The field (`ucode`, `snp`, `tee`, `bl`, `fmc`).
        field: &'static str,
        /// Value in the report's reported_tcb.
        report: u8,
        /// Value in the certificate.
        cert: u8,
        /// Both TCBs.
        detail: String,
    },
    /// The VCEK's hwID is not the report's chip id.
    ChipId {
        /// Report's chip id (hex).
        report: String,
        /// Certificate's hwID (hex).
        cert: String,
    },
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerifyError::NoLeaf => f.write_str("no VCEK/VLEK certificate in the collateral"),
            VerifyError::MissingIssuer { of } => write!(f, "the issuer of {of} is not in the collateral"),
            VerifyError::UntrustedRoot { cn, spki_sha256 } => {
                write!(f, "root {cn} (key sha256 {spki_sha256}) is not a pinned AMD ARK")
            }
            VerifyError::Cert { cert, .. } => write!(f, "certificate {cert}"),
            VerifyError::Expired { cert } => write!(f, "certificate {cert} is not valid at this time"),
            VerifyError::SignatureAlgo(a) => write!(f, "report signature algorithm {a} is not ECDSA P-384/SHA-384 (1)"),
            VerifyError::SigningKey(k) => write!(f, "report is not signed by a VCEK or VLEK ({k:?})"),
            VerifyError::ReportSignature => f.write_str("report signature does not verify with the VCEK"),
            VerifyError::TcbExtension { field } => write!(f, "VCEK TCB extension {field} is missing or not a DER INTEGER"),
            VerifyError::TcbMismatch { field, report, cert, detail } => write!(
                f,
                "TCB field {field} differs: report {report:#04x}, certificate {cert:#04x} ({detail})"
            ),
            VerifyError::ChipId { report, cert } => write!(f, "chip id differs: report {report}, VCEK hwID {cert}"),
        }
    }
}

impl std::error::Error for VerifyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            VerifyError::Cert { cause, .. } => Some(cause),
            _ => None,
        }
    }
}

/// A chain that verified to a pinned root.
#[derive(Debug, Clone)]
pub struct VerifiedChain {
    /// The leaf (VCEK or VLEK).
    pub leaf: Cert,
    /// The pinned product.
    pub product: &'static str,
}

fn name(c: &Cert) -> String {
    c.common_name().unwrap_or_else(|| "(no CN)".into())
}

fn check_time(c: &Cert, now: SystemTime) -> Result<(), VerifyError> {
    let (nb, na) = c.validity();
    if now < nb || now > na {
        return Err(VerifyError::Expired { cert: name(c) });
    }
    Ok(())
}

fn signed(child: &Cert, issuer: &Cert) -> Result<(), VerifyError> {
    child
        .verify_signed_by(issuer)
        .map_err(|cause| VerifyError::Cert {
            cert: name(child),
            cause,
        })
}

/// Verify the collateral `certs` (any order) up to one of `pins`.
pub fn verify_chain(
    certs: &[Cert],
    pins: &[ArkPin],
    now: SystemTime,
) -> Result<VerifiedChain, VerifyError> {
    let leaf = certs
        .iter()
        .find(|c| {
            matches!(
                c.common_name().as_deref(),
                Some("SEV-VCEK") | Some("SEV-VLEK")
            )
        })
        .ok_or(VerifyError::NoLeaf)?;
    let issuer_of = |c: &Cert| {
        certs
            .iter()
            .find(|i| c.issued_by_name(i) && !std::ptr::eq(*i, c))
            .ok_or_else(|| VerifyError::MissingIssuer { of: name(c) })
    };
    let ask = issuer_of(leaf)?;
    let ark = issuer_of(ask)?;
    if !ark.is_self_issued() {
        return Err(VerifyError::MissingIssuer { of: name(ark) });
    }
    let fp = ark.spki_sha256().map_err(|cause| VerifyError::Cert {
        cert: name(ark),
        cause,
    })?;
    let pin =
        pins.iter()
            .find(|p| p.spki_sha256 == fp)
            .ok_or_else(|| VerifyError::UntrustedRoot {
                cn: name(ark),
                spki_sha256: hex(&fp),
            })?;
    signed(ark, ark)?;
    signed(ask, ark)?;
    signed(leaf, ask)?;
    for c in [leaf, ask, ark] {
        check_time(c, now)?;
    }
    Ok(VerifiedChain {
        leaf: leaf.clone(),
        product: pin.product,
    })
}

/// Check the report's signature with the leaf's P-384 key.
pub fn verify_report_signature(report: &Report, leaf: &Cert) -> Result<(), VerifyError> {
    use p384::ecdsa::signature::Verifier;
    if report.signature_algo != SIG_ALGO_ECDSA_P384_SHA384 {
        return Err(VerifyError::SignatureAlgo(report.signature_algo));
    }
    if let k @ (SigningKey::None | SigningKey::Reserved(_)) = report.signing_key() {
        return Err(VerifyError::SigningKey(k));
    }
    let key = p384::ecdsa::VerifyingKey::from_sec1_bytes(leaf.public_key_bits()).map_err(|_| {
        VerifyError::Cert {
            cert: name(leaf),
            cause: CertError::KeyMismatch,
        }
    })?;
    if report.sig_padding_nonzero {
        return Err(VerifyError::ReportSignature);
    }
    let sig = p384::ecdsa::Signature::from_scalars(report.sig_r, report.sig_s)
        .map_err(|_| VerifyError::ReportSignature)?;
    key.verify(report.signed_bytes(), &sig)
        .map_err(|_| VerifyError::ReportSignature)
}

/// The TCB a VCEK certifies.
pub fn cert_tcb(leaf: &Cert, layout: TcbLayout) -> Result<Tcb, VerifyError> {
    let ext = |field: &'static str, n: u8| -> Result<u8, VerifyError> {
        let v = leaf
            .extension(&format!("1.3.6.1.4.1.3704.1.3.{n}"))
            .and_then(der_small_uint)
            .ok_or(VerifyError::TcbExtension { field })?;
        u8::try_from(v).map_err(|_| VerifyError::TcbExtension { field })
    };
    let (bl, tee, snp, ucode) = (
        ext("bl", 1)?,
        ext("tee", 2)?,
        ext("snp", 3)?,
        ext("ucode", 8)?,
    );
    let fmc = match layout {
        TcbLayout::Turin => Some(ext("fmc", 9)?),
        TcbLayout::MilanGenoa => None,
    };
    let raw = match layout {
        TcbLayout::MilanGenoa => u64::from_le_bytes([bl, tee, 0, 0, 0, 0, snp, ucode]),
        TcbLayout::Turin => u64::from_le_bytes([fmc.unwrap_or(0), bl, tee, snp, 0, 0, 0, ucode]),
    };
    Ok(Tcb {
        raw,
        bl,
        tee,
        snp,
        ucode,
        fmc,
    })
}

/// Compare the report's reported_tcb and chip id with the leaf certificate.
pub fn check_tcb_and_chip(report: &Report, leaf: &Cert) -> Result<Tcb, VerifyError> {
    let reported = report.reported();
    let cert = cert_tcb(leaf, report.tcb_layout())?;
    let detail = format!("report {reported}, certificate {cert}");
    let fields = [
        ("ucode", reported.ucode, cert.ucode),
        ("snp", reported.snp, cert.snp),
        ("tee", reported.tee, cert.tee),
        ("bl", reported.bl, cert.bl),
        ("fmc", reported.fmc.unwrap_or(0), cert.fmc.unwrap_or(0)),
    ];
    if let Some((field, r, c)) = fields.into_iter().find(|(_, r, c)| r != c) {
        return Err(VerifyError::TcbMismatch {
            field,
            report: r,
            cert: c,
            detail,
        });
    }
    if !report.chip_id_masked() {
        if let Some(hwid) = leaf.extension("1.3.6.1.4.1.3704.1.4") {
            if hwid != report.chip_id.as_slice() {
                return Err(VerifyError::ChipId {
                    report: report.chip_id_hex(),
                    cert: hex(hwid),
                });
            }
        }
    }
    Ok(cert)
}

/// Everything: chain, report signature, TCB and chip id. Returns the pinned product.
pub fn verify_report(
    report: &Report,
    collateral: &[Cert],
    pins: &[ArkPin],
    now: SystemTime,
) -> Result<&'static str, VerifyError> {
    let chain = verify_chain(collateral, pins, now)?;
    verify_report_signature(report, &chain.leaf)?;
    check_tcb_and_chip(report, &chain.leaf)?;
    Ok(chain.product)
}
