//! `/dev/sev` provider: Microsoft's SNP guest driver for Linux 5.15 (ACI's older UVMs), upstream-spec §5.1.
//!
//! ioctl `SEV_SNP_GUEST_MSG_REPORT` = `_IOWR('S', 1, 40)` = `0xC0285301` with a 40-byte
//! [`GuestRequest`] pointing at a 96-byte `MSG_REPORT_REQ` (report_data, vmpl = 0) and a 1280-byte
//! `MSG_REPORT_RSP` (status u32 @0 must be 0, report_size u32 @4, the 1184-byte report @32). This is the
//! only `unsafe` of the attestation code: the `sys` layer is the two `#[repr(C)]` structs and one ioctl.

use super::report::REPORT_LEN;
use super::{Attester, Error, Evidence};
use std::os::fd::AsRawFd;
use std::path::PathBuf;

/// `MSG_REPORT_REQ`.
#[repr(C)]
struct ReportReq {
    report_data: [u8; 64],
    vmpl: u32,
    reserved: [u8; 28],
}

/// `MSG_REPORT_RSP` (1280 bytes).
#[repr(C)]
struct ReportRsp {
    status: u32,
    report_size: u32,
    reserved: [u8; 24],
    report: [u8; REPORT_LEN],
    padding: [u8; 64],
}

/// The driver's request structure (x86-64 layout, 40 bytes).
#[repr(C)]
#[derive(Debug)]
pub struct GuestRequest {
    req_msg_type: u8,
    rsp_msg_type: u8,
    msg_version: u8,
    pad0: u8,
    request_len: u16,
    pad1: u16,
    request_uaddr: u64,
    response_len: u16,
    pad2: [u8; 6],
    response_uaddr: u64,
    error: u32,
    pad3: u32,
}

const _: () = assert!(std::mem::size_of::<ReportReq>() == 96);
const _: () = assert!(std::mem::size_of::<ReportRsp>() == 1280);
const _: () = assert!(std::mem::size_of::<GuestRequest>() == 40);

nix::ioctl_readwrite!(
    /// `SEV_SNP_GUEST_MSG_REPORT` (`0xC0285301`).
    snp_guest_msg_report,
    b'S',
    1,
    GuestRequest
);

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
        let mut req = ReportReq {
            report_data: *report_data,
            vmpl: 0,
            reserved: [0; 28],
        };
        let mut rsp = Box::new(ReportRsp {
            status: 0,
            report_size: 0,
            reserved: [0; 24],
            report: [0; REPORT_LEN],
            padding: [0; 64],
        });
        let mut msg = GuestRequest {
            req_msg_type: 5,
            rsp_msg_type: 6,
            msg_version: 1,
            pad0: 0,
            request_len: 96,
            pad1: 0,
            request_uaddr: std::ptr::addr_of_mut!(req) as u64,
            response_len: 1280,
            pad2: [0; 6],
            response_uaddr: std::ptr::addr_of_mut!(*rsp) as u64,
            error: 0,
            pad3: 0,
        };
        // SAFETY: `dev` is an open file descriptor for the whole call. `msg` is a valid, exclusively borrowed
        // 40-byte `GuestRequest` laid out as the driver expects (size asserted at compile time). Its two
        // addresses point at `req` (96 bytes, read by the driver) and `*rsp` (1280 bytes, written by the
        // driver), both alive and not otherwise accessed until the ioctl returns; the lengths in `msg` are
        // exactly their sizes, so the driver cannot write past them.
        let r = unsafe { snp_guest_msg_report(dev.as_raw_fd(), &mut msg) };
        if let Err(errno) = r {
            return Err(Error::Firmware {
                provider: "sev-legacy",
                detail: format!(
                    "ioctl SEV_SNP_GUEST_MSG_REPORT: {errno} (firmware error {:#x})",
                    msg.error
                ),
            });
        }
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
