//! The boot sequence: the only place that knows the order of the steps.
//!
//! `main` calls [`early()`] (detect the context; as a VM's PID 1 mount the basics), then the command line
//! dispatches `run` to [`run`], and [`finish`] ends the process. The steps of [`run`]:
//!
//! 1. report problems met by [`early()`] (a failed required mount fails the boot);
//! 2. remove a stale readiness file;
//! 3. as a VM's PID 1, load the plan's kernel modules (in a container the utility VM has done it);
//! 4. release the disk keys ([`keys`]: one attestation per authority) and open every filesystem concurrently
//!    ([`filesystems`]: blob, LUKS2, NBD, dm-crypt, mount, publish); with `[skr]`, the SKR API
//!    ([`crate::skr`]) serves from the moment the keys are set up, so it is up when readiness is written;
//! 5. open the supervisor (signals), write the readiness file, start the health reads ([`health`]);
//! 6. supervise the application, or wait for `SIGTERM` with none; meanwhile a dead filesystem is re-opened
//!    off the supervisor's thread, or marked down ([`revive`]);
//! 7. teardown: stop the SKR API, remount read-write filesystems read-only and flush them to the blob service, end leftover
//!    processes, then unpublish, unmount, remove the dm devices and disconnect NBD in reverse order, remove the
//!    readiness file, and return the exit code.
//!
//! Fail closed: any error before readiness is logged once, as `step: cause; fix: ...`, whatever was set up
//! is undone, and the process ends with the documented code ([`crate::exit`]).

pub mod early;
pub mod filesystems;
pub mod health;
pub mod keys;
pub mod modules;
pub mod process;
pub mod revive;
mod sys;

use crate::exit;
use crate::manifest::Plan;
use crate::supervise::{self, Supervisor};
use std::io::Write;

/// Which PID-1 situation we are in. Detected at run time, never compiled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// Not PID 1 (a tool invocation, or `run` under another init).
    Process,
    /// PID 1 of a container: the runtime mounted /proc, /sys, /dev.
    Container,
    /// PID 1 of a VM: nothing mounted; we mount, load modules and power off at the end.
    Vm,
}

/// Detect the context and, as PID 1 of a VM, mount what the rest needs and point fds 0-2 at the console.
/// Runs before logging is set up; problems are recorded and reported by [`run`].
pub fn early() -> Context {
    let ctx = early::detect();
    if ctx == Context::Vm {
        early::setup_vm();
    }
    ctx
}

/// A boot step that failed before readiness. Its own text names the step (and a fix where the step knows
/// one); the cause is its `source()`, and [`BootError::line`] prints the whole chain once.
#[derive(Debug, thiserror::Error)]
enum BootError {
    #[error("early setup: {0}; fix: check the kernel config (proc, sysfs, devtmpfs, tmpfs)")]
    Early(String),
    /// The modules error carries its own fix where there is one.
    #[error("kernel modules")]
    Modules(#[source] modules::Error),
    #[error(transparent)]
    Filesystem(filesystems::StepError),
    #[error("attestation")]
    Attestation(#[source] Box<keys::Error>),
    #[error("readiness file {}; fix: make its directory writable or change readiness_file", .0.display())]
    Readiness(std::path::PathBuf, #[source] std::io::Error),
    #[error("readiness file {}; fix: make its directory writable or change readiness_file", .0.display())]
    ReadinessWrite(std::path::PathBuf, #[source] crate::atomic::Error),
    /// A released secret for the application (`secret[i] <path>: ...`), or its tmpfs.
    #[error(transparent)]
    Secrets(crate::secrets::Error),
    #[error(transparent)]
    Skr(crate::skr::Error),
    #[error("signals")]
    Signals(#[source] supervise::Error),
    /// The volume of a mount point does not propagate mounts (`shared_volume = "required"`); the finding's
    /// message carries the cause and the fix.
    #[error("shared volume: {0}")]
    SharedVolume(String),
}

impl BootError {
    /// `step: cause: ...[; fix: ...]` on one line.
    fn line(&self) -> String {
        crate::errors::chain(self)
    }
}

/// Run the plan: boot steps, then supervise. Returns the exit code.
///
/// A panic (a bug) anywhere below is caught and becomes [`exit::INTERNAL`], so that [`finish`] still ends the
/// process deliberately: as a VM's PID 1, an unwinding `main` would exit and panic the kernel.
pub fn run(ctx: Context, plan: Plan) -> i32 {
    let readiness_file = plan.readiness_file.clone();
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_plan(ctx, plan))).unwrap_or_else(
        |_| {
            log::error!(
                "internal error (a bug): a panic during boot or supervision; see the message above"
            );
            let _ = crate::ready::clear(&readiness_file);
            exit::INTERNAL
        },
    )
}

fn run_plan(ctx: Context, plan: Plan) -> i32 {
    let plan = std::sync::Arc::new(plan);
    let (mut sup, opened, states, secrets, skr, keys) = match boot(ctx, &plan) {
        Ok(b) => b,
        Err(e) => {
            log::error!("boot failed: {}", e.line());
            // Nothing is mounted yet, so there is nothing else to undo; make sure no readiness claim stays.
            let _ = crate::ready::clear(&plan.readiness_file);
            return exit::BOOT_FAILED;
        }
    };
    log::info!("ready ({})", plan.readiness_file.display());
    crate::notify::notify("READY=1");
    let listing = secrets
        .as_ref()
        .map_or_else(Vec::new, |s| s.listing().to_vec());
    let fleet = revive::Fleet::new(plan.clone(), keys, opened, states, listing);
    let monitor = if fleet.is_empty() {
        None
    } else {
        health::Monitor::start(plan.supervise.health_interval, fleet.clone())
            .map_err(|e| log::warn!("health reads: cannot start: {e}"))
            .ok()
    };
    // A `stay-down` filesystem whose serving side gave up ends supervision with exit 4, as a failing
    // application does (with `restart` it is re-opened instead).
    let outcome = sup.run_with(plan.app.as_ref(), &mut || {
        if plan.test_mode {
            test_faults(&fleet);
        }
        fleet.gave_up()
    });
    log::debug!("supervision ended: {outcome:?}");
    crate::notify::notify("STOPPING=1");
    if let Some(s) = skr {
        s.stop();
    }
    if let Some(m) = monitor {
        m.stop();
    }
    let opened = fleet.stop();
    // Read-write filesystems: remount read-only and flush to the blob service while everything is still
    // running; then end leftover processes; then unmount and detach (nothing is dirty by then).
    // Every filesystem is quiesced (no short circuit), then the verdict.
    let quiesced: Vec<bool> = opened.iter().map(filesystems::Opened::quiesce).collect();
    let flushed = quiesced.iter().all(|q| *q);
    if flushed {
        // Everything that had to reach the blob service has: a request still retrying now (a readahead)
        // must not hold up the teardown.
        crate::http::stop_retrying();
    }
    sup.sweep_leftovers();
    let mut closed = teardown(&plan, opened);
    // The secrets after the filesystems: wiped, then their tmpfs unmounted.
    if let Some(s) = secrets {
        closed &= s.close(plan.supervise.grace_period);
    }
    if outcome.code == exit::OK && !closed {
        return exit::BOOT_FAILED;
    }
    outcome.code
}

/// Test mode only: the file an application creates to have encfs-init sever the serving side of every
/// filesystem's NBD connection (FUSE: crash a serving thread holding a request), as a crash would;
/// encfs-init removes it once done.
pub const TEST_SEVER_NBD: &str = "/run/encfs-init/test-sever-nbd";

fn test_faults(fleet: &revive::Fleet) {
    let trigger = std::path::Path::new(TEST_SEVER_NBD);
    if !trigger.exists() {
        return;
    }
    fleet.for_each(|o| {
        if o.sever_nbd() {
            log::warn!(
                "filesystem[{}]: TEST MODE: severed the {} serving side of {} on request",
                o.index,
                o.transport.as_str().to_uppercase(),
                o.block_device.display()
            );
        }
    });
    if let Err(e) = std::fs::remove_file(trigger) {
        log::warn!("TEST MODE: remove {TEST_SEVER_NBD}: {e}");
    }
}

/// What a successful boot hands to supervision: the supervisor, the open filesystems, what the readiness
/// file said about each, the released secrets, the SKR API and the attestation set-up (for re-opens).
type Booted = (
    Supervisor,
    Vec<filesystems::Opened>,
    Vec<crate::ready::FsState>,
    Option<crate::secrets::Secrets>,
    Option<crate::skr::Server>,
    Option<std::sync::Arc<keys::Keys>>,
);

/// Steps 1-5. On success the readiness file exists and the supervisor is open.
fn boot(ctx: Context, plan: &std::sync::Arc<Plan>) -> Result<Booted, BootError> {
    log::info!("context: {ctx:?}");
    let mut fatal = None;
    for p in early::take_problems() {
        if p.required {
            fatal.get_or_insert(p.what);
        } else {
            log::warn!("early setup: {}", p.what);
        }
    }
    if let Some(what) = fatal {
        return Err(BootError::Early(what));
    }
    // The attestation's RSA key takes the longest of any single step; generate it while the modules load
    // and the rest of boot runs.
    if plan.releases_keys() {
        crate::keyrelease::jwk::RuntimeKey::prepare();
    }
    let ready = &plan.readiness_file;
    crate::ready::clear(ready).map_err(|e| BootError::Readiness(ready.clone(), e))?;
    check_shared_volume(ctx, plan)?;
    if !plan.kernel_modules.is_empty() {
        if ctx == Context::Vm {
            let n = modules::load(&plan.kernel_modules).map_err(BootError::Modules)?;
            log::info!(
                "kernel modules: {n} loaded ({} requested)",
                plan.kernel_modules.len()
            );
            // configfs may have been one of them.
            early::mount_configfs();
            for p in early::take_problems() {
                log::warn!("early setup: {}", p.what);
            }
        } else {
            log::info!(
                "kernel modules: skipped in context {ctx:?} (the host kernel provides them)"
            );
        }
    }
    // Every filesystem opens in a thread of its own (key release, blob, header, NBD, dm, mount). Opened
    // filesystems close themselves when dropped, so when one fails the others are undone: nothing stays
    // mounted or mapped.
    let keys = keys::Keys::for_plan(plan)
        .map_err(|e| BootError::Attestation(Box::new(e)))?
        .map(std::sync::Arc::new);
    // The SKR API (issue 16) serves from now on (stopped when dropped: a later failure stops it).
    let skr = match (&plan.skr, &keys) {
        (Some(sp), Some(k)) => {
            let backend = keys::SkrBackend {
                keys: k.clone(),
                plan: plan.clone(),
            };
            Some(
                crate::skr::Server::start(sp, std::sync::Arc::new(backend))
                    .map_err(BootError::Skr)?,
            )
        }
        _ => None,
    };
    // The secrets are released and written in a thread of their own beside the filesystems' (the
    // attestation is shared); dropped, they are wiped and unmounted.
    let (results, secrets) = std::thread::scope(|s| {
        let secrets = plan.secrets.as_ref().map(|sp| {
            let keys = keys.as_deref();
            std::thread::Builder::new()
                .name("open-secrets".into())
                .spawn_scoped(s, move || crate::secrets::open(sp, plan, keys))
        });
        let results: Vec<Result<filesystems::Opened, filesystems::StepError>> = {
            let handles: Vec<_> = plan
                .filesystems
                .iter()
                .map(|fs| {
                    let keys = keys.as_deref();
                    std::thread::Builder::new()
                        .name(format!("open-fs{}", fs.index))
                        .spawn_scoped(s, move || filesystems::open(fs, plan, keys))
                })
                .collect();
            handles
                .into_iter()
                .zip(&plan.filesystems)
                .map(|(h, fs)| match h {
                    Ok(h) => h.join().unwrap_or_else(|p| {
                        Err(filesystems::StepError::panicked(
                            fs,
                            &format!("its worker panicked: {}", crate::errors::panic_message(&*p)),
                        ))
                    }),
                    Err(e) => Err(filesystems::StepError::panicked(
                        fs,
                        &format!("cannot start a thread: {e}"),
                    )),
                })
                .collect()
        };
        let secrets = secrets.map(|h| match h {
            Ok(h) => h.join().unwrap_or_else(|p| {
                Err(crate::secrets::Error::Worker(format!(
                    "its worker panicked: {}",
                    crate::errors::panic_message(&*p)
                )))
            }),
            Err(e) => Err(crate::secrets::Error::Worker(format!(
                "cannot start a thread: {e}"
            ))),
        });
        (results, secrets)
    });
    let mut opened = Vec::new();
    let mut first_error = None;
    for r in results {
        match r {
            Ok(o) => {
                log::info!(
                    "filesystem[{}]: {} ready ({} -> {} -> {})",
                    o.index,
                    o.mount_point.display(),
                    o.block_device.display(),
                    o.dm_device.display(),
                    o.hidden.display()
                );
                opened.push(o);
            }
            Err(e) => {
                first_error.get_or_insert(BootError::Filesystem(e));
            }
        }
    }
    // A secret's failure is reported when no filesystem failed (those come first: they name their step).
    let secrets = match secrets.transpose() {
        Ok(s) => s,
        Err(e) => {
            first_error.get_or_insert(BootError::Secrets(e));
            None
        }
    };
    if let Some(e) = first_error {
        // Undo the filesystems that did open, newest first, then the secrets (wiped, unmounted).
        while let Some(o) = opened.pop() {
            drop(o);
        }
        drop(secrets);
        return Err(e);
    }
    let sup = Supervisor::new(supervise::Options {
        plan: plan.supervise,
        sweep: ctx != Context::Process,
        subreaper: ctx == Context::Process,
    })
    .map_err(BootError::Signals)?;
    let states: Vec<crate::ready::FsState> =
        opened.iter().map(filesystems::Opened::state).collect();
    let listing = secrets.as_ref().map_or(&[][..], |s| s.listing());
    crate::ready::mark_ready_with(ready, &states, listing)
        .map_err(|e| BootError::ReadinessWrite(ready.clone(), e))?;
    Ok((sup, opened, states, secrets, skr, keys))
}

/// Before anything is mapped: does the volume of every mount point propagate mounts to a sibling container
/// (see [`crate::propagation`])? Fails only with `shared_volume = "required"`; `auto` warns once.
fn check_shared_volume(ctx: Context, plan: &Plan) -> Result<(), BootError> {
    use crate::propagation::{self, Action};
    if !propagation::wanted(plan.shared_volume, plan.app.is_some(), ctx == Context::Vm) {
        log::debug!(
            "shared volume: not checked (shared_volume = \"{}\", application: {}, context {ctx:?})",
            plan.shared_volume.as_str(),
            if plan.app.is_some() { "ours" } else { "none" }
        );
        return Ok(());
    }
    let mount_points = plan.filesystems.iter().map(|f| f.mount_point.as_path());
    let secrets = plan.secrets.iter().map(|s| s.mount_point.as_path());
    for dir in volume_dirs(mount_points.chain(secrets)) {
        match propagation::decide(plan.shared_volume, &propagation::check(dir)) {
            Action::Skip => {}
            Action::Fine(m) => log::info!("shared volume: {m}"),
            Action::Warn(m) => {
                log::warn!("shared volume: {m} (shared_volume = \"auto\": going on)")
            }
            Action::Fail(m) => return Err(BootError::SharedVolume(m)),
        }
    }
    Ok(())
}

/// The directories the mount points are published in, each once (filesystems sharing a volume need not be
/// neighbours in the manifest), in order.
fn volume_dirs<'a>(
    mount_points: impl Iterator<Item = &'a std::path::Path>,
) -> Vec<&'a std::path::Path> {
    let mut dirs: Vec<&std::path::Path> =
        mount_points.filter_map(std::path::Path::parent).collect();
    dirs.sort();
    dirs.dedup();
    dirs
}

/// Step 7: undo what boot did, in reverse: the readiness file first (we are no longer ready), then every
/// filesystem (unpublish, unmount, dm remove, NBD detach with a final flush). Errors are logged; returns
/// whether everything closed cleanly.
fn teardown(plan: &Plan, opened: Vec<filesystems::Opened>) -> bool {
    if let Err(e) = crate::ready::clear(&plan.readiness_file) {
        log::warn!(
            "remove the readiness file {}: {e}",
            plan.readiness_file.display()
        );
    }
    let mut ok = true;
    for o in opened.into_iter().rev() {
        ok &= o.close(plan.supervise.grace_period).is_ok();
    }
    ok
}

/// End the process with `code`: exit, or as a VM's PID 1 print the verdict line and power off.
pub fn finish(ctx: Context, code: i32) -> ! {
    log::logger().flush();
    if ctx != Context::Vm {
        #[allow(clippy::exit)] // The one place the process ends (main calls us).
        std::process::exit(code)
    }
    // Everything written reaches the disks before the verdict line: after it only the kernel's power-off
    // remains (the VM rig relies on this to tell a hang of ours from one of the kernel's shutdown).
    nix::unistd::sync();
    // The VM rig matches this line exactly. Errors writing it cannot be reported anywhere else.
    let _ = writeln!(std::io::stderr(), "encfs-init: exit status {code}");
    let _ = std::io::stderr().flush();
    // Exiting as the VM's PID 1 would panic the kernel: power off instead, and never return.
    let Err(e) = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF);
    let _ = writeln!(std::io::stderr(), "encfs-init: power off failed: {e}");
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

#[cfg(test)]
mod tests {
    use super::volume_dirs;
    use std::path::Path;

    #[test]
    fn each_volume_is_checked_once_even_when_its_filesystems_are_not_neighbours() {
        let mps = ["/mnt/a/x", "/mnt/b/y", "/mnt/a/z"].map(Path::new);
        assert_eq!(
            volume_dirs(mps.into_iter()),
            [Path::new("/mnt/a"), Path::new("/mnt/b")]
        );
    }
}
