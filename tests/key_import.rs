//! `encfs-init key import` and `key policy`, the real binary against the fake Azure (tests/support/azure.rs
//! and its import, azure/vault_import.rs): a key is imported with its release policy, then released through
//! the product's key release code (the rig's fake attester, MAA and vault) under that policy, and the
//! released disk key equals the one `--disk-key-out` wrote.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod support;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use encfs_init::manifest::VaultKind;
use rsa::pkcs8::EncodePrivateKey;
use sha2::{Digest, Sha256};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::rig::{Rig, POLICY};

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn key_cmd(args: &[&str]) -> Out {
    key_cmd_env(args, &[])
}

/// `encfs-init key ARGS` with the `AZURE_*` environment given in `env` only.
fn key_cmd_env(args: &[&str], env: &[(&str, &str)]) -> Out {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_encfs-init"));
    cmd.arg("key").args(args).env_remove("RUST_LOG");
    for v in [
        "AZURE_CLIENT_ID",
        "AZURE_TENANT_ID",
        "AZURE_FEDERATED_TOKEN_FILE",
        "AZURE_AUTHORITY_HOST",
    ] {
        cmd.env_remove(v);
    }
    let o = cmd.envs(env.iter().copied()).output().unwrap();
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

fn host_data() -> String {
    encfs_init::hex::encode(&Sha256::digest(POLICY))
}

/// A TOML config for the rig's fake: vault and MAA on its https server, IMDS on its http one.
fn config(rig: &Rig, name: &str, body: &str) -> PathBuf {
    let p = rig.dir.join(format!("{name}.toml"));
    let text = format!(
        "authority = \"{}\"\nvault = \"{}\"\n{body}\n[network]\nca_bundle = \"{}\"\n[endpoints]\nimds = \"{}\"\n",
        rig.az.https.url(),
        rig.az.https.url(),
        rig.dir.join("ca.pem").display(),
        rig.az.http.url()
    );
    std::fs::write(&p, text).unwrap();
    p
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Neither stdout nor stderr holds the key, in hex or base64url.
fn assert_not_shown(out: &Out, key: &[u8]) {
    for form in [encfs_init::hex::encode(key), B64URL.encode(key)] {
        assert!(
            !out.stdout.contains(&form) && !out.stderr.contains(&form),
            "the key appears in the output:\n{}\n{}",
            out.stdout,
            out.stderr
        );
    }
}

#[test]
fn an_oct_key_from_a_hex_file_is_imported_and_released_under_the_default_policy() {
    let rig = Rig::new("ki-oct");
    let key: Vec<u8> = (0..32u8).map(|i| i.wrapping_mul(29) ^ 0xa5).collect();
    let key_file = rig.dir.join("key.hex");
    std::fs::write(&key_file, format!("{}\n", encfs_init::hex::encode(&key))).unwrap();
    let cfg = config(
        &rig,
        "oct",
        &format!(
            "kid = \"disk-oct\"\nkty = \"oct-HSM\"\npolicy_digest = \"{}\"",
            host_data()
        ),
    );
    let disk = rig.dir.join("disk.key");
    let out = key_cmd(&[
        "import",
        "--config",
        s(&cfg),
        "--key-file",
        s(&key_file),
        "--imds",
        "--disk-key-out",
        s(&disk),
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let version = support::azure::key_version("disk-oct");
    assert!(
        out.stdout.contains(&format!(
            "imported: {}/keys/disk-oct/{version}",
            rig.az.https.url()
        )),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("\"x-ms-sevsnpvm-vmpl\",\"equals\":0"));
    assert_not_shown(&out, &key);
    assert_eq!(std::fs::read(&disk).unwrap(), key);
    assert_eq!(
        std::fs::metadata(&disk).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // The IMDS token was asked for the vault's resource.
    assert!(rig.az.http.hits("/metadata/identity") >= 1);
    let released = rig
        .release(&rig.plan("disk-oct", VaultKind::KeyVault))
        .unwrap();
    assert_eq!(released.expose(), &key[..]);
}

#[test]
fn workload_identity_gives_the_vault_token_and_without_its_environment_one_line_says_what_is_missing(
) {
    let rig = Rig::new("ki-workload");
    let cfg = config(
        &rig,
        "wi",
        &format!(
            "kid = \"disk-wi\"\nkty = \"oct-HSM\"\npolicy_digest = \"{}\"",
            host_data()
        ),
    );
    let token_file = rig.dir.join("federated-token");
    std::fs::write(&token_file, "federated-token").unwrap();
    let disk = rig.dir.join("disk-wi.key");
    let authority = rig.az.https.url();
    let env = [
        ("AZURE_CLIENT_ID", support::azure::WORKLOAD_CLIENT_ID),
        ("AZURE_TENANT_ID", "tenant-1"),
        ("AZURE_FEDERATED_TOKEN_FILE", s(&token_file)),
        ("AZURE_AUTHORITY_HOST", authority.as_str()),
    ];
    let args = [
        "import",
        "--config",
        s(&cfg),
        "--workload-identity",
        "--disk-key-out",
        s(&disk),
    ];
    let out = key_cmd_env(&args, &env);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("imported: "), "{}", out.stdout);
    assert!(!out.stdout.contains("federated-token") && !out.stderr.contains("federated-token"));
    // The token came from the login endpoint of the tenant, not from IMDS.
    assert!(rig.az.https.hits("/tenant-1/oauth2/v2.0/token") >= 1);
    assert_eq!(rig.az.http.hits("/metadata/identity"), 0);
    let released = rig
        .release(&rig.plan("disk-wi", VaultKind::KeyVault))
        .unwrap();
    assert_eq!(released.expose(), &std::fs::read(&disk).unwrap()[..]);

    // Another assertion: the login refuses it, one line naming the step.
    std::fs::write(&token_file, "someone-else").unwrap();
    let out = key_cmd_env(&args[..4], &env);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("vault token: workload identity token: HTTP 401")
            && out
                .stderr
                .contains("fix: Entra ID refused the federated token"),
        "{}",
        out.stderr
    );

    // No workload identity environment: a usage error that names the variables.
    let out = key_cmd_env(&args[..4], &env[..1]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("--workload-identity: AZURE_TENANT_ID, AZURE_FEDERATED_TOKEN_FILE not set")
            && !out.stderr.contains("AZURE_CLIENT_ID")
            && out.stderr.contains("fix: "),
        "{}",
        out.stderr
    );
    // Two token sources at once.
    let out = key_cmd_env(
        &[
            "import",
            "--config",
            s(&cfg),
            "--workload-identity",
            "--imds",
        ],
        &env,
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("keep one"), "{}", out.stderr);
}

#[test]
fn a_key_imported_for_another_host_data_is_refused_on_release() {
    let rig = Rig::new("ki-denied");
    let cfg = config(
        &rig,
        "denied",
        &format!("kid = \"denied\"\npolicy_digest = \"{}\"", "00".repeat(32)),
    );
    let out = key_cmd(&["import", "--config", s(&cfg), "--imds"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let e = rig
        .release(&rig.plan("denied", VaultKind::KeyVault))
        .unwrap_err();
    let e = encfs_init::errors::chain(&e);
    assert!(e.contains("HTTP 403"), "{e}");
    assert!(e.contains("x-ms-sevsnpvm-hostdata not satisfied"), "{e}");
}

#[test]
fn a_policy_for_another_authority_is_refused_on_release() {
    let rig = Rig::new("ki-authority");
    let claims = format!(
        "claims = [[{{ claim = \"x-ms-sevsnpvm-hostdata\", equals = \"{}\" }}]]",
        host_data()
    );
    let cfg = rig.dir.join("other.toml");
    std::fs::write(
        &cfg,
        format!(
            "kid = \"elsewhere\"\nauthority = \"maa.example\"\nvault = \"{}\"\n{claims}\n[network]\nca_bundle = \"{}\"\n[endpoints]\nimds = \"{}\"\n",
            rig.az.https.url(),
            rig.dir.join("ca.pem").display(),
            rig.az.http.url()
        ),
    )
    .unwrap();
    let out = key_cmd(&["import", "--config", s(&cfg), "--imds"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let e = rig
        .release(&rig.plan("elsewhere", VaultKind::KeyVault))
        .unwrap_err();
    assert!(encfs_init::errors::chain(&e).contains("HTTP 403"), "{e}");
}

#[test]
fn an_rsa_key_from_pem_is_imported_and_the_boot_derives_the_written_disk_key() {
    let rig = Rig::new("ki-rsa-pem");
    let k = support::pki::rsa_key(3);
    let pem = rig.dir.join("rsa.pem");
    std::fs::write(
        &pem,
        k.to_pkcs8_pem(rsa::pkcs8::LineEnding::LF)
            .unwrap()
            .as_bytes(),
    )
    .unwrap();
    let cfg = config(
        &rig,
        "rsa",
        &format!(
            "kid = \"disk-rsa\"\nkty = \"RSA-HSM\"\npolicy_digest = \"{}\"\n[key_derivation]\nsalt = \"0a0b0c\"\nlabel = \"Model Key\"",
            host_data()
        ),
    );
    let disk = rig.dir.join("rsa-disk.key");
    let out = key_cmd(&[
        "import",
        "--config",
        s(&cfg),
        "--rsa-key",
        s(&pem),
        "--imds",
        "--disk-key-out",
        s(&disk),
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .contains("salt = \"0a0b0c\"\nlabel = \"Model Key\""),
        "{}",
        out.stdout
    );
    let expect = encfs_init::keyrelease::unwrap::rsa_hkdf(&k, &[10, 11, 12], "Model Key").unwrap();
    assert_eq!(std::fs::read(&disk).unwrap(), expect.expose());
    assert_not_shown(&out, expect.expose());
    let mut plan = rig.plan("disk-rsa", VaultKind::KeyVault);
    plan.salt = vec![10, 11, 12];
    plan.label = "Model Key".into();
    assert_eq!(rig.release(&plan).unwrap().expose(), expect.expose());
}

#[test]
fn a_generated_rsa_key_with_a_random_salt_prints_the_salt_and_keeps_its_files_private() {
    let rig = Rig::new("ki-rsa-gen");
    let cfg = config(
        &rig,
        "gen",
        &format!(
            "kid = \"gen\"\nkty = \"RSA-HSM\"\npolicy_digest = \"{}\"",
            host_data()
        ),
    );
    let (disk, private) = (rig.dir.join("gen-disk.key"), rig.dir.join("gen.pem"));
    let out = key_cmd(&[
        "import",
        "--config",
        s(&cfg),
        "--imds",
        "--random-salt",
        "--disk-key-out",
        s(&disk),
        "--private-key-out",
        s(&private),
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    for f in [&disk, &private] {
        assert_eq!(
            std::fs::metadata(f).unwrap().permissions().mode() & 0o777,
            0o600,
            "{}",
            f.display()
        );
    }
    // The salt line to paste into [filesystem.key_derivation].
    let salt_hex = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("salt = \""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("a salt line");
    let salt = encfs_init::hex::decode(salt_hex).unwrap();
    assert_eq!(salt.len(), 32);
    let pem = std::fs::read_to_string(&private).unwrap();
    assert!(!out.stdout.contains(pem.lines().nth(1).unwrap()));
    let disk_key = std::fs::read(&disk).unwrap();
    assert_not_shown(&out, &disk_key);
    let mut plan = rig.plan("gen", VaultKind::KeyVault);
    plan.salt = salt;
    plan.label = encfs_init::keyrelease::unwrap::DEFAULT_LABEL.into();
    assert_eq!(rig.release(&plan).unwrap().expose(), &disk_key[..]);

    // Never over an existing file: refused before anything is imported, the file unchanged.
    let puts = rig.az.https.hits("/keys/gen");
    let out = key_cmd(&[
        "import",
        "--config",
        s(&cfg),
        "--imds",
        "--private-key-out",
        s(&private),
    ]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("exists; fix: remove it"),
        "{}",
        out.stderr
    );
    assert_eq!(std::fs::read_to_string(&private).unwrap(), pem);
    assert_eq!(rig.az.https.hits("/keys/gen"), puts, "nothing imported");
    // A symlink in the way is not followed either.
    let link = rig.dir.join("link.pem");
    std::os::unix::fs::symlink(rig.dir.join("target.pem"), &link).unwrap();
    let out = key_cmd(&[
        "import",
        "--config",
        s(&cfg),
        "--imds",
        "--private-key-out",
        s(&link),
    ]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(!rig.dir.join("target.pem").exists());
}

#[test]
fn key_policy_prints_the_exact_default_policy_and_its_data() {
    let rig = Rig::new("ki-policy");
    let cce = rig.dir.join("policy.b64");
    std::fs::write(
        &cce,
        base64::engine::general_purpose::STANDARD.encode(POLICY),
    )
    .unwrap();
    let cfg = rig.dir.join("policy.toml");
    std::fs::write(
        &cfg,
        format!(
            "kid = \"k\"\nauthority = \"sharedeus.eus.attest.azure.net\"\nvault = \"kv.vault.azure.net\"\ncce_policy_file = \"{}\"\n",
            cce.display()
        ),
    )
    .unwrap();
    let out = key_cmd(&["policy", "--config", s(&cfg)]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let want = format!(
        r#"{{"version":"1.0.0","anyOf":[{{"authority":"https://sharedeus.eus.attest.azure.net","allOf":[{{"claim":"x-ms-sevsnpvm-hostdata","equals":"{}"}},{{"claim":"x-ms-compliance-status","equals":"azure-compliant-uvm"}},{{"claim":"x-ms-sevsnpvm-is-debuggable","equals":false}},{{"claim":"x-ms-sevsnpvm-vmpl","equals":0}}]}}]}}"#,
        host_data()
    );
    assert_eq!(
        out.stdout,
        format!("{want}\ndata: {}\n", B64URL.encode(&want))
    );
}

#[test]
fn upstreams_json_config_is_accepted_as_is() {
    let rig = Rig::new("ki-upstream");
    rig.az
        .state
        .lock()
        .unwrap()
        .tokens
        .insert("static-token".into(), "https://vault.azure.net".into());
    let host = rig
        .az
        .https
        .url()
        .trim_start_matches("https://")
        .to_string();
    let json = serde_json::json!({
        "key": {"kid": "upstream", "kty": "oct-HSM", "key_ops": ["encrypt", "decrypt"],
                "authority": {"endpoint": host}, "akv": {"endpoint": host,
                "api_version": "api-version=7.4", "bearer_token": "static-token"}},
        "claims": [[{"claim": "x-ms-sevsnpvm-hostdata", "equals": host_data()},
                    {"claim": "x-ms-sevsnpvm-is-debuggable", "equals": false}]],
        "identity": {"client_id": ""}
    });
    let cfg = rig.dir.join("importkey.json");
    std::fs::write(&cfg, json.to_string()).unwrap();
    let disk = rig.dir.join("up.key");
    let ca = rig.dir.join("ca.pem");
    let out = key_cmd(&[
        "import",
        "--config",
        s(&cfg),
        "--ca-bundle",
        s(&ca),
        "--disk-key-out",
        s(&disk),
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(rig.az.http.hits("/metadata"), 0, "the config's token");
    let key = std::fs::read(&disk).unwrap();
    assert_not_shown(&out, &key);
    let released = rig
        .release(&rig.plan("upstream", VaultKind::KeyVault))
        .unwrap();
    assert_eq!(released.expose(), &key[..]);
}

#[test]
fn configs_that_cannot_work_are_refused_with_their_fix() {
    let dir = std::env::temp_dir().join(format!("ki-refused-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let digest = format!("policy_digest = \"{}\"", host_data());
    let cases: &[(&str, String, &str)] = &[
        (
            "bad-kid",
            format!("kid = \"disk/1\"\nauthority = \"maa.example\"\nvault = \"kv.example\"\n{digest}"),
            "kid: \"disk/1\" is not a key name; fix: use 1 to 127 letters, digits and dashes",
        ),
        (
            "no-authority",
            format!("kid = \"k\"\nvault = \"kv.example\"\n{digest}"),
            "authority: missing; fix: set it to your attestation (MAA) endpoint",
        ),
        (
            "bad-hex",
            "kid = \"k\"\nauthority = \"maa.example\"\nvault = \"kv.example\"\npolicy_digest = \"xyz\"".into(),
            "policy_digest: \"xyz\" is not 64 hex digits",
        ),
        (
            "oct-salt",
            format!("kid = \"k\"\nauthority = \"maa.example\"\nvault = \"kv.example\"\n{digest}\n[key_derivation]\nsalt = \"00\""),
            "key_derivation: a salt or label is set for an oct-HSM key",
        ),
        (
            "bad-salt",
            format!("kid = \"k\"\nkty = \"RSA-HSM\"\nauthority = \"maa.example\"\nvault = \"kv.example\"\n{digest}\n[key_derivation]\nsalt = \"0g\""),
            "key_derivation.salt: \"0g\" is not hex",
        ),
        (
            "no-policy",
            "kid = \"k\"\nauthority = \"maa.example\"\nvault = \"kv.example\"".into(),
            "no release policy: neither claims nor a policy digest",
        ),
        (
            "http-vault",
            format!("kid = \"k\"\nauthority = \"maa.example\"\nvault = \"http://kv.example\"\n{digest}"),
            "vault: \"http://kv.example\" uses plain http; fix: use https://",
        ),
        (
            "unknown-key",
            format!("kid = \"k\"\nauthority = \"maa.example\"\nvault = \"kv.example\"\n{digest}\nsalt = \"00\""),
            "unknown-key.toml:5:1: not a key import config: unknown field `salt`, expected one of",
        ),
        (
            "ec",
            format!("kid = \"k\"\nkty = \"EC-HSM\"\nauthority = \"maa.example\"\nvault = \"kv.example\"\n{digest}"),
            "kty: key type \"EC-HSM\" cannot be imported as a disk key",
        ),
    ];
    for (name, text, want) in cases {
        let p = dir.join(format!("{name}.toml"));
        std::fs::write(&p, text).unwrap();
        let out = key_cmd(&["policy", "--config", s(&p)]);
        assert_eq!(out.code, 2, "{name}: {}", out.stderr);
        assert!(out.stderr.contains(want), "{name}: {}", out.stderr);
        assert_eq!(
            out.stderr.lines().count(),
            1,
            "{name}: one line: {}",
            out.stderr
        );
    }
    // The salt rule on the command line: a random salt only for RSA-HSM, and not beside a given one.
    let p = dir.join("oct.toml");
    std::fs::write(
        &p,
        format!("kid = \"k\"\nauthority = \"maa.example\"\nvault = \"kv.example\"\nbearer_token = \"t\"\n{digest}"),
    )
    .unwrap();
    let out = key_cmd(&["import", "--config", s(&p), "--random-salt"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("--random-salt applies to RSA-HSM keys only"),
        "{}",
        out.stderr
    );
    // A key in argv is refused (usage).
    let out = key_cmd(&["import", "--config", s(&p), "--key-hex", "00"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("readable by every process"),
        "{}",
        out.stderr
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_rsa_key_without_a_salt_derives_with_the_empty_salt_the_boot_uses() {
    let rig = Rig::new("ki-rsa-nosalt");
    let k = support::pki::rsa_key(2);
    let pem = rig.dir.join("rsa2.pem");
    std::fs::write(
        &pem,
        k.to_pkcs8_pem(rsa::pkcs8::LineEnding::LF)
            .unwrap()
            .as_bytes(),
    )
    .unwrap();
    let cfg = config(
        &rig,
        "nosalt",
        &format!(
            "kid = \"nosalt\"\nkty = \"RSA-HSM\"\npolicy_digest = \"{}\"",
            host_data()
        ),
    );
    let disk = rig.dir.join("nosalt.key");
    let out = key_cmd(&[
        "import",
        "--config",
        s(&cfg),
        "--rsa-key",
        s(&pem),
        "--imds",
        "--disk-key-out",
        s(&disk),
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("salt: empty"), "{}", out.stdout);
    assert!(!out.stdout.contains("salt = "), "{}", out.stdout);
    // The manifest's defaults: no salt, the default label (upstream issue 233: importkey's random salt).
    let released = rig
        .release(&rig.plan("nosalt", VaultKind::KeyVault))
        .unwrap();
    assert_eq!(std::fs::read(&disk).unwrap(), released.expose());
}

#[test]
fn the_fake_vault_refuses_imports_key_vault_would_refuse() {
    use encfs_init::http::{Exchange, Request};
    use rsa::traits::{PrivateKeyParts, PublicKeyParts};
    let rig = Rig::new("ki-fake-refuses");
    rig.az
        .state
        .lock()
        .unwrap()
        .tokens
        .insert("t".into(), "https://vault.azure.net".into());
    let client = encfs_init::http::Client::new(&rig.net).unwrap();
    let url = format!("{}/keys/x?api-version=7.4", rig.az.https.url());
    let policy = format!(
        r#"{{"version":"1.0.0","anyOf":[{{"authority":"{}","allOf":[{{"claim":"c","equals":true}}]}}]}}"#,
        rig.az.https.url()
    );
    let oct = format!(r#"{{"kty":"oct-HSM","k":"{}"}}"#, B64URL.encode([1u8; 32]));
    let k = support::pki::rsa_key(2);
    let jwk_rsa = |n: &[u8]| {
        let b = |x: &rsa::BoxedUint| B64URL.encode(x.to_be_bytes_trimmed_vartime());
        format!(
            r#"{{"kty":"RSA-HSM","n":"{}","e":"{}","d":"{}","p":"{}","q":"{}","dp":"{}","dq":"{}","qi":"{}"}}"#,
            B64URL.encode(n),
            B64URL.encode(k.e_bytes()),
            b(k.d()),
            b(&k.primes()[0]),
            b(&k.primes()[1]),
            b(k.dp().unwrap()),
            b(k.dq().unwrap()),
            b(&k.qinv().unwrap().retrieve()),
        )
    };
    let body = |jwk: &str, hsm: bool, data: &str| {
        format!(
            r#"{{"key":{jwk},"hsm":{hsm},"attributes":{{"exportable":true}},"release_policy":{{"contentType":"application/json; charset=utf-8","data":"{data}","immutable":false}}}}"#
        )
    };
    let put = |b: String| {
        let req = Request::new("PUT", &url)
            .header("Authorization", "Bearer t")
            .body(b.as_bytes());
        client.exchange(&req).map(|_| ()).map_err(|e| e.to_string())
    };
    let good = B64URL.encode(&policy);
    // The same policy base64url with padding (a trailing space makes its length need it).
    let padded = (0..3)
        .map(|i| {
            base64::engine::general_purpose::URL_SAFE.encode(format!("{policy}{}", " ".repeat(i)))
        })
        .find(|p| p.ends_with('='))
        .unwrap();
    // Standard base64 of a policy whose bytes give a '/' or '+' there.
    let standard = (0..3)
        .map(|i| {
            let p = policy.replace("\"c\"", &format!("\"c???{}\"", "?".repeat(i)));
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(p)
        })
        .find(|p| p.contains(['+', '/']))
        .unwrap();
    let mut n_bad = k.n_bytes().to_vec();
    n_bad[10] ^= 1;
    assert_eq!(put(body(&oct, true, &good)), Ok(()));
    assert_eq!(put(body(&jwk_rsa(&k.n_bytes()), true, &good)), Ok(()));
    let refused = [
        (body(&oct, false, &good), "hsm must be true"),
        (body(&oct, true, &padded), "not base64url without padding"),
        (body(&oct, true, &standard), "not base64url without padding"),
        (
            body(&oct, true, &B64URL.encode(policy.replace("1.0.0", "2"))),
            "version",
        ),
        (body(&jwk_rsa(&n_bad), true, &good), "p*q is not n"),
        (
            body(
                &format!(r#"{{"kty":"oct-HSM","k":"{}"}}"#, B64URL.encode([1u8; 20])),
                true,
                &good,
            ),
            "not an AES key size",
        ),
    ];
    for (b, want) in refused {
        let e = put(b).unwrap_err();
        assert!(e.contains("HTTP 400") && e.contains(want), "{want}: {e}");
    }
}

#[test]
fn the_example_config_is_valid() {
    let out = key_cmd(&[
        "policy",
        "--config",
        concat!(env!("CARGO_MANIFEST_DIR"), "/config/key-import.toml"),
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out
        .stdout
        .starts_with(r#"{"version":"1.0.0","anyOf":[{"authority":"https://sharedeus.eus.attest.azure.net","allOf":[{"claim":"x-ms-sevsnpvm-hostdata""#));
}

#[test]
fn a_token_for_another_resource_is_one_error_line_with_the_fix() {
    let rig = Rig::new("ki-401");
    // The fake managed HSM wants a token for https://managedhsm.azure.net; this vault's name does not say
    // managedhsm, so the IMDS token is Key Vault's.
    let cfg = rig.dir.join("mhsm.toml");
    std::fs::write(
        &cfg,
        format!(
            "kid = \"k\"\nauthority = \"{0}\"\nvault = \"{0}/mhsm\"\npolicy_digest = \"{1}\"\n[network]\nca_bundle = \"{2}\"\n[endpoints]\nimds = \"{3}\"\n",
            rig.az.https.url(),
            host_data(),
            rig.dir.join("ca.pem").display(),
            rig.az.http.url()
        ),
    )
    .unwrap();
    let disk = rig.dir.join("401.key");
    let out = key_cmd(&[
        "import",
        "--config",
        s(&cfg),
        "--imds",
        "--disk-key-out",
        s(&disk),
    ]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(
        out.stderr
            .starts_with("encfs-init key import: key import: HTTP 401: ")
            && out.stderr.contains("AKV10022")
            && out
                .stderr
                .contains("; fix: the bearer token is missing, expired or for another resource"),
        "{}",
        out.stderr
    );
    assert!(
        !disk.exists(),
        "the disk key file is removed when the import fails"
    );
}
