//! One writer per read-write blob: an Azure blob lease (Lease Blob, `PUT <blob>?comp=lease`).
//!
//! A read-write [`super::AzureBlob`] acquires a lease at open, before it reads the blob's properties (so the
//! ETag it pins is read while no one else can write): `x-ms-lease-action: acquire`, a duration of
//! [`LeaseConfig::DEFAULT`]'s 60 s and a random `x-ms-proposed-lease-id` (a retried acquire whose first
//! reply was lost then succeeds: acquiring with the id that holds the lease is allowed). Another holder
//! answers 409 `LeaseAlreadyPresent`: [`Error::Leased`], one line with how to break a stale lease.
//! Read-only openers take no lease and are not stopped by one.
//!
//! Every write carries `x-ms-lease-id`; a thread renews the lease every `renew_every` (20 s), retrying a
//! failed renewal (the client's backoff) only while the lease is still valid. The lease is lost when:
//! a renewal is refused (409/412: broken, taken by someone else, released; 404: the blob is gone), a
//! write is refused for a lease reason (412 `LeaseIdMissing`, `LeaseIdMismatchWithBlobOperation`,
//! `LeaseNotPresentWithBlobOperation`), or no renewal succeeded before it expired (another writer may have
//! taken and used it meanwhile). Then, once: the state becomes [`LeaseState::Lost`] (the readiness file
//! reports it, `probe` fails), the log says it with the fix; every later write fails at once
//! ([`Error::LeaseLost`]) without a request. Nothing is retried on a lease refusal.
//!
//! Why 60 s: the longest finite lease. The renewer has 40 s after a missed renewal to get through a blob
//! service outage before the lease expires (and writes stop); a writer that died without releasing
//! blocks a new one for at most 60 s (an infinite lease would need a manual break after every crash).
//!
//! At teardown, after the final flush, the lease is released (`x-ms-lease-action: release`); a lost
//! lease is not released (it is not ours any more).
#![forbid(unsafe_code)]

use super::endpoint::Endpoint;
use crate::blob::{Error, Result};
use crate::http;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Azure's bounds for a finite lease.
const MIN_SECS: u64 = 15;
const MAX_SECS: u64 = 60;

/// How long a lease lasts and how often it is renewed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseConfig {
    /// The lease duration asked for (Azure accepts 15 to 60 s; clamped to that).
    pub duration: Duration,
    /// Time between renewals (a third of the duration by default).
    pub renew_every: Duration,
}

impl LeaseConfig {
    /// 60 s, renewed every 20 s.
    pub const DEFAULT: LeaseConfig = LeaseConfig {
        duration: Duration::from_secs(MAX_SECS),
        renew_every: Duration::from_secs(MAX_SECS / 3),
    };

    fn secs(&self) -> u64 {
        self.duration.as_secs().clamp(MIN_SECS, MAX_SECS)
    }
}

impl Default for LeaseConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Where a read-write blob's lease stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseState {
    /// Ours, renewed in the background.
    Held,
    /// Broken, taken or expired: writes fail.
    Lost,
    /// Given back at teardown.
    Released,
}

impl LeaseState {
    /// `held`, `lost` or `released` (the readiness file's words).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Held => "held",
            Self::Lost => "lost",
            Self::Released => "released",
        }
    }
}

#[derive(Debug)]
struct Shared {
    state: AtomicU8,
    /// Why it was lost (set once, with the state).
    why: Mutex<String>,
    /// The blob URL as it may be shown.
    url: String,
}

/// A live view of a lease's state, for the readiness file (serialized as the state's word, read anew at
/// every rewrite) and health reporting; cheap to clone.
#[derive(Debug, Clone)]
pub struct LeaseWatch(Arc<Shared>);

impl LeaseWatch {
    /// The state now.
    pub fn state(&self) -> LeaseState {
        match self.0.state.load(Ordering::SeqCst) {
            0 => LeaseState::Held,
            1 => LeaseState::Lost,
            _ => LeaseState::Released,
        }
    }

    /// Held → `to`; false when it was not held.
    fn leave_held(&self, to: LeaseState) -> bool {
        let code = match to {
            LeaseState::Held => 0,
            LeaseState::Lost => 1,
            LeaseState::Released => 2,
        };
        self.0
            .state
            .compare_exchange(0, code, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    /// Mark it lost for `why`; the first call logs it with the fix.
    fn lose(&self, why: String) {
        let mut kept = self.0.why.lock().unwrap_or_else(|p| p.into_inner());
        if self.leave_held(LeaseState::Lost) {
            log::error!(
                "{}",
                crate::errors::chain(&Error::LeaseLost {
                    url: self.0.url.clone(),
                    why: why.clone(),
                })
            );
            *kept = why;
        }
    }

    fn lost_error(&self) -> Error {
        Error::LeaseLost {
            url: self.0.url.clone(),
            why: self.0.why.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        }
    }
}

impl serde::Serialize for LeaseWatch {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.state().as_str())
    }
}

/// A lease held on a blob: its id (sent with every write), its state, and the renewer.
#[derive(Debug)]
pub(super) struct Lease {
    id: String,
    ep: Endpoint,
    watch: LeaseWatch,
    /// Ends the renewer (dropped or sent to at release).
    stop: Mutex<Option<Sender<()>>>,
}

impl Lease {
    /// Acquire the lease on `ep`'s blob and start renewing it. Errors are the open's: 409 is
    /// [`Error::Leased`]; 401/403/404 as [`super::answers::open_error`] says.
    pub(super) fn acquire(ep: &Endpoint, cfg: LeaseConfig) -> Result<Lease> {
        let id = new_lease_id()?;
        let secs = cfg.secs();
        let target = ep.target(Some("comp=lease"));
        let started = Instant::now();
        let resp = ep
            .client
            .retry(|_| {
                let req = ep
                    .request("PUT", &target)?
                    .header("x-ms-lease-action", "acquire")
                    .header("x-ms-lease-duration", secs.to_string())
                    .header("x-ms-proposed-lease-id", id.clone())
                    .body(&[]);
                ep.checked(&req, &[200, 201])
            })
            .map_err(|e| match e.status() {
                Some(409) => Error::Leased {
                    url: ep.shown(),
                    code: code(&e),
                },
                _ => super::answers::open_error(e, &ep.url, &ep.auth),
            })?;
        if let Some(got) = resp.header("x-ms-lease-id") {
            if !got.eq_ignore_ascii_case(&id) {
                return Err(Error::Protocol(format!(
                    "Lease Blob {}: acquired lease {got}, not the proposed {id}",
                    ep.shown()
                )));
            }
        }
        let watch = LeaseWatch(Arc::new(Shared {
            state: AtomicU8::new(0),
            why: Mutex::new(String::new()),
            url: ep.shown(),
        }));
        let (stop, stopped) = channel::<()>();
        let (r_ep, r_id, r_watch) = (ep.clone(), id.clone(), watch.clone());
        std::thread::Builder::new()
            .name("lease".into())
            .spawn(move || {
                let lasts = Duration::from_secs(secs);
                let mut valid_until = started + lasts;
                let mut failed: Option<String> = None;
                let mut wait = cfg.renew_every;
                // Ends when the lease is released (the sender is dropped) or lost. `lose` does nothing
                // once the lease is released, so a renewal racing with the release is not reported.
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(wait) {
                    wait = cfg.renew_every;
                    if Instant::now() >= valid_until {
                        let last = failed.map(|w| format!(" (the last attempt: {w})"));
                        r_watch.lose(format!(
                            "it expired before it could be renewed{}",
                            last.unwrap_or_default()
                        ));
                        return;
                    }
                    match renew(&r_ep, &r_id, valid_until) {
                        Renewal::Done(sent) => {
                            valid_until = sent + lasts;
                            if failed.take().is_some() {
                                log::info!("{}: write lease renewed again", r_ep.shown());
                            }
                        }
                        Renewal::Lost(why) => return r_watch.lose(why),
                        Renewal::Later(why) => {
                            if failed.is_none() {
                                log::warn!(
                                    "{}: renewing the write lease: {why}; trying again while it lasts",
                                    r_ep.shown()
                                );
                            }
                            failed = Some(why);
                            // Back at the latest when it expires, to say so.
                            wait = wait.min(valid_until.saturating_duration_since(Instant::now()));
                        }
                    }
                }
            })
            .map_err(|e| Error::Io {
                op: "start the lease renewer for",
                path: ep.shown(),
                kind: e.kind(),
                detail: e.to_string(),
            })?;
        log::info!(
            "{}: write lease acquired ({secs} s, renewed every {} s)",
            ep.shown(),
            cfg.renew_every.as_secs_f64()
        );
        Ok(Lease {
            id,
            ep: ep.clone(),
            watch,
            stop: Mutex::new(Some(stop)),
        })
    }

    /// The lease id, for `x-ms-lease-id`.
    pub(super) fn id(&self) -> &str {
        &self.id
    }

    /// A live view of the state.
    pub(super) fn watch(&self) -> LeaseWatch {
        self.watch.clone()
    }

    /// `Err(LeaseLost)` once the lease is lost: writes then fail without a request.
    pub(super) fn check(&self) -> Result<()> {
        match self.watch.state() {
            LeaseState::Held => Ok(()),
            _ => Err(self.watch.lost_error()),
        }
    }

    /// A write refused for a lease reason (412 `Lease*`) loses the lease: its error; `None` otherwise.
    pub(super) fn refused_write(&self, e: &http::Error) -> Option<Error> {
        if e.status() != Some(412) || !code(e).is_some_and(|c| c.starts_with("Lease")) {
            return None;
        }
        self.watch.lose(format!(
            "a write answered HTTP 412 {}",
            code(e).unwrap_or_default()
        ));
        Some(self.watch.lost_error())
    }

    /// Give the lease back (teardown, after the final flush); a lost or released lease is left alone.
    pub(super) fn release(&self) {
        if !self.watch.leave_held(LeaseState::Released) {
            return;
        }
        // The renewer ends at its next wake-up (or after a renewal in flight, whose refusal it ignores now
        // that the lease is released); it is not waited for.
        drop(self.stop.lock().unwrap_or_else(|p| p.into_inner()).take());
        let target = self.ep.target(Some("comp=lease"));
        let r = self.ep.client.retry(|_| {
            let req = self
                .ep
                .request("PUT", &target)?
                .header("x-ms-lease-action", "release")
                .header("x-ms-lease-id", self.id.clone())
                .body(&[]);
            self.ep.checked(&req, &[200])
        });
        match r {
            Ok(_) => log::info!("{}: write lease released", self.ep.shown()),
            Err(e) => log::warn!(
                "{}: releasing the write lease: {}; it expires by itself within {MAX_SECS} s",
                self.ep.shown(),
                crate::errors::chain(&e)
            ),
        }
    }
}

/// What became of one renewal.
enum Renewal {
    /// Renewed by the request sent at this time.
    Done(Instant),
    /// Refused (or renewed only after it had expired): lost, for this reason.
    Lost(String),
    /// Not renewed (the service unreachable, retries stopped at shutdown): try again while it lasts.
    Later(String),
}

/// Renew once, retrying transient failures while the lease is valid.
fn renew(ep: &Endpoint, id: &str, valid_until: Instant) -> Renewal {
    let target = ep.target(Some("comp=lease"));
    let mut sent = Instant::now();
    let client = ep.client.with_policy(http::RetryPolicy {
        retries: u32::MAX,
        deadline: Some(valid_until.saturating_duration_since(sent)),
        ..*ep.client.policy()
    });
    let r = client.retry(|_| {
        sent = Instant::now();
        let req = ep
            .request("PUT", &target)?
            .header("x-ms-lease-action", "renew")
            .header("x-ms-lease-id", id.to_string())
            .body(&[]);
        ep.checked(&req, &[200])
    });
    match r {
        Ok(_) if sent < valid_until => Renewal::Done(sent),
        Ok(_) => Renewal::Lost("it was renewed only after it had expired".into()),
        Err(e) if matches!(e.status(), Some(404 | 409 | 412)) => Renewal::Lost(format!(
            "renewing it answered HTTP {} {}",
            e.status().unwrap_or_default(),
            code(&e).unwrap_or_default()
        )),
        Err(e) => Renewal::Later(crate::errors::chain(&e)),
    }
}

/// Azure's `x-ms-error-code`, if the service answered with one.
fn code(e: &http::Error) -> Option<String> {
    match e {
        http::Error::Status { code, .. } => code.clone(),
        http::Error::Deadline { last, .. } => code(last),
        _ => None,
    }
}

/// A random lease id. Unlike a request id it must be random: a second writer proposing the same id would
/// be granted the lease.
fn new_lease_id() -> Result<String> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| Error::Io {
        op: "read randomness for a lease id from",
        path: "getrandom".into(),
        kind: std::io::ErrorKind::Other,
        detail: e.to_string(),
    })?;
    Ok(crate::uuid::v4(b))
}

/// How to break a stale lease on `url` (shown in [`Error::Leased`]'s fix): the Azure CLI command for an
/// Azure URL, the REST call otherwise.
pub fn break_hint(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let account = host.strip_suffix(".blob.core.windows.net");
    match (account, path.split_once('/')) {
        (Some(account), Some((container, blob))) if !blob.is_empty() => format!(
            "`az storage blob lease break --account-name {account} --container-name {container} \
             --blob-name {blob}`"
        ),
        _ => format!("PUT {url}?comp=lease with x-ms-lease-action: break (Lease Blob)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_lease_is_broken_with_the_cli_for_azure_and_the_rest_call_otherwise() {
        assert_eq!(
            break_hint("https://acct.blob.core.windows.net/disks/dir/a.img"),
            "`az storage blob lease break --account-name acct --container-name disks --blob-name dir/a.img`"
        );
        assert_eq!(
            break_hint("http://127.0.0.1:10000/devstoreaccount1/c/b"),
            "PUT http://127.0.0.1:10000/devstoreaccount1/c/b?comp=lease with x-ms-lease-action: break (Lease Blob)"
        );
    }

    #[test]
    fn durations_stay_within_azures_bounds() {
        let cfg = |s| LeaseConfig {
            duration: Duration::from_secs(s),
            renew_every: Duration::from_secs(1),
        };
        assert_eq!(cfg(1).secs(), 15);
        assert_eq!(cfg(600).secs(), 60);
        assert_eq!(LeaseConfig::DEFAULT.secs(), 60);
        assert_eq!(LeaseConfig::DEFAULT.renew_every, Duration::from_secs(20));
    }

    #[test]
    fn a_watch_is_lost_once_and_serializes_as_its_word() {
        let w = LeaseWatch(Arc::new(Shared {
            state: AtomicU8::new(0),
            why: Mutex::new(String::new()),
            url: "http://h/c/b".into(),
        }));
        assert_eq!(serde_json::to_string(&w).unwrap_or_default(), "\"held\"");
        w.lose("first".into());
        w.lose("second".into());
        assert_eq!(w.state(), LeaseState::Lost);
        let shown = w.lost_error().to_string();
        assert!(shown.contains("(first)"), "{shown}");
        assert!(
            !w.leave_held(LeaseState::Released),
            "a lost lease stays lost"
        );
        assert_eq!(serde_json::to_string(&w).unwrap_or_default(), "\"lost\"");
    }
}
