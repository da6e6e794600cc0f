//! `cargo xtask test` (everything CI runs after fmt and clippy) and `cargo xtask demo` (the README's main
//! job). Both set up what they need on first use.

use std::fs;
use std::process::Command;
use std::time::Instant;

use crate::util::{bail, secs, Result};
use crate::vmtest::{self, Options, Paths};

/// The demo scenario under tests/vm/ (CI runs it too, so the demo keeps working).
const DEMO: &str = "demo";

/// Run a step, echoing it; an error names the step.
fn step(name: &str, cmd: &mut Command) -> Result<()> {
    eprintln!("xtask test: {name}");
    let t = Instant::now();
    let status = cmd
        .status()
        .map_err(|e| crate::util::Error::msg(format!("{name}: cannot start: {e}")))?;
    if !status.success() {
        bail!("{name} failed ({status}) after {}", secs(t.elapsed()));
    }
    eprintln!("xtask test: {name}: ok in {}", secs(t.elapsed()));
    Ok(())
}

/// Everything: host tests (with the fixture tests that a bare clone ignores), the image, the VM scenarios.
pub fn test(paths: &Paths, rest: &[String]) -> Result<bool> {
    if !rest.is_empty() {
        bail!("usage: cargo xtask test");
    }
    let t = Instant::now();
    // A fresh machine first needs the packages the build and the rig use (and the musl target).
    vmtest::setup(paths, false)?;
    let azurite = crate::setup_azurite::ensure(&paths.root)?;
    ensure_musl_target()?;
    // --include-ignored runs the fixture tests a bare clone ignores; the T1 `root_*` tests need the VM's
    // kernel (vmtest runs them) and the benchmarks are not tests.
    step(
        "cargo test --workspace -- --include-ignored (T1 root_* tests run in the VM)",
        Command::new("cargo")
            .args([
                "test",
                "--workspace",
                "--",
                "--include-ignored",
                "--skip",
                "root_",
                "--skip",
                "unlock_time_vs_cryptsetup",
            ])
            .env(crate::setup_azurite::ENV, &azurite)
            .current_dir(&paths.root),
    )?;
    fuzz_smoke(paths)?;
    step(
        "docker/build-image.sh (scratch image holds one static binary)",
        Command::new("bash")
            .arg(paths.root.join("docker/build-image.sh"))
            .arg("encfs-init:test")
            .current_dir(&paths.root),
    )?;
    eprintln!("xtask test: cargo xtask vmtest");
    let ok = vmtest::run(
        paths,
        &Options {
            jobs: crate::default_jobs(),
            ..Options::default()
        },
    )?;
    eprintln!("xtask test: finished in {}", secs(t.elapsed()));
    Ok(ok)
}

/// Boot the demo VM and show what the application printed.
pub fn demo(paths: &Paths, rest: &[String]) -> Result<bool> {
    if !rest.is_empty() {
        bail!("usage: cargo xtask demo");
    }
    ensure_musl_target()?;
    let ok = vmtest::run(
        paths,
        &Options {
            jobs: 1,
            patterns: vec![DEMO.to_string()],
            ..Options::default()
        },
    )?;
    let log = crate::qemu::log_path(&paths.cache.join("logs"), DEMO);
    let text = fs::read_to_string(&log).unwrap_or_default();
    println!("\n--- the demo VM's console (encfs-init lines and the application's output) ---");
    for line in text
        .lines()
        .filter(|l| l.contains("encfs-init") || l.contains("demo:") || l.contains("] "))
    {
        println!("{line}");
    }
    println!("--- full log: {} ---", log.display());
    Ok(ok)
}

/// Fuzz targets and how long each runs in CI (house style: a smoke run per parser).
const FUZZ_TARGETS: &[&str] = &["luks2_header"];

/// Build and smoke-run every fuzz target for 10 s on the stable toolchain (`-s none`: no sanitizer, which
/// needs nightly). Installs cargo-fuzz from crates.io when missing.
fn fuzz_smoke(paths: &Paths) -> Result<()> {
    let have = Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have {
        step(
            "cargo install cargo-fuzz",
            Command::new("cargo").args(["install", "--quiet", "--locked", "cargo-fuzz"]),
        )?;
    }
    for t in FUZZ_TARGETS {
        step(
            &format!("fuzz smoke: {t} for 10 s"),
            Command::new("cargo")
                .args(["fuzz", "run", "-s", "none", t, "--", "-max_total_time=10"])
                .current_dir(paths.root.join("fuzz")),
        )?;
    }
    Ok(())
}

/// `rustup target add x86_64-unknown-linux-musl` unless it is installed (the static build needs it).
pub fn ensure_musl_target() -> Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("x86_64-unknown-linux-musl"))
        .unwrap_or(false);
    if installed {
        return Ok(());
    }
    step(
        "rustup target add x86_64-unknown-linux-musl",
        Command::new("rustup").args(["target", "add", "x86_64-unknown-linux-musl"]),
    )
}
