//! The fake attester: builds a version-3 report from a template and signs it with a P-384 key of its own,
//! exactly as a VCEK would. Selected by [`super::detect`] only in test mode (with a fresh random key, so
//! real MAA rejects it); tests build one with the key of their fake VCEK so that a fake MAA can verify it.
//! A key file is read by [`crate::pkcs8`].
#![forbid(unsafe_code)]

use super::report::{REPORT_LEN, SIGNED_LEN};
use super::{Attester, Error, Evidence};
use p384::ecdsa::signature::Signer;

/// What goes into a fake report besides report_data.
#[derive(Debug, Clone)]
pub struct Template {
    /// Report version.
    pub version: u32,
    /// Guest policy.
    pub policy: u64,
    /// VMPL.
    pub vmpl: u32,
    /// current, reported, committed and launch TCB.
    pub tcb: u64,
    /// host_data.
    pub host_data: [u8; 32],
    /// measurement.
    pub measurement: [u8; 48],
    /// chip id.
    pub chip_id: [u8; 64],
    /// CPUID family / model / stepping.
    pub cpuid: (u8, u8, u8),
}

impl Default for Template {
    fn default() -> Self {
        Template {
            version: 3,
            policy: 0x3_001f,
            vmpl: 0,
            tcb: 0xdb18_0000_0000_0004,
            host_data: [0; 32],
            measurement: [0x5a; 48],
            chip_id: [0x42; 64],
            cpuid: (0x19, 0x01, 0x01),
        }
    }
}

/// A report signer.
pub struct FakeAttester {
    key: p384::ecdsa::SigningKey,
    template: Template,
}

impl std::fmt::Debug for FakeAttester {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FakeAttester({:?})", self.template)
    }
}

impl FakeAttester {
    /// Sign with `key` (a fake VCEK's).
    pub fn new(key: p384::ecdsa::SigningKey, template: Template) -> Self {
        FakeAttester { key, template }
    }

    /// A fresh random key and the default template.
    pub fn ephemeral() -> Self {
        Self::ephemeral_with(Template::default())
    }

    /// A fresh random key and `template`.
    pub fn ephemeral_with(template: Template) -> Self {
        loop {
            let mut b = [0u8; 48];
            if getrandom::fill(&mut b).is_err() {
                continue;
            }
            if let Ok(key) = p384::ecdsa::SigningKey::from_slice(&b) {
                return FakeAttester::new(key, template);
            }
        }
    }

    /// Build and sign a report.
    pub fn build(&self, report_data: &[u8; 64]) -> Vec<u8> {
        let t = &self.template;
        let mut b = vec![0u8; REPORT_LEN];
        b[0x00..0x04].copy_from_slice(&t.version.to_le_bytes());
        b[0x08..0x10].copy_from_slice(&t.policy.to_le_bytes());
        b[0x30..0x34].copy_from_slice(&t.vmpl.to_le_bytes());
        b[0x34..0x38].copy_from_slice(&1u32.to_le_bytes());
        for off in [0x38, 0x180, 0x1E0, 0x1F0] {
            b[off..off + 8].copy_from_slice(&t.tcb.to_le_bytes());
        }
        b[0x50..0x90].copy_from_slice(report_data);
        b[0x90..0xC0].copy_from_slice(&t.measurement);
        b[0xC0..0xE0].copy_from_slice(&t.host_data);
        b[0x188] = t.cpuid.0;
        b[0x189] = t.cpuid.1;
        b[0x18A] = t.cpuid.2;
        b[0x1A0..0x1E0].copy_from_slice(&t.chip_id);
        let sig: p384::ecdsa::Signature = self.key.sign(&b[..SIGNED_LEN]);
        let (r, s) = sig.split_bytes();
        let (mut r, mut s) = (r.to_vec(), s.to_vec());
        r.reverse();
        s.reverse();
        b[0x2A0..0x2A0 + 48].copy_from_slice(&r);
        b[0x2A0 + 72..0x2A0 + 72 + 48].copy_from_slice(&s);
        b
    }
}

impl Attester for FakeAttester {
    fn name(&self) -> &'static str {
        "fake"
    }

    fn report(&self, report_data: &[u8; 64]) -> Result<Evidence, Error> {
        log::warn!("attestation: FAKE report (test mode)");
        Ok(Evidence {
            report: self.build(report_data),
            certs: Vec::new(),
            provider: "fake",
        })
    }
}
