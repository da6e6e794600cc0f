//! The kernel NBD client's generic-netlink interface (`include/uapi/linux/nbd-netlink.h`): connect a device
//! with a dead-connection timeout, hand it a new socket after the serving side died (reconfigure), and
//! disconnect it.
//!
//! Wire format (`include/uapi/linux/netlink.h`, `genetlink.h`): a 16-byte `nlmsghdr` {len, type, flags,
//! seq, pid}, a 4-byte `genlmsghdr` {cmd, version, reserved}, then attributes {len u16 (header included),
//! type u16, payload padded to 4 bytes}; nested attributes carry `NLA_F_NESTED`. The family id of "nbd" is
//! looked up from the controller (`GENL_ID_CTRL`, `CTRL_CMD_GETFAMILY`). Every request asks for an ack;
//! an `NLMSG_ERROR` with a negative errno is the kernel's refusal.
#![forbid(unsafe_code)]

use nix::sys::socket::{
    bind, recv, send, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol,
    SockType,
};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLA_F_NESTED: u16 = 1 << 15;

const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;

const NBD_GENL_VERSION: u8 = 1;
const NBD_CMD_CONNECT: u8 = 1;
const NBD_CMD_DISCONNECT: u8 = 2;
const NBD_CMD_RECONFIGURE: u8 = 3;
const NBD_ATTR_INDEX: u16 = 1;
const NBD_ATTR_SIZE_BYTES: u16 = 2;
const NBD_ATTR_BLOCK_SIZE_BYTES: u16 = 3;
const NBD_ATTR_TIMEOUT: u16 = 4;
const NBD_ATTR_SERVER_FLAGS: u16 = 5;
const NBD_ATTR_SOCKETS: u16 = 7;
const NBD_ATTR_DEAD_CONN_TIMEOUT: u16 = 8;
const NBD_SOCK_ITEM: u16 = 1;
const NBD_SOCK_FD: u16 = 1;

/// What a connect asks for.
#[derive(Debug, Clone, Copy)]
pub struct ConnectParams {
    /// Device size in bytes.
    pub size: u64,
    /// Logical block size.
    pub block_size: u64,
    /// Transmission flags (`NBD_FLAG_*`).
    pub server_flags: u64,
    /// Per-request timeout: a request unanswered this long is re-sent on a live connection.
    pub timeout: Duration,
    /// How long requests wait for a reconnect when no connection is alive before they fail.
    pub dead_conn_timeout: Duration,
}

/// A generic-netlink socket bound to the "nbd" family.
#[derive(Debug)]
pub struct Nbd {
    fd: OwnedFd,
    family: u16,
    seq: u32,
}

/// An attribute list under construction.
struct Attrs(Vec<u8>);

impl Attrs {
    fn new() -> Self {
        Attrs(Vec::new())
    }
    fn raw(mut self, ty: u16, payload: &[u8]) -> Self {
        let len = 4 + payload.len();
        self.0
            .extend_from_slice(&u16::try_from(len).unwrap_or(u16::MAX).to_ne_bytes());
        self.0.extend_from_slice(&ty.to_ne_bytes());
        self.0.extend_from_slice(payload);
        self.0.resize(self.0.len().next_multiple_of(4), 0);
        self
    }
    fn u32(self, ty: u16, v: u32) -> Self {
        self.raw(ty, &v.to_ne_bytes())
    }
    fn u64(self, ty: u16, v: u64) -> Self {
        self.raw(ty, &v.to_ne_bytes())
    }
    fn nested(self, ty: u16, inner: Attrs) -> Self {
        self.raw(ty | NLA_F_NESTED, &inner.0)
    }
}

/// `NBD_ATTR_SOCKETS` holding one socket.
fn sockets(fd: i32) -> Attrs {
    let fd = u32::try_from(fd).unwrap_or(u32::MAX);
    Attrs::new().nested(NBD_SOCK_ITEM, Attrs::new().u32(NBD_SOCK_FD, fd))
}

/// Walk the attributes of `b`: (type without flags, payload).
fn attrs(mut b: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while b.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([b[0], b[1]]));
        let ty = u16::from_ne_bytes([b[2], b[3]]) & !NLA_F_NESTED;
        if len < 4 || len > b.len() {
            break;
        }
        out.push((ty, &b[4..len]));
        b = &b[len.next_multiple_of(4).min(b.len())..];
    }
    out
}

fn errno(e: nix::errno::Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

impl Nbd {
    /// Open a socket and look up the "nbd" family. `ENOENT` means the kernel has no NBD netlink interface
    /// (no nbd module, or one older than 4.12).
    pub fn open() -> io::Result<Nbd> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkGeneric,
        )
        .map_err(errno)?;
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0)).map_err(errno)?;
        let mut nl = Nbd {
            fd,
            family: GENL_ID_CTRL,
            seq: 0,
        };
        let name = Attrs::new().raw(CTRL_ATTR_FAMILY_NAME, b"nbd\0");
        let replies = nl.request(GENL_ID_CTRL, CTRL_CMD_GETFAMILY, 1, &name)?;
        let family = replies
            .iter()
            .flat_map(|r| attrs(r))
            .find(|(ty, p)| *ty == CTRL_ATTR_FAMILY_ID && p.len() >= 2)
            .map(|(_, p)| u16::from_ne_bytes([p[0], p[1]]))
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, "no family id in the reply")
            })?;
        nl.family = family;
        Ok(nl)
    }

    /// Send one request and collect the attribute payloads of its replies until the ack.
    fn request(
        &mut self,
        family: u16,
        cmd: u8,
        version: u8,
        a: &Attrs,
    ) -> io::Result<Vec<Vec<u8>>> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let len = 16 + 4 + a.0.len();
        let mut m = Vec::with_capacity(len);
        m.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_ne_bytes());
        m.extend_from_slice(&family.to_ne_bytes());
        m.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&[cmd, version, 0, 0]);
        m.extend_from_slice(&a.0);
        send(self.fd.as_raw_fd(), &m, MsgFlags::empty()).map_err(errno)?;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let n = recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty()).map_err(errno)?;
            let mut b = &buf[..n];
            while b.len() >= 16 {
                let mlen = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize;
                let ty = u16::from_ne_bytes([b[4], b[5]]);
                let mseq = u32::from_ne_bytes([b[8], b[9], b[10], b[11]]);
                if mlen < 16 || mlen > b.len() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "truncated netlink message",
                    ));
                }
                let body = &b[16..mlen];
                b = &b[mlen.next_multiple_of(4).min(b.len())..];
                if mseq != seq {
                    continue;
                }
                match ty {
                    NLMSG_ERROR => {
                        let code = body
                            .get(..4)
                            .map(|c| i32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
                            .unwrap_or(-nix::libc::EIO);
                        return if code == 0 {
                            Ok(out)
                        } else {
                            Err(io::Error::from_raw_os_error(-code))
                        };
                    }
                    NLMSG_DONE => return Ok(out),
                    _ => out.push(body.get(4..).unwrap_or_default().to_vec()),
                }
            }
        }
    }

    /// Connect a free device (the kernel picks or creates one) to `sock`; returns its index.
    pub fn connect(&mut self, p: &ConnectParams, sock: i32) -> io::Result<u32> {
        let a = Attrs::new()
            .u64(NBD_ATTR_SIZE_BYTES, p.size)
            .u64(NBD_ATTR_BLOCK_SIZE_BYTES, p.block_size)
            .u64(NBD_ATTR_SERVER_FLAGS, p.server_flags)
            .u64(NBD_ATTR_TIMEOUT, p.timeout.as_secs().max(1))
            .u64(
                NBD_ATTR_DEAD_CONN_TIMEOUT,
                p.dead_conn_timeout.as_secs().max(1),
            )
            .nested(NBD_ATTR_SOCKETS, sockets(sock));
        let replies = self.request(self.family, NBD_CMD_CONNECT, NBD_GENL_VERSION, &a)?;
        replies
            .iter()
            .flat_map(|r| attrs(r))
            .find(|(ty, p)| *ty == NBD_ATTR_INDEX && p.len() >= 4)
            .map(|(_, p)| u32::from_ne_bytes([p[0], p[1], p[2], p[3]]))
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, "no device index in the reply")
            })
    }

    /// Give device `index` a new socket in place of its dead one.
    pub fn reconfigure(&mut self, index: u32, sock: i32) -> io::Result<()> {
        let a = Attrs::new()
            .u32(NBD_ATTR_INDEX, index)
            .nested(NBD_ATTR_SOCKETS, sockets(sock));
        self.request(self.family, NBD_CMD_RECONFIGURE, NBD_GENL_VERSION, &a)
            .map(drop)
    }

    /// Disconnect device `index`: the kernel sends `NBD_CMD_DISC` on its live connections.
    pub fn disconnect(&mut self, index: u32) -> io::Result<()> {
        let a = Attrs::new().u32(NBD_ATTR_INDEX, index);
        self.request(self.family, NBD_CMD_DISCONNECT, NBD_GENL_VERSION, &a)
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_padded_and_walk_back() {
        let a = Attrs::new()
            .raw(2, b"nbd\0x")
            .u64(NBD_ATTR_SIZE_BYTES, 1 << 30)
            .nested(NBD_ATTR_SOCKETS, sockets(7));
        assert_eq!(a.0.len() % 4, 0);
        let got = attrs(&a.0);
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], (2, &b"nbd\0x"[..]));
        assert_eq!(got[1].1, (1u64 << 30).to_ne_bytes());
        assert_eq!(got[2].0, NBD_ATTR_SOCKETS);
        let item = attrs(got[2].1);
        assert_eq!(item[0].0, NBD_SOCK_ITEM);
        assert_eq!(
            attrs(item[0].1),
            vec![(NBD_SOCK_FD, &7u32.to_ne_bytes()[..])]
        );
        // The nested flag is set on the wire.
        let nested_ty = u16::from_ne_bytes([a.0[26], a.0[27]]);
        assert_eq!(nested_ty, NBD_ATTR_SOCKETS | NLA_F_NESTED);
    }

    #[test]
    fn a_truncated_attribute_ends_the_walk() {
        let mut a = Attrs::new().u32(1, 5).0;
        a.extend_from_slice(&[40, 0, 2, 0, 1]);
        assert_eq!(attrs(&a).len(), 1);
    }
}
