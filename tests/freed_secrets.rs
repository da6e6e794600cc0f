//! Secrets in freed memory: this test binary's allocator looks at every block the program gives back while
//! a check is armed, and counts the blocks that still hold the check's secret. A secret that our code
//! wipes before freeing (or never copies) is never seen; one left in an outgrown or dropped buffer is.
//! What it cannot see: the stack, and copies that live on (only freed blocks are scanned).
//!
//! Known copies outside this crate, asserted as such so that a change shows: ureq's send buffer holds the
//! request (headers and body) and is freed unwiped; the devicemapper crate's ioctl buffer holds the dm
//! table (only without a kernel keyring does that carry the hex key).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::Mutex;

const MAX_NEEDLE: usize = 64;
static ARMED: AtomicBool = AtomicBool::new(false);
static NEEDLE_LEN: AtomicUsize = AtomicUsize::new(0);
static NEEDLE: [AtomicU8; MAX_NEEDLE] = [const { AtomicU8::new(0) }; MAX_NEEDLE];
static FOUND: AtomicUsize = AtomicUsize::new(0);

struct Scanning;

fn holds_needle(block: &[u8]) -> bool {
    let n = NEEDLE_LEN.load(Ordering::Relaxed);
    if n == 0 || block.len() < n {
        return false;
    }
    let first = NEEDLE[0].load(Ordering::Relaxed);
    (0..=block.len() - n).any(|i| {
        block[i] == first && (1..n).all(|j| block[i + j] == NEEDLE[j].load(Ordering::Relaxed))
    })
}

// SAFETY: every call is forwarded to the system allocator unchanged; `dealloc` only reads the block it is
// given (live until the forwarded call) before freeing it, and allocates nothing. `realloc` keeps the
// default (alloc, copy, dealloc), so an outgrown block passes through `dealloc` too.
unsafe impl GlobalAlloc for Scanning {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if ARMED.load(Ordering::Relaxed) {
            // SAFETY: `ptr` is a live block of `layout.size()` bytes from `alloc` (the caller's contract);
            // it is freed only below.
            let block = unsafe { std::slice::from_raw_parts(ptr, layout.size()) };
            if holds_needle(block) {
                FOUND.fetch_add(1, Ordering::Relaxed);
            }
        }
        // SAFETY: the caller's contract for `dealloc` is passed on as is.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Scanning = Scanning;

/// One check at a time (the allocator has one needle).
static ONE: Mutex<()> = Mutex::new(());

/// Run `f` with `needle` armed; the number of freed blocks that held it.
fn freed_copies(needle: &[u8], f: impl FnOnce()) -> usize {
    let _one = ONE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    assert!(needle.len() <= MAX_NEEDLE && !needle.is_empty());
    for (slot, b) in NEEDLE.iter().zip(needle) {
        slot.store(*b, Ordering::Relaxed);
    }
    NEEDLE_LEN.store(needle.len(), Ordering::Relaxed);
    FOUND.store(0, Ordering::Relaxed);
    ARMED.store(true, Ordering::SeqCst);
    f();
    ARMED.store(false, Ordering::SeqCst);
    FOUND.load(Ordering::Relaxed)
}

#[test]
fn the_scanner_sees_a_secret_left_in_a_freed_buffer() {
    let leaked = freed_copies(b"SCANNER-SELF-TEST", || {
        drop(String::from("xx SCANNER-SELF-TEST xx"));
    });
    assert_eq!(leaked, 1);
}

#[test]
fn a_blob_request_wipes_its_bearer_header() {
    const TOKEN: &str = "BLOB-BEARER-TOKEN-5f1d2c";
    let url = "https://acct.blob.core.windows.net/c/b.img";
    let leaked = freed_copies(TOKEN.as_bytes(), || {
        let token = encfs_init::secret::SecretString::new(TOKEN.to_string());
        let req = encfs_init::http::Request::new("GET", url)
            .header("authorization", format!("Bearer {}", token.expose()));
        drop(req);
        drop(token);
    });
    assert_eq!(leaked, 0, "the Authorization header was freed unwiped");
}

#[test]
fn the_hex_key_and_the_dm_table_leave_no_copy() {
    let key = encfs_init::secret::SecretBytes::new((0xa0u8..0xe0).collect());
    let hex: String = key.expose().iter().map(|b| format!("{b:02x}")).collect();
    let params = encfs_init::dm::CryptParams {
        cipher: "aes-xts-plain64".into(),
        iv_offset: 0,
        device: "/dev/nbd0".into(),
        offset_sectors: 32768,
        size_sectors: 100,
        sector_size: 4096,
        read_only: false,
    };
    let leaked = freed_copies(&hex.as_bytes()[..24], || {
        let h = encfs_init::hex::encode_secret(key.expose());
        let table = params.table(&encfs_init::dm::KeyRef::Hex(h));
        assert!(table.contains(&hex));
        drop(table);
    });
    assert_eq!(leaked, 0, "a copy of the hex key was freed unwiped");
}

/// A one-shot HTTP server that reads the request into a stack buffer (no heap copy of its own) and answers
/// 200 with an empty JSON body.
fn one_shot_server() -> (String, std::thread::JoinHandle<()>) {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let h = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut buf = [0u8; 16384];
        let mut seen = 0;
        // Headers and a body that ends with '}'.
        while seen < buf.len() {
            let n = s.read(&mut buf[seen..]).unwrap();
            seen += n;
            if n == 0 || buf[..seen].ends_with(b"}") {
                break;
            }
        }
        buf.fill(0);
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
            .unwrap();
    });
    (url, h)
}

#[test]
fn a_key_release_request_body_is_not_copied() {
    use encfs_init::http::{Client, Exchange};
    const ASSERTION: &str = "CLIENT-ASSERTION-SECRET-77a1";
    let t = Client::new(&encfs_init::manifest::NetworkPlan {
        connect_timeout: std::time::Duration::from_secs(2),
        request_timeout: std::time::Duration::from_secs(5),
        retries: 0,
        retry_backoff_max: std::time::Duration::from_millis(1),
        ca_bundle: None,
        ca_bundle_sha256: None,
    })
    .unwrap();
    let (url, server) = one_shot_server();
    let body = zeroize::Zeroizing::new(format!("{{\"target\":\"{ASSERTION}\"}}").into_bytes());
    let leaked = freed_copies(ASSERTION.as_bytes(), || {
        let url = format!("{url}/t");
        let req = encfs_init::keyrelease::post_json(&url, &body);
        let resp = t.exchange(&req).unwrap();
        assert_eq!(resp.status, 200);
        drop(req);
        drop(body);
    });
    server.join().unwrap();
    // Ours: none (the body is lent to ureq, no longer cloned: 2 here before). The one left is ureq's own
    // send buffer, freed unwiped when the connection closes; it is outside this crate (README, security).
    assert_eq!(
        leaked, 1,
        "a copy of the request body besides ureq's was freed unwiped"
    );
}

/// Answers every request `{"value":"x"}` without keeping any of it.
struct Silent;
impl encfs_init::http::Exchange for Silent {
    fn exchange(
        &self,
        _: &encfs_init::http::Request<'_>,
    ) -> encfs_init::http::Result<encfs_init::http::Response> {
        Ok(encfs_init::http::Response {
            status: 200,
            headers: Default::default(),
            body: br#"{"value":"x"}"#.to_vec(),
        })
    }
}

#[test]
fn the_release_call_leaves_neither_the_maa_token_nor_the_bearer() {
    const MAA: &str = "eyJhbGciOiJSUzI1NiJ9.MAA-TOKEN-SECRET-0c9e.c2ln";
    const BEARER: &str = "VAULT-BEARER-SECRET-3b7f";
    for needle in ["MAA-TOKEN-SECRET-0c9e", BEARER] {
        let leaked = freed_copies(needle.as_bytes(), || {
            let maa = encfs_init::secret::SecretString::new(MAA.to_string());
            let bearer = encfs_init::secret::SecretString::new(BEARER.to_string());
            let jws = encfs_init::keyrelease::akv::release(
                &Silent,
                "https://v.vault.azure.net",
                "k",
                "7.4",
                bearer.expose(),
                maa.expose(),
            )
            .unwrap();
            assert_eq!(jws, "x");
        });
        assert_eq!(leaked, 0, "{needle} was freed unwiped");
    }
}

/// The SKR API's side of a `/key/release` whose body carries an access token, and of an answer carrying a
/// key: the request read (head buffer, body), parsed and refused by a backend that fails at once, then a
/// key answered. The client writes from static bytes and reads into the stack, so only the server's
/// buffers are seen.
#[test]
fn the_skr_api_leaves_neither_a_callers_token_nor_an_answered_key() {
    use encfs_init::keyrelease::token::{TokenCache, TokenSource};
    use encfs_init::keyrelease::{self, Context};
    use encfs_init::manifest::VaultKind;
    use encfs_init::skr::{api, wire, Backend};
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};
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
            true
        }
        fn manifest_vaults(&self) -> Vec<String> {
            vec![]
        }
    }
    const REQ: &[u8] = b"POST /key/release HTTP/1.1\r\nContent-Length: 104\r\n\r\n{\"maa_endpoint\":\"m.example\",\"akv_endpoint\":\"v.example\",\"kid\":\"k\",\"access_token\":\"SKR-CALLER-TOKEN-7a3e\"}";
    const KEY: &[u8] = b"{\"key\":\"{\\\"k\\\":\\\"SKR-ANSWERED-KEY-91c4\\\"}\"}";
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let client = std::thread::spawn(move || {
        let mut buf = [0u8; 1024];
        for req in [REQ, b"GET /status HTTP/1.1\r\n\r\n"] {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.write_all(req).unwrap();
            while s.read(&mut buf).unwrap() > 0 {}
        }
    });
    let t = Duration::from_secs(10);
    let mut status = 0;
    let leaked = freed_copies(b"SKR-CALLER-TOKEN-7a3e", || {
        let (mut s, _) = l.accept().unwrap();
        let req = wire::read_request(&mut s, Instant::now() + t, t, 4096).unwrap();
        let reply = api::handle(
            &Refuses,
            &api::Tokens::default(),
            &req.method,
            &req.path,
            &req.body,
        );
        status = reply.status;
        wire::respond(&mut s, reply.status, None, &reply.body, t).unwrap();
    });
    assert_eq!(status, 500);
    assert_eq!(leaked, 0, "the caller's access token was freed unwiped");
    let leaked = freed_copies(b"SKR-ANSWERED-KEY-91c4", || {
        let (mut s, _) = l.accept().unwrap();
        wire::read_request(&mut s, Instant::now() + t, t, 4096).unwrap();
        let body = zeroize::Zeroizing::new(KEY.to_vec());
        wire::respond(&mut s, 200, None, &body, t).unwrap();
    });
    assert_eq!(leaked, 0, "the answered key was freed unwiped");
    client.join().unwrap();
}
