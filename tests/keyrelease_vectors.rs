//! Unwrap, HKDF and JWK vectors from upstream (../shared/fixtures/upstream/vectors), and RFC 5649.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use base64::Engine;
use encfs_init::keyrelease::jwk::RuntimeKey;
use encfs_init::keyrelease::unwrap::{self, UnwrapError};
use rsa::pkcs1::DecodeRsaPrivateKey;

const FIX: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/fixtures/upstream/vectors"
);

fn unhex(s: &str) -> Vec<u8> {
    encfs_init::hex::decode(s).unwrap()
}

/// (the RSA key, the ciphertext, the expected key)
fn vector() -> (rsa::PrivateKey, Vec<u8>, Vec<u8>) {
    let text = std::fs::read_to_string(format!("{FIX}/rsa_aes_kw_vector.txt")).unwrap();
    let b64: String = text
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    let key = rsa::PrivateKey::from_pkcs1_der(&der).unwrap();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap()
            .trim()
            .to_string()
    };
    let ct = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(field("ciphertext_b64url:").trim_end_matches('='))
        .unwrap();
    (key, ct, unhex(&field("expected_hex:")))
}

#[test]
#[ignore = "needs ../shared/fixtures"]
fn rsa_aes_key_wrap_vector() {
    let (key, ct, expected) = vector();
    assert_eq!(ct.len(), 296);
    let rk = RuntimeKey::from_key(key);
    let pt = unwrap::unwrap("CKM_RSA_AES_KEY_WRAP", &ct, &rk).unwrap();
    assert_eq!(&pt[..], &expected[..]);
    let k = unwrap::disk_key("oct-HSM", &pt, &[], "").unwrap();
    assert_eq!(k.expose(), &expected[..]);
    // The wrong hash for the same ciphertext fails cleanly.
    assert_eq!(
        unwrap::unwrap("RSA_AES_KEY_WRAP_256", &ct, &rk).unwrap_err(),
        UnwrapError::Oaep
    );
    assert!(matches!(
        unwrap::unwrap("A256KW", &ct, &rk).unwrap_err(),
        UnwrapError::UnknownEnc(_)
    ));
    assert_eq!(
        unwrap::unwrap("CKM_RSA_AES_KEY_WRAP", &ct[..200], &rk).unwrap_err(),
        UnwrapError::Short(200)
    );
}

#[test]
#[ignore = "needs ../shared/fixtures"]
fn hkdf_vectors() {
    let (key, _, _) = vector();
    let salt = unhex("92a631483ca875aad7e2477da755d58cac3876b77d10bcdd7b33bfa11e7d8b8e");
    let k = unwrap::rsa_hkdf(&key, &salt, "Model Encryption Key").unwrap();
    assert_eq!(
        k.expose(),
        &unhex("9c3a3e7c503d025d64aaeddbb7c155862b75f54fa52859ce0e3d1721a9aa1dec")[..]
    );
    let expect = unhex("d44aea0db74566c3b1a7898dc7928f924670e5ea940e4f954ca39b13b416e83e");
    assert_eq!(
        unwrap::rsa_hkdf(&key, &[], "").unwrap().expose(),
        &expect[..]
    );
    assert_eq!(
        unwrap::rsa_hkdf(&key, &[0; 32], "Symmetric Encryption Key")
            .unwrap()
            .expose(),
        &expect[..]
    );
    // And through the PKCS#8 path of an RSA-HSM release.
    use rsa::pkcs8::EncodePrivateKey;
    let p8 = key.to_pkcs8_der().unwrap();
    assert_eq!(
        unwrap::disk_key("RSA-HSM", p8.as_bytes(), &[], "")
            .unwrap()
            .expose(),
        &expect[..]
    );
}

#[test]
#[ignore = "needs ../shared/fixtures"]
fn runtime_jwk_kid_is_the_rfc7638_thumbprint() {
    let (key, _, _) = vector();
    let rk = RuntimeKey::from_key(key);
    assert_eq!(rk.kid(), "Nvhfuq2cCIOAB8XR4Xi9Pr0NP_9CeMzWQGtW_HALz_w");
    let j = rk.runtime_json();
    assert!(j.starts_with(r#"{"keys":[{"e":"AQAB","key_ops":["encrypt"],"kid":"Nvhfuq2cCIOAB8XR4Xi9Pr0NP_9CeMzWQGtW_HALz_w","kty":"RSA","n":"v965SRmyp8zbG5eNFuDCmmiSeaHpujG2bC_keLSuzvDMLO1W"#), "{j}");
    let v: serde_json::Value = serde_json::from_str(&j).unwrap();
    assert_eq!(v["keys"][0]["kty"], "RSA");
}

#[test]
fn rfc5649_vectors() {
    let kek = unhex("5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8");
    let w20 = unhex("138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a");
    assert_eq!(
        &unwrap::kwp_unwrap(&kek, &w20).unwrap()[..],
        &unhex("c37b7e6492584340bed12207808941155068f738")[..]
    );
    let w7 = unhex("afbeb0f07dfbf5419200f2ccb50bb24f");
    assert_eq!(
        &unwrap::kwp_unwrap(&kek, &w7).unwrap()[..],
        &unhex("466f7250617369")[..]
    );
    let mut bad = kek.clone();
    bad[0] ^= 1;
    assert_eq!(
        unwrap::kwp_unwrap(&bad, &w20).unwrap_err(),
        UnwrapError::KeyWrap
    );
    assert_eq!(
        unwrap::kwp_unwrap(&kek[..10], &w20).unwrap_err(),
        UnwrapError::KekSize(10)
    );
}

#[test]
fn key_types() {
    assert_eq!(
        unwrap::disk_key("oct-HSM", &[1; 16], &[], "").unwrap_err(),
        UnwrapError::OctSize(16)
    );
    assert!(matches!(
        unwrap::disk_key("EC-HSM", &[1; 40], &[], "").unwrap_err(),
        UnwrapError::EcKey(_)
    ));
    assert!(matches!(
        unwrap::disk_key("foo", &[1; 32], &[], "").unwrap_err(),
        UnwrapError::UnknownKty(_)
    ));
    assert_eq!(
        unwrap::disk_key("RSA-HSM", &[1; 32], &[], "").unwrap_err(),
        UnwrapError::RsaKey
    );
    assert_eq!(
        unwrap::disk_key("oct", &[7; 32], &[], "").unwrap().expose(),
        &[7; 32]
    );
}
