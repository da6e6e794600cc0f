//! `cargo xtask vmtest`: set up the host, build the product, build one initramfs per scenario, boot each under
//! QEMU and report.
//!
//! Output contract (CI parses it): one line per scenario, `PASS <name> (...)` or `FAIL <name>: <reason> (...)`,
//! a failing scenario's last console lines indented under it, and as the very last line
//! `vmtest: <N> passed, <M> failed`. The exit status is non-zero when anything failed. Full console logs stay in
//! `.cache/vm/logs/<name>.log` (timestamped, with the QEMU command line and the verdict); images are built in
//! `.cache/vm/work/<pid>/<name>/` and deleted unless `--keep`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{mpsc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::initramfs::{self, Common, ModuleIndex};
use crate::kernel::{self, Flavor, Kernel};
use crate::qemu::{self, Accel, Boot, Outcome};
use crate::scenario::{self, Expect, Scenario};
use crate::setup::{self, Apt};
use crate::util::{bail, secs, show, Result};

/// Console lines shown under a failure.
const TAIL_LINES: usize = 40;
/// The product's static binary, relative to the repository root.
const ENCFS_INIT: &str = "target/x86_64-unknown-linux-musl/release/encfs-init";

/// Options of `vmtest`.
#[derive(Debug, Default)]
pub struct Options {
    /// Only list scenarios.
    pub list: bool,
    /// Keep the per-scenario images.
    pub keep: bool,
    /// Boots run at once.
    pub jobs: usize,
    /// Look for a newer kernel package.
    pub refresh: bool,
    /// Name patterns (empty: all).
    pub patterns: Vec<String>,
}

/// Repository layout.
#[derive(Debug)]
pub struct Paths {
    /// The workspace root.
    pub root: PathBuf,
    /// `.cache/vm`.
    pub cache: PathBuf,
}

impl Paths {
    /// From xtask's own manifest directory.
    pub fn discover() -> Self {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let cache = root.join(".cache/vm");
        Paths { root, cache }
    }
}

/// Install packages and fetch the kernel, printing how long it took.
pub fn setup(paths: &Paths, refresh: bool) -> Result<Kernel> {
    let t = Instant::now();
    fs::create_dir_all(&paths.cache)
        .map_err(|e| crate::util::Error::msg(format!("creating cache: {e}")))?;
    let apt = Apt::new(&paths.cache);
    let installed = setup::ensure_packages(&apt, &paths.cache.join("apt-install.log"))?;
    let t_pkg = t.elapsed();
    let k = kernel::ensure(&paths.cache, &apt, refresh)?;
    let pkgs = if installed.is_empty() {
        "present".to_string()
    } else {
        format!("installed {}", installed.join(" "))
    };
    eprintln!(
        "vmtest: setup {} (packages {pkgs} in {}; kernel {} in {})",
        secs(t.elapsed()),
        secs(t_pkg),
        k.release,
        secs(t.elapsed() - t_pkg)
    );
    Ok(k)
}

/// Run `vmtest`; `Ok(false)` when a scenario failed.
pub fn run(paths: &Paths, opts: &Options) -> Result<bool> {
    let t_all = Instant::now();
    let all = scenario::load_all(&paths.root.join("tests/vm"))?;
    let selected = scenario::select(all, &opts.patterns)?;
    if opts.list {
        for s in &selected {
            let kernel = match s.kernel {
                Flavor::Debian => String::new(),
                k => format!("[{}] ", k.name()),
            };
            println!("{:<22} {kernel}{}", s.name, s.description);
        }
        return Ok(true);
    }
    let kernel = setup(paths, opts.refresh)?;
    crate::tasks::ensure_musl_target()?;
    if !qemu::available() {
        bail!("qemu-system-x86_64 is not installed");
    }

    let mut build_error = None;
    let mut binary = None;
    if selected.iter().any(Scenario::needs_encfs_init) {
        let t = Instant::now();
        match build_encfs_init(&paths.root) {
            Ok(p) => {
                eprintln!("vmtest: built encfs-init in {}", secs(t.elapsed()));
                binary = Some(p);
            }
            Err(e) => {
                eprintln!("vmtest: {e}");
                build_error = Some("encfs-init did not build (see above)".to_string());
            }
        }
    }
    let mut selected = selected;
    let wanted: Vec<String> = {
        let mut v: Vec<String> = selected
            .iter()
            .flat_map(|s| s.cargo_tests.clone())
            .collect();
        v.sort();
        v.dedup();
        v
    };
    if !wanted.is_empty() && build_error.is_none() {
        let t = Instant::now();
        match build_cargo_tests(&paths.root, &wanted) {
            Ok(built) => {
                eprintln!(
                    "vmtest: built test binaries {wanted:?} in {}",
                    secs(t.elapsed())
                );
                for s in &mut selected {
                    for name in &s.cargo_tests {
                        if let Some((_, exe)) = built.iter().find(|(n, _)| n == name) {
                            s.files.push((exe.clone(), format!("/tests/{name}")));
                        }
                    }
                }
            }
            Err(e) => {
                eprintln!("vmtest: {e}");
                build_error = Some("the test binaries did not build (see above)".to_string());
            }
        }
    }
    let common = Common::load(
        binary.as_deref(),
        Some(&paths.root.join("tests/vm/common/lib.sh")),
    )?;
    // Every kernel the selected scenarios boot (the Debian one is also the accelerator probe's).
    let mut kernels = vec![(
        Flavor::Debian,
        ModuleIndex::load(&kernel, &paths.cache)?,
        kernel,
    )];
    for flavor in Flavor::ALL.into_iter().skip(1) {
        if selected.iter().any(|s| s.kernel == flavor) {
            let t = Instant::now();
            let apt = Apt::new(&paths.cache);
            let k = kernel::ensure_flavor(&paths.root, &paths.cache, &apt, flavor)?;
            eprintln!(
                "vmtest: kernel {} ({}) ready in {}",
                flavor.name(),
                k.release,
                secs(t.elapsed())
            );
            kernels.push((flavor, ModuleIndex::load(&k, &paths.cache)?, k));
        }
    }
    let logs = paths.cache.join("logs");
    // Per run, so two runs (two developers, or CI and a developer) in one checkout do not share images.
    let work = paths
        .cache
        .join("work")
        .join(std::process::id().to_string());
    for d in [&logs, &work] {
        fs::create_dir_all(d)
            .map_err(|e| crate::util::Error::msg(format!("creating {}: {e}", d.display())))?;
    }
    let ctx = Ctx {
        kernels: &kernels,
        common: &common,
        logs,
        work,
        keep: opts.keep,
        accel: Accel::Tcg,
        root: paths.root.clone(),
    };
    let (accel, why) = qemu::pick_accel(|a| probe(&ctx, a));
    let ctx = Ctx { accel, ..ctx };
    let jobs = opts.jobs.clamp(1, selected.len().max(1));
    eprintln!(
        "vmtest: {} scenario(s), accel {why}, {jobs} at a time",
        selected.len()
    );

    let (passed, failed, boot_time) = run_all(&ctx, &selected, jobs, build_error.as_deref());
    if opts.keep {
        eprintln!("vmtest: images kept in {}", ctx.work.display());
    } else {
        let _ = fs::remove_dir_all(&ctx.work);
    }
    let releases: Vec<String> = kernels
        .iter()
        .map(|(f, _, k)| format!("{} {}", f.name(), k.release))
        .collect();
    println!(
        "vmtest: total {} (boots {} summed, kernels: {})",
        secs(t_all.elapsed()),
        secs(boot_time),
        releases.join(", ")
    );
    println!("vmtest: {passed} passed, {failed} failed");
    Ok(failed == 0)
}

pub(crate) fn build_encfs_init(root: &Path) -> Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--quiet",
        "--release",
        "--target",
        "x86_64-unknown-linux-musl",
        "-p",
        "encfs-init",
    ]);
    cmd.current_dir(root);
    let status = cmd
        .status()
        .map_err(|e| crate::util::Error::msg(format!("running `{}`: {e}", show(&cmd))))?;
    if !status.success() {
        bail!("`{}` failed ({status})", show(&cmd));
    }
    Ok(root.join(ENCFS_INIT))
}

/// Build integration tests `names` as static musl binaries (dev profile without debug info, to keep the
/// initramfs small) and return `(name, executable)` pairs, read from cargo's JSON messages.
fn build_cargo_tests(root: &Path, names: &[String]) -> Result<Vec<(String, PathBuf)>> {
    build_cargo_tests_in(root, names, false)
}

/// [`build_cargo_tests`], optimized as the product ships (`--release`) when `release` (the benchmark).
pub(crate) fn build_cargo_tests_in(
    root: &Path,
    names: &[String],
    release: bool,
) -> Result<Vec<(String, PathBuf)>> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "test",
        "--quiet",
        "--no-run",
        "--target",
        "x86_64-unknown-linux-musl",
        "-p",
        "encfs-init",
        "--message-format=json",
    ]);
    if release {
        cmd.arg("--release");
    }
    for n in names {
        cmd.args(["--test", n]);
    }
    cmd.env("CARGO_PROFILE_DEV_DEBUG", "false");
    cmd.current_dir(root);
    let out = cmd
        .output()
        .map_err(|e| crate::util::Error::msg(format!("running `{}`: {e}", show(&cmd))))?;
    if !out.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        bail!("`{}` failed ({})", show(&cmd), out.status);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut built = Vec::new();
    for n in names {
        // A compiler-artifact line for target `n` of kind "test" carries `"executable":"<path>"`.
        let marker = format!("\"name\":\"{n}\"");
        let exe = text
            .lines()
            .filter(|l| l.contains("\"reason\":\"compiler-artifact\"") && l.contains(&marker))
            .find_map(|l| {
                let rest = l.split("\"executable\":\"").nth(1)?;
                rest.split('"').next().map(PathBuf::from)
            });
        match exe {
            Some(p) => built.push((n.clone(), p)),
            None => bail!("cargo built no executable for test `{n}`"),
        }
    }
    Ok(built)
}

/// Everything a boot needs, shared by the workers.
struct Ctx<'a> {
    /// Each kernel in use with its module index; the first is Debian's.
    kernels: &'a [(Flavor, ModuleIndex, Kernel)],
    common: &'a Common,
    logs: PathBuf,
    work: PathBuf,
    keep: bool,
    accel: Accel,
    /// The repository root.
    root: PathBuf,
}

/// One scenario's result.
struct Report {
    pass: bool,
    line: String,
    details: Vec<String>,
    boot: Duration,
}

fn run_all(
    ctx: &Ctx,
    scenarios: &[Scenario],
    jobs: usize,
    build_error: Option<&str>,
) -> (usize, usize, Duration) {
    let queue = Mutex::new(scenarios.iter());
    let (tx, rx) = mpsc::channel();
    let (mut passed, mut failed, mut boot) = (0, 0, Duration::ZERO);
    thread::scope(|scope| {
        for _ in 0..jobs {
            let tx = tx.clone();
            let queue = &queue;
            scope.spawn(move || loop {
                let next = queue.lock().ok().and_then(|mut q| q.next());
                let Some(s) = next else { break };
                let blocked = build_error.filter(|_| s.needs_encfs_init());
                let r = match blocked {
                    Some(why) => fail_early(s, why),
                    None => run_one(ctx, s),
                };
                if tx.send(r).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        for r in rx {
            println!("{}", r.line);
            for d in &r.details {
                println!("    {d}");
            }
            boot += r.boot;
            if r.pass {
                passed += 1;
            } else {
                failed += 1;
            }
        }
    });
    (passed, failed, boot)
}

fn fail_early(s: &Scenario, why: &str) -> Report {
    Report {
        pass: false,
        line: format!("FAIL {}: {why}", s.name),
        details: vec![],
        boot: Duration::ZERO,
    }
}

fn run_one(ctx: &Ctx, s: &Scenario) -> Report {
    let dir = ctx.work.join(&s.name);
    let _ = fs::create_dir_all(&dir);
    let initrd = dir.join("initramfs.cpio.gz");
    let t = Instant::now();
    let mut s = s.clone();
    if let Some(script) = &s.prepare {
        let out = dir.join("generated");
        let _ = fs::create_dir_all(&out);
        let mut cmd = Command::new("bash");
        cmd.arg(script)
            .env("ENCFS_INIT", ctx.root.join(ENCFS_INIT))
            .env("OUT", &out)
            .env("SCENARIO", script.parent().unwrap_or(Path::new(".")))
            .current_dir(&dir);
        match cmd.output() {
            Ok(o) if o.status.success() => {}
            Ok(o) => {
                return fail_early(
                    &s,
                    &format!(
                        "prepare: {} failed ({}): {}",
                        script.display(),
                        o.status,
                        String::from_utf8_lossy(&o.stderr).trim()
                    ),
                )
            }
            Err(e) => return fail_early(&s, &format!("prepare: {e}")),
        }
        let generated = std::mem::take(&mut s.generated);
        for (name, guest) in generated {
            s.files.push((out.join(name), guest));
        }
    }
    let s = &s;
    let built = match initramfs::build(s, ctx.common, ctx.index(s.kernel), &initrd) {
        Ok(b) => b,
        Err(e) => return fail_early(s, &format!("initramfs: {e}")),
    };
    let t_image = t.elapsed();
    // A blank virtio disk when the scenario asks for one.
    let disk = s.disk_mib.map(|_| dir.join("vda.img"));
    if let (Some(path), Some(mib)) = (&disk, s.disk_mib) {
        let made = fs::File::create(path).and_then(|f| f.set_len(mib * (1 << 20)));
        if let Err(e) = made {
            return fail_early(s, &format!("disk: {e}"));
        }
    }
    let outcome = boot_all(ctx, s, &initrd, disk.as_deref());
    if !ctx.keep {
        let _ = fs::remove_dir_all(&dir);
    }
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => return fail_early(s, &format!("boot: {e}")),
    };
    let init = outcome
        .first_output
        .map_or(String::new(), |t| format!(", first output at {}", secs(t)));
    let timing = format!(
        "{}boot {}{init}, image {} ms, {} KiB, {} module(s)",
        match s.kernel {
            Flavor::Debian => String::new(),
            k => format!("kernel {}, ", k.name()),
        },
        secs(outcome.elapsed),
        t_image.as_millis(),
        built.bytes / 1024,
        built.modules.len()
    );
    let mut details: Vec<String> = built.notes.iter().map(|n| format!("note: {n}")).collect();
    details.extend(outcome.notes.iter().map(|n| format!("note: {n}")));
    let (pass, line) = match evaluate(s, &outcome) {
        Ok(note) => (true, format!("PASS {} ({timing}{note})", s.name)),
        Err(reason) => {
            details.push(format!(
                "last console lines (full log: {}):",
                qemu::log_path(&ctx.logs, &s.name).display()
            ));
            details.extend(outcome.tail(TAIL_LINES).iter().map(|l| format!("| {l}")));
            if outcome.console.is_empty() {
                details.push("| (no console output)".into());
            }
            (false, format!("FAIL {}: {reason} ({timing})", s.name))
        }
    };
    Report {
        pass,
        line,
        details,
        boot: outcome.elapsed,
    }
}

/// Every boot of `s` in a row, sharing the disk; one outcome: the first failing verdict (or the last), all
/// console lines (each later boot introduced by a marker line), the summed time.
fn boot_all(ctx: &Ctx, s: &Scenario, initrd: &Path, disk: Option<&Path>) -> Result<Outcome> {
    let mut all: Option<Outcome> = None;
    for n in 1..=s.boots {
        let o = boot(ctx, s, initrd, disk, n)?;
        let Some(acc) = all.as_mut() else {
            all = Some(o);
            continue;
        };
        acc.console.push(format!("----- vmtest: boot {n} -----"));
        acc.console.extend(o.console);
        acc.elapsed += o.elapsed;
        acc.notes.extend(o.notes);
        let failed = match (&s.expect, &acc.verdict) {
            (Expect::Status(want), Ok(got)) => want != got,
            _ => true,
        };
        if !failed {
            acc.verdict = o.verdict;
        }
    }
    all.ok_or_else(|| crate::util::Error::msg("no boot"))
}

fn boot(ctx: &Ctx, s: &Scenario, initrd: &Path, disk: Option<&Path>, n: u32) -> Result<Outcome> {
    let append = if s.boots > 1 {
        format!("{} encfs_boot={n}", s.append).trim().to_string()
    } else {
        s.append.clone()
    };
    let log_name = if n > 1 {
        format!("{}.boot{n}", s.name)
    } else {
        s.name.clone()
    };
    Boot {
        kernel: ctx.kernel(s.kernel).vmlinux.clone(),
        initrd: initrd.to_path_buf(),
        append,
        init_args: s.init_args.clone(),
        timeout: s.timeout,
        memory_mib: s.memory_mib,
        cpus: 2,
        accel: ctx.accel,
        log: qemu::log_path(&ctx.logs, &log_name),
        disk: disk.map(Path::to_path_buf),
    }
    .run_retrying(qemu::EMULATOR_RETRIES)
}

/// `Ok(note)` when the outcome is what the scenario expects, `Err(reason)` otherwise.
pub fn evaluate(s: &Scenario, o: &Outcome) -> std::result::Result<String, String> {
    let note = match (&s.expect, &o.verdict) {
        (Expect::Status(want), Ok(got)) if want == got => String::new(),
        (Expect::Status(want), Ok(got)) => {
            return Err(format!("exit status {got}, expected {want}"))
        }
        (Expect::Status(_), Err((kind, why))) => return Err(format!("{}: {why}", kind.name())),
        (Expect::Failure(want), Err((kind, _))) if want == kind => {
            format!("; rig detected {} as expected", kind.name())
        }
        (Expect::Failure(want), got) => {
            let got = match got {
                Ok(st) => format!("exit status {st}"),
                Err((k, why)) => format!("{}: {why}", k.name()),
            };
            return Err(format!(
                "rig should have reported {}, got {got}",
                want.name()
            ));
        }
    };
    if o.verdict.is_ok() {
        let want = s.verdict_by;
        if let Some((_, _, got)) = qemu::last_verdict(&o.console) {
            if got != want {
                return Err(format!(
                    "the verdict came from the wrong speaker: `{}N`, but this scenario's must be `{}N`",
                    got.line(),
                    want.line()
                ));
            }
        }
    }
    if let Some(missing) = s
        .console
        .iter()
        .find(|w| !o.console.iter().any(|l| l.contains(w.as_str())))
    {
        return Err(format!("console lacks `{missing}`"));
    }
    if let Some(bad) = s
        .forbid
        .iter()
        .find(|w| o.console.iter().any(|l| l.contains(w.as_str())))
    {
        return Err(format!("console shows forbidden `{bad}`"));
    }
    Ok(note)
}

/// A short boot under `accel` that must end with status 0 (used to validate KVM before trusting it).
fn probe(ctx: &Ctx, accel: Accel) -> bool {
    let dir = ctx.work.join("accel-probe");
    let _ = fs::create_dir_all(&dir);
    let script = dir.join("init.sh");
    let text = format!(
        "#!/bin/sh\necho '{}0'\nexec poweroff -f\n",
        qemu::SCRIPT_VERDICT
    );
    if fs::write(&script, text).is_err() {
        return false;
    }
    let s = Scenario::probe(script);
    let initrd = dir.join("initramfs.cpio.gz");
    let ok = initramfs::build(&s, ctx.common, ctx.index(s.kernel), &initrd).is_ok()
        && boot(
            &Ctx {
                accel,
                ..ctx.clone()
            },
            &s,
            &initrd,
            None,
            1,
        )
        .is_ok_and(|o| o.verdict == Ok(0));
    let _ = fs::remove_dir_all(&dir);
    ok
}

impl Ctx<'_> {
    fn entry(&self, flavor: Flavor) -> &(Flavor, ModuleIndex, Kernel) {
        // run() loads every flavor a selected scenario names; the Debian kernel is always first.
        self.kernels
            .iter()
            .find(|(f, _, _)| *f == flavor)
            .unwrap_or(&self.kernels[0])
    }

    fn kernel(&self, flavor: Flavor) -> &Kernel {
        &self.entry(flavor).2
    }

    fn index(&self, flavor: Flavor) -> &ModuleIndex {
        &self.entry(flavor).1
    }
}

impl Clone for Ctx<'_> {
    fn clone(&self) -> Self {
        Ctx {
            kernels: self.kernels,
            common: self.common,
            logs: self.logs.clone(),
            work: self.work.clone(),
            keep: self.keep,
            accel: self.accel,
            root: self.root.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qemu::FailureKind;

    fn outcome(
        verdict: std::result::Result<i32, (FailureKind, String)>,
        console: &[&str],
    ) -> Outcome {
        Outcome {
            console: console.iter().map(|s| s.to_string()).collect(),
            verdict,
            elapsed: Duration::ZERO,
            first_output: None,
            notes: Vec::new(),
        }
    }

    fn scenario(expect: Expect) -> Scenario {
        let mut s = Scenario::probe(PathBuf::from("init.sh"));
        s.expect = expect;
        s.console = vec!["hello".into()];
        s.forbid = vec!["secret".into()];
        s
    }

    #[test]
    fn status_and_console_must_match() {
        let s = scenario(Expect::Status(0));
        assert!(evaluate(&s, &outcome(Ok(0), &["hello"])).is_ok());
        assert_eq!(
            evaluate(&s, &outcome(Ok(3), &["hello"])).unwrap_err(),
            "exit status 3, expected 0"
        );
        assert!(evaluate(&s, &outcome(Ok(0), &["bye"]))
            .unwrap_err()
            .contains("lacks `hello`"));
        assert!(evaluate(&s, &outcome(Ok(0), &["hello secret"]))
            .unwrap_err()
            .contains("forbidden"));
        let hung = outcome(
            Err((FailureKind::Timeout, "no power-off".into())),
            &["hello"],
        );
        assert!(evaluate(&s, &hung).unwrap_err().starts_with("timeout"));
    }

    #[test]
    fn expected_failures_pass_only_when_detected() {
        let s = scenario(Expect::Failure(FailureKind::Panic));
        let panic = outcome(Err((FailureKind::Panic, "Kernel panic".into())), &["hello"]);
        assert!(evaluate(&s, &panic).unwrap().contains("as expected"));
        let other = outcome(Err((FailureKind::NoVerdict, "none".into())), &["hello"]);
        assert!(evaluate(&s, &other)
            .unwrap_err()
            .contains("should have reported kernel panic"));
        assert!(evaluate(&s, &outcome(Ok(0), &["hello"])).is_err());
    }
}
