//! The attestation tools: `report`, `report decode FILE`, `policy-digest` (their command line is parsed by
//! [`crate::cli`]). Output goes to stdout; an error is logged as one line and becomes the exit code.
#![forbid(unsafe_code)]

use super::report::{ParseError, Report, REPORT_LEN};
use crate::exit;
use crate::hex::{decode as unhex, encode as hex};
use serde_json::json;
use sha2::Digest;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Where `policy-digest` reads the policy.
#[derive(Debug, PartialEq, Eq)]
pub enum PolicySource {
    /// `-p BASE64`.
    Inline(String),
    /// `-f FILE`.
    File(PathBuf),
}

/// A tool failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Writing the output failed.
    #[error("stdout")]
    Stdout(#[source] std::io::Error),
    /// `--data` is not hex.
    #[error("--data: not hex")]
    DataNotHex,
    /// `--data` is longer than report_data.
    #[error("--data: {0} bytes, at most 64")]
    DataTooLong(usize),
    /// No report could be had (the attestation layer's own words).
    #[error(transparent)]
    Attest(#[from] super::Error),
    /// The report we got does not parse.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// An input file could not be read.
    #[error("{}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file holds neither a raw report nor hex or base64 text.
    #[error("{}: neither a raw {REPORT_LEN}-byte report nor hex/base64 text", path.display())]
    NotAReport {
        /// The file.
        path: PathBuf,
    },
    /// A saved report does not parse.
    #[error("{}", path.display())]
    ParseFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: ParseError,
    },
    /// The policy is not base64.
    #[error("the policy is not base64")]
    PolicyNotBase64,
}

/// How to print a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The raw 1184 bytes.
    Raw,
    /// Decoded JSON.
    Json,
}

/// The report as JSON (every field, hex for byte strings).
pub fn to_json(r: &Report) -> serde_json::Value {
    let t = r.reported();
    json!({
        "version": r.version,
        "guest_svn": r.guest_svn,
        "policy": format!("{:#x}", r.policy),
        "debuggable": r.is_debuggable(),
        "family_id": hex(&r.family_id),
        "image_id": hex(&r.image_id),
        "vmpl": r.vmpl,
        "signature_algo": r.signature_algo,
        "current_tcb": format!("{:016x}", r.current_tcb),
        "platform_info": format!("{:#x}", r.platform_info),
        "signing_key": format!("{:?}", r.signing_key()),
        "chip_id_masked": r.chip_id_masked(),
        "report_data": hex(&r.report_data),
        "measurement": hex(&r.measurement),
        "host_data": hex(&r.host_data),
        "id_key_digest": hex(&r.id_key_digest),
        "author_key_digest": hex(&r.author_key_digest),
        "report_id": hex(&r.report_id),
        "report_id_ma": hex(&r.report_id_ma),
        "reported_tcb": format!("{:016x}", r.reported_tcb),
        "reported_tcb_decoded": { "bl": t.bl, "tee": t.tee, "snp": t.snp, "ucode": t.ucode, "fmc": t.fmc },
        "cpuid": r.cpuid_fam_id.map(|f| json!({ "family": f, "model": r.cpuid_mod_id, "stepping": r.cpuid_step })),
        "product": r.product(),
        "chip_id": r.chip_id_hex(),
        "committed_tcb": format!("{:016x}", r.committed_tcb),
        "current_version": format!("{}.{}.{}", r.current_version.2, r.current_version.1, r.current_version.0),
        "committed_version": format!("{}.{}.{}", r.committed_version.2, r.committed_version.1, r.committed_version.0),
        "launch_tcb": format!("{:016x}", r.launch_tcb),
        "launch_mit_vector": r.launch_mit_vector.map(|v| format!("{v:#x}")),
        "current_mit_vector": r.current_mit_vector.map(|v| format!("{v:#x}")),
        "signature": { "r": hex(&r.sig_r), "s": hex(&r.sig_s) },
    })
}

fn print(r: &Report, format: Format) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    let res = match format {
        Format::Raw => out.write_all(&r.raw),
        Format::Json => serde_json::to_writer_pretty(&mut out, &to_json(r))
            .map_err(std::io::Error::other)
            .and_then(|_| writeln!(out)),
    };
    res.and_then(|_| out.flush()).map_err(Error::Stdout)
}

/// `report [--data HEX]`: get a report from the first provider found.
pub fn report(data_hex: Option<&str>, format: Format) -> Result<(), Error> {
    let mut rd = [0u8; 64];
    if let Some(h) = data_hex {
        let b = unhex(h).ok_or(Error::DataNotHex)?;
        if b.len() > 64 {
            return Err(Error::DataTooLong(b.len()));
        }
        rd[..b.len()].copy_from_slice(&b);
    }
    let a = super::detect(&super::Paths::default(), false)?;
    let ev = a.report(&rd)?;
    let r = Report::parse_lenient(&ev.report)?;
    print(&r, format)
}

/// `report decode FILE`: a raw or hex report file.
pub fn decode(path: &Path, format: Format) -> Result<(), Error> {
    let bytes = std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let bytes = if bytes.len() == REPORT_LEN {
        bytes
    } else {
        let text = String::from_utf8_lossy(&bytes);
        let clean: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        unhex(&clean)
            .or_else(|| super::uvm::decode_b64(&clean))
            .ok_or_else(|| Error::NotAReport {
                path: path.to_path_buf(),
            })?
    };
    let r = Report::parse_lenient(&bytes).map_err(|source| Error::ParseFile {
        path: path.to_path_buf(),
        source,
    })?;
    print(&r, format)
}

/// The SHA-256 (hex) of a base64 security policy: the report's host_data, MAA's `x-ms-sevsnpvm-hostdata`.
pub fn policy_digest(b64: &str) -> Result<String, Error> {
    let policy = super::uvm::decode_b64(b64).ok_or(Error::PolicyNotBase64)?;
    Ok(hex(&sha2::Sha256::digest(&policy)))
}

/// Run `policy-digest`; returns the exit code.
pub fn policy_digest_cmd(source: &PolicySource) -> i32 {
    let text = match source {
        PolicySource::Inline(s) => s.clone(),
        PolicySource::File(p) => match std::fs::read_to_string(p) {
            Ok(t) => t,
            Err(source) => {
                let e = Error::Read {
                    path: p.clone(),
                    source,
                };
                log::error!("policy-digest: {}", crate::errors::chain(&e));
                return exit::USAGE;
            }
        },
    };
    match policy_digest(&text) {
        Ok(d) => {
            println!("{d}");
            exit::OK
        }
        Err(e) => {
            log::error!("policy-digest: {}", crate::errors::chain(&e));
            exit::USAGE
        }
    }
}

/// Log an error and map to an exit code.
pub fn exit_code(what: &str, r: Result<(), Error>) -> i32 {
    match r {
        Ok(()) => exit::OK,
        Err(e) => {
            log::error!("{what}: {}", crate::errors::chain(&e));
            exit::BOOT_FAILED
        }
    }
}
