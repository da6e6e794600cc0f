//! UVM information ACI (and Kata on AKS) hands the guest (upstream-spec §5.6): the security policy, the
//! host's AMD certificate JSON (THIM form) and the UVM reference info (COSE_Sign1 endorsement).
//!
//! Directory: `$UVM_SECURITY_CONTEXT_DIR`, else the first entry of `/` whose name contains
//! `security-context-`, else `/opt/confidential-containers/share/kata-containers`. Files (base64 text;
//! whitespace and newlines are removed before decoding, as Go's decoder ignores them):
//! `security-policy-base64`, `host-amd-cert-base64`, `reference-info-base64`. Each missing file falls
//! back on its own environment variable (`UVM_SECURITY_POLICY`, `UVM_HOST_AMD_CERTIFICATE`,
//! `UVM_REFERENCE_INFO`), so a half-present directory no longer yields silent partial data (§11, 22):
//! what is found, and where, is reported in [`UvmInfo::sources`].
#![forbid(unsafe_code)]

use base64::Engine;
use std::path::{Path, PathBuf};

/// The Kata location.
pub const KATA_DIR: &str = "/opt/confidential-containers/share/kata-containers";

/// The host's AMD certificates in THIM JSON form.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, Default)]
pub struct ThimCerts {
    /// PEM VCEK.
    #[serde(rename = "vcekCert", default)]
    pub vcek_cert: String,
    /// The TCB (16 hex digits) the VCEK is for.
    #[serde(default)]
    pub tcbm: String,
    /// PEM ASK + ARK.
    #[serde(rename = "certificateChain", default)]
    pub certificate_chain: String,
    /// Cache lifetime in seconds (informational).
    #[serde(rename = "cacheControl", default)]
    pub cache_control: String,
}

impl ThimCerts {
    /// Parse THIM JSON.
    pub fn parse(json: &[u8]) -> Result<Self, Error> {
        serde_json::from_slice(json).map_err(Error::Json)
    }

    /// No certificate at all.
    pub fn is_empty(&self) -> bool {
        self.vcek_cert.trim().is_empty() && self.certificate_chain.trim().is_empty()
    }

    /// `tcbm` as the u64 it spells: 16 hex digits, most significant first (as `{:016x}` prints the
    /// report's TCB), an optional `0x` accepted.
    pub fn tcbm(&self) -> Result<u64, Error> {
        let t = self.tcbm.trim();
        let t = t.strip_prefix("0x").unwrap_or(t);
        crate::hex::decode_array::<8>(t)
            .map(u64::from_be_bytes)
            .ok_or_else(|| Error::Tcbm(self.tcbm.clone()))
    }

    /// VCEK then chain, as one PEM text.
    pub fn pem_chain(&self) -> String {
        let mut s = self.vcek_cert.trim_end().to_string();
        s.push('\n');
        s.push_str(self.certificate_chain.trim_end());
        s.push('\n');
        s
    }
}

/// UVM information errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A value is not base64.
    #[error("{source_name} is not base64")]
    Base64 {
        /// Which file or variable.
        source_name: String,
    },
    /// The host AMD certificate is not THIM JSON.
    #[error("host AMD certificate is not THIM JSON")]
    Json(#[source] serde_json::Error),
    /// `tcbm` is not 16 hex digits.
    #[error("THIM tcbm {0:?} is not 16 hex digits")]
    Tcbm(String),
    /// A file exists but cannot be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// Which.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// What was found.
#[derive(Debug, Clone, Default)]
pub struct UvmInfo {
    /// The decoded security policy (Rego text); its SHA-256 is the report's host_data.
    pub policy: Option<Vec<u8>>,
    /// The host's certificates.
    pub host_certs: Option<ThimCerts>,
    /// The decoded UVM reference info (COSE_Sign1 bytes).
    pub reference_info: Option<Vec<u8>>,
    /// Where each item came from, for the log.
    pub sources: Vec<String>,
}

/// Environment lookup (injectable).
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Decode base64 text: whitespace removed, standard or URL-safe alphabet, padded or not.
pub fn decode_b64(text: &str) -> Option<Vec<u8>> {
    let clean: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let clean = clean.trim_end_matches('=');
    let e = base64::engine::general_purpose::STANDARD_NO_PAD;
    let u = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    e.decode(clean).or_else(|_| u.decode(clean)).ok()
}

/// Find the security-context directory.
pub fn find_dir(env: Env<'_>, root: &Path) -> Option<PathBuf> {
    if let Some(d) = env("UVM_SECURITY_CONTEXT_DIR").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d));
    }
    if let Ok(rd) = std::fs::read_dir(root) {
        let mut names: Vec<PathBuf> = rd
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .contains("security-context-")
            })
            .map(|e| e.path())
            .collect();
        names.sort();
        if let Some(first) = names.into_iter().next() {
            return Some(first);
        }
    }
    let kata = root.join(KATA_DIR.trim_start_matches('/'));
    kata.is_dir().then_some(kata)
}

fn item(
    dir: Option<&Path>,
    file: &str,
    env: Env<'_>,
    var: &str,
    sources: &mut Vec<String>,
) -> Result<Option<Vec<u8>>, Error> {
    if let Some(d) = dir {
        let p = d.join(file);
        match std::fs::read_to_string(&p) {
            Ok(t) => {
                let v = decode_b64(&t).ok_or_else(|| Error::Base64 {
                    source_name: p.display().to_string(),
                })?;
                sources.push(format!("{file} from {}", p.display()));
                return Ok(Some(v));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::Read { path: p, source: e }),
        }
    }
    match env(var).filter(|v| !v.trim().is_empty()) {
        Some(t) => {
            let v = decode_b64(&t).ok_or_else(|| Error::Base64 {
                source_name: format!("${var}"),
            })?;
            sources.push(format!("{file} from ${var}"));
            Ok(Some(v))
        }
        None => Ok(None),
    }
}

/// Gather the UVM information; `root` is `/` in production.
pub fn load(env: Env<'_>, root: &Path) -> Result<UvmInfo, Error> {
    let dir = find_dir(env, root);
    let mut sources = Vec::new();
    let policy = item(
        dir.as_deref(),
        "security-policy-base64",
        env,
        "UVM_SECURITY_POLICY",
        &mut sources,
    )?;
    let certs = item(
        dir.as_deref(),
        "host-amd-cert-base64",
        env,
        "UVM_HOST_AMD_CERTIFICATE",
        &mut sources,
    )?;
    let reference_info = item(
        dir.as_deref(),
        "reference-info-base64",
        env,
        "UVM_REFERENCE_INFO",
        &mut sources,
    )?;
    let host_certs = certs.map(|c| ThimCerts::parse(&c)).transpose()?;
    Ok(UvmInfo {
        policy,
        host_certs,
        reference_info,
        sources,
    })
}

/// The process environment.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcbm(t: &str) -> Result<u64, Error> {
        ThimCerts {
            tcbm: t.into(),
            ..ThimCerts::default()
        }
        .tcbm()
    }

    #[test]
    fn a_tcbm_is_16_hex_digits_most_significant_first() {
        assert_eq!(tcbm("7308000000000003").unwrap(), 0x7308_0000_0000_0003);
        assert_eq!(
            tcbm(" 0xDB18000000000004\n").unwrap(),
            0xdb18_0000_0000_0004
        );
        for bad in [
            "3",
            "+308000000000003",
            "7308000000000003ff",
            "73080000000000g3",
            "",
        ] {
            assert!(matches!(tcbm(bad), Err(Error::Tcbm(_))), "{bad:?}");
        }
    }
}
