//! `/dev/sev-guest` provider (upstream Linux sev-guest driver, `SNP_GET_REPORT` =
//! `_IOWR('S', 0, 32)`), through the `sev` crate. The VMPL is passed explicitly as 0: `None` would mean
//! VMPL 1 in the crate, and release policies require `x-ms-sevsnpvm-vmpl == 0`.
#![forbid(unsafe_code)]

use super::{Attester, Error, Evidence};
use std::path::PathBuf;

/// The sev-guest device.
#[derive(Debug)]
pub struct SevGuest {
    path: PathBuf,
}

impl SevGuest {
    /// The device at `path` (the `sev` crate opens `/dev/sev-guest`; the path is for messages).
    pub fn new(path: PathBuf) -> Self {
        SevGuest { path }
    }
}

impl Attester for SevGuest {
    fn name(&self) -> &'static str {
        "sev-guest"
    }

    fn report(&self, report_data: &[u8; 64]) -> Result<Evidence, Error> {
        let mut fw = sev::firmware::guest::Firmware::open().map_err(|source| Error::Io {
            step: "open",
            path: self.path.clone(),
            source,
        })?;
        let report = fw
            .get_report(None, Some(*report_data), Some(0))
            .map_err(|source| Error::Driver {
                provider: "sev-guest",
                source,
            })?;
        if report.len() != super::report::REPORT_LEN {
            return Err(Error::BadReport {
                provider: "sev-guest",
                detail: format!("{} bytes", report.len()),
            });
        }
        Ok(Evidence {
            report,
            certs: Vec::new(),
            provider: "sev-guest",
        })
    }
}
