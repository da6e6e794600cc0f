//! What of a value may be shown in a message or a log: URLs without their secrets (a SAS query is a
//! credential; user info may be one).
#![forbid(unsafe_code)]

/// The URL as it may be shown: scheme, host, port and path; any query becomes `?<redacted>`; any user
/// info is dropped.
pub fn url(url: &str) -> String {
    let (base, had_query) = match url.split_once(['?', '#']) {
        Some((b, _)) => (b, true),
        None => (url, false),
    };
    let base = match base.split_once("://") {
        Some((scheme, rest)) => {
            let (auth, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let host = auth.rsplit_once('@').map_or(auth, |(_, h)| h);
            format!("{scheme}://{host}{path}")
        }
        None => base.to_string(),
    };
    if had_query {
        format!("{base}?<redacted>")
    } else {
        base
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_queries_and_userinfo() {
        assert_eq!(
            url("https://a.blob.core.windows.net/c/b?sv=2020&sig=SECRET"),
            "https://a.blob.core.windows.net/c/b?<redacted>"
        );
        assert_eq!(url("http://u:pw@h:1/p"), "http://h:1/p");
        assert_eq!(url("http://h/p#frag"), "http://h/p?<redacted>");
        assert_eq!(url("http://h/p"), "http://h/p");
    }

    #[test]
    fn a_manifest_url_with_user_info_loses_it() {
        // The manifest's own copy kept user info and fragments in its messages.
        assert_eq!(url("https://me:pw@a/c/b#x"), "https://a/c/b?<redacted>");
    }
}
