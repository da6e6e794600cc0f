//! `encfs-init doctor`, the real binary: on this host (no SEV-SNP) the evidence line is a problem with its
//! fix; against the fake Azure (MAA, Key Vault, IMDS in tests/support/azure.rs), the range server for the
//! blob and an image made by `encfs-init image create --verity`, an all-green run (`--json`, parsed), then
//! each check made to fail once, asserting its line. The evidence comes from the test-mode fake attester
//! signing with the fake VCEK key, verified against the fake AMD chain through the UVM host certificate.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod support;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use p384::pkcs8::EncodePrivateKey;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, OnceLock};
use support::range_server::RangeServer;
use support::rig::{self, Rig, POLICY};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_encfs-init"));
    for v in [
        "ENCFS_INIT_MANIFEST",
        "EncfsSideCarArgs",
        "UVM_SECURITY_CONTEXT_DIR",
        "UVM_SECURITY_POLICY",
        "UVM_HOST_AMD_CERTIFICATE",
        "UVM_REFERENCE_INFO",
        "AZURE_CLIENT_ID",
        "AZURE_TENANT_ID",
        "AZURE_FEDERATED_TOKEN_FILE",
    ] {
        c.env_remove(v);
    }
    c
}

fn pem(label: &str, der: &[u8]) -> String {
    let b = B64.encode(der);
    let lines: Vec<&str> = b
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

/// The image, made once: `image create --verity` from a directory with one file; its bytes, root, offset.
struct Image {
    bytes: Vec<u8>,
    root: String,
    offset: u64,
}

fn image() -> &'static Image {
    static IMG: OnceLock<Image> = OnceLock::new();
    IMG.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("encfs-doctor-img-{}", std::process::id()));
        let src = dir.join("src");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("test.txt"), b"doctor\n").unwrap();
        std::fs::write(dir.join("key"), [7u8; 32]).unwrap();
        let img = dir.join("fs.img");
        let o = bin()
            .args(["image", "create", "--verity", "--key-file"])
            .arg(dir.join("key"))
            .arg("--from")
            .arg(&src)
            .arg(&img)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        let value = |key: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix(" = "))
                .unwrap()
                .trim_matches('"')
                .to_string()
        };
        let image = Image {
            bytes: std::fs::read(&img).unwrap(),
            root: value("verity_root_hash"),
            offset: value("verity_hash_offset").parse().unwrap(),
        };
        let _ = std::fs::remove_dir_all(&dir);
        image
    })
}

/// The fake Azure, the blob and the files a manifest names; `manifest()` writes one from `m`.
struct Env {
    rig: Rig,
    blob: RangeServer,
    uvm: PathBuf,
}

/// What a test changes in the all-green manifest.
struct M {
    authority: String,
    vault: String,
    imds: String,
    url: String,
    root: String,
    ca: PathBuf,
}

impl Env {
    fn new(name: &str) -> Env {
        let rig = Rig::new(&format!("doctor-{name}"));
        std::fs::write(
            rig.dir.join("ark.pem"),
            pem("CERTIFICATE", &rig.amd.ark_der),
        )
        .unwrap();
        let vcek = rig.amd.vcek_key.to_pkcs8_der().unwrap();
        std::fs::write(
            rig.dir.join("vcek-key.pem"),
            pem("PRIVATE KEY", vcek.as_bytes()),
        )
        .unwrap();
        let uvm = rig.dir.join("security-context");
        std::fs::create_dir_all(&uvm).unwrap();
        let t = rig::host_certs(&rig.amd, rig::TCB);
        let thim = serde_json::json!({
            "vcekCert": t.vcek_cert,
            "tcbm": t.tcbm,
            "certificateChain": t.certificate_chain,
            "cacheControl": t.cache_control,
        });
        std::fs::write(
            uvm.join("host-amd-cert-base64"),
            B64.encode(thim.to_string()),
        )
        .unwrap();
        std::fs::write(uvm.join("security-policy-base64"), B64.encode(POLICY)).unwrap();
        std::fs::write(rig.dir.join("policy.b64"), B64.encode(POLICY)).unwrap();
        let blob = RangeServer::start(image().bytes.clone(), "PageBlob");
        Env { rig, blob, uvm }
    }

    fn green(&self) -> M {
        M {
            authority: self.rig.az.https.url(),
            vault: self.rig.az.https.url(),
            imds: self.rig.az.http.url(),
            url: self.blob.url(),
            root: image().root.clone(),
            ca: self.rig.dir.join("ca.pem"),
        }
    }

    fn manifest(&self, m: &M) -> PathBuf {
        let d = &self.rig.dir;
        let text = format!(
            r#"test_mode = true

[network]
ca_bundle = "{ca}"
retries = 0
connect_timeout = "2s"
request_timeout = "5s"

[attestation]
fake_vcek_key_file = "{d}/vcek-key.pem"
test_ark_file = "{d}/ark.pem"

[endpoints]
imds = "{imds}"
thim = "{imds}/thim"
amd_kds = "{imds}/kds"

[[filesystem]]
mount_point = "/mnt/doctor"
url = "{url}"
access = "anonymous"
verity_root_hash = "{root}"
verity_hash_offset = {offset}
[filesystem.key]
kid = "oct"
kty = "oct-HSM"
authority = "{authority}"
vault = "{vault}"
"#,
            ca = m.ca.display(),
            d = d.display(),
            imds = m.imds,
            url = m.url,
            root = m.root,
            offset = image().offset,
            authority = m.authority,
            vault = m.vault,
        );
        let p = d.join("manifest.toml");
        std::fs::write(&p, text).unwrap();
        p
    }

    /// `doctor --manifest (m) --policy FILE [extra]`, with the UVM information of the fake platform.
    fn doctor(&self, m: &M, policy: &Path, extra: &[&str]) -> Output {
        bin()
            .arg("doctor")
            .arg("--manifest")
            .arg(self.manifest(m))
            .arg("--policy")
            .arg(policy)
            .args(extra)
            .env("UVM_SECURITY_CONTEXT_DIR", &self.uvm)
            .output()
            .unwrap()
    }

    fn policy(&self) -> PathBuf {
        self.rig.dir.join("policy.b64")
    }

    /// The run with `m`: its stdout, which must say exit 1 (a problem).
    fn failing(&self, m: &M) -> String {
        let o = self.doctor(m, &self.policy(), &[]);
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        assert_eq!(
            o.status.code(),
            Some(1),
            "{out}{}",
            String::from_utf8_lossy(&o.stderr)
        );
        out
    }
}

/// The line of `check` in `out`.
fn line<'a>(out: &'a str, check: &str) -> &'a str {
    out.lines()
        .find(|l| {
            l.get(9..)
                .is_some_and(|r| r.starts_with(&format!("{check}: ")))
        })
        .unwrap_or_else(|| panic!("no line for {check} in:\n{out}"))
}

fn assert_problem(out: &str, check: &str, words: &[&str]) {
    let l = line(out, check);
    assert!(l.starts_with("problem  "), "{l}");
    for w in words {
        assert!(l.contains(w), "{w:?} not in: {l}");
    }
    assert!(l.contains("; fix: "), "no fix in: {l}");
}

#[test]
fn on_a_host_without_sev_snp_the_evidence_line_is_a_problem_with_its_fix() {
    let o = bin().arg("doctor").output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert_problem(
        &out,
        "evidence source",
        &[
            "no SEV-SNP attestation interface found",
            "/dev/sev-guest",
            "run on an SEV-SNP confidential platform",
        ],
    );
    assert!(
        line(&out, "evidence report").starts_with("skipped  "),
        "{out}"
    );
    assert!(out.lines().last().unwrap().starts_with("doctor: "), "{out}");
}

#[test]
fn all_green_against_the_fakes_as_json() {
    let env = Env::new("green");
    let o = env.doctor(&env.green(), &env.policy(), &["--json"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    });
    let all = v.as_array().unwrap();
    let find = |c: &str| {
        all.iter()
            .find(|f| f["check"] == c)
            .unwrap_or_else(|| panic!("no {c} in {v:#}"))
    };
    // The host's kernel (no dm here) is what it is; every other check passes (TLS to the plain-http fakes
    // is skipped, saying so).
    for f in all {
        let c = f["check"].as_str().unwrap();
        if c.starts_with("kernel ") || c.starts_with("transport ") {
            continue;
        }
        if c.starts_with("tls ") && f["status"] == "skipped" {
            assert!(
                f["detail"].as_str().unwrap().starts_with("plain http"),
                "{f:#}"
            );
            continue;
        }
        assert_eq!(f["status"], "ok", "{f:#}");
        assert!(f["fix"].is_null(), "{f:#}");
    }
    let host = |p: u16| format!("127.0.0.1:{p}");
    for c in [
        "uvm info".to_string(),
        "evidence source".into(),
        "evidence report".into(),
        "host_data".into(),
        "dns 127.0.0.1".into(),
        format!("tcp {}", host(env.rig.az.https.port)),
        format!("tls {}", host(env.rig.az.https.port)),
        format!("tcp {}", env.blob.addr),
        "token https://vault.azure.net".into(),
        "maa 127.0.0.1".into(),
        "blob[0] head".into(),
        "blob[0] luks2".into(),
        "blob[0] verity".into(),
    ] {
        find(&c);
    }
    let report = find("evidence report")["detail"].as_str().unwrap();
    assert!(
        report.contains("VMPL 0")
            && report.contains("not debuggable")
            && report.contains("pinned Test root"),
        "{report}"
    );
    assert!(find("blob[0] verity")["detail"]
        .as_str()
        .unwrap()
        .contains(&image().root));
    assert!(find("blob[0] head")["detail"]
        .as_str()
        .unwrap()
        .contains("PageBlob"));
    // No key was released, no token printed.
    assert_eq!(env.rig.az.https.hits("/keys/"), 0);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(!text.contains("tok-"), "a token was printed: {text}");
    // The same as lines: one per finding, then the summary.
    let o = env.doctor(&env.green(), &env.policy(), &[]);
    let text = String::from_utf8_lossy(&o.stdout);
    eprintln!("{text}");
    assert_eq!(text.lines().count(), all.len() + 1, "{text}");
    assert!(
        text.lines().last().unwrap().starts_with("doctor: "),
        "{text}"
    );
}

#[test]
fn dns_an_unresolvable_name() {
    let env = Env::new("dns");
    let m = M {
        authority: "https://no-such-maa.invalid".into(),
        ..env.green()
    };
    let out = env.failing(&m);
    assert_problem(
        &out,
        "dns no-such-maa.invalid",
        &["MAA endpoint: cannot resolve no-such-maa.invalid", "DNS"],
    );
    assert!(
        line(&out, "tcp no-such-maa.invalid:443").starts_with("skipped  "),
        "{out}"
    );
}

#[test]
fn tcp_a_refused_port() {
    let env = Env::new("tcp");
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let m = M {
        vault: format!("https://{closed}"),
        ..env.green()
    };
    let out = env.failing(&m);
    assert_problem(
        &out,
        &format!("tcp {closed}"),
        &["cannot connect", "refused"],
    );
    assert!(
        line(&out, &format!("tls {closed}")).starts_with("skipped  "),
        "{out}"
    );
}

#[test]
fn tls_an_unknown_ca() {
    let env = Env::new("tls");
    let other = env.rig.dir.join("stranger.pem");
    std::fs::write(
        &other,
        support::pki::web_pki("Stranger", "127.0.0.1").root_pem,
    )
    .unwrap();
    let m = M {
        ca: other,
        ..env.green()
    };
    let out = env.failing(&m);
    let port = env.rig.az.https.port;
    assert_problem(
        &out,
        &format!("tls 127.0.0.1:{port}"),
        &["TLS failure", "ca_bundle"],
    );
    assert!(
        line(&out, &format!("tcp 127.0.0.1:{port}")).starts_with("ok  "),
        "{out}"
    );
}

#[test]
fn token_imds_answers_400() {
    let env = Env::new("token");
    let imds = support::Server::start(
        None,
        Arc::new(|_req: &support::Req| {
            support::Resp::json(
                400,
                &serde_json::json!({"error": "invalid_request", "error_description": "Identity not found"}),
            )
        }),
    );
    let m = M {
        imds: imds.url(),
        ..env.green()
    };
    let out = env.failing(&m);
    assert_problem(
        &out,
        "token https://vault.azure.net",
        &["HTTP 400", "Identity not found", "managed identity"],
    );
}

#[test]
fn maa_unreachable() {
    let env = Env::new("maa");
    // Something answers there, but it is not MAA: no key set at /certs.
    let m = M {
        authority: env.rig.az.http.url(),
        ..env.green()
    };
    let out = env.failing(&m);
    assert_problem(
        &out,
        "maa 127.0.0.1",
        &["/certs", "HTTP 404", "attestation authority URL"],
    );
}

#[test]
fn blob_404() {
    let env = Env::new("blob404");
    let m = M {
        url: format!("{}/container/missing.img", env.rig.az.http.url()),
        ..env.green()
    };
    let out = env.failing(&m);
    assert_problem(
        &out,
        "blob[0] head",
        &["missing.img", "no such blob (HTTP 404)"],
    );
    assert!(
        line(&out, "blob[0] luks2").starts_with("skipped  "),
        "{out}"
    );
}

#[test]
fn blob_header_not_luks2() {
    let env = Env::new("notluks");
    let zeros = RangeServer::start(vec![0u8; image().bytes.len()], "PageBlob");
    let m = M {
        url: zeros.url(),
        ..env.green()
    };
    let out = env.failing(&m);
    assert_problem(&out, "blob[0] luks2", &["LUKS2"]);
}

#[test]
fn verity_root_mismatch() {
    let env = Env::new("verity");
    let mut root = image().root.clone();
    root.replace_range(0..2, if root.starts_with("00") { "11" } else { "00" });
    let m = M {
        root,
        ..env.green()
    };
    let out = env.failing(&m);
    assert_problem(
        &out,
        "blob[0] verity",
        &["does not match verity_root_hash", "hash tree block"],
    );
    // The header itself is fine.
    assert!(line(&out, "blob[0] luks2").starts_with("ok  "), "{out}");
}

#[test]
fn host_data_against_another_policy() {
    let env = Env::new("hostdata");
    let other = env.rig.dir.join("other.b64");
    std::fs::write(
        &other,
        B64.encode(b"package policy\napi_svn := \"0.9.0\"\n"),
    )
    .unwrap();
    let o = env.doctor(&env.green(), &other, &[]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{out}");
    use sha2::Digest;
    let have = encfs_init::hex::encode(&sha2::Sha256::digest(POLICY));
    assert_problem(
        &out,
        "host_data",
        &[
            &format!("the report's host_data is {have}"),
            "other.b64 hashes to",
            "ccePolicy",
        ],
    );
}
