//! `/dev/sev` provider: Microsoft's SNP guest driver for Linux 5.15 (ACI's older UVMs), upstream-spec §5.1.
//!
//! ioctl `SEV_SNP_GUEST_MSG_REPORT` = `_IOWR('S', 1, 40)` = `0xC0285301` with a 40-byte
//! `GuestRequest` pointing at a 96-byte `MSG_REPORT_REQ` (report_data, vmpl = 0) and a 1280-byte
//! `MSG_REPORT_RSP` (status u32 @0 must be 0, report_size u32 @4, the 1184-byte report @32). This is the
//! only `unsafe` of the attestation code, in `sys`: the two `#[repr(C)]` structs and one ioctl.
#![forbid(unsafe_code)]

use super::report::REPORT_LEN;
use super::{Attester, Error, Evidence};
use std::path::PathBuf;

/// The legacy device.
#[derive(Debug)]
pub struct SevLegacy {
    path: PathBuf,
}

impl SevLegacy {
    /// The device at `path`.
    pub fn new(path: PathBuf) -> Self {
        SevLegacy { path }
    }
}

impl Attester for SevLegacy {
    fn name(&self) -> &'static str {
        "sev-legacy"
    }

    fn report(&self, report_data: &[u8; 64]) -> Result<Evidence, Error> {
        let dev = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.path)
            .map_err(|source| Error::Io {
                step: "open",
                path: self.path.clone(),
                source,
            })?;
        let rsp =
            super::sys::msg_report(&dev, report_data).map_err(|(errno, fw)| Error::Firmware {
                provider: "sev-legacy",
                detail: format!("ioctl SEV_SNP_GUEST_MSG_REPORT: {errno} (firmware error {fw:#x})"),
            })?;
        if rsp.status != 0 {
            return Err(Error::Firmware {
                provider: "sev-legacy",
                detail: format!("report status {:#x}", rsp.status),
            });
        }
        if rsp.report_size as usize != REPORT_LEN {
            return Err(Error::BadReport {
                provider: "sev-legacy",
                detail: format!("report_size {}", rsp.report_size),
            });
        }
        Ok(Evidence {
            report: rsp.report.to_vec(),
            certs: Vec::new(),
            provider: "sev-legacy",
        })
    }
}
