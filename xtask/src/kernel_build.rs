//! The rig's `azure-uvm` kernel: Debian's kernel source, configured like Azure Linux's `kernel-uvm` in what
//! encfs-init depends on (no NBD, no ublk, no CUSE, no configfs, no AES-NI glue; dm-crypt, dm-verity,
//! dm-integrity, loop, FUSE and ext4 built in; no module needed), built here and cached.
//!
//! Recipe: `apt-get download linux-source-6.12` at the version bookworm-backports offers (the same version as
//! the Debian guest kernel), unpack its tarball, `make tinyconfig`, merge `xtask/kernels/azure-uvm.config`
//! (`scripts/kconfig/merge_config.sh`), `make olddefconfig`, check that every line of the fragment holds in the
//! final `.config` (an option Kconfig dropped is an error, never a different kernel), `make bzImage`. Kept:
//! the uncompressed `vmlinux` (QEMU boots it by its PVH entry, as it does Debian's), the `.config`, the
//! release and `modules.builtin` (laid out as `lib/modules/<release>/` with an empty `modules.dep`, so the
//! rig's module logic sees "built in" for dm-crypt and "absent" for nbd). The source tree is deleted after
//! the build.
//!
//! The cache is outside the checkout (`$XDG_CACHE_HOME/encfs-init/kernels`, else `~/.cache/...`), because CI
//! tests a clean clone each time: `azure-uvm-<key>/`, where the key hashes the fragment, [`RECIPE`] and the
//! source package version. A rebuild happens only when one of those changes. Costs on this project's 2-core
//! machine: see the README (Tests).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::kernel::Kernel;
use crate::setup::{Apt, BACKPORTS};
use crate::util::{bail, run_captured, secs, stdout_of, Context, OrErr, Result};

/// The source package (its version is the one bookworm-backports offers).
const SOURCE: &str = "linux-source-6.12";
/// The fragment, relative to the workspace root.
pub const FRAGMENT: &str = "xtask/kernels/azure-uvm.config";
/// Bump when the recipe below changes in a way that changes the kernel.
const RECIPE: &str = "tinyconfig+fragment+olddefconfig, LOCALVERSION=-azure-uvm-rig, bzImage; v1";
/// `uname -r` suffix, so a console shows which kernel booted.
const LOCALVERSION: &str = "-azure-uvm-rig";

/// Where built kernels are kept across clones.
pub fn cache_root() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/var/tmp"));
    base.join("encfs-init/kernels")
}

/// The built kernel, building it first when the cache has none for this fragment, recipe and source version.
pub fn ensure(root: &Path, apt: &Apt) -> Result<Kernel> {
    let fragment_path = root.join(FRAGMENT);
    let fragment = fs::read_to_string(&fragment_path)
        .with_context(|| format!("reading {}", fragment_path.display()))?;
    apt.prepare(false)?;
    let version = backports_version(apt)?;
    let key = sha256_hex(format!("{RECIPE}\n{SOURCE}={version}\n{fragment}").as_bytes())?;
    let dir = cache_root().join(format!("azure-uvm-{}", &key[..16]));
    if !dir.join(".done").exists() {
        build(apt, &version, &fragment_path, &fragment, &dir)?;
    }
    open(&dir)
}

fn open(dir: &Path) -> Result<Kernel> {
    let release = fs::read_to_string(dir.join("release"))
        .context("reading the built kernel's release")?
        .trim()
        .to_string();
    Ok(Kernel {
        vmlinux: dir.join("vmlinux"),
        modules: dir.join("lib/modules").join(&release),
        release,
    })
}

/// The version of [`SOURCE`] in bookworm-backports.
fn backports_version(apt: &Apt) -> Result<String> {
    let rows = stdout_of(apt.command("apt-cache").args(["madison", SOURCE]))?;
    rows.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('|').map(str::trim).collect();
            (f.len() >= 3 && f[2].contains(&format!(" {BACKPORTS}/"))).then(|| f[1].to_string())
        })
        .next()
        .or_err(|| format!("{SOURCE} not found in {BACKPORTS}"))
}

fn sha256_hex(data: &[u8]) -> Result<String> {
    use std::io::Write;
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("running sha256sum")?;
    child
        .stdin
        .take()
        .or_err(|| "sha256sum stdin".to_string())?
        .write_all(data)
        .context("writing to sha256sum")?;
    let out = child.wait_with_output().context("sha256sum")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let hex = text.split_whitespace().next().unwrap_or("");
    if hex.len() != 64 {
        bail!("sha256sum printed {text:?}");
    }
    Ok(hex.to_string())
}

/// Download, configure, check, build; the result is renamed into `dir` only when complete.
fn build(apt: &Apt, version: &str, fragment_path: &Path, fragment: &str, dir: &Path) -> Result<()> {
    let t = Instant::now();
    let parent = dir.parent().or_err(|| "cache dir".to_string())?;
    let scratch = parent.join(format!("{}.partial", file_name(dir)));
    let _ = fs::remove_dir_all(&scratch);
    fs::create_dir_all(&scratch).with_context(|| format!("creating {}", scratch.display()))?;
    eprintln!(
        "vmtest: building kernel azure-uvm from {SOURCE} {version} ({BACKPORTS}) with {} into {}; once per \
         fragment and source version, about 10 minutes on 2 cores",
        fragment_path.display(),
        dir.display()
    );
    let mut download = apt.command("apt-get");
    download
        .args(["download", &format!("{SOURCE}={version}")])
        .current_dir(&scratch);
    run_captured(&mut download)?;
    let deb = fs::read_dir(&scratch)
        .context("reading the download dir")?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .or_err(|| "apt-get download left no .deb".to_string())?;
    // The .deb holds /usr/src/linux-source-6.12.tar.xz: stream it out and unpack it without a copy on disk.
    let tarball = format!("./usr/src/{SOURCE}.tar.xz");
    let unpack = format!(
        "dpkg-deb --fsys-tarfile {deb} | tar -xO {tarball} | xz -dc -T0 | tar -x",
        deb = shell_quote(&deb),
    );
    run_captured(
        Command::new("bash")
            .args(["-o", "pipefail", "-c", &unpack])
            .current_dir(&scratch),
    )?;
    let _ = fs::remove_file(&deb);
    let src = scratch.join(SOURCE);
    let make = |args: &[&str]| {
        let mut c = Command::new("make");
        c.args(args)
            .arg(format!("LOCALVERSION={LOCALVERSION}"))
            .current_dir(&src);
        c
    };
    run_captured(&mut make(&["tinyconfig"]))?;
    run_captured(
        Command::new("scripts/kconfig/merge_config.sh")
            .args(["-m", ".config"])
            .arg(fragment_path)
            .current_dir(&src),
    )?;
    run_captured(&mut make(&["olddefconfig"]))?;
    let config = fs::read_to_string(src.join(".config")).context("reading .config")?;
    let wrong = fragment_mismatches(fragment, &config);
    if !wrong.is_empty() {
        bail!(
            "kernel azure-uvm: {} says what the built config does not (a dependency is missing, or the option \
             does not exist in {SOURCE} {version}): {}",
            fragment_path.display(),
            wrong.join("; ")
        );
    }
    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get()) + 1;
    let tb = Instant::now();
    let mut bz = make(&["bzImage", &format!("-j{jobs}")]);
    let log = scratch.join("build.log");
    let status = bz
        .stdout(fs::File::create(&log).context("creating build.log")?)
        .stderr(Stdio::piped())
        .output()
        .context("running make bzImage")?;
    if !status.status.success() {
        bail!(
            "kernel azure-uvm: make bzImage failed ({}): {}",
            status.status,
            crate::util::tail(&String::from_utf8_lossy(&status.stderr), 20)
        );
    }
    let t_make = secs(tb.elapsed());
    let release = stdout_of(&mut make(&["-s", "kernelrelease"]))?
        .trim()
        .to_string();
    let out = scratch.join("out");
    let mods = out.join("lib/modules").join(&release);
    fs::create_dir_all(&mods).context("creating lib/modules")?;
    fs::copy(src.join("vmlinux"), out.join("vmlinux")).context("copying vmlinux")?;
    fs::copy(src.join("arch/x86/boot/bzImage"), out.join("bzImage")).context("copying bzImage")?;
    fs::write(out.join("config"), &config).context("writing config")?;
    fs::write(out.join("release"), format!("{release}\n")).context("writing release")?;
    let builtin = fs::read(src.join("modules.builtin")).unwrap_or_default();
    fs::write(mods.join("modules.builtin"), builtin).context("writing modules.builtin")?;
    fs::write(mods.join("modules.dep"), b"").context("writing modules.dep")?;
    fs::write(
        out.join("built"),
        format!("{SOURCE} {version}\nrecipe: {RECIPE}\nmake bzImage -j{jobs}: {t_make}\n"),
    )
    .context("writing built")?;
    fs::write(out.join(".done"), b"").context("writing .done")?;
    let _ = fs::remove_dir_all(dir);
    fs::rename(&out, dir).with_context(|| format!("renaming to {}", dir.display()))?;
    let _ = fs::remove_dir_all(&scratch);
    eprintln!(
        "vmtest: kernel azure-uvm {release} built in {} (make bzImage -j{jobs}: {t_make})",
        secs(t.elapsed()),
    );
    Ok(())
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn shell_quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

/// The fragment's lines (`CONFIG_X=v`, `# CONFIG_X is not set`) that the final `.config` does not hold. An
/// option that is "not set" may also be absent from `.config` (its dependencies are off).
pub fn fragment_mismatches(fragment: &str, config: &str) -> Vec<String> {
    let value = |key: &str| -> Option<&str> {
        config.lines().find_map(|l| {
            l.strip_prefix(key)
                .and_then(|r| r.strip_prefix('='))
                .or_else(|| (l == format!("# {key} is not set")).then_some("n"))
        })
    };
    let mut wrong = Vec::new();
    for line in fragment.lines().map(str::trim) {
        if let Some(key) = line
            .strip_prefix("# ")
            .and_then(|l| l.strip_suffix(" is not set"))
        {
            if let Some(v) = value(key).filter(|v| *v != "n") {
                wrong.push(format!("{key} wanted off, is {v}"));
            }
        } else if let Some((key, want)) =
            line.split_once('=').filter(|_| line.starts_with("CONFIG_"))
        {
            match value(key) {
                Some(v) if v == want => {}
                Some(v) => wrong.push(format!("{key} wanted {want}, is {v}")),
                None => wrong.push(format!("{key} wanted {want}, is absent")),
            }
        }
    }
    wrong
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragment_lines_must_hold_in_the_config() {
        let fragment =
            "# comment\nCONFIG_A=y\n# CONFIG_B is not set\n# CONFIG_C is not set\nCONFIG_D=64\n";
        let good = "CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_D=64\n";
        assert!(fragment_mismatches(fragment, good).is_empty());
        let bad = "CONFIG_A=m\nCONFIG_B=y\nCONFIG_C=y\n";
        assert_eq!(
            fragment_mismatches(fragment, bad),
            vec![
                "CONFIG_A wanted y, is m",
                "CONFIG_B wanted off, is y",
                "CONFIG_C wanted off, is y",
                "CONFIG_D wanted 64, is absent",
            ]
        );
        // A prefix of another option's name is not that option.
        assert_eq!(
            fragment_mismatches("CONFIG_A=y\n", "CONFIG_AB=y\n"),
            vec!["CONFIG_A wanted y, is absent"]
        );
    }

    #[test]
    fn the_fragment_mirrors_kernel_uvm_where_encfs_init_depends_on_it() {
        let text = fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .unwrap_or(Path::new("."))
                .join(FRAGMENT),
        )
        .expect("fragment");
        for off in [
            "BLK_DEV_NBD",
            "BLK_DEV_UBLK",
            "CUSE",
            "CONFIGFS_FS",
            "CRYPTO_AES_NI_INTEL",
        ] {
            assert!(
                text.lines()
                    .any(|l| l == format!("# CONFIG_{off} is not set")),
                "{off} must be off"
            );
        }
        for on in [
            "DM_CRYPT",
            "DM_VERITY",
            "DM_INTEGRITY",
            "BLK_DEV_LOOP",
            "FUSE_FS",
            "EXT4_FS",
            "IKCONFIG_PROC",
        ] {
            assert!(
                text.lines().any(|l| l == format!("CONFIG_{on}=y")),
                "{on} must be built in"
            );
        }
        assert!(!text
            .lines()
            .any(|l| l.starts_with("CONFIG_") && l.ends_with("=m")));
    }
}
