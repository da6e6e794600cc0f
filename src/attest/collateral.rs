//! AMD collateral (VCEK + ASK + ARK) for a report (upstream-spec §5.4-5.5), with upstream's bugs fixed:
//! every fetch has the transport's timeouts and bounded retries; the endpoint's own scheme is used and
//! `endpoint_type` is honoured (§11, 15: upstream fetched any certcache over `http://` as THIM); the THIM
//! request carries the chip and TCB (`?tcbVersion=<hex>&platformId=<chip>`); a VCEK's TCB is read as DER
//! INTEGERs (§11, 14), so SPLs >= 0x80 no longer cause false mismatches.
//!
//! Sources, tried in order until one's chain is acceptable: its VCEK matches the report's reported_tcb and
//! chip id and, when a [`Check`] is given (always, except for the test-mode fake attester), the whole chain
//! verifies ([`verify::verify_report`]: VCEK ← ASK ← ARK signatures, the ARK pinned, the VCEK's signature
//! over the report). A candidate that fails is not chosen: the next source is tried, so a bogus host
//! certificate whose TCB and chip id match cannot stop AMD KDS from being asked. Only when every source
//! fails is there an error, listing each source's reason:
//! 1. certificates the provider attached (configfs-tsm `auxblob`);
//! 2. the UVM's host AMD certificate (THIM JSON) when its `tcbm` equals the reported TCB;
//! 3. the manifest's certcache: `LocalThim` `GET <endpoint>` (`Metadata: true`) → THIM JSON; `AzCache`
//!    `GET <endpoint>/<tee_type>/certificates/<chip_id>/<tcb hex>?api-version=..[&clientId=..]` → PEM
//!    chain; `Amd` → as 5;
//! 4. THIM at the plan's endpoint (IMDS-hosted), when no certcache is configured;
//! 5. AMD KDS: `GET <kds>/vcek/v1/<product>/<chip_id>?blSPL=&teeSPL=&snpSPL=&ucodeSPL=` (DER VCEK) and
//!    `GET <kds>/vcek/v1/<product>/cert_chain` (PEM ASK + ARK).
#![forbid(unsafe_code)]

use super::report::Report;
use super::uvm::ThimCerts;
use super::verify::{self, ArkPin};
use crate::http::{self, Exchange};
use crate::manifest::{CertCacheKind, CertCachePlan, Endpoints};
use crate::x509::Cert;
use base64::Engine;
use std::fmt;
use std::time::SystemTime;

/// A chain that fits the report.
#[derive(Debug, Clone)]
pub struct Collateral {
    /// Where it came from.
    pub source: String,
    /// PEM text, VCEK first (what MAA takes as `VcekCertChain`).
    pub pem: String,
    /// Parsed.
    pub certs: Vec<Cert>,
    /// The pinned product (`Milan`, ...) when the chain was verified before it was chosen.
    pub verified: Option<&'static str>,
}

/// What a candidate chain must pass before it is chosen: [`verify::verify_report`] with these roots.
#[derive(Debug, Clone, Copy)]
pub struct Check<'a> {
    /// The pinned AMD roots.
    pub pins: &'a [ArkPin],
    /// The time the certificates must be valid at.
    pub now: SystemTime,
}

/// No source gave a matching chain: what each one said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// `(source, problem)` per attempt.
    pub attempts: Vec<(String, String)>,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no AMD certificate chain verifies the report")?;
        for (s, p) in &self.attempts {
            write!(f, "; {s}: {p}")?;
        }
        f.write_str("; fix: the host's certificate (THIM) or the certcache must serve this chip's VCEK at the reported TCB, or AMD KDS must be reachable")
    }
}

impl std::error::Error for Error {}

/// Why one source gave no acceptable chain (recorded in [`Error::attempts`] with its causes).
#[derive(Debug, thiserror::Error)]
enum Problem {
    /// The fetch failed.
    #[error(transparent)]
    Http(#[from] http::Error),
    /// The PEM chain does not parse.
    #[error(transparent)]
    Pem(#[from] crate::x509::CertError),
    /// The THIM document does not parse.
    #[error(transparent)]
    Thim(#[from] super::uvm::Error),
    /// The chain does not fit or verify the report.
    #[error(transparent)]
    Verify(#[from] verify::VerifyError),
    /// Anything else, in words.
    #[error("{0}")]
    Unfit(String),
}

/// DER → PEM.
pub fn to_pem(der: &[u8]) -> String {
    let b = base64::engine::general_purpose::STANDARD.encode(der);
    let mut s = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b.as_bytes().chunks(64) {
        s.push_str(&String::from_utf8_lossy(chunk));
        s.push('\n');
    }
    s.push_str("-----END CERTIFICATE-----\n");
    s
}

fn from_pem(source: &str, pem: String) -> Result<Collateral, Problem> {
    let certs = Cert::from_pem_chain(pem.as_bytes())?;
    Ok(Collateral {
        source: source.to_string(),
        pem,
        certs,
        verified: None,
    })
}

/// `c` fits `report` (TCB and chip id, the cheap test that names a stale certificate precisely) and, with
/// `check`, verifies it: the pinned product.
fn acceptable(
    report: &Report,
    c: &Collateral,
    check: Option<Check<'_>>,
) -> Result<Option<&'static str>, Problem> {
    matches(report, c)?;
    match check {
        Some(k) => Ok(Some(verify::verify_report(
            report, &c.certs, k.pins, k.now,
        )?)),
        None => Ok(None),
    }
}

fn matches(report: &Report, c: &Collateral) -> Result<(), Problem> {
    let leaf = c
        .certs
        .iter()
        .find(|c| {
            matches!(
                c.common_name().as_deref(),
                Some("SEV-VCEK") | Some("SEV-VLEK")
            )
        })
        .ok_or_else(|| Problem::Unfit("no VCEK in the chain".into()))?;
    verify::check_tcb_and_chip(report, leaf)?;
    Ok(())
}

fn get(t: &dyn Exchange, url: String, metadata: bool) -> Result<Vec<u8>, Problem> {
    let mut req = http::Request::new("GET", &url);
    if metadata {
        req = req.header("Metadata", "true");
    }
    let resp = t.exchange(&req)?;
    Ok(resp.body)
}

fn thim(t: &dyn Exchange, endpoint: &str, report: &Report) -> Result<Collateral, Problem> {
    let sep = if endpoint.contains('?') { '&' } else { '?' };
    let url = format!(
        "{endpoint}{sep}tcbVersion={:x}&platformId={}",
        report.reported_tcb,
        report.chip_id_hex()
    );
    let body = get(t, url, true)?;
    let certs = ThimCerts::parse(&body)?;
    from_pem("THIM", certs.pem_chain())
}

fn azcache(t: &dyn Exchange, cc: &CertCachePlan, report: &Report) -> Result<Collateral, Problem> {
    let tee = cc.tee_type.as_deref().unwrap_or("SevSnpVM");
    let mut url = format!(
        "{}/{tee}/certificates/{}/{:x}?api-version={}",
        cc.endpoint.0,
        report.chip_id_hex(),
        report.reported_tcb,
        cc.api_version.as_deref().unwrap_or("2020-10-15-preview")
    );
    if let Some(c) = &cc.client_id {
        url.push_str(&format!("&clientId={c}"));
    }
    let body = get(t, url, false)?;
    from_pem("AzCache", String::from_utf8_lossy(&body).into_owned())
}

fn kds(
    t: &dyn Exchange,
    base: &str,
    product: Option<&str>,
    report: &Report,
) -> Result<Collateral, Problem> {
    let base = base.trim_end_matches('/');
    let base = if base.ends_with("/vcek/v1") {
        base.to_string()
    } else {
        format!("{base}/vcek/v1")
    };
    let product = report.product().or(product).unwrap_or("Milan");
    let tcb = report.reported();
    let mut url = format!(
        "{base}/{product}/{}?blSPL={}&teeSPL={}&snpSPL={}&ucodeSPL={}",
        report.chip_id_hex(),
        tcb.bl,
        tcb.tee,
        tcb.snp,
        tcb.ucode
    );
    if let Some(fmc) = tcb.fmc {
        url.push_str(&format!("&fmcSPL={fmc}"));
    }
    let vcek = get(t, url, false)?;
    let chain = get(t, format!("{base}/{product}/cert_chain"), false)?;
    let mut pem = to_pem(&vcek);
    pem.push_str(&String::from_utf8_lossy(&chain));
    from_pem("AMD KDS", pem)
}

/// Find a chain for `report`. `host` is the UVM's host certificate, `aux` the provider's certificates;
/// `check`, when given, must pass before a chain is chosen (see the module's documentation).
pub fn find(
    t: &dyn Exchange,
    report: &Report,
    aux: &[Vec<u8>],
    host: Option<&ThimCerts>,
    certcache: Option<&CertCachePlan>,
    endpoints: &Endpoints,
    check: Option<Check<'_>>,
) -> Result<Collateral, Error> {
    let mut attempts = Vec::new();
    let mut consider = |name: &str, r: Result<Collateral, Problem>| -> Option<Collateral> {
        let r = r.and_then(|c| {
            acceptable(report, &c, check).map(|verified| Collateral { verified, ..c })
        });
        match r {
            Ok(c) => Some(c),
            Err(e) => {
                let e = crate::errors::chain(&e);
                log::info!("collateral: {name}: {e}");
                attempts.push((name.to_string(), e));
                None
            }
        }
    };
    if !aux.is_empty() {
        let pem: String = aux.iter().map(|d| to_pem(d)).collect();
        if let Some(c) = consider("provider certificates", from_pem("provider", pem)) {
            return Ok(c);
        }
    }
    if let Some(h) = host.filter(|h| !h.is_empty()) {
        let r = match h.tcbm() {
            Ok(t) if t == report.reported_tcb => from_pem("UVM host certificate", h.pem_chain()),
            Ok(t) => Err(Problem::Unfit(format!(
                "tcbm {t:016x} is not the reported TCB {:016x}",
                report.reported_tcb
            ))),
            Err(e) => Err(e.into()),
        };
        if let Some(c) = consider("UVM host certificate", r) {
            return Ok(c);
        }
    }
    match certcache {
        Some(cc) => {
            let (name, r) = match cc.kind {
                CertCacheKind::LocalThim => {
                    ("certcache LocalTHIM", thim(t, &cc.endpoint.0, report))
                }
                CertCacheKind::AzCache => ("certcache AzCache", azcache(t, cc, report)),
                CertCacheKind::Amd => (
                    "certcache AMD",
                    kds(t, &cc.endpoint.0, cc.tee_type.as_deref(), report),
                ),
            };
            if let Some(c) = consider(name, r) {
                return Ok(c);
            }
        }
        None => {
            if let Some(c) = consider("THIM", thim(t, &endpoints.thim.0, report)) {
                return Ok(c);
            }
        }
    }
    if let Some(c) = consider("AMD KDS", kds(t, &endpoints.amd_kds.0, None, report)) {
        return Ok(c);
    }
    Err(Error { attempts })
}
