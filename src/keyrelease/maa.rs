//! Microsoft Azure Attestation, SEV-SNP VM (upstream-spec §6.2).
//!
//! `POST <authority>/attest/SevSnpVM?api-version=<maa>`, `Content-Type: application/json`, no auth, body
//! (this key order; every base64 is URL-safe WITH `=` padding):
//! `{"report":"<b64url(R)>","runtimeData":{"data":"<b64url(runtime JSON)>","dataType":"JSON"},
//! "initTimeData":{"data":"","dataType":""},"nonce":<random u64>}` where
//! `R = {"SnpReport":"<b64url(report)>","VcekCertChain":"<b64url(PEM chain)>","Endorsements":"<b64url(E)>"}`
//! and `E = {"Uvm":["<b64url(COSE_Sign1)>"]}` (left out without reference info).
//! Response: JSON with a `token` field (matched case-insensitively): the MAA JWT, passed to the vault.
#![forbid(unsafe_code)]

use super::{Error, Step};
use crate::http::Exchange;
use crate::secret::SecretString;
use base64::engine::general_purpose::URL_SAFE as B64URL_PAD;
use base64::Engine;

/// What MAA is given.
#[derive(Debug)]
pub struct Attestation<'a> {
    /// The raw report.
    pub report: &'a [u8],
    /// The PEM VCEK + ASK + ARK text.
    pub vcek_chain_pem: &'a str,
    /// The UVM reference info (COSE_Sign1), if any.
    pub reference_info: Option<&'a [u8]>,
    /// The runtime JSON bytes.
    pub runtime_json: &'a [u8],
}

fn js(s: &str) -> String {
    // serde_json's string escaping (a String always serializes).
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// The request body.
pub fn body(a: &Attestation<'_>, nonce: u64) -> String {
    let mut r = format!(
        r#"{{"SnpReport":{},"VcekCertChain":{}"#,
        js(&B64URL_PAD.encode(a.report)),
        js(&B64URL_PAD.encode(a.vcek_chain_pem.as_bytes()))
    );
    if let Some(uvm) = a.reference_info {
        let e = format!(r#"{{"Uvm":[{}]}}"#, js(&B64URL_PAD.encode(uvm)));
        r.push_str(&format!(
            r#","Endorsements":{}"#,
            js(&B64URL_PAD.encode(e.as_bytes()))
        ));
    }
    r.push('}');
    format!(
        r#"{{"report":{},"runtimeData":{{"data":{},"dataType":"JSON"}},"initTimeData":{{"data":"","dataType":""}},"nonce":{nonce}}}"#,
        js(&B64URL_PAD.encode(r.as_bytes())),
        js(&B64URL_PAD.encode(a.runtime_json)),
    )
}

/// Attest and return the MAA token (sending `user_agent` as the User-Agent when given).
pub fn attest(
    t: &dyn Exchange,
    authority: &str,
    api_version: &str,
    user_agent: Option<&str>,
    a: &Attestation<'_>,
) -> Result<SecretString, Error> {
    let mut n = [0u8; 8];
    getrandom::fill(&mut n).map_err(|e| Error::Internal(format!("random nonce: {e}")))?;
    let url = format!("{authority}/attest/SevSnpVM?api-version={api_version}");
    let body = zeroize::Zeroizing::new(body(a, u64::from_le_bytes(n)).into_bytes());
    let mut req = super::post_json(&url, &body);
    if let Some(ua) = user_agent {
        req = req.header("User-Agent", ua);
    }
    let resp = super::send(t, Step::Maa, req)?;
    let v: serde_json::Value =
        serde_json::from_slice(&resp.body).map_err(|e| Error::Malformed {
            step: Step::Maa,
            detail: format!("response is not JSON: {e}"),
        })?;
    let token = v
        .as_object()
        .and_then(|o| o.iter().find(|(k, _)| k.eq_ignore_ascii_case("token")))
        .and_then(|(_, v)| v.as_str())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Error::Malformed {
            step: Step::Maa,
            detail: "response has no token".into(),
        })?;
    Ok(SecretString::new(token.to_string()))
}
