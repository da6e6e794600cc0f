//! A fake AMD secure processor behind an emulated `/dev/sev-guest`: a CUSE server (character device in
//! userspace) speaking the FUSE wire protocol on `/dev/cuse` directly, so that the product's real
//! `SNP_GET_REPORT` ioctl (through the `sev` crate) runs against it in the VM.
//!
//! Protocol facts (linux/fuse.h, fs/fuse/cuse.c): every request starts with a 40-byte `fuse_in_header`
//! (len, opcode, unique, nodeid, uid, gid, pid, ...); a reply is a 16-byte `fuse_out_header` (len, error,
//! unique) and a body. `CUSE_INIT` answers with `cuse_init_out` and `DEVNAME=...`. An ioctl on a CUSE device
//! with `CUSE_UNRESTRICTED_IOCTL` comes without data first; the server asks for the memory it needs with
//! `FUSE_IOCTL_RETRY` and lists of (address, length) to read and to write, and the kernel asks again with
//! those bytes, until the server answers with the bytes to write back.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};

const CUSE_INIT: u32 = 4096;
const FUSE_OPEN: u32 = 14;
const FUSE_RELEASE: u32 = 18;
const FUSE_FLUSH: u32 = 25;
const FUSE_INTERRUPT: u32 = 36;
const FUSE_IOCTL: u32 = 39;
const CUSE_UNRESTRICTED_IOCTL: u32 = 1;
const FUSE_IOCTL_RETRY: u32 = 1 << 2;
const IN_HEADER: usize = 40;
const EINVAL: i32 = 22;
const ENOSYS: i32 = 38;
const ENOTTY: i32 = 25;

/// `_IOWR('S', 0x0, struct snp_guest_request_ioctl)`: 32 bytes {u8 msg_version; u64 req_data; u64 resp_data;
/// u64 exitinfo2}.
pub const SNP_GET_REPORT: u32 = 0xC020_5300;
/// `struct snp_report_req`: report_data[64], vmpl u32, reserved[28].
const REQ_LEN: u64 = 96;
/// `struct snp_report_resp`: 4000 bytes holding `snp_msg_report_rsp` {status, report_size, rsvd[24], report}.
const RESP_LEN: u64 = 4000;
const IOCTL_ARG_LEN: u64 = 32;

/// What one `SNP_GET_REPORT` asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportRequest {
    /// The guest's 64 bytes.
    pub report_data: [u8; 64],
    /// The VMPL the guest asked for.
    pub vmpl: u32,
    /// The ioctl structure's message version.
    pub msg_version: u8,
}

fn u32_at(b: &[u8], o: usize) -> io::Result<u32> {
    b.get(o..o + 4)
        .map(|s| u32::from_le_bytes(s.try_into().unwrap()))
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "short FUSE message"))
}

fn u64_at(b: &[u8], o: usize) -> io::Result<u64> {
    b.get(o..o + 8)
        .map(|s| u64::from_le_bytes(s.try_into().unwrap()))
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "short FUSE message"))
}

fn reply(dev: &mut File, unique: u64, error: i32, body: &[u8]) -> io::Result<()> {
    let mut m = Vec::with_capacity(16 + body.len());
    m.extend_from_slice(&(16 + body.len() as u32).to_le_bytes());
    m.extend_from_slice(&(-error).to_le_bytes());
    m.extend_from_slice(&unique.to_le_bytes());
    m.extend_from_slice(body);
    // One write per reply: the kernel takes a reply as one message.
    dev.write_all(&m)
}

/// `fuse_ioctl_out` {result, flags, in_iovs, out_iovs} + iovecs + data.
fn ioctl_out(flags: u32, ins: &[(u64, u64)], outs: &[(u64, u64)], data: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&0i32.to_le_bytes());
    b.extend_from_slice(&flags.to_le_bytes());
    b.extend_from_slice(&(ins.len() as u32).to_le_bytes());
    b.extend_from_slice(&(outs.len() as u32).to_le_bytes());
    for (base, len) in ins.iter().chain(outs) {
        b.extend_from_slice(&base.to_le_bytes());
        b.extend_from_slice(&len.to_le_bytes());
    }
    b.extend_from_slice(data);
    b
}

/// Serve `/dev/<devname>` until the device goes away. `sign` turns a request into a signed 1184-byte report
/// (the fake secure processor); requests are logged to stderr (report_data is not secret).
pub fn serve_sev_guest(
    devname: &str,
    mut sign: impl FnMut(&ReportRequest) -> Vec<u8>,
) -> io::Result<()> {
    let mut dev = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/cuse")?;
    let mut buf = vec![0u8; 1 << 17];
    loop {
        let n = match dev.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // ENOENT: an interrupted request vanished; ENODEV: the device is gone.
            Err(e) if e.raw_os_error() == Some(2) => continue,
            Err(e) if e.raw_os_error() == Some(19) => return Ok(()),
            Err(e) => return Err(e),
        };
        let m = &buf[..n];
        let (opcode, unique) = (u32_at(m, 4)?, u64_at(m, 8)?);
        let arg = m.get(IN_HEADER..).unwrap_or_default();
        match opcode {
            CUSE_INIT => {
                let (major, minor) = (u32_at(arg, 0)?, u32_at(arg, 4)?);
                let mut b = Vec::new();
                // major, minor, unused, flags, max_read, max_write, dev_major (0: dynamic), dev_minor
                for v in [major, minor, 0, CUSE_UNRESTRICTED_IOCTL, 65536, 65536, 0, 0] {
                    b.extend_from_slice(&v.to_le_bytes());
                }
                b.extend_from_slice(&[0u8; 40]);
                b.extend_from_slice(format!("DEVNAME={devname}\0").as_bytes());
                reply(&mut dev, unique, 0, &b)?;
                eprintln!("fake-sp: /dev/{devname} created (FUSE {major}.{minor})");
            }
            FUSE_OPEN => reply(&mut dev, unique, 0, &[0u8; 16])?,
            FUSE_RELEASE | FUSE_FLUSH => reply(&mut dev, unique, 0, &[])?,
            FUSE_INTERRUPT => {}
            FUSE_IOCTL => {
                // fuse_ioctl_in {fh u64, flags u32, cmd u32, arg u64, in_size u32, out_size u32} + in data
                let (cmd, uarg, in_size) =
                    (u32_at(arg, 12)?, u64_at(arg, 16)?, u32_at(arg, 24)? as u64);
                let data = arg.get(32..).unwrap_or_default();
                if cmd != SNP_GET_REPORT {
                    reply(&mut dev, unique, ENOTTY, &[])?;
                    continue;
                }
                let body = if in_size == 0 {
                    // Round 1: the ioctl structure itself.
                    ioctl_out(
                        FUSE_IOCTL_RETRY,
                        &[(uarg, IOCTL_ARG_LEN)],
                        &[(uarg, IOCTL_ARG_LEN)],
                        &[],
                    )
                } else if in_size == IOCTL_ARG_LEN {
                    // Round 2: the request it points to, and room for the response.
                    let (req, resp) = (u64_at(data, 8)?, u64_at(data, 16)?);
                    ioctl_out(
                        FUSE_IOCTL_RETRY,
                        &[(uarg, IOCTL_ARG_LEN), (req, REQ_LEN)],
                        &[(uarg, IOCTL_ARG_LEN), (resp, RESP_LEN)],
                        &[],
                    )
                } else if in_size == IOCTL_ARG_LEN + REQ_LEN && data.len() >= 128 {
                    let mut report_data = [0u8; 64];
                    report_data.copy_from_slice(&data[32..96]);
                    let rq = ReportRequest {
                        report_data,
                        vmpl: u32_at(data, 96)?,
                        msg_version: data[0],
                    };
                    eprintln!(
                        "fake-sp: SNP_GET_REPORT msg_version {} vmpl {}",
                        rq.msg_version, rq.vmpl
                    );
                    let report = sign(&rq);
                    let mut out = data[..32].to_vec();
                    out[24..32].fill(0); // exitinfo2: success
                    let mut resp = vec![0u8; RESP_LEN as usize];
                    resp[4..8].copy_from_slice(&(report.len() as u32).to_le_bytes());
                    resp[32..32 + report.len()].copy_from_slice(&report);
                    out.extend_from_slice(&resp);
                    ioctl_out(0, &[], &[], &out)
                } else {
                    reply(&mut dev, unique, EINVAL, &[])?;
                    continue;
                };
                reply(&mut dev, unique, 0, &body)?;
            }
            _ => reply(&mut dev, unique, ENOSYS, &[])?,
        }
    }
}
