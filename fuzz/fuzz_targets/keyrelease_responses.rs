//! Fuzz the parsing of the identity, MAA and vault HTTP responses, through the real protocol functions
//! behind a fake `Transport` that answers with the fuzz input.
//!
//! Input: byte 0 picks the call, byte 1 the status (mostly 200), the rest is the response body:
//! - `maa::attest`: the MAA answer, JSON with a `token` field (matched case-insensitively);
//! - `akv::release`: the vault answer, JSON `{"value": "<compact JWS>"}`;
//! - `token::TokenCache::get` over an IMDS source: `access_token` and `expires_in` (a string or a number),
//!   asked twice so that the cached token and its refresh time are used too.
//!
//! Checked: no panic; a successful answer carries what was asked for (a non-empty token, a value).
#![no_main]

use encfs_init::keyrelease::akv;
use encfs_init::keyrelease::maa::{self, Attestation};
use encfs_init::keyrelease::token::{TokenCache, TokenSource};
use encfs_init::keyrelease::transport::{Request, Response, Transport, TransportError};
use libfuzzer_sys::fuzz_target;

struct Fake<'a> {
    status: u16,
    body: &'a [u8],
}

impl Transport for Fake<'_> {
    fn send(&self, _req: &Request) -> Result<Response, TransportError> {
        Ok(Response {
            status: self.status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: self.body.to_vec(),
        })
    }
}

const STATUSES: [u16; 8] = [200, 200, 200, 201, 400, 401, 429, 503];

fuzz_target!(|data: &[u8]| {
    let [which, st, body @ ..] = data else {
        return;
    };
    let t = Fake {
        status: STATUSES[usize::from(*st) % STATUSES.len()],
        body,
    };
    let snippet = Response {
        status: t.status,
        headers: Vec::new(),
        body: body.to_vec(),
    }
    .snippet();
    assert!(snippet.chars().count() <= 300);
    match which % 3 {
        0 => {
            let a = Attestation {
                report: &[0u8; 1184],
                vcek_chain_pem: "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n",
                reference_info: None,
                runtime_json: br#"{"keys":[]}"#,
            };
            if let Ok(tok) = maa::attest(
                &t,
                "https://sharedeus.eus.attest.azure.net",
                "2022-08-01",
                &a,
            ) {
                assert!(!tok.expose().is_empty());
            }
        }
        1 => {
            let _ = akv::release(
                &t,
                "https://myhsm.managedhsm.azure.net",
                "model-key",
                "7.4",
                "bearer",
                "maa.jwt.token",
            );
        }
        _ => {
            let cache = TokenCache::new(TokenSource::Imds {
                base: "http://169.254.169.254".into(),
                api_version: "2018-02-01".into(),
                resource: "https://managedhsm.azure.net".into(),
                client_id: Some("0f2a4c3e-1111-2222-3333-444455556666".into()),
            });
            if let Ok(a) = cache.get(&t) {
                assert!(!a.expose().is_empty());
                let b = cache.get(&t).expect("a cached or refetched token");
                assert_eq!(a.expose(), b.expose());
            }
        }
    }
});
