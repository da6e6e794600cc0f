//! Azure Key Vault / managed HSM secure key release (upstream-spec §6.4) and the JWS it answers with.
//!
//! `POST <vault>/keys/<kid>/release?api-version=<akv>`, `Content-Type: application/json`,
//! `Authorization: Bearer <token>`, body `{"target":"<MAA JWT>"}`. 200 → `{"value":"<compact JWS>"}`.
//!
//! The JWS: three base64url parts; header `alg` (RS256/RS384/RS512) and `x5c` (standard base64 DER, leaf
//! first). The leaf must chain (through the other x5c certificates) to a trusted root — the compiled-in
//! web roots plus the plan's CA bundle — be valid for TLS server use and for the vault's host name (the
//! endpoint's host without a port, where upstream compared the raw endpoint and so failed with a port),
//! and its RSA key must verify the signature. Payload: `request.enc` (the unwrap algorithm),
//! `response.key.key.{kty, key_hsm}`; `key_hsm` is base64url JSON whose `ciphertext` is the wrapped key.
#![forbid(unsafe_code)]

use super::transport::{Request, Transport};
use super::{Error, Step};
use crate::attest::cert::Cert;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use base64::Engine;
use rsa::pkcs8::DecodePublicKey;
use sha2::Digest;
use std::time::SystemTime;

/// Trust for the JWS chain.
#[derive(Debug, Clone)]
pub struct JwsTrust {
    /// Extra roots (DER) besides the web roots.
    pub extra_roots: Vec<Vec<u8>>,
    /// Include the compiled-in web roots.
    pub web_roots: bool,
}

impl JwsTrust {
    /// Web roots plus the PEM bundle at `path`, if any.
    pub fn from_plan(net: &crate::manifest::NetworkPlan) -> Result<Self, Error> {
        let mut extra_roots = Vec::new();
        if let Some(p) = &net.ca_bundle {
            let pem = std::fs::read(p)
                .map_err(|e| Error::Internal(format!("CA bundle {}: {e}", p.display())))?;
            for c in Cert::from_pem_chain(&pem)
                .map_err(|e| Error::Internal(format!("CA bundle {}: {e}", p.display())))?
            {
                extra_roots.push(c.der().to_vec());
            }
        }
        Ok(JwsTrust {
            extra_roots,
            web_roots: true,
        })
    }
}

/// What the release gave.
#[derive(Debug)]
pub struct Released {
    /// `request.enc`.
    pub enc: String,
    /// `response.key.key.kty`.
    pub kty: String,
    /// The wrapped key.
    pub ciphertext: Vec<u8>,
}

fn b64url_any(s: &str) -> Option<Vec<u8>> {
    B64URL.decode(s.trim_end_matches('=')).ok()
}

fn jws_err(detail: impl Into<String>) -> Error {
    Error::Jws(detail.into())
}

/// The vault's host name (no scheme, port or path).
pub fn host_of(endpoint: &str) -> &str {
    let rest = endpoint.split_once("://").map_or(endpoint, |(_, r)| r);
    let hostport = rest.split('/').next().unwrap_or(rest);
    if let Some(v6) = hostport.strip_prefix('[') {
        return v6.split(']').next().unwrap_or(v6);
    }
    hostport.rsplit_once(':').map_or(hostport, |(h, _)| h)
}

/// Verify the chain and signature of `jws` and extract the wrapped key.
pub fn verify_jws(
    jws: &str,
    host: &str,
    trust: &JwsTrust,
    now: SystemTime,
) -> Result<Released, Error> {
    let parts: Vec<&str> = jws.trim().split('.').collect();
    let [h, p, s] = parts.as_slice() else {
        return Err(jws_err(format!(
            "expected 3 dot-separated parts, got {}",
            parts.len()
        )));
    };
    let header: serde_json::Value = b64url_any(h)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| jws_err("header is not base64url JSON"))?;
    let alg = header
        .get("alg")
        .and_then(|a| a.as_str())
        .unwrap_or_default()
        .to_string();
    let x5c: Vec<Vec<u8>> = header
        .get("x5c")
        .and_then(|x| x.as_array())
        .ok_or_else(|| jws_err("header has no x5c"))?
        .iter()
        .map(|c| {
            c.as_str()
                .and_then(|c| B64.decode(c).ok())
                .ok_or_else(|| jws_err("x5c entry is not base64 DER"))
        })
        .collect::<Result<_, _>>()?;
    let leaf_der = x5c.first().ok_or_else(|| jws_err("x5c is empty"))?;
    verify_chain(leaf_der, &x5c[1..], host, trust, now)?;
    let sig = b64url_any(s).ok_or_else(|| jws_err("signature is not base64url"))?;
    let leaf = Cert::from_der(leaf_der).map_err(|e| jws_err(format!("x5c leaf: {e}")))?;
    let spki = leaf
        .spki_der()
        .map_err(|e| jws_err(format!("x5c leaf: {e}")))?;
    let key = rsa::PublicKey::from_public_key_der(&spki)
        .map_err(|_| jws_err("x5c leaf has no RSA key"))?;
    let signed = format!("{h}.{p}");
    let ok = match alg.as_str() {
        "RS256" => key.verify(
            rsa::Pkcs1v15Sign::new::<sha2::Sha256>(),
            &sha2::Sha256::digest(signed.as_bytes()),
            &sig,
        ),
        "RS384" => key.verify(
            rsa::Pkcs1v15Sign::new::<sha2::Sha384>(),
            &sha2::Sha384::digest(signed.as_bytes()),
            &sig,
        ),
        "RS512" => key.verify(
            rsa::Pkcs1v15Sign::new::<sha2::Sha512>(),
            &sha2::Sha512::digest(signed.as_bytes()),
            &sig,
        ),
        other => {
            return Err(jws_err(format!(
                "unsupported alg {other:?} (RS256, RS384, RS512)"
            )))
        }
    };
    ok.map_err(|_| jws_err("signature does not verify with the x5c leaf"))?;
    let payload: serde_json::Value = b64url_any(p)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| jws_err("payload is not base64url JSON"))?;
    parse_payload(&payload)
}

/// The Mozilla roots as trust anchors: the same list the TLS client trusts, so the binary carries it once.
fn web_anchors() -> impl Iterator<Item = rustls::pki_types::TrustAnchor<'static>> {
    webpki_root_certs::TLS_SERVER_ROOT_CERTS
        .iter()
        .filter_map(|c| webpki::anchor_from_trusted_cert(c).ok())
}

fn verify_chain(
    leaf: &[u8],
    rest: &[Vec<u8>],
    host: &str,
    trust: &JwsTrust,
    now: SystemTime,
) -> Result<(), Error> {
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    let leaf_der = CertificateDer::from(leaf);
    let ee = webpki::EndEntityCert::try_from(&leaf_der)
        .map_err(|e| jws_err(format!("x5c leaf: {e}")))?;
    let mut anchors: Vec<rustls::pki_types::TrustAnchor<'_>> = Vec::new();
    if trust.web_roots {
        for a in web_anchors() {
            anchors.push(a);
        }
    }
    let extra: Vec<CertificateDer<'_>> = trust
        .extra_roots
        .iter()
        .map(|d| CertificateDer::from(d.as_slice()))
        .collect();
    for d in &extra {
        anchors.push(
            webpki::anchor_from_trusted_cert(d)
                .map_err(|e| Error::Internal(format!("CA bundle certificate: {e}")))?,
        );
    }
    let intermediates: Vec<CertificateDer<'_>> = rest
        .iter()
        .map(|d| CertificateDer::from(d.as_slice()))
        .collect();
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    ee.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &anchors,
        &intermediates,
        UnixTime::since_unix_epoch(std::time::Duration::from_secs(secs)),
        webpki::KeyUsage::server_auth(),
        None,
        None,
    )
    .map_err(|e| jws_err(format!("x5c chain does not lead to a trusted root: {e}")))?;
    let name = ServerName::try_from(host.to_string())
        .map_err(|_| jws_err(format!("vault host {host:?} is not a name")))?;
    ee.verify_is_valid_for_subject_name(&name).map_err(|e| {
        jws_err(format!(
            "x5c leaf is not valid for the vault host {host}: {e}"
        ))
    })
}

/// The wrapped key in a verified JWS payload (`response.key.key`, `key_hsm`, `request.enc`). Public for the
/// fuzz target; [`verify_jws`] calls it only after the signature verified.
pub fn parse_payload(v: &serde_json::Value) -> Result<Released, Error> {
    let key = v
        .pointer("/response/key/key")
        .ok_or_else(|| jws_err("payload has no response.key.key"))?;
    let kty = key
        .get("kty")
        .and_then(|k| k.as_str())
        .unwrap_or_default()
        .to_string();
    let key_hsm = key
        .get("key_hsm")
        .and_then(|k| k.as_str())
        .ok_or_else(|| jws_err("payload has no key_hsm"))?;
    let hsm: serde_json::Value = b64url_any(key_hsm)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| jws_err("key_hsm is not base64url JSON"))?;
    let ciphertext = hsm
        .get("ciphertext")
        .and_then(|c| c.as_str())
        .and_then(b64url_any)
        .ok_or_else(|| jws_err("key_hsm has no base64url ciphertext"))?;
    let enc = v
        .pointer("/request/enc")
        .or_else(|| hsm.pointer("/header/enc"))
        .and_then(|e| e.as_str())
        .unwrap_or("CKM_RSA_AES_KEY_WRAP")
        .to_string();
    Ok(Released {
        enc,
        kty,
        ciphertext,
    })
}

/// Release `kid` from `vault` with the MAA token; returns the compact JWS.
pub fn release(
    t: &dyn Transport,
    vault: &str,
    kid: &str,
    api_version: &str,
    bearer: &str,
    maa_token: &str,
) -> Result<String, Error> {
    let url = format!("{vault}/keys/{kid}/release?api-version={api_version}");
    let body = serde_json::json!({ "target": maa_token }).to_string();
    let req = Request::post_json(url, body.into_bytes())
        .header("Authorization", format!("Bearer {bearer}"));
    let resp = t.send(&req).map_err(|source| Error::Transport {
        step: Step::Release,
        source,
    })?;
    if !resp.ok() {
        return Err(Error::Status {
            step: Step::Release,
            status: resp.status,
            body: resp.snippet(),
        });
    }
    let v: serde_json::Value =
        serde_json::from_slice(&resp.body).map_err(|e| Error::Malformed {
            step: Step::Release,
            detail: format!("response is not JSON: {e}"),
        })?;
    v.get("value")
        .and_then(|x| x.as_str())
        .map(str::to_string)
        .ok_or_else(|| Error::Malformed {
            step: Step::Release,
            detail: "response has no value".into(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mozilla_root_becomes_a_trust_anchor() {
        let n = web_anchors().count();
        assert!(n > 100, "only {n} anchors");
        assert_eq!(n, webpki_root_certs::TLS_SERVER_ROOT_CERTS.len());
    }
}
