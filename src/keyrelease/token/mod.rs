//! Access tokens for the vault (upstream-spec §6.3, §4.5), cached and refreshed before 80 % of their
//! lifetime (upstream refreshed exactly at expiry and stopped after one failed refresh).
//!
//! Sources, in the order [`TokenSource::for_vault`] picks them:
//! 1. a static bearer token from the manifest;
//! 2. workload identity when `AZURE_CLIENT_ID`, `AZURE_TENANT_ID` and `AZURE_FEDERATED_TOKEN_FILE` are
//!    set: `POST <AZURE_AUTHORITY_HOST or the plan's login authority>/<tenant>/oauth2/v2.0/token`, form
//!    `grant_type=client_credentials`, `client_id`, `client_assertion_type=
//!    urn:ietf:params:oauth:client-assertion-type:jwt-bearer`, `client_assertion=<token file>`,
//!    `scope=<resource>/.default`; the file is re-read on every fetch (kubelet rotates it);
//! 3. IMDS: `GET <imds>/metadata/identity/oauth2/token?api-version=<v>&resource=<escaped>[&client_id=]`,
//!    header `Metadata: true`; `expires_in` is accepted as a string (IMDS) or a number.
//!
//! Resources: `https://vault.azure.net` for Key Vault, `https://managedhsm.azure.net` for a managed HSM.
#![forbid(unsafe_code)]

use super::{Error, Step};
use crate::http::{self, Exchange};
use crate::manifest::VaultKind;
use crate::secret::SecretString;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Where tokens come from.
#[derive(Debug)]
pub enum TokenSource {
    /// Given in the manifest; never refreshed.
    Static(SecretString),
    /// Managed identity through IMDS.
    Imds {
        /// IMDS base URL.
        base: String,
        /// api-version.
        api_version: String,
        /// Resource.
        resource: String,
        /// User-assigned identity.
        client_id: Option<String>,
    },
    /// AKS workload identity.
    Workload {
        /// Authority base URL.
        authority: String,
        /// Tenant.
        tenant: String,
        /// Client id.
        client_id: String,
        /// The projected service-account token.
        token_file: PathBuf,
        /// Resource.
        resource: String,
    },
}

/// What workload identity needs from the environment (as the AKS webhook sets it): the client id, the
/// tenant, the projected service-account token's file.
pub const WORKLOAD_IDENTITY_ENV: [&str; 3] = [
    "AZURE_CLIENT_ID",
    "AZURE_TENANT_ID",
    "AZURE_FEDERATED_TOKEN_FILE",
];

/// `k` from `env`, unless it is unset or empty (how workload identity's variables count as set).
fn nonempty(env: &dyn Fn(&str) -> Option<String>, k: &str) -> Option<String> {
    env(k).filter(|v| !v.is_empty())
}

/// The [`WORKLOAD_IDENTITY_ENV`] variables `env` lacks (unset or empty), for a message naming them.
pub fn workload_env_missing(env: &dyn Fn(&str) -> Option<String>) -> Vec<&'static str> {
    WORKLOAD_IDENTITY_ENV
        .into_iter()
        .filter(|k| nonempty(env, k).is_none())
        .collect()
}

/// The AAD resource for a vault kind.
pub fn vault_resource(kind: VaultKind) -> &'static str {
    match kind {
        VaultKind::KeyVault => "https://vault.azure.net",
        VaultKind::ManagedHsm => "https://managedhsm.azure.net",
    }
}

/// Percent-encode a query value (RFC 3986 unreserved kept).
pub fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl TokenSource {
    /// Pick the source for a vault: static token, else workload identity (from `env`), else IMDS.
    pub fn for_vault(
        static_token: Option<&SecretString>,
        kind: VaultKind,
        plan: &crate::manifest::Plan,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, Error> {
        Self::for_resource(static_token, vault_resource(kind), plan, env)
    }

    /// Pick the source for any `resource` (a vault, or a storage account's blob endpoint): static token,
    /// else workload identity (from `env`), else IMDS. `AZURE_AUTHORITY_HOST` comes from the environment,
    /// not the manifest, and the client assertion goes to it: it must be https unless in test mode.
    pub fn for_resource(
        static_token: Option<&SecretString>,
        resource: &str,
        plan: &crate::manifest::Plan,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, Error> {
        let resource = resource.to_string();
        if let Some(t) = static_token {
            return Ok(TokenSource::Static(SecretString::new(
                t.expose().to_string(),
            )));
        }
        if let Some(w) = Self::workload(
            &resource,
            &plan.endpoints.login_authority.0,
            plan.test_mode,
            env,
        )? {
            return Ok(w);
        }
        Ok(TokenSource::Imds {
            base: plan.endpoints.imds.0.clone(),
            api_version: plan.api_versions.imds.clone(),
            resource,
            client_id: plan.identity.client_id.clone(),
        })
    }

    /// AKS workload identity for `resource` when the environment has it (`AZURE_CLIENT_ID`,
    /// `AZURE_TENANT_ID`, `AZURE_FEDERATED_TOKEN_FILE`, all non-empty; `AZURE_AUTHORITY_HOST` if set, else
    /// `default_authority`); `None` when one of the three is missing.
    pub fn workload(
        resource: &str,
        default_authority: &str,
        test_mode: bool,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, Error> {
        let [id, tenant, file] = WORKLOAD_IDENTITY_ENV;
        let (Some(client_id), Some(tenant), Some(file)) = (
            nonempty(env, id),
            nonempty(env, tenant),
            nonempty(env, file),
        ) else {
            return Ok(None);
        };
        let authority = match nonempty(env, "AZURE_AUTHORITY_HOST") {
            Some(a) => checked_authority_host(&a, test_mode)?,
            None => default_authority.to_string(),
        };
        Ok(Some(TokenSource::Workload {
            authority: authority.trim_end_matches('/').to_string(),
            tenant,
            client_id,
            token_file: PathBuf::from(file),
            resource: resource.to_string(),
        }))
    }

    /// Fetch a token and its lifetime.
    pub fn fetch(&self, t: &dyn Exchange) -> Result<(SecretString, Option<Duration>), Error> {
        match self {
            TokenSource::Static(s) => Ok((SecretString::new(s.expose().to_string()), None)),
            TokenSource::Imds {
                base,
                api_version,
                resource,
                client_id,
            } => {
                let mut url = format!(
                    "{base}/metadata/identity/oauth2/token?api-version={api_version}&resource={}",
                    pct(resource)
                );
                if let Some(c) = client_id {
                    url.push_str(&format!("&client_id={}", pct(c)));
                }
                let req = http::Request::new("GET", &url).header("Metadata", "true");
                parse_token(Step::Imds, &super::send(t, Step::Imds, req)?)
            }
            TokenSource::Workload {
                authority,
                tenant,
                client_id,
                token_file,
                resource,
            } => {
                let assertion =
                    std::fs::read_to_string(token_file).map_err(|e| Error::Malformed {
                        step: Step::WorkloadIdentity,
                        detail: format!(
                            "cannot read AZURE_FEDERATED_TOKEN_FILE {}: {e}",
                            token_file.display()
                        ),
                    })?;
                let assertion = SecretString::new(assertion.trim().to_string());
                let form = SecretString::new(format!(
                    "grant_type=client_credentials&client_id={}&client_assertion_type={}&client_assertion={}&scope={}",
                    pct(client_id),
                    pct("urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
                    pct(assertion.expose()),
                    pct(&format!("{resource}/.default")),
                ));
                let url = format!("{authority}/{}/oauth2/v2.0/token", pct(tenant));
                let req = http::Request::new("POST", &url)
                    .header("Content-Type", "application/x-www-form-urlencoded")
                    .body(form.expose().as_bytes());
                let step = Step::WorkloadIdentity;
                parse_token(step, &super::send(t, step, req)?)
            }
        }
    }
}

/// `AZURE_AUTHORITY_HOST` as the workload identity webhook sets it (`https://login.microsoftonline.com/`):
/// an https URL with a host, no query; plain http only in test mode (the client assertion travels to it).
fn checked_authority_host(raw: &str, test_mode: bool) -> Result<String, Error> {
    let raw = raw.trim();
    let refuse = |why: &str| Error::Malformed {
        step: Step::WorkloadIdentity,
        detail: format!(
            "AZURE_AUTHORITY_HOST \"{}\" {why}; fix: set it to an https:// URL such as \
             https://login.microsoftonline.com/ or unset it to use [endpoints] login_authority",
            raw.chars().take(120).collect::<String>()
        ),
    };
    let (scheme, rest) = raw
        .split_once("://")
        .ok_or_else(|| refuse("is not a URL"))?;
    match scheme.to_ascii_lowercase().as_str() {
        "https" => {}
        "http" if test_mode => {}
        "http" => {
            return Err(refuse(
                "uses plain http, which would send the client assertion in clear text (allowed only with test_mode = true)",
            ))
        }
        _ => return Err(refuse("is not an https URL")),
    }
    if rest.is_empty() || rest.starts_with('/') || raw.contains(['?', '#', ' ', '@']) {
        return Err(refuse("is not an https URL with a host"));
    }
    Ok(raw.to_string())
}

fn parse_token(
    step: Step,
    resp: &http::Response,
) -> Result<(SecretString, Option<Duration>), Error> {
    let v: serde_json::Value =
        serde_json::from_slice(&resp.body).map_err(|e| Error::Malformed {
            step,
            detail: format!("token response is not JSON: {e}"),
        })?;
    let token = v
        .get("access_token")
        .and_then(|t| t.as_str())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Error::Malformed {
            step,
            detail: "token response has no access_token".into(),
        })?;
    let expires_in = match v.get("expires_in") {
        Some(serde_json::Value::String(s)) => s.trim().parse::<u64>().ok(),
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        _ => None,
    };
    // Without a lifetime, assume a short one rather than caching forever. The lifetime is the server's
    // number: anything past a day (AAD's longest) is cut to a day, so no clock arithmetic can overflow.
    Ok((
        SecretString::new(token.to_string()),
        Some(Duration::from_secs(
            expires_in.unwrap_or(300).min(MAX_TOKEN_LIFETIME.as_secs()),
        )),
    ))
}

/// Longest token lifetime believed (AAD tokens live at most 24 hours).
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);

struct Cached {
    token: SecretString,
    refresh_at: Option<Instant>,
    expires_at: Option<Instant>,
}

/// After a failed refresh, the current token is used for this long before the next attempt.
const REFRESH_RETRY: Duration = Duration::from_secs(10);
/// A token this close to its expiry is not handed out when a refresh failed.
const EXPIRY_MARGIN: Duration = Duration::from_secs(30);

/// A token source with a cache: a token is reused until 80 % of its lifetime has passed.
pub struct TokenCache {
    source: TokenSource,
    cached: Mutex<Option<Cached>>,
    clock: Box<dyn Fn() -> Instant + Send + Sync>,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenCache({:?})", self.source)
    }
}

impl TokenCache {
    /// A cache over `source` with the real clock.
    pub fn new(source: TokenSource) -> Self {
        Self::with_clock(source, Box::new(Instant::now))
    }

    /// A cache with an injected clock (tests).
    pub fn with_clock(source: TokenSource, clock: Box<dyn Fn() -> Instant + Send + Sync>) -> Self {
        TokenCache {
            source,
            cached: Mutex::new(None),
            clock,
        }
    }

    /// A valid token: the cached one, or a fresh one.
    pub fn get(&self, t: &dyn Exchange) -> Result<SecretString, Error> {
        let mut guard = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        let now = (self.clock)();
        if let Some(c) = guard.as_ref() {
            if c.refresh_at.is_none_or(|r| now < r) {
                return Ok(SecretString::new(c.token.expose().to_string()));
            }
            log::info!("token: refreshing before expiry");
        }
        let (token, lifetime) = match self.source.fetch(t) {
            Ok(v) => v,
            Err(e) => {
                // The identity endpoint failing must not fail requests while the current token is good:
                // keep using it, and try again a little later.
                if let Some(c) = guard.as_mut() {
                    if let Some(left) = c
                        .expires_at
                        .and_then(|x| x.checked_duration_since(now + EXPIRY_MARGIN))
                    {
                        log::warn!(
                            "token: refresh failed ({}); the current token is valid for {} s more, trying again in {} s",
                            crate::errors::chain(&e),
                            left.as_secs() + EXPIRY_MARGIN.as_secs(),
                            REFRESH_RETRY.as_secs()
                        );
                        c.refresh_at = Some(now + REFRESH_RETRY);
                        return Ok(SecretString::new(c.token.expose().to_string()));
                    }
                }
                return Err(e);
            }
        };
        // Checked: `lifetime` comes from a server (bounded by parse_token, but never trusted to be).
        let lifetime = lifetime.map(|l| l.min(MAX_TOKEN_LIFETIME));
        let refresh_at = lifetime.and_then(|l| now.checked_add(l / 5 * 4));
        let expires_at = lifetime.and_then(|l| now.checked_add(l));
        let out = SecretString::new(token.expose().to_string());
        *guard = Some(Cached {
            token,
            refresh_at,
            expires_at,
        });
        Ok(out)
    }
}

/// Bearer tokens for a private blob: the identity's token for the storage account (upstream: IMDS with
/// `resource=https://<account>.blob.core.windows.net`, or workload identity), cached and refreshed before
/// 80 % of its lifetime by the token cache. The blob client asks for one per request
/// ([`crate::blob::BearerSource`]).
pub struct BlobToken {
    cache: TokenCache,
    http: http::Client,
    /// Told when no valid token can be had any more (a refresh failed past the token's expiry).
    fatal: Option<crate::blob::FatalWatch>,
}

impl std::fmt::Debug for BlobToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BlobToken({:?})", self.cache)
    }
}

impl BlobToken {
    /// A token source for the account that serves `blob_url`, fetching through `http` (the blob's own
    /// client: one trust store and connection pool for the blob and its identity).
    pub fn for_blob(
        blob_url: &str,
        plan: &crate::manifest::Plan,
        http: http::Client,
    ) -> Result<Self, Error> {
        let resource = crate::url::origin(blob_url);
        let cache = TokenCache::new(TokenSource::for_resource(
            None,
            &resource,
            plan,
            &crate::attest::uvm::process_env,
        )?);
        Ok(BlobToken {
            cache,
            http,
            fatal: None,
        })
    }

    /// Report to `watch` when the token can no longer be refreshed.
    pub fn watched(self, watch: crate::blob::FatalWatch) -> Self {
        BlobToken {
            fatal: Some(watch),
            ..self
        }
    }
}

impl crate::blob::BearerSource for BlobToken {
    fn token(&self) -> crate::blob::Result<SecretString> {
        // The cache fails only when it holds no token valid for long enough and a refresh failed.
        self.cache.get(&self.http).map_err(|e| {
            let why = crate::errors::chain(&e);
            if let Some(w) = &self.fatal {
                w.set(format!(
                    "the blob's token can no longer be refreshed: {why}"
                ));
            }
            crate::blob::Error::Token(why)
        })
    }
}

#[cfg(test)]
mod tests;
