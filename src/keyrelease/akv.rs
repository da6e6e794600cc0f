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
//!
//! The payload also names the key it releases: `response.key.key.kid`, a URL
//! `https://<vault>/keys/<name>/<version>`, and the request's echo `request.kid`. A validly signed release
//! of another key (another vault, name, or, when the manifest pins `name/version`, another version) is
//! refused by [`check_key_id`]: the signature says the vault released *a* key, not *this* key.
#![forbid(unsafe_code)]

use super::{Error, Step};
use crate::http::Exchange;
use crate::x509::Cert;
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
    /// Web roots plus the plan's CA bundle, if any (read and parsed as for TLS: [`crate::http::ca_bundle_certs`]).
    pub fn from_plan(net: &crate::manifest::NetworkPlan) -> Result<Self, Error> {
        let extra_roots = crate::http::ca_bundle_certs(net)
            .map_err(Error::Trust)?
            .unwrap_or_default()
            .iter()
            .map(|c| c.der().to_vec())
            .collect();
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
    /// `response.key.key.kid`: the released key's URL.
    pub key_kid: Option<String>,
    /// `request.kid`: the request's echo.
    pub request_kid: Option<String>,
    /// `response.key.key.key_ops` (empty when absent).
    pub key_ops: Vec<String>,
}

fn b64url_any(s: &str) -> Option<Vec<u8>> {
    B64URL.decode(s.trim_end_matches('=')).ok()
}

fn jws_err(detail: impl Into<String>) -> Error {
    Error::Jws(detail.into())
}

pub use crate::url::host as host_of;

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
    let text = |p: &str| v.pointer(p).and_then(|k| k.as_str()).map(str::to_string);
    Ok(Released {
        enc,
        kty,
        ciphertext,
        key_kid: text("/response/key/key/kid"),
        request_kid: text("/request/kid"),
        key_ops: key
            .get("key_ops")
            .and_then(|k| k.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|o| o.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
    })
}

/// Refuse a release of another key than `kid` (`name` or `name/version`) from `vault`: the payload's
/// `response.key.key.kid` (required) and `request.kid` (when present) must name the vault's host, the
/// key's name (Key Vault names are case-insensitive) and, when `kid` pins one, its version.
pub fn check_key_id(released: &Released, vault: &str, kid: &str) -> Result<(), Error> {
    let (name, version) = match kid.split_once('/') {
        Some((n, v)) => (n, Some(v)),
        None => (kid, None),
    };
    let key_kid = released.key_kid.as_deref().ok_or_else(|| {
        jws_err(format!(
            "payload has no response.key.key.kid, so it cannot be checked to release key {kid}; fix: the vault endpoint must be Azure Key Vault or a managed HSM"
        ))
    })?;
    for (field, got) in [
        ("response.key.key.kid", Some(key_kid)),
        ("request.kid", released.request_kid.as_deref()),
    ] {
        let Some(got) = got else { continue };
        if let Err(what) = same_key(got, vault, name, version) {
            return Err(jws_err(format!(
                "{field} {got:?} is another key than the one asked for ({what}: asked for {kid} in {vault}); fix: check kid and vault in the manifest, and that the endpoint answering is that vault"
            )));
        }
    }
    Ok(())
}

/// Whether key URL `got` (`https://<host>[:port]/<vault path>/keys/<name>[/<version>][?query]`) is key
/// `name` (of `version`, when given) in `vault`; else which part differs.
fn same_key(got: &str, vault: &str, name: &str, version: Option<&str>) -> Result<(), &'static str> {
    if !host_of(got).eq_ignore_ascii_case(host_of(vault)) {
        return Err("vault host differs");
    }
    let path_of = |url: &str| {
        let rest = url.split_once("://").map_or(url, |(_, r)| r);
        let path = rest.split_once('/').map_or("", |(_, p)| p);
        path.split(['?', '#'])
            .next()
            .unwrap_or_default()
            .trim_matches('/')
            .to_string()
    };
    let (got_path, vault_path) = (path_of(got), path_of(vault));
    let rest = if vault_path.is_empty() {
        got_path.as_str()
    } else {
        got_path
            .strip_prefix(vault_path.as_str())
            .and_then(|r| r.strip_prefix('/'))
            .ok_or("vault path differs")?
    };
    let mut parts = rest.split('/');
    if parts.next() != Some("keys") {
        return Err("not a key URL");
    }
    if !parts.next().is_some_and(|n| n.eq_ignore_ascii_case(name)) {
        return Err("key name differs");
    }
    let got_version = parts.next().filter(|v| !v.is_empty());
    if parts.next().is_some() {
        return Err("not a key URL");
    }
    match (version, got_version) {
        (Some(want), Some(got)) if !want.eq_ignore_ascii_case(got) => Err("key version differs"),
        _ => Ok(()),
    }
}

/// `Bearer <token>`, allocated once at its final size (the request wipes it on drop).
fn bearer_header(token: &str) -> String {
    let mut h = String::with_capacity("Bearer ".len() + token.len());
    h.push_str("Bearer ");
    h.push_str(token);
    h
}

/// `{"target":"<MAA token>"}`, allocated once at its final size: a `json!` value and its serialization
/// would leave copies of the token (the value's string, outgrown buffers) freed unwiped. A compact JWT
/// needs no JSON escaping; anything else is refused.
fn release_body(maa_token: &str) -> Result<Vec<u8>, Error> {
    if !maa_token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(Error::Malformed {
            step: Step::Maa,
            detail: "the token is not a compact JWT (base64url parts); fix: check the attestation authority endpoint".into(),
        });
    }
    let (head, tail) = (br#"{"target":""#, br#""}"#);
    let mut body = Vec::with_capacity(head.len() + maa_token.len() + tail.len());
    body.extend_from_slice(head);
    body.extend_from_slice(maa_token.as_bytes());
    body.extend_from_slice(tail);
    Ok(body)
}

/// Release `kid` from `vault` with the MAA token; returns the compact JWS.
pub fn release(
    t: &dyn Exchange,
    vault: &str,
    kid: &str,
    api_version: &str,
    bearer: &str,
    maa_token: &str,
) -> Result<String, Error> {
    let url = format!("{vault}/keys/{kid}/release?api-version={api_version}");
    let body = zeroize::Zeroizing::new(release_body(maa_token)?);
    let req = super::post_json(&url, &body).header("Authorization", bearer_header(bearer));
    let resp = super::send(t, Step::Release, req)?;
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

    fn released(key_kid: Option<&str>, request_kid: Option<&str>) -> Released {
        Released {
            enc: "CKM_RSA_AES_KEY_WRAP".into(),
            kty: "oct-HSM".into(),
            ciphertext: vec![],
            key_kid: key_kid.map(Into::into),
            request_kid: request_kid.map(Into::into),
            key_ops: vec![],
        }
    }

    #[test]
    fn the_release_body_and_header_are_exact() {
        let body = release_body("eyJ0.eyJ-_1.c2ln").unwrap();
        assert_eq!(body, br#"{"target":"eyJ0.eyJ-_1.c2ln"}"#);
        assert_eq!(body.capacity(), body.len());
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["target"], "eyJ0.eyJ-_1.c2ln");
        assert!(release_body("a\"b").is_err());
        let h = bearer_header("tok");
        assert_eq!((h.as_str(), h.capacity()), ("Bearer tok", 10));
    }

    #[test]
    fn the_released_key_must_be_the_key_asked_for() {
        let vault = "https://myvault.vault.azure.net";
        let v1 = "https://myvault.vault.azure.net/keys/disk/0123abcd";
        let ok =
            |k: Option<&str>, r: Option<&str>, kid: &str| check_key_id(&released(k, r), vault, kid);
        ok(
            Some(v1),
            Some("https://myvault.vault.azure.net/keys/disk"),
            "disk",
        )
        .unwrap();
        ok(Some(v1), None, "disk/0123abcd").unwrap();
        ok(
            Some("https://MyVault.vault.azure.net:443/keys/Disk/0123ABCD?api-version=7.4"),
            None,
            "disk/0123abcd",
        )
        .unwrap();
        for (k, r, kid, what) in [
            (
                Some("https://other.vault.azure.net/keys/disk/0123abcd"),
                None,
                "disk",
                "vault host differs",
            ),
            (
                Some("https://myvault.vault.azure.net/keys/disk2/0123abcd"),
                None,
                "disk",
                "key name differs",
            ),
            (Some(v1), None, "disk/ffff", "key version differs"),
            (
                Some(v1),
                Some("https://myvault.vault.azure.net/keys/other"),
                "disk",
                "key name differs",
            ),
            (
                Some("https://myvault.vault.azure.net/secrets/disk/0123abcd"),
                None,
                "disk",
                "not a key URL",
            ),
            (Some("disk"), None, "disk", "vault host differs"),
            (None, None, "disk", "no response.key.key.kid"),
        ] {
            let e = ok(k, r, kid).unwrap_err().to_string();
            assert!(e.contains(what), "{k:?} {r:?} {kid}: {e}");
        }
        // A vault endpoint with a path (a managed HSM behind a prefix, as the fake serves it).
        check_key_id(
            &released(Some("https://127.0.0.1:8443/mhsm/keys/disk/01"), None),
            "https://127.0.0.1:8443/mhsm",
            "disk",
        )
        .unwrap();
        assert!(check_key_id(
            &released(Some("https://127.0.0.1:8443/keys/disk/01"), None),
            "https://127.0.0.1:8443/mhsm",
            "disk",
        )
        .is_err());
    }
}
