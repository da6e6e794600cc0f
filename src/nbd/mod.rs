//! The userspace NBD server that turns a [`BlockSource`](crate::blob::BlockSource) into a block device.
//!
//! - [`proto`]: the wire format (pure, fuzzable);
//! - [`server`]: one connection: handshake, then concurrent requests with out-of-order replies;
//! - [`kernel`]: attaching `/dev/nbdN` to one end of a socketpair (generic netlink with reconnect, or
//!   ioctls), and restarting the serving side when it dies;
//! - [`netlink`]: the kernel's NBD generic-netlink messages;
//! - [`cli`]: `encfs-init nbd serve`, the same server on a Unix or loopback TCP socket for real NBD
//!   clients (qemu-io, qemu-img) without a kernel.
//!
//! Serving threads are marked `PR_SET_IO_FLUSHER`: the kernel then avoids recursing into block I/O
//! when they allocate under memory pressure, which would otherwise deadlock a device whose I/O they
//! serve (it needs CAP_SYS_RESOURCE; without it, serving goes on without the mark).

pub mod cli;
pub mod kernel;
pub mod netlink;
pub mod proto;
pub mod server;
mod sys;

pub use server::{serve, ServeError, ServerConfig, Stream};
pub use sys::set_io_flusher;
