//! Boots a kernel + initramfs under QEMU and turns what happened into a verdict.
//!
//! The machine: q35, `-nodefaults`, **no NIC** (`-nic none`: every server a test needs runs inside the guest on
//! its own 127.0.0.1), a virtio RNG, the serial console on QEMU's stdout, PVH direct boot of the uncompressed
//! `vmlinux`. TCG unless the host has real VT-x/AMD-V *and* a KVM probe boot works (this project's machines
//! expose a software "PVM" `/dev/kvm` that cannot run a stock kernel). `VMTEST_ACCEL=kvm|tcg` forces a choice.
//!
//! The guest → rig protocol is one console line: the product, as PID 1 of a VM, prints
//! `encfs-init: exit status N` (possibly after a log prefix) and powers off, which ends QEMU with status 0
//! (`-no-reboot`). A rig script that runs no product (the kernel scenarios, the accelerator probe) prints its
//! own line, `vmtest: script exit status N`, so that a verdict is never put in the product's mouth;
//! `vmtest::evaluate` checks that each scenario's verdict came from the speaker it should. Anything else is a
//! failure with a reason:
//!
//! * **timeout**: QEMU still running at the deadline (it is killed);
//! * **panic**: the console shows `Kernel panic` (`panic=-1` + `-no-reboot` make a panic end QEMU at once);
//!   a panic *after* the verdict still fails: PID 1 must power off, not exit;
//! * **no verdict**: QEMU ended without the line;
//! * **qemu**: QEMU could not start or exited non-zero.
//!
//! The speaker syncs before its verdict line, so after it only the kernel's power-off remains. Some stable
//! kernels rarely hang there (device shutdown breaks the virtio queues; seen once in about 100 boots here,
//! on the Debian kernel): when the console stays silent for [`POWER_OFF_GRACE`] after a verdict line and QEMU
//! is still running, the rig stops QEMU and the verdict stands, with a note. A product that says its
//! power-off failed (`encfs-init: power off failed`) is a timeout all the same.
//!
//! Every console line is written to the scenario's log with its time since QEMU started.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::util::{on_path, show, Context, Result};

/// The product's verdict line; the status follows it.
pub const VERDICT: &str = "encfs-init: exit status ";

/// What the product prints when its power-off after the verdict failed.
pub const POWER_OFF_FAILED: &str = "encfs-init: power off failed";

/// A rig script's own verdict line (no product in the guest); the status follows it.
pub const SCRIPT_VERDICT: &str = "vmtest: script exit status ";

/// How long the console may stay silent after a verdict line before the rig stops a QEMU that did not
/// power off (a power-off takes well under a second, also under TCG).
pub const POWER_OFF_GRACE: Duration = Duration::from_secs(30);

/// How QEMU's run ended, as the rig saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// QEMU exited with this code (128 + the signal when a signal killed it).
    Exited(i32),
    /// Still running at the deadline: killed.
    Deadline,
    /// A verdict line, then [`POWER_OFF_GRACE`] of silence without a power-off: killed.
    SilentAfterVerdict,
}

/// Who printed a verdict line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speaker {
    /// The product ([`VERDICT`]).
    Product,
    /// A rig script ([`SCRIPT_VERDICT`]).
    Script,
}

impl Speaker {
    /// The line this speaker prints.
    pub fn line(self) -> &'static str {
        match self {
            Speaker::Product => VERDICT,
            Speaker::Script => SCRIPT_VERDICT,
        }
    }
}

/// How a boot failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The deadline passed.
    Timeout,
    /// The kernel panicked.
    Panic,
    /// QEMU ended without a verdict line.
    NoVerdict,
    /// QEMU failed.
    Qemu,
}

impl FailureKind {
    /// From its scenario.toml spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "timeout" => Some(Self::Timeout),
            "panic" => Some(Self::Panic),
            "no-verdict" => Some(Self::NoVerdict),
            _ => None,
        }
    }

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Panic => "kernel panic",
            Self::NoVerdict => "no verdict",
            Self::Qemu => "qemu error",
        }
    }
}

/// CPU virtualization to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// Binary translation; always works.
    Tcg,
    /// Hardware virtualization.
    Kvm,
}

/// One boot request.
#[derive(Debug)]
pub struct Boot {
    /// Uncompressed vmlinux (PVH) or bzImage.
    pub kernel: PathBuf,
    /// The initramfs.
    pub initrd: PathBuf,
    /// Extra kernel command line (after the rig's own).
    pub append: String,
    /// Arguments for /init (after `--`).
    pub init_args: Vec<String>,
    /// Wall-clock limit for the whole QEMU run.
    pub timeout: Duration,
    /// Guest MiB.
    pub memory_mib: u32,
    /// vCPUs.
    pub cpus: u32,
    /// Accelerator.
    pub accel: Accel,
    /// Full console log.
    pub log: PathBuf,
    /// A raw disk image attached as a virtio block device (`/dev/vda` in the guest).
    pub disk: Option<PathBuf>,
}

/// What came out of a boot.
#[derive(Debug)]
pub struct Outcome {
    /// Console lines (without timestamps).
    pub console: Vec<String>,
    /// `Ok(status)` from the verdict line, or why there is none.
    pub verdict: std::result::Result<i32, (FailureKind, String)>,
    /// QEMU's wall-clock run time.
    pub elapsed: Duration,
    /// When the first console line arrived: with `quiet`, about when `/init` started writing.
    pub first_output: Option<Duration>,
    /// What the rig did about this boot that the report should mention (such as running it again).
    pub notes: Vec<String>,
}

impl Outcome {
    /// The console lines that explain a failure: the last `n`, or for a panic the `n` ending just after the
    /// panic line (what follows it is a call trace).
    pub fn tail(&self, n: usize) -> &[String] {
        let end = match self.console.iter().position(|l| l.contains("Kernel panic")) {
            Some(p) => (p + 2).min(self.console.len()),
            None => self.console.len(),
        };
        &self.console[end.saturating_sub(n)..end]
    }
}

impl Boot {
    fn command(&self) -> Command {
        let mut c = Command::new("qemu-system-x86_64");
        c.args([
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-nic",
            "none",
            "-no-reboot",
        ]);
        c.args(["-machine", "q35", "-serial", "stdio", "-monitor", "none"]);
        c.args([
            "-m",
            &self.memory_mib.to_string(),
            "-smp",
            &self.cpus.to_string(),
        ]);
        match self.accel {
            Accel::Tcg => c.args(["-accel", "tcg", "-cpu", "max"]),
            Accel::Kvm => c.args(["-accel", "kvm", "-cpu", "host"]),
        };
        c.arg("-kernel")
            .arg(&self.kernel)
            .arg("-initrd")
            .arg(&self.initrd);
        c.args(["-device", "virtio-rng-pci"]);
        if let Some(d) = &self.disk {
            c.arg("-drive").arg(format!(
                "file={},format=raw,if=virtio,cache=unsafe",
                d.display()
            ));
        }
        let mut cmdline = String::from("console=ttyS0 quiet panic=-1 oops=panic");
        if !self.append.is_empty() {
            cmdline.push(' ');
            cmdline.push_str(&self.append);
        }
        if !self.init_args.is_empty() {
            cmdline.push_str(" -- ");
            cmdline.push_str(&self.init_args.join(" "));
        }
        c.arg("-append").arg(cmdline);
        c.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    /// Boot and wait (at most `timeout`); the log is written as lines arrive.
    pub fn run(&self) -> Result<Outcome> {
        let mut cmd = self.command();
        let mut log =
            File::create(&self.log).with_context(|| format!("creating {}", self.log.display()))?;
        writeln!(log, "# {}", show(&cmd)).context("writing log")?;
        let log = Arc::new(Mutex::new(log));
        let start = Instant::now();
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                return Ok(Outcome {
                    console: vec![],
                    verdict: Err((
                        FailureKind::Qemu,
                        format!("cannot start qemu-system-x86_64: {e}"),
                    )),
                    elapsed: start.elapsed(),
                    first_output: None,
                    notes: Vec::new(),
                })
            }
        };
        let since_verdict = Arc::new(Mutex::new(None));
        let out = spawn_reader(
            child.stdout.take(),
            "",
            start,
            log.clone(),
            Some(since_verdict.clone()),
        );
        let err = spawn_reader(child.stderr.take(), "qemu: ", start, log.clone(), None);
        let ended = wait_deadline(&mut child, self.timeout, POWER_OFF_GRACE, &since_verdict);
        let elapsed = start.elapsed();
        let (console, first_output) = out.join().unwrap_or_default();
        let (stderr, _) = err.join().unwrap_or_default();
        let verdict = judge(&console, &stderr, ended, self.timeout);
        let mut notes = Vec::new();
        if ended == Ended::SilentAfterVerdict && verdict.is_ok() {
            notes.push(format!(
                "no power-off within {} s of the verdict line, after which only the kernel's power-off remains (the speaker synced before it): QEMU stopped by the rig, the verdict stands",
                POWER_OFF_GRACE.as_secs()
            ));
        }
        if let Ok(mut l) = log.lock() {
            let v = match &verdict {
                Ok(s) => format!("status {s}"),
                Err((k, why)) => format!("{}: {why}", k.name()),
            };
            let _ = writeln!(l, "# verdict after {:.2} s: {v}", elapsed.as_secs_f64());
        }
        Ok(Outcome {
            console,
            verdict,
            elapsed,
            first_output,
            notes,
        })
    }
}

impl Boot {
    /// [`Boot::run`], run again up to `retries` times when QEMU itself aborted ([`emulator_aborted`]): that is
    /// the emulator's fault, not a verdict. Each rerun is named in the outcome's notes; every other failure
    /// stands as it is.
    pub fn run_retrying(&self, retries: usize) -> Result<Outcome> {
        retry_aborts(retries, || self.run())
    }
}

/// Call `run` until its outcome is not [`emulator_aborted`], at most `retries` extra times; the reruns are
/// named in the returned outcome's notes.
fn retry_aborts(retries: usize, mut run: impl FnMut() -> Result<Outcome>) -> Result<Outcome> {
    let mut notes = Vec::new();
    loop {
        let mut o = run()?;
        let fault = match &o.verdict {
            Err((_, why)) if emulator_aborted(&o.verdict) => Some(format!("QEMU aborted: {why}")),
            Err((FailureKind::Panic, why)) if stale_int3(&o.console) => Some(format!(
                "the guest trapped on an int3 its code no longer holds (TCG ran a stale translation of kernel code being patched): {why}"
            )),
            _ => None,
        };
        match fault {
            Some(why) if notes.len() < retries => notes.push(format!("run again after {why}")),
            _ => {
                o.notes.extend(notes);
                return Ok(o);
            }
        }
    }
}

/// How many times the rig runs one boot again after an emulator fault (QEMU aborted, or [`stale_int3`]).
pub const EMULATOR_RETRIES: usize = 2;

/// Wait for QEMU until the deadline, or until the console has been silent for `grace` since a verdict line
/// (`since_verdict`: when the last line came, once a verdict line has come; the deadline then moves out by
/// `grace`); kill it then.
fn wait_deadline(
    child: &mut Child,
    timeout: Duration,
    grace: Duration,
    since_verdict: &Mutex<Option<Instant>>,
) -> Ended {
    let deadline = Instant::now() + timeout;
    let ended = loop {
        match child.try_wait() {
            // Killed by a signal (QEMU aborting on an assertion): report it shell-style, 128 + signal.
            Ok(Some(status)) => {
                return Ended::Exited(
                    status
                        .code()
                        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
                )
            }
            Ok(None) => {
                // A verdict that came just before the deadline still gets its grace.
                match since_verdict.lock().ok().and_then(|t| *t) {
                    Some(t) if t.elapsed() >= grace => break Ended::SilentAfterVerdict,
                    Some(_) if Instant::now() >= deadline + grace => break Ended::Deadline,
                    None if Instant::now() >= deadline => break Ended::Deadline,
                    _ => thread::sleep(Duration::from_millis(20)),
                }
            }
            Err(_) => break Ended::Deadline,
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    ended
}

/// Read lines from a pipe into the log (timestamped) and return them with the arrival time of the first.
/// With `since_verdict`, once a verdict line has come, every line's arrival time is kept there.
fn spawn_reader(
    pipe: Option<impl Read + Send + 'static>,
    prefix: &'static str,
    start: Instant,
    log: Arc<Mutex<File>>,
    since_verdict: Option<Arc<Mutex<Option<Instant>>>>,
) -> thread::JoinHandle<(Vec<String>, Option<Duration>)> {
    thread::spawn(move || {
        let mut lines = Vec::new();
        let mut first = None;
        let Some(pipe) = pipe else {
            return (lines, first);
        };
        let mut r = BufReader::new(pipe);
        let mut buf = Vec::new();
        while r.read_until(b'\n', &mut buf).is_ok_and(|n| n > 0) {
            let line = String::from_utf8_lossy(&buf)
                .trim_end_matches(['\n', '\r'])
                .to_string();
            if let Ok(mut l) = log.lock() {
                let _ = writeln!(l, "[{:7.3}] {prefix}{line}", start.elapsed().as_secs_f64());
            }
            first.get_or_insert_with(|| start.elapsed());
            if let Some(Ok(mut t)) = since_verdict.as_ref().map(|m| m.lock()) {
                if t.is_some() || last_verdict(std::slice::from_ref(&line)).is_some() {
                    *t = Some(Instant::now());
                }
            }
            lines.push(line);
            buf.clear();
        }
        (lines, first)
    })
}

/// The status of the last verdict line of either speaker, if any: its index and status.
pub fn verdict_status(console: &[String]) -> Option<(usize, i32)> {
    last_verdict(console).map(|(i, s, _)| (i, s))
}

/// The last verdict line of either speaker: its index, status and speaker.
pub fn last_verdict(console: &[String]) -> Option<(usize, i32, Speaker)> {
    console.iter().enumerate().rev().find_map(|(i, l)| {
        [Speaker::Product, Speaker::Script]
            .into_iter()
            .find_map(|who| {
                let prefix = who.line();
                let rest = &l[l.find(prefix)? + prefix.len()..];
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                digits.parse().ok().map(|s| (i, s, who))
            })
    })
}

/// Classify a finished (or killed) run; see the module docs.
pub fn judge(
    console: &[String],
    stderr: &[String],
    ended: Ended,
    timeout: Duration,
) -> std::result::Result<i32, (FailureKind, String)> {
    let panic = console.iter().position(|l| l.contains("Kernel panic"));
    let verdict = verdict_status(console);
    if let Some(p) = panic {
        let after = verdict.map_or(String::new(), |(i, s)| {
            if i < p {
                format!(" after verdict status {s} (PID 1 must power off, not exit)")
            } else {
                String::new()
            }
        });
        return Err((FailureKind::Panic, format!("{}{after}", console[p].trim())));
    }
    match ended {
        Ended::Deadline => Err((
            FailureKind::Timeout,
            format!("no power-off within {} s", timeout.as_secs()),
        )),
        Ended::SilentAfterVerdict => {
            let failed = console.iter().find(|l| l.contains(POWER_OFF_FAILED));
            match (failed, verdict) {
                (None, Some((_, s))) => Ok(s),
                (Some(l), _) => Err((
                    FailureKind::Timeout,
                    format!("after the verdict: {}", l.trim()),
                )),
                (None, None) => Err((
                    FailureKind::Timeout,
                    format!("no power-off within {} s", POWER_OFF_GRACE.as_secs()),
                )),
            }
        }
        Ended::Exited(0) => match verdict {
            Some((_, s)) => Ok(s),
            None => Err((
                FailureKind::NoVerdict,
                format!(
                    "guest powered off without a `{}N` or `{}N` line",
                    VERDICT, SCRIPT_VERDICT
                ),
            )),
        },
        Ended::Exited(code) => {
            let why = stderr.last().map_or(String::new(), |l| format!(": {l}"));
            Err((FailureKind::Qemu, format!("qemu exited with {code}{why}")))
        }
    }
}

/// QEMU's own crash, not the guest's doing: it died of SIGABRT (an internal assertion, such as the multi-threaded
/// TCG race in `iotlb_to_section`, QEMU issue 1921) before any verdict. Such a boot says nothing about the
/// product and may be run again.
pub fn emulator_aborted(verdict: &std::result::Result<i32, (FailureKind, String)>) -> bool {
    matches!(verdict, Err((FailureKind::Qemu, why)) if why.starts_with("qemu exited with 134"))
}

/// An emulator fault seen from inside the guest: a kernel oops on `int3` whose code dump shows no `int3` (`cc`)
/// just before the trapping address. The kernel patches its own code live (jump labels, static calls) by
/// writing an `int3` first and taking it out again; under multi-threaded TCG another vCPU may still run a
/// translation made while the `int3` was there, and trap on an instruction that no longer exists. Seen once
/// in CI (`Oops: int3` in `sched_clock_cpu`, during the kernel's own initcalls, before `/init`). A real
/// `int3` shows `cc` before the marked byte.
pub fn stale_int3(console: &[String]) -> bool {
    // The first oops, and the one the panic followed, must be the int3.
    let Some(oops) = console.iter().position(|l| l.contains("Oops:")) else {
        return false;
    };
    let panic = console.iter().position(|l| l.contains("Kernel panic"));
    if !console[oops].contains("Oops: int3") || panic.is_some_and(|p| p < oops) {
        return false;
    }
    let Some(code) = console[oops..].iter().find_map(|l| l.split_once("Code:")) else {
        return false;
    };
    let bytes: Vec<&str> = code.1.split_whitespace().collect();
    match bytes.iter().position(|b| b.starts_with('<')) {
        Some(at) if at > 0 => !bytes[at - 1].eq_ignore_ascii_case("cc"),
        _ => false,
    }
}

/// TCG, unless `VMTEST_ACCEL` says otherwise or the host has VT-x/AMD-V and `probe` (a short boot that must
/// succeed) works under KVM.
pub fn pick_accel(probe: impl FnOnce(Accel) -> bool) -> (Accel, String) {
    match std::env::var("VMTEST_ACCEL").as_deref() {
        Ok("kvm") => return (Accel::Kvm, "kvm (VMTEST_ACCEL)".into()),
        Ok("tcg") => return (Accel::Tcg, "tcg (VMTEST_ACCEL)".into()),
        _ => {}
    }
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let hw = cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"));
    let kvm_rw = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    if !(hw && kvm_rw) {
        return (Accel::Tcg, "tcg (no vmx/svm or no usable /dev/kvm)".into());
    }
    if probe(Accel::Kvm) {
        (Accel::Kvm, "kvm (probe boot ok)".into())
    } else {
        (Accel::Tcg, "tcg (kvm probe boot failed)".into())
    }
}

/// Whether QEMU is installed at all.
pub fn available() -> bool {
    on_path("qemu-system-x86_64")
}

/// Log path helper: `<dir>/<name>.log`.
pub fn log_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.log"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }
    const T: Duration = Duration::from_secs(5);

    #[test]
    fn verdict_line_with_prefix() {
        let c = lines(&[
            "x",
            "[ 1.2 INFO init] encfs-init: exit status 137",
            "reboot: Power down",
        ]);
        assert_eq!(judge(&c, &[], Ended::Exited(0), T), Ok(137));
    }

    #[test]
    fn failures_are_classified() {
        let c = lines(&["Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100"]);
        assert_eq!(
            judge(&c, &[], Ended::Exited(0), T).unwrap_err().0,
            FailureKind::Panic
        );
        assert_eq!(
            judge(&[], &[], Ended::Deadline, T).unwrap_err().0,
            FailureKind::Timeout
        );
        assert_eq!(
            judge(&lines(&["hi"]), &[], Ended::Exited(0), T)
                .unwrap_err()
                .0,
            FailureKind::NoVerdict
        );
        assert_eq!(
            judge(&[], &lines(&["boom"]), Ended::Exited(1), T)
                .unwrap_err()
                .0,
            FailureKind::Qemu
        );
        let exited = lines(&[
            "encfs-init: exit status 0",
            "Kernel panic - not syncing: Attempted to kill init!",
        ]);
        let (k, why) = judge(&exited, &[], Ended::Exited(0), T).unwrap_err();
        assert_eq!(k, FailureKind::Panic);
        assert!(why.contains("must power off"));
    }

    #[test]
    fn only_an_abort_of_qemu_itself_counts_as_emulator_fault() {
        let assertion =
            lines(&["qemu-system-x86_64: physmem.c:2678: iotlb_to_section: Assertion failed."]);
        assert!(emulator_aborted(&judge(
            &[],
            &assertion,
            Ended::Exited(134),
            T
        )));
        assert!(!emulator_aborted(&judge(
            &[],
            &assertion,
            Ended::Exited(1),
            T
        )));
        assert!(!emulator_aborted(&judge(&[], &[], Ended::Deadline, T)));
        let panicked = lines(&["Kernel panic - not syncing: Attempted to kill init!"]);
        assert!(!emulator_aborted(&judge(
            &panicked,
            &[],
            Ended::Exited(134),
            T
        )));
        let fine = lines(&["encfs-init: exit status 0"]);
        assert!(!emulator_aborted(&judge(&fine, &[], Ended::Exited(0), T)));
    }

    fn outcome_of(stderr: &[&str], exit: Ended) -> Outcome {
        let console = lines(&["encfs-init: exit status 0"]);
        let verdict = if exit == Ended::Exited(0) {
            judge(&console, &[], exit, T)
        } else {
            judge(&[], &lines(stderr), exit, T)
        };
        Outcome {
            console,
            verdict,
            elapsed: Duration::ZERO,
            first_output: None,
            notes: Vec::new(),
        }
    }

    #[test]
    fn aborts_are_rerun_a_bounded_number_of_times_and_named() {
        let abort = ["qemu: iotlb_to_section: Assertion failed."];
        // Two aborts, then a clean boot: the clean boot is the result, with both reruns noted.
        let mut runs = 0;
        let o = retry_aborts(2, || {
            runs += 1;
            Ok(outcome_of(
                &abort,
                if runs <= 2 {
                    Ended::Exited(134)
                } else {
                    Ended::Exited(0)
                },
            ))
        })
        .unwrap();
        assert_eq!((runs, o.verdict.clone()), (3, Ok(0)));
        assert_eq!(o.notes.len(), 2);
        assert!(o.notes[0].contains("iotlb_to_section"));
        // Aborting every time: the last abort stands as the failure.
        let mut runs = 0;
        let o = retry_aborts(2, || {
            runs += 1;
            Ok(outcome_of(&abort, Ended::Exited(134)))
        })
        .unwrap();
        assert_eq!(runs, 3);
        assert!(emulator_aborted(&o.verdict));
        // Any other failure is not run again.
        let mut runs = 0;
        let o = retry_aborts(2, || {
            runs += 1;
            Ok(outcome_of(&["boom"], Ended::Exited(1)))
        })
        .unwrap();
        assert_eq!((runs, o.notes.len()), (1, 0));
    }

    #[test]
    fn last_verdict_wins_and_needs_digits() {
        let c = lines(&[
            "encfs-init: exit status 1",
            "encfs-init: exit status 2",
            "encfs-init: exit status x",
        ]);
        assert_eq!(verdict_status(&c), Some((1, 2)));
    }

    #[test]
    fn a_script_verdict_is_told_apart_from_the_products() {
        let c = lines(&["encfs-init: exit status 1", "vmtest: script exit status 0"]);
        assert_eq!(last_verdict(&c), Some((1, 0, Speaker::Script)));
        let c = lines(&[
            "vmtest: script exit status 3",
            "[ 0.1 INFO] encfs-init: exit status 2",
        ]);
        assert_eq!(last_verdict(&c), Some((1, 2, Speaker::Product)));
        assert_eq!(judge(&c, &[], Ended::Exited(0), T), Ok(2));
    }

    #[test]
    fn a_verdict_stands_when_the_power_off_hangs_unless_the_product_said_it_failed() {
        let c = lines(&["encfs-init: exit status 3"]);
        assert_eq!(judge(&c, &[], Ended::SilentAfterVerdict, T), Ok(3));
        let c = lines(&[
            "encfs-init: exit status 0",
            "encfs-init: power off failed: EPERM: Operation not permitted",
        ]);
        let (k, why) = judge(&c, &[], Ended::SilentAfterVerdict, T).unwrap_err();
        assert_eq!(k, FailureKind::Timeout);
        assert!(why.contains("power off failed"), "{why}");
        // A panic during the power-off is still a panic.
        let c = lines(&[
            "vmtest: script exit status 0",
            "Kernel panic - not syncing: x",
        ]);
        assert_eq!(
            judge(&c, &[], Ended::SilentAfterVerdict, T).unwrap_err().0,
            FailureKind::Panic
        );
    }

    /// Run `script` as the "guest" and wait as `Boot::run` does, with a grace of 2 s and a deadline of 20 s.
    fn wait_for_script(script: &str) -> (Ended, Duration) {
        let dir = std::env::temp_dir().join(format!("xtask-grace-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = Arc::new(Mutex::new(File::create(dir.join("log")).unwrap()));
        let mut child = Command::new("sh")
            .args(["-c", script])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let since = Arc::new(Mutex::new(None));
        let start = Instant::now();
        let out = spawn_reader(child.stdout.take(), "", start, log, Some(since.clone()));
        let ended = wait_deadline(
            &mut child,
            Duration::from_secs(20),
            Duration::from_secs(2),
            &since,
        );
        let took = start.elapsed();
        let _ = out.join();
        let _ = std::fs::remove_dir_all(&dir);
        (ended, took)
    }

    #[test]
    fn silence_after_a_verdict_ends_the_wait_but_talk_after_it_does_not() {
        // Silent after the verdict: stopped about a grace after it, long before the deadline.
        let (ended, took) = wait_for_script("echo 'encfs-init: exit status 3'; exec sleep 60");
        assert_eq!(ended, Ended::SilentAfterVerdict);
        assert!(took < Duration::from_secs(10), "{took:?}");
        // Still talking after a verdict line (a line every 0.2 s, for longer than the grace): not stopped;
        // it exits itself.
        let (ended, took) = wait_for_script(
            "echo 'vmtest: script exit status 0'; for i in $(seq 15); do sleep 0.2; echo more; done; exit 0",
        );
        assert_eq!(ended, Ended::Exited(0));
        assert!(took >= Duration::from_secs(3), "{took:?}");
        // Silent for longer than the grace, but without a verdict: not stopped; it exits itself.
        let (ended, took) = wait_for_script("echo starting; exec sleep 5");
        assert_eq!(ended, Ended::Exited(0));
        assert!(took >= Duration::from_secs(5), "{took:?}");
    }

    #[test]
    fn a_trap_on_an_int3_that_is_gone_is_the_emulators_and_is_run_again() {
        // stop 24's CI, verity-seal: the int3 at sched_clock_cpu+8 had already been patched back to `66 90`.
        let stale = lines(&[
            "[    2.438175] Oops: int3: 0000 [#1] PREEMPT SMP NOPTI",
            "[    2.438985] RIP: 0010:sched_clock_cpu+0x9/0x190",
            "[    2.439472] Code: 90 90 f3 0f 1e fa 41 54 55 53 66 <90> e8 31 03 f1 ff 48 03 05",
            "[    2.443888] Kernel panic - not syncing: Fatal exception in interrupt",
        ]);
        assert!(stale_int3(&stale));
        let mut real = stale.clone();
        real[2] = "[    2.439472] Code: 90 90 f3 0f 1e fa 41 54 55 53 cc <90> e8 31 03".into();
        assert!(!stale_int3(&real));
        let other = lines(&[
            "Oops: general protection fault",
            "Code: 66 <90> e8",
            "Kernel panic",
        ]);
        assert!(!stale_int3(&other));
        // Another panic first (the int3 oops came after it): not this fault.
        let mut later = lines(&["Kernel panic - not syncing: Attempted to kill init!"]);
        later.extend(stale.clone());
        assert!(!stale_int3(&later));
        // Run again (and noted) when it is stale, at most `retries` times; a real int3 stands.
        let panicked = |console: &[String]| Outcome {
            verdict: judge(console, &[], Ended::Exited(0), T),
            console: console.to_vec(),
            elapsed: Duration::ZERO,
            first_output: None,
            notes: Vec::new(),
        };
        let mut runs = 0;
        let o = retry_aborts(2, || {
            runs += 1;
            Ok(if runs == 1 {
                panicked(&stale)
            } else {
                outcome_of(&[], Ended::Exited(0))
            })
        })
        .unwrap();
        assert_eq!((runs, o.verdict.clone()), (2, Ok(0)));
        assert!(o.notes[0].contains("stale translation"), "{:?}", o.notes);
        let mut runs = 0;
        let o = retry_aborts(2, || {
            runs += 1;
            Ok(panicked(&real))
        })
        .unwrap();
        assert_eq!((runs, o.verdict.unwrap_err().0), (1, FailureKind::Panic));
    }
}
