//! Builds a scenario's initramfs: `/init`, busybox, kernel modules with their dependency closure, the manifest
//! and the scenario's files, as a gzip-compressed cpio newc archive.
//!
//! Guest layout (the contract scripts and the product rely on):
//!
//! | path | what |
//! |---|---|
//! | `/init` | the static `encfs-init`, or the scenario's script |
//! | `/bin/busybox`, `/bin/sh`, … | busybox-static and a link per applet at its usual path (`busybox --list-full`) |
//! | `host_tools` | host binaries at their own paths with `ldd`'s libraries and loader; they replace same-named applets |
//! | `/lib/modules/<release>/` | the wanted modules and their `modules.dep` closure, **decompressed** to `.ko`, with a `modules.dep` listing only them (same format as depmod's: `path.ko: dep.ko ...`, relative paths) and the kernel's `modules.builtin` |
//! | `/etc/vmtest/modules.load` | the packed modules' relative paths, dependencies first (what a script `insmod`s in order) |
//! | `/etc/vmtest/release`, `/etc/vmtest/scenario` | `uname -r` of the guest kernel, the scenario name |
//! | `/etc/vmtest/lib.sh` | the scripts' shell helpers (`tests/vm/common/lib.sh`: `wait_for`, ...), when the run has them |
//! | `/etc/encfs-init/manifest.toml` | the scenario's manifest, verbatim |
//! | `/dev/console`, `/dev/null` | device nodes: the kernel opens `/dev/console` for init before any devtmpfs exists |
//!
//! Soft dependencies (`softdep`, e.g. dm-crypt → the cipher modules, ext4 → crc32c) are not followed: there is
//! no modprobe or udev at run time, so a scenario lists them. Modules that are built into the kernel are noted
//! and skipped; unknown names are reported and skipped (the product's handling of a missing module is itself
//! testable).

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::cpio::Archive;
use crate::kernel::Kernel;
use crate::scenario::{Init, Scenario, MANIFEST_GUEST_PATH};
use crate::tomlish;
use crate::util::{bail, run_captured, stdout_of, write_whole, Context, OrErr, Result};

/// `modules.dep` of the kernel, indexed by canonical module name (`dm_crypt`).
#[derive(Debug)]
pub struct ModuleIndex {
    release: String,
    dir: PathBuf,
    /// name → (path relative to `dir` as in modules.dep, direct dependency paths)
    deps: HashMap<String, (String, Vec<String>)>,
    builtin: HashSet<String>,
    /// Decompressed `.ko` files, kept across runs.
    ko_cache: PathBuf,
}

/// The canonical module name of a name or path: basename without `.ko[.xz|.zst|.gz]`, `-` as `_`.
pub fn module_name(name_or_path: &str) -> String {
    let base = name_or_path.rsplit('/').next().unwrap_or(name_or_path);
    let base = [".xz", ".zst", ".gz"]
        .iter()
        .fold(base, |b, s| b.strip_suffix(s).unwrap_or(b));
    base.strip_suffix(".ko").unwrap_or(base).replace('-', "_")
}

/// A `modules.dep` path without its compression suffix.
fn uncompressed_rel(rel: &str) -> &str {
    [".xz", ".zst", ".gz"]
        .iter()
        .fold(rel, |r, s| r.strip_suffix(s).unwrap_or(r))
}

/// What [`ModuleIndex::closure`] found.
#[derive(Debug, Default)]
pub struct Closure {
    /// Paths from modules.dep, dependencies first.
    pub load_order: Vec<String>,
    /// Wanted names that are built into the kernel.
    pub builtin: Vec<String>,
    /// Wanted names the kernel does not have at all.
    pub missing: Vec<String>,
}

impl ModuleIndex {
    /// Read `modules.dep` and `modules.builtin` of `kernel`.
    pub fn load(kernel: &Kernel, cache: &Path) -> Result<Self> {
        let dep_path = kernel.modules.join("modules.dep");
        let text = fs::read_to_string(&dep_path)
            .with_context(|| format!("reading {}", dep_path.display()))?;
        let mut deps = HashMap::new();
        for line in text.lines() {
            let Some((m, d)) = line.split_once(':') else {
                continue;
            };
            let list = d.split_whitespace().map(str::to_string).collect();
            deps.insert(module_name(m), (m.to_string(), list));
        }
        let builtin = fs::read_to_string(kernel.modules.join("modules.builtin"))
            .unwrap_or_default()
            .lines()
            .map(module_name)
            .collect();
        Ok(ModuleIndex {
            release: kernel.release.clone(),
            dir: kernel.modules.clone(),
            deps,
            builtin,
            ko_cache: cache.join("kernel").join(format!("ko-{}", kernel.release)),
        })
    }

    /// The wanted modules and everything they depend on (per modules.dep), in load order.
    pub fn closure(&self, wanted: &[String]) -> Closure {
        let mut c = Closure::default();
        let mut seen = HashSet::new();
        for w in wanted {
            let n = module_name(w);
            if self.deps.contains_key(&n) {
                self.visit(&n, &mut seen, &mut c.load_order);
            } else if self.builtin.contains(&n) {
                c.builtin.push(w.clone());
            } else {
                c.missing.push(w.clone());
            }
        }
        c
    }

    fn visit(&self, name: &str, seen: &mut HashSet<String>, order: &mut Vec<String>) {
        if !seen.insert(name.to_string()) {
            return;
        }
        let Some((rel, deps)) = self.deps.get(name) else {
            return;
        };
        for d in deps {
            self.visit(&module_name(d), seen, order);
        }
        order.push(rel.clone());
    }

    /// The decompressed contents of module `rel` (from modules.dep), cached on disk.
    fn ko(&self, rel: &str) -> Result<Vec<u8>> {
        let cached = self.ko_cache.join(uncompressed_rel(rel));
        if let Ok(data) = fs::read(&cached) {
            return Ok(data);
        }
        let src = self.dir.join(rel);
        let tool = match rel.rsplit('.').next() {
            Some("xz") => Some("xz"),
            Some("zst") => Some("zstd"),
            Some("gz") => Some("gzip"),
            _ => None,
        };
        let data = match tool {
            Some(t) => run_captured(Command::new(t).arg("-dc").arg(&src))?.stdout,
            None => fs::read(&src).with_context(|| format!("reading {}", src.display()))?,
        };
        if let Some(parent) = cached.parent() {
            fs::create_dir_all(parent).context("creating module cache")?;
        }
        write_whole(&cached, &data).context("caching module")?;
        Ok(data)
    }
}

/// What every image shares: read once per run.
#[derive(Debug)]
pub struct Common {
    /// busybox-static's binary.
    pub busybox: Vec<u8>,
    /// Applet paths, relative (`bin/sh`, `usr/bin/seq`).
    pub applets: Vec<String>,
    /// The product binary, when it was built.
    pub encfs_init: Option<Vec<u8>>,
    /// The scripts' shell helpers (`tests/vm/common/lib.sh`), for `/etc/vmtest/lib.sh`.
    pub shell_lib: Option<Vec<u8>>,
}

impl Common {
    /// Read busybox and list its applets; `encfs_init` is the built binary, `shell_lib` the scripts'
    /// helpers, if any.
    pub fn load(encfs_init: Option<&Path>, shell_lib: Option<&Path>) -> Result<Self> {
        let bb = Path::new("/bin/busybox");
        let busybox = fs::read(bb).context("reading /bin/busybox (busybox-static)")?;
        let applets = stdout_of(Command::new(bb).arg("--list-full"))?
            .lines()
            .map(str::to_string)
            .filter(|a| !a.is_empty() && !a.ends_with("/busybox"))
            .collect();
        let read = |p: Option<&Path>| {
            p.map(|p| fs::read(p).with_context(|| format!("reading {}", p.display())))
                .transpose()
        };
        let encfs_init = read(encfs_init)?;
        let shell_lib = read(shell_lib)?;
        Ok(Common {
            busybox,
            applets,
            encfs_init,
            shell_lib,
        })
    }
}

/// What a built image contains, for the report.
#[derive(Debug)]
pub struct Built {
    /// Module paths packed, in load order.
    pub modules: Vec<String>,
    /// Compressed size in bytes.
    pub bytes: u64,
    /// Warnings (missing or built-in modules).
    pub notes: Vec<String>,
}

/// Build `scenario`'s image into `out` (gzip-compressed cpio).
pub fn build(
    scenario: &Scenario,
    common: &Common,
    index: &ModuleIndex,
    out: &Path,
) -> Result<Built> {
    let mut a = Archive::new();
    for d in [
        "dev", "proc", "sys", "run", "root", "mnt", "etc", "usr/bin", "usr/sbin",
    ] {
        a.dir(d, 0o755);
    }
    a.dir("tmp", 0o1777);
    a.char_dev("dev/console", 0o600, 5, 1);
    a.char_dev("dev/null", 0o666, 1, 3);
    a.file(
        "etc/passwd",
        0o644,
        b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n".to_vec(),
    );
    a.file(
        "etc/group",
        0o644,
        b"root:x:0:\nnogroup:x:65534:\n".to_vec(),
    );
    a.file(
        "etc/hosts",
        0o644,
        b"127.0.0.1 localhost\n::1 localhost\n".to_vec(),
    );
    a.file(
        "etc/vmtest/scenario",
        0o644,
        format!("{}\n", scenario.name).into_bytes(),
    );
    a.file(
        "etc/vmtest/release",
        0o644,
        format!("{}\n", index.release).into_bytes(),
    );
    if let Some(lib) = &common.shell_lib {
        a.file("etc/vmtest/lib.sh", 0o644, lib.clone());
    }

    if scenario.busybox {
        a.file("bin/busybox", 0o755, common.busybox.clone());
        for applet in &common.applets {
            a.symlink(applet, "/bin/busybox");
        }
    }
    match &scenario.init {
        Init::EncfsInit => match &common.encfs_init {
            Some(bin) => a.file("init", 0o755, bin.clone()),
            None => bail!("the encfs-init binary was not built"),
        },
        Init::File(p) => a.file("init", 0o755, read(p)?),
    }
    if let Some(at) = &scenario.product {
        match &common.encfs_init {
            Some(bin) => a.file(at.trim_start_matches('/'), 0o755, bin.clone()),
            None => bail!("the encfs-init binary was not built"),
        }
    }

    let mut wanted = scenario.modules.clone();
    let mut notes = Vec::new();
    if let Some(m) = &scenario.manifest {
        let text = fs::read_to_string(m).with_context(|| format!("reading {}", m.display()))?;
        wanted.extend(tomlish::manifest_modules(&text).unwrap_or_default());
        a.file(MANIFEST_GUEST_PATH, 0o644, text.into_bytes());
    }
    let closure = index.closure(&wanted);
    for m in &closure.missing {
        notes.push(format!(
            "module {m} is not in kernel {}: not packed",
            index.release
        ));
    }
    for m in &closure.builtin {
        notes.push(format!("module {m} is built into kernel {}", index.release));
    }
    let mdir = format!("lib/modules/{}", index.release);
    let mut dep = String::new();
    let mut order = String::new();
    for rel in &closure.load_order {
        let ko = uncompressed_rel(rel);
        a.file(&format!("{mdir}/{ko}"), 0o644, index.ko(rel)?);
        let deps: Vec<&str> = index.deps[&module_name(rel)]
            .1
            .iter()
            .map(|d| uncompressed_rel(d))
            .collect();
        dep.push_str(&format!(
            "{ko}:{}{}\n",
            if deps.is_empty() { "" } else { " " },
            deps.join(" ")
        ));
        order.push_str(ko);
        order.push('\n');
    }
    a.file(&format!("{mdir}/modules.dep"), 0o644, dep.into_bytes());
    if let Ok(b) = fs::read(index.dir.join("modules.builtin")) {
        a.file(&format!("{mdir}/modules.builtin"), 0o644, b);
    }
    a.file("etc/vmtest/modules.load", 0o644, order.into_bytes());

    for (src, dst) in &scenario.files {
        let mode = fs::metadata(src)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0o644);
        a.file(dst, mode, read(src)?);
    }

    for tool in &scenario.host_tools {
        add_host_tool(&mut a, tool)?;
        // The real tool wins over a busybox applet of the same name wherever that sits on PATH.
        let name = tool
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        for applet in common
            .applets
            .iter()
            .filter(|p| p.rsplit('/').next() == Some(name.as_str()))
        {
            if Path::new("/").join(applet) != *tool {
                a.remove(applet);
            }
        }
    }

    let bytes = write_gzip(&a, out)?;
    Ok(Built {
        modules: closure.load_order,
        bytes,
        notes,
    })
}

/// Copy a dynamically linked host binary to the same path in the image, with every library `ldd` resolves
/// (`libx.so => /lib/.../libx.so (0x...)`) and the dynamic loader (the line that is just a path).
fn add_host_tool(a: &mut Archive, tool: &Path) -> Result<()> {
    let guest = |p: &Path| p.to_string_lossy().trim_start_matches('/').to_string();
    let mode = fs::metadata(tool)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0o755);
    a.file(&guest(tool), mode, read(tool)?);
    // `ldd` exits 1 for a static binary ("not a dynamic executable"): nothing more to copy then.
    let Ok(out) = Command::new("ldd").arg(tool).output() else {
        bail!("cannot run ldd")
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let path = match line.split_once("=>") {
            Some((_, right)) => right.split_whitespace().next(),
            None => line
                .split_whitespace()
                .next()
                .filter(|p| p.starts_with('/')),
        };
        if let Some(lib) = path.filter(|p| p.starts_with('/')) {
            let lib = Path::new(lib);
            a.file(&guest(lib), 0o755, read(lib)?);
        }
    }
    Ok(())
}

fn read(p: &Path) -> Result<Vec<u8>> {
    fs::read(p).with_context(|| format!("reading {}", p.display()))
}

/// Serialize through `gzip -1` (fast to write and, under TCG, fast for the guest to inflate).
fn write_gzip(a: &Archive, out: &Path) -> Result<u64> {
    let file = fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut child = Command::new("gzip")
        .args(["-1", "-n", "-c"])
        .stdin(Stdio::piped())
        .stdout(file)
        .spawn()
        .context("running gzip")?;
    let mut stdin = child.stdin.take().or_err(|| "gzip has no stdin")?;
    let mut buf = Vec::with_capacity(a.payload_bytes() + (1 << 16));
    a.write_to(&mut buf).context("writing cpio")?;
    stdin.write_all(&buf).context("feeding gzip")?;
    drop(stdin);
    let status = child.wait().context("waiting for gzip")?;
    if !status.success() {
        bail!("gzip failed ({status})");
    }
    Ok(fs::metadata(out).map(|m| m.len()).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_canonical() {
        assert_eq!(module_name("kernel/drivers/md/dm-crypt.ko.xz"), "dm_crypt");
        assert_eq!(module_name("aesni-intel"), "aesni_intel");
        assert_eq!(module_name("nbd.ko"), "nbd");
    }

    /// Two scenarios build their images at once (vmtest --jobs 2) and share the module cache: a reader must
    /// never see a module another thread is still writing (CI once booted a half-written crypto_simd.ko:
    /// "insmod: short read").
    #[test]
    fn module_cache_is_never_seen_half_written() {
        let tmp = std::env::temp_dir().join(format!("xtask-ko-cache-{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        let src = tmp.join("src");
        fs::create_dir_all(src.join("k")).unwrap();
        // 8 MiB of bytes that gzip cannot shrink to nothing, so a write takes a while.
        let mut x: u32 = 0x9e37_79b9;
        let module: Vec<u8> = (0..8 << 20)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x >> 24) as u8
            })
            .collect();
        fs::write(src.join("k/big.ko"), &module).unwrap();
        let gz = Command::new("gzip")
            .arg("-1")
            .arg(src.join("k/big.ko"))
            .status()
            .unwrap();
        assert!(gz.success());
        for round in 0..6 {
            let idx = std::sync::Arc::new(ModuleIndex {
                release: "r".into(),
                dir: src.clone(),
                deps: HashMap::new(),
                builtin: HashSet::new(),
                ko_cache: tmp.join(format!("cache-{round}")),
            });
            let readers: Vec<_> = (0..4)
                .map(|_| {
                    let idx = idx.clone();
                    std::thread::spawn(move || {
                        (0..20)
                            .map(|_| idx.ko("k/big.ko.gz").unwrap().len())
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            for r in readers {
                for len in r.join().unwrap() {
                    assert_eq!(
                        len,
                        module.len(),
                        "round {round}: a reader saw a partial module"
                    );
                }
            }
        }
        let _ = fs::remove_dir_all(&tmp);
    }

    #[test]
    fn closure_puts_dependencies_first_once() {
        let idx = ModuleIndex {
            release: "r".into(),
            dir: PathBuf::new(),
            deps: [
                (
                    "dm_crypt",
                    "k/dm-crypt.ko.xz",
                    vec!["k/dm-mod.ko.xz", "k/dax.ko.xz"],
                ),
                ("dm_mod", "k/dm-mod.ko.xz", vec!["k/dax.ko.xz"]),
                ("dax", "k/dax.ko.xz", vec![]),
                ("nbd", "k/nbd.ko.xz", vec![]),
            ]
            .into_iter()
            .map(|(n, p, d)| {
                (
                    n.to_string(),
                    (p.to_string(), d.into_iter().map(String::from).collect()),
                )
            })
            .collect(),
            builtin: ["ext4".to_string()].into(),
            ko_cache: PathBuf::new(),
        };
        let c = idx.closure(&[
            "dm-crypt".into(),
            "dm_mod".into(),
            "ext4".into(),
            "nope".into(),
            "nbd".into(),
        ]);
        assert_eq!(
            c.load_order,
            [
                "k/dax.ko.xz",
                "k/dm-mod.ko.xz",
                "k/dm-crypt.ko.xz",
                "k/nbd.ko.xz"
            ]
        );
        assert_eq!(c.builtin, ["ext4"]);
        assert_eq!(c.missing, ["nope"]);
    }
}
