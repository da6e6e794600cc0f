//! The two forms of the key import config read into one [`Raw`] before [`super::config`] checks it: our
//! TOML (every key checked, serde `deny_unknown_fields`) and upstream importkey's config.json (upstream-spec
//! §8.2; unknown keys ignored, as Go ignores them).
#![forbid(unsafe_code)]

use super::config::Error;
use serde::Deserialize;
use serde_json::Value;
use std::path::Path;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Toml {
    kid: Option<String>,
    kty: Option<String>,
    key_ops: Option<Vec<String>>,
    vault: Option<String>,
    authority: Option<String>,
    api_version: Option<String>,
    bearer_token: Option<String>,
    bearer_token_file: Option<String>,
    policy_digest: Option<String>,
    cce_policy_file: Option<String>,
    claims: Option<Vec<Vec<RawClaim>>>,
    key_derivation: Option<Derivation>,
    identity: Option<Identity>,
    network: Option<Network>,
    endpoints: Option<Endpoints>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Derivation {
    salt: Option<String>,
    label: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Identity {
    client_id: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Network {
    ca_bundle: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Endpoints {
    imds: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClaim {
    pub(super) claim: String,
    pub(super) equals: Value,
}

/// The fields both forms share, before checking.
#[derive(Default)]
pub(super) struct Raw {
    pub(super) kid: Option<String>,
    pub(super) kty: Option<String>,
    pub(super) key_ops: Option<Vec<String>>,
    pub(super) vault: Option<String>,
    pub(super) authority: Option<String>,
    pub(super) api_version: Option<String>,
    pub(super) bearer_token: Option<String>,
    pub(super) bearer_token_file: Option<String>,
    pub(super) policy_digest: Option<String>,
    pub(super) cce_policy_file: Option<String>,
    pub(super) claims: Option<Vec<Vec<RawClaim>>>,
    pub(super) salt: Option<String>,
    pub(super) label: Option<String>,
    pub(super) client_id: Option<String>,
    pub(super) ca_bundle: Option<String>,
    pub(super) imds: Option<String>,
    /// The field names as the file spells them (TOML or upstream JSON).
    pub(super) names: Names,
}

#[derive(Default, Clone, Copy)]
pub(super) struct Names {
    pub(super) json: bool,
}

impl Names {
    /// The field's name as this form spells it.
    pub(super) fn of(self, toml: &'static str, json: &'static str) -> String {
        (if self.json { json } else { toml }).to_string()
    }
}

pub(super) fn from_toml(path: &Path, text: &str) -> Result<Raw, Error> {
    let t: Toml = toml::from_str(text).map_err(|e| {
        let at = e.span().map_or(0, |r| r.start).min(text.len());
        let before = text.get(..at).unwrap_or_default();
        Error::Toml {
            path: path.to_path_buf(),
            line: before.matches('\n').count() + 1,
            column: before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1,
            message: e.message().split_whitespace().collect::<Vec<_>>().join(" "),
        }
    })?;
    let kd = t.key_derivation.unwrap_or_default();
    Ok(Raw {
        kid: t.kid,
        kty: t.kty,
        key_ops: t.key_ops,
        vault: t.vault,
        authority: t.authority,
        api_version: t.api_version,
        bearer_token: t.bearer_token,
        bearer_token_file: t.bearer_token_file,
        policy_digest: t.policy_digest,
        cce_policy_file: t.cce_policy_file,
        claims: t.claims,
        salt: kd.salt,
        label: kd.label,
        client_id: t.identity.and_then(|i| i.client_id),
        ca_bundle: t.network.and_then(|n| n.ca_bundle),
        imds: t.endpoints.and_then(|e| e.imds),
        names: Names { json: false },
    })
}

/// Upstream's `{"key": {kid, kty, key_ops, authority: {endpoint}, akv: {endpoint, api_version,
/// bearer_token}}, "key_derivation": {salt, label}, "claims": [[{claim, equals}]], "identity": {client_id}}`.
/// Unknown keys are ignored, as upstream's Go decoder ignores them.
pub(super) fn from_json(path: &Path, text: &str) -> Result<Raw, Error> {
    let v: Value = serde_json::from_str(text).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })?;
    let s = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(str::to_string);
    let key = &v["key"];
    let key_ops = key["key_ops"].as_array().map(|ops| {
        ops.iter()
            .filter_map(|o| o.as_str().map(str::to_string))
            .collect()
    });
    let claims = match &v["claims"] {
        Value::Null => None,
        c => Some(
            serde_json::from_value::<Vec<Vec<RawClaim>>>(c.clone()).map_err(|e| Error::Field {
                path: path.to_path_buf(),
                field: "claims".into(),
                what: format!("not a list of lists of {{\"claim\", \"equals\"}}: {e}"),
                fix:
                    "write [[{\"claim\": \"x-ms-sevsnpvm-hostdata\", \"equals\": \"<hex>\"}, ...]]"
                        .into(),
            })?,
        ),
    };
    Ok(Raw {
        kid: s(&key["kid"]),
        kty: key["kty"].as_str().map(str::to_string),
        key_ops,
        vault: s(&key["akv"]["endpoint"]),
        authority: s(&key["authority"]["endpoint"]),
        api_version: s(&key["akv"]["api_version"]),
        bearer_token: s(&key["akv"]["bearer_token"]),
        claims,
        salt: s(&v["key_derivation"]["salt"]),
        label: s(&v["key_derivation"]["label"]),
        client_id: s(&v["identity"]["client_id"]),
        names: Names { json: true },
        ..Raw::default()
    })
}
