//! Evidence providers and UVM information without hardware: configfs-tsm against an emulated kernel in a
//! directory of our own, detection order, UVM discovery and env fallbacks, and collateral from AzCache.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod support;

use encfs_init::attest::fake::FakeAttester;
use encfs_init::attest::tsm::{ConfigFs, RealFs, TsmAttester};
use encfs_init::attest::{self, uvm, Attester, Paths};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("encfs-attest-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Emulates the kernel's configfs-tsm in a real directory: mkdir creates the attributes, reading outblob
/// makes a report over inblob, rmdir removes the entry.
struct KernelEmu {
    signer: FakeAttester,
    aux: Vec<u8>,
    race: AtomicBool,
}

impl ConfigFs for KernelEmu {
    fn mkdir(&self, p: &Path) -> std::io::Result<()> {
        std::fs::create_dir(p)?;
        std::fs::write(p.join("provider"), "sev_guest\n")?;
        std::fs::write(p.join("generation"), "0\n")
    }
    fn write(&self, p: &Path, data: &[u8]) -> std::io::Result<()> {
        std::fs::write(p, data)?;
        let g = p.with_file_name("generation");
        let n: u32 = std::fs::read_to_string(&g)?.trim().parse().unwrap();
        std::fs::write(g, format!("{}\n", n + 1))
    }
    fn read(&self, p: &Path) -> std::io::Result<Vec<u8>> {
        match p.file_name().and_then(|n| n.to_str()) {
            Some("outblob") => {
                let rd: [u8; 64] = std::fs::read(p.with_file_name("inblob"))?
                    .try_into()
                    .unwrap();
                if self.race.load(Ordering::SeqCst) {
                    std::fs::write(p.with_file_name("generation"), "99\n")?;
                }
                Ok(self.signer.build(&rd))
            }
            Some("auxblob") => Ok(self.aux.clone()),
            _ => std::fs::read(p),
        }
    }
    fn rmdir(&self, p: &Path) -> std::io::Result<()> {
        std::fs::remove_dir_all(p)
    }
}

#[test]
fn configfs_tsm_round_trip_and_cleanup() {
    let base = scratch("tsm");
    let emu = KernelEmu {
        signer: FakeAttester::ephemeral(),
        aux: Vec::new(),
        race: AtomicBool::new(false),
    };
    let a = TsmAttester::new(base.clone(), Box::new(emu));
    let rd = [0xab; 64];
    let ev = a.report(&rd).unwrap();
    assert_eq!(ev.provider, "configfs-tsm");
    assert_eq!(&ev.report[0x50..0x90], &rd[..]);
    assert!(ev.certs.is_empty());
    assert_eq!(
        std::fs::read_dir(&base).unwrap().count(),
        0,
        "entry removed"
    );
}

#[test]
fn configfs_tsm_detects_a_concurrent_writer_and_still_cleans_up() {
    let base = scratch("tsm-race");
    let emu = KernelEmu {
        signer: FakeAttester::ephemeral(),
        aux: Vec::new(),
        race: AtomicBool::new(true),
    };
    let a = TsmAttester::new(base.clone(), Box::new(emu));
    let e = a.report(&[1; 64]).unwrap_err();
    assert!(e.to_string().contains("generation changed"), "{e}");
    assert_eq!(std::fs::read_dir(&base).unwrap().count(), 0);
}

#[test]
fn configfs_tsm_on_a_plain_directory_names_the_failing_step() {
    let base = scratch("tsm-plain");
    let a = TsmAttester::new(base.clone(), Box::new(RealFs));
    let e = a.report(&[1; 64]).unwrap_err();
    // A plain directory has no attribute files: writing inblob fails, and says so.
    assert!(
        e.to_string().starts_with("write ") && e.to_string().contains("inblob"),
        "{e}"
    );
    assert_eq!(std::fs::read_dir(&base).unwrap().count(), 0);
}

#[test]
fn detection_order_and_no_provider() {
    let d = scratch("detect");
    let none = Paths {
        tsm: d.join("tsm"),
        sev_guest: d.join("sev-guest"),
        sev_legacy: d.join("sev"),
    };
    let e = attest::detect(&none, false).unwrap_err();
    let msg = e.to_string();
    for p in ["tsm", "sev-guest", "/sev)"] {
        assert!(msg.contains(p), "{msg}");
    }
    assert_eq!(attest::detect(&none, true).unwrap().name(), "fake");
    std::fs::write(d.join("sev"), "").unwrap();
    assert_eq!(attest::detect(&none, false).unwrap().name(), "sev-legacy");
    std::fs::write(d.join("sev-guest"), "").unwrap();
    assert_eq!(attest::detect(&none, false).unwrap().name(), "sev-guest");
    std::fs::create_dir(d.join("tsm")).unwrap();
    assert_eq!(attest::detect(&none, false).unwrap().name(), "configfs-tsm");
    // The legacy device is a regular file here: the ioctl fails with a clear message, no panic.
    let legacy = attest::sev_legacy::SevLegacy::new(d.join("sev"));
    let e = legacy.report(&[0; 64]).unwrap_err();
    assert!(e.to_string().contains("SEV_SNP_GUEST_MSG_REPORT"), "{e}");
}

#[test]
fn uvm_discovery_and_fallbacks() {
    use base64::Engine;
    let b64 = |s: &[u8]| base64::engine::general_purpose::STANDARD.encode(s);
    let root = scratch("uvm-root");
    let none = |_: &str| None;
    assert!(uvm::find_dir(&none, &root).is_none());
    // Kata path.
    let kata = root.join("opt/confidential-containers/share/kata-containers");
    std::fs::create_dir_all(&kata).unwrap();
    assert_eq!(uvm::find_dir(&none, &root), Some(kata.clone()));
    // ACI's /security-context-* wins over Kata.
    let aci = root.join("security-context-1234");
    std::fs::create_dir(&aci).unwrap();
    assert_eq!(uvm::find_dir(&none, &root), Some(aci.clone()));
    // Base64 with line breaks and a trailing newline (Go ignores them; so do we).
    let enc = b64(b"package policy\nallow := true\n");
    let wrapped = format!("{}\n{}\n\n", &enc[..10], &enc[10..]);
    std::fs::write(aci.join("security-policy-base64"), wrapped).unwrap();
    // A missing file falls back to its own variable.
    let thim = br#"{"vcekCert":"","tcbm":"7308000000000003","certificateChain":"","cacheControl":"86400"}"#;
    let env_thim = b64(thim);
    let env = |k: &str| (k == "UVM_HOST_AMD_CERTIFICATE").then(|| env_thim.clone());
    let info = uvm::load(&env, &root).unwrap();
    assert_eq!(
        info.policy.as_deref(),
        Some(&b"package policy\nallow := true\n"[..])
    );
    assert_eq!(info.host_certs.unwrap().tcbm().unwrap(), 0x7308000000000003);
    assert!(info.reference_info.is_none());
    assert_eq!(info.sources.len(), 2, "{:?}", info.sources);
    // UVM_SECURITY_CONTEXT_DIR wins over everything.
    let env = |k: &str| (k == "UVM_SECURITY_CONTEXT_DIR").then(|| "/elsewhere".to_string());
    assert_eq!(
        uvm::find_dir(&env, &root),
        Some(PathBuf::from("/elsewhere"))
    );
    // Bad base64 names its file.
    std::fs::write(aci.join("reference-info-base64"), "!!!").unwrap();
    let e = uvm::load(&none, &root).unwrap_err();
    assert!(e.to_string().contains("reference-info-base64"), "{e}");
}

#[test]
#[ignore = "needs ../shared/fixtures"]
fn azcache_chain_with_ucode_0xdb_matches_the_v3_report() {
    use encfs_init::attest::{collateral, report::Report};
    use encfs_init::manifest::{CertCacheKind, CertCachePlan, Endpoint, Endpoints};
    use std::sync::Arc;
    let fix = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/fixtures/upstream/vectors"
    );
    let chain = std::fs::read(format!("{fix}/certfetcher_chain.pem")).unwrap();
    let report =
        Report::parse(&std::fs::read(format!("{fix}/certfetcher_report_v3.bin")).unwrap()).unwrap();
    let chip = report.chip_id_hex();
    let srv = support::Server::start(
        None,
        Arc::new(move |r: &support::Req| {
            if r.path == format!("/SevSnpVM/certificates/{chip}/db18000000000004")
                && r.query == "api-version=2020-10-15-preview&clientId=Test"
            {
                support::Resp {
                    status: 200,
                    body: chain.clone(),
                }
            } else {
                support::Resp::text(404, "no")
            }
        }),
    );
    let cc = CertCachePlan {
        kind: CertCacheKind::AzCache,
        endpoint: Endpoint(srv.url()),
        tee_type: None,
        api_version: None,
        client_id: Some("Test".into()),
    };
    let e = Endpoint(srv.url());
    let endpoints = Endpoints {
        imds: e.clone(),
        thim: e.clone(),
        azcache: e.clone(),
        amd_kds: e.clone(),
        login_authority: e,
    };
    let net = encfs_init::manifest::NetworkPlan {
        connect_timeout: std::time::Duration::from_secs(2),
        request_timeout: std::time::Duration::from_secs(2),
        retries: 0,
        retry_backoff_max: std::time::Duration::from_millis(1),
        ca_bundle: None,
        ca_bundle_sha256: None,
    };
    let t = encfs_init::http::Client::new(&net).unwrap();
    let check = collateral::Check {
        pins: encfs_init::attest::verify::AMD_ARK_PINS,
        now: std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000),
    };
    let c = collateral::find(&t, &report, &[], None, Some(&cc), &endpoints, Some(check)).unwrap();
    assert_eq!(c.source, "AzCache");
    assert_eq!(c.verified, Some("Milan"));
    assert_eq!(srv.hits("/SevSnpVM"), 1);
}
