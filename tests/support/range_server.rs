//! A small blob-like HTTP server on 127.0.0.1 for tests: HEAD (Content-Length, x-ms-blob-type, ETag),
//! GET with `x-ms-range`/`Range` (206), `PUT ?comp=page` (201 + new ETag), `If-Match` (412), keep-alive,
//! and injectable faults: 503 bursts (with Retry-After), connection resets, stalls and truncated bodies.
//! Leases as Azure keeps them (`PUT ?comp=lease`: acquire, renew, release, break; 409 to another holder),
//! and a Put Page on a leased blob must carry its `x-ms-lease-id` (412 `LeaseIdMissing` otherwise).
//!
//! [`RangeServer::set_profile`] makes it behave like one Azure page blob under load ([`Profile::azure`]):
//! a first-byte latency on every response, and the per-blob scale targets (60 MiB/s, 500 requests/s)
//! enforced by making the request wait, not by answering 503 ServerBusy (the benchmark measures throughput
//! at the cap, not our retry backoff; the 503 path is covered by the fault injection above).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A server-side service profile: what a remote blob service adds to loopback.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Profile {
    /// Wait before the first byte of every response.
    pub first_byte: Duration,
    /// Body bytes per second, for the whole blob (every connection together).
    pub bytes_per_sec: f64,
    /// Requests per second, for the whole blob.
    pub requests_per_sec: f64,
}

impl Profile {
    /// An Azure page blob: first byte after 10 ms, at most 60 MiB/s and 500 requests/s per blob (the page-blob
    /// scale targets).
    pub fn azure() -> Self {
        Profile {
            first_byte: Duration::from_millis(10),
            bytes_per_sec: 60.0 * 1048576.0,
            requests_per_sec: 500.0,
        }
    }
}

/// How far a limiter may run ahead of its rate: lets a sleep that overshoots (TCG timers do) be made up,
/// while over any interval T at most rate x (T + SLACK) goes out.
pub const SLACK: Duration = Duration::from_millis(50);
/// Body bytes are paced in pieces of this size.
pub const PACE_CHUNK: usize = 256 << 10;

/// Two virtual clocks (bytes, requests) shared by every connection: each piece of work reserves its share
/// of time at the profile's rate and waits until it is no more than [`SLACK`] ahead of real time.
#[derive(Debug)]
struct Throttle {
    profile: Profile,
    bytes_at: Mutex<Instant>,
    requests_at: Mutex<Instant>,
}

impl Throttle {
    fn new(profile: Profile) -> Self {
        let now = Instant::now();
        Throttle {
            profile,
            bytes_at: Mutex::new(now),
            requests_at: Mutex::new(now),
        }
    }

    /// Reserve `cost` on `clock` and sleep until that reservation is within the slack.
    fn reserve(clock: &Mutex<Instant>, cost: Duration) {
        let now = Instant::now();
        let end = {
            let mut c = clock.lock().unwrap();
            let start = (*c).max(now);
            *c = start + cost;
            *c
        };
        if let Some(wait) = end
            .checked_sub(SLACK)
            .and_then(|t| t.checked_duration_since(now))
        {
            std::thread::sleep(wait);
        }
    }

    fn admit_request(&self) {
        Self::reserve(
            &self.requests_at,
            Duration::from_secs_f64(1.0 / self.profile.requests_per_sec),
        );
    }

    fn pace(&self, bytes: usize) {
        Self::reserve(
            &self.bytes_at,
            Duration::from_secs_f64(bytes as f64 / self.profile.bytes_per_sec),
        );
    }
}

/// Fault probabilities in percent, applied to GET and PUT requests while `on`.
#[derive(Debug, Default)]
pub struct Faults {
    pub on: AtomicBool,
    pub p503: AtomicU64,
    pub reset: AtomicU64,
    pub stall: AtomicU64,
    pub truncate: AtomicU64,
    /// Stall length in ms.
    pub stall_ms: AtomicU64,
    /// A fixed delay in ms before every response (whether or not `on`): a remote service's round trip,
    /// which loopback does not have (Azure range GETs take about 5-20 ms).
    pub latency_ms: AtomicU64,
    /// When set, only this path is the blob: any other path answers 404 `BlobNotFound` (always, not only
    /// while `on`), as Azure does for a blob or container that does not exist.
    pub only_path: Mutex<Option<String>>,
    /// The service profile in force, if any ([`RangeServer::set_profile`]).
    throttle: Mutex<Option<Arc<Throttle>>>,
    /// When set, the blob is private: every request must carry `Authorization: Bearer TOKEN` with a TOKEN
    /// listed in this file for the storage resource and not expired (lines `TOKEN RESOURCE EXPIRES_UNIX`, as
    /// the fake IMDS writes them: `azure::Knobs::token_log`). Otherwise the answer is Azure Storage's: 404
    /// `ResourceNotFound` without a token (a private container does not admit anonymous reads), 401
    /// `InvalidAuthenticationInfo` for a token it does not know, for an audience other than storage's or the
    /// account's (the request's host), or past its lifetime.
    /// Always applied, not only while `on`.
    pub tokens: Mutex<Option<std::path::PathBuf>>,
    /// The `Retry-After` value of injected 503s (default `0`).
    pub retry_after: Mutex<Option<String>>,
    /// Extra bytes appended to every 206 body (its Content-Length counts them): a reply longer than the
    /// range asked for. Always applied, not only while `on`.
    pub extra_body: AtomicU64,
    /// When set, the total every 206 `Content-Range` claims instead of the real size. Always applied.
    pub claimed_size: Mutex<Option<u64>>,
}

#[derive(Debug)]
pub struct Blob {
    pub data: Vec<u8>,
    pub etag: String,
    pub blob_type: &'static str,
    generation: u64,
    /// Write every accepted Put Page through to this file (synced before the 201), so that the blob
    /// outlives the server.
    pub persist: Option<std::fs::File>,
    /// The lease: its id and when it expires.
    pub lease: Option<(String, Instant)>,
}

impl Blob {
    /// The lease id, if a lease is in force now.
    pub fn leased(&self) -> Option<&str> {
        self.lease
            .as_ref()
            .filter(|(_, until)| Instant::now() < *until)
            .map(|(id, _)| id.as_str())
    }
}

impl Blob {
    /// Replace the content and the ETag (another writer, a re-upload).
    pub fn replace(&mut self, data: Vec<u8>) {
        self.data = data;
        self.generation += 1;
        self.etag = format!("\"0x{:x}\"", self.generation);
    }
}

pub struct RangeServer {
    pub addr: std::net::SocketAddr,
    pub blob: Arc<Mutex<Blob>>,
    pub faults: Arc<Faults>,
    pub requests: Arc<AtomicU64>,
    pub injected: Arc<AtomicU64>,
    /// Body bytes sent in 206 replies (successful range reads).
    pub served_bytes: Arc<AtomicU64>,
    /// Last headers seen per method (lowercase names).
    pub last_headers: Arc<Mutex<HashMap<String, HashMap<String, String>>>>,
    stop: Arc<AtomicBool>,
}

impl RangeServer {
    pub fn start(data: Vec<u8>, blob_type: &'static str) -> Self {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let s = Self {
            addr,
            blob: Arc::new(Mutex::new(Blob {
                data,
                etag: "\"0x1\"".into(),
                blob_type,
                generation: 1,
                persist: None,
                lease: None,
            })),
            faults: Arc::new(Faults::default()),
            requests: Arc::new(AtomicU64::new(0)),
            injected: Arc::new(AtomicU64::new(0)),
            served_bytes: Arc::new(AtomicU64::new(0)),
            last_headers: Arc::new(Mutex::new(HashMap::new())),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let served = s.served_bytes.clone();
        let (blob, faults, req, inj, stop, lh) = (
            s.blob.clone(),
            s.faults.clone(),
            s.requests.clone(),
            s.injected.clone(),
            s.stop.clone(),
            s.last_headers.clone(),
        );
        std::thread::spawn(move || {
            let seed = AtomicU64::new(0x9e37_79b9_7f4a_7c15);
            for c in l.incoming() {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(c) = c else { continue };
                let ctx = Ctx {
                    blob: blob.clone(),
                    faults: faults.clone(),
                    requests: req.clone(),
                    injected: inj.clone(),
                    served_bytes: served.clone(),
                    last_headers: lh.clone(),
                    rng: seed.fetch_add(0x1234_5678_9abc, Ordering::Relaxed),
                };
                std::thread::spawn(move || ctx.serve(c));
            }
        });
        s
    }

    pub fn url(&self) -> String {
        format!("http://{}/container/disk.img", self.addr)
    }

    /// Replace the content and the ETag (another writer).
    pub fn replace(&self, data: Vec<u8>) {
        self.blob.lock().unwrap().replace(data);
    }

    pub fn set_faults(&self, p503: u64, reset: u64, stall: u64, truncate: u64, stall_ms: u64) {
        let f = &self.faults;
        f.p503.store(p503, Ordering::Relaxed);
        f.reset.store(reset, Ordering::Relaxed);
        f.stall.store(stall, Ordering::Relaxed);
        f.truncate.store(truncate, Ordering::Relaxed);
        f.stall_ms.store(stall_ms, Ordering::Relaxed);
    }

    /// Delay every response by `ms` milliseconds (0: none).
    pub fn set_latency_ms(&self, ms: u64) {
        self.faults.latency_ms.store(ms, Ordering::Relaxed);
    }

    /// Behave like a remote service with `profile` (None: loopback as is). Replaces the latency of
    /// [`RangeServer::set_latency_ms`] with the profile's first-byte latency.
    pub fn set_profile(&self, profile: Option<Profile>) {
        let ms = profile.map_or(0, |p| {
            u64::try_from(p.first_byte.as_millis()).unwrap_or(u64::MAX)
        });
        self.set_latency_ms(ms);
        *self.faults.throttle.lock().unwrap() = profile.map(|p| Arc::new(Throttle::new(p)));
    }

    pub fn faults_on(&self, on: bool) {
        self.faults.on.store(on, Ordering::Relaxed);
    }
}

impl Drop for RangeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr);
    }
}

struct Ctx {
    blob: Arc<Mutex<Blob>>,
    faults: Arc<Faults>,
    requests: Arc<AtomicU64>,
    injected: Arc<AtomicU64>,
    served_bytes: Arc<AtomicU64>,
    last_headers: Arc<Mutex<HashMap<String, HashMap<String, String>>>>,
    rng: u64,
}

/// Why Azure Storage would refuse this request's bearer token, checked against the token list `file` (see
/// [`Faults::tokens`]): (status, error code, detail), or `None` when it admits it.
fn bearer_refused(
    file: &std::path::Path,
    h: &HashMap<String, String>,
) -> Option<(u16, &'static str, &'static str)> {
    let Some(token) = h
        .get("authorization")
        .and_then(|a| a.strip_prefix("Bearer "))
    else {
        return Some((
            404,
            "ResourceNotFound",
            "The specified resource does not exist.",
        ));
    };
    let list = std::fs::read_to_string(file).unwrap_or_default();
    let Some((resource, expires)) = list.lines().find_map(|l| {
        let mut f = l.split(' ');
        (f.next() == Some(token)).then(|| (f.next().unwrap_or(""), f.next().unwrap_or("")))
    }) else {
        return Some((
            401,
            "InvalidAuthenticationInfo",
            "Signature validation failed.",
        ));
    };
    // Azure Storage admits its service-wide audience and the account's own origin (the request's host).
    let host = h.get("host").map_or("", String::as_str);
    let audience = resource.trim_end_matches('/');
    let own = [format!("https://{host}"), format!("http://{host}")];
    if audience != "https://storage.azure.com" && !own.iter().any(|o| o == audience) {
        return Some((
            401,
            "InvalidAuthenticationInfo",
            "Audience validation failed. Audience did not match.",
        ));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if expires.parse::<u64>().map_or(true, |e| now >= e) {
        return Some((
            401,
            "InvalidAuthenticationInfo",
            "Lifetime validation failed. The token is expired.",
        ));
    }
    None
}

enum Fault {
    None,
    E503,
    Reset,
    Stall,
    Truncate,
}

impl Ctx {
    fn roll(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng % 100
    }

    fn fault(&mut self) -> Fault {
        if !self.faults.on.load(Ordering::Relaxed) {
            return Fault::None;
        }
        let r = self.roll();
        let f = self.faults.clone();
        let mut acc = 0;
        for (p, kind) in [
            (f.p503.load(Ordering::Relaxed), 1),
            (f.reset.load(Ordering::Relaxed), 2),
            (f.stall.load(Ordering::Relaxed), 3),
            (f.truncate.load(Ordering::Relaxed), 4),
        ] {
            acc += p;
            if r < acc {
                self.injected.fetch_add(1, Ordering::Relaxed);
                return match kind {
                    1 => Fault::E503,
                    2 => Fault::Reset,
                    3 => Fault::Stall,
                    _ => Fault::Truncate,
                };
            }
        }
        Fault::None
    }

    fn serve(mut self, c: TcpStream) {
        // Responses go out as a header write then a body write: without TCP_NODELAY, Nagle holds the body
        // back until the client ACKs the header (delayed ACK: up to 40 ms per request).
        let _ = c.set_nodelay(true);
        let mut w = c.try_clone().unwrap();
        let mut r = BufReader::new(c);
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let mut parts = line.split_whitespace();
            let method = parts.next().unwrap_or("").to_string();
            let target = parts.next().unwrap_or("").to_string();
            let mut h = HashMap::new();
            loop {
                let mut l = String::new();
                if r.read_line(&mut l).unwrap_or(0) == 0 {
                    return;
                }
                let l = l.trim_end();
                if l.is_empty() {
                    break;
                }
                if let Some((k, v)) = l.split_once(':') {
                    h.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                }
            }
            let clen: usize = h
                .get("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0u8; clen];
            if r.read_exact(&mut body).is_err() {
                return;
            }
            self.requests.fetch_add(1, Ordering::Relaxed);
            self.last_headers
                .lock()
                .unwrap()
                .insert(method.clone(), h.clone());
            let throttle = self.faults.throttle.lock().unwrap().clone();
            if let Some(t) = &throttle {
                t.admit_request();
            }
            let latency = self.faults.latency_ms.load(Ordering::Relaxed);
            if latency > 0 {
                std::thread::sleep(Duration::from_millis(latency));
            }
            if self
                .respond(&mut w, &method, &target, &h, &body, throttle.as_deref())
                .is_err()
            {
                return;
            }
        }
    }

    fn respond(
        &mut self,
        w: &mut TcpStream,
        method: &str,
        target: &str,
        h: &HashMap<String, String>,
        body: &[u8],
        throttle: Option<&Throttle>,
    ) -> std::io::Result<()> {
        let tokens = self.faults.tokens.lock().unwrap().clone();
        if let Some(refused) = tokens.and_then(|f| bearer_refused(&f, h)) {
            let (status, code, why) = refused;
            let b = if method == "HEAD" {
                String::new()
            } else {
                format!("<Error><Code>{code}</Code><AuthenticationErrorDetail>{why}</AuthenticationErrorDetail></Error>")
            };
            let challenge = if status == 401 {
                format!("WWW-Authenticate: Bearer authorization_uri=https://login.microsoftonline.com/tenant/oauth2/authorize resource_id=https://storage.azure.com error_description=\"{why}\"\r\n")
            } else {
                String::new()
            };
            write!(
                w,
                "HTTP/1.1 {status} {why}\r\nx-ms-error-code: {code}\r\n{challenge}Content-Length: {}\r\n\r\n",
                b.len()
            )?;
            return w.write_all(b.as_bytes());
        }
        let wanted = self.faults.only_path.lock().unwrap().clone();
        if let Some(only) = wanted {
            if target.split('?').next() != Some(only.as_str()) {
                let b: &[u8] = if method == "HEAD" {
                    b""
                } else {
                    b"<Error><Code>BlobNotFound</Code></Error>"
                };
                write!(
                    w,
                    "HTTP/1.1 404 The specified blob does not exist.\r\nx-ms-error-code: BlobNotFound\r\nContent-Length: {}\r\n\r\n",
                    b.len()
                )?;
                return w.write_all(b);
            }
        }
        let fault = if method == "HEAD" {
            Fault::None
        } else {
            self.fault()
        };
        match fault {
            Fault::E503 => {
                let b = b"<Error><Code>ServerBusy</Code></Error>";
                let ra = self.faults.retry_after.lock().unwrap().clone();
                write!(
                    w,
                    "HTTP/1.1 503 Service Unavailable\r\nx-ms-error-code: ServerBusy\r\nRetry-After: {}\r\nContent-Length: {}\r\n\r\n",
                    ra.as_deref().unwrap_or("0"),
                    b.len()
                )?;
                return w.write_all(b);
            }
            Fault::Reset => {
                let _ = w.shutdown(std::net::Shutdown::Both);
                return Err(std::io::ErrorKind::ConnectionReset.into());
            }
            Fault::Stall => {
                std::thread::sleep(Duration::from_millis(
                    self.faults.stall_ms.load(Ordering::Relaxed),
                ));
                let _ = w.shutdown(std::net::Shutdown::Both);
                return Err(std::io::ErrorKind::TimedOut.into());
            }
            _ => {}
        }
        let mut b = self.blob.lock().unwrap();
        let size = b.data.len() as u64;
        let etag = b.etag.clone();
        let echo = h
            .get("x-ms-client-request-id")
            .map(|v| format!("x-ms-client-request-id: {v}\r\n"))
            .unwrap_or_default();
        if let Some(m) = h.get("if-match") {
            if *m != etag && method != "HEAD" {
                drop(b);
                write!(w, "HTTP/1.1 412 Precondition Failed\r\n{echo}x-ms-error-code: ConditionNotMet\r\nContent-Length: 0\r\n\r\n")?;
                return Ok(());
            }
        }
        let range = h
            .get("x-ms-range")
            .or_else(|| h.get("range"))
            .and_then(|r| r.strip_prefix("bytes="))
            .and_then(|r| r.split_once('-'))
            .and_then(|(a, z)| Some((a.parse::<u64>().ok()?, z.parse::<u64>().ok()?)));
        match method {
            "HEAD" => write!(
                w,
                "HTTP/1.1 200 OK\r\n{echo}Content-Length: {size}\r\nx-ms-blob-type: {}\r\nETag: {etag}\r\nAccept-Ranges: bytes\r\n\r\n",
                b.blob_type
            ),
            "GET" => {
                let (a, z) = range.unwrap_or((0, size.saturating_sub(1)));
                if a >= size {
                    drop(b);
                    return write!(w, "HTTP/1.1 416 Range Not Satisfiable\r\n{echo}Content-Length: 0\r\n\r\n");
                }
                let z = z.min(size - 1);
                let mut slice = b.data[a as usize..=z as usize].to_vec();
                drop(b);
                let extra = self.faults.extra_body.load(Ordering::Relaxed);
                slice.resize(slice.len() + extra as usize, 0xEE);
                let total = self.faults.claimed_size.lock().unwrap().unwrap_or(size);
                // One write for the whole header (write! would send each piece as its own segment).
                let head = format!(
                    "HTTP/1.1 206 Partial Content\r\n{echo}Content-Length: {}\r\nContent-Range: bytes {a}-{z}/{total}\r\nETag: {etag}\r\n\r\n",
                    slice.len()
                );
                w.write_all(head.as_bytes())?;
                if let Fault::Truncate = fault {
                    w.write_all(&slice[..slice.len() / 2])?;
                    let _ = w.shutdown(std::net::Shutdown::Both);
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                match throttle {
                    Some(t) => {
                        for piece in slice.chunks(PACE_CHUNK) {
                            t.pace(piece.len());
                            w.write_all(piece)?;
                        }
                    }
                    None => w.write_all(&slice)?,
                }
                self.served_bytes
                    .fetch_add(slice.len() as u64, Ordering::Relaxed);
                Ok(())
            }
            "PUT" if target.contains("comp=lease") => {
                let action = h.get("x-ms-lease-action").map(String::as_str);
                let given = h.get("x-ms-lease-id").cloned().unwrap_or_default();
                let held = b.leased().map(str::to_string);
                let secs: u64 = h
                    .get("x-ms-lease-duration")
                    .and_then(|d| d.parse().ok())
                    .unwrap_or(60);
                let until = Instant::now() + Duration::from_secs(secs);
                let (status, code, id) = match action {
                    Some("acquire") => {
                        let proposed = h.get("x-ms-proposed-lease-id").cloned().unwrap_or_default();
                        if held.as_ref().is_some_and(|id| *id != proposed) {
                            ("409 Conflict", "LeaseAlreadyPresent", None)
                        } else if !(15..=60).contains(&secs) {
                            ("400 Bad Request", "InvalidHeaderValue", None)
                        } else {
                            b.lease = Some((proposed.clone(), until));
                            ("201 Created", "", Some(proposed))
                        }
                    }
                    Some("renew") if held.as_deref() == Some(given.as_str()) => {
                        b.lease = Some((given.clone(), until));
                        ("200 OK", "", Some(given))
                    }
                    Some("release") if held.as_deref() == Some(given.as_str()) => {
                        b.lease = None;
                        ("200 OK", "", None)
                    }
                    Some("break") => {
                        b.lease = None;
                        ("202 Accepted", "", None)
                    }
                    Some("renew" | "release") => ("409 Conflict", "LeaseIdMismatchWithLeaseOperation", None),
                    _ => ("400 Bad Request", "InvalidHeaderValue", None),
                };
                drop(b);
                let id = id.map(|i| format!("x-ms-lease-id: {i}\r\n")).unwrap_or_default();
                let code = if code.is_empty() {
                    String::new()
                } else {
                    format!("x-ms-error-code: {code}\r\n")
                };
                write!(w, "HTTP/1.1 {status}\r\n{echo}{id}{code}Content-Length: 0\r\n\r\n")
            }
            "PUT" if target.contains("comp=page") => {
                let refused = match (b.leased(), h.get("x-ms-lease-id")) {
                    (Some(_), None) => Some("LeaseIdMissing"),
                    (Some(id), Some(given)) if id != given.as_str() => Some("LeaseIdMismatchWithBlobOperation"),
                    (None, Some(_)) => Some("LeaseNotPresentWithBlobOperation"),
                    _ => None,
                };
                if let Some(code) = refused {
                    drop(b);
                    return write!(w, "HTTP/1.1 412 Precondition Failed\r\n{echo}x-ms-error-code: {code}\r\nContent-Length: 0\r\n\r\n");
                }
                let Some((a, z)) = range else {
                    drop(b);
                    return write!(w, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
                };
                if b.blob_type != "PageBlob"
                    || a % 512 != 0
                    || (z + 1) % 512 != 0
                    || z >= size
                    || body.len() as u64 != z - a + 1
                    || h.get("x-ms-page-write").map(String::as_str) != Some("update")
                {
                    drop(b);
                    return write!(w, "HTTP/1.1 400 Bad Request\r\n{echo}x-ms-error-code: InvalidPageRange\r\nContent-Length: 0\r\n\r\n");
                }
                if let Some(f) = &b.persist {
                    use std::os::unix::fs::FileExt;
                    if f.write_all_at(body, a).and_then(|()| f.sync_data()).is_err() {
                        drop(b);
                        return write!(w, "HTTP/1.1 500 Internal Server Error\r\n{echo}Content-Length: 0\r\n\r\n");
                    }
                }
                b.data[a as usize..=z as usize].copy_from_slice(body);
                b.generation += 1;
                b.etag = format!("\"0x{:x}\"", b.generation);
                let etag = b.etag.clone();
                drop(b);
                write!(w, "HTTP/1.1 201 Created\r\n{echo}ETag: {etag}\r\nContent-Length: 0\r\n\r\n")
            }
            _ => {
                drop(b);
                write!(w, "HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            }
        }
    }
}
