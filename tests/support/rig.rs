//! Everything a release needs, wired to the fake Azure: a fake AMD chain and a signer with its VCEK key,
//! UVM info whose host certificate matches, the HTTP client trusting the test CA, an IMDS token cache.
use super::azure::{FakeAzure, VaultKey, FAST};
use super::pki::{self, AmdChain};
use encfs_init::attest::fake::{FakeAttester, Template};
use encfs_init::attest::uvm::{ThimCerts, UvmInfo};
use encfs_init::attest::verify::ArkPin;
use encfs_init::attest::Attester;
use encfs_init::http::Client;
use encfs_init::keyrelease::akv::JwsTrust;
use encfs_init::keyrelease::token::{TokenCache, TokenSource};
use encfs_init::keyrelease::{self, Context, Error};
use encfs_init::manifest::{Endpoint, Endpoints, NetworkPlan, ReleasePlan, VaultKind};
use encfs_init::secret::{SecretBytes, SecretString};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::time::Duration;

pub const POLICY: &[u8] = b"package policy\napi_svn := \"0.10.0\"\n";
pub const CHIP: [u8; 64] = [0x42; 64];
pub const TCB: u64 = 0xdb18_0000_0000_0004;

pub struct Rig {
    pub az: FakeAzure,
    pub amd: AmdChain,
    pub attester: Box<dyn Attester>,
    pub uvm: UvmInfo,
    pub net: NetworkPlan,
    pub tokens: TokenCache,
    pub trust: JwsTrust,
    pub pins: Vec<ArkPin>,
    pub endpoints: Endpoints,
    pub dir: PathBuf,
}

pub fn template() -> Template {
    Template {
        host_data: Sha256::digest(POLICY).into(),
        chip_id: CHIP,
        tcb: TCB,
        ..Template::default()
    }
}

pub fn hostdata_claim() -> (String, serde_json::Value) {
    (
        "x-ms-sevsnpvm-hostdata".into(),
        json!(encfs_init::hex::encode(&Sha256::digest(POLICY))),
    )
}

impl Rig {
    pub fn new(name: &str) -> Rig {
        let amd = pki::amd_chain(&CHIP, (4, 0, 0x18, 0xdb));
        let az = FakeAzure::start(&amd);
        let dir = std::env::temp_dir().join(format!("encfs-rig-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, &az.root_pem).unwrap();
        let net = NetworkPlan {
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(2),
            retries: 2,
            retry_backoff_max: FAST,
            ca_bundle: Some(ca),
            ca_bundle_sha256: None,
        };
        let endpoints = Endpoints {
            imds: Endpoint(az.http.url()),
            thim: Endpoint(format!("{}/thim", az.http.url())),
            azcache: Endpoint(format!("{}/azcache", az.http.url())),
            amd_kds: Endpoint(format!("{}/kds", az.http.url())),
            login_authority: Endpoint(az.https.url()),
        };
        let uvm = UvmInfo {
            policy: Some(POLICY.to_vec()),
            host_certs: Some(host_certs(&amd, TCB)),
            reference_info: Some(b"\xd2cose".to_vec()),
            sources: vec![],
        };
        let attester = Box::new(FakeAttester::new(amd.vcek_key.clone(), template()));
        let pins = vec![pki::pin_of(&amd.ark_der)];
        let tokens = TokenCache::new(imds_source(&endpoints, VaultKind::KeyVault));
        let trust = JwsTrust {
            extra_roots: vec![pem_der(&az.root_pem)],
            web_roots: false,
        };
        az.add_key(
            "oct",
            VaultKey {
                kty: "oct-HSM".into(),
                material: vec![7; 32],
                policy: vec![hostdata_claim()],
            },
        );
        Rig {
            az,
            amd,
            attester,
            uvm,
            net,
            tokens,
            trust,
            pins,
            endpoints,
            dir,
        }
    }

    pub fn plan(&self, kid: &str, kind: VaultKind) -> ReleasePlan {
        let vault = match kind {
            VaultKind::KeyVault => self.az.https.url(),
            VaultKind::ManagedHsm => format!("{}/mhsm", self.az.https.url()),
        };
        ReleasePlan {
            kid: kid.into(),
            kty: None,
            authority: Endpoint(self.az.https.url()),
            vault: Endpoint(vault),
            vault_kind: kind,
            bearer_token: None,
            salt: vec![],
            label: String::new(),
        }
    }

    pub fn release(&self, rp: &ReleasePlan) -> Result<SecretBytes, Error> {
        let transport = Client::new(&self.net).unwrap();
        keyrelease::release_key(&self.context(&transport), rp)
    }

    /// One attestation, then a release of each plan with it (what a boot with several filesystems does).
    pub fn release_all(&self, rps: &[ReleasePlan]) -> Result<Vec<SecretBytes>, Error> {
        let transport = Client::new(&self.net).unwrap();
        let ctx = self.context(&transport);
        let attested = keyrelease::attest(&ctx, &rps[0])?;
        rps.iter()
            .map(|rp| keyrelease::release_with(&ctx, &attested, rp))
            .collect()
    }

    pub fn context<'a>(&'a self, transport: &'a Client) -> Context<'a> {
        Context {
            attester: self.attester.as_ref(),
            transport,
            uvm: &self.uvm,
            certcache: None,
            endpoints: &self.endpoints,
            maa_api_version: "2020-10-01",
            maa_user_agent: None,
            akv_api_version: "7.4",
            tokens: &self.tokens,
            jws_trust: &self.trust,
            ark_pins: &self.pins,
            verify_locally: true,
        }
    }
}

pub fn imds_source(e: &Endpoints, kind: VaultKind) -> TokenSource {
    TokenSource::Imds {
        base: e.imds.0.clone(),
        api_version: "2018-02-01".into(),
        resource: keyrelease::token::vault_resource(kind).into(),
        client_id: None,
    }
}

pub fn static_source(t: &str) -> TokenSource {
    TokenSource::Static(SecretString::new(t.into()))
}

pub fn host_certs(amd: &AmdChain, tcbm: u64) -> ThimCerts {
    let mut blocks = amd.pem.split_inclusive("-----END CERTIFICATE-----\n");
    let vcek = blocks.next().unwrap().to_string();
    ThimCerts {
        vcek_cert: vcek,
        tcbm: format!("{tcbm:016x}"),
        certificate_chain: blocks.collect(),
        cache_control: "86400".into(),
    }
}

pub fn pem_der(pem: &str) -> Vec<u8> {
    encfs_init::x509::Cert::from_pem_chain(pem.as_bytes()).unwrap()[0]
        .der()
        .to_vec()
}
