//! A fake Azure on 127.0.0.1: MAA (verifies the report against the fake AMD chain with code of its own,
//! [`super::snp_check`], and report_data against
//! runtimeData, issues an RS256 JWT with x-ms-sevsnpvm-* claims), Key Vault / managed HSM (checks the
//! bearer token, evaluates a claims-equal release policy on the MAA token, wraps the key to the runtime
//! JWK, signs a JWS with an x5c chain), IMDS (expiring tokens), Entra ID (workload identity), and THIM /
//! AMD KDS (404 unless a knob gives them certificates). Knobs change the vault's answer; [`Server::fault`]
//! injects status/delay/bodies.
pub mod vault_import;

use super::pki::{self, AmdChain, WebPki};
use super::snp_check;
use super::{Req, Resp, Server};
use base64::engine::general_purpose::{
    STANDARD as B64, URL_SAFE as B64URL_PAD, URL_SAFE_NO_PAD as B64URL,
};
use base64::Engine;
use encfs_init::attest::uvm::ThimCerts;
use encfs_init::hex::encode as hex;
use encfs_init::x509::Cert;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A key in the fake vault.
#[derive(Clone)]
pub struct VaultKey {
    pub kty: String,
    pub material: Vec<u8>,
    /// Claims that must equal these values.
    pub policy: Vec<(String, Value)>,
}

/// How the JWS comes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwsMode {
    Good,
    BadSignature,
    UnknownRoot,
    TwoParts,
}

/// Vault knobs.
pub struct Knobs {
    pub enc: String,
    pub jws: JwsMode,
    pub kty_override: Option<String>,
    pub imds_expires_in: Value,
    /// Answer every release as a release of this key (`name` or `name/version`, which must exist):
    /// its material and identity, validly signed (a vault, or a replay, answering for another key).
    pub answer_as: Option<String>,
    /// A release of key `<kid>` is refused (403, as a vault whose key was disabled or whose release policy
    /// no longer admits us) while the file `<dir>/<kid>` exists: a test revokes a key after boot.
    pub revoked_dir: Option<std::path::PathBuf>,
    /// IMDS answers every token request with 503 (as an identity endpoint that is down) while this file
    /// exists: a test makes tokens unobtainable after boot.
    pub imds_down: Option<std::path::PathBuf>,
    /// Every token issued (IMDS, Entra ID) is appended here as a line `TOKEN RESOURCE EXPIRES_UNIX`: the list a
    /// storage service checks bearer tokens against (`range_server`'s `Faults::tokens`, in the VM
    /// `guest_blob_server --tokens`), as Azure Storage checks a token's signature, audience and lifetime.
    pub token_log: Option<std::path::PathBuf>,
    /// THIM's answer (the THIM JSON), served to `Metadata: true` requests; `None`: 404.
    pub thim: Option<ThimCerts>,
    /// AMD KDS's certificates; `None`: 404.
    pub kds: Option<Kds>,
}

/// What the fake AMD KDS serves: one chip's VCEK at one TCB, and the ASK + ARK chain.
#[derive(Clone)]
pub struct Kds {
    /// Lowercase hex of the chip id the VCEK is for.
    pub chip_hex: String,
    /// The VCEK's TCB: (bl, tee, snp, ucode).
    pub tcb: (u8, u8, u8, u8),
    pub vcek_der: Vec<u8>,
    /// PEM ASK + ARK.
    pub chain_pem: String,
}

impl Kds {
    /// KDS for a fake AMD chain (VCEK + ASK + ARK PEM).
    pub fn of(amd: &AmdChain, chip_id: &[u8], tcb: (u8, u8, u8, u8)) -> Kds {
        let mut blocks = amd.pem.split_inclusive("-----END CERTIFICATE-----\n");
        let vcek = blocks.next().unwrap();
        Kds {
            chip_hex: hex(chip_id),
            tcb,
            vcek_der: Cert::from_pem_chain(vcek.as_bytes()).unwrap()[0]
                .der()
                .to_vec(),
            chain_pem: blocks.collect(),
        }
    }
}

/// `GET <thim>?tcbVersion=..&platformId=..` with `Metadata: true`.
fn thim(st: &State, req: &Req) -> Resp {
    match (&st.knobs.thim, req.header("metadata")) {
        (Some(t), Some("true")) => Resp::json(
            200,
            &json!({"vcekCert": t.vcek_cert, "tcbm": t.tcbm, "certificateChain": t.certificate_chain, "cacheControl": t.cache_control}),
        ),
        (Some(_), _) => Resp::text(400, "Required metadata header not specified"),
        (None, _) => Resp::text(404, "not here"),
    }
}

/// `GET <kds>/vcek/v1/<product>/<chip>?blSPL=..&teeSPL=..&snpSPL=..&ucodeSPL=..` (DER VCEK) and
/// `GET <kds>/vcek/v1/<product>/cert_chain` (PEM ASK + ARK), as AMD serves them: the VCEK only for the
/// chip and TCB it certifies.
fn kds(st: &State, req: &Req, rest: &str) -> Resp {
    let Some(k) = &st.knobs.kds else {
        return Resp::text(404, "not here");
    };
    match rest.split('/').collect::<Vec<_>>().as_slice() {
        [_product, "cert_chain"] => Resp::text(200, &k.chain_pem),
        [_product, chip] => {
            let (bl, tee, snp, ucode) = k.tcb;
            let spl = |n: &str| req.param(n).and_then(|v| v.parse::<u8>().ok());
            if *chip != k.chip_hex
                || spl("blSPL") != Some(bl)
                || spl("teeSPL") != Some(tee)
                || spl("snpSPL") != Some(snp)
                || spl("ucodeSPL") != Some(ucode)
            {
                return Resp::text(404, "no VCEK for this chip and TCB");
            }
            Resp {
                status: 200,
                body: k.vcek_der.clone(),
            }
        }
        _ => Resp::text(404, "no route"),
    }
}
/// A key's current version in the fake vault (what Key Vault's 32 hex digits are).
pub fn key_version(name: &str) -> String {
    hex(&Sha256::digest(name.as_bytes())[..16])
}

pub struct State {
    /// The fake AMD root MAA trusts (DER).
    pub ark_der: Vec<u8>,
    pub maa_key: rsa::PrivateKey,
    pub pki: WebPki,
    pub other_pki: WebPki,
    pub keys: HashMap<String, VaultKey>,
    /// Release policies of imported keys (the policy JSON), by key name; a key without one is released
    /// under its flat `VaultKey.policy` (see [`policy_of`]).
    pub policies: HashMap<String, Value>,
    /// token → resource
    pub tokens: HashMap<String, String>,
    /// token → when it expires, for the tokens the fake issued (a test's own token never expires).
    pub expires: HashMap<String, SystemTime>,
    pub knobs: Knobs,
    /// The federated token (client assertion) the fake Entra ID accepts, and for which client id.
    pub assertion: String,
    pub workload_client_id: String,
    pub issued: usize,
}

/// The client id the fake Entra ID accepts the federated token for.
pub const WORKLOAD_CLIENT_ID: &str = "cid";

pub struct FakeAzure {
    pub https: Server,
    pub http: Server,
    pub state: Arc<Mutex<State>>,
    pub root_pem: String,
}

fn jwt_sign(key: &rsa::PrivateKey, header: &Value, claims: &Value) -> String {
    let signed = format!(
        "{}.{}",
        B64URL.encode(header.to_string()),
        B64URL.encode(claims.to_string())
    );
    let sig = key
        .sign(
            rsa::Pkcs1v15Sign::new::<Sha256>(),
            &Sha256::digest(signed.as_bytes()),
        )
        .unwrap();
    format!("{signed}.{}", B64URL.encode(sig))
}

fn jwt_claims(key: &rsa::PrivateKey, jwt: &str) -> Option<Value> {
    let (signed, sig) = jwt.rsplit_once('.')?;
    let sig = B64URL.decode(sig).ok()?;
    key.to_public_key()
        .verify(
            rsa::Pkcs1v15Sign::new::<Sha256>(),
            &Sha256::digest(signed.as_bytes()),
            &sig,
        )
        .ok()?;
    serde_json::from_slice(&B64URL.decode(signed.split_once('.')?.1).ok()?).ok()
}

fn b64url_pad(s: &str) -> Option<Vec<u8>> {
    B64URL_PAD.decode(s).ok()
}

fn maa(st: &State, req: &Req, url: &str) -> Resp {
    let bad = |m: &str| {
        Resp::json(
            400,
            &json!({"error": {"code": "InvalidParameter", "message": m}}),
        )
    };
    let Ok(body) = serde_json::from_slice::<Value>(&req.body) else {
        return bad("body is not JSON");
    };
    let Some(r) = body["report"]
        .as_str()
        .and_then(b64url_pad)
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
    else {
        return bad("report is not padded base64url JSON");
    };
    let Some(report) = r["SnpReport"].as_str().and_then(b64url_pad) else {
        return bad("no SnpReport");
    };
    let Some(chain) = r["VcekCertChain"].as_str().and_then(b64url_pad) else {
        return bad("no VcekCertChain");
    };
    let Some(runtime) = body["runtimeData"]["data"].as_str().and_then(b64url_pad) else {
        return bad("no runtimeData");
    };
    if body["runtimeData"]["dataType"] != "JSON"
        || !body["nonce"].is_u64()
        || body["initTimeData"]["data"] != ""
    {
        return bad("runtimeData.dataType, initTimeData or nonce malformed");
    }
    // The service's own check, not the product's verifier (see snp_check).
    let report = match snp_check::check(&report, &chain, &st.ark_der, SystemTime::now()) {
        Ok(r) => r,
        Err(e) => return bad(&format!("report: {e}")),
    };
    if report.report_data[..32] != Sha256::digest(&runtime)[..] {
        return bad("report_data is not SHA-256(runtimeData)");
    }
    let Ok(runtime_json) = serde_json::from_slice::<Value>(&runtime) else {
        return bad("runtimeData is not JSON");
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({
        "iss": url, "exp": now + 3600, "x-ms-attestation-type": "sevsnpvm",
        "x-ms-compliance-status": "azure-compliant-uvm",
        "x-ms-sevsnpvm-hostdata": report.host_data.iter().map(|b| format!("{b:02x}")).collect::<String>(),
        "x-ms-sevsnpvm-is-debuggable": report.debuggable,
        "x-ms-sevsnpvm-vmpl": report.vmpl,
        "x-ms-runtime": runtime_json,
    });
    Resp::json(
        200,
        &json!({ "token": jwt_sign(&st.maa_key, &json!({"alg": "RS256", "typ": "JWT"}), &claims) }),
    )
}

/// Whether the request's bearer token was issued for the vault kind (its audience) and has not expired.
fn authorized(st: &State, req: &Req, mhsm: bool) -> bool {
    let bearer = req
        .header("authorization")
        .and_then(|a| a.strip_prefix("Bearer "))
        .unwrap_or_default();
    let want = if mhsm {
        "https://managedhsm.azure.net"
    } else {
        "https://vault.azure.net"
    };
    let live = st
        .expires
        .get(bearer)
        .is_none_or(|e| SystemTime::now() < *e);
    st.tokens.get(bearer).map(String::as_str) == Some(want) && live
}

/// `POST <vault>/keys/<kid>[/<version>]/release`; `vault` is the vault's base URL (for the key ids).
fn release(
    st: &mut State,
    req: &Req,
    vault: &str,
    kid: &str,
    version: Option<&str>,
    mhsm: bool,
) -> Resp {
    let err = |s: u16, code: &str, m: &str| {
        Resp::json(s, &json!({"error": {"code": code, "message": m}}))
    };
    if !authorized(st, req, mhsm) {
        return err(401, "Unauthorized", "AKV10022: Invalid audience or token.");
    }
    let Some(key) = st
        .keys
        .get(kid)
        .cloned()
        .filter(|_| version.is_none_or(|v| v == key_version(kid)))
    else {
        return err(
            404,
            "KeyNotFound",
            &format!("A key with (name/id) {kid} was not found in this key vault."),
        );
    };
    if let Some(dir) = &st.knobs.revoked_dir {
        if dir.join(kid).exists() {
            return err(
                403,
                "Forbidden",
                &format!("Operation release is not permitted on key {kid}: it was revoked."),
            );
        }
    }
    let Some(target) = serde_json::from_slice::<Value>(&req.body)
        .ok()
        .and_then(|b| b["target"].as_str().map(str::to_string))
    else {
        return err(400, "BadParameter", "no target");
    };
    let Some(claims) = jwt_claims(&st.maa_key, &target) else {
        return err(403, "Forbidden", "Target attestation token is not valid.");
    };
    let policy = vault_import::policy_of(&st.policies, kid, &key);
    if let Err(why) = vault_import::allows(&policy, &claims) {
        return err(
            403,
            "Forbidden",
            &format!("Target environment attestation statement cannot be verified: {why}."),
        );
    }
    // What the answer says it releases: the key asked for, or the `answer_as` knob's.
    let (kid, version, key) = match st.knobs.answer_as.clone() {
        Some(other) => {
            let (name, v) = other
                .split_once('/')
                .map_or((other.clone(), None), |(n, v)| {
                    (n.to_string(), Some(v.to_string()))
                });
            let key = st.keys[&name].clone();
            (name, v, key)
        }
        None => (kid.to_string(), version.map(str::to_string), key),
    };
    let kid = kid.as_str();
    let request_kid = match &version {
        Some(v) => format!("{vault}/keys/{kid}/{v}"),
        None => format!("{vault}/keys/{kid}"),
    };
    let key_kid = format!(
        "{vault}/keys/{kid}/{}",
        version.unwrap_or_else(|| key_version(kid))
    );
    let jwk = &claims["x-ms-runtime"]["keys"][0];
    let n = B64URL
        .decode(jwk["n"].as_str().unwrap_or_default())
        .unwrap_or_default();
    let e = B64URL
        .decode(jwk["e"].as_str().unwrap_or_default())
        .unwrap_or_default();
    let pubkey = rsa::PublicKey::new(
        rsa::BoxedUint::from_be_slice(&n, (n.len() * 8) as u32).unwrap(),
        rsa::BoxedUint::from_be_slice(&e, 64).unwrap(),
    )
    .unwrap();
    let mut kek = [0u8; 32];
    getrandom::fill(&mut kek).unwrap();
    let enc = st.knobs.enc.clone();
    let head = match enc.as_str() {
        "CKM_RSA_AES_KEY_WRAP" => pubkey.oaep_encrypt::<sha1::Sha1>(&kek),
        "RSA_AES_KEY_WRAP_384" => pubkey.oaep_encrypt::<sha2::Sha384>(&kek),
        _ => pubkey.oaep_encrypt::<sha2::Sha256>(&kek),
    }
    .unwrap();
    use aes_kw::cipher::KeyInit;
    let mut wrapped = vec![0u8; key.material.len().div_ceil(8) * 8 + 8];
    let w = aes_kw::KwpAes256::new_from_slice(&kek)
        .unwrap()
        .wrap_key(&key.material, &mut wrapped)
        .unwrap()
        .to_vec();
    let ct = [head, w].concat();
    let kty = st.knobs.kty_override.clone().unwrap_or(key.kty.clone());
    let key_hsm = json!({"schema_version": "1.0", "header": {"kid": kid, "alg": "dir", "enc": enc}, "ciphertext": B64URL.encode(&ct)});
    let payload = json!({
        "request": {"api-version": "7.4", "enc": enc, "kid": request_kid},
        "response": {"key": {"key": {"kid": key_kid, "kty": kty, "key_ops": ["wrapKey"], "key_hsm": B64URL.encode(key_hsm.to_string())},
                             "attributes": {"exportable": true}, "release_policy": {}}},
    });
    let pki = if st.knobs.jws == JwsMode::UnknownRoot {
        &st.other_pki
    } else {
        &st.pki
    };
    let x5c = [&pki.jws_leaf_der, &pki.inter_der, &pki.root_der].map(|d| B64.encode(d));
    let mut jws = jwt_sign(
        &pki.jws_key,
        &json!({"alg": "RS256", "kid": "k", "x5c": x5c}),
        &payload,
    );
    match st.knobs.jws {
        JwsMode::BadSignature => {
            let (s, sig) = jws.rsplit_once('.').unwrap();
            let mut sig = B64URL.decode(sig).unwrap();
            sig[10] ^= 1;
            jws = format!("{s}.{}", B64URL.encode(sig));
        }
        JwsMode::TwoParts => jws = jws.rsplit_once('.').unwrap().0.to_string(),
        _ => {}
    }
    Resp::json(200, &json!({ "value": jws }))
}

fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap_or(b'?'));
            i += 3;
        } else {
            out.push(if b[i] == b'+' { b' ' } else { b[i] });
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A new token for `resource`, valid for `lifetime` seconds (logged to `token_log` when set); with no
/// lifetime (a test gave IMDS an `expires_in` that is no number) it never expires.
fn issue(st: &mut State, resource: String, lifetime: Option<u64>) -> String {
    st.issued += 1;
    let t = format!(
        "tok-{}-{}",
        st.issued,
        hex(&Sha256::digest(resource.as_bytes())[..4])
    );
    let expires = SystemTime::now() + Duration::from_secs(lifetime.unwrap_or(100 * 365 * 86400));
    if lifetime.is_some() {
        st.expires.insert(t.clone(), expires);
    }
    if let Some(path) = &st.knobs.token_log {
        let expires = expires
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let line = format!("{t} {resource} {expires}\n");
        // One write of a whole line, appended: a reader never sees half a token.
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, line.as_bytes()))
            .expect("token log");
    }
    st.tokens.insert(t.clone(), resource);
    t
}

fn imds(st: &mut State, req: &Req) -> Resp {
    if req.header("metadata") != Some("true") {
        return Resp::json(
            400,
            &json!({"error": "invalid_request", "error_description": "Required metadata header not specified"}),
        );
    }
    if st.knobs.imds_down.as_ref().is_some_and(|f| f.exists()) {
        return Resp::json(
            503,
            &json!({"error": "service_unavailable", "error_description": "IMDS is down (test control)"}),
        );
    }
    let resource = pct_decode(&req.param("resource").unwrap_or_default());
    // `expires_in` as IMDS sends it (a string of seconds); a test may make it something else.
    let lifetime = match &st.knobs.imds_expires_in {
        Value::String(s) => s.parse().ok(),
        v => v.as_u64(),
    };
    let t = issue(st, resource.clone(), lifetime);
    Resp::json(
        200,
        &json!({"access_token": t, "expires_in": st.knobs.imds_expires_in, "resource": resource, "token_type": "Bearer"}),
    )
}

fn login(st: &mut State, req: &Req) -> Resp {
    let form: HashMap<String, String> = String::from_utf8_lossy(&req.body)
        .split('&')
        .filter_map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), pct_decode(v)))
        })
        .collect();
    // What Entra ID checks of a federated credential exchange: the grant, the assertion type, the client id
    // the federated credential belongs to and the assertion itself (here: the ones the test set up).
    if form.get("client_assertion") != Some(&st.assertion)
        || form.get("grant_type").map(String::as_str) != Some("client_credentials")
        || form.get("client_assertion_type").map(String::as_str)
            != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
        || form.get("client_id") != Some(&st.workload_client_id)
    {
        return Resp::json(401, &json!({"error": "invalid_client"}));
    }
    let Some(resource) = form.get("scope").and_then(|s| s.strip_suffix("/.default")) else {
        return Resp::json(400, &json!({"error": "invalid_scope"}));
    };
    let t = issue(st, resource.to_string(), Some(3600));
    Resp::json(
        200,
        &json!({"token_type": "Bearer", "expires_in": 3600, "access_token": t}),
    )
}

impl FakeAzure {
    pub fn start(amd: &AmdChain) -> FakeAzure {
        let pki = pki::web_pki("Fake Azure", "127.0.0.1");
        let other_pki = pki::web_pki("Stranger", "127.0.0.1");
        let root_pem = pki.root_pem.clone();
        let tls = (pki.tls_chain.clone(), pki.tls_key.clone());
        let state = Arc::new(Mutex::new(State {
            ark_der: amd.ark_der.clone(),
            maa_key: pki::rsa_key(1),
            pki,
            other_pki,
            keys: HashMap::new(),
            policies: HashMap::new(),
            tokens: HashMap::new(),
            expires: HashMap::new(),
            knobs: Knobs {
                enc: "CKM_RSA_AES_KEY_WRAP".into(),
                jws: JwsMode::Good,
                kty_override: None,
                imds_expires_in: json!("3600"),
                answer_as: None,
                revoked_dir: None,
                imds_down: None,
                token_log: None,
                thim: None,
                kds: None,
            },
            assertion: "federated-token".into(),
            workload_client_id: WORKLOAD_CLIENT_ID.into(),
            issued: 0,
        }));
        let port = Arc::new(Mutex::new(0u16));
        let (s2, p2) = (state.clone(), port.clone());
        let https = Server::start(
            Some(tls),
            Arc::new(move |req: &Req| {
                let url = format!("https://127.0.0.1:{}", p2.lock().unwrap());
                let mut st = s2.lock().unwrap();
                let p: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
                match (req.method.as_str(), p.as_slice()) {
                    ("POST", ["attest", "SevSnpVM"]) => maa(&st, req, &url),
                    ("POST", ["keys", kid, "release"]) => {
                        release(&mut st, req, &url, kid, None, false)
                    }
                    ("POST", ["keys", kid, v, "release"]) => {
                        release(&mut st, req, &url, kid, Some(v), false)
                    }
                    ("POST", ["mhsm", "keys", kid, "release"]) => {
                        release(&mut st, req, &format!("{url}/mhsm"), kid, None, true)
                    }
                    ("POST", ["mhsm", "keys", kid, v, "release"]) => {
                        release(&mut st, req, &format!("{url}/mhsm"), kid, Some(v), true)
                    }
                    ("PUT", ["keys", kid]) => vault_import::import(&mut st, req, &url, kid, false),
                    ("PUT", ["mhsm", "keys", kid]) => {
                        vault_import::import(&mut st, req, &format!("{url}/mhsm"), kid, true)
                    }
                    ("POST", [_tenant, "oauth2", "v2.0", "token"]) => login(&mut st, req),
                    // MAA's signing keys (what `doctor` asks to see that MAA answers).
                    ("GET", ["certs"]) => Resp::json(
                        200,
                        &json!({"keys": [{"kty": "RSA", "kid": "fake-maa", "use": "sig"}]}),
                    ),
                    _ => Resp::text(404, "no route"),
                }
            }),
        );
        *port.lock().unwrap() = https.port;
        let s3 = state.clone();
        let http = Server::start(
            None,
            Arc::new(move |req: &Req| {
                let mut st = s3.lock().unwrap();
                match req.path.as_str() {
                    "/metadata/identity/oauth2/token" => imds(&mut st, req),
                    "/thim" => thim(&st, req),
                    p => match p.strip_prefix("/kds/vcek/v1/") {
                        Some(rest) => kds(&st, req, rest),
                        None => Resp::text(404, "not here"),
                    },
                }
            }),
        );
        FakeAzure {
            https,
            http,
            state,
            root_pem,
        }
    }

    pub fn add_key(&self, kid: &str, key: VaultKey) {
        self.state.lock().unwrap().keys.insert(kid.to_string(), key);
    }

    pub fn set(&self, f: impl FnOnce(&mut Knobs)) {
        f(&mut self.state.lock().unwrap().knobs);
    }
}

/// 10 ms is plenty for loopback; keeps retries fast.
pub const FAST: Duration = Duration::from_millis(10);
