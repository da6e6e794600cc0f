//! Fuzz the key release's JWS and the key material behind it (`keyrelease::akv`, `keyrelease::unwrap`).
//!
//! There is no general JWT/JWK parser in the crate: the MAA JWT is passed to the vault unread, and `jwk`
//! only writes the runtime JWK set. What parses untrusted token bytes is the vault's answer, driven here.
//! The first byte picks the layer; the rest is its input:
//! - 0: a compact JWS for `akv::verify_jws`: three dot-separated base64url parts, header JSON with `alg`
//!   and `x5c` (standard base64 DER), the leaf parsed by webpki and its chain built to one compiled-in root
//!   (a fuzzed chain does not verify, so the signature and payload are reached through 1 and 2);
//! - 1: the JWS payload JSON for `akv::parse_payload` (`response.key.key.key_hsm`: base64url JSON holding
//!   the base64url `ciphertext`, `request.enc`);
//! - 2: an RFC 5649 wrapped key for `unwrap::kwp_unwrap` under a fixed AES-256 KEK, then `disk_key`;
//! - 3: released key plaintext for `unwrap::disk_key` (`oct` length rule; `RSA-HSM`: PKCS#8 DER parse, then
//!   HKDF of D); the second byte picks the kty;
//! - 4: released key plaintext for `export::jwk` and `export::pem` (the `[[secret]]` forms: RSA through the
//!   rsa crate, EC PKCS#8 → RFC 5915 read with der); the second byte picks the kty.
//!
//! RSA-OAEP (`unwrap::unwrap`) is not fuzzed: each call is a 2048-bit private-key operation.
#![no_main]

use encfs_init::keyrelease::akv::{parse_payload, verify_jws, JwsTrust};
use encfs_init::keyrelease::unwrap::{disk_key, kwp_unwrap};
use encfs_init::keyrelease::{export, ReleasedKey};
use encfs_init::secret::SecretBytes;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

fn trust() -> &'static JwsTrust {
    static T: OnceLock<JwsTrust> = OnceLock::new();
    T.get_or_init(|| JwsTrust {
        // One real root (not the ~150 web roots: building them per input would be most of the time).
        extra_roots: vec![webpki_root_certs::TLS_SERVER_ROOT_CERTS[0].to_vec()],
        web_roots: false,
    })
}

const KTYS: [&str; 6] = ["oct", "oct-HSM", "RSA", "RSA-HSM", "EC-HSM", ""];

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    // 2025-06-01: fixed, so that runs repeat.
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_748_736_000);
    match mode % 5 {
        0 => {
            if let Ok(s) = std::str::from_utf8(rest) {
                if let Ok(r) = verify_jws(s, "myhsm.managedhsm.azure.net", trust(), now) {
                    // A fuzzed chain must never verify.
                    panic!("a fuzzed JWS verified: {r:?}");
                }
            }
        }
        1 => {
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(rest) {
                if let Ok(r) = parse_payload(&v) {
                    let _ = format!("{r:?}");
                }
            }
        }
        2 => {
            if let Ok(pt) = kwp_unwrap(&[7u8; 32], rest) {
                assert!(pt.len() <= rest.len());
                let _ = disk_key("oct-HSM", &pt, b"salt", "label");
            }
        }
        3 => {
            let Some((&k, pt)) = rest.split_first() else {
                return;
            };
            let kty = KTYS[usize::from(k) % KTYS.len()];
            if let Ok(key) = disk_key(kty, pt, b"\x92\xa6\x31\x48", "Model Encryption Key") {
                assert_eq!(key.expose().len(), 32);
            }
        }
        _ => {
            let Some((&k, pt)) = rest.split_first() else {
                return;
            };
            let key = ReleasedKey {
                kty: KTYS[usize::from(k) % KTYS.len()].to_string(),
                key_ops: vec!["sign".into(), "a\"b".into()],
                enc: String::new(),
                plaintext: SecretBytes::new(pt.to_vec()),
            };
            if let Ok(j) = export::jwk(&key) {
                assert!(serde_json::from_slice::<serde_json::Value>(j.expose()).is_ok());
            }
            if let Ok(p) = export::pem(&key) {
                assert!(p.expose().starts_with(b"-----BEGIN PRIVATE KEY-----\n"));
            }
        }
    }
});
