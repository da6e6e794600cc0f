//! The import call (upstream-spec §8.2): `PUT <vault>/keys/<kid>?api-version=<v>`, `Authorization: Bearer`,
//! body `{"key":<JWK>,"hsm":true,"attributes":{"exportable":true},"release_policy":{"contentType":
//! "application/json; charset=utf-8","data":"<base64url of the policy>","immutable":false}}`, through the one
//! HTTP client. The answer's `key.kid` (with its new version) is what it returns.
#![forbid(unsafe_code)]

use crate::http::{self, Exchange};
use crate::secret::SecretString;
use zeroize::Zeroizing;

/// The import failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No response.
    #[error("key import")]
    Transport(#[source] Box<http::Error>),
    /// A non-2xx answer.
    #[error("key import: HTTP {status}: {body}{}", hint(*status))]
    Status {
        /// HTTP status.
        status: u16,
        /// The vault's error text (a snippet).
        body: String,
    },
    /// A 2xx answer without the key id.
    #[error("key import: the vault's answer has no key.kid: {0}")]
    Malformed(String),
}

fn hint(status: u16) -> &'static str {
    match status {
        400 => "; fix: the vault refused the request's shape (key type, JWK, release policy); check kty and the claims",
        401 => "; fix: the bearer token is missing, expired or for another resource (Key Vault: https://vault.azure.net, managed HSM: https://managedhsm.azure.net) or tenant",
        403 => "; fix: the identity may not import keys: give it the Key Vault Crypto Officer role (Key Vault) or the Managed HSM Crypto User role (managed HSM)",
        404 => "; fix: check the vault endpoint",
        409 => "; fix: a deleted key of this name is kept for recovery (soft delete): recover or purge it, or choose another kid",
        _ => "",
    }
}

/// Import `jwk` under `kid` with the release policy `data` (base64url); returns the new key id.
pub fn import(
    t: &dyn Exchange,
    vault: &str,
    kid: &str,
    api_version: &str,
    bearer: &SecretString,
    jwk: &str,
    policy_data: &str,
) -> Result<String, Error> {
    let url = format!("{vault}/keys/{kid}?api-version={api_version}");
    let mut body = Zeroizing::new(String::with_capacity(jwk.len() + policy_data.len() + 256));
    body.push_str("{\"key\":");
    body.push_str(jwk);
    body.push_str(",\"hsm\":true,\"attributes\":{\"exportable\":true},\"release_policy\":{\"contentType\":\"application/json; charset=utf-8\",\"data\":\"");
    body.push_str(policy_data);
    body.push_str("\",\"immutable\":false}}");
    let auth = Zeroizing::new(format!("Bearer {}", bearer.expose()));
    let req = http::Request::new("PUT", &url)
        .header("Content-Type", "application/json")
        .header("Authorization", auth.as_str())
        .body(body.as_bytes());
    let resp = t.exchange(&req).map_err(|e| match e {
        http::Error::Status {
            status, snippet, ..
        } => Error::Status {
            status,
            body: snippet,
        },
        other => Error::Transport(Box::new(other)),
    })?;
    let v: serde_json::Value = serde_json::from_slice(&resp.body)
        .map_err(|e| Error::Malformed(format!("not JSON: {e}")))?;
    v["key"]["kid"]
        .as_str()
        .filter(|k| !k.is_empty())
        .map(str::to_string)
        .ok_or_else(|| Error::Malformed(http::snippet(&resp.body)))
}
