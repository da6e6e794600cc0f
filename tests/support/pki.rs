//! Test PKIs: a web-style CA (root → intermediate → TLS and JWS leaves for 127.0.0.1) and a fake AMD chain
//! (ARK → ASK → VCEK with TCB and hwID extensions, ECDSA P-384) whose VCEK key signs fake reports.
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_RSA_SHA256,
};
use rsa::pkcs8::EncodePrivateKey;
use std::sync::OnceLock;

fn params(cn: &str, sans: &[&str], ca: bool) -> CertificateParams {
    let mut p =
        CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    if ca {
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    }
    p
}

/// RSA-2048 keys are slow to make (more so in a TCG VM): a few shared ones per test process, each made
/// on first use.
pub fn rsa_key(slot: usize) -> rsa::PrivateKey {
    static KEYS: [OnceLock<rsa::PrivateKey>; 4] = [const { OnceLock::new() }; 4];
    KEYS[slot]
        .get_or_init(|| rsa::PrivateKey::new(&mut getrandom::SysRng, 2048).unwrap())
        .clone()
}

/// A web-style PKI.
pub struct WebPki {
    pub root_der: Vec<u8>,
    pub root_pem: String,
    pub inter_der: Vec<u8>,
    /// TLS server chain (leaf, intermediate) and key for 127.0.0.1.
    pub tls_chain: Vec<Vec<u8>>,
    pub tls_key: Vec<u8>,
    /// The same key, PKCS#8 PEM (for servers that read files, such as Azurite).
    pub tls_key_pem: String,
    /// JWS signing leaf (RSA) for `jws_host`, and its key.
    pub jws_leaf_der: Vec<u8>,
    pub jws_key: rsa::PrivateKey,
}

/// Build a PKI; the JWS leaf is valid for `jws_host`.
pub fn web_pki(name: &str, jws_host: &str) -> WebPki {
    let root_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let root_params = params(&format!("{name} Root"), &[], true);
    let root = root_params.self_signed(&root_key).unwrap();
    let root_issuer = Issuer::new(root_params, root_key);
    let inter_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let inter_params = params(&format!("{name} Intermediate"), &[], true);
    let inter = inter_params.signed_by(&inter_key, &root_issuer).unwrap();
    let inter_issuer = Issuer::new(inter_params, inter_key);
    let mut tls_params = params("fake azure", &["127.0.0.1", "localhost"], false);
    tls_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let tls_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let tls = tls_params.signed_by(&tls_key, &inter_issuer).unwrap();
    let jws_key = rsa_key(0);
    let jws_kp = KeyPair::from_pkcs8_der_and_sign_algo(
        &jws_key.to_pkcs8_der().unwrap().as_bytes().into(),
        &PKCS_RSA_SHA256,
    )
    .unwrap();
    let mut jws_params = params("fake vault", &[jws_host], false);
    jws_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let jws_leaf = jws_params.signed_by(&jws_kp, &inter_issuer).unwrap();
    WebPki {
        root_der: root.der().to_vec(),
        root_pem: root.pem(),
        inter_der: inter.der().to_vec(),
        tls_chain: vec![tls.der().to_vec(), inter.der().to_vec()],
        tls_key: tls_key.serialize_der(),
        tls_key_pem: tls_key.serialize_pem(),
        jws_leaf_der: jws_leaf.der().to_vec(),
        jws_key,
    }
}

/// A fake AMD chain.
pub struct AmdChain {
    pub ark_der: Vec<u8>,
    pub ask_der: Vec<u8>,
    pub vcek_der: Vec<u8>,
    pub vcek_key: p384::ecdsa::SigningKey,
    /// PEM VCEK + ASK + ARK.
    pub pem: String,
}

fn spl(v: u8) -> Vec<u8> {
    if v >= 0x80 {
        vec![0x02, 0x02, 0x00, v]
    } else {
        vec![0x02, 0x01, v]
    }
}

/// ARK → ASK → VCEK for `chip_id` at TCB (bl, tee, snp, ucode).
pub fn amd_chain(chip_id: &[u8; 64], tcb: (u8, u8, u8, u8)) -> AmdChain {
    let ark_key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap();
    let ark_params = params("ARK-Test", &[], true);
    let ark = ark_params.self_signed(&ark_key).unwrap();
    let ark_issuer = Issuer::new(ark_params, ark_key);
    let ask_key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap();
    let ask_params = params("SEV-Test", &[], true);
    let ask = ask_params.signed_by(&ask_key, &ark_issuer).unwrap();
    let ask_issuer = Issuer::new(ask_params, ask_key);
    let vcek_kp = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap();
    let mut vp = params("SEV-VCEK", &[], false);
    let (bl, tee, snp, ucode) = tcb;
    for (n, v) in [(1u64, bl), (2, tee), (3, snp), (8, ucode)] {
        vp.custom_extensions.push(CustomExtension::from_oid_content(
            &[1, 3, 6, 1, 4, 1, 3704, 1, 3, n],
            spl(v),
        ));
    }
    vp.custom_extensions.push(CustomExtension::from_oid_content(
        &[1, 3, 6, 1, 4, 1, 3704, 1, 4],
        chip_id.to_vec(),
    ));
    let vcek = vp.signed_by(&vcek_kp, &ask_issuer).unwrap();
    use p384::pkcs8::DecodePrivateKey;
    let vcek_key = p384::ecdsa::SigningKey::from_pkcs8_der(&vcek_kp.serialize_der()).unwrap();
    AmdChain {
        pem: format!("{}{}{}", vcek.pem(), ask.pem(), ark.pem()),
        ark_der: ark.der().to_vec(),
        ask_der: ask.der().to_vec(),
        vcek_der: vcek.der().to_vec(),
        vcek_key,
    }
}

/// The pin for a fake ARK.
pub fn pin_of(ark_der: &[u8]) -> encfs_init::attest::verify::ArkPin {
    let c = encfs_init::x509::Cert::from_der(ark_der).unwrap();
    encfs_init::attest::verify::ArkPin {
        product: "Test",
        spki_sha256: c.spki_sha256().unwrap(),
    }
}

/// `der` with the last byte of its signature flipped: still a certificate, signed by nobody.
pub fn broken_signature(der: &[u8]) -> Vec<u8> {
    let mut d = der.to_vec();
    if let Some(b) = d.last_mut() {
        *b ^= 1;
    }
    d
}
