//! Azurite, the Azure Storage emulator, for the blob client's tests (`tests/blob_azurite.rs`).
//!
//! Installed with the machine's own npm from the npm registry into `.cache/azurite/` (a private prefix: no global
//! install, nothing outside the work tree), at a pinned version. Nothing runs when that version is already
//! there, so re-runs cost a file read. The tests find it through `ENCFS_AZURITE` (set by `cargo xtask test`)
//! or at the same default path; when it is missing they fail and name `cargo xtask setup`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::setup::Apt;
use crate::util::{bail, on_path, secs, tail, Context, Result};

/// The pinned Azurite release (npm package `azurite`). Its newest blob API version (2025-11-05) is newer than
/// the product's default `x-ms-version` (2020-10-02), so the tests need no `--skipApiVersionCheck`.
pub const VERSION: &str = "3.37.0";

/// The environment variable the tests read: the install prefix (the directory holding `node_modules`).
pub const ENV: &str = "ENCFS_AZURITE";

/// `<root>/.cache/azurite`.
pub fn prefix(root: &Path) -> PathBuf {
    root.join(".cache/azurite")
}

/// The version installed under `prefix`, if any (read from its package.json).
fn installed(prefix: &Path) -> Option<String> {
    if !prefix.join("node_modules/.bin/azurite-blob").exists() {
        return None;
    }
    let text = fs::read_to_string(prefix.join("node_modules/azurite/package.json")).ok()?;
    // `"version": "3.37.0",` — the first such key at the top level of npm's package.json.
    let at = text.find("\"version\"")?;
    let rest = text[at + "\"version\"".len()..]
        .trim_start()
        .strip_prefix(':')?;
    let rest = rest.trim_start().strip_prefix('"')?;
    rest.split('"').next().map(str::to_string)
}

/// Install Azurite [`VERSION`] under [`prefix`] unless it is already there (and Debian's Node.js and npm first
/// when the machine has none). Returns the prefix.
pub fn ensure(root: &Path, apt: &Apt, log: &Path) -> Result<PathBuf> {
    let dir = prefix(root);
    if installed(&dir).as_deref() == Some(VERSION) {
        return Ok(dir);
    }
    if !on_path("npm") || !on_path("node") {
        crate::setup::ensure_listed(apt, log, crate::setup::NODE_PACKAGES)?;
    }
    if !on_path("npm") || !on_path("node") {
        bail!("Azurite {VERSION} is needed for tests/blob_azurite.rs, but node/npm are still not on PATH after installing {:?}", crate::setup::NODE_PACKAGES.iter().map(|p| p.0).collect::<Vec<_>>());
    }
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    eprintln!(
        "setup: npm install azurite@{VERSION} into {}",
        dir.display()
    );
    let t = Instant::now();
    let log = dir.join("npm.log");
    let out = Command::new("npm")
        .arg("install")
        .arg("--prefix")
        .arg(&dir)
        .args(["--save-exact", "--no-fund", "--no-audit"])
        .arg(format!("azurite@{VERSION}"))
        .stdin(Stdio::null())
        .output()
        .context("running npm install")?;
    let mut text = out.stdout.clone();
    text.extend_from_slice(&out.stderr);
    fs::write(&log, &text).with_context(|| format!("writing {}", log.display()))?;
    if !out.status.success() {
        bail!(
            "npm install azurite@{VERSION} failed ({}), see {}:\n{}",
            out.status,
            log.display(),
            tail(&String::from_utf8_lossy(&text), 15)
        );
    }
    match installed(&dir) {
        Some(v) if v == VERSION => {}
        v => bail!(
            "after npm install, {} holds azurite {v:?}, not {VERSION}",
            dir.display()
        ),
    }
    eprintln!(
        "setup: azurite {VERSION} installed in {}",
        secs(t.elapsed())
    );
    Ok(dir)
}
