//! End to end through the fake Azure: oct-HSM and RSA-HSM keys released through MAA + Key Vault and
//! through a managed HSM, with every wrap algorithm and token source.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod support;

use encfs_init::manifest::VaultKind;
use support::azure::VaultKey;
use support::rig::{hostdata_claim, Rig};

#[test]
fn oct_hsm_through_maa_and_key_vault() {
    let rig = Rig::new("oct-akv");
    let key = rig.release(&rig.plan("oct", VaultKind::KeyVault)).unwrap();
    assert_eq!(key.expose(), &[7; 32]);
    assert_eq!(rig.az.https.hits("/attest/SevSnpVM"), 1);
    assert_eq!(rig.az.http.hits("/metadata/identity"), 1);
}

#[test]
fn rsa_hsm_through_managed_hsm_with_salt() {
    use rsa::pkcs8::EncodePrivateKey;
    let mut rig = Rig::new("rsa-mhsm");
    rig.tokens = encfs_init::keyrelease::token::TokenCache::new(support::rig::imds_source(
        &rig.endpoints,
        VaultKind::ManagedHsm,
    ));
    let k = support::pki::rsa_key(2);
    rig.az.add_key(
        "rsa",
        VaultKey {
            kty: "RSA-HSM".into(),
            material: k.to_pkcs8_der().unwrap().as_bytes().to_vec(),
            policy: vec![hostdata_claim()],
        },
    );
    let mut plan = rig.plan("rsa", VaultKind::ManagedHsm);
    plan.salt = vec![1, 2, 3];
    plan.label = "Model Encryption Key".into();
    let key = rig.release(&plan).unwrap();
    let expect =
        encfs_init::keyrelease::unwrap::rsa_hkdf(&k, &[1, 2, 3], "Model Encryption Key").unwrap();
    assert_eq!(key.expose(), expect.expose());
    // The IMDS request asked for the managed HSM resource.
    let log = rig.az.http.log.lock().unwrap();
    assert!(
        log.iter().any(|r| r
            .query
            .contains("resource=https%3A%2F%2Fmanagedhsm.azure.net")),
        "{log:?}"
    );
}

#[test]
fn oct_hsm_through_managed_hsm_and_every_enc() {
    let mut rig = Rig::new("enc");
    rig.tokens = encfs_init::keyrelease::token::TokenCache::new(support::rig::imds_source(
        &rig.endpoints,
        VaultKind::ManagedHsm,
    ));
    for enc in [
        "CKM_RSA_AES_KEY_WRAP",
        "RSA_AES_KEY_WRAP_256",
        "RSA_AES_KEY_WRAP_384",
    ] {
        rig.az.set(|k| k.enc = enc.into());
        let key = rig
            .release(&rig.plan("oct", VaultKind::ManagedHsm))
            .unwrap();
        assert_eq!(key.expose(), &[7; 32], "{enc}");
    }
    // One IMDS token served all three.
    assert_eq!(rig.az.http.hits("/metadata/identity"), 1);
}

#[test]
fn static_bearer_token_skips_imds() {
    let mut rig = Rig::new("static");
    let tok = {
        let mut st = rig.az.state.lock().unwrap();
        st.tokens
            .insert("static-token".into(), "https://vault.azure.net".into());
        "static-token"
    };
    rig.tokens = encfs_init::keyrelease::token::TokenCache::new(support::rig::static_source(tok));
    assert_eq!(
        rig.release(&rig.plan("oct", VaultKind::KeyVault))
            .unwrap()
            .expose(),
        &[7; 32]
    );
    assert_eq!(rig.az.http.hits("/metadata"), 0);
}

#[test]
fn workload_identity_token() {
    use encfs_init::keyrelease::token::{TokenCache, TokenSource};
    let mut rig = Rig::new("wi");
    let file = rig.dir.join("token");
    std::fs::write(&file, "federated-token\n").unwrap();
    let env = |k: &str| match k {
        "AZURE_CLIENT_ID" => Some(support::azure::WORKLOAD_CLIENT_ID.to_string()),
        "AZURE_TENANT_ID" => Some("tenant".to_string()),
        "AZURE_FEDERATED_TOKEN_FILE" => Some(file.display().to_string()),
        _ => None,
    };
    let mut plan = encfs_init::manifest::empty_plan().unwrap();
    plan.endpoints = rig.endpoints.clone();
    let src = TokenSource::for_vault(None, VaultKind::KeyVault, &plan, &env).unwrap();
    assert!(matches!(src, TokenSource::Workload { .. }), "{src:?}");
    rig.tokens = TokenCache::new(src);
    assert_eq!(
        rig.release(&rig.plan("oct", VaultKind::KeyVault))
            .unwrap()
            .expose(),
        &[7; 32]
    );
    assert_eq!(rig.az.https.hits("/tenant/oauth2/v2.0/token"), 1);
}

#[test]
fn one_attestation_serves_several_releases() {
    let rig = Rig::new("shared");
    rig.az.add_key(
        "second",
        VaultKey {
            kty: "oct-HSM".into(),
            material: vec![9; 32],
            policy: vec![hostdata_claim()],
        },
    );
    let plans = [
        rig.plan("oct", VaultKind::KeyVault),
        rig.plan("second", VaultKind::KeyVault),
    ];
    let keys = rig.release_all(&plans).unwrap();
    assert_eq!(keys[0].expose(), &[7; 32]);
    assert_eq!(keys[1].expose(), &[9; 32]);
    assert_eq!(
        rig.az.https.hits("/attest/SevSnpVM"),
        1,
        "one attestation for both releases"
    );
    assert_eq!(rig.az.https.hits("/keys/"), 2, "two releases");
}

#[test]
fn a_private_blob_token_comes_from_imds_for_the_account_and_a_failure_names_every_cause() {
    use encfs_init::blob::BearerSource;
    use encfs_init::keyrelease::token::BlobToken;
    let rig = Rig::new("blob-token");
    let mut plan = encfs_init::manifest::empty_plan().unwrap();
    plan.endpoints = rig.endpoints.clone();
    plan.network = rig.net.clone();
    let blob = "https://acct.blob.core.windows.net/c/disk.img";
    let client = encfs_init::http::Client::new(&plan.network).unwrap();
    let tokens = BlobToken::for_blob(blob, &plan, client.clone()).unwrap();
    assert!(!tokens.token().unwrap().expose().is_empty());
    assert!(!tokens.token().unwrap().expose().is_empty());
    assert_eq!(rig.az.http.hits("/metadata/identity"), 1, "cached");
    {
        let log = rig.az.http.log.lock().unwrap();
        assert!(
            log.iter().any(|r| r
                .query
                .contains("resource=https%3A%2F%2Facct.blob.core.windows.net&")
                || r.query
                    .ends_with("resource=https%3A%2F%2Facct.blob.core.windows.net")),
            "{log:?}"
        );
    }
    // The identity endpoint failing: the blob's error carries the step and the HTTP answer.
    for _ in 0..=rig.net.retries {
        rig.az.http.fault(
            "/metadata",
            support::Fault {
                status: Some(400),
                ..support::Fault::default()
            },
        );
    }
    let e = BlobToken::for_blob(blob, &plan, client)
        .unwrap()
        .token()
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("blob token: IMDS token: HTTP 400"), "{e}");
    assert!(
        e.contains("; fix: check the managed identity client_id"),
        "{e}"
    );
}

/// `[attestation] maa_user_agent` (upstream SKR's `maaconfig.user_agent`) is what MAA sees as the
/// User-Agent, once, and only on MAA's request; without it MAA sees the client's own.
#[test]
fn maa_sees_the_configured_user_agent() {
    let ua_of = |rig: &Rig, path: &str| -> Vec<String> {
        rig.az
            .https
            .log
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path.starts_with(path))
            .flat_map(|r| {
                r.headers
                    .iter()
                    .filter(|(k, _)| k.eq_ignore_ascii_case("user-agent"))
                    .map(|(_, v)| v.clone())
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let rig = Rig::new("maa-ua");
    let transport = encfs_init::http::Client::new(&rig.net).unwrap();
    let mut ctx = rig.context(&transport);
    ctx.maa_user_agent = Some("ConfidentialSkrContainer client_id=test");
    let key =
        encfs_init::keyrelease::release_key(&ctx, &rig.plan("oct", VaultKind::KeyVault)).unwrap();
    assert_eq!(key.expose(), &[7; 32]);
    assert_eq!(
        ua_of(&rig, "/attest/SevSnpVM"),
        ["ConfidentialSkrContainer client_id=test"]
    );
    let vault = ua_of(&rig, "/keys/");
    assert!(
        vault.len() == 1 && vault[0].starts_with("encfs-init/"),
        "{vault:?}"
    );

    let rig = Rig::new("maa-ua-default");
    rig.release(&rig.plan("oct", VaultKind::KeyVault)).unwrap();
    let maa = ua_of(&rig, "/attest/SevSnpVM");
    assert!(
        maa.len() == 1 && maa[0].starts_with("encfs-init/"),
        "{maa:?}"
    );
}
