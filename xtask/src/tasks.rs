//! `cargo xtask test` (every test; CI runs it between fmt and clippy) and `cargo xtask demo` (the README's main
//! job). Both install what they need first ([`prepare`]), before they parse or build anything.

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use crate::ignored;
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

/// What `cargo xtask test`, `demo` and `setup` install before they parse or build anything: the Debian
/// packages (build, host tests, image, rig, every scenario's host tools), the musl target, the VM kernel, and
/// (with `azurite`) Node.js/npm and Azurite. Idempotent: a second call costs milliseconds. Returns Azurite's
/// prefix when it was asked for.
pub fn prepare(paths: &Paths, azurite: bool, refresh: bool) -> Result<Option<PathBuf>> {
    vmtest::setup(paths, refresh)?;
    ensure_musl_target()?;
    if !azurite {
        return Ok(None);
    }
    let apt = crate::setup::Apt::new(&paths.cache);
    let log = paths.cache.join("apt-install-node.log");
    crate::setup_azurite::ensure(&paths.root, &apt, &log).map(Some)
}

/// `../shared/fixtures` beside the clone: the project's shared data, which a user's clone does not have.
fn fixtures_dir(paths: &Paths) -> PathBuf {
    paths.root.join("../shared/fixtures/upstream")
}

/// Whether `CI` is set to true (CI runs must run the fixture tests).
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// Everything: host tests, the fixture tests (when `../shared` is there), fuzz smoke, the image, the VM
/// scenarios (which run the root+kernel tests). Benchmarks are not run.
pub fn test(paths: &Paths, rest: &[String]) -> Result<bool> {
    if !rest.is_empty() {
        bail!("usage: cargo xtask test");
    }
    let t = Instant::now();
    // A fresh machine first needs everything installed, before anything is parsed or built.
    let azurite = prepare(paths, true, false)?.unwrap_or_default();
    let ignored = ignored::scan(&paths.root)?;
    let fixtures: Vec<&ignored::Ignored> = ignored
        .iter()
        .filter(|t| t.kind == ignored::Kind::Fixture)
        .collect();
    let have_fixtures = fixtures_dir(paths).is_dir();
    if !have_fixtures && in_ci() {
        bail!(
            "CI=true, but {} is missing: the {} fixture tests must run in CI",
            fixtures_dir(paths).display(),
            fixtures.len()
        );
    }
    // The ignored tests stay ignored here: fixture tests run next, VM tests in the VM, benchmarks by hand.
    step(
        "cargo test --workspace (host tests; #[ignore]d ones run below, in the VM or by hand)",
        Command::new("cargo")
            .args(["test", "--workspace"])
            .env(crate::setup_azurite::ENV, &azurite)
            .current_dir(&paths.root),
    )?;
    if have_fixtures {
        run_fixture_tests(paths, &fixtures)?;
    } else {
        eprintln!(
            "xtask test: {} fixture tests not run: {} is not beside this clone (they need the project's \
             shared data; CI=true makes this a failure)",
            fixtures.len(),
            fixtures_dir(paths).display()
        );
    }
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

/// Run exactly the fixture tests, target by target, by their full names (`--exact`: no filter can catch
/// another test), and check that each one ran.
fn run_fixture_tests(paths: &Paths, fixtures: &[&ignored::Ignored]) -> Result<()> {
    let mut targets: Vec<Vec<String>> = fixtures
        .iter()
        .map(|t| t.target_args(&paths.root))
        .collect();
    targets.sort();
    targets.dedup();
    for target in targets {
        let names: Vec<&str> = fixtures
            .iter()
            .filter(|t| t.target_args(&paths.root) == target)
            .map(|t| t.name.as_str())
            .collect();
        // Full test paths (`module::name`) from the target's own list of ignored tests.
        let list = crate::util::stdout_of(
            Command::new("cargo")
                .args(["test", "--quiet"])
                .args(&target)
                .args(["--", "--list", "--ignored"])
                .current_dir(&paths.root),
        )?;
        let full: Vec<&str> = list
            .lines()
            .filter_map(|l| l.strip_suffix(": test"))
            .filter(|p| {
                names
                    .iter()
                    .any(|n| p == n || p.ends_with(&format!("::{n}")))
            })
            .collect();
        if full.len() != names.len() {
            bail!("fixture tests {names:?} in {target:?}: the test list has {full:?}",);
        }
        let want = format!("{} passed", full.len());
        let label = format!("fixture tests ({}, {} tests)", target.join(" "), full.len());
        eprintln!("xtask test: {label}");
        let out = Command::new("cargo")
            .args(["test"])
            .args(&target)
            .args(["--", "--ignored", "--exact"])
            .args(&full)
            .current_dir(&paths.root)
            .output()
            .map_err(|e| crate::util::Error::msg(format!("{label}: cannot start: {e}")))?;
        let text = String::from_utf8_lossy(&out.stdout);
        print!("{text}");
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        if !out.status.success() || !text.contains(&format!("test result: ok. {want}")) {
            bail!("{label} failed ({}; want `{want}`)", out.status);
        }
    }
    Ok(())
}

/// Boot the demo VM and show what the application printed.
pub fn demo(paths: &Paths, rest: &[String]) -> Result<bool> {
    if !rest.is_empty() {
        bail!("usage: cargo xtask demo");
    }
    prepare(paths, false, false)?;
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
const FUZZ_TARGETS: &[&str] = &[
    "luks2_header",
    "nbd_proto",
    "snp_report",
    "jws",
    "keyrelease_responses",
    "blob_range",
    "manifest_toml",
    "manifest_legacy",
    "skr_request",
];

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
