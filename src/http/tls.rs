//! Trust roots: the compiled-in Mozilla set, plus the manifest's extra PEM bundle when there is one.
//!
//! ureq takes either its built-in roots or a list of DER certificates; to trust both the web roots and an
//! extra bundle, the web roots are taken in certificate form from `webpki-root-certs` (the same Mozilla
//! set ureq compiles in) and the bundle's certificates are appended.
#![forbid(unsafe_code)]

use super::error::{Error, Result};
use crate::manifest::NetworkPlan;
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

/// Read the plan's CA bundle (`Ok(None)` without one), checked against `ca_bundle_sha256` when that is
/// set: the one way every user of the bundle (TLS here, and the key-release JWS check) reads it,
/// so a file swapped after the manifest was checked fails closed.
pub fn read_ca_bundle(net: &NetworkPlan) -> Result<Option<Vec<u8>>> {
    let Some(path) = &net.ca_bundle else {
        return Ok(None);
    };
    let shown = || path.display().to_string();
    let pem = std::fs::read(path).map_err(|e| Error::CaBundle {
        path: shown(),
        detail: e.to_string(),
    })?;
    net.check_ca_bundle_pin(&pem).map_err(|e| Error::CaBundle {
        path: shown(),
        detail: e.to_string(),
    })?;
    Ok(Some(pem))
}

/// The certificates of the plan's CA bundle (`Ok(None)` without one), read by [`read_ca_bundle`]: the one
/// parse of the bundle, for TLS here and for the key-release JWS check. Invalid PEM, or no certificate at
/// all, is an error.
pub fn ca_bundle_certs(net: &NetworkPlan) -> Result<Option<Vec<Certificate<'static>>>> {
    let Some(pem) = read_ca_bundle(net)? else {
        return Ok(None);
    };
    let shown = net
        .ca_bundle
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(PemItem::Certificate(c)) => certs.push(c),
            Ok(_) => {}
            Err(e) => {
                return Err(Error::CaBundle {
                    path: shown,
                    detail: format!("invalid PEM: {e}"),
                })
            }
        }
    }
    if certs.is_empty() {
        return Err(Error::CaBundle {
            path: shown,
            detail: "no CERTIFICATE block found".into(),
        });
    }
    Ok(Some(certs))
}

/// The TLS configuration: the web roots, plus the plan's bundle when there is one.
pub fn config(net: &NetworkPlan) -> Result<TlsConfig> {
    let Some(extra) = ca_bundle_certs(net)? else {
        return Ok(TlsConfig::builder().root_certs(RootCerts::WebPki).build());
    };
    let mut roots: Vec<Certificate<'static>> = webpki_root_certs::TLS_SERVER_ROOT_CERTS
        .iter()
        .map(|der| Certificate::from_der(der.as_ref()))
        .collect();
    roots.extend(extra);
    Ok(TlsConfig::builder()
        .root_certs(RootCerts::new_with_certs(&roots))
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;

    fn plan(path: &std::path::Path, pin: Option<[u8; 32]>) -> NetworkPlan {
        let mut net = crate::manifest::empty_plan().unwrap().network;
        net.ca_bundle = Some(path.to_path_buf());
        net.ca_bundle_sha256 = pin;
        net
    }

    #[test]
    fn a_pinned_bundle_is_read_only_when_its_digest_matches() {
        let dir = std::env::temp_dir().join(format!("encfs-tls-pin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ca.pem");
        let pem = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        std::fs::write(&path, pem).unwrap();
        let good: [u8; 32] = sha2::Sha256::digest(pem).into();
        assert_eq!(
            read_ca_bundle(&plan(&path, Some(good))).unwrap().as_deref(),
            Some(&pem[..])
        );
        assert_eq!(
            read_ca_bundle(&plan(&path, None)).unwrap().as_deref(),
            Some(&pem[..])
        );

        // The file changed after the manifest was checked: every reader fails closed, in one line.
        let e = read_ca_bundle(&plan(&path, Some([7; 32])))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            format!(
                "CA bundle {}: its SHA-256 is {} but [network] ca_bundle_sha256 pins {}; fix: ship the bundle \
                 the manifest was written for at this path in the image, or set ca_bundle_sha256 to the new \
                 file's sha256sum",
                path.display(),
                crate::hex::encode(&good),
                "07".repeat(32)
            )
        );
        assert!(config(&plan(&path, Some([7; 32]))).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
