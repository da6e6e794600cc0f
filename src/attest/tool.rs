//! The attestation subcommands: `report`, `report decode FILE`, `policy-digest`. Output goes to stdout;
//! errors are returned as one line for the caller to log.
#![forbid(unsafe_code)]

use super::report::{Report, REPORT_LEN};
use crate::cli::{value, Command, PolicySource, Usage};
use crate::exit;
use crate::hex::{decode as unhex, encode as hex};
use serde_json::json;
use sha2::Digest;
use std::io::Write;
use std::path::Path;

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

fn print(r: &Report, format: Format) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    let res = match format {
        Format::Raw => out.write_all(&r.raw),
        Format::Json => serde_json::to_writer_pretty(&mut out, &to_json(r))
            .map_err(std::io::Error::other)
            .and_then(|_| writeln!(out)),
    };
    res.and_then(|_| out.flush())
        .map_err(|e| format!("stdout: {e}"))
}

/// `report [--data HEX]`: get a report from the first provider found.
pub fn report(data_hex: Option<&str>, format: Format) -> Result<(), String> {
    let mut rd = [0u8; 64];
    if let Some(h) = data_hex {
        let b = unhex(h).ok_or("--data: not hex")?;
        if b.len() > 64 {
            return Err(format!("--data: {} bytes, at most 64", b.len()));
        }
        rd[..b.len()].copy_from_slice(&b);
    }
    let a = super::detect(&super::Paths::default(), false).map_err(|e| e.to_string())?;
    let ev = a.report(&rd).map_err(|e| crate::errors::chain(&e))?;
    let r = Report::parse_lenient(&ev.report).map_err(|e| e.to_string())?;
    print(&r, format)
}

/// `report decode FILE`: a raw or hex report file.
pub fn decode(path: &Path, format: Format) -> Result<(), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let bytes = if bytes.len() == REPORT_LEN {
        bytes
    } else {
        let text = String::from_utf8_lossy(&bytes);
        let clean: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        unhex(&clean)
            .or_else(|| super::uvm::decode_b64(&clean))
            .ok_or_else(|| {
                format!(
                    "{}: neither a raw {REPORT_LEN}-byte report nor hex/base64 text",
                    path.display()
                )
            })?
    };
    let r = Report::parse_lenient(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    print(&r, format)
}

/// The SHA-256 (hex) of a base64 security policy: the report's host_data, MAA's `x-ms-sevsnpvm-hostdata`.
pub fn policy_digest(b64: &str) -> Result<String, String> {
    let policy = super::uvm::decode_b64(b64).ok_or("the policy is not base64")?;
    Ok(hex(&sha2::Sha256::digest(&policy)))
}

/// `help report`.
pub const REPORT_HELP: &str = "\
encfs-init report [--data HEX] [--raw | --json]
encfs-init report decode FILE [--raw | --json]

Get an SEV-SNP attestation report from this guest (configfs-tsm, /dev/sev-guest or /dev/sev, VMPL 0) and
print it decoded as JSON (default) or raw (1184 bytes). --data gives report_data (up to 64 bytes of hex,
zero-padded). `report decode FILE` decodes a saved report (raw, hex or base64).

Options:
  --data HEX   report_data
  --raw        the raw report on stdout
  --json       decoded JSON (the default)
  -h, --help   this text
";

/// `help policy-digest`.
pub const POLICY_DIGEST_HELP: &str = "\
encfs-init policy-digest (-p BASE64 | -f FILE)

Print the SHA-256 (hex) of a base64-encoded security policy (the ccePolicy of an ARM template): the
report's host_data and MAA's x-ms-sevsnpvm-hostdata claim, for release policies.

Options:
  -p BASE64    the policy, base64
  -f FILE      a file holding the base64 policy
  -h, --help   this text
";

/// Parse `report ...` (after the command word).
pub fn parse_report(args: &[String]) -> Result<Command, Usage> {
    use crate::attest::tool::Format;
    let mut data = None;
    let mut format = Format::Json;
    let mut decode = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--data" => data = Some(value(a, &mut it)?.display().to_string()),
            "--raw" => format = Format::Raw,
            "--json" => format = Format::Json,
            "-h" | "--help" => return Ok(Command::Help(REPORT_HELP)),
            "decode" if decode.is_none() && data.is_none() => decode = Some(value(a, &mut it)?),
            other => {
                return Err(Usage(format!(
                    "report: unexpected argument \"{other}\"; see `encfs-init help report`"
                )))
            }
        }
    }
    match decode {
        Some(file) if data.is_none() => Ok(Command::ReportDecode { file, format }),
        Some(_) => Err(Usage(
            "report decode: --data makes no sense with decode".into(),
        )),
        None => Ok(Command::Report { data, format }),
    }
}

/// Parse `policy-digest ...`.
pub fn parse_policy_digest(args: &[String]) -> Result<Command, Usage> {
    let mut source = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let new = match a.as_str() {
            "-p" => PolicySource::Inline(value(a, &mut it)?.display().to_string()),
            "-f" => PolicySource::File(value(a, &mut it)?),
            "-h" | "--help" => return Ok(Command::Help(POLICY_DIGEST_HELP)),
            other => {
                return Err(Usage(format!(
                    "policy-digest: unexpected argument \"{other}\"; give -p BASE64 or -f FILE"
                )))
            }
        };
        if source.replace(new).is_some() {
            return Err(Usage("policy-digest: give one of -p or -f, once".into()));
        }
    }
    source
        .map(|source| Command::PolicyDigest { source })
        .ok_or_else(|| Usage("policy-digest: give -p BASE64 or -f FILE".into()))
}

/// Run `policy-digest`; returns the exit code.
pub fn policy_digest_cmd(source: &PolicySource) -> i32 {
    let text = match source {
        PolicySource::Inline(s) => s.clone(),
        PolicySource::File(p) => match std::fs::read_to_string(p) {
            Ok(t) => t,
            Err(e) => {
                log::error!("policy-digest: {}: {e}", p.display());
                return exit::USAGE;
            }
        },
    };
    match crate::attest::tool::policy_digest(&text) {
        Ok(d) => {
            println!("{d}");
            exit::OK
        }
        Err(e) => {
            log::error!("policy-digest: {e}");
            exit::USAGE
        }
    }
}

/// Log an error and map to an exit code.
pub fn exit_code(what: &str, r: Result<(), String>) -> i32 {
    match r {
        Ok(()) => exit::OK,
        Err(e) => {
            log::error!("{what}: {e}");
            exit::BOOT_FAILED
        }
    }
}
