//! Get Blob Properties on its own (`encfs-init doctor`): one HEAD, nothing pinned or taken, the headers a
//! user needs to see (size, type, ETag, lease state and status).
#![forbid(unsafe_code)]

use super::answers::open_error;
use super::endpoint::Endpoint;
use super::Auth;
use crate::blob::{Error, Result};
use crate::http::Client;

/// What `HEAD <blob>` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Properties {
    /// `Content-Length`.
    pub size: u64,
    /// `x-ms-blob-type`.
    pub blob_type: String,
    /// `ETag`.
    pub etag: String,
    /// `x-ms-lease-state` (`available`, `leased`, `expired`, `breaking`, `broken`), when sent.
    pub lease_state: Option<String>,
    /// `x-ms-lease-status` (`locked`, `unlocked`), when sent.
    pub lease_status: Option<String>,
}

/// HEAD `url` (no query; a SAS goes in `auth`) as the open does: the same checks of the URL before
/// anything is sent, the same request under the client's retry policy.
pub fn head(client: Client, url: &str, auth: Auth, version: &str) -> Result<Properties> {
    super::check_target(url, &auth, version)?;
    read(&Endpoint {
        client,
        url: url.to_string(),
        auth,
        version: version.to_string(),
    })
}

/// Get Blob Properties of `ep`'s blob (the open's HEAD and `doctor`'s).
pub(super) fn read(ep: &Endpoint) -> Result<Properties> {
    let target = ep.target(None);
    let resp = ep
        .client
        .retry(|_| {
            let req = ep.request("HEAD", &target)?;
            ep.checked(&req, &[200])
        })
        .map_err(|e| open_error(e, &ep.url, &ep.auth))?;
    let header = |n: &str| resp.header(n).map(str::to_string);
    let need = |n: &str| {
        header(n).ok_or_else(|| Error::Protocol(format!("HEAD {}: no {n} header", ep.shown())))
    };
    Ok(Properties {
        size: need("content-length")?
            .trim()
            .parse()
            .map_err(|_| Error::Protocol("HEAD: invalid Content-Length".into()))?,
        blob_type: need("x-ms-blob-type")?,
        etag: need("etag")?,
        lease_state: header("x-ms-lease-state"),
        lease_status: header("x-ms-lease-status"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::StaticToken;
    use crate::secret::SecretString;
    use std::sync::Arc;

    #[test]
    fn a_bearer_token_is_not_sent_over_plain_http_to_another_host() {
        let client = Client::new(&crate::manifest::empty_plan().unwrap().network).unwrap();
        let auth = Auth::Bearer(Arc::new(StaticToken::new(SecretString::new("t".into()))));
        let e = head(client, "http://203.0.113.9/c/b.img", auth, "2021-08-06").unwrap_err();
        assert!(
            e.to_string()
                .contains("refusing to send a bearer token over plain http"),
            "{e}"
        );
    }
}
