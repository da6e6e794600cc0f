//! Azurite, the real Azure Storage emulator, for the blob client's tests (`tests/blob_azurite.rs`).
//!
//! [`Azurite::start`] runs `azurite-blob` on 127.0.0.1 (a free port, in-memory persistence, no telemetry)
//! from the copy `cargo xtask setup` installs under `.cache/azurite/` (or `$ENCFS_AZURITE`), waits until it
//! answers an authorized request, and kills it on drop. A missing install is a test failure that names
//! `cargo xtask setup`, never a skip.
//!
//! Setting things up goes the way a storage administrator would: requests authorized with Shared Key
//! (the emulator's well-known `devstoreaccount1` key) to create containers, page and block blobs and write
//! their contents, and service SAS tokens signed with the same key. Both are written here from Azure's
//! published REST documentation ("Authorize with Shared Key", "Create a service SAS"):
//!
//! - Shared Key: `Authorization: SharedKey <account>:<base64 HMAC-SHA256(key, string-to-sign)>`, where the
//!   string to sign is the verb, eleven standard headers (Content-Length empty when zero), the `x-ms-*`
//!   headers lowercased and sorted as `name:value` lines, and the canonicalized resource
//!   `/<account><url path>` followed by each query parameter as `\n<name>:<value>`, names sorted;
//! - service SAS for a blob, `sv` from 2018-11-09 up to (not including) 2020-12-06: the signed fields
//!   `sp, st, se, /blob/<account>/<container>/<blob>, si, sip, spr, sv, sr, snapshot, rscc, rscd, rsce,
//!   rscl, rsct` joined by newlines, signed the same way; the token carries `sv, sr, sp, st, se, sig`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use base64::Engine;
use hmac::{KeyInit, Mac};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The emulator's account.
pub const ACCOUNT: &str = "devstoreaccount1";
/// The emulator's account key (public: Azurite's and Azure's emulator documentation give it).
pub const KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
/// The `x-ms-version` of our setup requests and the SAS `sv` (the product's default too).
pub const VERSION: &str = "2020-10-02";
/// The environment variable `cargo xtask test` sets: Azurite's install prefix (holding `node_modules`).
pub const ENV: &str = "ENCFS_AZURITE";

/// Where Azurite is installed: `$ENCFS_AZURITE`, else `<crate>/.cache/azurite` (where `cargo xtask setup`
/// puts it).
pub fn install_dir() -> PathBuf {
    std::env::var_os(ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/azurite"))
}

/// The `azurite-blob` executable; panics (fails the test) with what to run when it is missing.
pub fn executable() -> PathBuf {
    let dir = install_dir();
    let bin = dir.join("node_modules/.bin/azurite-blob");
    assert!(
        bin.exists(),
        "Azurite is not installed: {} does not exist. Run `cargo xtask setup` (it installs the pinned \
         azurite npm package under .cache/azurite/), or point {ENV} at an install prefix. These tests do \
         not skip without it.",
        bin.display()
    );
    bin
}

/// A running `azurite-blob`, killed on drop.
pub struct Azurite {
    child: Child,
    pub port: u16,
    workdir: PathBuf,
    /// With [`Azurite::start_oauth`]: the setup client's TLS configuration and the test CA's PEM file.
    tls: Option<(Arc<rustls::ClientConfig>, PathBuf)>,
}

impl std::fmt::Debug for Azurite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Azurite(127.0.0.1:{})", self.port)
    }
}

/// An HTTP response as the setup client sees it.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        super::header_in(&self.headers, name)
    }
}

impl Azurite {
    /// Start on a free loopback port and wait (up to 60 s) until it answers.
    pub fn start() -> Azurite {
        Self::launch(false)
    }

    /// Start over HTTPS (a certificate for 127.0.0.1 from a test CA, see [`Azurite::ca_bundle`]) with
    /// `--oauth basic`: Azurite then also accepts `Authorization: Bearer` tokens, checking what it documents
    /// (HTTPS only; a JWT with `iat`, `nbf` and `exp`, the lifetime current, an Entra issuer, a storage
    /// audience), not the signature.
    pub fn start_oauth() -> Azurite {
        Self::launch(true)
    }

    fn launch(oauth: bool) -> Azurite {
        let bin = executable();
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let mut last = String::new();
        // A free port is found by binding port 0; another process may take it before Azurite does, so
        // try a few times.
        for _ in 0..3 {
            last.clear();
            let workdir = std::env::temp_dir().join(format!(
                "encfs-azurite-{}-{}",
                std::process::id(),
                SEQ.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&workdir).expect("creating Azurite's work directory");
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("finding a free port")
                .port();
            let log = workdir.join("azurite.log");
            let out = File::create(&log).expect("creating azurite.log");
            let err = out.try_clone().expect("cloning the log handle");
            let tls = oauth.then(|| write_tls_files(&workdir));
            let mut cmd = Command::new(&bin);
            cmd.args(["--blobHost", "127.0.0.1", "--blobPort"])
                .arg(port.to_string());
            if oauth {
                cmd.args(["--oauth", "basic", "--cert"])
                    .arg(workdir.join("cert.pem"))
                    .arg("--key")
                    .arg(workdir.join("key.pem"));
            }
            cmd.args(["--inMemoryPersistence", "--disableTelemetry", "--silent"])
                // No --location: Azurite refuses it with in-memory persistence; the cwd holds its log only.
                .current_dir(&workdir)
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err);
            die_with_parent(&mut cmd);
            let child = cmd.spawn().unwrap_or_else(|e| {
                panic!(
                    "cannot start {} (node must be on PATH; `cargo xtask setup` installs Azurite): {e}",
                    bin.display()
                )
            });
            let mut az = Azurite {
                child,
                port,
                workdir: workdir.clone(),
                tls,
            };
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                if let Ok(Some(status)) = az.child.try_wait() {
                    last = format!(
                        "azurite-blob exited ({status}): {}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                    break;
                }
                if let Ok(r) = az.try_shared_key("GET", &format!("/{ACCOUNT}?comp=list"), &[], &[])
                {
                    assert_eq!(
                        r.status,
                        200,
                        "Azurite answered List Containers with {}: {}",
                        r.status,
                        String::from_utf8_lossy(&r.body)
                    );
                    return az;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            if last.is_empty() {
                last = format!(
                    "azurite-blob did not answer on port {port} within 60 s: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
        }
        panic!("{last}");
    }

    /// `http://127.0.0.1:PORT`, or `https://` when started with [`Azurite::start_oauth`].
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The test CA (PEM) to trust for an HTTPS emulator: the manifest's `[network] ca_bundle`.
    pub fn ca_bundle(&self) -> Option<&Path> {
        self.tls.as_ref().map(|(_, p)| p.as_path())
    }

    /// The blob's URL (no query).
    pub fn blob_url(&self, container: &str, blob: &str) -> String {
        format!("{}/{ACCOUNT}/{container}/{blob}", self.endpoint())
    }

    /// One request authorized with Shared Key; `path_query` starts at the account (`/devstoreaccount1/...`).
    pub fn shared_key(
        &self,
        method: &str,
        path_query: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Resp {
        self.try_shared_key(method, path_query, headers, body)
            .unwrap_or_else(|e| panic!("{method} {path_query}: {e}"))
    }

    fn try_shared_key(
        &self,
        method: &str,
        path_query: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<Resp> {
        let mut all: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
            .collect();
        all.push(("x-ms-date".into(), rfc1123(SystemTime::now())));
        all.push(("x-ms-version".into(), VERSION.into()));
        let to_sign = string_to_sign(method, path_query, &all, body.len());
        let sig = sign(&to_sign);
        all.push(("authorization".into(), format!("SharedKey {ACCOUNT}:{sig}")));
        http(
            self.port,
            self.tls.as_ref().map(|(c, _)| c),
            method,
            path_query,
            &all,
            body,
        )
    }

    /// Create a container; `public` gives anonymous read access to its blobs.
    pub fn create_container(&self, name: &str, public: bool) {
        let mut h = vec![];
        if public {
            h.push(("x-ms-blob-public-access", "blob"));
        }
        let r = self.shared_key(
            "PUT",
            &format!("/{ACCOUNT}/{name}?restype=container"),
            &h,
            &[],
        );
        assert_eq!(r.status, 201, "Create Container {name}: {r:?}");
    }

    /// Create a page blob holding `data` (its length a multiple of 512), written with Put Page.
    pub fn put_page_blob(&self, container: &str, blob: &str, data: &[u8]) {
        assert_eq!(data.len() % 512, 0, "page blobs are 512-byte aligned");
        let len = data.len().to_string();
        let path = format!("/{ACCOUNT}/{container}/{blob}");
        let r = self.shared_key(
            "PUT",
            &path,
            &[
                ("x-ms-blob-type", "PageBlob"),
                ("x-ms-blob-content-length", &len),
            ],
            &[],
        );
        assert_eq!(r.status, 201, "Put Blob (page) {path}: {r:?}");
        self.write_pages(container, blob, 0, data);
    }

    /// Put Page (`update`) at `offset` (512-aligned), in requests of at most 4 MiB.
    pub fn write_pages(&self, container: &str, blob: &str, offset: u64, data: &[u8]) -> Resp {
        let path = format!("/{ACCOUNT}/{container}/{blob}?comp=page");
        let mut at = offset;
        let mut last = None;
        for chunk in data.chunks(4 << 20) {
            let range = format!("bytes={}-{}", at, at + chunk.len() as u64 - 1);
            let r = self.shared_key(
                "PUT",
                &path,
                &[("x-ms-page-write", "update"), ("x-ms-range", &range)],
                chunk,
            );
            assert_eq!(r.status, 201, "Put Page {path} {range}: {r:?}");
            at += chunk.len() as u64;
            last = Some(r);
        }
        last.expect("no data to write")
    }

    /// Create (or replace) a block blob holding `data`, in one Put Blob.
    pub fn put_block_blob(&self, container: &str, blob: &str, data: &[u8]) -> Resp {
        let path = format!("/{ACCOUNT}/{container}/{blob}");
        let r = self.shared_key("PUT", &path, &[("x-ms-blob-type", "BlockBlob")], data);
        assert_eq!(r.status, 201, "Put Blob (block) {path}: {r:?}");
        r
    }

    /// The whole blob, read with Shared Key (independently of the client under test).
    pub fn get_blob(&self, container: &str, blob: &str) -> Vec<u8> {
        let path = format!("/{ACCOUNT}/{container}/{blob}");
        let r = self.shared_key("GET", &path, &[], &[]);
        assert_eq!(r.status, 200, "Get Blob {path}: status {}", r.status);
        r.body
    }

    /// Lease Blob with Shared Key (`x-ms-lease-action: action`, plus `headers`): the answer as is. A test
    /// breaks a lease this way, as an administrator would.
    pub fn lease(
        &self,
        container: &str,
        blob: &str,
        action: &str,
        headers: &[(&str, &str)],
    ) -> Resp {
        let mut h = vec![("x-ms-lease-action", action)];
        h.extend_from_slice(headers);
        let path = format!("/{ACCOUNT}/{container}/{blob}?comp=lease");
        self.shared_key("PUT", &path, &h, &[])
    }

    /// Get Blob Properties with Shared Key.
    pub fn properties(&self, container: &str, blob: &str) -> Resp {
        let path = format!("/{ACCOUNT}/{container}/{blob}");
        let r = self.shared_key("HEAD", &path, &[], &[]);
        assert_eq!(r.status, 200, "Get Blob Properties {path}: {r:?}");
        r
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.workdir);
    }
}

/// A byte stream, plain or TLS.
trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// Write `cert.pem` (a 127.0.0.1 leaf and its intermediate), `key.pem` and `ca.pem` (the root) into `dir`
/// for Azurite's `--cert`/`--key`; return the setup client's TLS configuration and the CA file.
fn write_tls_files(dir: &Path) -> (Arc<rustls::ClientConfig>, PathBuf) {
    let pki = super::pki::web_pki("Azurite test", "unused.invalid");
    let chain: String = pki
        .tls_chain
        .iter()
        .map(|c| encfs_init::attest::collateral::to_pem(c))
        .collect();
    std::fs::write(dir.join("cert.pem"), chain).unwrap();
    std::fs::write(dir.join("key.pem"), &pki.tls_key_pem).unwrap();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, &pki.root_pem).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.root_der.clone().into()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    (Arc::new(config), ca)
}

/// An Entra-style access token (a JWT) as Azurite's OAuth check reads it: `aud`, `iss`, `iat`, `nbf`, `exp`
/// (Unix seconds). The signature is a placeholder: Azurite does not verify it, and neither may the client.
pub fn bearer_jwt(aud: &str, iss: &str, nbf: u64, exp: u64) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let header = b64(r#"{"alg":"RS256","typ":"JWT"}"#);
    let claims = b64(&format!(
        r#"{{"aud":"{aud}","iss":"{iss}","iat":{nbf},"nbf":{nbf},"exp":{exp},"oid":"00000000-0000-0000-0000-000000000001"}}"#
    ));
    format!("{header}.{claims}.{}", b64("not checked"))
}

/// Kill Azurite if the test process dies without running `Drop` (SIGKILL, abort).
fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and only makes one async-signal-safe
    // system call (prctl); it allocates nothing and touches no lock.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from)
        });
    }
}

/// A service SAS for one blob (`sr=b`), signed with the account key: the query string, without `?`.
pub fn blob_sas(
    container: &str,
    blob: &str,
    permissions: &str,
    start: SystemTime,
    expiry: SystemTime,
) -> String {
    let (st, se) = (iso8601(start), iso8601(expiry));
    let resource = format!("/blob/{ACCOUNT}/{container}/{blob}");
    // sp, st, se, canonicalized resource, si, sip, spr, sv, sr, snapshot time, rscc, rscd, rsce, rscl, rsct.
    let fields = [
        permissions,
        &st,
        &se,
        &resource,
        "",
        "",
        "",
        VERSION,
        "b",
        "",
        "",
        "",
        "",
        "",
        "",
    ];
    let sig = sign(&fields.join("\n"));
    format!(
        "sv={VERSION}&sr=b&sp={permissions}&st={}&se={}&sig={}",
        encode(&st),
        encode(&se),
        encode(&sig)
    )
}

/// A SAS valid from an hour ago for a day.
pub fn valid_blob_sas(container: &str, blob: &str, permissions: &str) -> String {
    let now = SystemTime::now();
    blob_sas(
        container,
        blob,
        permissions,
        now - Duration::from_secs(3600),
        now + Duration::from_secs(86400),
    )
}

/// Base64 HMAC-SHA256 of `text` under the account key.
fn sign(text: &str) -> String {
    let key = base64::engine::general_purpose::STANDARD
        .decode(KEY)
        .expect("the account key is base64");
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).expect("any key length works");
    mac.update(text.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The Shared Key string to sign (Blob service, version 2015-02-21 and later).
fn string_to_sign(
    method: &str,
    path_query: &str,
    headers: &[(String, String)],
    body_len: usize,
) -> String {
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    };
    let length = if body_len == 0 {
        String::new()
    } else {
        body_len.to_string()
    };
    let mut s = format!("{method}\n");
    for standard in ["content-encoding", "content-language"] {
        s.push_str(get(standard));
        s.push('\n');
    }
    s.push_str(&length);
    s.push('\n');
    for standard in [
        "content-md5",
        "content-type",
        "date",
        "if-modified-since",
        "if-match",
        "if-none-match",
        "if-unmodified-since",
        "range",
    ] {
        s.push_str(get(standard));
        s.push('\n');
    }
    let mut ms: Vec<&(String, String)> = headers
        .iter()
        .filter(|(k, _)| k.starts_with("x-ms-"))
        .collect();
    ms.sort_by(|a, b| a.0.cmp(&b.0));
    for (k, v) in ms {
        s.push_str(&format!("{k}:{}\n", v.trim()));
    }
    let (path, query) = path_query.split_once('?').unwrap_or((path_query, ""));
    s.push_str(&format!("/{ACCOUNT}{path}"));
    let mut params: Vec<(String, &str)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_ascii_lowercase(), v)
        })
        .collect();
    params.sort();
    for (k, v) in params {
        s.push_str(&format!("\n{k}:{v}"));
    }
    s
}

/// Percent-encode a query value (unreserved characters kept): the product's own encoder.
pub use encfs_init::keyrelease::token::pct as encode;

/// (year, month, day, hour, minute, second, weekday 0 = Sunday) in UTC.
fn civil(t: SystemTime) -> (i64, u32, u32, u32, u32, u32, u32) {
    let secs = t.duration_since(UNIX_EPOCH).expect("after 1970").as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    let weekday = ((days + 4).rem_euclid(7)) as u32; // 1970-01-01 was a Thursday
                                                     // Days since 1970-01-01 to a proleptic Gregorian date, counting in 400-year eras from 0000-03-01.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        month,
        day,
        (rem / 3600) as u32,
        (rem % 3600 / 60) as u32,
        (rem % 60) as u32,
        weekday,
    )
}

/// `2026-11-23T23:22:09Z`.
pub fn iso8601(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s, _) = civil(t);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// `Mon, 23 Nov 2026 23:22:09 GMT`.
pub fn rfc1123(t: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, mo, d, h, mi, s, wd) = civil(t);
    format!(
        "{}, {d:02} {} {y:04} {h:02}:{mi:02}:{s:02} GMT",
        DAYS[wd as usize],
        MONTHS[mo as usize - 1]
    )
}

/// A minimal HTTP/1.1 exchange (one request per connection): full control over which headers are sent,
/// since Shared Key signs them.
fn http(
    port: u16,
    tls: Option<&Arc<rustls::ClientConfig>>,
    method: &str,
    path_query: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> std::io::Result<Resp> {
    let tcp = TcpStream::connect(("127.0.0.1", port))?;
    tcp.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut s: Box<dyn ReadWrite> = match tls {
        None => Box::new(tcp),
        Some(config) => {
            let name = rustls::pki_types::ServerName::try_from("127.0.0.1")
                .map_err(std::io::Error::other)?;
            let conn = rustls::ClientConnection::new(config.clone(), name)
                .map_err(std::io::Error::other)?;
            Box::new(rustls::StreamOwned::new(conn, tcp))
        }
    };
    let mut head = format!(
        "{method} {path_query} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n"
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || matches!(method, "PUT" | "POST") {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    s.flush()?;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|x| x.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let headers: Vec<(String, String)> = super::read_headers(&mut r)?
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    let find = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let mut body = Vec::new();
    if method == "HEAD" || status == 204 || status == 304 {
        // no body
    } else if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            r.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                .map_err(|_| std::io::Error::other("bad chunk size"))?;
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk)?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(n) = find("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(n, 0);
        r.read_exact(&mut body)?;
    } else {
        r.read_to_end(&mut body)?;
    }
    Ok(Resp {
        status,
        headers,
        body,
    })
}
