//! Attestation: evidence providers behind one trait, the SNP report parser and its local verification,
//! the UVM information ACI gives the guest, and AMD collateral (certificates are parsed by [`crate::x509`]).
//!
//! Providers, auto-detected in this order by [`detect`]:
//! 1. configfs-tsm (Linux >= 6.7): `/sys/kernel/config/tsm/report/<entry>` — mkdir, write `inblob`
//!    (64 bytes), `privlevel` = 0, read `outblob` (the report) and `auxblob` (the certificate table), rmdir;
//! 2. `/dev/sev-guest` (upstream sev-guest driver): `SNP_GET_REPORT` through the `sev` crate, VMPL 0;
//! 3. `/dev/sev` (Microsoft's 5.15 driver): `SEV_SNP_GUEST_MSG_REPORT` (upstream-spec §5.1), our own ioctl;
//! 4. a fake signer, only when the plan is in test mode (logged as a warning on every use).
//!
//! None present and not in test mode → [`Error::NoProvider`] naming every path looked at.
//! `report_data` is always 64 bytes; for key release it is SHA-256(runtime JSON) ‖ 32 zero bytes.

pub mod collateral;
pub mod fake;
pub mod report;
pub mod sev_guest;
pub mod sev_legacy;
mod sys;
pub mod tool;
pub mod tsm;
pub mod uvm;
pub mod verify;

use std::fmt;
use std::path::{Path, PathBuf};

/// What a provider returns.
#[derive(Debug, Clone)]
pub struct Evidence {
    /// The 1184-byte report.
    pub report: Vec<u8>,
    /// Certificates the host attached (configfs-tsm `auxblob`), DER, VCEK first when known.
    pub certs: Vec<Vec<u8>>,
    /// Which provider made it.
    pub provider: &'static str,
}

/// An evidence provider.
pub trait Attester: fmt::Debug + Send + Sync {
    /// Short name for messages (`configfs-tsm`, `sev-guest`, `sev-legacy`, `fake`).
    fn name(&self) -> &'static str;
    /// A report binding `report_data`.
    fn report(&self, report_data: &[u8; 64]) -> Result<Evidence, Error>;
}

/// Attestation errors.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// No provider: every path we looked at.
    NoProvider {
        /// Paths looked at.
        looked: Vec<PathBuf>,
    },
    /// A file-system step of configfs-tsm or a device open failed.
    Io {
        /// What we were doing.
        step: &'static str,
        /// On which path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The firmware or driver refused.
    Firmware {
        /// Which provider.
        provider: &'static str,
        /// Its message (status codes).
        detail: String,
    },
    /// The sev-guest driver call failed (through the `sev` crate; its error is the cause).
    Driver {
        /// Which provider.
        provider: &'static str,
        /// The cause.
        source: sev::error::UserApiError,
    },
    /// The certificate table (configfs-tsm `auxblob`) does not parse.
    CertTable {
        /// Which provider.
        provider: &'static str,
        /// What is wrong with it.
        source: tsm::CertTableError,
    },
    /// The provider returned something that is not a report.
    BadReport {
        /// Which provider.
        provider: &'static str,
        /// What is wrong.
        detail: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoProvider { looked } => {
                let l: Vec<String> = looked.iter().map(|p| p.display().to_string()).collect();
                write!(
                    f,
                    "no SEV-SNP attestation interface found (looked for {}); not running in an SEV-SNP guest? \
                     (test_mode allows a fake attester)",
                    l.join(", ")
                )
            }
            Error::Io { step, path, .. } => write!(f, "{step} {}", path.display()),
            Error::Firmware { provider, detail } => {
                write!(f, "{provider}: the firmware refused the report: {detail}")
            }
            Error::Driver { provider, .. } => {
                write!(f, "{provider}: the firmware refused the report")
            }
            Error::CertTable { provider, .. } => write!(f, "{provider}: bad report: auxblob"),
            Error::BadReport { provider, detail } => write!(f, "{provider}: bad report: {detail}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::Driver { source, .. } => Some(source),
            Error::CertTable { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Where [`detect`] looks (injectable for tests).
#[derive(Debug, Clone)]
pub struct Paths {
    /// configfs-tsm report directory.
    pub tsm: PathBuf,
    /// The upstream sev-guest device.
    pub sev_guest: PathBuf,
    /// Microsoft's 5.15 device.
    pub sev_legacy: PathBuf,
}

impl Default for Paths {
    fn default() -> Self {
        Paths {
            tsm: PathBuf::from(tsm::DEFAULT_BASE),
            sev_guest: PathBuf::from("/dev/sev-guest"),
            sev_legacy: PathBuf::from("/dev/sev"),
        }
    }
}

fn exists(p: &Path) -> bool {
    // "stat does not fail with ENOENT", as upstream: a device we cannot open still counts, and the open
    // error then explains why (permissions, a missing kernel feature).
    !matches!(std::fs::symlink_metadata(p), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
}

/// Pick the first provider present. `test_mode` allows the fake one when nothing is present.
pub fn detect(paths: &Paths, test_mode: bool) -> Result<Box<dyn Attester>, Error> {
    detect_with(paths, test_mode, None)
}

/// [`detect`], with the fake attester to use in test mode when no device is present (one signing with a
/// fake VCEK key whose chain a fake MAA knows); `None` is a fresh random key. Real providers always win.
pub fn detect_with(
    paths: &Paths,
    test_mode: bool,
    fake: Option<fake::FakeAttester>,
) -> Result<Box<dyn Attester>, Error> {
    if fake.is_some()
        && (exists(&paths.tsm) || exists(&paths.sev_guest) || exists(&paths.sev_legacy))
    {
        log::warn!(
            "attestation: an SEV-SNP interface is present: the manifest's fake VCEK key is ignored"
        );
    }
    if exists(&paths.tsm) && tsm::looks_usable(&paths.tsm) {
        log::info!("attestation: configfs-tsm at {}", paths.tsm.display());
        return Ok(Box::new(tsm::TsmAttester::new(
            paths.tsm.clone(),
            Box::new(tsm::RealFs),
        )));
    }
    if exists(&paths.sev_guest) {
        log::info!("attestation: {}", paths.sev_guest.display());
        return Ok(Box::new(sev_guest::SevGuest::new(paths.sev_guest.clone())));
    }
    if exists(&paths.sev_legacy) {
        log::info!(
            "attestation: {} (legacy 5.15 driver)",
            paths.sev_legacy.display()
        );
        return Ok(Box::new(sev_legacy::SevLegacy::new(
            paths.sev_legacy.clone(),
        )));
    }
    if test_mode {
        return Ok(Box::new(match fake {
            Some(f) => {
                log::warn!("attestation: TEST MODE: no SEV-SNP device, using a FAKE attester with the manifest's fake VCEK key; only a fake MAA accepts its reports");
                f
            }
            None => {
                log::warn!("attestation: TEST MODE: no SEV-SNP device, using a FAKE attester; real MAA rejects its reports");
                fake::FakeAttester::ephemeral()
            }
        }));
    }
    Err(Error::NoProvider {
        looked: vec![
            paths.tsm.clone(),
            paths.sev_guest.clone(),
            paths.sev_legacy.clone(),
        ],
    })
}

/// `report_data` for a runtime-data blob: SHA-256(bytes) ‖ 32 zero bytes.
pub fn report_data_for(runtime: &[u8]) -> [u8; 64] {
    use sha2::Digest;
    let mut rd = [0u8; 64];
    rd[..32].copy_from_slice(&sha2::Sha256::digest(runtime));
    rd
}
