//! HTTP errors: one hand-written enum for every caller (blob I/O, attestation, key release, IMDS).
//!
//! Every variant names the method and the URL **with its query redacted** (a SAS signature lives in the
//! query), so an error can be logged or shown as is. Response bodies are cut to a short snippet: they can
//! be large, and a hostile server should not be able to flood the console through us.
#![forbid(unsafe_code)]

use std::fmt;
use std::time::Duration;

/// Longest body snippet kept in an error (bytes of UTF-8, lossy).
pub const SNIPPET_MAX: usize = 256;

/// Result alias for the HTTP layer.
pub type Result<T> = std::result::Result<T, Error>;

/// What went wrong below HTTP (no response was received, or the response was cut short).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportKind {
    /// Name resolution failed.
    Resolve,
    /// TCP connect (or TLS handshake) failed.
    Connect,
    /// The connection was reset, closed early or broke mid-exchange (includes truncated bodies).
    Reset,
    /// A configured timeout fired.
    Timeout,
    /// TLS failed (certificate, protocol).
    Tls,
    /// The peer spoke malformed HTTP.
    Protocol,
    /// The response body was larger than the caller allows.
    TooLarge,
    /// The request could not be built (bad URL or header); never retried.
    Request,
}

impl TransportKind {
    fn describe(self) -> &'static str {
        match self {
            Self::Resolve => "cannot resolve host",
            Self::Connect => "cannot connect",
            Self::Reset => "connection reset or closed early",
            Self::Timeout => "timed out",
            Self::Tls => "TLS failure",
            Self::Protocol => "malformed HTTP response",
            Self::TooLarge => "response body too large",
            Self::Request => "request not sent",
        }
    }
}

/// An HTTP failure, with enough context to be logged by itself.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// No (complete) response.
    Transport {
        /// `GET`, `PUT`, ...
        method: String,
        /// The URL with its query replaced by `?<redacted>`.
        url: String,
        /// What failed.
        kind: TransportKind,
        /// A short description from the lower layer (never contains the URL or headers).
        detail: String,
    },
    /// The server answered with a status the caller did not accept.
    Status {
        /// `GET`, `PUT`, ...
        method: String,
        /// The URL with its query redacted.
        url: String,
        /// The HTTP status.
        status: u16,
        /// Azure's `x-ms-error-code`, when present.
        code: Option<String>,
        /// The first [`SNIPPET_MAX`] bytes of the body.
        snippet: String,
        /// `Retry-After` (or `x-ms-retry-after-ms`), when present.
        retry_after: Option<Duration>,
    },
    /// The response was well-formed HTTP but not what the protocol requires (e.g. a range reply of the
    /// wrong length). Treated as transient: a proxy or a broken connection can produce it.
    BadResponse {
        /// `GET`, `PUT`, ...
        method: String,
        /// The URL with its query redacted.
        url: String,
        /// What was wrong.
        detail: String,
    },
    /// The configured CA bundle cannot be used.
    CaBundle {
        /// The file.
        path: String,
        /// Why.
        detail: String,
    },
    /// Retrying stopped because the overall deadline passed (or the next wait would end past it); carries
    /// the last failure.
    Deadline {
        /// Attempts made.
        attempts: u32,
        /// The policy's deadline.
        deadline: Duration,
        /// The server's `Retry-After` on the last failure, when it sent one.
        retry_after: Option<Duration>,
        /// The last error.
        last: Box<Error>,
    },
}

impl Error {
    /// Whether retrying may help: transport failures (except request-building ones), 408, 429, 5xx and
    /// malformed responses.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Transport { kind, .. } => {
                !matches!(kind, TransportKind::Request | TransportKind::Tls)
            }
            Self::Status { status, .. } => matches!(status, 408 | 429 | 500..=599),
            Self::BadResponse { .. } => true,
            Self::CaBundle { .. } | Self::Deadline { .. } => false,
        }
    }

    /// What failed below HTTP, when no (complete) response came.
    pub fn transport_kind(&self) -> Option<TransportKind> {
        match self {
            Self::Transport { kind, .. } => Some(*kind),
            Self::Deadline { last, .. } => last.transport_kind(),
            _ => None,
        }
    }

    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } => Some(*status),
            Self::Deadline { last, .. } => last.status(),
            _ => None,
        }
    }

    /// The server's `Retry-After`, when it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Transport {
                method,
                url,
                kind,
                detail,
            } => write!(f, "{method} {url}: {}: {detail}", kind.describe()),
            Self::Status {
                method,
                url,
                status,
                code,
                snippet,
                ..
            } => {
                write!(f, "{method} {url}: HTTP {status}")?;
                if let Some(c) = code {
                    write!(f, " ({c})")?;
                }
                if !snippet.is_empty() {
                    write!(f, ": {snippet}")?;
                }
                Ok(())
            }
            Self::BadResponse {
                method,
                url,
                detail,
            } => write!(f, "{method} {url}: unexpected response: {detail}"),
            Self::CaBundle { path, detail } => write!(f, "CA bundle {path}: {detail}"),
            Self::Deadline {
                attempts,
                deadline,
                retry_after,
                last,
            } => {
                write!(
                    f,
                    "gave up after {attempts} attempts within the {} s deadline",
                    deadline.as_secs_f64()
                )?;
                if let Some(ra) = retry_after {
                    let more = if *ra >= super::MAX_RETRY_AFTER {
                        " or more"
                    } else {
                        ""
                    };
                    write!(
                        f,
                        " (the server asked to retry after {} s{more})",
                        ra.as_secs_f64()
                    )?;
                }
                write!(f, ": {last}")
            }
        }
    }
}

impl std::error::Error for Error {}

/// A body cut to [`SNIPPET_MAX`] bytes at a character boundary, control characters replaced, so a body
/// can be put in a one-line message.
pub fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(SNIPPET_MAX)]);
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_classification() {
        let st = |status| Error::Status {
            method: "GET".into(),
            url: "u".into(),
            status,
            code: None,
            snippet: String::new(),
            retry_after: None,
        };
        for s in [408, 429, 500, 503, 599] {
            assert!(st(s).is_transient(), "{s}");
        }
        for s in [400, 403, 404, 412, 416] {
            assert!(!st(s).is_transient(), "{s}");
        }
    }

    #[test]
    fn snippets_are_bounded_and_one_line() {
        let body = "line1\nline2\r\n".repeat(100);
        let s = snippet(body.as_bytes());
        assert!(s.len() <= SNIPPET_MAX);
        assert!(!s.contains('\n'));
    }
}
