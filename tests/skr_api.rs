//! The SKR API (issue 16), served in-process on 127.0.0.1:0 with the fake attester, the fake AMD chain and
//! the fake Azure (MAA, Key Vault, IMDS) of tests/support: upstream-shaped requests and their answers, bad
//! requests and clients (malformed JSON, wrong base64, missing fields, a 10 MiB body, a slow client, too
//! many connections), a vault refusing the release, a panic while answering; and `[skr]` in the manifest.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod support;

use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use base64::Engine;
use encfs_init::http::Client;
use encfs_init::keyrelease::token::{TokenCache, TokenSource};
use encfs_init::keyrelease::{self, Context};
use encfs_init::manifest::{SkrPlan, VaultKind};
use encfs_init::skr::{Backend, Server};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::azure::VaultKey;
use support::rig::{hostdata_claim, imds_source, Rig, TCB};

/// The rig as the API's backend; `panic_next` makes the next context panic (a bug in a handler).
struct RigBackend {
    rig: Rig,
    client: Client,
    test_mode: bool,
    panic_next: AtomicBool,
}

impl Backend for RigBackend {
    fn identity(&self, kind: VaultKind) -> Result<TokenSource, keyrelease::Error> {
        Ok(imds_source(&self.rig.endpoints, kind))
    }
    fn with_context<T>(
        &self,
        tokens: &TokenCache,
        f: impl FnOnce(&Context<'_>) -> Result<T, keyrelease::Error>,
    ) -> Result<T, keyrelease::Error> {
        if self.panic_next.swap(false, Ordering::SeqCst) {
            panic!("test: a handler panics");
        }
        let ctx = Context {
            tokens,
            ..self.rig.context(&self.client)
        };
        f(&ctx)
    }
    fn test_mode(&self) -> bool {
        self.test_mode
    }
    fn manifest_vaults(&self) -> Vec<String> {
        vec![]
    }
}

struct Api {
    server: Server,
    backend: Arc<RigBackend>,
}

fn plan(max_connections: usize, timeout: Duration) -> SkrPlan {
    SkrPlan {
        listen: "127.0.0.1:0".parse().unwrap(),
        max_connections,
        request_timeout: timeout,
        max_body: 64 << 10,
    }
}

fn start_with(name: &str, p: SkrPlan, test_mode: bool) -> Api {
    let rig = Rig::new(name);
    let client = Client::new(&rig.net).unwrap();
    let backend = Arc::new(RigBackend {
        rig,
        client,
        test_mode,
        panic_next: AtomicBool::new(false),
    });
    let server = Server::start(&p, backend.clone()).unwrap();
    Api { server, backend }
}

fn start(name: &str) -> Api {
    start_with(name, plan(16, Duration::from_secs(20)), true)
}

impl Api {
    fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }
    /// The fake Azure's `host:port` (https), as an application names MAA and the vault.
    fn azure_host(&self) -> String {
        self.backend.rig.az.https.url()["https://".len()..].to_string()
    }
    fn call(&self, method: &str, path: &str, body: &str) -> (u16, String, String) {
        send(
            self.addr(),
            &format!(
                "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ),
        )
    }
    fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let (status, _, body) = self.call("POST", path, &body.to_string());
        (status, one_json(&body))
    }
}

/// Send `raw`, read the whole answer: status, head, body.
fn send(addr: SocketAddr, raw: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(raw.as_bytes()).unwrap();
    read_answer(&mut s)
}

fn read_answer(s: &mut TcpStream) -> (u16, String, String) {
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_string(), body.to_string())
}

/// The body is exactly one JSON value (upstream wrote two after a 403).
fn one_json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not one JSON body ({e}): {body}"))
}

fn error_of(v: &Value) -> &str {
    let o = v.as_object().unwrap();
    assert_eq!(o.len(), 1, "{v}");
    o["error"].as_str().unwrap()
}

#[test]
fn status_answers_upstreams_body() {
    let api = start("skr-status");
    let (status, head, body) = api.call("GET", "/status", "");
    assert_eq!(status, 200);
    assert_eq!(body, r#"{"message":"Status OK"}"#);
    assert!(head.contains("Connection: close"), "{head}");
}

#[test]
fn attest_raw_binds_sha256_of_the_runtime_data() {
    let api = start("skr-raw");
    let runtime = b"my runtime data";
    let (status, v) = api.post("/attest/raw", json!({"runtime_data": B64.encode(runtime)}));
    assert_eq!(status, 200, "{v}");
    let report = encfs_init::hex::decode(v["report"].as_str().unwrap()).unwrap();
    assert_eq!(report.len(), 1184);
    let r = encfs_init::attest::report::Report::parse(&report).unwrap();
    assert_eq!(&r.report_data[..32], &Sha256::digest(runtime)[..]);
    assert_eq!(&r.report_data[32..], &[0u8; 32][..]);
}

#[test]
fn attest_combined_answers_evidence_endorsements_tcb_and_uvm_endorsements() {
    let api = start("skr-combined");
    let runtime = b"combined";
    let (status, v) = api.post(
        "/attest/combined",
        json!({"runtime_data": B64.encode(runtime)}),
    );
    assert_eq!(status, 200, "{v}");
    let report = B64.decode(v["evidence"].as_str().unwrap()).unwrap();
    let r = encfs_init::attest::report::Report::parse(&report).unwrap();
    assert_eq!(&r.report_data[..32], &Sha256::digest(runtime)[..]);
    assert_eq!(v["endorsed_tcb"], format!("{TCB:016x}"));
    let pem = String::from_utf8(B64.decode(v["endorsements"].as_str().unwrap()).unwrap()).unwrap();
    assert_eq!(pem, api.backend.rig.amd.pem, "VCEK + ASK + ARK");
    assert_eq!(v["uvm_endorsements"], B64.encode(b"\xd2cose"));
}

#[test]
fn attest_maa_returns_a_token_whose_claims_carry_the_runtime_data() {
    let api = start("skr-maa");
    let runtime = json!({"nonce": "caller-nonce-1"});
    let (status, v) = api.post(
        "/attest/maa",
        json!({"maa_endpoint": api.azure_host(), "runtime_data": B64.encode(runtime.to_string())}),
    );
    assert_eq!(status, 200, "{v}");
    let token = v["token"].as_str().unwrap();
    let claims: Value =
        serde_json::from_slice(&B64URL.decode(token.split('.').nth(1).unwrap()).unwrap()).unwrap();
    assert_eq!(claims["x-ms-runtime"], runtime, "{claims}");
    assert_eq!(api.backend.rig.az.https.hits("/attest/SevSnpVM"), 1);
}

fn release_req(api: &Api, kid: &str) -> Value {
    json!({"maa_endpoint": api.azure_host(), "akv_endpoint": api.azure_host(), "kid": kid})
}

#[test]
fn key_release_answers_the_vaults_key_as_a_jwk_string() {
    let api = start("skr-release");
    let (status, v) = api.post("/key/release", release_req(&api, "oct"));
    assert_eq!(status, 200, "{v}");
    let jwk: Value = serde_json::from_str(v["key"].as_str().unwrap()).unwrap();
    assert_eq!(jwk["kty"], "oct");
    assert_eq!(
        B64URL.decode(jwk["k"].as_str().unwrap()).unwrap(),
        [7u8; 32],
        "the vault's key material"
    );
    // A second request attests afresh, with the identity's token (from IMDS) it cached.
    let (status, _) = api.post("/key/release", release_req(&api, "oct"));
    assert_eq!(status, 200);
    assert_eq!(api.backend.rig.az.https.hits("/attest/SevSnpVM"), 2);
    assert_eq!(api.backend.rig.az.http.hits("/metadata/identity"), 1);
}

#[test]
fn key_release_of_an_rsa_key_answers_its_private_jwk() {
    use rsa::pkcs8::EncodePrivateKey;
    use rsa::traits::{PrivateKeyParts, PublicKeyParts};
    let api = start("skr-release-rsa");
    let key = support::pki::rsa_key(3);
    api.backend.rig.az.add_key(
        "rsa",
        VaultKey {
            kty: "RSA-HSM".into(),
            material: key.to_pkcs8_der().unwrap().as_bytes().to_vec(),
            policy: vec![hostdata_claim()],
        },
    );
    let (status, v) = api.post("/key/release", release_req(&api, "rsa"));
    assert_eq!(status, 200, "{v}");
    let jwk: Value = serde_json::from_str(v["key"].as_str().unwrap()).unwrap();
    assert_eq!(jwk["kty"], "RSA", "{jwk}");
    let num = |name: &str| B64URL.decode(jwk[name].as_str().unwrap()).unwrap();
    let minimal = |b: Box<[u8]>| {
        let n = b.iter().take_while(|x| **x == 0).count();
        b[n..].to_vec()
    };
    assert_eq!(num("n"), minimal(key.n().to_be_bytes()));
    assert_eq!(num("e"), minimal(key.e().to_be_bytes()));
    assert_eq!(num("d"), minimal(key.d().to_be_bytes()));
}

#[test]
fn key_release_with_an_access_token_uses_it_instead_of_imds() {
    let api = start("skr-token");
    api.backend
        .rig
        .az
        .state
        .lock()
        .unwrap()
        .tokens
        .insert("caller-token".into(), "https://vault.azure.net".into());
    let mut req = release_req(&api, "oct");
    req["access_token"] = json!("caller-token");
    let (status, v) = api.post("/key/release", req);
    assert_eq!(status, 200, "{v}");
    assert_eq!(api.backend.rig.az.http.hits("/metadata"), 0);
}

#[test]
fn a_vault_refusing_the_release_is_a_403_with_one_json_body() {
    let api = start("skr-denied");
    api.backend.rig.az.add_key(
        "denied",
        VaultKey {
            kty: "oct-HSM".into(),
            material: vec![1; 32],
            policy: vec![("x-ms-sevsnpvm-hostdata".into(), json!("00".repeat(32)))],
        },
    );
    let (status, _, body) = api.call(
        "POST",
        "/key/release",
        &release_req(&api, "denied").to_string(),
    );
    assert_eq!(status, 403, "{body}");
    let v = one_json(&body);
    let e = error_of(&v);
    assert!(e.starts_with("key release of denied from https://"), "{e}");
    assert!(e.contains("HTTP 403") && e.contains("; fix: "), "{e}");
}

#[test]
fn the_identitys_token_goes_only_to_vault_hosts_outside_test_mode() {
    let api = start_with("skr-vaults", plan(4, Duration::from_secs(20)), false);
    let (status, v) = api.post(
        "/key/release",
        json!({"maa_endpoint": api.azure_host(), "akv_endpoint": "collector.example.com", "kid": "oct"}),
    );
    assert_eq!(status, 403, "{v}");
    assert!(
        error_of(&v).contains("not sent to collector.example.com"),
        "{v}"
    );
    assert_eq!(
        api.backend.rig.az.http.hits("/metadata"),
        0,
        "no token fetched"
    );
    assert!(encfs_init::skr::api::identity_may_reach(
        "kv1.vault.azure.net",
        &[],
        false
    ));
    assert!(!encfs_init::skr::api::identity_may_reach(
        "vault.azure.net.example.com",
        &[],
        false
    ));
}

#[test]
fn bad_requests_are_400_404_405_411_413_each_with_one_json_error() {
    let api = start("skr-bad");
    let cases: [(&str, &str, &str, u16, &str); 9] = [
        (
            "POST",
            "/attest/raw",
            "{not json",
            400,
            "not the JSON /attest/raw takes",
        ),
        (
            "POST",
            "/attest/raw",
            r#"{"runtime_data":"%%%"}"#,
            400,
            "not standard base64",
        ),
        (
            "POST",
            "/attest/raw",
            r#"{"runtime_data":""}"#,
            400,
            "runtime_data is empty",
        ),
        (
            "POST",
            "/attest/maa",
            r#"{"runtime_data":"aGk="}"#,
            400,
            "missing field `maa_endpoint`",
        ),
        (
            "POST",
            "/key/release",
            r#"{"maa_endpoint":"a","akv_endpoint":"b"}"#,
            400,
            "missing field `kid`",
        ),
        (
            "POST",
            "/key/release",
            r#"{"maa_endpoint":"a b","akv_endpoint":"b","kid":"k"}"#,
            400,
            "maa_endpoint \"a b\" is not an endpoint",
        ),
        (
            "POST",
            "/key/release",
            r#"{"maa_endpoint":"a","akv_endpoint":"b","kid":"../x"}"#,
            400,
            "is not a key name",
        ),
        ("GET", "/nowhere", "", 404, "no endpoint /nowhere"),
        ("GET", "/attest/raw", "", 405, "takes POST, not GET"),
    ];
    for (method, path, body, want, words) in cases {
        let (status, head, text) = api.call(method, path, body);
        assert_eq!(status, want, "{method} {path} {body}: {text}");
        let e = error_of(&one_json(&text)).to_string();
        assert!(e.contains(words), "{method} {path} {body}: {e}");
        assert!(e.contains("; fix: "), "{e}");
        if want == 405 {
            assert!(head.contains("Allow: POST"), "{head}");
        }
    }
    // A path that is not printable ASCII, or too long, or a method that is not one: 400, and the log and the
    // answer never quote them.
    for raw in [
        "GET /st\x1b[2Jatus HTTP/1.1\r\n\r\n".to_string(),
        format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(2000)),
        "get /status HTTP/1.1\r\n\r\n".to_string(),
    ] {
        let (status, _, text) = send(api.addr(), &raw);
        assert_eq!(status, 400, "{raw}: {text}");
        let v = one_json(&text);
        let e = error_of(&v);
        assert!(e.starts_with("malformed request: "), "{e}");
        assert!(!e.contains("aaaa") && !e.contains('\x1b'), "{e}");
    }
    // No Content-Length, a chunked body: 411.
    let (status, _, text) = send(api.addr(), "POST /attest/raw HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status, 411, "{text}");
    let (status, _, text) = send(
        api.addr(),
        "POST /attest/raw HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    );
    assert_eq!(status, 411, "{text}");
    assert!(error_of(&one_json(&text)).contains("chunked"), "{text}");
}

#[test]
fn a_10_mib_body_is_refused_413_before_it_is_sent() {
    let api = start("skr-huge");
    let mut s = TcpStream::connect(api.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // Only the head: the answer comes without the server waiting for (or reading) the body.
    s.write_all(b"POST /attest/raw HTTP/1.1\r\nContent-Length: 10485760\r\n\r\n")
        .unwrap();
    let (status, _, body) = read_answer(&mut s);
    assert_eq!(status, 413, "{body}");
    assert!(error_of(&one_json(&body)).contains("exceeds the limit of 65536 bytes"));
    // Headers beyond 16 KiB, still coming: refused at the limit, not at the timeout.
    let t = Instant::now();
    let big = format!("GET /status HTTP/1.1\r\nX-Big: {}", "a".repeat(20 << 10));
    let (status, _, _) = send(api.addr(), &big);
    assert_eq!(status, 431);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}

#[test]
fn a_slow_client_is_cut_at_the_request_timeout() {
    let api = start_with("skr-slow", plan(4, Duration::from_secs(1)), true);
    let mut s = TcpStream::connect(api.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let t = Instant::now();
    s.write_all(b"POST /attest/raw HTTP/1.1\r\nContent-Length: 40\r\n\r\n{\"runtime")
        .unwrap();
    let (status, _, body) = read_answer(&mut s);
    assert_eq!(status, 408, "{body}");
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "{:?}",
        t.elapsed()
    );
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(error_of(&one_json(&body)).contains("did not arrive within 1s"));
}

#[test]
fn connections_beyond_max_connections_are_answered_503_and_the_server_recovers() {
    let api = start_with("skr-busy", plan(2, Duration::from_secs(2)), true);
    // Two clients hold both slots, sending nothing.
    let held: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(api.addr()).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let (status, _, body) = api.call("GET", "/status", "");
    assert_eq!(status, 503, "{body}");
    assert!(error_of(&one_json(&body)).contains("too many connections (max_connections 2)"));
    // Once they are cut (408), the slots are free again.
    for mut h in held {
        h.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        assert_eq!(read_answer(&mut h).0, 408);
    }
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(api.call("GET", "/status", "").0, 200);
}

#[test]
fn a_panic_while_answering_is_a_500_and_the_server_goes_on() {
    let api = start("skr-panic");
    api.backend.panic_next.store(true, Ordering::SeqCst);
    let (status, v) = api.post("/attest/raw", json!({"runtime_data": B64.encode(b"x")}));
    assert_eq!(status, 500, "{v}");
    assert!(error_of(&v).contains("internal error (a bug)"), "{v}");
    assert_eq!(api.call("GET", "/status", "").0, 200);
    let (status, v) = api.post("/attest/raw", json!({"runtime_data": B64.encode(b"x")}));
    assert_eq!(status, 200, "{v}");
}

#[test]
fn stopping_the_server_frees_its_port() {
    let api = start("skr-stop");
    let addr = api.addr();
    assert_eq!(api.call("GET", "/status", "").0, 200);
    api.server.stop();
    assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err());
    std::net::TcpListener::bind(addr).unwrap();
}

// ---- [skr] in the manifest ----

fn load(skr: &str) -> Result<encfs_init::manifest::Plan, String> {
    encfs_init::manifest::load_toml_str(
        "m.toml",
        &format!("test_mode = true\n[skr]\n{skr}"),
        None,
        encfs_init::manifest::Origin::Toml("m.toml".into()),
    )
    .map(|l| l.plan)
    .map_err(|e| e.to_string())
}

#[test]
fn manifest_skr_defaults_and_loopback_addresses() {
    let p = load("").unwrap().skr.unwrap();
    assert_eq!(p.listen, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(
        (p.max_connections, p.request_timeout, p.max_body),
        (16, Duration::from_secs(30), 64 << 10)
    );
    for ok in ["127.0.0.1:50000", "127.1.2.3:8080", "[::1]:8080"] {
        let p = load(&format!("listen = \"{ok}\"")).unwrap().skr.unwrap();
        assert_eq!(p.listen, ok.parse().unwrap());
    }
}

#[test]
fn manifest_skr_refuses_non_loopback_addresses_and_out_of_range_bounds() {
    for (skr, words) in [
        (
            "listen = \"0.0.0.0:8080\"",
            "0.0.0.0 is not a loopback address",
        ),
        (
            "listen = \"10.1.2.3:8080\"",
            "10.1.2.3 is not a loopback address",
        ),
        ("listen = \"[::]:8080\"", ":: is not a loopback address"),
        ("listen = \"localhost:8080\"", "is not an address:port"),
        ("max_connections = 0", "max_connections"),
        ("max_connections = 100000", "use 1 to 1024"),
        ("request_timeout = \"2h\"", "request_timeout"),
        ("max_body = \"10MiB\"", "use 1KiB to 1MiB"),
        ("max_body = \"100B\"", "max_body"),
    ] {
        let e = load(skr).unwrap_err();
        assert!(e.contains(words), "{skr}: {e}");
        assert!(e.contains("skr."), "{skr}: {e}");
    }
    let e = load("listen = \"0.0.0.0:8080\"").unwrap_err();
    assert!(e.contains("network namespace"), "the fix says why: {e}");
}

#[test]
fn a_second_hostdata_policy_key_releases_too() {
    // The API releases any key the attestation satisfies, not only the manifest's.
    let api = start("skr-second");
    api.backend.rig.az.add_key(
        "second",
        VaultKey {
            kty: "oct-HSM".into(),
            material: vec![9; 32],
            policy: vec![hostdata_claim()],
        },
    );
    let (status, v) = api.post("/key/release", release_req(&api, "second"));
    assert_eq!(status, 200, "{v}");
    let jwk: Value = serde_json::from_str(v["key"].as_str().unwrap()).unwrap();
    assert_eq!(
        B64URL.decode(jwk["k"].as_str().unwrap()).unwrap(),
        [9u8; 32]
    );
}

#[test]
fn the_example_manifest_validates_and_check_prints_the_api() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/skr.toml");
    let loaded = encfs_init::manifest::load_toml_file(std::path::Path::new(path))
        .unwrap_or_else(|e| panic!("{e}"));
    let text = encfs_init::manifest::render(&loaded.plan);
    assert!(
        text.contains("skr:             SKR API on http://127.0.0.1:8080 (loopback only; max_connections 16, request_timeout 30s, max_body 64KiB)"),
        "{text}"
    );
}

#[test]
fn expect_100_continue_is_answered_so_curl_sends_its_body_at_once() {
    let api = start("skr-continue");
    let body = json!({"runtime_data": B64.encode([1u8; 1200])}).to_string();
    let mut s = TcpStream::connect(api.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST /attest/raw HTTP/1.1\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        body.len()
    )
    .unwrap();
    let mut interim = [0u8; 25];
    s.read_exact(&mut interim).unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(body.as_bytes()).unwrap();
    let (status, _, text) = read_answer(&mut s);
    assert_eq!(status, 200, "{text}");
}

// ---- the real binary: the boot starts the API before readiness and stops it at teardown ----

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn manifest_with_skr(name: &str, port: u16) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("encfs-skr-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ready = dir.join("ready");
    let m = dir.join("m.toml");
    std::fs::write(
        &m,
        format!(
            "test_mode = true\nreadiness_file = \"{}\"\n[skr]\nlisten = \"127.0.0.1:{port}\"\nrequest_timeout = \"5s\"\n",
            ready.display()
        ),
    )
    .unwrap();
    (m, ready)
}

fn encfs_init(manifest: &std::path::Path, app: &[&str]) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_encfs-init"));
    c.arg("run")
        .arg("--manifest")
        .arg(manifest)
        .arg("--")
        .args(app)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    c
}

#[test]
fn the_boot_serves_the_api_before_readiness_and_stops_it_at_teardown() {
    let port = free_port();
    let (m, ready) = manifest_with_skr("boot", port);
    let child = encfs_init(&m, &["sleep", "30"]).spawn().unwrap();
    let t = Instant::now();
    while !ready.exists() {
        assert!(t.elapsed() < Duration::from_secs(30), "never ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // Up as soon as the readiness file is: an application waiting for readiness finds it.
    let (status, _, body) = send(addr, "GET /status HTTP/1.1\r\n\r\n");
    assert_eq!((status, body.as_str()), (200, r#"{"message":"Status OK"}"#));
    let req = json!({"runtime_data": B64.encode(b"boot")}).to_string();
    let (status, _, body) = send(
        addr,
        &format!(
            "POST /attest/raw HTTP/1.1\r\nContent-Length: {}\r\n\r\n{req}",
            req.len()
        ),
    );
    assert_eq!(status, 200, "{body}");
    std::process::Command::new("kill")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains(&format!("SKR API: listening on http://127.0.0.1:{port}")),
        "{log}"
    );
    assert!(log.contains("SKR API: stopped"), "{log}");
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(),
        "still listening after teardown"
    );
}

#[test]
fn a_taken_port_fails_the_boot_closed_with_the_fix() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let (m, ready) = manifest_with_skr("taken", port);
    let out = encfs_init(&m, &["true"]).output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{log}");
    assert!(
        log.contains(&format!(
            "boot failed: SKR API: listen on 127.0.0.1:{port}: "
        )) && log.contains("; fix: free the port"),
        "{log}"
    );
    assert!(!ready.exists());
}
