//! One blob's address and credentials, and how a request to it is built and checked: shared by the block
//! source (reads, writes) and its lease renewer thread (which owns a clone).
#![forbid(unsafe_code)]

use super::Auth;
use crate::http::{self, Client, Request};

/// Where requests go and how they are authorized.
#[derive(Debug, Clone)]
pub(super) struct Endpoint {
    pub(super) client: Client,
    /// The blob URL, no query.
    pub(super) url: String,
    pub(super) auth: Auth,
    /// `x-ms-version`.
    pub(super) version: String,
}

impl Endpoint {
    /// The URL with `comp` and the SAS appended.
    pub(super) fn target(&self, comp: Option<&str>) -> String {
        let mut q: Vec<&str> = Vec::new();
        if let Some(c) = comp {
            q.push(c);
        }
        if let Auth::Sas(s) = &self.auth {
            q.push(s.expose());
        }
        if q.is_empty() {
            self.url.clone()
        } else {
            format!("{}?{}", self.url, q.join("&"))
        }
    }

    /// A request with `x-ms-version`, a fresh `x-ms-client-request-id` and the bearer token, if any.
    pub(super) fn request<'a>(
        &self,
        method: &'static str,
        target: &'a str,
    ) -> http::Result<Request<'a>> {
        let mut req = Request::new(method, target)
            .header("x-ms-version", self.version.clone())
            .header("x-ms-client-request-id", request_id());
        if let Auth::Bearer(t) = &self.auth {
            let token = t.token().map_err(|e| http::Error::Transport {
                method: method.to_string(),
                url: crate::redact::url(target),
                kind: http::TransportKind::Request,
                detail: e.to_string(),
            })?;
            req = req.header("authorization", format!("Bearer {}", token.expose()));
        }
        Ok(req)
    }

    /// One attempt with the request-id echo check.
    pub(super) fn checked(
        &self,
        req: &Request<'_>,
        accept: &[u16],
    ) -> http::Result<http::Response> {
        self.checked_into(req, accept, None).map(|(resp, _)| resp)
    }

    /// [`checked`](Self::checked) with [`Client::send_once_into`]'s direct body read.
    pub(super) fn checked_into(
        &self,
        req: &Request<'_>,
        accept: &[u16],
        into: Option<(u16, &mut [u8])>,
    ) -> http::Result<(http::Response, bool)> {
        let (resp, filled) = self.client.send_once_into(req, accept, into)?;
        let sent = req.header_value("x-ms-client-request-id");
        match resp.header("x-ms-client-request-id") {
            Some(echo) if Some(echo) != sent => Err(http::Error::BadResponse {
                method: req.method().to_string(),
                url: req.shown_url(),
                detail: "x-ms-client-request-id echo does not match the request".into(),
            }),
            _ => Ok((resp, filled)),
        }
    }

    /// The URL as it may be shown.
    pub(super) fn shown(&self) -> String {
        crate::redact::url(&self.url)
    }
}

/// A random UUID v4 (`x-ms-client-request-id`, a proposed lease id).
pub(super) fn request_id() -> String {
    let mut b = [0u8; 16];
    // Without randomness the id is only less useful for tracing; requests still work.
    let _ = getrandom::fill(&mut b);
    crate::uuid::v4(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct NoToken;
    impl crate::blob::BearerSource for NoToken {
        fn token(&self) -> crate::blob::Result<crate::secret::SecretString> {
            Err(crate::blob::Error::Token("IMDS token: HTTP 503".into()))
        }
    }

    /// A request whose token cannot be had is not sent, and its error says so plainly (it read "invalid
    /// request: no bearer token: blob token: ...").
    #[test]
    fn a_request_without_its_token_says_not_sent_and_why() {
        let ep = Endpoint {
            client: Client::new(&crate::manifest::empty_plan().unwrap().network).unwrap(),
            url: "https://acct.blob.core.windows.net/c/b.img".into(),
            auth: super::super::Auth::Bearer(std::sync::Arc::new(NoToken)),
            version: "2020-10-02".into(),
        };
        let e = ep.request("GET", &ep.url).err().unwrap().to_string();
        assert_eq!(
            e,
            "GET https://acct.blob.core.windows.net/c/b.img: request not sent: blob token: IMDS token: HTTP 503"
        );
    }

    #[test]
    fn request_ids_are_uuid_v4() {
        let id = request_id();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert_ne!(id, request_id());
    }
}
