//! Test support (never in the product binary). For the http, blob and nbd tests: [`range_server`] (an
//! Azure-Blob-like range server with faults), [`nbd_serve`] (the `nbd serve` CLI under test, qemu-io).
//! For attestation and key release: a tiny HTTP/1.1 server on 127.0.0.1, plain or TLS (rustls
//! `ServerConnection` with an rcgen certificate), with per-route fault knobs; a test PKI and a fake AMD chain
//! ([`pki`]); and a fake Azure (MAA, Key Vault / managed HSM, IMDS, Entra ID, THIM) ([`azure`]).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod azurite;
pub mod nbd_serve;
pub mod range_server;

use encfs_init::manifest::NetworkPlan;
use std::time::Duration;

/// A network plan with short timeouts and fast retries.
pub fn fast_network(retries: u32) -> NetworkPlan {
    NetworkPlan {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_millis(1500),
        retries,
        retry_backoff_max: Duration::from_millis(40),
        ca_bundle: None,
        ca_bundle_sha256: None,
    }
}

/// HTTP/1.1 header lines up to the blank line, as `(name, value)` trimmed (names as sent).
pub fn read_headers(r: &mut impl std::io::BufRead) -> std::io::Result<Vec<(String, String)>> {
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 {
            return Ok(headers);
        }
        let h = h.trim_end();
        if h.is_empty() {
            return Ok(headers);
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
}

/// Deterministic pseudo-random bytes.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

// ---- HTTP(S) fakes for attestation and key release ----

pub mod azure;
pub mod cuse;
pub mod pki;
pub mod rig;
pub mod snp_check;

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// A request as the fake sees it.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// The value of header `name` (case-insensitive) in a list of (name, value) pairs.
pub fn header_in<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

impl Req {
    pub fn header(&self, name: &str) -> Option<&str> {
        header_in(&self.headers, name)
    }
    pub fn param(&self, name: &str) -> Option<String> {
        self.query.split('&').find_map(|kv| {
            kv.split_once('=')
                .filter(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    }
}

/// A response.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(status: u16, v: &serde_json::Value) -> Self {
        Resp {
            status,
            body: v.to_string().into_bytes(),
        }
    }
    pub fn text(status: u16, s: &str) -> Self {
        Resp {
            status,
            body: s.as_bytes().to_vec(),
        }
    }
}

/// One injected fault, consumed by the next request whose path starts with its prefix.
#[derive(Debug, Clone, Default)]
pub struct Fault {
    /// Answer with this status (and `body`, or a fixed error text).
    pub status: Option<u16>,
    /// Sleep first.
    pub delay: Option<Duration>,
    /// Replace the body (malformed JSON, truncation).
    pub body: Option<Vec<u8>>,
    /// Truncate the handler's real body to this many bytes.
    pub truncate: Option<usize>,
}

pub type Handler = Arc<dyn Fn(&Req) -> Resp + Send + Sync>;

/// A running server.
pub struct Server {
    pub port: u16,
    pub tls: bool,
    faults: Arc<Mutex<HashMap<String, VecDeque<Fault>>>>,
    pub log: Arc<Mutex<Vec<Req>>>,
}

impl Server {
    pub fn url(&self) -> String {
        format!(
            "{}://127.0.0.1:{}",
            if self.tls { "https" } else { "http" },
            self.port
        )
    }

    /// Queue `fault` for the next request under `prefix`.
    pub fn fault(&self, prefix: &str, fault: Fault) {
        self.faults
            .lock()
            .unwrap()
            .entry(prefix.to_string())
            .or_default()
            .push_back(fault);
    }

    /// How many requests hit paths starting with `prefix`.
    pub fn hits(&self, prefix: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path.starts_with(prefix))
            .count()
    }

    /// Start on 127.0.0.1 (port 0); `tls` = (certificate chain DER, PKCS#8 key DER).
    pub fn start(tls: Option<(Vec<Vec<u8>>, Vec<u8>)>, handler: Handler) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let faults: Arc<Mutex<HashMap<String, VecDeque<Fault>>>> = Arc::default();
        let log: Arc<Mutex<Vec<Req>>> = Arc::default();
        let config = tls.map(|(chain, key)| {
            use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let chain = chain.into_iter().map(CertificateDer::from).collect();
            let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key));
            Arc::new(
                rustls::ServerConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .unwrap()
                    .with_no_client_auth()
                    .with_single_cert(chain, key)
                    .unwrap(),
            )
        });
        let tls = config.is_some();
        let (f2, l2) = (faults.clone(), log.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (config, handler, faults, log) =
                    (config.clone(), handler.clone(), f2.clone(), l2.clone());
                std::thread::spawn(move || {
                    let _ = serve(stream, config, handler, faults, log);
                });
            }
        });
        Server {
            port,
            tls,
            faults,
            log,
        }
    }
}

fn serve(
    stream: TcpStream,
    config: Option<Arc<rustls::ServerConfig>>,
    handler: Handler,
    faults: Arc<Mutex<HashMap<String, VecDeque<Fault>>>>,
    log: Arc<Mutex<Vec<Req>>>,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    match config {
        Some(c) => {
            let conn = rustls::ServerConnection::new(c).map_err(std::io::Error::other)?;
            let mut tls = rustls::StreamOwned::new(conn, stream);
            exchange(&mut tls, &handler, &faults, &log)
        }
        None => {
            let mut s = stream;
            exchange(&mut s, &handler, &faults, &log)
        }
    }
}

fn exchange<S: Read + Write>(
    s: &mut S,
    handler: &Handler,
    faults: &Mutex<HashMap<String, VecDeque<Fault>>>,
    log: &Mutex<Vec<Req>>,
) -> std::io::Result<()> {
    let mut r = BufReader::new(&mut *s);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default().to_string();
    let (path, query) = target
        .split_once('?')
        .map_or((target.clone(), String::new()), |(p, q)| {
            (p.to_string(), q.to_string())
        });
    let headers = read_headers(&mut r)?;
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    drop(r);
    let req = Req {
        method,
        path,
        query,
        headers,
        body,
    };
    log.lock().unwrap().push(req.clone());
    let fault = {
        let mut f = faults.lock().unwrap();
        f.iter_mut()
            .find(|(p, q)| req.path.starts_with(p.as_str()) && !q.is_empty())
            .and_then(|(_, q)| q.pop_front())
    };
    let mut resp = None;
    if let Some(f) = &fault {
        if let Some(d) = f.delay {
            std::thread::sleep(d);
        }
        if let Some(st) = f.status {
            resp = Some(Resp {
                status: st,
                body: f
                    .body
                    .clone()
                    .unwrap_or_else(|| format!("injected {st}").into_bytes()),
            });
        } else if let Some(b) = &f.body {
            resp = Some(Resp {
                status: 200,
                body: b.clone(),
            });
        }
    }
    let mut resp = resp.unwrap_or_else(|| handler(&req));
    if let Some(n) = fault.as_ref().and_then(|f| f.truncate) {
        resp.body.truncate(n);
    }
    let head = format!(
        "HTTP/1.1 {} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        resp.status,
        resp.body.len()
    );
    s.write_all(head.as_bytes())?;
    s.write_all(&resp.body)?;
    s.flush()
}
