//! The disk keys of the plan: raw keys (test mode) as they are, released keys through attestation and
//! secure key release ([`crate::keyrelease`]). The evidence provider, the UVM information, the HTTP
//! client and the JWS trust are set up once per boot and shared by every filesystem; a private blob's
//! identity token is [`BlobToken`] (re-exported from [`crate::keyrelease::token`]). Causes reach the boot
//! failure line through [`crate::errors::chain`], once.

use crate::attest::{self, uvm, Attester};
use crate::errors::chain;
use crate::keyrelease::akv::JwsTrust;
pub use crate::keyrelease::token::BlobToken;
use crate::keyrelease::token::{TokenCache, TokenSource};
use crate::keyrelease::{self, Context};
use crate::manifest::{KeyPlan, Plan, ReleasePlan};
use crate::secret::SecretBytes;
use std::path::Path;

/// Why the disk keys could not be had. Each cause is the layer's own error, printed by
/// [`crate::errors::chain`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The test-mode fake VCEK key does not parse.
    #[error("test_mode fake VCEK key")]
    FakeVcekKey(#[source] crate::pkcs8::Error),
    /// No evidence provider (or a broken one).
    #[error(transparent)]
    Attester(attest::Error),
    /// The HTTP client (its trust store) cannot be built.
    #[error(transparent)]
    Http(crate::http::Error),
    /// A step of the key release (or its JWS trust).
    #[error(transparent)]
    Release(keyrelease::Error),
    /// A release without the session [`Keys::for_plan`] makes: a bug.
    #[error("no attestation session (a bug: Keys::for_plan saw no release)")]
    NoSession,
}

/// What every release of one boot shares.
pub struct Keys {
    attester: Box<dyn Attester>,
    transport: crate::http::Client,
    uvm: uvm::UvmInfo,
    trust: JwsTrust,
    /// AMD's root keys, plus a test ARK in test mode.
    ark_pins: Vec<crate::attest::verify::ArkPin>,
    /// One attestation per attestation authority, shared by every release that names it.
    attested:
        std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<keyrelease::Attested>>>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keys({})", self.attester.name())
    }
}

impl Keys {
    /// Set up attestation for `plan`, or `Ok(None)` when nothing releases a key (no filesystem or secret
    /// key release, no SKR API).
    pub fn for_plan(plan: &Plan) -> Result<Option<Self>, Error> {
        if !plan.releases_keys() && plan.skr.is_none() {
            return Ok(None);
        }
        let uvm = match uvm::load(&uvm::process_env, Path::new("/")) {
            Ok(u) => u,
            Err(e) => {
                log::warn!(
                    "UVM information: {}; going on without it (collateral from THIM / AMD KDS)",
                    chain(&e)
                );
                uvm::UvmInfo::default()
            }
        };
        let fake = match &plan.attestation.fake_vcek_key {
            Some((_, der)) => Some(attest::fake::FakeAttester::new(
                crate::pkcs8::p384_signing_key(der).map_err(Error::FakeVcekKey)?,
                fake_template(&uvm),
            )),
            None => None,
        };
        let attester = attest::detect_with(&attest::Paths::default(), plan.test_mode, fake)
            .map_err(Error::Attester)?;
        let transport = crate::http::Client::new(&plan.network).map_err(Error::Http)?;
        let trust = JwsTrust::from_plan(&plan.network).map_err(Error::Release)?;
        let mut ark_pins = crate::attest::verify::AMD_ARK_PINS.to_vec();
        if let Some((file, pin)) = &plan.attestation.test_ark_pin {
            log::warn!(
                "attestation: TEST MODE: the ARK in {} is trusted as an AMD root",
                file.display()
            );
            ark_pins.push(crate::attest::verify::ArkPin {
                product: "Test",
                spki_sha256: *pin,
            });
        }
        Ok(Some(Keys {
            attester,
            transport,
            uvm,
            trust,
            ark_pins,
            attested: Default::default(),
        }))
    }

    /// Release `rp`'s key and derive the disk key from it.
    pub fn release(&self, plan: &Plan, rp: &ReleasePlan) -> Result<SecretBytes, keyrelease::Error> {
        self.with_context(plan, rp, |ctx| {
            let attested = self.attested(ctx, rp)?;
            keyrelease::release_with(ctx, &attested, rp)
        })
    }

    /// Release `rp`'s key as the vault gives it (a secret for the application), sharing this boot's
    /// attestation by the same authority.
    pub fn release_material(
        &self,
        plan: &Plan,
        rp: &ReleasePlan,
    ) -> Result<keyrelease::ReleasedKey, keyrelease::Error> {
        self.with_context(plan, rp, |ctx| {
            let attested = self.attested(ctx, rp)?;
            keyrelease::release_material(ctx, &attested, &rp.vault.0, &rp.kid)
        })
    }

    /// Run `f` with a key-release context for `rp`: its vault token source (`rp`'s bearer token, else
    /// workload identity or IMDS for its vault kind), this boot's attester, client, trust and pins.
    pub fn with_context<T>(
        &self,
        plan: &Plan,
        rp: &ReleasePlan,
        f: impl FnOnce(&Context<'_>) -> Result<T, keyrelease::Error>,
    ) -> Result<T, keyrelease::Error> {
        let tokens = TokenCache::new(TokenSource::for_vault(
            rp.bearer_token.as_ref(),
            rp.vault_kind,
            plan,
            &uvm::process_env,
        )?);
        self.with_tokens(plan, &tokens, f)
    }

    /// Run `f` with a key-release context whose vault tokens come from `tokens` (the SKR API keeps the
    /// identity's across requests), and this boot's attester, client, trust and pins.
    pub fn with_tokens<T>(
        &self,
        plan: &Plan,
        tokens: &TokenCache,
        f: impl FnOnce(&Context<'_>) -> Result<T, keyrelease::Error>,
    ) -> Result<T, keyrelease::Error> {
        // The test-mode fake attester signs with a key of its own, which no pinned AMD root certifies: only
        // the (fake) MAA can check its reports. Real providers are always verified locally first.
        let fake = self.attester.name() == "fake";
        let ctx = Context {
            attester: self.attester.as_ref(),
            transport: &self.transport,
            uvm: &self.uvm,
            certcache: plan.certcache.as_ref(),
            endpoints: &plan.endpoints,
            maa_api_version: &plan.api_versions.maa,
            maa_user_agent: plan.attestation.maa_user_agent.as_deref(),
            akv_api_version: &plan.api_versions.akv,
            tokens,
            jws_trust: &self.trust,
            ark_pins: &self.ark_pins,
            verify_locally: !fake,
        };
        f(&ctx)
    }

    /// Forget the attestations made so far: the next release attests afresh (a dead filesystem's re-open,
    /// so that a changed platform or release policy is seen).
    pub fn forget_attestations(&self) {
        let mut m = self
            .attested
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !m.is_empty() {
            log::info!(
                "attestation: forgot this boot's {} attestation(s): the next key release attests afresh",
                m.len()
            );
        }
        m.clear();
    }

    /// This boot's attestation by `rp`'s authority: made by the first release that names it, reused by
    /// the others.
    fn attested(
        &self,
        ctx: &Context<'_>,
        rp: &ReleasePlan,
    ) -> Result<std::sync::Arc<keyrelease::Attested>, keyrelease::Error> {
        // Filesystems open concurrently: the lock is held while attesting, so that the first release
        // attests and the others wait for it and reuse it; the releases themselves run in parallel.
        let mut m = self
            .attested
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(match m.get(&rp.authority.0) {
            Some(a) => {
                log::info!(
                    "key release {}: reusing this boot's attestation by {}",
                    rp.kid,
                    rp.authority.0
                );
                a.clone()
            }
            None => {
                let a = std::sync::Arc::new(keyrelease::attest(ctx, rp)?);
                m.insert(rp.authority.0.clone(), a.clone());
                a
            }
        })
    }
}

/// The fake attester's report template for a fake VCEK key: host_data is SHA-256 of the UVM's security
/// policy (what the host puts there), the TCB the host certificate's `tcbm`; the rest (chip id 0x42...)
/// is the default template, which the test PKI's fake VCEK is made for.
pub fn fake_template(uvm: &uvm::UvmInfo) -> attest::fake::Template {
    use sha2::Digest;
    let mut t = attest::fake::Template::default();
    if let Some(p) = &uvm.policy {
        t.host_data = sha2::Sha256::digest(p).into();
    }
    if let Some(tcb) = uvm.host_certs.as_ref().and_then(|h| h.tcbm().ok()) {
        t.tcb = tcb;
    }
    t
}

/// The disk key of `key` (the LUKS2 passphrase, as upstream: the 32-byte key).
pub fn disk_key(key: &KeyPlan, keys: Option<&Keys>, plan: &Plan) -> Result<SecretBytes, Error> {
    match key {
        KeyPlan::Raw(k) => Ok(SecretBytes::new(k.expose().to_vec())),
        KeyPlan::Release(rp) => match keys {
            Some(k) => k.release(plan, rp).map_err(Error::Release),
            None => Err(Error::NoSession),
        },
    }
}

/// The SKR API's work ([`crate::skr::Backend`]): this boot's attestation set-up, and the plan's identity
/// for vault tokens.
#[derive(Debug)]
pub struct SkrBackend {
    /// This boot's attester, client, trust and pins.
    pub keys: std::sync::Arc<Keys>,
    /// The plan (identity, endpoints, api-versions, certcache).
    pub plan: std::sync::Arc<Plan>,
}

impl crate::skr::Backend for SkrBackend {
    fn identity(&self, kind: crate::manifest::VaultKind) -> Result<TokenSource, keyrelease::Error> {
        TokenSource::for_vault(None, kind, &self.plan, &uvm::process_env)
    }

    fn with_context<T>(
        &self,
        tokens: &TokenCache,
        f: impl FnOnce(&Context<'_>) -> Result<T, keyrelease::Error>,
    ) -> Result<T, keyrelease::Error> {
        self.keys.with_tokens(&self.plan, tokens, f)
    }

    fn test_mode(&self) -> bool {
        self.plan.test_mode
    }

    fn manifest_vaults(&self) -> Vec<String> {
        self.plan
            .releases()
            .map(|rp| crate::url::host(&rp.vault.0).to_ascii_lowercase())
            .collect()
    }
}
