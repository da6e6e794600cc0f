//! The one HTTP client of the product: ureq over rustls (ring), built from the manifest's
//! [`crate::manifest::NetworkPlan`].
//!
//! Contract:
//! - TLS trusts the compiled-in Mozilla roots plus, when configured, an extra PEM CA bundle (a scratch
//!   image has no system store). No redirects are followed (a redirect could carry a bearer token to
//!   another host).
//! - Every request has the plan's connect timeout and an overall timeout covering headers and body, so a
//!   stalled server cannot hang a caller. The User-Agent is `encfs-init/<version>`.
//! - [`Client::send`] retries transient failures ([`Error::is_transient`]) per [`retry::RetryPolicy`];
//!   [`Client::retry`] does the same for a caller's own attempt closure (to retry on a bad body, too).
//!   [`http::stop_retrying`](stop_retrying) ends every retry loop at shutdown.
//! - Protocol modules that talk JSON to a service (key release, identity tokens, AMD collateral) see the
//!   client through [`Exchange`] (2xx or an error), so their tests can put a fake behind it.
//! - Errors carry the method, the URL with its query redacted, the status and a short body snippet; header
//!   values never appear in an error or a log line (they may hold a bearer token).
//!
//! ureq itself logs request URIs (query included) at `trace` level: the logger must keep the `ureq`
//! target at `debug` or below wherever SAS URLs are used.
#![forbid(unsafe_code)]

pub mod error;
pub mod retry;
mod tls;

pub use error::{snippet, Error, Result, TransportKind};
pub use retry::{stop_retrying, RetryPolicy};
pub use tls::{ca_bundle_certs, read_ca_bundle};
/// Response headers.
pub use ureq::http::HeaderMap;

use crate::manifest::NetworkPlan;
use std::fmt;
use std::io::Read;
use std::time::Duration;

/// Backoff before the first retry (doubled per retry up to the plan's `retry_backoff_max`).
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(200);

/// Idle keep-alive connections kept per host: enough for the blob cache's parallel range GETs.
const IDLE_PER_HOST: usize = 32;

/// Longest `Retry-After` taken from a server: the longest deadline or backoff the manifest allows.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Default cap on a response body a caller reads into memory.
pub const DEFAULT_BODY_LIMIT: u64 = 1 << 20;

/// Every 2xx status: what [`Exchange::exchange`] accepts.
pub const SUCCESS: [u16; 100] = {
    let mut all = [0u16; 100];
    let mut i = 0;
    while i < all.len() {
        all[i] = 200 + i as u16;
        i += 1;
    }
    all
};

/// What a protocol module (key release, attestation collateral, identity tokens) needs of HTTP: one
/// request, retried under the client's policy, whose 2xx response comes back; any other status is
/// [`Error::Status`] (with its body snippet). [`Client`] is the implementation; tests put an in-process
/// fake behind it.
pub trait Exchange: Send + Sync {
    /// Send `req` with retries; a non-2xx status is an error.
    fn exchange(&self, req: &Request<'_>) -> Result<Response>;
}

impl Exchange for Client {
    fn exchange(&self, req: &Request<'_>) -> Result<Response> {
        self.send(req, &SUCCESS)
    }
}

/// One request. Header values are private to the request: `Debug` shows names only.
pub struct Request<'a> {
    method: &'static str,
    url: &'a str,
    headers: Vec<(&'static str, String)>,
    body: Option<&'a [u8]>,
    body_limit: u64,
}

impl<'a> Request<'a> {
    /// A request with no body. `url` may contain a query (a SAS): it is only ever shown redacted.
    pub fn new(method: &'static str, url: &'a str) -> Self {
        Self {
            method,
            url,
            headers: Vec::new(),
            body: None,
            body_limit: DEFAULT_BODY_LIMIT,
        }
    }

    /// Add a header.
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// Send `body` (with its `Content-Length`).
    pub fn body(mut self, body: &'a [u8]) -> Self {
        self.body = Some(body);
        self
    }

    /// Refuse response bodies longer than `limit` bytes (a transport error, retried).
    pub fn body_limit(mut self, limit: u64) -> Self {
        self.body_limit = limit;
        self
    }

    /// A header's value as set on this request (not for logging: it may be a secret).
    pub fn header_value(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The method.
    pub fn method(&self) -> &'static str {
        self.method
    }

    /// The URL, redacted for messages.
    pub fn shown_url(&self) -> String {
        crate::redact::url(self.url)
    }
}

impl fmt::Debug for Request<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| *n).collect();
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("url", &crate::redact::url(self.url))
            .field("headers", &names)
            .field("body_len", &self.body.map(<[u8]>::len))
            .finish()
    }
}

impl Drop for Request<'_> {
    fn drop(&mut self) {
        // Header values carry secrets (`Authorization: Bearer ...`): wiped before the heap takes them back.
        for (_, v) in &mut self.headers {
            zeroize::Zeroize::zeroize(v);
        }
    }
}

/// A response with a 2xx status (or any status the caller accepted) and its whole body.
#[derive(Debug)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// Headers.
    pub headers: HeaderMap,
    /// The body (empty for HEAD).
    pub body: Vec<u8>,
}

impl Response {
    /// A header as text, if present and valid.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// The HTTP client: an agent (connection pool, TLS config, timeouts) and a retry policy.
#[derive(Debug, Clone)]
pub struct Client {
    agent: ureq::Agent,
    policy: RetryPolicy,
}

impl Client {
    /// Build the client from the network plan.
    pub fn new(plan: &NetworkPlan) -> Result<Self> {
        let tls = tls::config(plan)?;
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .user_agent(format!("encfs-init/{}", env!("CARGO_PKG_VERSION")))
            .timeout_connect(Some(plan.connect_timeout))
            .timeout_global(Some(plan.request_timeout))
            .max_redirects(0)
            .max_redirects_will_error(false)
            .max_idle_connections(IDLE_PER_HOST * 2)
            .max_idle_connections_per_host(IDLE_PER_HOST)
            .tls_config(tls)
            .build();
        Ok(Self {
            agent: config.new_agent(),
            policy: RetryPolicy {
                retries: plan.retries,
                initial: INITIAL_BACKOFF.min(plan.retry_backoff_max),
                max: plan.retry_backoff_max,
                deadline: None,
            },
        })
    }

    /// The same client (sharing the pool) with another retry policy.
    pub fn with_policy(&self, policy: RetryPolicy) -> Self {
        Self {
            agent: self.agent.clone(),
            policy,
        }
    }

    /// The retry policy.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// Send with retries; statuses outside `accept` are errors.
    pub fn send(&self, req: &Request<'_>, accept: &[u16]) -> Result<Response> {
        self.retry(|_| self.send_once(req, accept))
    }

    /// Run `attempt` under this client's retry policy.
    pub fn retry<T>(&self, attempt: impl FnMut(u32) -> Result<T>) -> Result<T> {
        retry::retry(&self.policy, attempt)
    }

    /// One attempt, no retries. Statuses outside `accept` become [`Error::Status`].
    pub fn send_once(&self, req: &Request<'_>, accept: &[u16]) -> Result<Response> {
        self.send_once_into(req, accept, None).map(|(resp, _)| resp)
    }

    /// [`send_once`](Self::send_once), except that a response with status `into.0` whose
    /// `Content-Length` is exactly `into.1.len()` has its body read straight into `into.1` (no
    /// intermediate buffer; the returned body is then empty and the flag `true`). Any other accepted
    /// response is read into [`Response::body`] as usual (flag `false`). A body shorter than announced is
    /// a transport error, as with `send_once`.
    pub fn send_once_into(
        &self,
        req: &Request<'_>,
        accept: &[u16],
        into: Option<(u16, &mut [u8])>,
    ) -> Result<(Response, bool)> {
        let transport = |kind, detail: String| Error::Transport {
            method: req.method.to_string(),
            url: req.shown_url(),
            kind,
            detail,
        };
        let mut builder = ureq::http::Request::builder()
            .method(req.method)
            .uri(req.url);
        for (name, value) in &req.headers {
            builder = builder.header(*name, value.as_str());
        }
        let body = req.body.unwrap_or(&[]);
        let http_req = builder
            .body(body)
            .map_err(|_| transport(TransportKind::Request, "invalid URL or header".into()))?;
        let mut resp = self
            .agent
            .run(http_req)
            .map_err(|e| map_ureq(&e, &transport))?;
        let status = resp.status().as_u16();
        if !accept.contains(&status) {
            let mut head = Vec::new();
            // A short prefix is all an error needs; the rest is dropped with the connection.
            let _ = resp
                .body_mut()
                .as_reader()
                .take(error::SNIPPET_MAX as u64)
                .read_to_end(&mut head);
            let headers = resp.headers();
            let text = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
            return Err(Error::Status {
                method: req.method.to_string(),
                url: req.shown_url(),
                status,
                code: text("x-ms-error-code").map(str::to_string),
                snippet: error::snippet(&head),
                retry_after: parse_retry_after(text("retry-after"), text("x-ms-retry-after-ms")),
            });
        }
        let announced = resp
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if let Some((want, dst)) = into {
            if status == want && req.method != "HEAD" && announced == Some(dst.len() as u64) {
                let mut reader = resp
                    .body_mut()
                    .with_config()
                    .limit(dst.len() as u64)
                    .reader();
                reader.read_exact(dst).map_err(|e| {
                    transport(TransportKind::Reset, format!("reading the body: {e}"))
                })?;
                // One more read sees the end of the body, which hands the connection back to the
                // pool (stopping at exactly the last byte would close it instead).
                match reader.read(&mut [0u8; 1]) {
                    Ok(0) => {}
                    Ok(_) | Err(_) => {
                        return Err(transport(
                            TransportKind::TooLarge,
                            format!("body longer than its Content-Length {}", dst.len()),
                        ))
                    }
                }
                drop(reader);
                let (parts, _) = resp.into_parts();
                return Ok((
                    Response {
                        status,
                        headers: parts.headers,
                        body: Vec::new(),
                    },
                    true,
                ));
            }
        }
        let body = if req.method == "HEAD" {
            Vec::new()
        } else {
            resp.body_mut()
                .with_config()
                .limit(req.body_limit)
                .read_to_vec()
                .map_err(|e| map_ureq(&e, &transport))?
        };
        let (parts, _) = resp.into_parts();
        Ok((
            Response {
                status,
                headers: parts.headers,
                body,
            },
            false,
        ))
    }
}

/// `Retry-After: <seconds>` or Azure's `x-ms-retry-after-ms`. HTTP-dates, negative numbers and garbage are
/// ignored (backoff applies). The value is the server's choice: it is cut to [`MAX_RETRY_AFTER`] here, and
/// the retry loop bounds it further by the deadline or `retry_backoff_max`.
pub fn parse_retry_after(secs: Option<&str>, ms: Option<&str>) -> Option<Duration> {
    let ra = match ms.and_then(|v| v.trim().parse::<u64>().ok()) {
        Some(ms) => Duration::from_millis(ms),
        None => Duration::from_secs(secs.and_then(|v| v.trim().parse::<u64>().ok())?),
    };
    Some(ra.min(MAX_RETRY_AFTER))
}

fn map_ureq(e: &ureq::Error, transport: &impl Fn(TransportKind, String) -> Error) -> Error {
    use ureq::Error as U;
    let (kind, detail) = match e {
        U::Timeout(t) => (TransportKind::Timeout, format!("{t} timeout")),
        U::HostNotFound => (TransportKind::Resolve, "host not found".to_string()),
        U::ConnectionFailed => (TransportKind::Connect, "connection failed".to_string()),
        // rustls reports a failed handshake (an untrusted certificate, above all) as an I/O error.
        U::Io(io)
            if io
                .get_ref()
                .and_then(|i| i.downcast_ref::<rustls::Error>())
                .is_some() =>
        {
            let certificate = matches!(
                io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()),
                Some(rustls::Error::InvalidCertificate(_))
            );
            let fix = if certificate {
                "; fix: the server's certificate does not chain to the web roots or [network] ca_bundle: add \
                 its CA to ca_bundle (a TLS-inspecting proxy needs its CA there too)"
            } else {
                ""
            };
            (TransportKind::Tls, format!("{io}{fix}"))
        }
        U::Io(io) => {
            let kind = match io.kind() {
                std::io::ErrorKind::ConnectionRefused => TransportKind::Connect,
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => {
                    TransportKind::Timeout
                }
                _ => TransportKind::Reset,
            };
            (kind, io.to_string())
        }
        U::BodyExceedsLimit(n) => (TransportKind::TooLarge, format!("over {n} bytes")),
        U::Tls(_) | U::Rustls(_) | U::Pem(_) | U::TlsRequired => {
            (TransportKind::Tls, e.to_string())
        }
        // These variants embed the URI: keep it out of the message.
        U::BadUri(_) | U::Http(_) | U::RequireHttpsOnly(_) => {
            (TransportKind::Request, "invalid URL or request".to_string())
        }
        U::BodyStalled => (TransportKind::Timeout, "body stalled".to_string()),
        U::Protocol(_) | U::LargeResponseHeader(..) => (TransportKind::Protocol, e.to_string()),
        _ => (TransportKind::Protocol, e.to_string()),
    };
    transport(kind, detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        assert_eq!(
            parse_retry_after(Some("3"), None),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            parse_retry_after(Some("3"), Some("250")),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            parse_retry_after(Some("Wed, 21 Oct 2015 07:28:00 GMT"), None),
            None
        );
    }

    #[test]
    fn retry_after_from_a_hostile_server_is_bounded_or_ignored() {
        let max = "18446744073709551615";
        assert_eq!(parse_retry_after(Some(max), None), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after(None, Some(max)), Some(MAX_RETRY_AFTER));
        assert_eq!(
            parse_retry_after(Some("3"), Some(max)),
            Some(MAX_RETRY_AFTER)
        );
        for garbage in [
            "-1",
            "-0.5",
            "1e9",
            "99999999999999999999999",
            "",
            " x",
            "0x10",
        ] {
            assert_eq!(parse_retry_after(Some(garbage), None), None, "{garbage:?}");
            assert_eq!(
                parse_retry_after(Some("2"), Some(garbage)),
                Some(Duration::from_secs(2)),
                "{garbage:?}"
            );
        }
    }

    #[test]
    fn request_debug_hides_header_values_and_query() {
        let r = Request::new("GET", "https://h/c/b?sig=SECRET")
            .header("authorization", "Bearer SECRET");
        let s = format!("{r:?}");
        assert!(!s.contains("SECRET"), "{s}");
        assert!(s.contains("authorization"), "{s}");
    }
}
