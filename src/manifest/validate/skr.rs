//! `[skr]`: upstream's SKR sidecar API, on a loopback address only, with bounded connections, request
//! time and body size.

use super::*;

/// Connections served at once: default and bound.
const CONNECTIONS: (u32, u32) = (16, 1024);
/// Request time: default and bound.
const TIMEOUT: (Duration, Duration) = (Duration::from_secs(30), Duration::from_secs(600));
/// Body size: default, least and most (every upstream request is a few hundred bytes plus a token).
const BODY: (u64, u64, u64) = (64 << 10, 1 << 10, 1 << 20);

/// The SKR API's plan.
pub(super) fn skr(v: &mut V<'_>, p: &FieldPath, s: schema::Skr) -> Option<SkrPlan> {
    let raw = s.listen.as_deref().unwrap_or("127.0.0.1:8080");
    let listen = match raw.parse::<std::net::SocketAddr>() {
        Ok(a) if a.ip().is_loopback() => Some(a),
        Ok(a) => {
            v.err(
                &p.key("listen"),
                format!("{} is not a loopback address", a.ip()),
                "listen on 127.0.0.1 (or ::1), e.g. \"127.0.0.1:8080\": the API releases keys and \
                 attests to any caller, so only processes of the container group (which share its network \
                 namespace) may reach it, as upstream's sidecar listened on localhost only",
            );
            None
        }
        Err(_) => {
            v.err(
                &p.key("listen"),
                format!("\"{raw}\" is not an address:port"),
                "write e.g. \"127.0.0.1:8080\" (IPv6: \"[::1]:8080\")",
            );
            None
        }
    };
    let max_connections = s.max_connections.unwrap_or(CONNECTIONS.0);
    if max_connections == 0 || max_connections > CONNECTIONS.1 {
        v.err(
            &p.key("max_connections"),
            format!("{max_connections} is out of range"),
            format!("use 1 to {}", CONNECTIONS.1),
        );
    }
    let request_timeout = v.dur(
        &p.key("request_timeout"),
        s.request_timeout,
        TIMEOUT.0,
        TIMEOUT.1,
    );
    let max_body = s.max_body.map_or(BODY.0, |b| b.0);
    if !(BODY.1..=BODY.2).contains(&max_body) {
        v.err(
            &p.key("max_body"),
            format!("{max_body} bytes is out of range"),
            "use 1KiB to 1MiB (upstream's requests are a few hundred bytes plus an access token)",
        );
    }
    Some(SkrPlan {
        listen: listen?,
        max_connections: max_connections as usize,
        request_timeout,
        max_body: usize::try_from(max_body).ok()?,
    })
}
