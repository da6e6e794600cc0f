//! The key release policy (upstream-spec §8.2): `{"version":"1.0.0","anyOf":[{"authority":"https://<maa>",
//! "allOf":[{"claim":..,"equals":..}, ...]}, ...]}`, one `anyOf` entry per list of claims, the keys in this
//! order, compact; and its `data` form, base64url without padding, as the import sends it.
//!
//! The default claims (PR #167 added the VMPL one) on the security policy's digest (host_data):
//! `x-ms-sevsnpvm-hostdata` = the digest (lowercase hex), `x-ms-compliance-status` = `azure-compliant-uvm`,
//! `x-ms-sevsnpvm-is-debuggable` = `false` (a JSON bool) and `x-ms-sevsnpvm-vmpl` = `0` (a JSON number), typed
//! as MAA's token carries them.
#![forbid(unsafe_code)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use serde_json::{json, Value};

/// One claim of a policy: MAA's token must carry `claim` equal to `equals`.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    /// The claim's name (`x-ms-sevsnpvm-hostdata`).
    pub claim: String,
    /// The value (JSON: a string, bool or number).
    pub equals: Value,
}

/// The default claims for a security policy digest (lowercase hex).
pub fn default_claims(host_data: &str) -> Vec<Claim> {
    let c = |claim: &str, equals: Value| Claim {
        claim: claim.to_string(),
        equals,
    };
    vec![
        c("x-ms-sevsnpvm-hostdata", json!(host_data)),
        c("x-ms-compliance-status", json!("azure-compliant-uvm")),
        c("x-ms-sevsnpvm-is-debuggable", json!(false)),
        c("x-ms-sevsnpvm-vmpl", json!(0)),
    ]
}

/// The policy JSON, compact, keys in the documented order.
pub fn json(authority: &str, claims: &[Vec<Claim>]) -> String {
    let q = |s: &str| Value::from(s).to_string();
    let entries: Vec<String> = claims
        .iter()
        .map(|all| {
            let all: Vec<String> = all
                .iter()
                .map(|c| format!("{{\"claim\":{},\"equals\":{}}}", q(&c.claim), c.equals))
                .collect();
            format!(
                "{{\"authority\":{},\"allOf\":[{}]}}",
                q(authority),
                all.join(",")
            )
        })
        .collect();
    format!(
        "{{\"version\":\"1.0.0\",\"anyOf\":[{}]}}",
        entries.join(",")
    )
}

/// The policy as the import sends it: base64url without padding.
pub fn data(policy_json: &str) -> String {
    B64URL.encode(policy_json.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_policy_is_upstreams_shape_with_typed_values() {
        let p = json("https://maa.example", &[default_claims("ab")]);
        assert_eq!(
            p,
            r#"{"version":"1.0.0","anyOf":[{"authority":"https://maa.example","allOf":[{"claim":"x-ms-sevsnpvm-hostdata","equals":"ab"},{"claim":"x-ms-compliance-status","equals":"azure-compliant-uvm"},{"claim":"x-ms-sevsnpvm-is-debuggable","equals":false},{"claim":"x-ms-sevsnpvm-vmpl","equals":0}]}]}"#
        );
        let back: Value = serde_json::from_str(&p).unwrap();
        assert_eq!(back["anyOf"][0]["allOf"][3]["equals"], json!(0));
        let d = data(&p);
        assert!(!d.contains(['+', '/', '=']));
        assert_eq!(B64URL.decode(d).unwrap(), p.as_bytes());
    }
}
