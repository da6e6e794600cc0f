//! The endpoints, with upstream's request and response JSON (upstream-spec §7), and each error as one
//! `{"error":"..."}` body with its status.
//!
//! | request | answer |
//! |---|---|
//! | `GET /status` | `{"message":"Status OK"}` |
//! | `POST /attest/raw` `{"runtime_data"}` | `{"report":"<hex>"}` |
//! | `POST /attest/combined` `{"runtime_data"}` | `{"endorsed_tcb","endorsements","evidence","uvm_endorsements"}` |
//! | `POST /attest/maa` `{"maa_endpoint","runtime_data"}` | `{"token"}` |
//! | `POST /key/release` `{"maa_endpoint","akv_endpoint","kid","access_token"?}` | `{"key":"<JWK JSON>"}` |
#![forbid(unsafe_code)]

use super::Backend;
use crate::keyrelease::token::{TokenCache, TokenSource};
use crate::keyrelease::{self, export, Step};
use crate::manifest::VaultKind;
use crate::secret::SecretString;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::Deserialize;
use std::sync::{Arc, Mutex, PoisonError};
use zeroize::Zeroizing;

/// An answer: status, JSON body (wiped when dropped: it may hold a released key) and, for a 405, the
/// methods allowed.
#[derive(Debug)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// `Allow` of a 405.
    pub allow: Option<&'static str>,
    /// The JSON body.
    pub body: Zeroizing<Vec<u8>>,
}

impl Reply {
    fn ok(body: Vec<u8>) -> Reply {
        Reply {
            status: 200,
            allow: None,
            body: Zeroizing::new(body),
        }
    }

    /// `{"error":"<text>"}` with `status`.
    pub fn error(status: u16, text: &str) -> Reply {
        Reply {
            status,
            allow: None,
            body: Zeroizing::new(super::wire::error_body(text)),
        }
    }
}

/// Why a request was not served (each printed with its causes by [`crate::errors::chain`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The body is not the JSON the endpoint takes (or a field is missing).
    #[error("the request body is not the JSON {path} takes; fix: send {expect}")]
    Json {
        /// The endpoint.
        path: &'static str,
        /// What it takes.
        expect: &'static str,
        /// serde's finding.
        #[source]
        source: serde_json::Error,
    },
    /// A field is empty.
    #[error("{0} is empty; fix: give a value")]
    Empty(&'static str),
    /// runtime_data is not standard base64.
    #[error("runtime_data is not standard base64; fix: encode the runtime data with standard base64 (with padding)")]
    Base64(#[source] base64::DecodeError),
    /// An endpoint field is not a host (or plain http out of test mode).
    #[error("{field} {value:?} is not an endpoint; fix: give a host name such as {example} (https; http:// only with test_mode)")]
    Endpoint {
        /// The field.
        field: &'static str,
        /// What it held.
        value: String,
        /// An example.
        example: &'static str,
    },
    /// kid is not a key name.
    #[error("kid {0:?} is not a key name; fix: give the key's name (letters, digits, '-'), optionally /version")]
    Kid(String),
    /// The identity's vault token would go to a host that is not a vault.
    #[error("the identity's vault token is not sent to {0}: it is neither an Azure Key Vault or managed HSM host nor a vault the manifest names; fix: pass access_token for this vault, or use the vault's Azure host name")]
    UntrustedVault(String),
    /// A step of attestation or release failed.
    #[error("{what}")]
    Release {
        /// The endpoint and key.
        what: String,
        /// The step's error (boxed: it is large).
        #[source]
        source: Box<keyrelease::Error>,
    },
    /// The released key cannot be written as a JWK.
    #[error("the released key cannot be answered as a JWK")]
    Export(#[source] export::Error),
}

impl Error {
    /// The status: 400 for the request, 403 when attestation or release was refused (MAA 400/401/403, a
    /// vault 401/403), 502 when an upstream service failed, 500 for the rest.
    pub fn status(&self) -> u16 {
        use keyrelease::Error as K;
        match self {
            Error::Json { .. }
            | Error::Empty(_)
            | Error::Base64(_)
            | Error::Endpoint { .. }
            | Error::Kid(_) => 400,
            Error::UntrustedVault(_) => 403,
            Error::Export(_) => 500,
            Error::Release { source, .. } => match **source {
                K::Status {
                    step: Step::Release,
                    status: 401 | 403,
                    ..
                }
                | K::Status {
                    step: Step::Maa,
                    status: 400 | 401 | 403,
                    ..
                } => 403,
                K::Status { .. }
                | K::Transport { .. }
                | K::Malformed { .. }
                | K::Jws(_)
                | K::Collateral(_) => 502,
                _ => 500,
            },
        }
    }
}

#[derive(Deserialize)]
struct Runtime {
    runtime_data: String,
}

#[derive(Deserialize)]
struct Maa {
    maa_endpoint: String,
    runtime_data: String,
}

#[derive(Deserialize)]
struct Release {
    maa_endpoint: String,
    akv_endpoint: String,
    kid: String,
    #[serde(default)]
    access_token: Option<String>,
}

/// The vault tokens of `/key/release`: a caller's `access_token` serves its own request only; the
/// identity's are cached per vault kind across requests (a token lasts hours, and IMDS throttles).
#[derive(Debug, Default)]
pub struct Tokens {
    key_vault: Mutex<Option<Arc<TokenCache>>>,
    managed_hsm: Mutex<Option<Arc<TokenCache>>>,
}

impl Tokens {
    fn for_request<B: Backend>(
        &self,
        b: &B,
        caller: Option<SecretString>,
        kind: VaultKind,
    ) -> Result<Arc<TokenCache>, keyrelease::Error> {
        if let Some(t) = caller {
            return Ok(Arc::new(TokenCache::new(TokenSource::Static(t))));
        }
        let slot = match kind {
            VaultKind::KeyVault => &self.key_vault,
            VaultKind::ManagedHsm => &self.managed_hsm,
        };
        let mut cached = slot.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = cached.as_ref() {
            return Ok(c.clone());
        }
        let c = Arc::new(TokenCache::new(b.identity(kind)?));
        *cached = Some(c.clone());
        Ok(c)
    }
}

/// The attestation endpoints call no vault: their context's token source is never asked.
fn no_vault() -> TokenCache {
    TokenCache::new(TokenSource::Static(SecretString::new(String::new())))
}

/// Answer `method path` with `body`.
pub fn handle<B: Backend>(b: &B, tokens: &Tokens, method: &str, path: &str, body: &[u8]) -> Reply {
    let allowed = match path {
        "/status" => "GET",
        "/attest/raw" | "/attest/combined" | "/attest/maa" | "/key/release" => "POST",
        _ => {
            return Reply::error(
                404,
                &format!("no endpoint {path}; fix: use /status, /attest/raw, /attest/combined, /attest/maa or /key/release"),
            )
        }
    };
    if method != allowed {
        let mut r = Reply::error(
            405,
            &format!("{path} takes {allowed}, not {method}; fix: send a {allowed} request"),
        );
        r.allow = Some(allowed);
        return r;
    }
    let r = match path {
        "/status" => Ok(Reply::ok(br#"{"message":"Status OK"}"#.to_vec())),
        "/attest/raw" => raw(b, body),
        "/attest/combined" => combined(b, body),
        "/attest/maa" => maa(b, body),
        _ => release(b, tokens, body),
    };
    r.unwrap_or_else(|e| {
        let line = crate::errors::chain(&e);
        log::warn!("SKR API: {method} {path}: {line}");
        Reply::error(e.status(), &line)
    })
}

fn json<'a, T: Deserialize<'a>>(
    body: &'a [u8],
    path: &'static str,
    expect: &'static str,
) -> Result<T, Error> {
    serde_json::from_slice(body).map_err(|source| Error::Json {
        path,
        expect,
        source,
    })
}

fn runtime_data(text: &str) -> Result<Vec<u8>, Error> {
    if text.is_empty() {
        return Err(Error::Empty("runtime_data"));
    }
    B64.decode(text).map_err(Error::Base64)
}

fn failed(what: String) -> impl FnOnce(keyrelease::Error) -> Error {
    move |source| Error::Release {
        what,
        source: Box::new(source),
    }
}

fn raw<B: Backend>(b: &B, body: &[u8]) -> Result<Reply, Error> {
    let r: Runtime = json(body, "/attest/raw", r#"{"runtime_data":"<base64>"}"#)?;
    let rd = runtime_data(&r.runtime_data)?;
    let (ev, _) = b
        .with_context(&no_vault(), |ctx| keyrelease::report(ctx, &rd))
        .map_err(failed("attestation report".into()))?;
    Ok(Reply::ok(
        serde_json::json!({ "report": crate::hex::encode(&ev.report) })
            .to_string()
            .into_bytes(),
    ))
}

fn combined<B: Backend>(b: &B, body: &[u8]) -> Result<Reply, Error> {
    let r: Runtime = json(body, "/attest/combined", r#"{"runtime_data":"<base64>"}"#)?;
    let rd = runtime_data(&r.runtime_data)?;
    let (ev, uvm) = b
        .with_context(&no_vault(), |ctx| {
            let ev = keyrelease::evidence(ctx, &rd, "SKR API /attest/combined")?;
            Ok((ev, ctx.uvm.reference_info.as_deref().map(|u| B64.encode(u))))
        })
        .map_err(failed("attestation evidence".into()))?;
    Ok(Reply::ok(
        serde_json::json!({
            "endorsed_tcb": format!("{:016x}", ev.parsed.reported_tcb),
            "endorsements": B64.encode(ev.chain.pem.as_bytes()),
            "evidence": B64.encode(&ev.report),
            "uvm_endorsements": uvm.unwrap_or_default(),
        })
        .to_string()
        .into_bytes(),
    ))
}

fn maa<B: Backend>(b: &B, body: &[u8]) -> Result<Reply, Error> {
    let r: Maa = json(
        body,
        "/attest/maa",
        r#"{"maa_endpoint":"<host>","runtime_data":"<base64>"}"#,
    )?;
    let authority = endpoint(
        "maa_endpoint",
        &r.maa_endpoint,
        "sharedeus.eus.attest.azure.net",
        b.test_mode(),
    )?;
    let rd = runtime_data(&r.runtime_data)?;
    let token = b
        .with_context(&no_vault(), |ctx| {
            keyrelease::maa_token(ctx, &authority, &rd, "SKR API /attest/maa")
        })
        .map_err(failed(format!("MAA token from {authority}")))?;
    log::info!("SKR API /attest/maa: a token from {authority}");
    Ok(Reply::ok(json_field("token", token.expose())))
}

fn release<B: Backend>(b: &B, tokens: &Tokens, body: &[u8]) -> Result<Reply, Error> {
    let r: Release = json(
        body,
        "/key/release",
        r#"{"maa_endpoint":"<host>","akv_endpoint":"<host>","kid":"<name>","access_token":"<optional>"}"#,
    )?;
    let token = r
        .access_token
        .filter(|t| !t.is_empty())
        .map(SecretString::new);
    let authority = endpoint(
        "maa_endpoint",
        &r.maa_endpoint,
        "sharedeus.eus.attest.azure.net",
        b.test_mode(),
    )?;
    let vault = endpoint(
        "akv_endpoint",
        &r.akv_endpoint,
        "myvault.vault.azure.net",
        b.test_mode(),
    )?;
    let kid = r.kid;
    let name_ok =
        |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    let kid_ok = match kid.split_once('/') {
        Some((n, v)) => name_ok(n) && name_ok(v),
        None => name_ok(&kid),
    };
    if !kid_ok {
        return Err(Error::Kid(kid.chars().take(200).collect()));
    }
    let host = crate::url::host(&vault).to_ascii_lowercase();
    if token.is_none() && !identity_may_reach(&host, &b.manifest_vaults(), b.test_mode()) {
        return Err(Error::UntrustedVault(host));
    }
    let kind = if vault.contains("managedhsm") {
        VaultKind::ManagedHsm
    } else {
        VaultKind::KeyVault
    };
    let what = format!("key release of {kid} from {vault}");
    let tokens = tokens
        .for_request(b, token, kind)
        .map_err(failed(what.clone()))?;
    let released = b
        .with_context(&tokens, |ctx| {
            let attested = keyrelease::attest_at(ctx, &authority, &kid)?;
            keyrelease::release_material(ctx, &attested, &vault, &kid)
        })
        .map_err(failed(what))?;
    let jwk = export::jwk(&released).map_err(Error::Export)?;
    let jwk = std::str::from_utf8(jwk.expose()).unwrap_or_default();
    log::info!(
        "SKR API /key/release: released {kid} ({}) from {vault} to the caller",
        released.kty
    );
    Ok(Reply::ok(json_field("key", jwk)))
}

/// `{"<name>":"<value>"}` (the value a token or a key): written straight into a buffer sized for the
/// worst case, so it never grows and leaves no copy behind (serde_json's writer would).
fn json_field(name: &str, value: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() * 6 + name.len() + 8);
    out.extend_from_slice(b"{\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":\"");
    for c in value.bytes() {
        match c {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0..=0x1f => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(c >> 4)]);
                out.push(HEX[usize::from(c & 15)]);
            }
            _ => out.push(c),
        }
    }
    out.extend_from_slice(b"\"}");
    out
}

/// Azure's Key Vault and managed HSM DNS suffixes (public and sovereign clouds).
const VAULT_SUFFIXES: [&str; 7] = [
    ".vault.azure.net",
    ".managedhsm.azure.net",
    ".vault.azure.cn",
    ".managedhsm.azure.cn",
    ".vault.usgovcloudapi.net",
    ".managedhsm.usgovcloudapi.net",
    ".vault.microsoftazure.de",
];

/// Whether the plan's identity may send its vault token to `host`: an Azure vault host, a vault the
/// manifest names, or anything in test mode. (Upstream sent it wherever the caller said.)
pub fn identity_may_reach(host: &str, manifest_vaults: &[String], test_mode: bool) -> bool {
    test_mode
        || VAULT_SUFFIXES.iter().any(|s| host.ends_with(s))
        || manifest_vaults.iter().any(|v| v.eq_ignore_ascii_case(host))
}

/// A caller's endpoint, as the manifest takes one ([`crate::url::endpoint`]): `host[:port]` (https
/// assumed) or `https://host[:port]`; `http://` only in test mode.
fn endpoint(
    field: &'static str,
    raw: &str,
    example: &'static str,
    test_mode: bool,
) -> Result<String, Error> {
    crate::url::endpoint(raw, test_mode).map_err(|_| Error::Endpoint {
        field,
        value: raw.chars().take(200).collect(),
        example,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_field_escapes_as_json_and_never_grows() {
        let value = "{\"k\":\"a\\b\u{1}\"}";
        let out = json_field("key", value);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap_or_default();
        assert_eq!(v, serde_json::json!({ "key": value }));
        assert!(out.capacity() >= out.len() && out.capacity() == value.len() * 6 + 3 + 8);
    }
}
