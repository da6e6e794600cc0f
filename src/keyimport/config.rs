//! The key import config: our TOML form, or upstream importkey's JSON as is (upstream-spec §8.2), read into
//! one checked [`Config`]. Which form a file is comes from its first non-blank character (`{`: JSON).
//!
//! TOML (every key checked; an unknown key is an error):
//!
//! ```toml
//! kid = "disk-key"                       # the key's name in the vault
//! kty = "oct-HSM"                        # or "RSA-HSM"
//! key_ops = ["encrypt", "decrypt"]       # optional
//! vault = "myhsm.managedhsm.azure.net"   # Key Vault or managed HSM (host or https URL)
//! authority = "sharedeus.eus.attest.azure.net"
//! api_version = "7.4"                    # optional
//! bearer_token_file = "/path/token"      # or bearer_token, or `--imds` / `--workload-identity`
//! policy_digest = "<64 hex digits>"      # or cce_policy_file = "policy.base64"
//! # claims = [[{ claim = "x-ms-sevsnpvm-hostdata", equals = "..." }]]   # replaces the default claims
//! [key_derivation]                       # RSA-HSM only
//! salt = "<hex>"
//! label = "Symmetric Encryption Key"
//! [identity]
//! client_id = "..."                      # user-assigned identity for --imds
//! [network]
//! ca_bundle = "/path/ca.pem"             # extra trust roots (tests, sovereign clouds)
//! [endpoints]
//! imds = "http://169.254.169.254"
//! ```
#![forbid(unsafe_code)]

use super::forms::{from_json, from_toml, Names, Raw, RawClaim};
use super::policy::{self, Claim};
use crate::manifest::VaultKind;
use crate::secret::SecretString;
use std::path::{Path, PathBuf};

/// The default Key Vault api-version (upstream's).
pub const DEFAULT_API_VERSION: &str = "7.4";
/// IMDS, as Azure serves it.
pub const DEFAULT_IMDS: &str = "http://169.254.169.254";

/// The key type to import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kty {
    /// `oct-HSM`: 32 bytes, the disk key itself.
    Oct,
    /// `RSA-HSM`: the disk key is HKDF of its private exponent.
    Rsa,
}

impl Kty {
    /// The JWK name.
    pub fn name(self) -> &'static str {
        match self {
            Kty::Oct => "oct-HSM",
            Kty::Rsa => "RSA-HSM",
        }
    }
}

/// A checked config.
#[derive(Debug)]
pub struct Config {
    /// The key's name.
    pub kid: String,
    /// Its type.
    pub kty: Kty,
    /// `key_ops`, when given.
    pub key_ops: Option<Vec<String>>,
    /// `https://host[:port][/path]`.
    pub vault: String,
    /// Key Vault or managed HSM (by the host name, as the manifest decides it).
    pub vault_kind: VaultKind,
    /// `https://host` of the attestation authority (the release policy's `authority`).
    pub authority: String,
    /// The vault's api-version (`7.4`).
    pub api_version: String,
    /// A bearer token from the config.
    pub bearer_token: Option<SecretString>,
    /// The managed identity for `--imds`.
    pub client_id: Option<String>,
    /// The release policy's claims: one `anyOf` entry per inner list.
    pub claims: Vec<Vec<Claim>>,
    /// `[key_derivation] salt`, when given (hex decoded).
    pub salt: Option<Vec<u8>>,
    /// `[key_derivation] label` or the default.
    pub label: String,
    /// `[network] ca_bundle`.
    pub ca_bundle: Option<PathBuf>,
    /// `[endpoints] imds`.
    pub imds: String,
}

/// A config that cannot be used. Each names the file and the field, and the fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file cannot be read.
    #[error("cannot read the config {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Not TOML of our form (the parser's message, on one line).
    #[error("config {}:{line}:{column}: not a key import config: {message}; fix: see config/key-import.toml or `encfs-init help key` for the fields", path.display())]
    Toml {
        /// The file.
        path: PathBuf,
        /// Where (1-based).
        line: usize,
        /// Where (1-based).
        column: usize,
        /// The parser's words.
        message: String,
    },
    /// Not JSON.
    #[error("config {}: not JSON; fix: give upstream importkey's config.json or our TOML form", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The parser's words.
        #[source]
        source: serde_json::Error,
    },
    /// A field is wrong.
    #[error("config {}: {field}: {what}; fix: {fix}", path.display())]
    Field {
        /// The file.
        path: PathBuf,
        /// The field (`kid`, `key.akv.endpoint`).
        field: String,
        /// What is wrong.
        what: String,
        /// How to fix it.
        fix: String,
    },
}

/// Read and check the config at `path`.
pub fn load(path: &Path) -> Result<Config, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let raw = if text.trim_start().starts_with('{') {
        from_json(path, &text)?
    } else {
        from_toml(path, &text)?
    };
    check(path, raw)
}

fn check(path: &Path, raw: Raw) -> Result<Config, Error> {
    let n = raw.names;
    let field = |field: String, what: String, fix: &str| Error::Field {
        path: path.to_path_buf(),
        field,
        what,
        fix: fix.to_string(),
    };
    let kid = raw.kid.filter(|k| !k.is_empty()).ok_or_else(|| {
        field(
            n.of("kid", "key.kid"),
            "missing".into(),
            "set kid to the key's name in the vault",
        )
    })?;
    if kid.len() > 127 || !kid.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(field(
            n.of("kid", "key.kid"),
            format!("\"{kid}\" is not a key name"),
            "use 1 to 127 letters, digits and dashes (an import makes a new version: give no version)",
        ));
    }
    let kty = match raw.kty.as_deref().unwrap_or("") {
        // Upstream: an empty kty is an oct-HSM key.
        "" | "oct-HSM" => Kty::Oct,
        "RSA-HSM" => Kty::Rsa,
        other => return Err(field(
            n.of("kty", "key.kty"),
            format!("key type \"{other}\" cannot be imported as a disk key"),
            "use oct-HSM (32 bytes, the disk key itself) or RSA-HSM (the disk key derived by HKDF)",
        )),
    };
    let vault_field = n.of("vault", "key.akv.endpoint");
    let vault = endpoint(&vault_field, raw.vault.as_deref())
        .map_err(|(what, fix)| field(vault_field.clone(), what, fix))?;
    let authority_field = n.of("authority", "key.authority.endpoint");
    let authority = endpoint(&authority_field, raw.authority.as_deref())
        .map_err(|(what, fix)| field(authority_field.clone(), what, fix))?;
    let vault_kind = if vault.contains("managedhsm") {
        VaultKind::ManagedHsm
    } else {
        VaultKind::KeyVault
    };
    let api_version = raw
        .api_version
        .as_deref()
        .map(|v| v.trim().trim_start_matches("api-version=").to_string())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| DEFAULT_API_VERSION.to_string());
    if !api_version
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'))
    {
        return Err(field(
            n.of("api_version", "key.akv.api_version"),
            format!("\"{api_version}\" is not an api-version"),
            "write e.g. 7.4",
        ));
    }
    let bearer_token = match (raw.bearer_token, raw.bearer_token_file) {
        (Some(_), Some(_)) => {
            return Err(field(
                "bearer_token_file".into(),
                "both bearer_token and bearer_token_file are set".into(),
                "keep only one",
            ))
        }
        (Some(t), None) => Some(SecretString::new(t.trim().to_string())),
        (None, Some(f)) => {
            let t = std::fs::read_to_string(&f).map_err(|e| {
                field(
                    "bearer_token_file".into(),
                    format!("cannot read {f}: {e}"),
                    "give a readable file holding the token",
                )
            })?;
            Some(SecretString::new(t.trim().to_string()))
        }
        (None, None) => None,
    };
    let claims = claims(path, n, raw.claims, raw.policy_digest, raw.cce_policy_file)?;
    let salt = match raw.salt.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(crate::hex::decode(s).ok_or_else(|| {
            field(
                n.of("key_derivation.salt", "key_derivation.salt"),
                format!("\"{s:.80}\" is not hex"),
                "write the salt as hex digits (the manifest's [filesystem.key_derivation] salt)",
            )
        })?),
    };
    let label = raw.label.filter(|l| !l.is_empty());
    if kty == Kty::Oct && (salt.is_some() || label.is_some()) {
        return Err(field(
            n.of("key_derivation", "key_derivation"),
            "a salt or label is set for an oct-HSM key, whose bytes are the disk key as they are"
                .into(),
            "remove key_derivation, or import an RSA-HSM key",
        ));
    }
    let imds = raw.imds.unwrap_or_else(|| DEFAULT_IMDS.to_string());
    if !imds_allowed(&imds) {
        return Err(field(
            "endpoints.imds".into(),
            format!(
                "\"{imds:.120}\" is not an https URL, nor plain http to 169.254.169.254 or loopback"
            ),
            "write http://169.254.169.254 (Azure's), a loopback http URL (tests) or an https URL",
        ));
    }
    Ok(Config {
        kid,
        kty,
        key_ops: raw.key_ops,
        vault,
        vault_kind,
        authority,
        api_version,
        bearer_token,
        client_id: raw.client_id.filter(|c| !c.is_empty()),
        claims,
        salt,
        label: label.unwrap_or_else(|| crate::keyrelease::unwrap::DEFAULT_LABEL.to_string()),
        ca_bundle: raw.ca_bundle.map(PathBuf::from),
        imds: imds.trim_end_matches('/').to_string(),
    })
}

/// The release policy's claims: the config's, or the default claims on the policy digest.
fn claims(
    path: &Path,
    n: Names,
    given: Option<Vec<Vec<RawClaim>>>,
    digest: Option<String>,
    cce_file: Option<String>,
) -> Result<Vec<Vec<Claim>>, Error> {
    let field = |field: String, what: String, fix: &str| Error::Field {
        path: path.to_path_buf(),
        field,
        what,
        fix: fix.to_string(),
    };
    let host_data = match (digest, cce_file) {
        (Some(_), Some(_)) => {
            return Err(field(
                "cce_policy_file".into(),
                "both policy_digest and cce_policy_file are set".into(),
                "keep only one",
            ))
        }
        (Some(d), None) => {
            let d = d.trim().to_ascii_lowercase();
            if crate::hex::decode_array::<32>(&d).is_none() {
                return Err(field(
                    "policy_digest".into(),
                    format!("\"{d:.80}\" is not 64 hex digits"),
                    "give the SHA-256 of the security policy as `encfs-init policy-digest` prints it",
                ));
            }
            Some(d)
        }
        (None, Some(f)) => {
            let text = std::fs::read_to_string(&f).map_err(|e| {
                field(
                    "cce_policy_file".into(),
                    format!("cannot read {f}: {e}"),
                    "give the file holding the base64 security policy (the ARM template's ccePolicy)",
                )
            })?;
            Some(crate::attest::tool::policy_digest(&text).map_err(|e| {
                field(
                    "cce_policy_file".into(),
                    format!("{f}: {e}"),
                    "give the base64 security policy (the ARM template's ccePolicy), not the Rego text",
                )
            })?)
        }
        (None, None) => None,
    };
    match (given, host_data) {
        (Some(_), Some(_)) => Err(field(
            "claims".into(),
            "claims and a policy digest are both set".into(),
            "give claims (the whole policy) or policy_digest / cce_policy_file (the default claims), not both",
        )),
        (Some(c), None) => {
            if c.is_empty() || c.iter().any(Vec::is_empty) {
                return Err(field(
                    "claims".into(),
                    "an empty list of claims would make the policy accept nothing or anything".into(),
                    "give at least one claim in each list",
                ));
            }
            Ok(c.into_iter()
                .map(|all| {
                    all.into_iter()
                        .map(|c| Claim {
                            claim: c.claim,
                            equals: c.equals,
                        })
                        .collect()
                })
                .collect())
        }
        (None, Some(h)) => Ok(vec![policy::default_claims(&h)]),
        (None, None) => Err(field(
            n.of("policy_digest", "claims"),
            "no release policy: neither claims nor a policy digest".into(),
            if n.json {
                "add claims, e.g. [[{\"claim\": \"x-ms-sevsnpvm-hostdata\", \"equals\": \"<policy digest>\"}]]"
            } else {
                "set policy_digest (`encfs-init policy-digest` prints it) or cce_policy_file, or give claims"
            },
        )),
    }
}

/// `host`, `host:port` or `https://host[:port][/path]` → `https://...` without a trailing slash.
fn endpoint(name: &str, raw: Option<&str>) -> Result<String, (String, &'static str)> {
    let Some(raw) = raw.map(str::trim).filter(|r| !r.is_empty()) else {
        return Err((
            "missing".into(),
            if name.contains("authority") {
                "set it to your attestation (MAA) endpoint, e.g. sharedeus.eus.attest.azure.net"
            } else {
                "set it to the Key Vault or managed HSM host, e.g. myhsm.managedhsm.azure.net"
            },
        ));
    };
    crate::url::endpoint(raw, false).map_err(|e| {
        let fix = match e {
            crate::url::EndpointError::Invalid => {
                "write a host name such as myvault.vault.azure.net or an https:// URL"
            }
            _ => "use https:// (the key and its token travel to it)",
        };
        (format!("\"{raw:.120}\" {e}"), fix)
    })
}

/// IMDS answers the token: https, or plain http to Azure's link-local address or to this machine.
fn imds_allowed(url: &str) -> bool {
    let host = crate::url::host(url);
    let ok = match url.split_once("://") {
        Some(("https", r)) => !r.is_empty(),
        Some(("http", r)) => {
            !r.is_empty() && matches!(host, "169.254.169.254" | "127.0.0.1" | "localhost" | "::1")
        }
        _ => false,
    };
    ok && !url.contains(['?', '#', ' ', '@'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_become_https_urls_and_others_are_refused() {
        assert_eq!(
            endpoint("vault", Some("kv.vault.azure.net")).unwrap(),
            "https://kv.vault.azure.net"
        );
        assert_eq!(
            endpoint("vault", Some("https://127.0.0.1:8443/mhsm/")).unwrap(),
            "https://127.0.0.1:8443/mhsm"
        );
        for bad in ["http://kv", "kv?x=1", "", "u@kv", "ftp://kv"] {
            assert!(endpoint("vault", Some(bad)).is_err(), "{bad}");
        }
        assert!(imds_allowed("http://169.254.169.254"));
        assert!(imds_allowed("http://127.0.0.1:8080"));
        assert!(!imds_allowed("http://imds.example"));
    }
}
