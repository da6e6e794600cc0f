//! The `#[ignore]`d tests of the workspace, sorted by where they run. A plain `cargo test` skips them; each kind
//! has its home, and an ignore reason outside these kinds is an error (so every test runs somewhere):
//!
//! | reason starts with | kind | where it runs |
//! |---|---|---|
//! | `needs ../shared/fixtures` | [`Kind::Fixture`] | `cargo xtask test`, when `../shared/fixtures` is beside the clone (`CI=true` requires it) |
//! | `root+kernel:` | [`Kind::Vm`] | in the VM rig, by the scenario whose `cargo_tests` names the file |
//! | `benchmark:` | [`Kind::Bench`] | by hand (`--release -- --ignored --nocapture`); benchmarks are not tests |
//!
//! Found by reading the sources: an `#[ignore = "..."]` line, then the next `fn NAME`.

use std::fs;
use std::path::{Path, PathBuf};

use crate::util::{bail, Context, Result};

/// Where an ignored test runs (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Reads `../shared/fixtures`.
    Fixture,
    /// Needs root and a kernel with dm/NBD: the VM rig.
    Vm,
    /// A benchmark, run by hand.
    Bench,
}

/// The reason prefixes, in the order of the module docs.
const KINDS: &[(&str, Kind)] = &[
    ("needs ../shared/fixtures", Kind::Fixture),
    ("root+kernel:", Kind::Vm),
    ("benchmark:", Kind::Bench),
];

/// One ignored test.
#[derive(Debug, Clone)]
pub struct Ignored {
    /// The source file.
    pub file: PathBuf,
    /// The function's name.
    pub name: String,
    /// Its kind.
    pub kind: Kind,
}

impl Ignored {
    /// The cargo target that holds it: `--test NAME` for `tests/NAME.rs`, `--lib` for `src/`.
    pub fn target_args(&self, root: &Path) -> Vec<String> {
        let rel = self.file.strip_prefix(root).unwrap_or(&self.file);
        match rel.strip_prefix("tests") {
            Ok(t) if t.components().count() == 1 => {
                let stem = t.file_stem().map(|s| s.to_string_lossy().into_owned());
                vec!["--test".into(), stem.unwrap_or_default()]
            }
            _ => vec!["--lib".into()],
        }
    }
}

/// Every ignored test under `root/src` and `root/tests` (files directly in `tests/` are the test targets;
/// `src/` is the library).
pub fn scan(root: &Path) -> Result<Vec<Ignored>> {
    let mut files = Vec::new();
    collect_rs(&root.join("src"), &mut files)?;
    collect_rs(&root.join("tests"), &mut files)?;
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text = fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?;
        out.extend(scan_text(&f, &text)?);
    }
    Ok(out)
}

fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let Ok(rd) = fs::read_dir(dir) else {
        return Ok(());
    };
    for e in rd {
        let p = e
            .with_context(|| format!("listing {}", dir.display()))?
            .path();
        if p.is_dir() {
            collect_rs(&p, out)?;
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    Ok(())
}

/// The ignored tests in one file's text.
pub fn scan_text(file: &Path, text: &str) -> Result<Vec<Ignored>> {
    let mut out = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let l = line.trim();
        if !l.starts_with("#[ignore") {
            continue;
        }
        let where_ = || format!("{}:{}", file.display(), i + 1);
        let Some(reason) = l
            .strip_prefix("#[ignore = \"")
            .and_then(|r| r.strip_suffix("\"]"))
        else {
            bail!("{}: an #[ignore] needs a reason that says where the test runs (`#[ignore = \"...\"]`, see xtask/src/ignored.rs)", where_())
        };
        let Some(kind) = KINDS
            .iter()
            .find(|(p, _)| reason.starts_with(p))
            .map(|(_, k)| *k)
        else {
            let known: Vec<&str> = KINDS.iter().map(|(p, _)| *p).collect();
            bail!("{}: ignore reason {reason:?} names no place the test runs; start it with one of {known:?}", where_())
        };
        let name = lines[i + 1..]
            .iter()
            .take(6)
            .find_map(|l| fn_name(l.trim()))
            .ok_or_else(|| {
                crate::util::Error::msg(format!("{}: no `fn` after #[ignore]", where_()))
            })?;
        out.push(Ignored {
            file: file.to_path_buf(),
            name,
            kind,
        });
    }
    Ok(out)
}

fn fn_name(line: &str) -> Option<String> {
    let mut rest = line;
    for prefix in ["pub(crate) ", "pub ", "async "] {
        rest = rest.strip_prefix(prefix).unwrap_or(rest);
    }
    let name: String = rest
        .strip_prefix("fn ")?
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmtest::Paths;

    #[test]
    fn reasons_are_sorted_into_kinds_and_unknown_ones_refused() {
        let f = Path::new("tests/x.rs");
        let ok = "#[test]\n#[ignore = \"needs ../shared/fixtures\"]\nfn a() {}\n#[test]\n    #[ignore = \"root+kernel: vm\"]\n    fn b() {}\n#[ignore = \"benchmark: by hand\"]\n#[test]\nfn c() {}\n";
        let got = scan_text(f, ok).unwrap();
        let names: Vec<(&str, Kind)> = got.iter().map(|g| (g.name.as_str(), g.kind)).collect();
        assert_eq!(
            names,
            [("a", Kind::Fixture), ("b", Kind::Vm), ("c", Kind::Bench)]
        );
        assert_eq!(got[0].target_args(Path::new("")), ["--test", "x"]);
        let bare = scan_text(f, "#[ignore]\nfn a() {}\n")
            .unwrap_err()
            .to_string();
        assert!(bare.contains("needs a reason"), "{bare}");
        let other = scan_text(f, "#[ignore = \"slow\"]\nfn a() {}\n")
            .unwrap_err()
            .to_string();
        assert!(other.contains("names no place"), "{other}");
    }

    /// Every ignored test of the workspace runs somewhere: its reason has a known kind, and each VM test's file
    /// is named by a scenario's `cargo_tests`.
    #[test]
    fn every_ignored_test_runs_somewhere() {
        let paths = Paths::discover();
        let all = scan(&paths.root).unwrap();
        assert!(
            all.iter().any(|t| t.kind == Kind::Fixture) && all.iter().any(|t| t.kind == Kind::Vm),
            "the scan found the fixture and VM tests: {all:?}"
        );
        let scenarios = crate::scenario::load_all(&paths.root.join("tests/vm")).unwrap();
        for t in all.iter().filter(|t| t.kind == Kind::Vm) {
            let stem = t.file.file_stem().unwrap().to_string_lossy();
            assert!(
                scenarios
                    .iter()
                    .any(|s| s.cargo_tests.iter().any(|c| *c == stem)),
                "{} ({}) is a VM test, but no scenario's cargo_tests names {stem}",
                t.name,
                t.file.display()
            );
        }
    }
}
