//! Parts of a URL the program compares: the host of an endpoint or of a key identifier. Plain string work
//! on URLs the manifest already validated (or that are compared against one); nothing is resolved.
#![forbid(unsafe_code)]

/// The host name of `url` (no scheme, port or path; an IPv6 literal without its brackets).
pub fn host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let hostport = rest.split('/').next().unwrap_or(rest);
    if let Some(v6) = hostport.strip_prefix('[') {
        return v6.split(']').next().unwrap_or(v6);
    }
    hostport.rsplit_once(':').map_or(hostport, |(h, _)| h)
}

/// The origin of `url`: `scheme://host[:port]`, without the path (`https` when there is no scheme). A blob
/// URL's is its storage account's token resource.
pub fn origin(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("https", url));
    format!("{scheme}://{}", rest.split('/').next().unwrap_or(rest))
}

/// Why a text is not a service endpoint ([`endpoint`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    /// No host, or characters no host or path has (`?`, `#`, spaces, user info).
    #[error("is not a valid endpoint")]
    Invalid,
    /// `http://` where only https is allowed.
    #[error("uses plain http")]
    PlainHttp,
    /// Another scheme.
    #[error("has the scheme \"{0}\", not https")]
    Scheme(String),
}

/// A service endpoint as users write one (MAA authority, vault): `host`, `host:port` or
/// `https://host[:port][/path]`, to its URL `https://host[:port][/path]` without a trailing slash. Plain
/// `http://` only when `allow_http` (test mode). The one parser of endpoints: the manifest, the SKR API's
/// requests and `key import`'s config all take them through here.
pub fn endpoint(raw: &str, allow_http: bool) -> Result<String, EndpointError> {
    let raw = raw.trim();
    let (scheme, rest) = match raw.split_once("://") {
        Some((s, r)) => (s.to_ascii_lowercase(), r),
        None => ("https".to_string(), raw),
    };
    let rest = rest.trim_end_matches('/');
    let host = rest.split('/').next().unwrap_or_default();
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']' | '_'));
    if !host_ok || rest.contains(['?', '#', ' ', '@']) {
        return Err(EndpointError::Invalid);
    }
    match scheme.as_str() {
        "https" => {}
        "http" if allow_http => {}
        "http" => return Err(EndpointError::PlainHttp),
        other => return Err(EndpointError::Scheme(other.chars().take(20).collect())),
    }
    Ok(format!("{scheme}://{rest}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_become_urls_and_others_are_refused() {
        assert_eq!(
            endpoint("kv.vault.azure.net", false).as_deref(),
            Ok("https://kv.vault.azure.net")
        );
        assert_eq!(
            endpoint(" HTTPS://127.0.0.1:8443/mhsm/ ", false).as_deref(),
            Ok("https://127.0.0.1:8443/mhsm")
        );
        assert_eq!(
            endpoint("http://127.0.0.1:80", true).as_deref(),
            Ok("http://127.0.0.1:80")
        );
        assert_eq!(endpoint("http://kv", false), Err(EndpointError::PlainHttp));
        assert_eq!(
            endpoint("ftp://kv", true),
            Err(EndpointError::Scheme("ftp".into()))
        );
        for bad in [
            "",
            "kv?x=1",
            "u@kv",
            "kv#f",
            "a b",
            "https://",
            "https:///x",
        ] {
            assert_eq!(endpoint(bad, true), Err(EndpointError::Invalid), "{bad:?}");
        }
    }

    #[test]
    fn the_host_drops_scheme_port_and_path() {
        assert_eq!(
            host("https://kv.vault.azure.net/keys/k"),
            "kv.vault.azure.net"
        );
        assert_eq!(host("http://169.254.169.254:80"), "169.254.169.254");
        assert_eq!(host("https://[fd00::1]:8443/x"), "fd00::1");
        assert_eq!(host("kv.example"), "kv.example");
    }

    #[test]
    fn the_origin_keeps_scheme_host_and_port() {
        assert_eq!(
            origin("https://acct.blob.core.windows.net/c/a.img"),
            "https://acct.blob.core.windows.net"
        );
        assert_eq!(
            origin("http://127.0.0.1:10000/acct/c/a.img"),
            "http://127.0.0.1:10000"
        );
        assert_eq!(
            origin("acct.blob.core.windows.net/c"),
            "https://acct.blob.core.windows.net"
        );
    }
}
