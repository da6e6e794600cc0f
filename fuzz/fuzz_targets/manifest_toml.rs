//! Fuzz the TOML manifest: `manifest::load_toml_str` (TOML syntax, the schema with its "did you mean"
//! errors, then every validation rule), and `manifest::render` of a plan that validates.
//!
//! No manifest file is read; validation itself reads the files a manifest names (secret files, the CA
//! bundle), relative to the fuzz directory. Inputs naming device or kernel files are skipped so that a
//! mutation cannot ask for `/dev/zero` or a blocking `/dev/stdin` (a manifest is written by the deployer,
//! not by an attacker; a read of those is not a parser bug).
#![no_main]

use encfs_init::manifest::{self, Origin};
use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if ["/dev", "/proc", "/sys"].iter().any(|p| text.contains(p)) {
        return;
    }
    let origin = Origin::Toml(PathBuf::from("/etc/encfs-init/manifest.toml"));
    match manifest::load_toml_str("manifest.toml", text, None, origin) {
        Ok(l) => {
            let out = manifest::render(&l.plan);
            assert!(out.starts_with("manifest:"));
        }
        Err(errs) => {
            assert!(!errs.0.is_empty(), "an error without a message");
            let _ = errs.to_string();
        }
    }
});
