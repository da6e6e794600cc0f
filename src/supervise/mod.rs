//! Signals, children and restart policy: the catatonit/tini core, as one loop.
//!
//! The contract, and why:
//!
//! * **One owner.** [`signals::block_all`] blocks every asynchronous signal before any thread exists; the
//!   [`Supervisor`] reads them from a signalfd ([`signals::SignalSource`]) in its loop. No signal handler
//!   ever runs, so nothing has to be async-signal-safe, and no signal is lost (a blocked signal stays pending,
//!   even for a PID 1).
//! * **Reap everything.** On every `SIGCHLD` and on a 1 s tick (`SIGCHLD` coalesces) the loop drains
//!   `waitpid(-1, WNOHANG)` ([`reaper::reap`]). Exits of children we started are routed through the
//!   [`Registry`] to their [`Owner`]; orphans are collected and forgotten. Nothing else in the process waits
//!   for children, and every child is started through [`spawn::spawn`] (own process group, clean signal
//!   state).
//! * **Forwarding.** `SIGHUP SIGINT SIGQUIT SIGUSR1 SIGUSR2 SIGALRM SIGTERM SIGCONT SIGWINCH` are sent on to
//!   the application's process group (tini forwards everything it receives; catatonit forwards to the group
//!   with `-g`). Not forwarded: `SIGCHLD` (our reaping trigger), `SIGPIPE`, `SIGTTIN`, `SIGTTOU`, `SIGTSTP`
//!   (about our own terminal I/O and job control: stopping a supervised app would only hang it) and the
//!   rest (`SIGURG`, `SIGIO`, `SIGPWR`, real-time signals...), which are read and dropped.
//! * **Shutdown.** `SIGTERM` and `SIGINT` are forwarded *and* start the orderly shutdown: no more restarts;
//!   the application gets `grace_period` to exit, then its group gets `SIGKILL`. Its exit code is ours
//!   (128 + N for a signal). With no application, the first `SIGTERM`/`SIGINT` ends supervision with 0. As PID
//!   1 of a namespace ([`Options::sweep`]), whatever is still alive afterwards (daemons the app left behind)
//!   gets `SIGTERM`, then `SIGKILL` after the grace period, so a teardown (unmount, dm remove) finds no users.
//! * **Restarts.** `restart = never` passes the first exit code through (tini). Otherwise [`policy`] decides:
//!   exponential backoff, reset by a stable run, [`crate::exit::GAVE_UP`] after `max_restarts` in a row.
//!   A command that cannot be started counts as an exit with 127 (not found) or 126 (not executable).
//! * **Never panics, never exits.** [`Supervisor::run`] returns an [`Outcome`]; the caller (`init::run`)
//!   tears down and decides how the process ends.
//!
//! Stopping processes (the application's leftover group, the final sweep) is in `stop`; the raw calls
//! (signal dispositions, `waitpid`, the child's `pre_exec` hook) in `sys`, the only `unsafe` of the area.
#![deny(unsafe_code)] // the raw calls are in `sys` (the one file allowed them)

pub mod budget;
pub mod children;
pub mod policy;
pub mod reaper;
pub mod signals;
pub mod spawn;
mod stop;
mod sys;

pub use children::{Entry, Owner, Registry};

use crate::manifest::{AppPlan, SupervisePlan};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use policy::{Decision, RestartPolicy};
use reaper::Termination;
use std::time::{Duration, Instant};
use stop::signal_group;

/// The periodic tick: reap even if a `SIGCHLD` was lost, re-check deadlines.
pub const TICK: Duration = Duration::from_secs(1);

/// Signals passed on to the application's process group.
pub const FORWARDED: [Signal; 9] = [
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGALRM,
    Signal::SIGTERM,
    Signal::SIGCONT,
    Signal::SIGWINCH,
];

/// Signals that start the orderly shutdown (after being forwarded).
pub const SHUTDOWN: [Signal; 2] = [Signal::SIGTERM, Signal::SIGINT];

/// Supervisor settings.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Backoff, restart limit and shutdown grace.
    pub plan: SupervisePlan,
    /// At the end, signal every other process in the namespace (`kill(-1)`): only as PID 1 of a namespace,
    /// never as an ordinary process (it would hit every process of the user).
    pub sweep: bool,
    /// Become a child subreaper, so orphans are reparented to us: for `run` when we are not PID 1.
    pub subreaper: bool,
}

/// Why supervision ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The application ended and was not (or no longer) to be restarted.
    AppEnded(Termination),
    /// A shutdown signal arrived while no application was running.
    Stopped(Signal),
    /// The restart limit was reached.
    GaveUp,
    /// The signal source failed (cannot happen once it is open; reported rather than looping).
    Internal,
}

/// The result of [`Supervisor::run`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// The exit code encfs-init should end with.
    pub code: i32,
    /// Why.
    pub reason: Reason,
}

/// Errors creating the supervisor.
pub type Error = signals::Error;

/// State of the application slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AppState {
    /// No application configured, or it has ended for good.
    Idle,
    /// Running as `pid`, leading group `pgid`.
    Running { pid: Pid, pgid: Pid },
    /// To be (re)started at `until`.
    Waiting { until: Instant },
}

/// An orderly shutdown in progress.
#[derive(Debug, Clone, Copy)]
struct Shutdown {
    deadline: Instant,
    killed: bool,
}

/// The supervisor loop. Create it early (it owns the signal source), then [`run`](Self::run) it once.
#[derive(Debug)]
pub struct Supervisor {
    signals: signals::SignalSource,
    children: Registry,
    opts: Options,
    state: AppState,
    shutdown: Option<Shutdown>,
    last: Option<Termination>,
    outcome: Option<Outcome>,
    /// The process group of the application started last.
    app_group: Option<Pid>,
}

impl Supervisor {
    /// Open the signal source (signals must already be blocked) and, if asked, become a subreaper.
    pub fn new(opts: Options) -> Result<Self, Error> {
        let signals = signals::SignalSource::new()?;
        if opts.subreaper {
            if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
                log::warn!(
                    "cannot become a child subreaper ({e}): orphans will not be reaped by us"
                );
            }
        }
        Ok(Self {
            signals,
            children: Registry::new(),
            opts,
            state: AppState::Idle,
            shutdown: None,
            last: None,
            outcome: None,
            app_group: None,
        })
    }

    /// Supervise `app` (or, with none, wait for `SIGTERM`/`SIGINT` while reaping orphans) until the end.
    pub fn run(&mut self, app: Option<&AppPlan>) -> Outcome {
        self.run_with(app, &mut || None)
    }

    /// [`Supervisor::run`], calling `housekeeping` after every wake-up (at least once per tick). When it
    /// returns why a worker gave up (a block device's serving side that kept dying, say), supervision gives
    /// up too: the application is stopped as on SIGTERM and encfs-init ends with [`crate::exit::GAVE_UP`].
    pub fn run_with(
        &mut self,
        app: Option<&AppPlan>,
        housekeeping: &mut dyn FnMut() -> Option<String>,
    ) -> Outcome {
        let mut policy = app.map(|a| RestartPolicy::new(a.restart, self.opts.plan));
        if app.is_some() {
            self.state = AppState::Waiting {
                until: Instant::now(),
            };
        } else {
            log::info!("no application: waiting for SIGTERM");
        }
        // Signals that arrived during boot come first: a SIGTERM then means "don't start the app at all".
        match self.signals.drain() {
            Ok(sigs) => sigs.into_iter().for_each(|s| self.on_signal(s)),
            Err(e) => log::warn!("supervisor: {}", crate::errors::chain(&e)),
        }
        let outcome = loop {
            self.on_deadlines(app, policy.as_mut());
            if let Some(outcome) = self.outcome {
                if !matches!(self.state, AppState::Running { .. }) {
                    break outcome;
                }
            }
            match self.signals.wait(self.timeout()) {
                Ok(sigs) => sigs.into_iter().for_each(|s| self.on_signal(s)),
                Err(e) => {
                    log::error!("supervisor: {}", crate::errors::chain(&e));
                    break Outcome {
                        code: crate::exit::INTERNAL,
                        reason: Reason::Internal,
                    };
                }
            }
            self.reap(policy.as_mut());
            if let Some(why) = housekeeping() {
                self.worker_gave_up(&why);
            }
        };
        if let Some(pgid) = self.app_group {
            if self.shutdown.is_some() || self.opts.sweep {
                self.drain_group(pgid);
            }
        }
        outcome
    }

    /// Start the app when its wait is over; SIGKILL its group when the grace period is over.
    fn on_deadlines(&mut self, app: Option<&AppPlan>, policy: Option<&mut RestartPolicy>) {
        let now = Instant::now();
        if let (AppState::Waiting { until }, Some(app), Some(policy)) = (self.state, app, policy) {
            if now >= until && self.shutdown.is_none() {
                self.start_app(app, policy);
            }
        }
        if let (Some(sd), AppState::Running { pid, pgid }) = (self.shutdown.as_mut(), self.state) {
            if !sd.killed && now >= sd.deadline {
                sd.killed = true;
                log::warn!(
                    "the application did not exit within the grace period ({:?}): sending SIGKILL",
                    self.opts.plan.grace_period
                );
                signal_group(pid, pgid, Signal::SIGKILL);
            }
        }
    }

    /// How long the loop may sleep: the tick, or less if a deadline comes first.
    fn timeout(&self) -> Duration {
        let now = Instant::now();
        let mut t = TICK;
        if let AppState::Waiting { until } = self.state {
            t = t.min(until.saturating_duration_since(now));
        }
        if let Some(sd) = self.shutdown.filter(|sd| !sd.killed) {
            t = t.min(sd.deadline.saturating_duration_since(now));
        }
        t
    }

    fn start_app(&mut self, app: &AppPlan, policy: &mut RestartPolicy) {
        let opts = spawn::SpawnOptions {
            foreground_tty: true,
        };
        match spawn::spawn(&app.argv, &opts) {
            Ok(s) => {
                log::info!(
                    "started the application {:?} (pid {})",
                    app.argv.first().map_or("", String::as_str),
                    s.pid
                );
                let entry = Entry {
                    owner: Owner::App,
                    pgid: s.pgid,
                    started: Instant::now(),
                };
                self.children.insert(s.pid, entry);
                self.app_group = Some(s.pgid);
                self.state = AppState::Running {
                    pid: s.pid,
                    pgid: s.pgid,
                };
            }
            Err(e) => {
                log::error!(
                    "start the application: {}; fix: check the command and PATH",
                    crate::errors::chain(&e)
                );
                self.state = AppState::Idle;
                self.on_app_exit(Termination::Exited(e.exit_code()), Duration::ZERO, policy);
            }
        }
    }

    fn on_signal(&mut self, sig: Signal) {
        if FORWARDED.contains(&sig) {
            if let AppState::Running { pid, pgid } = self.state {
                log::debug!("forwarding {sig} to the application (process group {pgid})");
                signal_group(pid, pgid, sig);
            }
        } else if sig != Signal::SIGCHLD {
            log::debug!("ignoring {sig}");
        }
        if SHUTDOWN.contains(&sig) && self.shutdown.is_none() {
            let grace = self.opts.plan.grace_period;
            self.shutdown = Some(Shutdown {
                deadline: Instant::now() + grace,
                killed: false,
            });
            match self.state {
                AppState::Running { .. } => {
                    log::info!("{sig}: stopping the application (grace period {grace:?})")
                }
                AppState::Idle | AppState::Waiting { .. } => {
                    log::info!("{sig}: stopping");
                    self.state = AppState::Idle;
                    // A pending restart is cancelled; its last exit code (if any) stands.
                    let code = self.last.map_or(crate::exit::OK, Termination::code);
                    self.outcome.get_or_insert(Outcome {
                        code,
                        reason: Reason::Stopped(sig),
                    });
                }
            }
        }
    }

    fn reap(&mut self, mut policy: Option<&mut RestartPolicy>) {
        let mut exits = Vec::new();
        reaper::reap(|pid, t| exits.push((pid, t)));
        for (pid, t) in exits {
            match self.children.remove(pid) {
                Some(Entry {
                    owner: Owner::App,
                    started,
                    ..
                }) => {
                    self.state = AppState::Idle;
                    if let Some(p) = policy.as_deref_mut() {
                        self.on_app_exit(t, started.elapsed(), p);
                    }
                }
                Some(Entry {
                    owner: Owner::Worker(name),
                    ..
                }) => log::warn!("helper of {name} (pid {pid}) {t}"),
                None => log::debug!("reaped orphan {pid}: {t}"),
            }
        }
    }

    /// A worker gave up (see [`Supervisor::run_with`]): stop as on SIGTERM, ending with `GAVE_UP`. Once.
    fn worker_gave_up(&mut self, why: &str) {
        if self.outcome.map(|o| o.reason) == Some(Reason::GaveUp) {
            return;
        }
        log::error!(
            "supervise: {why}; giving up (exit {})",
            crate::exit::GAVE_UP
        );
        self.outcome = Some(Outcome {
            code: crate::exit::GAVE_UP,
            reason: Reason::GaveUp,
        });
        self.on_signal(Signal::SIGTERM);
    }

    fn on_app_exit(&mut self, t: Termination, ran_for: Duration, policy: &mut RestartPolicy) {
        self.last = Some(t);
        if self.shutdown.is_some() {
            log::info!("the application {t}");
            // A worker that gave up decided the exit code already.
            if self.outcome.map(|o| o.reason) != Some(Reason::GaveUp) {
                self.outcome = Some(Outcome {
                    code: t.code(),
                    reason: Reason::AppEnded(t),
                });
            }
            return;
        }
        match policy.on_exit(t, ran_for) {
            Decision::Stop { code } => {
                log::info!("the application {t}");
                self.outcome = Some(Outcome {
                    code,
                    reason: Reason::AppEnded(t),
                });
            }
            Decision::Restart { delay, attempt } => {
                log::warn!("the application {t} after {ran_for:?}: restart {attempt} in {delay:?}");
                self.state = AppState::Waiting {
                    until: Instant::now() + delay,
                };
            }
            Decision::GiveUp {
                restarts,
                last_code,
            } => {
                log::error!(
                    "supervise: the application {t} (code {last_code}) after {restarts} restarts in a row; \
                     giving up; fix: see the application's output above, or raise supervise.max_restarts"
                );
                self.outcome = Some(Outcome {
                    code: crate::exit::GAVE_UP,
                    reason: Reason::GaveUp,
                });
            }
        }
    }
}
