//! Unit tests of the export forms; the oracles are openssl and the rsa crate.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use super::*;

fn oct(bytes: &[u8], ops: &[&str]) -> ReleasedKey {
    ReleasedKey {
        kty: "oct-HSM".into(),
        key_ops: ops.iter().map(|s| s.to_string()).collect(),
        enc: "CKM_RSA_AES_KEY_WRAP".into(),
        plaintext: SecretBytes::new(bytes.to_vec()),
    }
}

#[test]
fn an_oct_jwk_is_upstreams_compact_sorted_json() {
    let k = oct(&[0xfb; 4], &["wrapKey", "unwrapKey"]);
    let j = jwk(&k).unwrap();
    assert_eq!(
        std::str::from_utf8(j.expose()).unwrap(),
        r#"{"k":"-_v7-w","key_ops":["wrapKey","unwrapKey"],"kty":"oct"}"#
    );
    let v: serde_json::Value = serde_json::from_slice(j.expose()).unwrap();
    assert_eq!(v["kty"], "oct");
    let j = jwk(&oct(&[1], &[])).unwrap();
    assert_eq!(
        std::str::from_utf8(j.expose()).unwrap(),
        r#"{"k":"AQ","kty":"oct"}"#
    );
}

#[test]
fn names_are_escaped_and_base64_is_standard() {
    let k = oct(&[0xfb, 0xff], &["a\"b\\c\n"]);
    let j = jwk(&k).unwrap();
    let v: serde_json::Value = serde_json::from_slice(j.expose()).unwrap();
    assert_eq!(v["key_ops"][0], "a\"b\\c\n");
    assert_eq!(base64(&k).expose(), b"+/8=");
    assert_eq!(raw(&k).expose(), [0xfb, 0xff]);
    assert!(pem(&k)
        .unwrap_err()
        .to_string()
        .contains("raw, base64 or jwk"));
}

/// Run openssl with `args`, feeding `input`; its stdout.
fn openssl(args: &[&str], input: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = std::process::Command::new("openssl")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("openssl (the oracle) runs");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "openssl {args:?} failed");
    out.stdout
}

/// A fresh private key from `openssl genpkey`, made at test time, as PKCS#8 DER.
fn genpkey(opts: &[&str]) -> Vec<u8> {
    let mut args = vec!["genpkey"];
    args.extend_from_slice(opts);
    to_pkcs8_der(&openssl(&args, b""), "PEM")
}

/// The key in `input` (PEM or DER, as `inform` says) as PKCS#8 DER, by openssl.
fn to_pkcs8_der(input: &[u8], inform: &str) -> Vec<u8> {
    openssl(
        &[
            "pkcs8", "-topk8", "-nocrypt", "-inform", inform, "-outform", "DER",
        ],
        input,
    )
}

fn released(kty: &str, der: &[u8], ops: &[&str]) -> ReleasedKey {
    ReleasedKey {
        kty: kty.into(),
        key_ops: ops.iter().map(|s| s.to_string()).collect(),
        enc: "CKM_RSA_AES_KEY_WRAP".into(),
        plaintext: SecretBytes::new(der.to_vec()),
    }
}

/// The hex-colon fields of `openssl pkey -text -noout` (`name:` then indented lines), as bytes without
/// leading zeros.
fn openssl_fields(der: &[u8]) -> std::collections::HashMap<String, Vec<u8>> {
    let text =
        String::from_utf8(openssl(&["pkey", "-inform", "DER", "-text", "-noout"], der)).unwrap();
    let mut fields = std::collections::HashMap::new();
    let mut current: Option<(String, String)> = None;
    for line in text.lines().chain(std::iter::once("end:")) {
        if line.starts_with(' ') {
            if let Some((_, hex)) = current.as_mut() {
                hex.push_str(&line.trim().replace(':', ""));
            }
            continue;
        }
        if let Some((name, hex)) = current.take() {
            let bytes = crate::hex::decode(&hex).unwrap();
            fields.insert(name, trim(&bytes).to_vec());
        }
        if let Some(name) = line.strip_suffix(':') {
            current = Some((name.to_string(), String::new()));
        }
    }
    fields
}

fn trim(b: &[u8]) -> &[u8] {
    let at = b.iter().position(|x| *x != 0).unwrap_or(b.len());
    &b[at..]
}

fn b64u(v: &serde_json::Value) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(v.as_str().expect("a string member"))
        .expect("base64url without padding")
}

/// The members' names in order, to check the compact sorted form.
fn member_names(json: &[u8]) -> Vec<String> {
    let text = std::str::from_utf8(json).unwrap();
    assert!(
        !text.contains(' ') && !text.contains('\n'),
        "compact: {text}"
    );
    let v: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text).unwrap();
    let mut names: Vec<String> = v.keys().cloned().collect();
    names.sort();
    // serde_json's map is sorted; the text must list them in the same order.
    let mut at = 0;
    for n in &names {
        let found = text[at..]
            .find(&format!("\"{n}\":"))
            .expect("member in order");
        at += found + 1;
    }
    names
}

#[test]
fn an_rsa_jwk_holds_the_numbers_openssl_reads_and_rebuilds_the_key() {
    let der = genpkey(&["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]);
    let key = released("RSA-HSM", &der, &["sign", "decrypt"]);
    let j = jwk(&key).unwrap();
    assert_eq!(
        member_names(j.expose()),
        ["d", "dp", "dq", "e", "key_ops", "kty", "n", "p", "q", "qi"]
    );
    let v: serde_json::Value = serde_json::from_slice(j.expose()).unwrap();
    assert_eq!(v["kty"], "RSA");
    assert_eq!(v["key_ops"], serde_json::json!(["sign", "decrypt"]));
    let f = openssl_fields(&der);
    for (member, field) in [
        ("n", "modulus"),
        ("d", "privateExponent"),
        ("p", "prime1"),
        ("q", "prime2"),
        ("dp", "exponent1"),
        ("dq", "exponent2"),
        ("qi", "coefficient"),
    ] {
        let got = b64u(&v[member]);
        assert_ne!(got.first(), Some(&0), "{member} has no leading zero");
        assert_eq!(got, f[field], "{member} is openssl's {field}");
    }
    assert_eq!(b64u(&v["e"]), [1, 0, 1]);
    // The rsa crate rebuilds the same key from the JWK's numbers.
    let n = |m: &str| rsa::BoxedUint::from_be_slice_vartime(&b64u(&v[m]));
    let rebuilt =
        rsa::PrivateKey::from_components(n("n"), n("e"), n("d"), vec![n("p"), n("q")]).unwrap();
    use rsa::pkcs8::DecodePrivateKey;
    assert_eq!(rebuilt, rsa::PrivateKey::from_pkcs8_der(&der).unwrap());
}

#[test]
fn ec_jwks_hold_the_curve_scalar_and_point_openssl_reads() {
    for (curve, crv, size) in [("P-256", "P-256", 32), ("P-384", "P-384", 48)] {
        let der = genpkey(&[
            "-algorithm",
            "EC",
            "-pkeyopt",
            &format!("ec_paramgen_curve:{curve}"),
        ]);
        let j = jwk(&released("EC-HSM", &der, &[])).unwrap();
        assert_eq!(member_names(j.expose()), ["crv", "d", "kty", "x", "y"]);
        let v: serde_json::Value = serde_json::from_slice(j.expose()).unwrap();
        assert_eq!(v["crv"], crv);
        assert_eq!(v["kty"], "EC");
        let f = openssl_fields(&der);
        let (d, x, y) = (b64u(&v["d"]), b64u(&v["x"]), b64u(&v["y"]));
        assert_eq!(d.len(), size, "{crv}: d is the field's size");
        assert_eq!(trim(&d), f["priv"], "{crv}: d");
        let mut point = vec![4u8];
        point.extend_from_slice(&x);
        point.extend_from_slice(&y);
        assert_eq!((x.len(), y.len()), (size, size));
        assert_eq!(point, f["pub"], "{crv}: x and y are openssl's public point");
        let ops = jwk(&released("EC", &der, &["sign"])).unwrap();
        let v: serde_json::Value = serde_json::from_slice(ops.expose()).unwrap();
        assert_eq!(v["key_ops"], serde_json::json!(["sign"]));
    }
}

#[test]
fn pem_is_the_pkcs8_der_in_lines_openssl_reads_back() {
    let keys = [
        (
            "RSA-HSM",
            genpkey(&["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]),
        ),
        (
            "EC-HSM",
            genpkey(&["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]),
        ),
        (
            "EC",
            genpkey(&["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"]),
        ),
    ];
    for (kty, der) in keys {
        let p = pem(&released(kty, &der, &[])).unwrap();
        let text = std::str::from_utf8(p.expose()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "-----BEGIN PRIVATE KEY-----");
        assert_eq!(*lines.last().unwrap(), "-----END PRIVATE KEY-----");
        assert!(text.ends_with("-----\n"));
        let body = &lines[1..lines.len() - 1];
        assert!(
            body[..body.len() - 1].iter().all(|l| l.len() == 64),
            "{kty}"
        );
        assert!(!body.last().unwrap().is_empty() && body.last().unwrap().len() <= 64);
        // openssl reads the PEM back to the same DER (its check of the key included).
        let back = to_pkcs8_der(p.expose(), "PEM");
        assert_eq!(back, der, "{kty}");
    }
}

#[test]
fn keys_that_are_not_what_they_claim_are_refused_with_the_reason() {
    let rsa = genpkey(&["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"]);
    let ec = genpkey(&["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]);
    // An EC key without its public point (openssl ec -no_public, then PKCS#8 again).
    let sec1 = openssl(
        &["ec", "-inform", "DER", "-no_public", "-outform", "DER"],
        &ec,
    );
    let bare = to_pkcs8_der(&sec1, "DER");
    let e = jwk(&released("EC", &bare, &[])).unwrap_err();
    assert!(matches!(e, Error::NoPublicKey), "{e}");
    assert!(e.to_string().contains("no public key"), "{e}");
    // An RSA key named EC, an EC key named RSA, garbage, a truncated key.
    assert!(jwk(&released("EC", &rsa, &[]))
        .unwrap_err()
        .to_string()
        .contains("not id-ecPublicKey"));
    assert!(matches!(
        pem(&released("RSA", &ec, &[])),
        Err(Error::Rsa(_))
    ));
    assert!(matches!(
        jwk(&released("EC", b"\x30\x03\x02\x01", &[])),
        Err(Error::Der { .. })
    ));
    assert!(matches!(
        pem(&released("EC", &ec[..ec.len() - 1], &[])),
        Err(Error::Der { .. })
    ));
    let e = pem(&released("RSA-HSM", &rsa[..rsa.len() - 3], &[])).unwrap_err();
    assert!(crate::errors::chain(&e).contains("fix: "), "{e}");
    // A curve with no JWK name here (secp256k1).
    let k1 = genpkey(&[
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:secp256k1",
    ]);
    let e = jwk(&released("EC", &k1, &[])).unwrap_err();
    assert!(e.to_string().contains("1.3.132.0.10"), "{e}");
}
