//! The fake Key Vault's key import (`PUT <vault>/keys/<name>?api-version=..`, and the managed HSM path), and
//! the release policy it then enforces on release. It checks what Key Vault checks, with code of its own:
//!
//! - the bearer token's audience (as release does);
//! - `hsm: true`, `attributes.exportable: true`, `release_policy.contentType` = `application/json;
//!   charset=utf-8`, `release_policy.data` base64url WITHOUT padding (Key Vault's `base64url` type; a `+`,
//!   `/` or `=` is refused here, so a product that sent standard base64 would be caught) decoding to a
//!   policy of the right shape: `version` "1.0.0", `anyOf` a non-empty list of `{authority: "https://..",
//!   allOf | anyOf: [{claim, equals}, ...]}`;
//! - the JWK: `oct-HSM` with `k` of 16, 24 or 32 bytes (base64url) and a matching `key_size` if given, or
//!   `RSA-HSM` with n, e, d, p, q, dp, dq, qi consistent (p·q = n, d·e ≡ 1, dp, dq and qi right).
//!
//! It answers 200 with `{"key":{"kid":"<vault>/keys/<name>/<version>","kty","key_ops"},"attributes",
//! "release_policy"}` and no private material. The key is stored for release (oct: the bytes; RSA: PKCS#8
//! DER, which release wraps) with its policy: the MAA token's issuer must equal an `anyOf` entry's authority
//! and all of its `allOf` claims (or one of its `anyOf` claims) must equal the token's (JSON equality).
use super::{key_version, Req, Resp, State, VaultKey};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use rsa::pkcs8::EncodePrivateKey;
use rsa::BoxedUint;
use serde_json::{json, Value};
use std::collections::HashMap;

fn err(status: u16, code: &str, m: &str) -> Resp {
    Resp::json(status, &json!({"error": {"code": code, "message": m}}))
}

fn bad(m: &str) -> Resp {
    err(400, "BadParameter", m)
}

/// `PUT <vault>/keys/<name>`.
pub fn import(st: &mut State, req: &Req, vault: &str, name: &str, mhsm: bool) -> Resp {
    if !super::authorized(st, req, mhsm) {
        return err(401, "Unauthorized", "AKV10022: Invalid audience or token.");
    }
    if name.is_empty()
        || name.len() > 127
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return bad("The key name is invalid.");
    }
    // Key Vault knows its api-versions (7.4, 7.5, ...): `api-version=api-version=7.4` is a 400.
    if !req
        .param("api-version")
        .is_some_and(|v| v.starts_with("7.") && v[2..].chars().all(|c| c.is_ascii_digit()))
    {
        return bad("The api-version query parameter is missing or not a known version.");
    }
    let Ok(body) = serde_json::from_slice::<Value>(&req.body) else {
        return bad("The request body is not JSON.");
    };
    if body["hsm"] != json!(true) {
        return bad("hsm must be true for an HSM-protected key.");
    }
    if body["attributes"]["exportable"] != json!(true) {
        return bad("A key with a release policy must be exportable.");
    }
    let rp = &body["release_policy"];
    if rp["contentType"] != "application/json; charset=utf-8" {
        return bad("release_policy.contentType must be application/json; charset=utf-8.");
    }
    if !(rp["immutable"].is_null() || rp["immutable"].is_boolean()) {
        return bad("release_policy.immutable must be a boolean.");
    }
    let policy = match rp["data"]
        .as_str()
        .ok_or("no release_policy.data")
        .and_then(policy_from_data)
    {
        Ok(p) => p,
        Err(m) => return bad(&format!("release_policy.data: {m}")),
    };
    let (kty, material) = match key_material(&body["key"]) {
        Ok(k) => k,
        Err(m) => return bad(&format!("key: {m}")),
    };
    st.keys.insert(
        name.to_string(),
        VaultKey {
            kty: kty.clone(),
            material,
            policy: Vec::new(),
        },
    );
    st.policies.insert(name.to_string(), policy);
    Resp::json(
        200,
        &json!({
            "key": {"kid": format!("{vault}/keys/{name}/{}", key_version(name)), "kty": kty,
                    "key_ops": body["key"]["key_ops"].clone()},
            "attributes": {"enabled": true, "exportable": true, "recoveryLevel": "Recoverable+Purgeable"},
            "release_policy": {"contentType": rp["contentType"], "data": rp["data"], "immutable": false},
        }),
    )
}

/// base64url without padding → a policy of the right shape.
fn policy_from_data(data: &str) -> Result<Value, &'static str> {
    if data.is_empty()
        || !data
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err("not base64url without padding");
    }
    let bytes = B64URL.decode(data).map_err(|_| "not base64url")?;
    let p: Value = serde_json::from_slice(&bytes).map_err(|_| "the policy is not JSON")?;
    if p["version"] != "1.0.0" {
        return Err("the policy's version is not 1.0.0");
    }
    let any = p["anyOf"]
        .as_array()
        .filter(|a| !a.is_empty())
        .ok_or("the policy has no anyOf")?;
    for entry in any {
        let auth = entry["authority"]
            .as_str()
            .ok_or("an anyOf entry has no authority")?;
        if !auth.starts_with("https://") {
            return Err("an authority is not an https URL");
        }
        let claims = match (&entry["allOf"], &entry["anyOf"]) {
            (Value::Array(a), Value::Null) | (Value::Null, Value::Array(a)) => a,
            _ => return Err("an anyOf entry needs one of allOf or anyOf"),
        };
        if claims.is_empty() {
            return Err("an empty list of claims");
        }
        for c in claims {
            if c["claim"].as_str().is_none_or(str::is_empty) || c["equals"].is_null() {
                return Err("a claim needs claim and equals");
            }
        }
    }
    Ok(p)
}

fn b64(jwk: &Value, f: &str) -> Result<Vec<u8>, String> {
    let s = jwk[f].as_str().ok_or(format!("no {f}"))?;
    B64URL
        .decode(s)
        .map_err(|_| format!("{f} is not base64url"))
}

fn uint(jwk: &Value, f: &str) -> Result<BoxedUint, String> {
    let b = b64(jwk, f)?;
    BoxedUint::from_be_slice(&b, 4096).map_err(|_| format!("{f} is too large"))
}

/// The JWK → (kty, the material release wraps).
fn key_material(jwk: &Value) -> Result<(String, Vec<u8>), String> {
    match jwk["kty"].as_str() {
        Some("oct-HSM") => {
            let k = b64(jwk, "k")?;
            if ![16, 24, 32].contains(&k.len()) {
                return Err(format!("k is {} bytes, not an AES key size", k.len()));
            }
            if !jwk["key_size"].is_null() && jwk["key_size"] != json!(k.len() * 8) {
                return Err("key_size does not match k".into());
            }
            Ok(("oct-HSM".into(), k))
        }
        Some("RSA-HSM") => {
            let [n, e, d, p, q] = ["n", "e", "d", "p", "q"].map(|f| uint(jwk, f));
            let (n, e, d, p, q) = (n?, e?, d?, p?, q?);
            if p.wrapping_mul(&q) != n {
                return Err("p*q is not n".into());
            }
            let key = rsa::PrivateKey::from_components(n, e, d, vec![p, q])
                .map_err(|e| format!("not a consistent RSA key: {e}"))?;
            key.validate()
                .map_err(|e| format!("not a consistent RSA key: {e}"))?;
            use rsa::traits::PrivateKeyParts;
            let min = |b: Vec<u8>| {
                let first = b.iter().position(|&x| x != 0).unwrap_or(b.len());
                b[first..].to_vec()
            };
            let crt = [
                (
                    "dp",
                    key.dp().map(|v| v.to_be_bytes_trimmed_vartime().to_vec()),
                ),
                (
                    "dq",
                    key.dq().map(|v| v.to_be_bytes_trimmed_vartime().to_vec()),
                ),
                (
                    "qi",
                    key.qinv()
                        .map(|v| v.retrieve().to_be_bytes_trimmed_vartime().to_vec()),
                ),
            ];
            for (f, want) in crt {
                if want.map(min) != Some(min(b64(jwk, f)?)) {
                    return Err(format!("{f} does not match d, p and q"));
                }
            }
            let der = key.to_pkcs8_der().map_err(|e| e.to_string())?;
            Ok(("RSA-HSM".into(), der.as_bytes().to_vec()))
        }
        other => Err(format!("kty {other:?} cannot be imported here")),
    }
}

/// A key's policy: the imported one, or its flat claim list as one entry for any authority.
pub fn policy_of(policies: &HashMap<String, Value>, name: &str, key: &VaultKey) -> Value {
    policies.get(name).cloned().unwrap_or_else(|| {
        let all: Vec<Value> = key
            .policy
            .iter()
            .map(|(c, v)| json!({"claim": c, "equals": v}))
            .collect();
        json!({"version": "1.0.0", "anyOf": [{"authority": null, "allOf": all}]})
    })
}

/// Whether the MAA token's claims satisfy the policy; else why not.
pub fn allows(policy: &Value, claims: &Value) -> Result<(), String> {
    let iss = claims["iss"]
        .as_str()
        .unwrap_or_default()
        .trim_end_matches('/');
    let mut why = format!("no release policy entry names the authority {iss}");
    for entry in policy["anyOf"].as_array().into_iter().flatten() {
        if let Some(a) = entry["authority"].as_str() {
            if a.trim_end_matches('/') != iss {
                continue;
            }
        }
        let holds =
            |c: &Value| c["claim"].as_str().and_then(|n| claims.get(n)) == Some(&c["equals"]);
        let failing = match (&entry["allOf"], &entry["anyOf"]) {
            (Value::Array(all), _) => all.iter().find(|c| !holds(c)),
            (_, Value::Array(any)) if !any.iter().any(holds) => any.first(),
            _ => None,
        };
        match failing {
            None => return Ok(()),
            Some(c) => {
                why = format!(
                    "policy claim {} not satisfied",
                    c["claim"].as_str().unwrap_or_default()
                )
            }
        }
    }
    Err(why)
}
