//! Trust roots: the compiled-in Mozilla set, plus the manifest's extra PEM bundle when there is one.
//!
//! ureq takes either its built-in roots or a list of DER certificates; to trust both the web roots and an
//! extra bundle, the web roots are taken in certificate form from `webpki-root-certs` (the same Mozilla
//! set ureq compiles in) and the bundle's certificates are appended.
#![forbid(unsafe_code)]

use super::error::{Error, Result};
use std::path::Path;
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

/// The TLS configuration for a bundle (or none).
pub fn config(ca_bundle: Option<&Path>) -> Result<TlsConfig> {
    let Some(path) = ca_bundle else {
        return Ok(TlsConfig::builder().root_certs(RootCerts::WebPki).build());
    };
    let shown = path.display().to_string();
    let pem = std::fs::read(path).map_err(|e| Error::CaBundle {
        path: shown.clone(),
        detail: e.to_string(),
    })?;
    let mut extra = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(PemItem::Certificate(c)) => extra.push(c),
            Ok(_) => {}
            Err(e) => {
                return Err(Error::CaBundle {
                    path: shown,
                    detail: format!("invalid PEM: {e}"),
                })
            }
        }
    }
    if extra.is_empty() {
        return Err(Error::CaBundle {
            path: shown,
            detail: "no CERTIFICATE block found".into(),
        });
    }
    let mut roots: Vec<Certificate<'static>> = webpki_root_certs::TLS_SERVER_ROOT_CERTS
        .iter()
        .map(|der| Certificate::from_der(der.as_ref()))
        .collect();
    roots.extend(extra);
    Ok(TlsConfig::builder()
        .root_certs(RootCerts::new_with_certs(&roots))
        .build())
}
