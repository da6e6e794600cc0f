//! The one raw call of the attestation code: the `/dev/sev` driver's `SEV_SNP_GUEST_MSG_REPORT` ioctl
//! (Microsoft's SNP guest driver for Linux 5.15), its two `#[repr(C)]` messages and the request structure,
//! behind one safe function.
//!
//! The errno convention of every `sys` file: a raw call's result is checked with
//! [`Errno::result`](nix::errno::Errno::result) and returned as an [`io::Error`] (which keeps the OS text).
#![allow(unsafe_code)]

use super::report::REPORT_LEN;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

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
struct GuestRequest {
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

/// The fields of the driver's response message (`MSG_REPORT_RSP`) that the caller checks.
pub(super) struct Answer {
    /// `MSG_REPORT_RSP.status` (0 = success).
    pub status: u32,
    /// `MSG_REPORT_RSP.report_size`.
    pub report_size: u32,
    /// The report.
    pub report: [u8; REPORT_LEN],
}

/// `SEV_SNP_GUEST_MSG_REPORT` on the open `/dev/sev` `dev` for `report_data` at VMPL 0. An ioctl failure is
/// returned with the driver's firmware error code.
pub(super) fn msg_report(dev: &File, report_data: &[u8; 64]) -> Result<Answer, (io::Error, u32)> {
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
        return Err((errno.into(), msg.error));
    }
    Ok(Answer {
        status: rsp.status,
        report_size: rsp.report_size,
        report: rsp.report,
    })
}
