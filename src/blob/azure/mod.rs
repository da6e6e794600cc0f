//! An Azure blob as a block source, over the [`crate::http`] client.
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
//! - read-write: a blob lease taken at open, before the HEAD, renewed in the background, sent as
//!   `x-ms-lease-id` with every write and released when the blob is dropped (see [`lease`]).
//!
//! Consistency: the ETag read at open is sent as `If-Match` on every read and write. A blob replaced or
//! modified by someone else answers 412 and becomes [`Error::Changed`] instead of mixed data. Our own
//! Put Page changes the ETag too: writes are serialized and each adopts the ETag its response carries; a
//! read that raced with one of our writes (412 while a write was in flight) is retried with the new ETag.
//! Read-write on anything but a page blob is refused at open.
//!
//! This module builds the requests and runs them (`endpoint` addresses and authorizes them); `answers`
//! judges what comes back (the errors at open, the ranges); `lease` keeps us the only writer.
#![forbid(unsafe_code)]

mod answers;
mod endpoint;
pub mod lease;
mod properties;

pub use answers::{check_range_response, RangeError, RangeResponse, RangeVerdict};
pub use lease::{LeaseConfig, LeaseState, LeaseWatch};
pub use properties::{head, Properties};

use super::{check_range, BearerSource, BlockSource, Error, Result};
use crate::http::{self, Client};
use crate::secret::SecretString;
use endpoint::Endpoint;
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
    ep: Endpoint,
    /// Read-write only: our lease on the blob.
    lease: Option<lease::Lease>,
    size: u64,
    blob_type: BlobType,
    writable: bool,
    /// The ETag we expect; updated by our own writes (under `etag`'s lock).
    etag: Mutex<String>,
    /// Serializes writes so that each carries the ETag of the previous one.
    write_lock: Mutex<()>,
    /// Set when the blob was replaced under us (the supervisor then re-opens or gives up on it).
    fatal: super::FatalWatch,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What a blob URL must be before anything is sent to it (the open's and `doctor`'s HEAD alike): no query
/// (a SAS goes in `auth`), http or https, a bearer token never over plain http except to loopback, and an
/// `x-ms-version` that takes bearer tokens.
fn check_target(url: &str, auth: &Auth, version: &str) -> Result<()> {
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
    Ok(())
}

impl AzureBlob {
    /// Open `url` (no query: a SAS goes in `auth`): HEAD it, pin its ETag, check it can be used; read-write
    /// first takes the blob's lease (the default [`LeaseConfig`]).
    pub fn open(
        client: Client,
        url: &str,
        auth: Auth,
        version: &str,
        read_write: bool,
    ) -> Result<Self> {
        Self::open_with(client, url, auth, version, read_write, LeaseConfig::DEFAULT)
    }

    /// [`open`](Self::open) with the lease's duration and renewal interval (tests shorten them).
    pub fn open_with(
        client: Client,
        url: &str,
        auth: Auth,
        version: &str,
        read_write: bool,
        lease_config: LeaseConfig,
    ) -> Result<Self> {
        check_target(url, &auth, version)?;
        let ep = Endpoint {
            client,
            url: url.to_string(),
            auth,
            version: version.to_string(),
        };
        // The lease first: the properties (the ETag pinned) are then read while no one else can write.
        let lease = if read_write {
            Some(lease::Lease::acquire(&ep, lease_config)?)
        } else {
            None
        };
        let mut blob = Self {
            ep,
            lease,
            size: 0,
            blob_type: BlobType::BlockBlob,
            writable: read_write,
            etag: Mutex::new(String::new()),
            write_lock: Mutex::new(()),
            fatal: super::FatalWatch::new(),
        };
        let props = properties::read(&blob.ep)?;
        blob.size = props.size;
        blob.blob_type = match props.blob_type.as_str() {
            "PageBlob" => BlobType::PageBlob,
            "BlockBlob" => BlobType::BlockBlob,
            "AppendBlob" => BlobType::AppendBlob,
            other => return Err(Error::Protocol(format!("unknown x-ms-blob-type {other}"))),
        };
        *lock(&blob.etag) = props.etag;
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
        self.ep.client = self.ep.client.with_policy(policy);
    }

    /// The lease's state, live (read-write blobs only).
    pub fn lease(&self) -> Option<LeaseWatch> {
        self.lease.as_ref().map(lease::Lease::watch)
    }

    /// The ETag currently expected.
    pub fn etag(&self) -> String {
        lock(&self.etag).clone()
    }

    /// Report a replaced blob to `watch` (besides failing the request).
    pub fn watch_fatal(&mut self, watch: super::FatalWatch) {
        self.fatal = watch;
    }

    fn changed(&self, etag: String) -> Error {
        let e = Error::Changed {
            url: self.ep.url.clone(),
            etag,
        };
        self.fatal.set(crate::errors::chain(&e));
        e
    }

    /// Read `buf.len()` bytes at `offset`, conditional on `etag`. `Ok(None)` = 412.
    ///
    /// The body is bounded by the range asked for (a reply of another length is refused before more is
    /// read), and a `Content-Range` must name our range and the size seen at open: a blob that changed
    /// size is refused at once (defence in depth for a server that ignores `If-Match`).
    fn get_range(&self, offset: u64, buf: &mut [u8], etag: &str) -> Result<Option<()>> {
        let len = buf.len() as u64;
        let target = self.ep.target(None);
        let last = offset + len - 1;
        let range = format!("bytes={offset}-{last}");
        let r = self.ep.client.retry(|_| {
            let req = self
                .ep
                .request("GET", &target)?
                .header("x-ms-range", range.clone())
                .header("if-match", etag)
                .body_limit(len);
            // A 206 of the right length goes straight into `buf`; anything else into a body first, at most
            // `len` bytes of it.
            let (resp, filled) = self
                .ep
                .checked_into(&req, &[200, 206], Some((206, &mut *buf)))?;
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
                Err(e) => Err(bad(&target, &e.to_string())),
            }
        });
        match r {
            Ok(Ok(())) => Ok(Some(())),
            Ok(Err(total)) => Err(Error::Protocol(format!(
                "GET {}: the blob service says the blob is {total} bytes, but it was {} bytes at open; \
                 fix: the blob was replaced or resized while in use (or the service ignores If-Match): \
                 restart to use the new blob, and stop whoever else writes to it",
                self.ep.shown(),
                self.size
            ))),
            Err(e) if e.status() == Some(412) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn put_page(&self, offset: u64, data: &[u8], etag: &mut String) -> Result<()> {
        let target = self.ep.target(Some("comp=page"));
        let range = format!("bytes={}-{}", offset, offset + data.len() as u64 - 1);
        let mut failed_before = false;
        let r = self.ep.client.retry(|_| {
            let req = self
                .ep
                .request("PUT", &target)?
                .header("x-ms-page-write", "update")
                .header("x-ms-range", range.clone())
                .header("if-match", etag.clone());
            // Every write carries the lease (read-write blobs always have one).
            let req = match &self.lease {
                Some(l) => req.header("x-ms-lease-id", l.id().to_string()),
                None => req,
            }
            .body(data);
            let r = self.ep.checked(&req, &[200, 201]);
            if let Err(e) = &r {
                failed_before |= e.is_transient();
            }
            r
        });
        // Refused for a lease reason: the lease is lost (reported once), not retried.
        if let (Err(e), Some(l)) = (&r, &self.lease) {
            if let Some(lost) = l.refused_write(e) {
                return Err(lost);
            }
        }
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
        let target = self.ep.target(None);
        let range = format!("bytes={}-{}", offset, offset + data.len() as u64 - 1);
        let resp = self.ep.client.retry(|_| {
            let req = self
                .ep
                .request("GET", &target)?
                .header("x-ms-range", range.clone())
                .body_limit(data.len() as u64);
            self.ep.checked(&req, &[206])
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
        if let Some(l) = &self.lease {
            l.check()?;
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

impl Drop for AzureBlob {
    /// The owner is done with the blob (teardown, after the final flush; or an open that failed): give the
    /// lease back.
    fn drop(&mut self) {
        if let Some(l) = &self.lease {
            l.release();
        }
    }
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
    fn loopback_detection() {
        assert!(is_loopback_url("http://127.0.0.1:10000/a/b"));
        assert!(is_loopback_url("http://localhost/a"));
        assert!(is_loopback_url("http://[::1]:8/a"));
        assert!(!is_loopback_url("http://10.0.0.1/a"));
        assert!(!is_loopback_url("http://example.com/a"));
    }
}
