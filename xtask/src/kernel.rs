//! The guest kernel: Debian's 6.12 `cloud-amd64` image from bookworm-backports, unpacked (never installed).
//!
//! `apt-get download` fetches the `linux-image-6.12.*-cloud-amd64` .deb the backports meta package points at,
//! `dpkg -x` unpacks it into `.cache/vm/kernel/<package>/`, and `depmod -b` writes the `modules.dep` that the
//! package's postinst would normally generate (kmod's depmod when the host has it, busybox's otherwise).
//! QEMU boots an uncompressed ELF `vmlinux` directly (PVH entry), skipping firmware and the in-guest
//! decompressor, which saves ~1.5 s per boot under TCG; it is cut out of the bzImage the way the kernel's
//! `scripts/extract-vmlinux` does: find a compressor's magic and decompress from there until an ELF appears.
//!
//! Once a kernel is unpacked, `.cache/vm/kernel/current` names it and later runs do not touch apt at all.
//! `cargo xtask setup --refresh` looks for a newer one.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;

use crate::setup::{Apt, BACKPORTS};
use crate::util::{bail, on_path, run_captured, stdout_of, Context, OrErr, Result};

/// The meta package whose dependency names the current kernel image package.
const META: &str = "linux-image-cloud-amd64";

/// Which kernel a scenario boots (`kernel = "..."` in scenario.toml).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Flavor {
    /// Debian's 6.12 cloud kernel: everything as modules, NBD, CUSE, configfs, AES-NI.
    #[default]
    Debian,
    /// Built here like Azure Linux's `kernel-uvm`: no NBD, no CUSE, no configfs, no AES-NI, all built in
    /// ([`crate::kernel_build`]).
    AzureUvm,
}

impl Flavor {
    /// Every flavor, in the order runs report them.
    pub const ALL: [Flavor; 2] = [Flavor::Debian, Flavor::AzureUvm];

    /// The name scenario.toml and the command line use.
    pub fn name(self) -> &'static str {
        match self {
            Flavor::Debian => "debian",
            Flavor::AzureUvm => "azure-uvm",
        }
    }

    /// From its name.
    pub fn parse(s: &str) -> Option<Flavor> {
        Flavor::ALL.into_iter().find(|f| f.name() == s)
    }
}

/// The kernel of `flavor`, fetching or building it first when the cache has none.
pub fn ensure_flavor(root: &Path, cache: &Path, apt: &Apt, flavor: Flavor) -> Result<Kernel> {
    match flavor {
        Flavor::Debian => ensure(cache, apt, false),
        Flavor::AzureUvm => crate::kernel_build::ensure(root, apt),
    }
}

/// An unpacked kernel.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// `uname -r` of the guest, e.g. `6.12.57+deb12-cloud-amd64`.
    pub release: String,
    /// The uncompressed ELF for PVH boot.
    pub vmlinux: PathBuf,
    /// `lib/modules/<release>` with `modules.dep`.
    pub modules: PathBuf,
}

impl Kernel {
    fn open(root: &Path) -> Result<Self> {
        let mods = root.join("lib/modules");
        let release = fs::read_dir(&mods)
            .with_context(|| format!("reading {}", mods.display()))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .next()
            .or_err(|| format!("{} is empty", mods.display()))?;
        Ok(Kernel {
            vmlinux: root.join(format!("boot/vmlinux-{release}")),
            modules: mods.join(&release),
            release,
        })
    }
}

/// The cached kernel, fetching and preparing it first when there is none (or when `refresh` asks to look for a
/// newer package).
pub fn ensure(cache: &Path, apt: &Apt, refresh: bool) -> Result<Kernel> {
    let base = cache.join("kernel");
    let current = base.join("current");
    if !refresh {
        if let Ok(name) = fs::read_to_string(&current) {
            let dir = base.join(name.trim());
            if dir.join(".done").exists() {
                return Kernel::open(&dir);
            }
        }
    }
    apt.prepare(refresh)?;
    let package = resolve_package(apt)?;
    let dir = base.join(&package);
    if !dir.join(".done").exists() {
        fetch(apt, &base, &package, &dir)?;
    }
    fs::write(&current, &package).context("writing kernel/current")?;
    Kernel::open(&dir)
}

/// `linux-image-6.12.…-cloud-amd64`: what the backports meta package depends on.
fn resolve_package(apt: &Apt) -> Result<String> {
    // madison rows: " pkg | version | mirror suite/component arch Packages", newest first.
    let rows = stdout_of(apt.command("apt-cache").args(["madison", META]))?;
    let version = rows
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('|').map(str::trim).collect();
            (f.len() >= 3 && f[2].contains(&format!(" {BACKPORTS}/"))).then(|| f[1].to_string())
        })
        .next()
        .or_err(|| format!("{META} not found in {BACKPORTS}"))?;
    let show = stdout_of(
        apt.command("apt-cache")
            .args(["show", &format!("{META}={version}")]),
    )?;
    let depends = show
        .lines()
        .find_map(|l| l.strip_prefix("Depends:"))
        .unwrap_or("");
    match depends
        .split(',')
        .map(|d| d.split_whitespace().next().unwrap_or(""))
        .find(|d| d.starts_with("linux-image-"))
    {
        Some(p) => Ok(p.to_string()),
        None => bail!("{META}={version} depends on no linux-image package: {depends}"),
    }
}

/// Download, unpack, depmod and extract `vmlinux` into `dir` (built in a scratch directory and renamed, so an
/// interrupted fetch never looks finished).
fn fetch(apt: &Apt, base: &Path, package: &str, dir: &Path) -> Result<()> {
    eprintln!("vmtest: fetching kernel {package} from {BACKPORTS}");
    let scratch = base.join(format!("{package}.partial"));
    let dl = base.join("download");
    for d in [&scratch, &dl] {
        let _ = fs::remove_dir_all(d);
        fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let mut download = apt.command("apt-get");
    download.args(["download", package]).current_dir(&dl);
    if run_captured(&mut download).is_err() {
        // Stale lists point at a superseded .deb: refresh once and retry.
        apt.prepare(true)?;
        run_captured(&mut download)?;
    }
    let deb = fs::read_dir(&dl)
        .context("reading download dir")?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .or_err(|| format!("apt-get download left no .deb in {}", dl.display()))?;
    run_captured(Command::new("dpkg").arg("-x").arg(&deb).arg(&scratch))?;
    let _ = fs::remove_dir_all(&dl);

    let k = Kernel::open(&scratch)?;
    depmod(&scratch, &k.release)?;
    let vmlinuz = scratch.join(format!("boot/vmlinuz-{}", k.release));
    let image = fs::read(&vmlinuz).with_context(|| format!("reading {}", vmlinuz.display()))?;
    let elf = extract_vmlinux(&image)
        .with_context(|| format!("extracting vmlinux from {}", vmlinuz.display()))?;
    fs::write(&k.vmlinux, elf).context("writing vmlinux")?;

    fs::write(scratch.join(".done"), b"").context("writing .done")?;
    let _ = fs::remove_dir_all(dir);
    fs::rename(&scratch, dir).with_context(|| format!("renaming to {}", dir.display()))?;
    Ok(())
}

fn depmod(root: &Path, release: &str) -> Result<()> {
    let mut cmd = if Path::new("/sbin/depmod").exists() {
        Command::new("/sbin/depmod")
    } else if on_path("busybox") {
        let mut c = Command::new("busybox");
        c.arg("depmod");
        c
    } else {
        bail!("neither /sbin/depmod nor busybox is available to run depmod");
    };
    run_captured(cmd.arg("-b").arg(root).arg(release))?;
    if !root
        .join("lib/modules")
        .join(release)
        .join("modules.dep")
        .exists()
    {
        bail!("depmod wrote no modules.dep under {}", root.display());
    }
    Ok(())
}

/// The compressors a bzImage payload may use: magic bytes and the decompressing command.
const PAYLOADS: &[(&[u8], &str)] = &[
    (&[0x28, 0xb5, 0x2f, 0xfd], "zstd"),
    (&[0xfd, b'7', b'z', b'X', b'Z', 0x00], "xz"),
    (&[0x1f, 0x8b, 0x08], "gzip"),
];

/// The uncompressed kernel ELF inside a bzImage.
pub fn extract_vmlinux(image: &[u8]) -> Result<Vec<u8>> {
    for (magic, tool) in PAYLOADS {
        if !on_path(tool) {
            continue;
        }
        let offsets = image
            .windows(magic.len())
            .enumerate()
            .filter(|(_, w)| w == magic)
            .map(|(i, _)| i);
        for off in offsets.take(5) {
            if let Some(elf) = decompress(tool, &image[off..]) {
                return Ok(elf);
            }
        }
    }
    bail!("no zstd/xz/gzip payload that decompresses to an ELF")
}

/// Decompress `data` with `tool -dc`; the payload is followed by trailer bytes, so the tool's complaint about
/// them is ignored and the output is judged by its ELF magic.
fn decompress(tool: &str, data: &[u8]) -> Option<Vec<u8>> {
    let mut child = Command::new(tool)
        .args(["-qdc"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut stdin = child.stdin.take()?;
    let input = data.to_vec();
    let writer = thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().ok()?;
    let _ = writer.join();
    (out.stdout.len() > 1 << 20 && out.stdout.starts_with(b"\x7fELF")).then_some(out.stdout)
}
