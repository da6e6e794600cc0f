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

#[cfg(test)]
mod tests {
    use super::*;

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
}
