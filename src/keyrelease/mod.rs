//! Secure key release: attest with MAA, release the key from Azure Key Vault or a managed HSM, unwrap it,
//! and turn it into the 32-byte disk key (upstream-spec §6; the order of §6.4):
//!
//! 1. a fresh RSA-2048 runtime key; runtime JSON = its public JWK set ([`jwk`]);
//! 2. a report with report_data = SHA-256(runtime JSON) ‖ 0³² from the [`crate::attest::Attester`];
//! 3. AMD collateral for the report ([`crate::attest::collateral`]), each candidate chain verified with the
//!    report before it is chosen (signature, chain to a pinned AMD root, TCB), so a bogus source falls
//!    through to the next and, before any network call to MAA, a bad report fails here with a precise
//!    reason (every source's) instead of as an opaque MAA 400;
//! 4. MAA attestation → JWT ([`maa`]);
//! 5. a vault token ([`token`]: static, workload identity or IMDS, cached);
//! 6. the release ([`akv`]) → a JWS, verified (chain to trusted roots, vault host name, RS256) and checked
//!    to release the key asked for (vault, name, pinned version);
//! 7. unwrap by `enc` and derive the disk key by `kty` ([`unwrap`]).
//!
//! Every request goes through the one HTTP client ([`http::Client`], seen as [`http::Exchange`]): its trust
//! roots, retries, redaction and body limit; [`send`] turns its failure into the step's error.
//!
//! Errors say which step failed, with the HTTP status and a body snippet where there is one, the cause
//! through `source()`; none carries a token or key. The disk key is a [`SecretBytes`].
#![forbid(unsafe_code)]

pub mod akv;
pub mod export;
pub mod jwk;
pub mod maa;
pub mod token;
pub mod unwrap;

use crate::attest::collateral::{self, Collateral};
use crate::attest::report::{ParseError, Report};
use crate::attest::uvm::UvmInfo;
use crate::attest::verify::ArkPin;
use crate::attest::{self, Attester};
use crate::http::{self, Exchange};
use crate::manifest::{CertCachePlan, Endpoints, ReleasePlan};
use crate::secret::SecretBytes;
use std::fmt;
use std::time::SystemTime;

/// The step that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// MAA attestation.
    Maa,
    /// IMDS token.
    Imds,
    /// Workload identity token.
    WorkloadIdentity,
    /// The release call.
    Release,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Maa => "MAA attestation",
            Step::Imds => "IMDS token",
            Step::WorkloadIdentity => "workload identity token",
            Step::Release => "key release",
        })
    }
}

/// Key release errors. Each says which step failed in its own words; the cause (an HTTP failure, the
/// attester's, the collateral sources', the unwrap's) is its `source()`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Generating the runtime key or a nonce.
    #[error("internal: {0}")]
    Internal(String),
    /// The trust roots (the CA bundle) cannot be used.
    #[error("trust roots")]
    Trust(#[source] http::Error),
    /// The attester failed.
    #[error("attestation report")]
    Attest(#[source] attest::Error),
    /// The report does not parse.
    #[error("attestation report")]
    Report(#[source] ParseError),
    /// No AMD chain verifies the report (every source's reason: TCB or chip id, chain to a pinned root,
    /// report signature).
    #[error("AMD collateral")]
    Collateral(#[source] collateral::Error),
    /// No (complete) response: what failed below HTTP.
    #[error("{step}")]
    Transport {
        /// Step.
        step: Step,
        /// Cause (boxed: an HTTP error is large).
        #[source]
        source: Box<http::Error>,
    },
    /// A non-2xx response.
    #[error("{step}: HTTP {status}: {body}{}", hint(*step, *status))]
    Status {
        /// Step.
        step: Step,
        /// HTTP status.
        status: u16,
        /// Body snippet (service error text).
        body: String,
    },
    /// A 2xx response we cannot use.
    #[error("{step}: {detail}")]
    Malformed {
        /// Step.
        step: Step,
        /// What.
        detail: String,
    },
    /// The release JWS is not acceptable.
    #[error("key release response (JWS): {0}")]
    Jws(String),
    /// Unwrap or derivation.
    #[error("released key")]
    Unwrap(#[source] unwrap::UnwrapError),
}

fn hint(step: Step, status: u16) -> &'static str {
    match (step, status) {
        (Step::Release, 401) => "; fix: the vault token is missing or expired, or the identity is not in the vault's tenant",
        (Step::Release, 403) => "; fix: the release policy did not accept the attestation (a stale host_data/policy hash?) or the identity lacks the release permission",
        (Step::Release, 404) => "; fix: check the key name (kid) and the vault endpoint",
        (Step::Maa, 400) => "; fix: MAA rejected the evidence (report, VCEK chain or runtime data)",
        (Step::Imds, 400) => "; fix: check the managed identity client_id and that an identity is assigned",
        (Step::WorkloadIdentity, 400 | 401) => "; fix: Entra ID refused the federated token: check that the identity (AZURE_CLIENT_ID, AZURE_TENANT_ID) has a federated credential for this service account (issuer and subject) and that the token file is the projected service-account token",
        _ => "",
    }
}

/// Everything a release needs besides the per-filesystem plan.
pub struct Context<'a> {
    /// The evidence provider.
    pub attester: &'a dyn Attester,
    /// HTTP (the one client, [`http::Client`], or a test's fake).
    pub transport: &'a dyn Exchange,
    /// UVM information (host certificates, reference info).
    pub uvm: &'a UvmInfo,
    /// The manifest's certcache.
    pub certcache: Option<&'a CertCachePlan>,
    /// Endpoints (THIM, KDS).
    pub endpoints: &'a Endpoints,
    /// MAA api-version.
    pub maa_api_version: &'a str,
    /// MAA requests' User-Agent, when the manifest sets one.
    pub maa_user_agent: Option<&'a str>,
    /// AKV api-version.
    pub akv_api_version: &'a str,
    /// Vault tokens.
    pub tokens: &'a token::TokenCache,
    /// Trust for the release JWS.
    pub jws_trust: &'a akv::JwsTrust,
    /// Pinned AMD roots for local verification.
    pub ark_pins: &'a [ArkPin],
    /// Verify the report locally (off only for the test-mode fake attester with no collateral).
    pub verify_locally: bool,
}

impl fmt::Debug for Context<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "keyrelease::Context({})", self.attester.name())
    }
}

/// What one attestation yields: the runtime key whose public half is bound into the report, and MAA's token
/// for it. Shared by every release that names the same attestation authority (one attestation per boot).
pub struct Attested {
    runtime: jwk::RuntimeKey,
    maa_token: crate::secret::SecretString,
}

impl fmt::Debug for Attested {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Attested(<runtime key>, <MAA token>)")
    }
}

/// A JSON POST of `body` (the caller owns it and wipes it: it carries the MAA token).
pub fn post_json<'a>(url: &'a str, body: &'a [u8]) -> http::Request<'a> {
    http::Request::new("POST", url)
        .header("Content-Type", "application/json")
        .body(body)
}

/// Send `req` for `step` through the one HTTP client: the 2xx response (its body within the client's
/// default limit, [`http::DEFAULT_BODY_LIMIT`]), or the step's error (a status with its body snippet and the
/// step's fix, or what failed below HTTP).
pub fn send(t: &dyn Exchange, step: Step, req: http::Request<'_>) -> Result<http::Response, Error> {
    t.exchange(&req).map_err(|e| match e {
        http::Error::Status {
            status, snippet, ..
        } => Error::Status {
            step,
            status,
            body: snippet,
        },
        source => Error::Transport {
            step,
            source: Box::new(source),
        },
    })
}

/// Release the key of `rp` and return the disk key (one attestation, one release).
pub fn release_key(ctx: &Context<'_>, rp: &ReleasePlan) -> Result<SecretBytes, Error> {
    let attested = attest(ctx, rp)?;
    release_with(ctx, &attested, rp)
}

/// Attest for `rp`'s authority: a fresh runtime key, a report binding it, collateral, local verification,
/// and MAA's token. The vault's bearer token does not depend on any of it, so it is fetched meanwhile on a
/// second thread and the release finds it cached; its error, if any, comes after the attestation's own.
pub fn attest(ctx: &Context<'_>, rp: &ReleasePlan) -> Result<Attested, Error> {
    attest_at(ctx, &rp.authority.0, &rp.kid)
}

/// [`attest()`] by `authority` for a release of `kid` (named in the log): the boot's releases and the SKR
/// API's `/key/release` (a fresh attestation per request).
pub fn attest_at(ctx: &Context<'_>, authority: &str, kid: &str) -> Result<Attested, Error> {
    let (tokens, transport) = (ctx.tokens, ctx.transport);
    std::thread::scope(|s| {
        let token = s.spawn(move || tokens.get(transport).map(drop));
        let attested = attest_only(ctx, authority, kid);
        let token = token.join();
        let attested = attested?;
        match token {
            Ok(Err(e)) => Err(e),
            // Fetched, or the fetch panicked (a bug): the release asks the cache again either way.
            Ok(Ok(())) | Err(_) => Ok(attested),
        }
    })
}

fn attest_only(ctx: &Context<'_>, authority: &str, kid: &str) -> Result<Attested, Error> {
    let runtime = jwk::RuntimeKey::take_or_generate()
        .map_err(|e| Error::Internal(format!("RSA key generation: {e}")))?;
    let runtime_json = runtime.runtime_json();
    let what = format!("key release {kid}");
    let maa_token = maa_token(ctx, authority, runtime_json.as_bytes(), &what)?;
    Ok(Attested { runtime, maa_token })
}

/// A report binding some runtime data, and the AMD chain that verifies it.
#[derive(Debug)]
pub struct Evidence {
    /// The raw 1184-byte report.
    pub report: Vec<u8>,
    /// The report, parsed.
    pub parsed: Report,
    /// The chain for it (PEM, VCEK first), chosen as for a release.
    pub chain: Collateral,
}

/// A report with report_data = SHA-256(`runtime`) ‖ 0³² (checked to be bound), and its AMD collateral:
/// each candidate chain verified with the report before it is chosen (signature, chain to a pinned AMD
/// root, TCB), so a bogus source falls through to the next and a bad report fails here with a precise
/// reason. `what` names the caller in the log.
pub fn evidence(ctx: &Context<'_>, runtime: &[u8], what: &str) -> Result<Evidence, Error> {
    let (evidence, report) = report(ctx, runtime)?;
    let host = ctx.uvm.host_certs.as_ref();
    let check = ctx.verify_locally.then_some(collateral::Check {
        pins: ctx.ark_pins,
        now: SystemTime::now(),
    });
    let chain: Collateral = collateral::find(
        ctx.transport,
        &report,
        &evidence.certs,
        host,
        ctx.certcache,
        ctx.endpoints,
        check,
    )
    .map_err(Error::Collateral)?;
    log::info!(
        "{what}: report from {}, collateral from {}",
        evidence.provider,
        chain.source
    );
    if let Some(product) = chain.verified {
        log::info!(
            "{what}: report verified locally ({product}, TCB {})",
            report.reported()
        );
    }
    Ok(Evidence {
        report: evidence.report,
        parsed: report,
        chain,
    })
}

/// A report with report_data = SHA-256(`runtime`) ‖ 0³², parsed and checked to bind it (no collateral:
/// what the SKR API's `/attest/raw` answers).
pub fn report(ctx: &Context<'_>, runtime: &[u8]) -> Result<(attest::Evidence, Report), Error> {
    let rd = attest::report_data_for(runtime);
    let evidence = ctx.attester.report(&rd).map_err(Error::Attest)?;
    let report = Report::parse(&evidence.report).map_err(Error::Report)?;
    if report.report_data != rd {
        return Err(Error::Attest(attest::Error::BadReport {
            provider: evidence.provider,
            detail: "report_data does not match the runtime data's hash".into(),
        }));
    }
    Ok((evidence, report))
}

/// MAA's token for `runtime` (the runtime data MAA checks against report_data and returns as the
/// `x-ms-runtime` claim): [`evidence`], then the attestation at `authority`. The one attestation of the
/// boot's releases (runtime = the runtime key's JWK set) and of the SKR API's `/attest/maa` (the
/// caller's runtime data).
pub fn maa_token(
    ctx: &Context<'_>,
    authority: &str,
    runtime: &[u8],
    what: &str,
) -> Result<crate::secret::SecretString, Error> {
    let ev = evidence(ctx, runtime, what)?;
    maa::attest(
        ctx.transport,
        authority,
        ctx.maa_api_version,
        ctx.maa_user_agent,
        &maa::Attestation {
            report: &ev.report,
            vcek_chain_pem: &ev.chain.pem,
            reference_info: ctx.uvm.reference_info.as_deref(),
            runtime_json: runtime,
        },
    )
}

/// A released key as the vault gave it: its type, its operations and the unwrapped plaintext (raw bytes for
/// `oct`, PKCS#8 DER for `RSA` and `EC`). A disk key is derived from it ([`unwrap::disk_key`]); a secret for
/// the application or an SKR API answer is written from it ([`export`]).
pub struct ReleasedKey {
    /// `response.key.key.kty` (`oct-HSM`, `RSA-HSM`, ...).
    pub kty: String,
    /// `response.key.key.key_ops`.
    pub key_ops: Vec<String>,
    /// The wrap algorithm it came under (`request.enc`).
    pub enc: String,
    /// The unwrapped key.
    pub plaintext: SecretBytes,
}

impl fmt::Debug for ReleasedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReleasedKey({}, {:?})", self.kty, self.plaintext)
    }
}

/// Release the key `kid` from `vault` with an attestation made before (see [`attest()`]): the release call,
/// the JWS checks (chain, host, signature, that it releases this key) and the unwrap.
pub fn release_material(
    ctx: &Context<'_>,
    attested: &Attested,
    vault: &str,
    kid: &str,
) -> Result<ReleasedKey, Error> {
    let (runtime, maa_token) = (&attested.runtime, &attested.maa_token);
    let bearer = ctx.tokens.get(ctx.transport)?;
    let jws = akv::release(
        ctx.transport,
        vault,
        kid,
        ctx.akv_api_version,
        bearer.expose(),
        maa_token.expose(),
    )?;
    let released = akv::verify_jws(&jws, akv::host_of(vault), ctx.jws_trust, SystemTime::now())?;
    akv::check_key_id(&released, vault, kid)?;
    let mut plaintext =
        unwrap::unwrap(&released.enc, &released.ciphertext, runtime).map_err(Error::Unwrap)?;
    // Moved, not copied: no second copy of the key is left to wipe.
    let plaintext = SecretBytes::new(std::mem::take(&mut *plaintext));
    Ok(ReleasedKey {
        kty: released.kty,
        key_ops: released.key_ops,
        enc: released.enc,
        plaintext,
    })
}

/// Release `rp`'s key with an attestation made before (see [`attest()`]) and derive the disk key.
pub fn release_with(
    ctx: &Context<'_>,
    attested: &Attested,
    rp: &ReleasePlan,
) -> Result<SecretBytes, Error> {
    let released = release_material(ctx, attested, &rp.vault.0, &rp.kid)?;
    let key = unwrap::disk_key(
        &released.kty,
        released.plaintext.expose(),
        &rp.salt,
        &rp.label,
    )
    .map_err(Error::Unwrap)?;
    log::info!(
        "key release {}: released a {} key ({}), disk key ready",
        rp.kid,
        released.kty,
        released.enc
    );
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fails every request below HTTP, or with a status.
    struct Down(Option<u16>);
    impl Exchange for Down {
        fn exchange(&self, req: &http::Request<'_>) -> http::Result<http::Response> {
            Err(match self.0 {
                None => http::Error::Transport {
                    method: req.method().to_string(),
                    url: req.shown_url(),
                    kind: http::TransportKind::Timeout,
                    detail: "global timeout".into(),
                },
                Some(status) => http::Error::Status {
                    method: req.method().to_string(),
                    url: req.shown_url(),
                    status,
                    code: None,
                    snippet: "policy not satisfied".into(),
                    retry_after: None,
                },
            })
        }
    }

    #[test]
    fn a_step_names_itself_and_its_http_cause_once() {
        let req = || post_json("https://maa.example/attest/SevSnpVM?api-version=1", b"{}");
        let e = send(&Down(None), Step::Maa, req()).unwrap_err();
        assert_eq!(e.to_string(), "MAA attestation");
        assert_eq!(
            crate::errors::chain(&e),
            "MAA attestation: POST https://maa.example/attest/SevSnpVM?<redacted>: timed out: global timeout"
        );
        let e = send(&Down(Some(403)), Step::Release, req()).unwrap_err();
        assert!(matches!(e, Error::Status { status: 403, .. }), "{e:?}");
        assert!(
            crate::errors::chain(&e).starts_with(
                "key release: HTTP 403: policy not satisfied; fix: the release policy did not accept"
            ),
            "{e}"
        );
    }
}
