//! Fuzz the SKR API's side of a request: the head (`skr::wire::parse_head`: request line, method, target,
//! headers, `Content-Length` against `max_body`, `Transfer-Encoding`, `Expect`), then the body through
//! `skr::api::handle` (routing, each endpoint's JSON, standard base64, the endpoint and kid checks, the
//! vault-host rule) with a backend that refuses at once, so nothing leaves the process.
//!
//! Input: the head, `\r\n\r\n`, the body. Invariants: no panic; a parsed head's length is at most
//! `max_body` and its path printable ASCII; every answer is exactly one JSON object (`{"error"}` unless 200)
//! with a status the API documents.
#![no_main]

use encfs_init::keyrelease::token::{TokenCache, TokenSource};
use encfs_init::keyrelease::{self, Context};
use encfs_init::manifest::VaultKind;
use encfs_init::skr::{api, wire, Backend};
use libfuzzer_sys::fuzz_target;

struct Refuses;

impl Backend for Refuses {
    fn identity(&self, _: VaultKind) -> Result<TokenSource, keyrelease::Error> {
        Err(keyrelease::Error::Internal("test: no identity".into()))
    }
    fn with_context<T>(
        &self,
        _: &TokenCache,
        _: impl FnOnce(&Context<'_>) -> Result<T, keyrelease::Error>,
    ) -> Result<T, keyrelease::Error> {
        Err(keyrelease::Error::Internal("test: refused".into()))
    }
    fn test_mode(&self) -> bool {
        false
    }
    fn manifest_vaults(&self) -> Vec<String> {
        vec!["kv.example".into()]
    }
}

const MAX_BODY: usize = 64 << 10;

fuzz_target!(|data: &[u8]| {
    let (head, body) = match data.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => (&data[..i], &data[i + 4..]),
        None => (data, &[][..]),
    };
    let Ok(h) = wire::parse_head(head, MAX_BODY) else {
        return;
    };
    assert!(h.length <= MAX_BODY);
    assert!(h.path.starts_with('/') && h.path.bytes().all(|b| b.is_ascii_graphic()));
    let body = &body[..body.len().min(h.length)];
    let r = api::handle(&Refuses, &api::Tokens::default(), &h.method, &h.path, body);
    assert!(
        [200, 400, 403, 404, 405, 500, 502].contains(&r.status),
        "status {}",
        r.status
    );
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("one JSON body");
    let o = v.as_object().expect("a JSON object");
    if r.status != 200 {
        assert_eq!(o.len(), 1);
        assert!(o["error"].is_string());
    }
});
