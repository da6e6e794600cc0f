//! The blob service's answers, judged: a failure at open in words that name the fix ([`open_error`]), and
//! whether an answer to a ranged GET is the range asked for ([`check_range_response`]).
#![forbid(unsafe_code)]

use super::Auth;
use crate::blob::Error;
use crate::http;

/// Why an answer to a ranged GET is not the range asked for (the client retries it as a bad response).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    /// A 206 whose `Content-Range` names another range, or is malformed.
    #[error("Content-Range {content_range} for bytes={offset}-{last}")]
    ContentRange {
        /// The header as sent.
        content_range: String,
        /// First byte asked for.
        offset: u64,
        /// Last byte asked for.
        last: u64,
    },
    /// A 200 (ranges ignored) for less than the whole blob.
    #[error("200 without the whole blob")]
    NotWhole,
    /// A body of another length than the range.
    #[error("{got} bytes for a {len}-byte range")]
    Length {
        /// Bytes received.
        got: usize,
        /// Bytes asked for.
        len: usize,
    },
}

/// A 404 at open becomes [`Error::NotFound`], a 401/403 [`Error::Denied`] (each with the fix); anything
/// else stays an HTTP error.
pub(super) fn open_error(e: http::Error, url: &str, auth: &Auth) -> Error {
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
) -> Result<RangeVerdict<'a>, RangeError> {
    let last = offset.saturating_add(len as u64).saturating_sub(1);
    if resp.status == 206 {
        if let Some(cr) = resp.content_range {
            match parse_content_range(cr) {
                Some((a, z, total)) if a == offset && z == last => {
                    if let Some(total) = total.filter(|t| *t != size) {
                        return Ok(RangeVerdict::SizeChanged(total));
                    }
                }
                _ => {
                    return Err(RangeError::ContentRange {
                        content_range: cr.to_string(),
                        offset,
                        last,
                    })
                }
            }
        }
        if resp.filled {
            return Ok(RangeVerdict::Filled);
        }
    } else if resp.body.len() as u64 != size || offset != 0 {
        // A server that ignores ranges sends the whole blob: usable only when that is what we asked for.
        return Err(RangeError::NotWhole);
    }
    if resp.body.len() != len {
        return Err(RangeError::Length {
            got: resp.body.len(),
            len,
        });
    }
    Ok(RangeVerdict::Copy(resp.body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::SecretString;
    use std::sync::Arc;

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
    fn a_wrong_range_says_what_came_for_what_was_asked() {
        let resp = |status, content_range, body| RangeResponse {
            status,
            content_range,
            body,
            filled: false,
        };
        let e = check_range_response(&resp(206, Some("bytes 0-9/100"), &[0; 10]), 10, 10, 100);
        assert_eq!(
            e.unwrap_err().to_string(),
            "Content-Range bytes 0-9/100 for bytes=10-19"
        );
        let e = check_range_response(&resp(200, None, &[0; 10]), 0, 10, 100);
        assert_eq!(e.unwrap_err(), RangeError::NotWhole);
        let e = check_range_response(&resp(206, None, &[0; 9]), 0, 10, 100);
        assert_eq!(e.unwrap_err().to_string(), "9 bytes for a 10-byte range");
        let ok = check_range_response(&resp(206, Some("bytes 0-9/*"), &[7; 10]), 0, 10, 100);
        assert_eq!(ok, Ok(RangeVerdict::Copy(&[7; 10])));
    }
}
