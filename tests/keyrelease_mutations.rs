//! The mutation table: one bad thing at a time against the fake Azure, each with the error it must give.
//! Run with `--nocapture` to see the table.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod support;

use encfs_init::attest::collateral::to_pem;
use encfs_init::attest::fake::{FakeAttester, Template};
use encfs_init::attest::{self, Attester, Evidence};
use encfs_init::http::TransportKind;
use encfs_init::keyrelease::token::{TokenCache, TokenSource};
use encfs_init::keyrelease::unwrap::UnwrapError;
use encfs_init::keyrelease::{Error, Step};
use encfs_init::manifest::{ReleasePlan, VaultKind};
use serde_json::json;
use std::time::Duration;
use support::azure::{key_version, JwsMode, Kds, VaultKey};
use support::pki;
use support::rig::{hostdata_claim, static_source, template, Rig};
use support::rig::{CHIP, TCB};
use support::Fault;

/// Flips one byte of an otherwise good report.
#[derive(Debug)]
struct Tamper(FakeAttester, usize);
impl Attester for Tamper {
    fn name(&self) -> &'static str {
        "tamper"
    }
    fn report(&self, rd: &[u8; 64]) -> Result<Evidence, attest::Error> {
        let mut e = self.0.report(rd)?;
        e.report[self.1] ^= 1;
        Ok(e)
    }
}

/// Ignores the report_data it is given.
#[derive(Debug)]
struct Deaf(FakeAttester);
impl Attester for Deaf {
    fn name(&self) -> &'static str {
        "deaf"
    }
    fn report(&self, _: &[u8; 64]) -> Result<Evidence, attest::Error> {
        self.0.report(&[0; 64])
    }
}

fn signer(rig: &Rig, t: Template) -> FakeAttester {
    FakeAttester::new(rig.amd.vcek_key.clone(), t)
}

type Setup = fn(&mut Rig) -> ReleasePlan;
type Check = fn(&Error) -> bool;

fn kv(rig: &mut Rig) -> ReleasePlan {
    rig.plan("oct", VaultKind::KeyVault)
}

/// No collateral source was chosen, and the host certificate's reason (the first source tried) says `what`.
fn collateral_says(e: &Error, what: &str) -> bool {
    matches!(e, Error::Collateral(c) if c.attempts.first().is_some_and(|(s, r)| s == "UVM host certificate" && r.contains(what)))
}

fn status(step: Step, code: u16) -> impl Fn(&Error) -> bool {
    move |e| matches!(e, Error::Status { step: s, status, .. } if *s == step && *status == code)
}

fn cases() -> Vec<(&'static str, Setup, Check)> {
    vec![
        (
            "tampered report byte (measurement)",
            |r| {
                r.attester = Box::new(Tamper(signer(r, template()), 0x90));
                kv(r)
            },
            |e| collateral_says(e, "report signature does not verify"),
        ),
        (
            "tampered signature byte",
            |r| {
                r.attester = Box::new(Tamper(signer(r, template()), 0x2A5));
                kv(r)
            },
            |e| collateral_says(e, "report signature does not verify"),
        ),
        (
            "report signed by another key (wrong VCEK)",
            |r| {
                r.attester = Box::new(FakeAttester::ephemeral_with(template()));
                kv(r)
            },
            |e| collateral_says(e, "report signature does not verify"),
        ),
        (
            "reported TCB differs from the VCEK (ucode)",
            |r| {
                let t = Template {
                    tcb: 0xd218_0000_0000_0004,
                    ..template()
                };
                r.uvm.host_certs = Some(support::rig::host_certs(&r.amd, t.tcb));
                r.attester = Box::new(signer(r, t));
                kv(r)
            },
            |e| matches!(e, Error::Collateral(c) if c.to_string().contains("TCB field ucode differs")),
        ),
        (
            "no collateral anywhere (THIM and KDS 404)",
            |r| {
                r.uvm.host_certs = None;
                kv(r)
            },
            |e| matches!(e, Error::Collateral(c) if c.attempts.len() == 2 && c.to_string().contains("404")),
        ),
        (
            "every collateral source bogus (host, THIM, KDS)",
            |r| {
                // The host's VCEK has the right TCB and chip id but a broken signature; THIM serves a chain
                // for the same chip and TCB under a root nobody pinned; KDS a VCEK with a broken signature.
                let mut host = support::rig::host_certs(&r.amd, TCB);
                host.vcek_cert = to_pem(&pki::broken_signature(&r.amd.vcek_der));
                r.uvm.host_certs = Some(host);
                let stranger = pki::amd_chain(&CHIP, (4, 0, 0x18, 0xdb));
                let mut kds = Kds::of(&r.amd, &CHIP, (4, 0, 0x18, 0xdb));
                kds.vcek_der = pki::broken_signature(&kds.vcek_der);
                r.az.set(|k| {
                    k.thim = Some(support::rig::host_certs(&stranger, TCB));
                    k.kds = Some(kds);
                });
                kv(r)
            },
            |e| {
                let Error::Collateral(c) = e else {
                    return false;
                };
                let want = [
                    (
                        "UVM host certificate",
                        "certificate SEV-VCEK: signature does not verify",
                    ),
                    ("THIM", "is not a pinned AMD ARK"),
                    ("AMD KDS", "certificate SEV-VCEK: signature does not verify"),
                ];
                c.attempts.len() == want.len()
                    && c.attempts
                        .iter()
                        .zip(want)
                        .all(|((s, r), (ws, wr))| s == ws && r.contains(wr))
            },
        ),
        (
            "untrusted ARK (only AMD's pins)",
            |r| {
                r.pins = attest::verify::AMD_ARK_PINS.to_vec();
                kv(r)
            },
            |e| collateral_says(e, "is not a pinned AMD ARK"),
        ),
        (
            "report_data not bound to the runtime key",
            |r| {
                r.attester = Box::new(Deaf(signer(r, template())));
                kv(r)
            },
            |e| matches!(e, Error::Attest(attest::Error::BadReport { .. })),
        ),
        (
            "report version 1",
            |r| {
                r.attester = Box::new(signer(
                    r,
                    Template {
                        version: 1,
                        ..template()
                    },
                ));
                kv(r)
            },
            |e| matches!(e, Error::Report(attest::report::ParseError::Version(1))),
        ),
        (
            "MAA 400",
            |r| {
                r.az.https.fault(
                    "/attest",
                    Fault {
                        status: Some(400),
                        ..Fault::default()
                    },
                );
                kv(r)
            },
            |e| status(Step::Maa, 400)(e),
        ),
        (
            "MAA 200 without token",
            |r| {
                r.az.https.fault(
                    "/attest",
                    Fault {
                        body: Some(b"{\"tokn\":1}".to_vec()),
                        ..Fault::default()
                    },
                );
                kv(r)
            },
            |e| {
                matches!(
                    e,
                    Error::Malformed {
                        step: Step::Maa,
                        ..
                    }
                )
            },
        ),
        (
            "MAA hangs -> timeout",
            |r| {
                r.net.retries = 0;
                r.az.https.fault(
                    "/attest",
                    Fault {
                        delay: Some(Duration::from_secs(4)),
                        ..Fault::default()
                    },
                );
                kv(r)
            },
            |e| {
                matches!(
                    e,
                    Error::Transport {
                        step: Step::Maa,
                        source
                    } if source.transport_kind() == Some(TransportKind::Timeout)
                )
            },
        ),
        (
            "IMDS 500 three times (retries exhausted)",
            |r| {
                for _ in 0..3 {
                    r.az.http.fault(
                        "/metadata",
                        Fault {
                            status: Some(500),
                            ..Fault::default()
                        },
                    );
                }
                kv(r)
            },
            |e| status(Step::Imds, 500)(e),
        ),
        (
            "IMDS hangs -> timeout",
            |r| {
                r.net.retries = 0;
                r.az.http.fault(
                    "/metadata",
                    Fault {
                        delay: Some(Duration::from_secs(4)),
                        ..Fault::default()
                    },
                );
                kv(r)
            },
            |e| {
                matches!(
                    e,
                    Error::Transport {
                        step: Step::Imds,
                        source
                    } if source.transport_kind() == Some(TransportKind::Timeout)
                )
            },
        ),
        (
            "IMDS answers without access_token",
            |r| {
                r.az.http.fault(
                    "/metadata",
                    Fault {
                        body: Some(b"{\"expires_in\":\"5\"}".to_vec()),
                        ..Fault::default()
                    },
                );
                kv(r)
            },
            |e| {
                matches!(
                    e,
                    Error::Malformed {
                        step: Step::Imds,
                        ..
                    }
                )
            },
        ),
        (
            "AKV 401 (bad bearer token)",
            |r| {
                r.tokens = TokenCache::new(static_source("stolen"));
                kv(r)
            },
            |e| status(Step::Release, 401)(e),
        ),
        (
            "AKV 401 (token for the wrong resource)",
            |r| {
                r.tokens = TokenCache::new(support::rig::imds_source(
                    &r.endpoints,
                    VaultKind::ManagedHsm,
                ));
                kv(r)
            },
            |e| status(Step::Release, 401)(e),
        ),
        (
            "AKV 403 release policy not satisfied",
            |r| {
                r.az.add_key(
                    "strict",
                    VaultKey {
                        kty: "oct-HSM".into(),
                        material: vec![1; 32],
                        policy: vec![("x-ms-sevsnpvm-hostdata".into(), json!("00"))],
                    },
                );
                r.plan("strict", VaultKind::KeyVault)
            },
            |e| matches!(e, Error::Status { step: Step::Release, status: 403, body } if body.contains("x-ms-sevsnpvm-hostdata")),
        ),
        (
            "AKV 403 debuggable guest",
            |r| {
                r.attester = Box::new(signer(
                    r,
                    Template {
                        policy: 0x3_001f | 1 << 19,
                        ..template()
                    },
                ));
                r.az.add_key(
                    "nodebug",
                    VaultKey {
                        kty: "oct-HSM".into(),
                        material: vec![1; 32],
                        policy: vec![
                            hostdata_claim(),
                            ("x-ms-sevsnpvm-is-debuggable".into(), json!(false)),
                        ],
                    },
                );
                r.plan("nodebug", VaultKind::KeyVault)
            },
            |e| status(Step::Release, 403)(e),
        ),
        (
            "AKV 404 unknown kid",
            |r| r.plan("missing", VaultKind::KeyVault),
            |e| status(Step::Release, 404)(e),
        ),
        (
            "AKV 500 on every try",
            |r| {
                for _ in 0..3 {
                    r.az.https.fault(
                        "/keys",
                        Fault {
                            status: Some(500),
                            ..Fault::default()
                        },
                    );
                }
                kv(r)
            },
            |e| status(Step::Release, 500)(e),
        ),
        (
            "AKV truncated JSON",
            |r| {
                r.az.https.fault(
                    "/keys",
                    Fault {
                        truncate: Some(40),
                        ..Fault::default()
                    },
                );
                kv(r)
            },
            |e| {
                matches!(
                    e,
                    Error::Malformed {
                        step: Step::Release,
                        ..
                    }
                )
            },
        ),
        (
            "AKV 200 without value",
            |r| {
                r.az.https.fault(
                    "/keys",
                    Fault {
                        body: Some(b"{}".to_vec()),
                        ..Fault::default()
                    },
                );
                kv(r)
            },
            |e| {
                matches!(
                    e,
                    Error::Malformed {
                        step: Step::Release,
                        ..
                    }
                )
            },
        ),
        (
            "JWS bad signature",
            |r| {
                r.az.set(|k| k.jws = JwsMode::BadSignature);
                kv(r)
            },
            |e| matches!(e, Error::Jws(d) if d.contains("signature does not verify")),
        ),
        (
            "JWS x5c to an unknown root",
            |r| {
                r.az.set(|k| k.jws = JwsMode::UnknownRoot);
                kv(r)
            },
            |e| matches!(e, Error::Jws(d) if d.contains("trusted root")),
        ),
        (
            "JWS with two parts",
            |r| {
                r.az.set(|k| k.jws = JwsMode::TwoParts);
                kv(r)
            },
            |e| matches!(e, Error::Jws(d) if d.contains("3 dot-separated parts")),
        ),
        (
            "JWS leaf not valid for the vault host",
            |r| {
                let mut p = kv(r);
                p.vault =
                    encfs_init::manifest::Endpoint(p.vault.0.replace("127.0.0.1", "localhost"));
                p
            },
            |e| matches!(e, Error::Jws(d) if d.contains("not valid for the vault host")),
        ),
        (
            "JWS releases another key (validly signed)",
            |r| {
                r.az.add_key(
                    "other",
                    VaultKey {
                        kty: "oct-HSM".into(),
                        material: vec![9; 32],
                        policy: vec![hostdata_claim()],
                    },
                );
                r.az.set(|k| k.answer_as = Some("other".into()));
                kv(r)
            },
            |e| matches!(e, Error::Jws(d) if d.contains("another key than the one asked for (key name differs")),
        ),
        (
            "JWS releases another version than the pinned one",
            |r| {
                r.az.set(|k| k.answer_as = Some(format!("oct/{}", "0".repeat(32))));
                let mut p = kv(r);
                p.kid = format!("oct/{}", key_version("oct"));
                p
            },
            |e| matches!(e, Error::Jws(d) if d.contains("(key version differs")),
        ),
        (
            "unknown enc",
            |r| {
                r.az.set(|k| k.enc = "A256KW".into());
                kv(r)
            },
            |e| matches!(e, Error::Unwrap(UnwrapError::UnknownEnc(x)) if x == "A256KW"),
        ),
        (
            "kty EC",
            |r| {
                r.az.set(|k| k.kty_override = Some("EC-HSM".into()));
                kv(r)
            },
            |e| matches!(e, Error::Unwrap(UnwrapError::EcKey(_))),
        ),
        (
            "kty unknown",
            |r| {
                r.az.set(|k| k.kty_override = Some("oct-XYZ".into()));
                kv(r)
            },
            |e| matches!(e, Error::Unwrap(UnwrapError::UnknownKty(_))),
        ),
        (
            "16-byte oct key",
            |r| {
                r.az.add_key(
                    "short",
                    VaultKey {
                        kty: "oct-HSM".into(),
                        material: vec![1; 16],
                        policy: vec![hostdata_claim()],
                    },
                );
                r.plan("short", VaultKind::KeyVault)
            },
            |e| matches!(e, Error::Unwrap(UnwrapError::OctSize(16))),
        ),
        (
            "RSA-HSM whose plaintext is not PKCS#8",
            |r| {
                r.az.add_key(
                    "notrsa",
                    VaultKey {
                        kty: "RSA-HSM".into(),
                        material: vec![1; 48],
                        policy: vec![hostdata_claim()],
                    },
                );
                r.plan("notrsa", VaultKind::KeyVault)
            },
            |e| matches!(e, Error::Unwrap(UnwrapError::RsaKey)),
        ),
        (
            "workload identity token file missing",
            |r| {
                r.tokens = TokenCache::new(TokenSource::Workload {
                    authority: r.az.https.url(),
                    tenant: "t".into(),
                    client_id: "c".into(),
                    token_file: r.dir.join("nope"),
                    resource: "https://vault.azure.net".into(),
                });
                kv(r)
            },
            |e| {
                matches!(
                    e,
                    Error::Malformed {
                        step: Step::WorkloadIdentity,
                        ..
                    }
                )
            },
        ),
        (
            "workload identity assertion rejected",
            |r| {
                std::fs::write(r.dir.join("wrong"), "not-the-token").unwrap();
                r.tokens = TokenCache::new(TokenSource::Workload {
                    authority: r.az.https.url(),
                    tenant: "t".into(),
                    client_id: "c".into(),
                    token_file: r.dir.join("wrong"),
                    resource: "https://vault.azure.net".into(),
                });
                kv(r)
            },
            |e| status(Step::WorkloadIdentity, 401)(e),
        ),
    ]
}

#[test]
fn mutation_table() {
    let cases = cases();
    assert!(cases.len() >= 25);
    let mut failed = Vec::new();
    let mut table = String::new();
    for (i, (name, setup, check)) in cases.into_iter().enumerate() {
        let mut rig = Rig::new(&format!("mut{i}"));
        let plan = setup(&mut rig);
        let got = rig.release(&plan);
        let line = match &got {
            Ok(_) => "released a key!".to_string(),
            Err(e) => e.to_string(),
        };
        let ok = got.as_ref().err().is_some_and(check);
        table.push_str(&format!(
            "{:>2} {:<45} {} {line}\n",
            i + 1,
            name,
            if ok { "ok  " } else { "FAIL" }
        ));
        if !ok {
            failed.push(name);
        }
        // No secret in any message.
        assert!(
            !line.contains("tok-") && !line.contains("stolen"),
            "{name}: {line}"
        );
    }
    println!("{table}");
    assert!(failed.is_empty(), "{failed:?}\n{table}");
}

#[test]
fn a_bogus_host_certificate_falls_through_to_amd_kds() {
    let mut rig = Rig::new("collateral-fallthrough");
    let mut host = support::rig::host_certs(&rig.amd, TCB);
    host.vcek_cert = to_pem(&pki::broken_signature(&rig.amd.vcek_der));
    rig.uvm.host_certs = Some(host);
    let kds = Kds::of(&rig.amd, &CHIP, (4, 0, 0x18, 0xdb));
    rig.az.set(|k| k.kds = Some(kds));
    let key = rig
        .release(&rig.plan("oct", VaultKind::KeyVault))
        .expect("the host's bogus chain is skipped and KDS's chain is used");
    assert_eq!(key.expose(), &[7; 32]);
    assert_eq!(rig.az.http.hits("/thim"), 1, "THIM was asked (404)");
    assert_eq!(
        rig.az.http.hits("/kds/vcek/v1/"),
        2,
        "KDS: the VCEK and the chain"
    );
}

#[test]
fn a_pinned_key_version_is_released() {
    let rig = Rig::new("pinned-version");
    let mut plan = rig.plan("oct", VaultKind::KeyVault);
    plan.kid = format!("oct/{}", key_version("oct"));
    assert_eq!(rig.release(&plan).unwrap().expose(), &[7; 32]);
    let mut mhsm = rig.plan("oct", VaultKind::ManagedHsm);
    mhsm.kid = plan.kid.clone();
    mhsm.bearer_token = None;
    let mut rig = rig;
    rig.tokens = encfs_init::keyrelease::token::TokenCache::new(support::rig::imds_source(
        &rig.endpoints,
        VaultKind::ManagedHsm,
    ));
    assert_eq!(rig.release(&mhsm).unwrap().expose(), &[7; 32]);
}

#[test]
fn imds_500_then_success() {
    let rig = Rig::new("imds-retry");
    rig.az.http.fault(
        "/metadata",
        Fault {
            status: Some(500),
            body: Some(b"Received invalid token. Please try again.".to_vec()),
            ..Fault::default()
        },
    );
    assert_eq!(
        rig.release(&rig.plan("oct", VaultKind::KeyVault))
            .unwrap()
            .expose(),
        &[7; 32]
    );
    assert_eq!(rig.az.http.hits("/metadata"), 2);
}

#[test]
fn token_expiring_during_a_run_is_refreshed() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    let mut rig = Rig::new("refresh");
    rig.az.set(|k| k.imds_expires_in = json!(100)); // a number this time
    let start = std::time::Instant::now();
    let offset = Arc::new(AtomicU64::new(0));
    let o2 = offset.clone();
    rig.tokens = TokenCache::with_clock(
        support::rig::imds_source(&rig.endpoints, VaultKind::KeyVault),
        Box::new(move || start + Duration::from_secs(o2.load(Ordering::SeqCst))),
    );
    let plan = rig.plan("oct", VaultKind::KeyVault);
    rig.release(&plan).unwrap();
    offset.store(79, Ordering::SeqCst);
    rig.release(&plan).unwrap();
    assert_eq!(rig.az.http.hits("/metadata"), 1, "reused before 80 %");
    offset.store(81, Ordering::SeqCst);
    rig.release(&plan).unwrap();
    assert_eq!(rig.az.http.hits("/metadata"), 2, "refreshed after 80 %");
}

#[test]
fn a_failed_refresh_keeps_the_current_token_until_it_nears_expiry() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    let mut rig = Rig::new("refresh-fails");
    rig.az.set(|k| k.imds_expires_in = json!("1000"));
    let start = std::time::Instant::now();
    let offset = Arc::new(AtomicU64::new(0));
    let o2 = offset.clone();
    rig.tokens = TokenCache::with_clock(
        support::rig::imds_source(&rig.endpoints, VaultKind::KeyVault),
        Box::new(move || start + Duration::from_secs(o2.load(Ordering::SeqCst))),
    );
    let plan = rig.plan("oct", VaultKind::KeyVault);
    rig.release(&plan).unwrap();
    assert_eq!(rig.az.http.hits("/metadata"), 1);
    // Past 80 %: the refresh fails (first attempt and both retries), the current token still serves.
    let imds_down = || Fault {
        status: Some(500),
        ..Fault::default()
    };
    for _ in 0..3 {
        rig.az.http.fault("/metadata", imds_down());
    }
    offset.store(810, Ordering::SeqCst);
    rig.release(&plan)
        .expect("the current token is still valid for 190 s");
    assert_eq!(
        rig.az.http.hits("/metadata"),
        4,
        "one attempt and two retries"
    );
    // Within the retry pause: no new attempt.
    offset.store(815, Ordering::SeqCst);
    rig.release(&plan).unwrap();
    assert_eq!(rig.az.http.hits("/metadata"), 4, "no refresh storm");
    // After the pause the identity endpoint answers again: a fresh token.
    offset.store(822, Ordering::SeqCst);
    rig.release(&plan).unwrap();
    assert_eq!(
        rig.az.http.hits("/metadata"),
        5,
        "refreshed once the endpoint is back"
    );
    // A refresh failing when the token is about to expire is an error, not an expired token.
    for _ in 0..3 {
        rig.az.http.fault("/metadata", imds_down());
    }
    // The new token (from 822 s) expires at 1822 s: at 1800 s it has 22 s left.
    offset.store(1800, Ordering::SeqCst);
    let e = rig.release(&plan).unwrap_err();
    assert!(e.to_string().contains("500"), "{e}");
}

/// Reports only once the vault's token has been asked for (giving up after 10 s): a release that fetched
/// the token after attesting, not during, fails with this attester.
struct WaitsForToken(
    FakeAttester,
    std::sync::Arc<std::sync::Mutex<Vec<support::Req>>>,
);
impl std::fmt::Debug for WaitsForToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WaitsForToken")
    }
}
impl Attester for WaitsForToken {
    fn name(&self) -> &'static str {
        "waits-for-token"
    }
    fn report(&self, rd: &[u8; 64]) -> Result<Evidence, attest::Error> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let asked = || {
            self.1
                .lock()
                .unwrap()
                .iter()
                .any(|r| r.path.starts_with("/metadata"))
        };
        while !asked() {
            if std::time::Instant::now() > deadline {
                return Err(attest::Error::BadReport {
                    provider: "waits-for-token",
                    detail: "the vault token was not requested while attesting".into(),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.0.report(rd)
    }
}

#[test]
fn the_vault_token_is_fetched_while_attesting_and_reused_by_the_release() {
    let mut rig = Rig::new("token-overlap");
    rig.attester = Box::new(WaitsForToken(
        signer(&rig, template()),
        rig.az.http.log.clone(),
    ));
    let key = rig.release(&rig.plan("oct", VaultKind::KeyVault)).unwrap();
    assert_eq!(key.expose(), &[7; 32]);
    assert_eq!(rig.az.http.hits("/metadata"), 1, "one token, fetched once");
}

#[test]
fn the_fake_vault_refuses_a_token_it_issued_once_the_token_expired() {
    // As Key Vault does; the token cache's own refresh before expiry is tested above.
    let mut rig = Rig::new("lifetime");
    let plan = rig.plan("oct", VaultKind::KeyVault);
    rig.release(&plan).unwrap();
    let issued = {
        let st = rig.az.state.lock().unwrap();
        st.expires.keys().next().cloned().unwrap()
    };
    rig.tokens = TokenCache::new(static_source(&issued));
    rig.release(&plan).unwrap();
    // The same token, now past its lifetime (the fake's record of it moved back: no waiting).
    rig.az.state.lock().unwrap().expires.insert(
        issued.clone(),
        std::time::SystemTime::now() - Duration::from_secs(1),
    );
    let e = rig.release(&plan).unwrap_err();
    assert!(status(Step::Release, 401)(&e), "{e}");
}
