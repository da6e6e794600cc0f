//! Re-establishing a dead mount (issue 17). After boot every open filesystem lives in a [`Fleet`], which
//! the health threads ([`super::health`]) feed with their reads and ask, after each read and every second
//! in between (then on the signs that need no read), whether a filesystem is dead ([`verdict`]):
//! - its health reads have failed for `dead_after` (the blob service gone longer than `io_deadline`);
//! - its serving side gave up (it kept dying: [`crate::supervise::budget`]);
//! - its blob was replaced (a 412 on the data path: the ETag changed) or its bearer token can no longer be
//!   refreshed ([`crate::blob::FatalWatch`]);
//! - its write lease was lost ([`crate::blob::LeaseWatch`]).
//!
//! A dead filesystem with `on_failure = "restart"` is marked `restarting` in the readiness file (so
//! `encfs-init probe` fails and says why), detached from the application's view without waiting
//! ([`super::filesystems::Opened::abandon`]), and opened again by the whole open sequence with a FRESH
//! attestation and key release ([`super::keys::Keys::forget_attestations`]), in a thread of its own (the
//! supervisor's signals and reaping never wait for it). Attempts are spaced by `[supervise]`'s backoff, at
//! most `restart_limit` per death, each failure logged in one line (step, cause, fix); after the last it is
//! `down`. A filesystem dying again and again (more than the serving side's restart budget within its
//! window) is `down` at once. With `on_failure = "stay-down"` it is marked `down` and left as it is (a
//! serving side that gave up still ends the run, exit 4). Other filesystems, the secrets, the SKR API and
//! the application keep running throughout.
#![forbid(unsafe_code)]

use super::filesystems::{self, Opened};
use super::keys::Keys;
use crate::manifest::{FailurePolicy, FilesystemPlan, Plan};
use crate::ready::{FsState, MountState, SecretState};
use crate::supervise::budget::RestartBudget;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the supervisor knows about one filesystem, for [`verdict`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Signs {
    /// How long its health reads have been failing (none while the latest succeeded).
    pub failing_for: Option<Duration>,
    /// Why its serving side gave up, if it did.
    pub gave_up: Option<String>,
    /// Why its blob can no longer be served (replaced, token), if so.
    pub fatal: Option<String>,
    /// Its write lease was lost.
    pub lease_lost: bool,
}

/// Why the filesystem is dead, or `None` while it is not.
pub fn verdict(s: &Signs, dead_after: Duration) -> Option<String> {
    if let Some(why) = &s.gave_up {
        return Some(format!("its serving side gave up: {why}"));
    }
    if let Some(why) = &s.fatal {
        return Some(why.clone());
    }
    if s.lease_lost {
        return Some("its write lease was lost (writes fail)".into());
    }
    match s.failing_for {
        Some(d) if d >= dead_after => Some(format!(
            "its health reads have failed for {} s (dead_after {} s)",
            d.as_secs(),
            dead_after.as_secs()
        )),
        _ => None,
    }
}

/// How long a filesystem's reads have been failing, as a verdict may count it: only right after a read
/// (`after_read`), which confirms the failure goes on; between reads one failed read grows no older (the
/// service may be back, a read on a corrupted verity block fails alone), so it is never a death by itself.
pub fn failing_for(since: Option<Instant>, after_read: bool) -> Option<Duration> {
    since.filter(|_| after_read).map(|t| t.elapsed())
}

/// The wait before re-open attempt `attempt + 1` (`attempt` from 1): `[supervise]`'s restart backoff.
pub fn backoff(plan: &Plan, attempt: u32) -> Duration {
    crate::backoff::exponential(
        plan.supervise.backoff_initial,
        plan.supervise.backoff_max,
        attempt.saturating_sub(1),
    )
}

#[derive(Debug, Default)]
struct Watch {
    /// When the first of the current run of failed health reads ended (a read of a dead blob service fails
    /// only after `io_deadline`: one failed read is never a death by itself).
    failing_since: Option<Instant>,
    /// A re-open is running (or the filesystem is down): no new verdict.
    busy: bool,
    /// Re-opens so far (names the dm devices `-r<n>`).
    generation: u32,
    /// Deaths within the serving side's window.
    deaths: RestartBudget,
}

#[derive(Debug, Default)]
struct Slot {
    opened: Mutex<Option<Opened>>,
    watch: Mutex<Watch>,
}

/// The open filesystems while supervising, their readiness states, and the re-opens in progress.
#[derive(Debug)]
pub struct Fleet {
    plan: Arc<Plan>,
    keys: Option<Arc<Keys>>,
    slots: Vec<Slot>,
    states: Mutex<Vec<FsState>>,
    secrets: Vec<SecretState>,
    stopped: Mutex<bool>,
    wake: Condvar,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Fleet {
    /// The filesystems `opened` at boot (in the plan's order), with what the readiness file says of them.
    pub fn new(
        plan: Arc<Plan>,
        keys: Option<Arc<Keys>>,
        opened: Vec<Opened>,
        states: Vec<FsState>,
        secrets: Vec<SecretState>,
    ) -> Arc<Fleet> {
        let slots = opened
            .into_iter()
            .map(|o| Slot {
                opened: Mutex::new(Some(o)),
                watch: Mutex::default(),
            })
            .collect();
        Arc::new(Fleet {
            plan,
            keys,
            slots,
            states: Mutex::new(states),
            secrets,
            stopped: Mutex::new(false),
            wake: Condvar::new(),
            workers: Mutex::default(),
        })
    }

    /// How many filesystems.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// None.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The dm device of filesystem `k` while it is ready (health reads go there).
    pub fn ready_device(&self, k: usize) -> Option<PathBuf> {
        let states = lock(&self.states);
        let st = states.get(k)?;
        (st.state == MountState::Ready).then(|| PathBuf::from(&st.device))
    }

    /// Fold a health read of `device` into filesystem `k`'s state with `f` (which says whether the read
    /// succeeded), unless it was re-opened meanwhile.
    pub fn record(&self, k: usize, device: &std::path::Path, f: impl FnOnce(&mut FsState) -> bool) {
        let mut states = lock(&self.states);
        let Some(st) = states.get_mut(k) else { return };
        if st.state != MountState::Ready || std::path::Path::new(&st.device) != device {
            return;
        }
        let ok = f(st);
        let mut w = lock(&self.slots[k].watch);
        if ok {
            w.failing_since = None;
        } else {
            w.failing_since.get_or_insert_with(Instant::now);
        }
    }

    /// Rewrite the readiness file (not once teardown began: it removes the file).
    pub fn write(&self) {
        let states = lock(&self.states);
        if *lock(&self.stopped) {
            return;
        }
        let ready = &self.plan.readiness_file;
        if let Err(e) = crate::ready::mark_ready_with(ready, &states, &self.secrets) {
            log::warn!("readiness file: rewrite {}: {e}", ready.display());
        }
    }

    fn set_state(&self, k: usize, state: MountState, why: Option<String>) {
        if let Some(st) = lock(&self.states).get_mut(k) {
            st.state = state;
            st.why = why;
        }
        self.write();
    }

    /// Judge filesystem `k` and act on a death: start its re-open, or mark it down. `after_read`: right
    /// after a health read of it, when failing reads count; otherwise only the signs that need no read do
    /// (a failure's age is known only when a read confirms it: between reads the service may be back).
    pub fn check(self: &Arc<Self>, k: usize, after_read: bool) {
        let Some(fs) = self.plan.filesystems.get(k) else {
            return;
        };
        let mut w = lock(&self.slots[k].watch);
        if w.busy {
            return;
        }
        let signs = {
            let opened = lock(&self.slots[k].opened);
            let Some(o) = opened.as_ref() else { return };
            Signs {
                failing_for: failing_for(w.failing_since, after_read),
                gave_up: o.gave_up(),
                fatal: o.fatal.as_ref().and_then(crate::blob::FatalWatch::get),
                lease_lost: o
                    .lease
                    .as_ref()
                    .is_some_and(|l| l.state() == crate::blob::LeaseState::Lost),
            }
        };
        let Some(why) = verdict(&signs, fs.dead_after) else {
            return;
        };
        w.busy = true;
        let i = fs.index;
        let mp = fs.mount_point.display();
        if fs.on_failure == FailurePolicy::StayDown {
            log::error!(
                "filesystem[{i}] ({mp}): dead: {why}; down (on_failure = \"stay-down\"); `encfs-init probe` \
                 fails; fix: restart the container, or set on_failure = \"restart\""
            );
            drop(w);
            return self.set_state(k, MountState::Down, Some(format!("dead: {why}")));
        }
        if let Err(deaths) = w.deaths.take() {
            log::error!(
                "filesystem[{i}] ({mp}): dead: {why}; down: it died {deaths} times within {} min, not \
                 restarted again; fix: see the causes above (the blob service, the blob, the key)",
                RestartBudget::window_minutes()
            );
            drop(w);
            return self.set_state(k, MountState::Down, Some(format!("dead: {why}")));
        }
        drop(w);
        log::error!(
            "filesystem[{i}] ({mp}): dead: {why}; restarting it (on_failure = \"restart\"): detach, then the \
             whole open sequence with a fresh attestation and key release"
        );
        self.set_state(k, MountState::Restarting, Some(format!("dead: {why}")));
        let fleet = self.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("restart-fs{i}"))
            .spawn(move || fleet.restart(k, why));
        match spawned {
            Ok(h) => lock(&self.workers).push(h),
            Err(e) => {
                log::error!("filesystem[{i}]: cannot start its restart thread: {e}; down");
                self.set_state(k, MountState::Down, Some(format!("no restart thread: {e}")));
            }
        }
    }

    /// The re-open of filesystem `k`, in its own thread.
    fn restart(&self, k: usize, why: String) {
        let fs: &FilesystemPlan = &self.plan.filesystems[k];
        let i = fs.index;
        let taken = lock(&self.slots[k].opened).take();
        if let Some(o) = taken {
            if o.abandon() {
                log::info!("filesystem[{i}]: detached (lazily; nothing left behind)");
            } else {
                log::warn!("filesystem[{i}]: detached (lazily), with the errors above");
            }
        }
        let limit = fs.restart_limit;
        for attempt in 1..=limit {
            if self.stopping() {
                return;
            }
            if let Some(keys) = &self.keys {
                keys.forget_attestations();
            }
            let generation = {
                let mut w = lock(&self.slots[k].watch);
                w.generation += 1;
                w.generation
            };
            match filesystems::open_again(fs, &self.plan, self.keys.as_deref(), generation) {
                Ok(o) => {
                    let mut st = o.state();
                    st.state = MountState::Ready;
                    *lock(&self.slots[k].opened) = Some(o);
                    if let Some(s) = lock(&self.states).get_mut(k) {
                        *s = st;
                    }
                    {
                        let mut w = lock(&self.slots[k].watch);
                        w.failing_since = None;
                        w.busy = false;
                    }
                    self.write();
                    log::info!(
                        "filesystem[{i}]: restarted (attempt {attempt}/{limit}): ready again at {}",
                        fs.mount_point.display()
                    );
                    return;
                }
                Err(e) => {
                    let line = crate::errors::chain(&e);
                    log::error!(
                        "filesystem[{i}]: restart attempt {attempt}/{limit} failed: {line}"
                    );
                    let state = if attempt < limit {
                        MountState::Restarting
                    } else {
                        MountState::Down
                    };
                    let because = format!("dead: {why}; re-open attempt {attempt}/{limit}: {line}");
                    self.set_state(k, state, Some(because));
                    if attempt < limit && self.sleep(backoff(&self.plan, attempt)) {
                        return;
                    }
                }
            }
        }
        log::error!(
            "filesystem[{i}] ({}): down: {limit} re-open attempts failed; `encfs-init probe` fails; fix: see \
             the attempts above, then restart the container",
            fs.mount_point.display()
        );
    }

    fn stopping(&self) -> bool {
        *lock(&self.stopped)
    }

    /// Wait `d`, or less when teardown begins; true when it did.
    fn sleep(&self, d: Duration) -> bool {
        let stopped = lock(&self.stopped);
        let (stopped, _) = self
            .wake
            .wait_timeout_while(stopped, d, |s| !*s)
            .unwrap_or_else(PoisonError::into_inner);
        *stopped
    }

    /// Why a `stay-down` filesystem's serving side is gone for good (the supervisor then ends the run).
    pub fn gave_up(&self) -> Option<String> {
        self.plan
            .filesystems
            .iter()
            .zip(&self.slots)
            .filter(|(fs, _)| fs.on_failure == FailurePolicy::StayDown)
            .find_map(|(_, s)| lock(&s.opened).as_ref().and_then(Opened::gave_up))
    }

    /// Run `f` on every filesystem that is open now.
    pub fn for_each(&self, mut f: impl FnMut(&Opened)) {
        for s in &self.slots {
            if let Some(o) = lock(&s.opened).as_ref() {
                f(o);
            }
        }
    }

    /// Teardown: no more re-opens (one in progress finishes its attempt) and no more readiness writes;
    /// then the filesystems open now, in the plan's order.
    pub fn stop(&self) -> Vec<Opened> {
        *lock(&self.stopped) = true;
        self.wake.notify_all();
        let workers = std::mem::take(&mut *lock(&self.workers));
        for w in workers {
            let _ = w.join();
        }
        self.slots
            .iter()
            .filter_map(|s| lock(&s.opened).take())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    /// Judged between reads (every second), a failure's age does not count: with `dead_after` under
    /// `health_interval`, one failed read would otherwise become a death without another read.
    #[test]
    fn a_failures_age_counts_only_right_after_a_read() {
        let since = Instant::now().checked_sub(10 * S);
        assert!(since.is_some());
        assert!(failing_for(since, true).is_some_and(|d| d >= 10 * S));
        assert_eq!(failing_for(since, false), None);
        assert_eq!(failing_for(None, true), None);
        let signs = Signs {
            failing_for: failing_for(since, false),
            ..Signs::default()
        };
        assert_eq!(verdict(&signs, 3 * S), None);
    }

    #[test]
    fn failing_health_reads_are_a_death_only_after_dead_after() {
        let mut s = Signs::default();
        assert_eq!(verdict(&s, 10 * S), None, "healthy");
        s.failing_for = Some(9 * S);
        assert_eq!(verdict(&s, 10 * S), None, "not failing for long enough");
        s.failing_for = Some(10 * S);
        assert_eq!(
            verdict(&s, 10 * S).as_deref(),
            Some("its health reads have failed for 10 s (dead_after 10 s)")
        );
    }

    #[test]
    fn a_given_up_serving_side_a_replaced_blob_and_a_lost_lease_are_deaths_at_once() {
        let gave_up = Signs {
            gave_up: Some("NBD serving side died 31 times".into()),
            ..Signs::default()
        };
        assert_eq!(
            verdict(&gave_up, S).as_deref(),
            Some("its serving side gave up: NBD serving side died 31 times")
        );
        let replaced = Signs {
            fatal: Some("blob changed".into()),
            failing_for: Some(Duration::ZERO),
            ..Signs::default()
        };
        assert_eq!(
            verdict(&replaced, 3600 * S).as_deref(),
            Some("blob changed")
        );
        let lease = Signs {
            lease_lost: true,
            ..Signs::default()
        };
        assert!(verdict(&lease, S).unwrap().contains("lease was lost"));
    }

    #[test]
    fn reopen_attempts_back_off_as_supervise_says_up_to_its_cap() {
        let mut plan = crate::manifest::empty_plan().unwrap();
        plan.supervise.backoff_initial = 2 * S;
        plan.supervise.backoff_max = 5 * S;
        let waits: Vec<u64> = (1..=4).map(|a| backoff(&plan, a).as_secs()).collect();
        assert_eq!(waits, [2, 4, 5, 5]);
    }
}
