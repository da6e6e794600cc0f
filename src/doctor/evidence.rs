//! The evidence the boot would send: which SEV-SNP interface answers ([`crate::attest::detect_with`], as
//! the boot picks it), a fresh report with random report_data verified locally as a release verifies it
//! ([`crate::attest::collateral::find`] with the pinned AMD roots: chain, signature, TCB, chip id), what it
//! says (chip id, TCB, VMPL, the debug policy bit), host_data against a CCE policy, and the UVM information.
#![forbid(unsafe_code)]

use super::Finding;
use crate::attest::report::Report;
use crate::attest::{self, collateral, uvm, verify::ArkPin, Attester};
use crate::manifest::Plan;
use std::path::Path;
use std::time::SystemTime;

/// The UVM information ([`uvm::load`]): which items are there, or why it does not load.
pub fn uvm(r: &Result<uvm::UvmInfo, uvm::Error>) -> Finding {
    const CHECK: &str = "uvm info";
    match r {
        Err(e) => Finding::error(
            CHECK,
            e,
            "the security context directory (UVM_SECURITY_CONTEXT_DIR) must hold the platform's base64 files; do not edit them",
        ),
        Ok(u) if u.sources.is_empty() => Finding::skipped(
            CHECK,
            "none found (no security-context directory, no UVM_* variables): not on ACI? collateral then comes from THIM or AMD KDS, and MAA gets no UVM reference info",
        ),
        Ok(u) => {
            let mut items = Vec::new();
            if let Some(p) = &u.policy {
                use sha2::Digest;
                items.push(format!(
                    "security policy (sha256 {})",
                    crate::hex::encode(&sha2::Sha256::digest(p))
                ));
            }
            if let Some(h) = &u.host_certs {
                items.push(format!("host AMD certificate (tcbm {})", h.tcbm));
            }
            if let Some(r) = &u.reference_info {
                items.push(format!("UVM reference info ({} bytes)", r.len()));
            }
            Finding::ok(CHECK, items.join(", "))
        }
    }
}

/// The attester as the boot picks it: a real interface, else in test mode the fake one (with the manifest's
/// fake VCEK key, the report template [`crate::init::keys::fake_template`] the boot uses).
fn attester(plan: &Plan, uvm: &uvm::UvmInfo) -> Result<Box<dyn Attester>, Finding> {
    let fake = match &plan.attestation.fake_vcek_key {
        Some((file, der)) => match crate::pkcs8::p384_signing_key(der) {
            Ok(k) => Some(attest::fake::FakeAttester::new(
                k,
                crate::init::keys::fake_template(uvm),
            )),
            Err(e) => {
                return Err(Finding::error(
                    "evidence source",
                    &e,
                    &format!("fix fake_vcek_key_file {}", file.display()),
                ))
            }
        },
        None => None,
    };
    attest::detect_with(&attest::Paths::default(), plan.test_mode, fake).map_err(|e| {
        Finding::error(
            "evidence source",
            &e,
            "run on an SEV-SNP confidential platform (ACI confidential SKU, a CVM): it exposes /sys/kernel/config/tsm/report, /dev/sev-guest or /dev/sev; in a container, pass the device in",
        )
    })
}

/// Every attestation finding: the evidence source, the report (with `client` for collateral; `None` when no
/// client could be made) and host_data against `policy`.
pub fn attestation(
    plan: &Plan,
    uvm: &uvm::UvmInfo,
    client: Option<&crate::http::Client>,
    policy: Option<&Path>,
) -> Vec<Finding> {
    let att = match attester(plan, uvm) {
        Ok(a) => a,
        Err(f) => {
            return vec![
                f,
                Finding::skipped("evidence report", "no evidence source"),
                Finding::skipped("host_data", "no report"),
            ]
        }
    };
    let mut out = vec![Finding::ok(
        "evidence source",
        match att.name() {
            "configfs-tsm" => "configfs-tsm (/sys/kernel/config/tsm/report)".to_string(),
            "sev-guest" => "/dev/sev-guest".to_string(),
            "sev-legacy" => "/dev/sev (legacy 5.15 driver)".to_string(),
            other => format!("{other}: TEST MODE, a fake attester (no SEV-SNP interface); only a fake MAA accepts its reports"),
        },
    )];
    let mut pins = crate::attest::verify::AMD_ARK_PINS.to_vec();
    if let Some((_, pin)) = &plan.attestation.test_ark_pin {
        pins.push(ArkPin {
            product: "Test",
            spki_sha256: *pin,
        });
    }
    let (finding, report) = match client {
        Some(c) => report(att.as_ref(), c, plan, uvm, &pins),
        None => (
            Finding::skipped("evidence report", "no HTTP client for the collateral"),
            None,
        ),
    };
    out.push(finding);
    out.push(host_data(report.as_ref(), policy));
    out
}

/// A fresh report (random report_data), verified against `pins` with collateral found as a release finds it.
pub fn report(
    att: &dyn Attester,
    t: &dyn crate::http::Exchange,
    plan: &Plan,
    uvm: &uvm::UvmInfo,
    pins: &[ArkPin],
) -> (Finding, Option<Report>) {
    const CHECK: &str = "evidence report";
    let mut rd = [0u8; 64];
    if let Err(e) = getrandom::fill(&mut rd) {
        return (
            Finding::problem(
                CHECK,
                format!("no random report_data: {e}"),
                "the kernel's getrandom must work",
            ),
            None,
        );
    }
    let ev = match att.report(&rd) {
        Ok(ev) => ev,
        Err(e) => {
            return (
                Finding::error(
                    CHECK,
                    &e,
                    "check the platform's SEV-SNP firmware and driver (dmesg)",
                ),
                None,
            )
        }
    };
    let r = match Report::parse(&ev.report) {
        Ok(r) => r,
        Err(e) => {
            return (
                Finding::error(
                    CHECK,
                    &e,
                    "the interface returned no valid report: check the driver",
                ),
                None,
            )
        }
    };
    if r.report_data != rd {
        return (
            Finding::problem(
                CHECK,
                format!(
                    "{}: the report does not carry the report_data asked for",
                    ev.provider
                ),
                "the interface returned another report: check the driver",
            ),
            Some(r),
        );
    }
    let what = format!(
        "chip {}…, TCB {}, VMPL {}, {}",
        &r.chip_id_hex()[..16],
        r.reported(),
        r.vmpl,
        if r.is_debuggable() {
            "debuggable"
        } else {
            "not debuggable"
        }
    );
    // What release policies refuse, whether or not the report verifies.
    if r.vmpl != 0 {
        return (
            Finding::problem(
                CHECK,
                format!("{what}: made at VMPL {}", r.vmpl),
                "the release policies want x-ms-sevsnpvm-vmpl = 0: run the guest at VMPL 0 (or loosen the key's release policy)",
            ),
            Some(r),
        );
    }
    if r.is_debuggable() {
        return (
            Finding::problem(
                CHECK,
                format!("{what}: the guest policy allows debugging"),
                "deploy with a non-debug policy (release policies want x-ms-sevsnpvm-is-debuggable = false)",
            ),
            Some(r),
        );
    }
    if att.name() == "fake" && plan.attestation.test_ark_pin.is_none() {
        // As at boot: no pinned root certifies the fake attester's key, only the (fake) MAA checks it.
        return (
            Finding::skipped(
                CHECK,
                format!("{what}; not verified locally: the test-mode fake attester's reports are checked by the (fake) MAA only, as at boot (set test_ark_file to verify them here)"),
            ),
            Some(r),
        );
    }
    let check = collateral::Check {
        pins,
        now: SystemTime::now(),
    };
    let chain = collateral::find(
        t,
        &r,
        &ev.certs,
        uvm.host_certs.as_ref(),
        plan.certcache.as_ref(),
        &plan.endpoints,
        Some(check),
    );
    let f = match chain {
        Err(e) => Finding::error(CHECK, &e, ""),
        Ok(c) => Finding::ok(
            CHECK,
            format!(
                "{what}; verified against the pinned {} root (collateral from {})",
                c.verified.unwrap_or("AMD"),
                c.source
            ),
        ),
    };
    (f, Some(r))
}

/// host_data against the SHA-256 of the base64 CCE policy in `policy` (as `policy-digest -f` reads it).
pub fn host_data(report: Option<&Report>, policy: Option<&Path>) -> Finding {
    const CHECK: &str = "host_data";
    let Some(path) = policy else {
        return match report {
            Some(r) => Finding::skipped(
                CHECK,
                format!(
                    "{} (no --policy FILE to compare with)",
                    crate::hex::encode(&r.host_data)
                ),
            ),
            None => Finding::skipped(CHECK, "no report, no --policy FILE"),
        };
    };
    let Some(r) = report else {
        return Finding::skipped(CHECK, "no report to compare --policy with");
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            return Finding::problem(
                CHECK,
                format!("cannot read --policy {}: {e}", path.display()),
                "give the file holding the base64 ccePolicy",
            )
        }
    };
    let want = match crate::attest::tool::policy_digest(&text) {
        Ok(d) => d,
        Err(e) => return Finding::error(CHECK, &e, "give the file holding the base64 ccePolicy"),
    };
    let have = crate::hex::encode(&r.host_data);
    if have == want {
        Finding::ok(
            CHECK,
            format!("{have} is the SHA-256 of {}", path.display()),
        )
    } else {
        Finding::problem(
            CHECK,
            format!("the report's host_data is {have}, {} hashes to {want}", path.display()),
            "deploy with this policy (the ARM template's ccePolicy), or write the key's release policy for the policy deployed",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attest::fake::{FakeAttester, Template};
    use crate::doctor::Status;

    /// No HTTP: the collateral is never asked for in these cases.
    struct NoHttp;
    impl crate::http::Exchange for NoHttp {
        fn exchange(
            &self,
            req: &crate::http::Request<'_>,
        ) -> crate::http::Result<crate::http::Response> {
            panic!("unexpected request {}", req.shown_url())
        }
    }

    fn run(t: Template) -> Finding {
        let mut plan = crate::manifest::empty_plan().unwrap();
        plan.test_mode = true;
        let att = FakeAttester::ephemeral_with(t);
        report(&att, &NoHttp, &plan, &uvm::UvmInfo::default(), &[]).0
    }

    #[test]
    fn a_debuggable_or_vmpl_1_report_is_a_problem_and_a_plain_one_shows_its_fields() {
        let f = run(Template {
            policy: 0x3_001f | 1 << 19,
            ..Template::default()
        });
        assert_eq!(f.status, Status::Problem, "{f:?}");
        assert!(
            f.detail
                .ends_with("debuggable: the guest policy allows debugging"),
            "{f:?}"
        );
        let f = run(Template {
            vmpl: 1,
            ..Template::default()
        });
        assert_eq!(f.status, Status::Problem, "{f:?}");
        assert!(f.detail.ends_with("made at VMPL 1"), "{f:?}");
        let f = run(Template::default());
        assert_eq!(f.status, Status::Skipped, "{f:?}");
        assert!(
            f.detail
                .starts_with("chip 4242424242424242…, TCB db18000000000004")
                && f.detail.contains("VMPL 0, not debuggable"),
            "{f:?}"
        );
    }

    #[test]
    fn host_data_is_compared_with_the_policy_files_digest() {
        let dir = std::env::temp_dir().join(format!("encfs-doctor-hd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("p.b64");
        std::fs::write(&p, "cG9saWN5").unwrap(); // "policy"
        let att = FakeAttester::ephemeral_with(Template {
            host_data: <sha2::Sha256 as sha2::Digest>::digest(b"policy").into(),
            ..Template::default()
        });
        let r = Report::parse(&att.report(&[0; 64]).unwrap().report).unwrap();
        assert_eq!(host_data(Some(&r), Some(&p)).status, Status::Ok);
        std::fs::write(&p, "b3RoZXI=").unwrap(); // "other"
        let f = host_data(Some(&r), Some(&p));
        assert_eq!(f.status, Status::Problem);
        assert!(f.detail.starts_with("the report's host_data is "), "{f:?}");
        assert_eq!(host_data(Some(&r), None).status, Status::Skipped);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
