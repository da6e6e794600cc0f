//! The HTTP/1.1 the SKR API speaks, by hand and bounded: one request per connection (`Connection: close`),
//! a request line and headers of at most [`HEAD_LIMIT`] bytes, a `Content-Length` body of at most the
//! plan's `max_body` (a chunked body is refused with 411, a larger one with 413 before a byte of it is
//! read), and the whole request within the plan's `request_timeout` (a slow client is cut with 408).
#![forbid(unsafe_code)]

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// Largest request line plus headers.
pub const HEAD_LIMIT: usize = 16 << 10;
/// Longest request target (path and query).
const MAX_TARGET: usize = 1024;

/// A request as read: method, path (without a query) and body. The body may carry an access token: it
/// is wiped when dropped.
#[derive(Debug)]
pub struct Request {
    /// `GET`, `POST`, ...
    pub method: String,
    /// `/attest/maa`, ...
    pub path: String,
    /// The body (`Content-Length` bytes).
    pub body: Zeroizing<Vec<u8>>,
}

/// Why no request could be read. Each has a status to answer with, except when the client is gone.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The client closed the connection before sending anything.
    #[error("the client closed the connection without a request")]
    Closed,
    /// The request did not arrive in time.
    #[error("the request did not arrive within {}s (request_timeout); fix: send the whole request at once", .0.as_secs_f32())]
    Timeout(Duration),
    /// Request line and headers too long.
    #[error("the request line and headers exceed {HEAD_LIMIT} bytes; fix: send a smaller request")]
    HeadTooLarge,
    /// Not HTTP/1.x as we take it.
    #[error("malformed request: {0}; fix: send an HTTP/1.1 request with a Content-Length body")]
    Malformed(&'static str),
    /// `Transfer-Encoding` (chunked).
    #[error("a chunked (Transfer-Encoding) body is not accepted; fix: send the body with Content-Length")]
    Chunked,
    /// A POST without `Content-Length`.
    #[error("the request has no Content-Length; fix: send the body with Content-Length")]
    NoLength,
    /// The body is larger than `max_body`.
    #[error("the body of {got} bytes exceeds the limit of {limit} bytes (max_body); fix: send a smaller body")]
    TooLarge {
        /// Content-Length.
        got: u64,
        /// max_body.
        limit: usize,
    },
    /// Reading failed (the client is gone).
    #[error("reading the request")]
    Io(#[source] io::Error),
}

impl ReadError {
    /// The status to answer with; `None` when nobody is there to read it.
    pub fn status(&self) -> Option<u16> {
        Some(match self {
            ReadError::Closed | ReadError::Io(_) => return None,
            ReadError::Timeout(_) => 408,
            ReadError::HeadTooLarge => 431,
            ReadError::Malformed(_) => 400,
            ReadError::Chunked | ReadError::NoLength => 411,
            ReadError::TooLarge { .. } => 413,
        })
    }
}

/// Read one request from `s` by `deadline`, its body at most `max_body` bytes.
pub fn read_request(
    s: &mut TcpStream,
    deadline: Instant,
    timeout: Duration,
    max_body: usize,
) -> Result<Request, ReadError> {
    // Sized for the most the loop below reads, so it never grows: the start of a body (an access token)
    // read with the headers leaves no copy behind in a freed buffer.
    let mut chunk = Zeroizing::new([0u8; 4096]);
    let mut buf = Zeroizing::new(Vec::with_capacity(HEAD_LIMIT + 1 + chunk.len()));
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i;
        }
        if buf.len() > HEAD_LIMIT {
            return Err(ReadError::HeadTooLarge);
        }
        let n = read_some(s, &mut chunk[..], deadline, timeout)?;
        if n == 0 {
            return Err(if buf.is_empty() {
                ReadError::Closed
            } else {
                ReadError::Malformed("the connection closed in the middle of the headers")
            });
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    if head_end + 4 > HEAD_LIMIT {
        return Err(ReadError::HeadTooLarge);
    }
    let Head {
        method,
        path,
        length: want,
        expect_continue,
    } = parse_head(&buf[..head_end], max_body)?;
    let rest = &buf[head_end + 4..];
    if expect_continue && rest.len() < want {
        // curl waits a second for this before it sends a body of more than 1 KiB.
        s.set_write_timeout(Some(timeout)).map_err(ReadError::Io)?;
        s.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .map_err(ReadError::Io)?;
    }
    let mut body = Zeroizing::new(Vec::with_capacity(want));
    body.extend_from_slice(&rest[..rest.len().min(want)]);
    while body.len() < want {
        let room = (want - body.len()).min(chunk.len());
        let n = read_some(s, &mut chunk[..room], deadline, timeout)?;
        if n == 0 {
            return Err(ReadError::Malformed(
                "the connection closed before the whole body arrived",
            ));
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok(Request { method, path, body })
}

/// A request's line and headers, as far as this server uses them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// `GET`, `POST`, ...: uppercase ASCII letters.
    pub method: String,
    /// The target without its query: printable ASCII, at most 1024 bytes.
    pub path: String,
    /// The body's length (`Content-Length`), at most `max_body`.
    pub length: usize,
    /// `Expect: 100-continue`.
    pub expect_continue: bool,
}

/// Parse a request's line and headers (`head`, without the blank line that ends them).
pub fn parse_head(head: &[u8], max_body: usize) -> Result<Head, ReadError> {
    let head =
        std::str::from_utf8(head).map_err(|_| ReadError::Malformed("the headers are not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (first.next(), first.next(), first.next(), first.next())
    else {
        return Err(ReadError::Malformed(
            "the request line is not METHOD TARGET VERSION",
        ));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(ReadError::Malformed("not HTTP/1.x"));
    }
    if method.is_empty() || method.len() > 16 || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(ReadError::Malformed("the method is not an HTTP method"));
    }
    // The path is logged and quoted in answers: printable ASCII only, and short.
    if !target.starts_with('/')
        || target.len() > MAX_TARGET
        || !target.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(ReadError::Malformed(
            "the target is not an absolute path of at most 1024 printable ASCII characters",
        ));
    }
    let mut length: Option<u64> = None;
    let mut expect_continue = false;
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or(ReadError::Malformed("a header line without a colon"))?;
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(ReadError::Chunked);
        }
        if name.eq_ignore_ascii_case("expect") && value.eq_ignore_ascii_case("100-continue") {
            expect_continue = true;
        }
        if name.eq_ignore_ascii_case("content-length") {
            let n = value
                .parse::<u64>()
                .map_err(|_| ReadError::Malformed("Content-Length is not a number"))?;
            if length.is_some_and(|l| l != n) {
                return Err(ReadError::Malformed("two different Content-Length headers"));
            }
            length = Some(n);
        }
    }
    let length = match length {
        Some(n) => n,
        None if method == "POST" || method == "PUT" => return Err(ReadError::NoLength),
        None => 0,
    };
    let want = usize::try_from(length)
        .ok()
        .filter(|n| *n <= max_body)
        .ok_or(ReadError::TooLarge {
            got: length,
            limit: max_body,
        })?;
    let path = target
        .split(['?', '#'])
        .next()
        .unwrap_or(target)
        .to_string();
    Ok(Head {
        method: method.to_string(),
        path,
        length: want,
        expect_continue,
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// One read, within what is left of the request's time.
fn read_some(
    s: &mut TcpStream,
    into: &mut [u8],
    deadline: Instant,
    timeout: Duration,
) -> Result<usize, ReadError> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ReadError::Timeout(timeout));
        }
        s.set_read_timeout(Some(left)).map_err(ReadError::Io)?;
        match s.read(into) {
            Ok(n) => return Ok(n),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(ReadError::Timeout(timeout))
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ReadError::Io(e)),
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// Write one JSON response and end the connection's sending side. `allow` is the `Allow` header of a 405.
/// The response may carry a released key: the buffer it is assembled in is wiped.
pub fn respond(
    s: &mut TcpStream,
    status: u16,
    allow: Option<&str>,
    body: &[u8],
    timeout: Duration,
) -> io::Result<()> {
    let allow = allow.map(|a| format!("Allow: {a}\r\n")).unwrap_or_default();
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: application/json; charset=utf-8\r\n\
             Content-Length: {}\r\n{allow}Connection: close\r\n\r\n",
        reason(status),
        body.len()
    );
    // Sized once: the body may be a released key, and a grown buffer would leave a copy behind.
    let mut out = Zeroizing::new(Vec::with_capacity(head.len() + body.len()));
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(body);
    s.set_write_timeout(Some(timeout))?;
    s.write_all(&out)?;
    s.flush()?;
    s.shutdown(std::net::Shutdown::Write)
}

/// `{"error":"<text>"}`.
pub fn error_body(text: &str) -> Vec<u8> {
    serde_json::json!({ "error": text })
        .to_string()
        .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> Result<Head, ReadError> {
        parse_head(text.as_bytes(), 100)
    }

    #[test]
    fn a_head_gives_method_path_without_query_and_length() {
        let h = head("POST /attest/maa?x=1#f HTTP/1.1\r\nHost: a\r\ncontent-length:  7 \r\nExpect: 100-Continue").unwrap();
        assert_eq!(
            h,
            Head {
                method: "POST".into(),
                path: "/attest/maa".into(),
                length: 7,
                expect_continue: true
            }
        );
        // The same length twice is fine; GET needs none.
        assert_eq!(
            head("POST / HTTP/1.0\r\nContent-Length: 3\r\nContent-Length: 3")
                .unwrap()
                .length,
            3
        );
        assert_eq!(head("GET /status HTTP/1.1").unwrap().length, 0);
    }

    #[test]
    fn bad_heads_are_refused_with_their_status() {
        for (text, status, words) in [
            (
                "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4",
                400,
                "two different",
            ),
            ("POST / HTTP/1.1\r\nContent-Length: -1", 400, "not a number"),
            (
                "POST / HTTP/1.1\r\nContent-Length: 101",
                413,
                "101 bytes exceeds the limit of 100",
            ),
            (
                "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999",
                400,
                "not a number",
            ),
            ("POST / HTTP/1.1", 411, "no Content-Length"),
            ("POST / HTTP/1.1\r\nTransfer-Encoding: gzip", 411, "chunked"),
            ("GET / HTTP/2", 400, "not HTTP/1.x"),
            ("GET /a b HTTP/1.1", 400, "METHOD TARGET VERSION"),
            ("GET http://x/ HTTP/1.1", 400, "absolute path"),
            ("GET / HTTP/1.1\r\nno colon", 400, "without a colon"),
            ("G\u{e9}T / HTTP/1.1", 400, "not an HTTP method"),
        ] {
            let e = head(text).unwrap_err();
            assert_eq!(e.status(), Some(status), "{text}: {e}");
            assert!(e.to_string().contains(words), "{text}: {e}");
        }
        assert!(parse_head(b"GET / HTTP/1.1\r\nX: \xff", 100).is_err());
    }
}
