//! An Azure blob as a block source, over the [`http`](crate::http) client.
//!
//! Wire protocol (Blob service REST API; see the upstream spec §4.4):
//! - open: `HEAD <blob>` (Get Blob Properties) → `Content-Length` (size), `x-ms-blob-type`
//!   (`PageBlob`/`BlockBlob`/`AppendBlob`), `ETag`;
//! - read: `GET <blob>` with `x-ms-range: bytes=a-b` → 206 with exactly `b-a+1` bytes (requests never pass
//!   the end: callers clip the last block);
//! - write: `PUT <blob>?comp=page` with `x-ms-page-write: update`, `x-ms-range`, 512-byte aligned,
//!   at most 4 MiB per request → 201 with the blob's new `ETag`;
//! - every request: `x-ms-version` (from the plan), a random `x-ms-client-request-id` (an echo must match),
//!   auth (nothing, the SAS appended to the query, or `Authorization: Bearer` — Azure needs
//!   `x-ms-version` ≥ 2017-11-09 for bearer tokens, and tokens are only sent over https or to loopback).
//!
//! Consistency: the ETag read at open is sent as `If-Match` on every read and write. A blob replaced or
//! modified by someone else answers 412 and becomes [`Error::Changed`] instead of mixed data. Our own
//! Put Page changes the ETag too: writes are serialized and each adopts the ETag its response carries; a
//! read that raced with one of our writes (412 while a write was in flight) is retried with the new ETag.
//! Read-write on anything but a page blob is refused at open.
#![forbid(unsafe_code)]

use super::{check_range, BearerSource, BlockSource, Error, Result};
use crate::http::{self, Client, Request};
use crate::secret::SecretString;
use std::sync::{Arc, Mutex, MutexGuard};

/// Put Page limit per request.
pub const MAX_PUT_PAGE: u64 = 4 << 20;
/// Page blob alignment.
pub const PAGE: u64 = 512;
/// Oldest `x-ms-version` that accepts bearer tokens.
pub const MIN_BEARER_VERSION: &str = "2017-11-09";

/// How requests are authorized.
#[derive(Debug, Clone)]
pub enum Auth {
    /// Public blob.
    Anonymous,
    /// A shared access signature (the query string, without `?`).
    Sas(Arc<SecretString>),
    /// `Authorization: Bearer <token>`.
    Bearer(Arc<dyn BearerSource>),
}

/// `x-ms-blob-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobType {
    /// Random-access pages: readable and writable.
    PageBlob,
    /// Blocks: readable only here.
    BlockBlob,
    /// Append blob: readable only here.
    AppendBlob,
}

/// An open blob.
#[derive(Debug)]
pub struct AzureBlob {
    client: Client,
    url: String,
    auth: Auth,
    version: String,
    size: u64,
    blob_type: BlobType,
    writable: bool,
    /// The ETag we expect; updated by our own writes (under `etag`'s lock).
    etag: Mutex<String>,
    /// Serializes writes so that each carries the ETag of the previous one.
    write_lock: Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl AzureBlob {
    /// Open `url` (no query: a SAS goes in `auth`): HEAD it, pin its ETag, check it can be used.
    pub fn open(
        client: Client,
        url: &str,
        auth: Auth,
        version: &str,
        read_write: bool,
    ) -> Result<Self> {
        if url.contains(['?', '#']) {
            return Err(Error::Unsupported(format!(
                "blob URL {} must not carry a query; give a SAS separately",
                crate::redact::url(url)
            )));
        }
        let https = url.starts_with("https://");
        if !https && !url.starts_with("http://") {
            return Err(Error::Unsupported(format!(
                "blob URL {url} must be http:// or https://"
            )));
        }
        if let Auth::Bearer(_) = auth {
            if !https && !is_loopback_url(url) {
                return Err(Error::Unsupported(format!(
                    "refusing to send a bearer token over plain http to {url}"
                )));
            }
            if version < MIN_BEARER_VERSION {
                return Err(Error::Unsupported(format!(
                    "x-ms-version {version} is too old for bearer tokens (needs {MIN_BEARER_VERSION} or later)"
                )));
            }
        }
        let mut blob = Self {
            client,
            url: url.to_string(),
            auth,
            version: version.to_string(),
            size: 0,
            blob_type: BlobType::BlockBlob,
            writable: read_write,
            etag: Mutex::new(String::new()),
            write_lock: Mutex::new(()),
        };
        let target = blob.target(None);
        let resp = blob
            .client
            .retry(|_| {
                let req = blob.request("HEAD", &target)?;
                blob.checked(&req, &[200])
            })
            .map_err(|e| open_error(e, url, &blob.auth))?;
        let header = |n: &str| {
            resp.header(n).ok_or_else(|| {
                Error::Protocol(format!("HEAD {}: no {n} header", crate::redact::url(url)))
            })
        };
        blob.size = header("content-length")?
            .trim()
            .parse()
            .map_err(|_| Error::Protocol("HEAD: invalid Content-Length".into()))?;
        blob.blob_type = match header("x-ms-blob-type")? {
            "PageBlob" => BlobType::PageBlob,
            "BlockBlob" => BlobType::BlockBlob,
            "AppendBlob" => BlobType::AppendBlob,
            other => return Err(Error::Protocol(format!("unknown x-ms-blob-type {other}"))),
        };
        *lock(&blob.etag) = header("etag")?.to_string();
        if read_write && blob.blob_type != BlobType::PageBlob {
            return Err(Error::Unsupported(format!(
                "blob {url} is a {:?}: read-write mounts need a page blob (Put Page); mount it read-only \
                 or convert it to a page blob",
                blob.blob_type
            )));
        }
        Ok(blob)
    }

    /// The blob type found at open.
    pub fn blob_type(&self) -> BlobType {
        self.blob_type
    }

    /// Retry every later request with `policy` (the data path's, after an open that used the client's).
    pub fn set_retry_policy(&mut self, policy: http::RetryPolicy) {
        self.client = self.client.with_policy(policy);
    }

    /// The ETag currently expected.
    pub fn etag(&self) -> String {
        lock(&self.etag).clone()
    }

    /// The URL with the SAS and `comp` appended.
    fn target(&self, comp: Option<&str>) -> String {
        let mut q: Vec<&str> = Vec::new();
        if let Some(c) = comp {
            q.push(c);
        }
        if let Auth::Sas(s) = &self.auth {
            q.push(s.expose());
        }
        if q.is_empty() {
            self.url.clone()
        } else {
            format!("{}?{}", self.url, q.join("&"))
        }
    }

    fn request<'a>(&self, method: &'static str, target: &'a str) -> http::Result<Request<'a>> {
        let mut req = Request::new(method, target)
            .header("x-ms-version", self.version.clone())
            .header("x-ms-client-request-id", request_id());
        if let Auth::Bearer(t) = &self.auth {
            let token = t.token().map_err(|e| http::Error::Transport {
                method: method.to_string(),
                url: crate::redact::url(target),
                kind: http::TransportKind::Request,
                detail: format!("no bearer token: {e}"),
            })?;
            req = req.header("authorization", format!("Bearer {}", token.expose()));
        }
        Ok(req)
    }

    /// One attempt with the request-id echo check.
    fn checked(&self, req: &Request<'_>, accept: &[u16]) -> http::Result<http::Response> {
        self.checked_into(req, accept, None).map(|(resp, _)| resp)
    }

    /// [`checked`](Self::checked) with [`Client::send_once_into`]'s direct body read.
    fn checked_into(
        &self,
        req: &Request<'_>,
        accept: &[u16],
        into: Option<(u16, &mut [u8])>,
    ) -> http::Result<(http::Response, bool)> {
        let (resp, filled) = self.client.send_once_into(req, accept, into)?;
        let sent = req.header_value("x-ms-client-request-id");
        match resp.header("x-ms-client-request-id") {
            Some(echo) if Some(echo) != sent => Err(http::Error::BadResponse {
                method: req.method().to_string(),
                url: req.shown_url(),
                detail: "x-ms-client-request-id echo does not match the request".into(),
            }),
            _ => Ok((resp, filled)),
        }
    }

    fn changed(&self, etag: String) -> Error {
        Error::Changed {
            url: self.url.clone(),
            etag,
        }
    }

    /// Read `buf.len()` bytes at `offset`, conditional on `etag`. `Ok(None)` = 412.
    ///
    /// The body is bounded by the range asked for (a reply of another length is refused before more is
    /// read), and a `Content-Range` must name our range and the size seen at open: a blob that changed
    /// size is refused at once (defence in depth for a server that ignores `If-Match`).
    fn get_range(&self, offset: u64, buf: &mut [u8], etag: &str) -> Result<Option<()>> {
        let len = buf.len() as u64;
        let target = self.target(None);
        let last = offset + len - 1;
        let range = format!("bytes={offset}-{last}");
        let r = self.client.retry(|_| {
            let req = self
                .request("GET", &target)?
                .header("x-ms-range", range.clone())
                .header("if-match", etag)
                .body_limit(len);
            // A 206 of the right length goes straight into `buf`; anything else into a body first, at most
            // `len` bytes of it.
            let (resp, filled) = self.checked_into(&req, &[200, 206], Some((206, &mut *buf)))?;
            let got = RangeResponse {
                status: resp.status,
                content_range: resp.header("content-range"),
                body: &resp.body,
                filled,
            };
            match check_range_response(&got, offset, buf.len(), self.size) {
                Ok(RangeVerdict::Filled) => Ok(Ok(())),
                Ok(RangeVerdict::Copy(body)) => {
                    buf.copy_from_slice(body);
                    Ok(Ok(()))
                }
                Ok(RangeVerdict::SizeChanged(total)) => Ok(Err(total)),
                Err(detail) => Err(bad(&target, &detail)),
            }
        });
        match r {
            Ok(Ok(())) => Ok(Some(())),
            Ok(Err(total)) => Err(Error::Protocol(format!(
                "GET {}: the blob service says the blob is {total} bytes, but it was {} bytes at open; \
                 fix: the blob was replaced or resized while in use (or the service ignores If-Match): \
                 restart to use the new blob, and stop whoever else writes to it",
                crate::redact::url(&self.url),
                self.size
            ))),
            Err(e) if e.status() == Some(412) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn put_page(&self, offset: u64, data: &[u8], etag: &mut String) -> Result<()> {
        let target = self.target(Some("comp=page"));
        let range = format!("bytes={}-{}", offset, offset + data.len() as u64 - 1);
        let mut failed_before = false;
        let r = self.client.retry(|_| {
            let req = self
                .request("PUT", &target)?
                .header("x-ms-page-write", "update")
                .header("x-ms-range", range.clone())
                .header("if-match", etag.clone())
                .body(data);
            let r = self.checked(&req, &[200, 201]);
            if let Err(e) = &r {
                failed_before |= e.is_transient();
            }
            r
        });
        match r {
            Ok(resp) => {
                let new = resp
                    .header("etag")
                    .ok_or_else(|| Error::Protocol("Put Page answered without an ETag".into()))?;
                *etag = new.to_string();
                Ok(())
            }
            Err(e) if e.status() == Some(412) && failed_before => {
                // An earlier attempt may have landed before its reply was lost: if the blob now holds
                // exactly our data, adopt its ETag; otherwise someone else wrote to it.
                self.adopt_if_ours(offset, data, etag)
            }
            Err(e) if e.status() == Some(412) => Err(self.changed(etag.clone())),
            Err(e) => Err(e.into()),
        }
    }

    fn adopt_if_ours(&self, offset: u64, data: &[u8], etag: &mut String) -> Result<()> {
        let target = self.target(None);
        let range = format!("bytes={}-{}", offset, offset + data.len() as u64 - 1);
        let resp = self.client.retry(|_| {
            let req = self
                .request("GET", &target)?
                .header("x-ms-range", range.clone())
                .body_limit(data.len() as u64);
            self.checked(&req, &[206])
        })?;
        match resp.header("etag") {
            Some(new) if resp.body == data => {
                *etag = new.to_string();
                Ok(())
            }
            _ => Err(self.changed(etag.clone())),
        }
    }
}

/// A 404 at open becomes [`Error::NotFound`], a 401/403 [`Error::Denied`] (each with the fix); anything
/// else stays an HTTP error.
fn open_error(e: http::Error, url: &str, auth: &Auth) -> Error {
    match e {
        http::Error::Status {
            status: 404, code, ..
        } => Error::NotFound {
            url: crate::redact::url(url),
            code,
        },
        http::Error::Status {
            status: status @ (401 | 403),
            code,
            ..
        } => Error::Denied {
            url: crate::redact::url(url),
            status,
            code,
            how: match auth {
                Auth::Sas(_) => "SAS",
                Auth::Bearer(_) => "bearer token",
                Auth::Anonymous => "anonymous request",
            },
        },
        e => e.into(),
    }
}

/// `Content-Range: bytes a-z/total` (total may be `*`) → `(a, z, total)`; `None` when malformed.
fn parse_content_range(v: &str) -> Option<(u64, u64, Option<u64>)> {
    let (span, total) = v.trim().strip_prefix("bytes ")?.split_once('/')?;
    let (a, z) = span.split_once('-')?;
    let num = |s: &str| s.trim().parse::<u64>().ok();
    let total = match total.trim() {
        "*" => None,
        t => Some(num(t)?),
    };
    Some((num(a)?, num(z)?, total))
}

/// The parts of an answer to a ranged GET that [`check_range_response`] judges.
#[derive(Debug, Clone, Copy)]
pub struct RangeResponse<'a> {
    /// Status: 200 or 206 (the client refused any other).
    pub status: u16,
    /// The `Content-Range` header, if any.
    pub content_range: Option<&'a str>,
    /// The body read into memory (empty when `filled`); the client read at most the range's length.
    pub body: &'a [u8],
    /// A 206 whose `Content-Length` was exactly the range's length was read straight into the buffer.
    pub filled: bool,
}

/// What [`check_range_response`] found acceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeVerdict<'a> {
    /// The data is already in the caller's buffer.
    Filled,
    /// Copy these bytes (exactly the range's length).
    Copy(&'a [u8]),
    /// The service names another blob size than the one seen at open (this many bytes): not a transient
    /// failure, the blob was replaced or resized.
    SizeChanged(u64),
}

/// Check the answer to `GET` of `len` bytes at `offset` of a `size`-byte blob; `Err` says what is wrong.
/// A 206's `Content-Range`, when present, must name exactly the range asked for, and its total (unless `*`)
/// the size seen at open. A 200 (a server that ignores ranges) is usable only when the range is the whole blob.
pub fn check_range_response<'a>(
    resp: &RangeResponse<'a>,
    offset: u64,
    len: usize,
    size: u64,
) -> std::result::Result<RangeVerdict<'a>, String> {
    let last = offset.saturating_add(len as u64).saturating_sub(1);
    if resp.status == 206 {
        if let Some(cr) = resp.content_range {
            match parse_content_range(cr) {
                Some((a, z, total)) if a == offset && z == last => {
                    if let Some(total) = total.filter(|t| *t != size) {
                        return Ok(RangeVerdict::SizeChanged(total));
                    }
                }
                _ => return Err(format!("Content-Range {cr} for bytes={offset}-{last}")),
            }
        }
        if resp.filled {
            return Ok(RangeVerdict::Filled);
        }
    } else if resp.body.len() as u64 != size || offset != 0 {
        // A server that ignores ranges sends the whole blob: usable only when that is what we asked for.
        return Err("200 without the whole blob".into());
    }
    if resp.body.len() != len {
        return Err(format!("{} bytes for a {len}-byte range", resp.body.len()));
    }
    Ok(RangeVerdict::Copy(resp.body))
}

fn bad(target: &str, detail: &str) -> http::Error {
    http::Error::BadResponse {
        method: "GET".into(),
        url: crate::redact::url(target),
        detail: detail.to_string(),
    }
}

impl BlockSource for AzureBlob {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_only(&self) -> bool {
        !self.writable
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        check_range(offset, buf.len() as u64, self.size)?;
        if buf.is_empty() {
            return Ok(());
        }
        let mut etag = self.etag();
        for _ in 0..4 {
            if self.get_range(offset, buf, &etag)?.is_some() {
                return Ok(());
            }
            // 412: wait for any write of ours in flight, then see whether it moved the ETag.
            drop(lock(&self.write_lock));
            let now = self.etag();
            if now == etag {
                return Err(self.changed(etag));
            }
            etag = now;
        }
        Err(self.changed(etag))
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> Result<()> {
        if !self.writable {
            return Err(Error::ReadOnly);
        }
        let len = data.len() as u64;
        check_range(offset, len, self.size)?;
        if offset % PAGE != 0 || len % PAGE != 0 {
            return Err(Error::Unaligned {
                offset,
                len,
                align: PAGE,
            });
        }
        let _serial = lock(&self.write_lock);
        let mut etag = self.etag();
        let step = usize::try_from(MAX_PUT_PAGE).unwrap_or(usize::MAX);
        let mut at = offset;
        for chunk in data.chunks(step) {
            let r = self.put_page(at, chunk, &mut etag);
            *lock(&self.etag) = etag.clone();
            r?;
            at += chunk.len() as u64;
        }
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        // Put Page is durable when it is acknowledged.
        Ok(())
    }

    fn write_alignment(&self) -> u64 {
        PAGE
    }
}

/// A random UUID v4 for `x-ms-client-request-id`.
fn request_id() -> String {
    let mut b = [0u8; 16];
    // Without randomness the id is only less useful for tracing; requests still work.
    let _ = getrandom::fill(&mut b);
    crate::uuid::v4(b)
}

/// Whether the URL's host is a loopback address (`127.0.0.0/8`, `[::1]`, `localhost`).
pub fn is_loopback_url(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let auth = rest.split('/').next().unwrap_or("");
    let host = if let Some(v6) = auth.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        auth.rsplit_once(':').map_or(auth, |(h, _)| h)
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_uuid_v4() {
        let id = request_id();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert_ne!(id, request_id());
    }

    #[test]
    fn a_404_at_open_names_the_blob_and_the_fix() {
        let status = |status| http::Error::Status {
            method: "HEAD".into(),
            url: "http://h/c/b?<redacted>".into(),
            status,
            code: Some("BlobNotFound".into()),
            snippet: String::new(),
            retry_after: None,
        };
        let url = "https://acct.blob.core.windows.net/c/b";
        let msg = open_error(status(404), url, &Auth::Anonymous).to_string();
        assert_eq!(
            msg.split("; fix:").next(),
            Some("https://acct.blob.core.windows.net/c/b: no such blob (HTTP 404 BlobNotFound)")
        );
        assert!(msg.contains("fix: check the storage account, container and blob names"));
        assert!(matches!(
            open_error(status(500), "u", &Auth::Anonymous),
            Error::Http(_)
        ));
    }

    #[test]
    fn a_401_or_403_at_open_says_which_credential_and_what_to_check() {
        let status = |status, code: &str| http::Error::Status {
            method: "HEAD".into(),
            url: "http://h/c/b?<redacted>".into(),
            status,
            code: Some(code.into()),
            snippet: String::new(),
            retry_after: None,
        };
        let url = "https://acct.blob.core.windows.net/c/b";
        let sas = Auth::Sas(Arc::new(SecretString::new("sv=1&sig=c2VjcmV0".into())));
        let msg = open_error(status(403, "AuthenticationFailed"), url, &sas).to_string();
        assert!(
            msg.starts_with("https://acct.blob.core.windows.net/c/b: the blob service refused our SAS (HTTP 403 AuthenticationFailed); fix: check the SAS: its expiry (se=)"),
            "{msg}"
        );
        assert!(!msg.contains("c2VjcmV0"), "the SAS never appears: {msg}");
        let msg = open_error(
            status(401, "NoAuthenticationInformation"),
            url,
            &Auth::Anonymous,
        )
        .to_string();
        assert!(
            msg.contains("refused our anonymous request (HTTP 401"),
            "{msg}"
        );
        assert!(msg.contains("does not allow anonymous reads"), "{msg}");
    }

    #[test]
    fn content_ranges_parse_or_are_refused() {
        assert_eq!(
            parse_content_range("bytes 0-511/4096"),
            Some((0, 511, Some(4096)))
        );
        assert_eq!(parse_content_range("bytes 5-9/*"), Some((5, 9, None)));
        for bad in [
            "bytes 0-511",
            "0-511/4096",
            "bytes 0-/4096",
            "bytes -1-5/4096",
            "bytes 0-511/18446744073709551616",
            "bytes 0-511/x",
        ] {
            assert_eq!(parse_content_range(bad), None, "{bad}");
        }
    }

    #[test]
    fn loopback_detection() {
        assert!(is_loopback_url("http://127.0.0.1:10000/a/b"));
        assert!(is_loopback_url("http://localhost/a"));
        assert!(is_loopback_url("http://[::1]:8/a"));
        assert!(!is_loopback_url("http://10.0.0.1/a"));
        assert!(!is_loopback_url("http://example.com/a"));
    }
}
