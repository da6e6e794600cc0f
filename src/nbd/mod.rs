//! The userspace NBD server that turns a [`BlockSource`](crate::blob::BlockSource) into a block device.
//!
//! - [`proto`]: the wire format (pure, fuzzable);
//! - [`server`]: one connection: handshake, then concurrent requests with out-of-order replies;
//! - [`kernel`]: attaching `/dev/nbdN` to one end of a socketpair (generic netlink with reconnect, or
//!   ioctls), and restarting the serving side when it dies;
//! - `keeper`: the serving thread, and the keeper that restarts it (netlink);
//! - `device`, `error`: what both ways of attaching share, and their error type;
//! - `ioctl`: the ioctl attachment, without reconnect;
//! - [`netlink`]: the kernel's NBD generic-netlink messages;
//! - [`cli`]: `encfs-init nbd serve`, the same server on a Unix or loopback TCP socket for real NBD
//!   clients (qemu-io, qemu-img) without a kernel.
//! - `sys`: the NBD ioctls (the only `unsafe` of the area).
//!
//! Serving threads are marked `PR_SET_IO_FLUSHER` ([`crate::io_flusher`]).
#![deny(unsafe_code)] // the raw calls are in `sys` (the one file allowed them)

pub mod cli;
mod device;
mod error;
mod ioctl;
mod keeper;
pub mod kernel;
pub mod netlink;
pub mod proto;
pub mod server;
mod sys;

pub use server::{serve, ServeError, ServerConfig, Stream};
