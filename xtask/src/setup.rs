//! Host packages for the VM rig, installed idempotently through a private apt configuration.
//!
//! The rig needs QEMU 10 (`qemu-system-x86`) from **bookworm-backports**: plain bookworm's QEMU 7.2 intermittently
//! double-faults the 6.12 guest under TCG, and installing it removes the image's qemu-utils 10. The machine's own
//! apt sources do not list backports and `/etc/apt` must stay untouched, so every apt call made here runs with
//! `-o Dir::…` options pointing at `.cache/vm/apt/`: a copy of the system's Debian sources with the
//! `bookworm-backports` suite added, and private package lists, caches and archives. dpkg's database is the
//! system's, so what gets installed is installed for real.
//!
//! Nothing touches apt when every package is already present (checked with `dpkg-query`), so re-runs cost a
//! few milliseconds. `apt-get update` on the private lists runs at most once a day, and only when something has
//! to be installed or downloaded.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use crate::util::{bail, run_captured, stdout_of, Context, Result};

/// The Debian release the rig is written for, and the suite QEMU and the kernel come from.
pub const BASE_SUITE: &str = "bookworm";
/// See the module docs.
pub const BACKPORTS: &str = "bookworm-backports";

/// Every Debian package `cargo xtask test` and `cargo xtask demo` need on a fresh Debian 12 machine (which has
/// only the Rust toolchain, gcc, Python and git), and why. One list: the build, the host tests, the image, the VM
/// rig and every scenario's `host_tools` (a test checks that each of those paths belongs to a package listed
/// here). Node.js and npm for Azurite are not in it: see [`NODE_PACKAGES`].
pub const PACKAGES: &[(&str, &str)] = &[
    // Building the product: the devicemapper crate generates its bindings with bindgen.
    ("libdevmapper-dev", "devicemapper-sys headers (bindgen)"),
    ("libclang-dev", "bindgen's libclang"),
    ("pkg-config", "finds libdevmapper for devicemapper-sys"),
    ("g++", "libfuzzer-sys (cargo fuzz) compiles libFuzzer's C++"),
    // Host tests and the image.
    (
        "cryptsetup-bin",
        "LUKS2 oracle (host tests, image building, scenarios' /usr/sbin/cryptsetup)",
    ),
    (
        "e2fsprogs",
        "ext4 images (mke2fs, fsck.ext4; scenarios' host tools too)",
    ),
    (
        "qemu-utils",
        "qemu-io and qemu-img drive `nbd serve` in tests/nbd_qemu.rs",
    ),
    (
        "buildah",
        "docker/build-image.sh builds the scratch image without a Docker engine",
    ),
    ("cpio", "docker/build-image.sh copies rootfs/"),
    ("file", "docker/build-image.sh checks the binary is static"),
    ("dmsetup", "scenario root-dm's /usr/sbin/dmsetup"),
    ("mount", "scenario root-dm's /usr/sbin/losetup"),
    (
        "util-linux",
        "scenarios aci-*'s /usr/bin/unshare (busybox's cannot leave mount propagation unchanged), *-secret's /usr/bin/setpriv",
    ),
    (
        "openssl",
        "oracle of the export tests (RSA/EC JWK, PEM); the *-secret scenarios' keys",
    ),
    // The VM rig.
    (
        "qemu-system-x86",
        "boots the guest (must be >= 8, i.e. backports' 10.x)",
    ),
    ("busybox-static", "guest shell and tools; host depmod"),
    // Building the azure-uvm rig kernel from Debian's linux-source (xtask/src/kernel_build.rs).
    ("make", "builds the azure-uvm rig kernel"),
    ("bc", "the kernel build's timeconst computation"),
    ("bison", "the kernel's Kconfig parser"),
    ("flex", "the kernel's Kconfig lexer"),
    ("libelf-dev", "objtool, part of every x86 kernel build"),
    ("libssl-dev", "the kernel's certificate tools"),
    ("zstd", "unpacks the 6.12 vmlinuz"),
    ("xz-utils", "unpacks .ko.xz modules"),
];

/// Node.js and npm run Azurite (tests/blob_azurite.rs). Installed from Debian only when `node` or `npm` is not on
/// PATH: a machine may carry its own Node.js (NodeSource's package bundles npm and conflicts with Debian's).
pub const NODE_PACKAGES: &[(&str, &str)] = &[
    ("nodejs", "runs Azurite"),
    ("npm", "installs Azurite from the npm registry"),
];

/// The peers `cargo xtask bench` measures against (issue 6), installed only by the bench. Bookworm's nbdkit
/// ships the curl plugin in the main package (`/usr/lib/x86_64-linux-gnu/nbdkit/plugins/nbdkit-curl-plugin.so`).
pub const BENCH_PACKAGES: &[(&str, &str)] = &[
    ("nbdkit", "peer NBD server (curl plugin) for the benchmark"),
    (
        "nbd-client",
        "peer kernel NBD client setup for the benchmark",
    ),
];

/// Private apt state under the cache directory (see the module docs).
#[derive(Debug)]
pub struct Apt {
    dir: PathBuf,
}

impl Apt {
    /// Apt state lives in `cache/apt`.
    pub fn new(cache: &Path) -> Self {
        Apt {
            dir: cache.join("apt"),
        }
    }

    /// An `apt-get` / `apt-cache` command that sees the private sources (including backports).
    pub fn command(&self, program: &str) -> Command {
        let d = &self.dir;
        let mut c = Command::new(program);
        for (k, v) in [
            ("Dir::Etc::SourceList", PathBuf::from("/dev/null")),
            ("Dir::Etc::SourceParts", d.join("sources.list.d")),
            ("Dir::State::Lists", d.join("lists")),
            ("Dir::Cache", d.join("cache")),
            ("Dir::Cache::archives", d.join("archives")),
        ] {
            c.arg("-o").arg(format!("{k}={}", v.display()));
        }
        // Downloads land in directories root created; apt's _apt sandbox user could not write there.
        c.args(["-o", "APT::Sandbox::User=root", "-q"]);
        c.env("DEBIAN_FRONTEND", "noninteractive");
        c
    }

    /// Write the private sources and refresh the private lists when they are missing or older than a day
    /// (or always, with `force`).
    pub fn prepare(&self, force: bool) -> Result<()> {
        for sub in [
            "sources.list.d",
            "lists/partial",
            "cache",
            "archives/partial",
        ] {
            fs::create_dir_all(self.dir.join(sub))
                .with_context(|| format!("creating {}", self.dir.display()))?;
        }
        let (name, text) = private_sources()?;
        fs::write(self.dir.join("sources.list.d").join(name), text)
            .context("writing private apt sources")?;
        let stamp = self.dir.join("lists/.updated");
        let fresh = fs::metadata(&stamp)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age < Duration::from_secs(24 * 3600));
        if force || !fresh {
            eprintln!("vmtest: apt-get update (private lists with {BACKPORTS})");
            run_captured(self.command("apt-get").arg("update"))?;
            fs::write(&stamp, b"").context("writing apt stamp")?;
        }
        Ok(())
    }
}

/// The system's Debian sources with the backports suite added: `(file name, contents)`.
///
/// deb822 (`/etc/apt/sources.list.d/debian.sources`, Debian 12's default) and one-line
/// (`/etc/apt/sources.list`) formats are both understood. Stanzas of the base suite and of its companions
/// (`bookworm-updates`, `bookworm-security`) are copied, so a machine whose packages came from security
/// updates can still install their `-dev` twins at the same version; third-party repositories configured on
/// the machine are not consulted.
fn private_sources() -> Result<(&'static str, String)> {
    let ours = |suite: &str| suite == BASE_SUITE || suite.starts_with(&format!("{BASE_SUITE}-"));
    let deb822 = Path::new("/etc/apt/sources.list.d/debian.sources");
    if let Ok(text) = fs::read_to_string(deb822) {
        let mut out = String::new();
        for stanza in text.split("\n\n") {
            let suites: Vec<&str> = stanza
                .lines()
                .filter_map(|l| l.strip_prefix("Suites:"))
                .flat_map(str::split_whitespace)
                .collect();
            if !suites.iter().any(|s| ours(s)) {
                continue;
            }
            let has_base = suites.contains(&BASE_SUITE);
            for line in stanza.lines() {
                out.push_str(line);
                let suites = line.strip_prefix("Suites:");
                if has_base && suites.is_some_and(|s| !s.split_whitespace().any(|w| w == BACKPORTS))
                {
                    out.push(' ');
                    out.push_str(BACKPORTS);
                }
                out.push('\n');
            }
            out.push('\n');
        }
        if !out.lines().any(|l| {
            l.strip_prefix("Suites:")
                .is_some_and(|s| s.split_whitespace().any(|w| w == BASE_SUITE))
        }) {
            bail!("{} has no stanza for suite {BASE_SUITE}", deb822.display());
        }
        return Ok(("debian.sources", out));
    }
    let list = Path::new("/etc/apt/sources.list");
    let text = fs::read_to_string(list)
        .with_context(|| format!("no Debian mirror: reading {}", list.display()))?;
    let mut out = String::new();
    let mut base = false;
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        // deb [options] URI SUITE COMPONENTS...
        if words.first() != Some(&"deb") {
            continue;
        }
        let Some(pos) = words.iter().position(|w| ours(w)) else {
            continue;
        };
        out.push_str(line);
        out.push('\n');
        if words[pos] == BASE_SUITE {
            base = true;
            let mut bpo = words.clone();
            bpo[pos] = BACKPORTS;
            out.push_str(&bpo.join(" "));
            out.push('\n');
        }
    }
    if !base {
        bail!("{} has no `deb … {BASE_SUITE} …` line", list.display());
    }
    Ok(("debian.list", out))
}

/// `Some(version)` when dpkg says `pkg` is installed.
fn installed_version(pkg: &str) -> Option<String> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Status}\t${Version}", pkg])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let (status, version) = text.split_once('\t')?;
    (status == "install ok installed").then(|| version.to_string())
}

/// Upstream major version of a Debian version string (`1:10.0.2+ds-2` → 10).
fn major(version: &str) -> u32 {
    let upstream = version.split_once(':').map_or(version, |(_, v)| v);
    upstream
        .split(['.', '+', '-', '~'])
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0)
}

/// Install whatever of [`PACKAGES`] is missing (QEMU older than 8 counts as missing). Returns what was
/// installed (empty when nothing had to be done).
pub fn ensure_packages(apt: &Apt, log: &Path) -> Result<Vec<&'static str>> {
    ensure_listed(apt, log, PACKAGES)
}

/// Install whatever of `packages` is missing (see [`ensure_packages`]).
pub fn ensure_listed(
    apt: &Apt,
    log: &Path,
    packages: &[(&'static str, &str)],
) -> Result<Vec<&'static str>> {
    let missing: Vec<&str> = packages
        .iter()
        .map(|(p, _)| *p)
        .filter(|p| match installed_version(p) {
            None => true,
            Some(v) => *p == "qemu-system-x86" && major(&v) < 8,
        })
        .collect();
    if missing.is_empty() {
        return Ok(missing);
    }
    // Only root may run dpkg; say what to install otherwise.
    if !is_root() {
        let why: Vec<String> = packages
            .iter()
            .filter(|(p, _)| missing.contains(p))
            .map(|(p, w)| format!("  {p}: {w}"))
            .collect();
        bail!(
            "missing host packages and not root; install them from {BACKPORTS}:\n{}",
            why.join("\n")
        );
    }
    apt.prepare(false)?;
    eprintln!(
        "vmtest: installing {} (from {BACKPORTS} where newer)",
        missing.join(" ")
    );
    let out = apt
        .command("apt-get")
        .args(["install", "-y", "--no-install-recommends", "-t", BACKPORTS])
        .args(&missing)
        .output()
        .context("running apt-get install")?;
    let mut text = out.stdout.clone();
    text.extend_from_slice(&out.stderr);
    fs::write(log, &text).with_context(|| format!("writing {}", log.display()))?;
    if !out.status.success() {
        bail!(
            "apt-get install failed ({}), see {}:\n{}",
            out.status,
            log.display(),
            crate::util::tail(&String::from_utf8_lossy(&text), 15)
        );
    }
    match installed_version("qemu-system-x86") {
        _ if !missing.contains(&"qemu-system-x86") => {}
        Some(v) if major(&v) >= 8 => {}
        v => bail!(
            "qemu-system-x86 is {v:?} after install; the rig needs QEMU >= 8 from {BACKPORTS}"
        ),
    }
    Ok(missing)
}

fn is_root() -> bool {
    // `id -u` avoids a libc dependency for one getuid().
    stdout_of(Command::new("id").arg("-u")).is_ok_and(|s| s.trim() == "0")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmtest::Paths;

    /// The Debian package that owns `path`, by `dpkg -S`. Debian 12 merged `/usr`: a file dpkg installed as
    /// `/sbin/x` is found at `/usr/sbin/x`, so the path without `/usr` is asked too.
    pub fn owner(path: &Path) -> Option<String> {
        let text = path.to_string_lossy();
        let mut asks = vec![text.to_string()];
        if let Some(short) = text.strip_prefix("/usr") {
            asks.push(short.to_string());
        }
        asks.into_iter().find_map(|p| {
            let out = Command::new("dpkg").args(["-S", &p]).output().ok()?;
            let line = String::from_utf8_lossy(&out.stdout)
                .lines()
                .next()?
                .to_string();
            // `pkg[:arch][, pkg2]: /path`
            let pkgs = line.rsplit_once(": ")?.0.to_string();
            let first = pkgs.split(", ").next()?;
            Some(first.split(':').next()?.to_string())
        })
    }

    /// A scenario's `host_tools` are installed by the README's commands: every path belongs to a package of
    /// [`PACKAGES`], so a new scenario cannot need a tool that a
    /// fresh machine lacks.
    #[test]
    fn every_host_tool_comes_from_a_listed_package() {
        let paths = Paths::discover();
        let scenarios = crate::scenario::load_all(&paths.root.join("tests/vm")).unwrap();
        let mut checked = 0;
        for s in &scenarios {
            for tool in &s.host_tools {
                let pkg = owner(tool).unwrap_or_else(|| {
                    panic!("{}: dpkg knows no package for {}", s.name, tool.display())
                });
                assert!(
                    PACKAGES.iter().any(|(p, _)| *p == pkg),
                    "{}: {} comes from {pkg}, which setup::PACKAGES does not install",
                    s.name,
                    tool.display()
                );
                checked += 1;
            }
        }
        assert!(checked >= 4, "only {checked} host tools found");
    }

    #[test]
    fn owner_finds_a_merged_usr_path_and_nothing_for_a_stranger() {
        assert_eq!(owner(Path::new("/usr/bin/dpkg")).as_deref(), Some("dpkg"));
        assert_eq!(owner(Path::new("/usr/sbin/no-such-tool-here")), None);
    }

    #[test]
    fn qemu_versions() {
        assert_eq!(major("1:10.0.2+ds-2+deb13u1~bpo12+1"), 10);
        assert_eq!(major("1:7.2+dfsg-7+deb12u7"), 7);
        assert_eq!(major("garbage"), 0);
    }
}
