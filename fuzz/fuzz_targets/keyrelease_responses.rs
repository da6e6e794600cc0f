//! Fuzz the parsing of the identity, MAA and vault HTTP responses, through the real protocol functions
//! behind a fake [`encfs_init::http::Exchange`] that answers with the fuzz input.
//!
//! Input: byte 0 picks the call, byte 1 the status (mostly 200), the rest is the response body:
//! - `maa::attest`: the MAA answer, JSON with a `token` field (matched case-insensitively);
//! - `akv::release`: the vault answer, JSON `{"value": "<compact JWS>"}`;
//! - `token::TokenCache::get` over an IMDS source: `access_token` and `expires_in` (a string or a number),
//!   asked twice so that the cached token and its refresh time are used too.
//!
//! Checked: no panic; a successful answer carries what was asked for (a non-empty token, a value).
#![no_main]

use encfs_init::http::{self, Exchange, Request, Response};
use encfs_init::keyrelease::akv;
use encfs_init::keyrelease::maa::{self, Attestation};
use encfs_init::keyrelease::token::{TokenCache, TokenSource};
use libfuzzer_sys::fuzz_target;

struct Fake<'a> {
    status: u16,
    body: &'a [u8],
}

impl Exchange for Fake<'_> {
    /// As the client answers: a 2xx response, or any other status as an error with the body's snippet.
    fn exchange(&self, req: &Request<'_>) -> http::Result<Response> {
        if !http::SUCCESS.contains(&self.status) {
            return Err(http::Error::Status {
                method: req.method().to_string(),
                url: req.shown_url(),
                status: self.status,
                code: None,
                snippet: http::snippet(self.body),
                retry_after: None,
            });
        }
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "content-type",
            "application/json".parse().expect("a header value"),
        );
        Ok(Response {
            status: self.status,
            headers,
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
    let snippet = http::snippet(body);
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
                None,
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
