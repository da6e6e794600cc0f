//! Kernel modules, as a VM's PID 1: resolve names through `modules.dep`, load dependencies first,
//! `finit_module(2)` each.
//!
//! `depmod` writes `/lib/modules/$(uname -r)/modules.dep`, one line per module:
//! `kernel/drivers/md/dm-crypt.ko.xz: kernel/drivers/md/dm-mod.ko.xz ...`, the paths relative to that
//! directory. Module names treat `-` and `_` as the same character (`dm-crypt` is `dm_crypt`), as modprobe
//! does. Only hard dependencies are followed: soft ones (`xts`, `aesni-intel` for dm-crypt, `crc32c` for
//! ext4) must be listed in the plan. Modules built into the kernel (`modules.builtin`) are skipped.
//! Compressed modules are handed to the kernel as they are (`MODULE_INIT_COMPRESSED_FILE`, Linux ≥ 6.4 with
//! `CONFIG_MODULE_DECOMPRESS`). A module that is already loaded (`EEXIST`) is fine.
//!
//! In a container the utility VM's kernel has what it has: we log the list and skip it.

use nix::errno::Errno;
use nix::kmod::{finit_module, ModuleInitFlags};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// `MODULE_INIT_COMPRESSED_FILE` from `<linux/module.h>` (not in nix's flags yet).
const MODULE_INIT_COMPRESSED_FILE: u32 = 4;

/// Errors of module loading.
#[derive(Debug)]
pub enum Error {
    /// `modules.dep` could not be read.
    ReadIndex {
        /// Its path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A line of `modules.dep` is not `path: deps...`.
    Parse {
        /// 1-based line number.
        line: usize,
    },
    /// A requested module is neither in `modules.dep` nor built in.
    Missing {
        /// The name as requested.
        module: String,
        /// The module directory searched.
        dir: PathBuf,
    },
    /// The kernel refused a module.
    Load {
        /// Module name.
        module: String,
        /// Its file.
        path: PathBuf,
        /// The cause.
        source: Errno,
    },
    /// A module file could not be opened.
    Open {
        /// Its file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::ReadIndex { path, .. } => write!(f, "Cannot read {}", path.display()),
            Error::Parse { line } => write!(f, "modules.dep line {line} is not `path: dependencies`"),
            Error::Missing { module, dir } => write!(
                f,
                "Kernel module {module} is not in {}/modules.dep nor built in; fix: add it to the initramfs \
                 and run depmod, or remove it from kernel_modules",
                dir.display()
            ),
            Error::Load { module, path, .. } => write!(f, "Cannot load kernel module {module} ({})", path.display()),
            Error::Open { path, .. } => write!(f, "Cannot open {}", path.display()),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::ReadIndex { source, .. } | Error::Open { source, .. } => Some(source),
            Error::Load { source, .. } => Some(source),
            Error::Parse { .. } | Error::Missing { .. } => None,
        }
    }
}

/// Canonical module name: `-` and `_` are the same.
pub fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// The module name of a path in `modules.dep`: basename without `.ko` and compression suffix, normalized.
pub fn name_of(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    let stem = base.split(".ko").next().unwrap_or(base);
    normalize(stem)
}

/// The parsed `modules.dep`: module name → (path, direct dependency paths).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ModulesDep {
    entries: HashMap<String, (String, Vec<String>)>,
}

impl ModulesDep {
    /// Parse the text of `modules.dep` (blank lines and `#` comments are skipped).
    pub fn parse(text: &str) -> Result<Self, Error> {
        let mut entries = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (path, deps) = line.split_once(':').ok_or(Error::Parse { line: i + 1 })?;
            let path = path.trim();
            if path.is_empty() {
                return Err(Error::Parse { line: i + 1 });
            }
            let deps = deps.split_whitespace().map(str::to_owned).collect();
            entries.insert(name_of(path), (path.to_owned(), deps));
        }
        Ok(Self { entries })
    }

    /// The relative paths to load, dependencies before dependents, each once, for the modules `wanted`
    /// (skipping those in `builtin`, normalized names).
    pub fn load_order(
        &self,
        wanted: &[String],
        builtin: &HashSet<String>,
        dir: &Path,
    ) -> Result<Vec<String>, Error> {
        let mut order = Vec::new();
        let mut seen = HashSet::new();
        for w in wanted {
            let name = normalize(w);
            if builtin.contains(&name) {
                continue;
            }
            if !self.entries.contains_key(&name) {
                return Err(Error::Missing {
                    module: w.clone(),
                    dir: dir.to_owned(),
                });
            }
            self.visit(&name, &mut seen, &mut order);
        }
        Ok(order)
    }

    /// Depth-first, dependencies first. `seen` is marked on entry, so a (malformed) cycle terminates.
    fn visit(&self, name: &str, seen: &mut HashSet<String>, order: &mut Vec<String>) {
        if !seen.insert(name.to_owned()) {
            return;
        }
        let Some((path, deps)) = self.entries.get(name) else {
            return;
        };
        for dep in deps {
            let dep_name = name_of(dep);
            if self.entries.contains_key(&dep_name) {
                self.visit(&dep_name, seen, order);
            } else if seen.insert(dep_name) {
                // Listed as a dependency but without its own line: still load it, before us.
                order.push(dep.clone());
            }
        }
        order.push(path.clone());
    }
}

/// Names in `modules.builtin` (one path per line), normalized.
pub fn parse_builtin(text: &str) -> HashSet<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(name_of)
        .collect()
}

/// Load `wanted` and their dependencies from `/lib/modules/<release>`.
pub fn load(wanted: &[String]) -> Result<usize, Error> {
    // uname -r, from /proc (mounted by then): nix's uname needs a crate feature we don't otherwise use.
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    load_from(&Path::new("/lib/modules").join(release.trim()), wanted)
}

/// Load `wanted` from module directory `dir`; returns how many files were newly loaded.
pub fn load_from(dir: &Path, wanted: &[String]) -> Result<usize, Error> {
    let dep_path = dir.join("modules.dep");
    let text = std::fs::read_to_string(&dep_path).map_err(|source| Error::ReadIndex {
        path: dep_path,
        source,
    })?;
    let dep = ModulesDep::parse(&text)?;
    let builtin = std::fs::read_to_string(dir.join("modules.builtin"))
        .map(|t| parse_builtin(&t))
        .unwrap_or_default();
    let mut loaded = 0;
    for rel in dep.load_order(wanted, &builtin, dir)? {
        let path = dir.join(&rel);
        let file = std::fs::File::open(&path).map_err(|source| Error::Open {
            path: path.clone(),
            source,
        })?;
        let compressed = [".xz", ".zst", ".gz"].iter().any(|s| rel.ends_with(s));
        let flags = if compressed {
            ModuleInitFlags::from_bits_retain(MODULE_INIT_COMPRESSED_FILE)
        } else {
            ModuleInitFlags::empty()
        };
        match finit_module(&file, c"", flags) {
            Ok(()) => {
                log::debug!("loaded kernel module {}", name_of(&rel));
                loaded += 1;
            }
            Err(Errno::EEXIST) => log::debug!("kernel module {} already loaded", name_of(&rel)),
            Err(source) => {
                return Err(Error::Load {
                    module: name_of(&rel),
                    path,
                    source,
                })
            }
        }
    }
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "\
kernel/drivers/md/dm-crypt.ko.xz: kernel/drivers/md/dm-mod.ko.xz kernel/lib/crypto/libaes.ko
kernel/drivers/md/dm-mod.ko.xz:
kernel/lib/crypto/libaes.ko:

# a comment
kernel/drivers/block/nbd.ko.zst:
kernel/arch/x86/crypto/aesni-intel.ko.xz: kernel/crypto/crypto_simd.ko.xz kernel/crypto/cryptd.ko.xz
kernel/crypto/crypto_simd.ko.xz: kernel/crypto/cryptd.ko.xz
kernel/crypto/cryptd.ko.xz:
";

    fn order(wanted: &[&str], builtin: &[&str]) -> Result<Vec<String>, Error> {
        let dep = ModulesDep::parse(DEP).unwrap();
        let wanted: Vec<String> = wanted.iter().map(|s| (*s).to_owned()).collect();
        let builtin = builtin.iter().map(|s| name_of(s)).collect();
        dep.load_order(&wanted, &builtin, Path::new("/lib/modules/x"))
    }

    #[test]
    fn names_ignore_dirs_suffixes_and_dashes() {
        assert_eq!(name_of("kernel/drivers/md/dm-crypt.ko.xz"), "dm_crypt");
        assert_eq!(name_of("kernel/drivers/block/nbd.ko"), "nbd");
        assert_eq!(name_of("aesni-intel.ko.zst"), "aesni_intel");
        assert_eq!(normalize("dm-crypt"), normalize("dm_crypt"));
    }

    #[test]
    fn dependencies_load_first_and_once() {
        assert_eq!(
            order(&["dm-crypt", "dm_mod"], &[]).unwrap(),
            vec![
                "kernel/drivers/md/dm-mod.ko.xz",
                "kernel/lib/crypto/libaes.ko",
                "kernel/drivers/md/dm-crypt.ko.xz"
            ]
        );
        // Transitive: aesni needs crypto_simd which needs cryptd; cryptd comes first, once.
        assert_eq!(
            order(&["aesni_intel"], &[]).unwrap(),
            vec![
                "kernel/crypto/cryptd.ko.xz",
                "kernel/crypto/crypto_simd.ko.xz",
                "kernel/arch/x86/crypto/aesni-intel.ko.xz"
            ]
        );
    }

    #[test]
    fn builtin_modules_are_skipped() {
        assert_eq!(
            order(&["dm_mod", "nbd"], &["kernel/drivers/md/dm-mod.ko"]).unwrap(),
            vec!["kernel/drivers/block/nbd.ko.zst"]
        );
        let builtin = parse_builtin("kernel/fs/ext4/ext4.ko\n\nkernel/crypto/crc32c_generic.ko\n");
        assert!(builtin.contains("ext4") && builtin.contains("crc32c_generic"));
    }

    #[test]
    fn a_missing_module_names_itself_and_the_fix() {
        let err = order(&["nbd", "dm-integrity"], &[]).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, Error::Missing { ref module, .. } if module == "dm-integrity"),
            "{err:?}"
        );
        assert!(
            msg.contains("dm-integrity") && msg.contains("/lib/modules/x/modules.dep"),
            "{msg}"
        );
        assert!(msg.contains("fix:"), "{msg}");
    }

    #[test]
    fn malformed_lines_are_rejected_with_their_number() {
        assert!(matches!(
            ModulesDep::parse("a.ko:\nno colon here\n"),
            Err(Error::Parse { line: 2 })
        ));
        assert!(matches!(
            ModulesDep::parse(": x.ko\n"),
            Err(Error::Parse { line: 1 })
        ));
        assert_eq!(ModulesDep::parse("").unwrap(), ModulesDep::default());
    }

    #[test]
    fn cycles_and_dangling_dependencies_terminate() {
        let dep = ModulesDep::parse("a.ko: b.ko\nb.ko: a.ko\nc.ko: z.ko\n").unwrap();
        let none = HashSet::new();
        let dir = Path::new("/m");
        assert_eq!(
            dep.load_order(&["a".into()], &none, dir).unwrap(),
            vec!["b.ko", "a.ko"]
        );
        assert_eq!(
            dep.load_order(&["c".into()], &none, dir).unwrap(),
            vec!["z.ko", "c.ko"]
        );
    }

    #[test]
    fn loading_from_a_directory_without_index_fails_clearly() {
        let err = load_from(Path::new("/nonexistent-modules-dir"), &["nbd".into()]).unwrap_err();
        assert!(
            err.to_string()
                .contains("/nonexistent-modules-dir/modules.dep"),
            "{err}"
        );
    }
}
