//! encfs-init: PID 1 for confidential containers.
//!
//! It attests the SEV-SNP guest, releases the disk key from Azure Key Vault or a managed HSM, serves the
//! encrypted blob as a block device, opens it with dm-crypt and mounts it, then supervises the application.
//! The binary (`src/main.rs`) is thin; every step lives in a module here so that tests, the fuzz targets and
//! the VM harness link against the same code.
#![warn(missing_docs)]
// `unsafe` only in the sys files (each says `#![allow(unsafe_code)]`) and every block with its SAFETY comment.
#![deny(unsafe_code)]

pub mod argv;
pub mod atomic;
pub mod attest;
pub mod backoff;
pub mod blob;
pub mod cli;
pub mod dm;
pub mod doctor;
pub mod errors;
pub mod exit;
pub mod fuse;
pub mod hex;
pub mod http;
pub mod image;
pub mod init;
pub mod io_flusher;
pub mod keyimport;
pub mod keyrelease;
pub mod logging;
pub mod loopdev;
pub mod luks2;
pub mod manifest;
pub mod memlock;
pub mod mount;
pub mod nbd;
pub mod notify;
pub mod pkcs8;
pub mod propagation;
pub mod ratelimit;
pub mod ready;
pub mod redact;
pub mod secret;
pub mod secrets;
pub mod skr;
pub mod supervise;
pub mod sys;
pub mod transport;
pub mod url;
pub mod uuid;
pub mod verity;
pub mod x509;
