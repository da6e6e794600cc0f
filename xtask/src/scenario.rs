//! VM scenarios as data: one directory per scenario under `tests/vm/<name>/`.
//!
//! `scenario.toml` (the subset of TOML read by [`crate::tomlish`]; unknown keys are errors):
//!
//! ```toml
//! description = "what it proves"              # shown by --list
//! init = "encfs-init"                         # default: the static product binary is /init;
//!                                             # or a file of this directory (a busybox sh script)
//! init_args = ["run"]                         # after `--` on the kernel command line (default: none)
//! modules = ["dm-crypt", "xts"]               # packed with their modules.dep closure (soft deps NOT
//!                                             # followed); the manifest's kernel_modules are added
//! files = ["app.sh:/app.sh"]                  # extra files, SRC (relative to this dir):GUEST_PATH
//! host_tools = ["/usr/sbin/cryptsetup"]       # host binaries copied to the same path, with the shared
//!                                             # libraries and ld-linux that `ldd` lists (busybox sh
//!                                             # prefers its applets: call them by full path)
//! cargo_tests = ["root_dm"]                   # integration tests (tests/<name>.rs) built static for musl
//!                                             # and packed at /tests/<name>; run them from the manifest's
//!                                             # [app] (`--include-ignored --test-threads=1`): the T1 tier
//! product = "/bin/encfs-init"                 # also pack the product binary here (with a script /init
//!                                             # that starts helpers, then `exec`s it to stay PID 1)
//! prepare = "prepare.sh"                      # run on the host before packing, with ENCFS_INIT (the
//!                                             # product binary), OUT (an empty dir) and SCENARIO (this dir)
//! generated = ["fs.img:/blobs/fs.img"]        # files prepare wrote into OUT, SRC:GUEST_PATH
//! disk_mib = 64                               # a blank virtio disk of this size (/dev/vda)
//! boots = 2                                   # boot this many times in a row with the same disk; the
//!                                             # kernel command line gets encfs_boot=N (init's
//!                                             # environment); every boot must meet expect_status, the
//!                                             # console checks apply to all boots' lines together
//! busybox = true                              # /bin/busybox + applet links (default true)
//! expect_status = 0                           # the N of `encfs-init: exit status N` (the product; a
//!                                             # script init with no product prints
//!                                             # `vmtest: script exit status N`)
//! verdict_by = "script"                       # who prints the verdict: "product" (default when
//!                                             # the product is packed) or "script" (default
//!                                             # otherwise; also a script that outlives the product
//!                                             # and relays its status); the other's line fails
//! expect_console = ["hello-from-app"]         # substrings the console must contain
//! forbid_console = ["WARNING"]                # substrings it must not contain
//! expect_failure = "timeout"                  # rig self-tests only: "panic" | "timeout" | "no-verdict";
//!                                             # the scenario passes when the rig detects exactly that
//! timeout = 60                                # seconds for the whole boot (default 60)
//! memory = 1024                               # guest MiB (default 1024)
//! append = "foo=bar"                          # extra kernel command line
//! kernel = "azure-uvm"                        # the guest kernel: "debian" (default: Debian's 6.12 cloud
//!                                             # kernel, modules) or "azure-uvm" (built like Azure Linux's
//!                                             # kernel-uvm: no NBD/CUSE/configfs/AES-NI, all built in,
//!                                             # see xtask/kernels/azure-uvm.config); `modules` that it
//!                                             # has built in are noted, absent ones are not packed
//! extends = "demo"                            # start from ../demo/scenario.toml: every key of it applies
//!                                             # (its paths relative to its own directory, its
//!                                             # manifest.toml unless this directory has one), and the
//!                                             # keys here replace those of the same name (one level)
//! ```
//!
//! `manifest.toml`, when present, is copied verbatim to `/etc/encfs-init/manifest.toml` (the rig never judges
//! it, so a broken manifest is a valid test input). Adding a scenario is adding a directory.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::kernel::Flavor;
use crate::qemu::{FailureKind, Speaker};
use crate::tomlish::{self, Value};
use crate::util::{bail, Context, Result};

/// Where the product manifest goes in the guest.
pub const MANIFEST_GUEST_PATH: &str = "etc/encfs-init/manifest.toml";

/// What runs as `/init`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Init {
    /// The product's static musl binary.
    EncfsInit,
    /// A script (or binary) from the scenario directory.
    File(PathBuf),
}

/// What a scenario expects from the boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// The guest prints `encfs-init: exit status N` with this N and powers off.
    Status(i32),
    /// A rig self-test: the rig must report this failure.
    Failure(FailureKind),
}

/// One scenario, loaded and checked.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Directory name.
    pub name: String,
    /// One line for `--list`.
    pub description: String,
    /// What is `/init`.
    pub init: Init,
    /// Arguments for `/init`.
    pub init_args: Vec<String>,
    /// `manifest.toml` of the directory, if any.
    pub manifest: Option<PathBuf>,
    /// Modules to pack (before closure).
    pub modules: Vec<String>,
    /// (host source, guest path) pairs.
    pub files: Vec<(PathBuf, String)>,
    /// Host binaries packed with their shared libraries.
    pub host_tools: Vec<PathBuf>,
    /// Whether busybox and its applet links are packed.
    pub busybox: bool,
    /// The verdict wanted.
    pub expect: Expect,
    /// Console substrings required.
    pub console: Vec<String>,
    /// Console substrings forbidden.
    pub forbid: Vec<String>,
    /// Integration test binaries to build for musl and pack at `/tests/<name>`.
    pub cargo_tests: Vec<String>,
    /// Also pack the product binary at this guest path.
    pub product: Option<String>,
    /// A blank virtio disk of this many MiB.
    pub disk_mib: Option<u64>,
    /// Boots in a row (the disk is kept between them).
    pub boots: u32,
    /// Host script run before packing.
    pub prepare: Option<PathBuf>,
    /// Files the prepare script writes into its OUT dir: (name in OUT, guest path).
    pub generated: Vec<(String, String)>,
    /// Boot timeout.
    pub timeout: Duration,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// Extra kernel command line.
    pub append: String,
    /// The guest kernel.
    pub kernel: Flavor,
    /// Who must print the verdict line.
    pub verdict_by: Speaker,
}

impl Scenario {
    /// Whether the product binary must be built for this scenario.
    pub fn needs_encfs_init(&self) -> bool {
        packs_product(&self.init, &self.product)
    }

    /// A minimal script-init scenario the rig uses to probe an accelerator.
    pub fn probe(script: PathBuf) -> Self {
        Scenario {
            name: "accel-probe".into(),
            description: String::new(),
            init: Init::File(script),
            init_args: vec![],
            manifest: None,
            modules: vec![],
            files: vec![],
            host_tools: vec![],
            cargo_tests: vec![],
            product: None,
            disk_mib: None,
            boots: 1,
            prepare: None,
            generated: vec![],
            busybox: true,
            expect: Expect::Status(0),
            console: vec![],
            forbid: vec![],
            timeout: Duration::from_secs(30),
            memory_mib: 512,
            append: String::new(),
            kernel: Flavor::Debian,
            verdict_by: Speaker::Script,
        }
    }
}

/// Whether the guest gets the product: as its `/init`, or packed for a script to run.
fn packs_product(init: &Init, product: &Option<String>) -> bool {
    *init == Init::EncfsInit || product.is_some()
}

/// Every scenario under `root` (sorted by name).
pub fn load_all(root: &Path) -> Result<Vec<Scenario>> {
    let mut out = Vec::new();
    let entries = fs::read_dir(root).with_context(|| format!("reading {}", root.display()))?;
    for e in entries {
        let dir = e.context("reading tests/vm")?.path();
        if dir.join("scenario.toml").is_file() {
            out.push(load(&dir)?);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The scenario in `dir`.
pub fn load(dir: &Path) -> Result<Scenario> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let path = dir.join("scenario.toml");
    let own = read_keys(&path)?;
    // Every key with the directory its relative paths resolve against.
    let mut keys: BTreeMap<String, (Value, PathBuf)> = BTreeMap::new();
    let mut base_manifest = None;
    if let Some(v) = own.get("extends") {
        let Value::Str(base) = v else {
            bail!("{}: `extends` must be a string", path.display())
        };
        let base_dir = dir.parent().unwrap_or(dir).join(base);
        let base_path = base_dir.join("scenario.toml");
        let inherited = read_keys(&base_path)
            .with_context(|| format!("{}: extends = {base:?}", path.display()))?;
        if inherited.contains_key("extends") {
            bail!(
                "{}: extends a scenario that extends another (one level only)",
                path.display()
            );
        }
        base_manifest = Some(base_dir.join("manifest.toml")).filter(|m| m.is_file());
        keys.extend(
            inherited
                .into_iter()
                .map(|(k, v)| (k, (v, base_dir.clone()))),
        );
    }
    keys.extend(
        own.into_iter()
            .filter(|(k, _)| k != "extends")
            .map(|(k, v)| (k, (v, dir.to_path_buf()))),
    );
    let mut take_at = |k: &str| keys.remove(k);
    let ctx = |what: &str| format!("{}: `{what}`", path.display());

    let description =
        opt_str(take_at("description").map(|(v, _)| v), &ctx("description"))?.unwrap_or_default();
    let (init, init_dir) = split(take_at("init"), dir);
    let init = match opt_str(init, &ctx("init"))?.as_deref() {
        None | Some("encfs-init") => Init::EncfsInit,
        Some(f) => Init::File(existing(&init_dir, f)?),
    };
    let init_args = str_list(take_at("init_args").map(|(v, _)| v), &ctx("init_args"))?;
    let modules = str_list(take_at("modules").map(|(v, _)| v), &ctx("modules"))?;
    let mut files = Vec::new();
    let (files_v, files_dir) = split(take_at("files"), dir);
    for spec in str_list(files_v, &ctx("files"))? {
        let Some((src, dst)) = spec.split_once(':') else {
            bail!("{}: want SRC:GUEST_PATH, got `{spec}`", ctx("files"))
        };
        files.push((existing(&files_dir, src)?, dst.to_string()));
    }
    let mut host_tools = Vec::new();
    for t in str_list(take_at("host_tools").map(|(v, _)| v), &ctx("host_tools"))? {
        let p = PathBuf::from(&t);
        if !p.is_absolute() || !p.is_file() {
            bail!(
                "{}: `{t}` is not an absolute path to a host file",
                ctx("host_tools")
            );
        }
        host_tools.push(p);
    }
    let cargo_tests = str_list(take_at("cargo_tests").map(|(v, _)| v), &ctx("cargo_tests"))?;
    for t in &cargo_tests {
        if !dir.join("../..").join(format!("{t}.rs")).is_file() {
            bail!("{}: no tests/{t}.rs", ctx("cargo_tests"));
        }
    }
    let product = opt_str(take_at("product").map(|(v, _)| v), &ctx("product"))?;
    let disk_mib = opt_int(take_at("disk_mib").map(|(v, _)| v), &ctx("disk_mib"))?
        .map(|m| u64::try_from(m.clamp(1, 4096)).unwrap_or(64));
    let boots = opt_int(take_at("boots").map(|(v, _)| v), &ctx("boots"))?
        .map_or(1, |b| u32::try_from(b.clamp(1, 4)).unwrap_or(1));
    let (prepare_v, prepare_dir) = split(take_at("prepare"), dir);
    let prepare = match opt_str(prepare_v, &ctx("prepare"))? {
        Some(f) => Some(existing(&prepare_dir, &f)?),
        None => None,
    };
    let mut generated = Vec::new();
    for spec in str_list(take_at("generated").map(|(v, _)| v), &ctx("generated"))? {
        let Some((src, dst)) = spec.split_once(':') else {
            bail!("{}: want NAME:GUEST_PATH, got `{spec}`", ctx("generated"))
        };
        generated.push((src.to_string(), dst.to_string()));
    }
    if !generated.is_empty() && prepare.is_none() {
        bail!("{}: `generated` needs a `prepare` script", path.display());
    }
    let busybox = match take_at("busybox").map(|(v, _)| v) {
        None => true,
        Some(Value::Bool(b)) => b,
        Some(_) => bail!("{} must be a boolean", ctx("busybox")),
    };
    let status = opt_int(
        take_at("expect_status").map(|(v, _)| v),
        &ctx("expect_status"),
    )?;
    let failure = opt_str(
        take_at("expect_failure").map(|(v, _)| v),
        &ctx("expect_failure"),
    )?;
    let expect = match (status, failure) {
        (Some(s), None) => Expect::Status(
            i32::try_from(s).map_err(|_| crate::util::Error::msg(ctx("expect_status")))?,
        ),
        (None, Some(f)) => match FailureKind::parse(&f) {
            Some(k) => Expect::Failure(k),
            None => bail!(
                "{}: unknown failure `{f}` (panic, timeout, no-verdict)",
                ctx("expect_failure")
            ),
        },
        _ => bail!(
            "{}: set exactly one of expect_status and expect_failure",
            path.display()
        ),
    };
    let console = str_list(
        take_at("expect_console").map(|(v, _)| v),
        &ctx("expect_console"),
    )?;
    let forbid = str_list(
        take_at("forbid_console").map(|(v, _)| v),
        &ctx("forbid_console"),
    )?;
    let timeout = opt_int(take_at("timeout").map(|(v, _)| v), &ctx("timeout"))?.unwrap_or(60);
    let memory = opt_int(take_at("memory").map(|(v, _)| v), &ctx("memory"))?.unwrap_or(1024);
    let append = opt_str(take_at("append").map(|(v, _)| v), &ctx("append"))?.unwrap_or_default();
    let kernel = match opt_str(take_at("kernel").map(|(v, _)| v), &ctx("kernel"))? {
        None => Flavor::Debian,
        Some(k) => match Flavor::parse(&k) {
            Some(f) => f,
            None => bail!(
                "{}: unknown kernel `{k}` (debian, azure-uvm)",
                ctx("kernel")
            ),
        },
    };
    // The product when it is PID 1 (its own /init, or exec'd by the script); the script when no product is
    // packed, or when the script outlives the product and relays its status (`verdict_by = "script"`).
    let product_packed = packs_product(&init, &product);
    let verdict_by =
        match opt_str(take_at("verdict_by").map(|(v, _)| v), &ctx("verdict_by"))?.as_deref() {
            None if product_packed => Speaker::Product,
            None => Speaker::Script,
            Some("script") => Speaker::Script,
            Some("product") if product_packed => Speaker::Product,
            Some("product") => bail!(
                "{}: verdict_by = \"product\" but no product is packed (set product = ...)",
                ctx("verdict_by")
            ),
            Some(other) => bail!(
                "{}: unknown verdict_by `{other}` (product, script)",
                ctx("verdict_by")
            ),
        };
    if let Some(k) = keys.keys().next() {
        bail!("{}: unknown key `{k}`", path.display());
    }
    let manifest = Some(dir.join("manifest.toml"))
        .filter(|m| m.is_file())
        .or(base_manifest);
    Ok(Scenario {
        name,
        description,
        init,
        init_args,
        manifest,
        modules,
        files,
        host_tools,
        cargo_tests,
        product,
        disk_mib,
        boots,
        prepare,
        generated,
        busybox,
        expect,
        console,
        forbid,
        timeout: Duration::from_secs(u64::try_from(timeout.clamp(1, 3600)).unwrap_or(60)),
        memory_mib: u32::try_from(memory.clamp(64, 16384)).unwrap_or(1024),
        append,
        kernel,
        verdict_by,
    })
}

/// The top-level keys of a scenario.toml.
fn read_keys(path: &Path) -> Result<BTreeMap<String, Value>> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    tomlish::parse(&text).map_err(|e| crate::util::Error::msg(format!("{}: {e}", path.display())))
}

/// A key's value and the directory its paths are relative to (`dir` when the key is absent).
fn split(v: Option<(Value, PathBuf)>, dir: &Path) -> (Option<Value>, PathBuf) {
    match v {
        Some((v, d)) => (Some(v), d),
        None => (None, dir.to_path_buf()),
    }
}

fn existing(dir: &Path, rel: &str) -> Result<PathBuf> {
    let p = dir.join(rel);
    if !p.is_file() {
        bail!("{}: no file {rel}", dir.display());
    }
    Ok(p)
}

fn opt_str(v: Option<Value>, what: &str) -> Result<Option<String>> {
    match v {
        None => Ok(None),
        Some(Value::Str(s)) => Ok(Some(s)),
        Some(_) => bail!("{what} must be a string"),
    }
}

fn opt_int(v: Option<Value>, what: &str) -> Result<Option<i64>> {
    match v {
        None => Ok(None),
        Some(Value::Int(i)) => Ok(Some(i)),
        Some(_) => bail!("{what} must be an integer"),
    }
}

fn str_list(v: Option<Value>, what: &str) -> Result<Vec<String>> {
    match v {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|i| match i {
                Value::Str(s) => Ok(s),
                _ => bail!("{what} must be an array of strings"),
            })
            .collect(),
        Some(_) => bail!("{what} must be an array of strings"),
    }
}

/// Select scenarios by name; a trailing `*` matches a prefix (`signal-death-*`). No pattern selects all.
pub fn select(all: Vec<Scenario>, patterns: &[String]) -> Result<Vec<Scenario>> {
    if patterns.is_empty() {
        return Ok(all);
    }
    let matches = |p: &str, n: &str| p.strip_suffix('*').map_or(p == n, |pre| n.starts_with(pre));
    for p in patterns {
        if !all.iter().any(|s| matches(p, &s.name)) {
            bail!("no scenario matches `{p}` (see `cargo xtask vmtest --list`)");
        }
    }
    Ok(all
        .into_iter()
        .filter(|s| patterns.iter().any(|p| matches(p, &s.name)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        fs::create_dir_all(dir).unwrap();
        fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn extends_takes_the_base_keys_with_their_paths_and_replaces_the_named_ones() {
        let root = std::env::temp_dir().join(format!("xtask-extends-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let base = root.join("base");
        write(
            &base,
            "scenario.toml",
            "description = \"base\"\ninit = \"init.sh\"\nfiles = [\"app.sh:/app.sh\"]\n\
             modules = [\"nbd\"]\nexpect_status = 3\nexpect_console = [\"a\"]\ntimeout = 99\n",
        );
        write(&base, "init.sh", "#!/bin/sh\n");
        write(&base, "app.sh", "#!/bin/sh\n");
        write(&base, "manifest.toml", "test_mode = true\n");
        let child = root.join("child");
        write(
            &child,
            "scenario.toml",
            "description = \"child\"\nextends = \"base\"\nkernel = \"azure-uvm\"\nexpect_console = [\"b\"]\n",
        );
        let s = load(&child).unwrap();
        assert_eq!(s.description, "child");
        assert_eq!(s.kernel, Flavor::AzureUvm);
        assert_eq!(s.init, Init::File(base.join("init.sh")));
        assert_eq!(s.files, vec![(base.join("app.sh"), "/app.sh".to_string())]);
        assert_eq!(s.modules, vec!["nbd"]);
        assert_eq!(s.expect, Expect::Status(3));
        assert_eq!(s.console, vec!["b"]);
        assert_eq!(s.timeout, Duration::from_secs(99));
        assert_eq!(s.manifest, Some(base.join("manifest.toml")));
        // The base itself boots Debian's kernel.
        assert_eq!(load(&base).unwrap().kernel, Flavor::Debian);

        // One level only, and unknown kernels are refused.
        let grandchild = root.join("grandchild");
        write(&grandchild, "scenario.toml", "extends = \"child\"\n");
        assert!(load(&grandchild).is_err());
        write(
            &child,
            "scenario.toml",
            "extends = \"base\"\nkernel = \"windows\"\n",
        );
        let e = load(&child).unwrap_err().to_string();
        assert!(e.contains("unknown kernel `windows`"), "{e}");
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn the_verdict_speaker_follows_the_product_unless_the_script_relays() {
        let root = std::env::temp_dir().join(format!("xtask-speaker-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let speaker = |toml: &str| {
            write(
                &root,
                "scenario.toml",
                &format!("expect_status = 0\n{toml}"),
            );
            write(&root, "init.sh", "#!/bin/sh\n");
            load(&root).map(|s| s.verdict_by).map_err(|e| e.to_string())
        };
        assert_eq!(speaker(""), Ok(Speaker::Product), "the product is /init");
        assert_eq!(speaker("init = \"init.sh\"\n"), Ok(Speaker::Script));
        let exec = "init = \"init.sh\"\nproduct = \"/bin/encfs-init\"\n";
        assert_eq!(speaker(exec), Ok(Speaker::Product));
        let relay = format!("{exec}verdict_by = \"script\"\n");
        assert_eq!(speaker(&relay), Ok(Speaker::Script));
        let e = speaker("init = \"init.sh\"\nverdict_by = \"product\"\n").unwrap_err();
        assert!(e.contains("no product is packed"), "{e}");
        let e = speaker("verdict_by = \"rig\"\n").unwrap_err();
        assert!(e.contains("unknown verdict_by `rig`"), "{e}");
        let _ = fs::remove_dir_all(&root);
    }
}
