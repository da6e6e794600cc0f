//! A fake Azure for VM scenarios (not a test of its own; `harness = false`): the fake AMD chain and the fake
//! MAA, Key Vault and IMDS of tests/support, on the guest's 127.0.0.1. The rig builds it static
//! (`cargo_tests = ["guest_fake_azure"]`).
//!
//! `guest_fake_azure --key-file KEY32 --out DIR [--policy-hostdata HEX] [--sev-guest] [--no-demo-key] [--extra-key NAME:KTY:FILE]... [--token-ttl SECS]`: makes the fake AMD chain (ARK →
//! ASK → VCEK for chip id 0x42.., the default TCB of the product's fake attester) and a fake Azure (IMDS
//! over http; MAA and the vault over https with a test CA), adds the oct-HSM key `demo` holding the 32 raw
//! bytes of KEY32 with a release policy on `x-ms-sevsnpvm-hostdata` (SHA-256 of the security policy it
//! writes, or HEX), then writes into DIR:
//!
//! - `ca.pem`: the test CA (the manifest's `[network] ca_bundle`);
//! - `ark.pem`: the fake ARK (the manifest's `[attestation] test_ark_file`);
//! - `vcek-key.pem`: the fake VCEK's private key (the manifest's `[attestation] fake_vcek_key_file`);
//! - `host-amd-cert-base64`, `security-policy-base64`: the UVM information files (a security-context dir);
//! - `env`, written last (its presence means ready): `IMDS_URL=`, `MAA_URL=`, `VAULT_URL=` lines;
//!
//! With `--sev-guest` it is also the fake AMD secure processor: an emulated `/dev/sev-guest` (CUSE, see
//! tests/support/cuse.rs; needs `/dev/cuse`) answering `SNP_GET_REPORT` with reports signed by the fake
//! VCEK, with the VMPL the guest asked for; the release policy then also wants `x-ms-sevsnpvm-vmpl` 0, and
//! `vcek-key.pem` is not written (nothing but the device can sign). `env` is written once the device exists.
//!
//! With `--no-demo-key` it adds no `demo` key and does not read `--key-file` (which may then be missing): the
//! vault starts empty but for `--extra-key`s, for a scenario that imports its key with `encfs-init key import`
//! (the fake vault's import: tests/support/azure/vault_import.rs).
//!
//! Revocation (a test control): while a file `DIR/revoke/<kid>` exists, the vault refuses to release key
//! `<kid>` (403, as a vault whose key was disabled or whose policy no longer admits the guest); a scenario
//! creates it after boot to see a re-open fail closed.
//!
//! Identity (test controls): `--token-ttl SECS` makes IMDS's tokens live SECS seconds (`expires_in`;
//! default 3600); while a file `DIR/imds-down` exists, IMDS answers every token request with 503. Every token
//! issued is listed in `DIR/tokens` (`TOKEN RESOURCE EXPIRES_UNIX` lines), which `guest_blob_server --tokens`
//! checks bearer tokens against.
//!
//! It serves until killed. Nothing secret is printed. Run without `--key-file` (as `cargo test` does) it
//! checks itself: a full release through the product's key release code against the files it wrote.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test support: a failed expectation is the report

mod support;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use encfs_init::attest::fake::FakeAttester;
use encfs_init::attest::uvm;
use encfs_init::keyrelease::akv::JwsTrust;
use encfs_init::keyrelease::token::TokenCache;
use encfs_init::keyrelease::Context;
use encfs_init::manifest::{Endpoint, Endpoints, NetworkPlan, ReleasePlan, VaultKind};
use p384::pkcs8::EncodePrivateKey;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::azure::{FakeAzure, VaultKey};
use support::pki;
use support::rig::{self, CHIP, POLICY, TCB};

/// The key's name in the fake vault.
const KID: &str = "demo";

struct Options {
    /// The `demo` key's bytes; `None` with `--no-demo-key`.
    key: Option<Vec<u8>>,
    out: PathBuf,
    hostdata: Option<String>,
    sev_guest: bool,
    /// `--extra-key NAME:KTY:FILE`: more keys under the same release policy (the file's bytes as the
    /// vault's material: an oct key's bytes, an RSA or EC key's PKCS#8 DER); the file is removed once read.
    extra: Vec<(String, String, Vec<u8>)>,
    /// `--token-ttl SECS`: IMDS tokens' `expires_in`.
    token_ttl: Option<u64>,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let (mut key, mut out, mut hostdata, mut sev_guest) = (None, None, None, false);
    let mut demo = true;
    let mut extra = Vec::new();
    let mut token_ttl = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--key-file" => key = it.next().cloned(),
            "--out" => out = it.next().cloned(),
            "--policy-hostdata" => hostdata = it.next().cloned(),
            "--sev-guest" => sev_guest = true,
            "--no-demo-key" => demo = false,
            "--token-ttl" => {
                let secs = it.next().ok_or("--token-ttl SECS")?;
                token_ttl = Some(
                    secs.parse()
                        .map_err(|_| format!("--token-ttl {secs}: want seconds"))?,
                );
            }
            "--extra-key" => {
                let spec = it.next().ok_or("--extra-key NAME:KTY:FILE")?;
                let mut parts = spec.splitn(3, ':');
                let (Some(name), Some(kty), Some(file)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    return Err(format!("--extra-key {spec}: want NAME:KTY:FILE"));
                };
                let bytes = std::fs::read(file).map_err(|e| format!("{file}: {e}"))?;
                std::fs::remove_file(file).map_err(|e| format!("{file}: {e}"))?;
                extra.push((name.to_string(), kty.to_string(), bytes));
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let key = if demo {
        let key_file = key.ok_or("--key-file KEY32 is required")?;
        let key = std::fs::read(&key_file).map_err(|e| format!("{key_file}: {e}"))?;
        if key.len() != 32 {
            return Err(format!("{key_file}: {} bytes, want 32", key.len()));
        }
        Some(key)
    } else {
        None
    };
    Ok(Options {
        key,
        out: PathBuf::from(out.ok_or("--out DIR is required")?),
        hostdata,
        sev_guest,
        extra,
        token_ttl,
    })
}

/// The running fake and what the guest needs to know about it.
struct Guest {
    /// Kept for the whole run (the servers share its state).
    _az: FakeAzure,
    imds: String,
    maa: String,
    vault: String,
}

fn pem(label: &str, der: &[u8]) -> String {
    let b = B64.encode(der);
    let mut s = format!("-----BEGIN {label}-----\n");
    for line in b.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(line).unwrap());
        s.push('\n');
    }
    s.push_str(&format!("-----END {label}-----\n"));
    s
}

fn write(dir: &Path, name: &str, data: &[u8]) -> Result<(), String> {
    let p = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, data).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, &p).map_err(|e| format!("{}: {e}", p.display()))
}

/// Serve the emulated `/dev/sev-guest` from a thread; return once the device node exists.
fn start_secure_processor(vcek: p384::ecdsa::SigningKey) -> Result<(), String> {
    std::thread::spawn(move || {
        let r = support::cuse::serve_sev_guest("sev-guest", |rq| {
            let mut t = rig::template();
            t.vmpl = rq.vmpl;
            FakeAttester::new(vcek.clone(), t).build(&rq.report_data)
        });
        eprintln!("guest_fake_azure: /dev/sev-guest server ended: {r:?}");
    });
    let t = Instant::now();
    while !Path::new("/dev/sev-guest").exists() {
        if t.elapsed() > Duration::from_secs(10) {
            return Err(
                "/dev/sev-guest did not appear within 10 s (cuse loaded? /dev mounted?)".into(),
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Start the fake and write DIR.
fn start(
    key: Option<&[u8]>,
    out: &Path,
    hostdata: Option<&str>,
    sev_guest: bool,
    extra: &[(String, String, Vec<u8>)],
    token_ttl: Option<u64>,
) -> Result<Guest, String> {
    let amd = pki::amd_chain(&CHIP, (4, 0, 0x18, 0xdb));
    let az = FakeAzure::start(&amd);
    az.set(|k| {
        k.revoked_dir = Some(out.join("revoke"));
        k.imds_down = Some(out.join("imds-down"));
        k.token_log = Some(out.join("tokens"));
        if let Some(secs) = token_ttl {
            k.imds_expires_in = json!(secs.to_string());
        }
    });
    let want = hostdata
        .map(str::to_string)
        .unwrap_or_else(|| encfs_init::hex::encode(&Sha256::digest(POLICY)));
    let mut policy = vec![("x-ms-sevsnpvm-hostdata".into(), json!(want))];
    if sev_guest {
        policy.push(("x-ms-sevsnpvm-vmpl".into(), json!(0)));
    }
    for (name, kty, material) in extra {
        az.add_key(
            name,
            VaultKey {
                kty: kty.clone(),
                material: material.clone(),
                policy: policy.clone(),
            },
        );
    }
    if let Some(key) = key {
        az.add_key(
            KID,
            VaultKey {
                kty: "oct-HSM".into(),
                material: key.to_vec(),
                policy,
            },
        );
    }
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let thim = rig::host_certs(&amd, TCB);
    let thim_json = json!({
        "vcekCert": thim.vcek_cert,
        "tcbm": thim.tcbm,
        "certificateChain": thim.certificate_chain,
        "cacheControl": thim.cache_control,
    });
    let vcek = amd.vcek_key.to_pkcs8_der().map_err(|e| e.to_string())?;
    write(out, "ca.pem", az.root_pem.as_bytes())?;
    write(out, "ark.pem", pem("CERTIFICATE", &amd.ark_der).as_bytes())?;
    if sev_guest {
        start_secure_processor(amd.vcek_key.clone())?;
    } else {
        write(
            out,
            "vcek-key.pem",
            pem("PRIVATE KEY", vcek.as_bytes()).as_bytes(),
        )?;
    }
    write(
        out,
        "host-amd-cert-base64",
        B64.encode(thim_json.to_string()).as_bytes(),
    )?;
    write(out, "security-policy-base64", B64.encode(POLICY).as_bytes())?;
    let g = Guest {
        imds: az.http.url(),
        maa: az.https.url(),
        vault: az.https.url(),
        _az: az,
    };
    write(
        out,
        "env",
        format!(
            "IMDS_URL={}\nMAA_URL={}\nVAULT_URL={}\n",
            g.imds, g.maa, g.vault
        )
        .as_bytes(),
    )?;
    Ok(g)
}

fn serve(args: &[String]) -> Result<(), String> {
    let o = parse(args)?;
    let t = Instant::now();
    let g = start(
        o.key.as_deref(),
        &o.out,
        o.hostdata.as_deref(),
        o.sev_guest,
        &o.extra,
        o.token_ttl,
    )?;
    eprintln!(
        "guest_fake_azure: IMDS {}, MAA and Key Vault {} ({}), files in {} ({} ms)",
        g.imds,
        g.maa,
        if o.key.is_some() {
            format!("key \"{KID}\"")
        } else {
            "no demo key".to_string()
        },
        o.out.display(),
        t.elapsed().as_millis()
    );
    loop {
        std::thread::park();
    }
}

/// A release through the product's code, with the attester, UVM information and trust built from DIR the
/// way a boot builds them from the manifest.
fn release_from(g: &Guest, out: &Path) -> Result<Vec<u8>, String> {
    let env_dir = out.display().to_string();
    let env = move |k: &str| (k == "UVM_SECURITY_CONTEXT_DIR").then(|| env_dir.clone());
    let info =
        uvm::load(&env, Path::new("/nonexistent")).map_err(|e| encfs_init::errors::chain(&e))?;
    let der = encfs_init::pkcs8::p384_der(&std::fs::read(out.join("vcek-key.pem")).unwrap())
        .map_err(|e| encfs_init::errors::chain(&e))?;
    let mut template = rig::template();
    template.host_data = Sha256::digest(info.policy.as_deref().unwrap_or_default()).into();
    let attester = FakeAttester::new(
        encfs_init::pkcs8::p384_signing_key(&der).map_err(|e| encfs_init::errors::chain(&e))?,
        template,
    );
    let net = NetworkPlan {
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(20),
        retries: 1,
        retry_backoff_max: support::azure::FAST,
        ca_bundle: Some(out.join("ca.pem")),
        ca_bundle_sha256: None,
    };
    let transport = encfs_init::http::Client::new(&net).map_err(|e| e.to_string())?;
    let trust = JwsTrust::from_plan(&net).map_err(|e| e.to_string())?;
    let endpoints = Endpoints {
        imds: Endpoint(g.imds.clone()),
        thim: Endpoint(format!("{}/thim", g.imds)),
        azcache: Endpoint(format!("{}/azcache", g.imds)),
        amd_kds: Endpoint(format!("{}/kds", g.imds)),
        login_authority: Endpoint(g.maa.clone()),
    };
    let tokens = TokenCache::new(rig::imds_source(&endpoints, VaultKind::KeyVault));
    let ctx = Context {
        attester: &attester,
        transport: &transport,
        uvm: &info,
        certcache: None,
        endpoints: &endpoints,
        maa_api_version: "2020-10-01",
        maa_user_agent: None,
        akv_api_version: "7.4",
        tokens: &tokens,
        jws_trust: &trust,
        ark_pins: &[],
        verify_locally: false,
    };
    let rp = ReleasePlan {
        kid: KID.into(),
        kty: None,
        authority: Endpoint(g.maa.clone()),
        vault: Endpoint(g.vault.clone()),
        vault_kind: VaultKind::KeyVault,
        bearer_token: None,
        salt: vec![],
        label: String::new(),
    };
    encfs_init::keyrelease::release_key(&ctx, &rp)
        .map(|k| k.expose().to_vec())
        .map_err(|e| encfs_init::errors::chain(&e))
}

fn self_check() -> Result<(), String> {
    let out = std::env::temp_dir().join(format!("guest-fake-azure-{}", std::process::id()));
    let key: Vec<u8> = (0..32u8).map(|i| i.wrapping_mul(37) ^ 0x5a).collect();
    let result = (|| {
        let g = start(Some(&key), &out, None, false, &[], None)?;
        let got = release_from(&g, &out)?;
        if got != key {
            return Err("the released key is not the key given".into());
        }
        // Revoked after the first release: the next is refused with 403, and released again once lifted.
        let revoked = out.join("revoke").join(KID);
        std::fs::create_dir_all(out.join("revoke")).map_err(|e| e.to_string())?;
        std::fs::write(&revoked, b"").map_err(|e| e.to_string())?;
        match release_from(&g, &out) {
            Err(e) if e.contains("HTTP 403") && e.contains("revoked") => {}
            Err(e) => return Err(format!("revoked: wrong error: {e}")),
            Ok(_) => return Err("revoked: the key was released".into()),
        }
        std::fs::remove_file(&revoked).map_err(|e| e.to_string())?;
        if release_from(&g, &out)? != key {
            return Err("after the revocation was lifted: another key".into());
        }
        // The twin with a policy on another host_data is refused with 403.
        let other = out.join("denied");
        let g = start(Some(&key), &other, Some(&"00".repeat(32)), false, &[], None)?;
        match release_from(&g, &other) {
            Err(e) if e.contains("HTTP 403") => Ok(()),
            Err(e) => Err(format!("denied: wrong error: {e}")),
            Ok(_) => Err("denied: the key was released".into()),
        }
    })();
    let _ = std::fs::remove_dir_all(&out);
    result
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo test` passes harness flags (--quiet, filters); only --key-file selects the server.
    if args
        .iter()
        .any(|a| a == "--key-file" || a == "--no-demo-key")
    {
        if let Err(e) = serve(&args) {
            eprintln!("guest_fake_azure: {e}");
            std::process::exit(2);
        }
        return;
    }
    match self_check() {
        Ok(()) => println!("guest_fake_azure self-check: 1 passed, 0 failed"),
        Err(e) => {
            println!("guest_fake_azure self-check: 0 passed, 1 failed: {e}");
            std::process::exit(1);
        }
    }
}
