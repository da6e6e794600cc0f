//! `[skr]`: upstream's SKR sidecar API, on a loopback address only.

use super::*;

/// The SKR API's plan.
pub(super) fn skr(v: &mut V<'_>, p: &FieldPath, s: schema::Skr) -> Option<SkrPlan> {
    // Issue 16 (SKR API): full checks (loopback only, bounds).
    let listen = s.listen.as_deref().unwrap_or("127.0.0.1:8080");
    let Ok(listen) = listen.parse::<std::net::SocketAddr>() else {
        v.err(
            &p.key("listen"),
            format!("\"{listen}\" is not an address:port"),
            "write e.g. \"127.0.0.1:8080\"",
        );
        return None;
    };
    Some(SkrPlan {
        listen,
        max_connections: s.max_connections.unwrap_or(16) as usize,
        request_timeout: s.request_timeout.map_or(Duration::from_secs(30), |d| d.0),
        max_body: s.max_body.map_or(64 << 10, |b| b.0 as usize),
    })
}
