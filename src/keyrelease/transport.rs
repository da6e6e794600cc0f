//! HTTP behind a small trait: a request goes out, a status, headers and body come back. The key-release
//! protocol code only sees this trait, so tests can put an in-process fake behind it and the shared HTTP
//! module can later take the ureq adapter's place.
//!
//! [`UreqTransport`] honours the plan's [`NetworkPlan`]: connect and whole-request timeouts, bounded retries
//! with exponential backoff (capped at `retry_backoff_max`) on connect errors, timeouts, 408, 429 and 5xx,
//! and trust = the compiled-in web roots, plus the plan's CA bundle (ureq takes one root store per agent,
//! so a certificate the web roots reject is retried once with the bundle's agent). Bodies are capped at
//! 4 MiB. Request headers (tokens) are never printed: `Debug` shows header names only.
#![forbid(unsafe_code)]

use crate::manifest::NetworkPlan;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Largest body read.
pub const MAX_BODY: u64 = 4 << 20;

/// A request.
pub struct Request {
    /// `GET` or `POST`.
    pub method: &'static str,
    /// The URL.
    pub url: String,
    /// Headers (may hold a bearer token).
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Option<Vec<u8>>,
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(k, _)| k.as_str()).collect();
        write!(f, "{} {} headers {:?}", self.method, self.url, names)
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        // Headers and bodies carry tokens (Authorization, the MAA token, a client assertion).
        for (_, v) in &mut self.headers {
            v.zeroize();
        }
        if let Some(b) = &mut self.body {
            b.zeroize();
        }
    }
}

impl Request {
    /// A GET.
    pub fn get(url: impl Into<String>) -> Self {
        Request {
            method: "GET",
            url: url.into(),
            headers: Vec::new(),
            body: None,
        }
    }

    /// A POST with a JSON body.
    pub fn post_json(url: impl Into<String>, body: Vec<u8>) -> Self {
        Request {
            method: "POST",
            url: url.into(),
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: Some(body),
        }
    }

    /// Add a header.
    pub fn header(mut self, k: &str, v: impl Into<String>) -> Self {
        self.headers.push((k.to_string(), v.into()));
        self
    }
}

/// A response.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers, names lowercase.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl Response {
    /// 2xx.
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The start of the body as one line, for messages (service error bodies carry no secrets).
    pub fn snippet(&self) -> String {
        crate::http::snippet(&self.body)
    }
}

/// A transport failure (no response).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportError {
    /// Timed out.
    Timeout,
    /// Could not connect or the connection broke.
    Connect(String),
    /// TLS failed (certificate, handshake).
    Tls(String),
    /// Anything else.
    Other(String),
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportError::Timeout => f.write_str("timed out"),
            TransportError::Connect(e) => write!(f, "connection failed: {e}"),
            TransportError::Tls(e) => write!(f, "TLS failed: {e}"),
            TransportError::Other(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for TransportError {}

/// Sends requests.
pub trait Transport: Send + Sync {
    /// Send `req`; any status is a response, only transport failures are errors.
    fn send(&self, req: &Request) -> Result<Response, TransportError>;
}

/// The ureq implementation.
pub struct UreqTransport {
    web: ureq::Agent,
    bundle: Option<ureq::Agent>,
    retries: u32,
    backoff_max: Duration,
}

impl fmt::Debug for UreqTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "UreqTransport(retries {}, bundle {})",
            self.retries,
            self.bundle.is_some()
        )
    }
}

fn agent(net: &NetworkPlan, roots: ureq::tls::RootCerts) -> ureq::Agent {
    let tls = ureq::tls::TlsConfig::builder().root_certs(roots).build();
    ureq::Agent::new_with_config(
        ureq::config::Config::builder()
            .timeout_connect(Some(net.connect_timeout))
            .timeout_global(Some(net.request_timeout))
            .http_status_as_error(false)
            .max_redirects(0)
            .tls_config(tls)
            .build(),
    )
}

impl UreqTransport {
    /// From the plan. Reads the CA bundle now (an unreadable bundle is an error).
    pub fn new(net: &NetworkPlan) -> Result<Self, TransportError> {
        let pem =
            crate::http::read_ca_bundle(net).map_err(|e| TransportError::Other(e.to_string()))?;
        let bundle = match (&net.ca_bundle, pem) {
            (Some(p), Some(pem)) => {
                let certs: Vec<ureq::tls::Certificate<'static>> = ureq::tls::parse_pem(&pem)
                    .filter_map(|i| match i {
                        Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                        _ => None,
                    })
                    .collect();
                if certs.is_empty() {
                    return Err(TransportError::Other(format!(
                        "CA bundle {} holds no certificate",
                        p.display()
                    )));
                }
                Some(agent(net, ureq::tls::RootCerts::Specific(Arc::new(certs))))
            }
            _ => None,
        };
        Ok(UreqTransport {
            web: agent(net, ureq::tls::RootCerts::WebPki),
            bundle,
            retries: net.retries,
            backoff_max: net.retry_backoff_max,
        })
    }

    fn once(agent: &ureq::Agent, req: &Request) -> Result<Response, TransportError> {
        let mut b = ureq::http::Request::builder()
            .method(req.method)
            .uri(&req.url);
        for (k, v) in &req.headers {
            b = b.header(k, v);
        }
        // The body is lent, not cloned: a copy handed to ureq would be freed unwiped (it carries the MAA
        // token or a client assertion).
        let hreq = b
            .body(req.body.as_deref().unwrap_or_default())
            .map_err(|e| TransportError::Other(e.to_string()))?;
        let resp = agent.run(hreq).map_err(classify)?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = resp
            .into_body()
            .with_config()
            .limit(MAX_BODY)
            .read_to_vec()
            .map_err(classify)?;
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}

fn classify(e: ureq::Error) -> TransportError {
    match e {
        ureq::Error::Timeout(_) => TransportError::Timeout,
        ureq::Error::Io(ref io) if io.kind() == std::io::ErrorKind::TimedOut => {
            TransportError::Timeout
        }
        // rustls reports certificate failures through io::Error (InvalidData wrapping rustls::Error).
        ureq::Error::Io(io) if io.get_ref().is_some_and(|e| e.is::<rustls::Error>()) => {
            TransportError::Tls(io.to_string())
        }
        ureq::Error::Io(io) => TransportError::Connect(io.to_string()),
        ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => {
            TransportError::Connect(e.to_string())
        }
        ureq::Error::Rustls(r) => TransportError::Tls(r.to_string()),
        ureq::Error::Tls(t) => TransportError::Tls(t.to_string()),
        other => TransportError::Other(other.to_string()),
    }
}

/// Transient: worth another try.
pub fn transient_status(status: u16) -> bool {
    status == 408 || status == 429 || status >= 500
}

/// The delay before retry `attempt` (1-based): 250 ms doubling, capped, with up to 25 % jitter.
pub fn backoff(attempt: u32, max: Duration) -> Duration {
    let base = Duration::from_millis(250).saturating_mul(1u32 << attempt.min(16).saturating_sub(1));
    let base = base.min(max);
    let mut r = [0u8; 2];
    let jitter = if getrandom::fill(&mut r).is_ok() {
        u64::from(u16::from_le_bytes(r))
    } else {
        0
    };
    let extra = base.as_millis() as u64 / 4 * jitter / 65535;
    (base + Duration::from_millis(extra)).min(max.max(Duration::from_millis(1)))
}

impl Transport for UreqTransport {
    fn send(&self, req: &Request) -> Result<Response, TransportError> {
        let mut attempt = 0;
        loop {
            let mut r = Self::once(&self.web, req);
            if let (Err(TransportError::Tls(_)), Some(b)) = (&r, &self.bundle) {
                // Not trusted by the web roots: the bundle's agent may trust it.
                r = Self::once(b, req);
            }
            let retry = match &r {
                Ok(resp) => transient_status(resp.status),
                Err(TransportError::Timeout | TransportError::Connect(_)) => true,
                Err(_) => false,
            };
            if !retry || attempt >= self.retries {
                return r;
            }
            attempt += 1;
            let d = backoff(attempt, self.backoff_max);
            match &r {
                Ok(resp) => log::warn!(
                    "{} {}: status {}, retry {attempt}/{} in {d:?}",
                    req.method,
                    req.url,
                    resp.status,
                    self.retries
                ),
                Err(e) => log::warn!(
                    "{} {}: {e}, retry {attempt}/{} in {d:?}",
                    req.method,
                    req.url,
                    self.retries
                ),
            }
            std::thread::sleep(d);
        }
    }
}
