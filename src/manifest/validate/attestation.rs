//! `[attestation]` and `[certcache]`: the test-mode attestation overrides and the collateral endpoint.

use super::*;

pub(super) fn attestation(
    v: &mut V<'_>,
    p: &FieldPath,
    a: &schema::Attestation,
) -> AttestationPlan {
    AttestationPlan {
        fake_vcek_key: fake_vcek_key(v, p, a),
        test_ark_pin: test_ark_pin(v, p, a),
        maa_user_agent: maa_user_agent(v, p, a),
    }
}

/// A User-Agent MAA can be sent: 1 to 256 printable ASCII characters (a header value: no control
/// characters), not starting or ending with a space.
fn maa_user_agent(v: &mut V<'_>, p: &FieldPath, a: &schema::Attestation) -> Option<String> {
    let ua = a.maa_user_agent.as_deref()?;
    let ok = (1..=256).contains(&ua.len())
        && ua.bytes().all(|b| (0x20..0x7f).contains(&b))
        && !ua.starts_with(' ')
        && !ua.ends_with(' ');
    if !ok {
        v.err(
            &p.key("maa_user_agent"),
            format!(
                "\"{}\" cannot be a User-Agent",
                ua.escape_debug()
                    .to_string()
                    .chars()
                    .take(80)
                    .collect::<String>()
            ),
            "use 1 to 256 printable ASCII characters, e.g. \"ConfidentialSkrContainer\"",
        );
        return None;
    }
    Some(ua.to_string())
}

fn fake_vcek_key(
    v: &mut V<'_>,
    p: &FieldPath,
    a: &schema::Attestation,
) -> Option<(PathBuf, SecretBytes)> {
    let file = a.fake_vcek_key_file.as_deref()?;
    let fp = p.key("fake_vcek_key_file");
    if !v.test_mode {
        v.err(
            &fp,
            "a fake VCEK key is allowed only in test mode",
            "remove fake_vcek_key_file (a real SEV-SNP guest signs its own reports), or set test_mode = true for testing",
        );
        return None;
    }
    let full = v.resolve(file);
    let bytes = v.read_file(&fp, file, "fake VCEK key")?;
    match crate::pkcs8::p384_der(&bytes) {
        Ok(der) => Some((full, der)),
        Err(e) => {
            v.err(
                &fp,
                format!(
                    "{} is not a P-384 private key: {}",
                    full.display(),
                    crate::errors::chain(&e)
                ),
                "give a PKCS#8 P-384 key, PEM (-----BEGIN PRIVATE KEY-----) or DER",
            );
            None
        }
    }
}

fn test_ark_pin(
    v: &mut V<'_>,
    p: &FieldPath,
    a: &schema::Attestation,
) -> Option<(PathBuf, [u8; 32])> {
    let file = a.test_ark_file.as_deref()?;
    let fp = p.key("test_ark_file");
    if !v.test_mode {
        v.err(
            &fp,
            "an extra trusted ARK is allowed only in test mode",
            "remove test_ark_file (reports are verified against AMD's own root keys), or set test_mode = true for testing",
        );
        return None;
    }
    let full = v.resolve(file);
    let bytes = v.read_file(&fp, file, "test ARK certificate")?;
    let cert = if bytes.starts_with(b"-----") {
        crate::x509::Cert::from_pem_chain(&bytes)
            .ok()
            .and_then(|mut c| (c.len() == 1).then(|| c.remove(0)))
    } else {
        crate::x509::Cert::from_der(&bytes).ok()
    };
    match cert.map(|c| c.spki_sha256()) {
        Some(Ok(pin)) => Some((full, pin)),
        _ => {
            v.err(
                &fp,
                format!("{} is not one X.509 certificate", full.display()),
                "give the test ARK's certificate, PEM (one -----BEGIN CERTIFICATE----- block) or DER",
            );
            None
        }
    }
}

pub(super) fn certcache(
    v: &mut V<'_>,
    p: &FieldPath,
    c: &schema::CertCache,
) -> Option<CertCachePlan> {
    let kind = match c.endpoint_type.to_ascii_lowercase().as_str() {
        "amd" => CertCacheKind::Amd,
        "azcache" => CertCacheKind::AzCache,
        "localthim" => CertCacheKind::LocalThim,
        other => {
            v.err(
                &p.key("endpoint_type"),
                format!("unknown endpoint type \"{other}\""),
                "use \"AMD\", \"AzCache\" or \"LocalTHIM\"",
            );
            return None;
        }
    };
    let endpoint = if kind == CertCacheKind::LocalThim && !c.endpoint.contains("://") {
        // THIM is served over plain http on the host-local address (upstream fetches it with http://).
        let url = format!("http://{}", c.endpoint.trim_end_matches('/'));
        v.service_url(&p.key("endpoint"), Some(&url), &url, true)
    } else {
        v.endpoint(&p.key("endpoint"), &c.endpoint)?
    };
    let strip = |s: &Option<String>, prefix: &str| {
        s.as_deref()
            .filter(|s| !s.is_empty())
            .map(|s| s.strip_prefix(prefix).unwrap_or(s).to_string())
    };
    Some(CertCachePlan {
        kind,
        endpoint,
        tee_type: c.tee_type.clone().filter(|s| !s.is_empty()),
        api_version: strip(&c.api_version, "api-version="),
        client_id: strip(&c.client_id, "clientId="),
    })
}
