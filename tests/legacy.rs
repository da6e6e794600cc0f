//! Upstream's `EncfsSideCarArgs`, shaped like its README, its examples/encfs/encfs-sidecar-args.json and its
//! CI test, decode to the expected plan (through the library, and through the binary's `check`).

mod common;

use common::{b64, run, scratch};
use encfs_init::manifest::{self, Access, CertCacheKind, KeyPlan, Origin, VaultKind};
use std::path::Path;

/// Like upstream's examples/encfs/encfs-sidecar-args.json: one private read-write filesystem, an RSA key with
/// key derivation, azure_info with certcache and identity.
const EXAMPLE: &str = r#"{
    "azure_info": {
        "certcache": {
            "endpoint_type": "AzCache",
            "endpoint": "americas.acccache.azure.net",
            "tee_type": "SevSnpVM",
            "api_version": "api-version=2020-10-15-preview",
            "client_id": "clientId=ConfidentialACI"
        },
        "identity": { "client_id": "0f2a4c3e-1111-2222-3333-444455556666" }
    },
    "azure_filesystems": [
        {
            "mount_point": "/mnt/remote/share",
            "azure_url": "https://myaccount.blob.core.windows.net/private-container/encfs.img",
            "azure_url_private": true,
            "read_write": true,
            "key": {
                "kid": "EncfsTestKey",
                "kty": "RSA-HSM",
                "authority": { "endpoint": "sharedneu.neu.attest.azure.net" },
                "akv": { "endpoint": "myhsm.managedhsm.azure.net" }
            },
            "key_derivation": { "salt": "92a631487d8b8e", "label": "Model Encryption Key" }
        }
    ]
}"#;

/// Like upstream's CI test: a page blob read-write and a block blob read-only, oct-HSM, no azure_info, and the
/// api_version/tee_type fields upstream overrides.
const CI: &str = r#"{"azure_filesystems":[
 {"mount_point":"/mnt/remote/page","azure_url":"https://acct.blob.core.windows.net/c/page.img","azure_url_private":true,"read_write":true,
  "key":{"kid":"citestkey","kty":"oct-HSM","authority":{"endpoint":"sharedeus.eus.attest.azure.net","tee_type":"SevSnpVM","api_version":"api-version=2020-10-01"},
         "akv":{"endpoint":"cimhsm.managedhsm.azure.net","api_version":"api-version=7.4","bearer_token":"eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.SECRET-BEARER.sig"}}},
 {"mount_point":"/mnt/remote/block","azure_url":"https://acct.blob.core.windows.net/c/block.img?sv=2022-11-02&sp=r&sig=SECRETSASSIG%3D","azure_url_private":false,
  "key":{"kid":"citestkey","kty":"oct-HSM","authority":{"endpoint":"sharedeus.eus.attest.azure.net"},"akv":{"endpoint":"cikv.vault.azure.net"}}}
]}"#;

#[test]
fn upstream_example_decodes_to_the_expected_plan() {
    let l = manifest::load_legacy("EncfsSideCarArgs", &b64(EXAMPLE.as_bytes())).unwrap();
    let p = &l.plan;
    assert_eq!(p.origin, Origin::Legacy("EncfsSideCarArgs".into()));
    assert!(!p.test_mode);
    assert_eq!(
        p.readiness_file,
        Path::new("/result"),
        "upstream's result file"
    );
    assert_eq!(
        p.identity.client_id.as_deref(),
        Some("0f2a4c3e-1111-2222-3333-444455556666")
    );
    let cc = p.certcache.as_ref().unwrap();
    assert_eq!(cc.kind, CertCacheKind::AzCache);
    assert_eq!(cc.endpoint.0, "https://americas.acccache.azure.net");
    assert_eq!(cc.api_version.as_deref(), Some("2020-10-15-preview"));
    assert_eq!(cc.client_id.as_deref(), Some("ConfidentialACI"));
    assert_eq!(p.filesystems.len(), 1);
    let f = &p.filesystems[0];
    assert_eq!(f.mount_point, Path::new("/mnt/remote/share"));
    assert_eq!(
        f.url.url,
        "https://myaccount.blob.core.windows.net/private-container/encfs.img"
    );
    assert!(matches!(f.access, Access::Private));
    assert!(f.read_write);
    let KeyPlan::Release(r) = &f.key else {
        panic!("expected a key release")
    };
    assert_eq!(r.kid, "EncfsTestKey");
    assert_eq!(r.kty.as_deref(), Some("RSA-HSM"));
    assert_eq!(r.authority.0, "https://sharedneu.neu.attest.azure.net");
    assert_eq!(r.vault.0, "https://myhsm.managedhsm.azure.net");
    assert_eq!(r.vault_kind, VaultKind::ManagedHsm);
    assert_eq!(r.salt, vec![0x92, 0xa6, 0x31, 0x48, 0x7d, 0x8b, 0x8e]);
    assert_eq!(r.label, "Model Encryption Key");
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
}

#[test]
fn upstream_ci_shape_decodes_with_sas_token_and_ignored_fields() {
    // Upstream's CI builds the value with Python's urlsafe_b64encode: accept that alphabet too.
    use base64::Engine;
    let value = base64::engine::general_purpose::URL_SAFE.encode(CI);
    let l = manifest::load_legacy("EncfsSideCarArgs", &value).unwrap();
    let p = &l.plan;
    assert_eq!(p.filesystems.len(), 2);
    let (page, block) = (&p.filesystems[0], &p.filesystems[1]);
    assert!(page.read_write && !block.read_write);
    let KeyPlan::Release(r) = &page.key else {
        panic!()
    };
    assert_eq!(
        r.bearer_token.as_ref().map(|t| t.expose()),
        Some("eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.SECRET-BEARER.sig")
    );
    assert_eq!(
        r.label, "Symmetric Encryption Key",
        "upstream's default label"
    );
    assert!(r.salt.is_empty());
    let KeyPlan::Release(r2) = &block.key else {
        panic!()
    };
    assert_eq!(r2.vault_kind, VaultKind::KeyVault);
    assert_eq!(
        block.url.url, "https://acct.blob.core.windows.net/c/block.img",
        "the SAS is not part of the URL"
    );
    match &block.access {
        Access::Sas(s) => assert_eq!(s.expose(), "sv=2022-11-02&sp=r&sig=SECRETSASSIG%3D"),
        other => panic!("expected a SAS, got {other:?}"),
    }
    // Upstream overrides these: they are accepted and reported as ignored.
    assert!(
        l.warnings
            .iter()
            .any(|w| w.contains("authority.tee_type") && w.contains("ignored")),
        "{:?}",
        l.warnings
    );
    assert!(
        l.warnings
            .iter()
            .any(|w| w.contains("akv.api_version") && w.contains("ignored")),
        "{:?}",
        l.warnings
    );
}

#[test]
fn legacy_flag_env_and_raw_json_agree() {
    let dir = scratch("legacy");
    let file = dir.join("args.b64");
    // Wrapped like `base64` without -w0 would write it.
    let wrapped: String = b64(EXAMPLE.as_bytes())
        .as_bytes()
        .chunks(76)
        .map(|c| format!("{}\n", std::str::from_utf8(c).unwrap()))
        .collect();
    std::fs::write(&file, &wrapped).unwrap();
    let json_file = dir.join("args.json");
    std::fs::write(&json_file, EXAMPLE).unwrap();

    let from_flag = run(&["check", "--legacy", file.to_str().unwrap()], &[], "");
    let from_env = run(&["check"], &[("EncfsSideCarArgs", wrapped.as_str())], "");
    let from_json = run(&["check", "--legacy", json_file.to_str().unwrap()], &[], "");
    let from_stdin = run(&["check", "--legacy", "-"], &[], EXAMPLE);
    for o in [&from_flag, &from_env, &from_json, &from_stdin] {
        assert_eq!(o.code, 0, "{}", o.stderr);
        assert!(
            o.stdout.contains("/mnt/remote/share (read-write)"),
            "{}",
            o.stdout
        );
        assert!(o.stdout.contains("release \"EncfsTestKey\" (RSA-HSM) from https://myhsm.managedhsm.azure.net (managed HSM)"), "{}", o.stdout);
    }
    // The plan printed is the same whatever the way in (only the source name differs).
    let body = |s: &str| s.lines().skip(1).collect::<Vec<_>>().join("\n");
    assert_eq!(body(&from_flag.stdout), body(&from_env.stdout));
    assert_eq!(body(&from_flag.stdout), body(&from_json.stdout));
}

#[test]
fn toml_manifest_wins_over_the_legacy_variable() {
    let out = run(
        &[
            "check",
            "--manifest",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config/example.toml"),
        ],
        &[("EncfsSideCarArgs", "garbage!")],
        "",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("(TOML)"));
    // ENCFS_INIT_MANIFEST is used when no flag is given.
    let out = run(
        &["check"],
        &[(
            "ENCFS_INIT_MANIFEST",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config/multi.toml"),
        )],
        "",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("multi.toml (TOML)"), "{}", out.stdout);
}

#[test]
fn unknown_legacy_keys_are_warned_not_fatal() {
    let json = EXAMPLE.replace(
        "\"read_write\": true,",
        "\"read_write\": true, \"readwrite\": false, \"Future_Field\": 1,",
    );
    let out = run(
        &["check"],
        &[("EncfsSideCarArgs", b64(json.as_bytes()).as_str())],
        "",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains(
            "azure_filesystems[0].readwrite: unknown key ignored (did you mean \"read_write\"?)"
        ),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("azure_filesystems[0].Future_Field: unknown key ignored"),
        "{}",
        out.stderr
    );
}
