//! Where the manifest comes from: `--manifest PATH`, `--legacy FILE`, or the lookup (`$ENCFS_INIT_MANIFEST`,
//! the default path, upstream's `$EncfsSideCarArgs`), and loading it (its problems logged, the legacy
//! variable wiped from the environment).

use crate::exit;
use crate::manifest::{self, Loaded};
use std::path::PathBuf;

/// Default manifest path.
pub const DEFAULT_MANIFEST: &str = "/etc/encfs-init/manifest.toml";
/// Environment variable naming the manifest.
pub const MANIFEST_ENV: &str = "ENCFS_INIT_MANIFEST";
/// Upstream's environment variable (base64 JSON).
pub const LEGACY_ENV: &str = "EncfsSideCarArgs";

/// A manifest named on the command line.
#[derive(Debug, Default, PartialEq, Eq)]
pub enum SourceArg {
    /// Look it up (environment, default path, legacy variable).
    #[default]
    Lookup,
    /// `--manifest PATH`.
    Toml(PathBuf),
    /// `--legacy FILE`.
    Legacy(PathBuf),
}

/// Finding the manifest failed.
#[derive(Debug, thiserror::Error)]
enum Error {
    /// `--legacy FILE` could not be read.
    #[error("{path}: cannot read the legacy manifest")]
    ReadLegacy {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The legacy variable holds bytes that are not text.
    #[error("{LEGACY_ENV} is not valid UTF-8")]
    LegacyNotUtf8,
}

/// Where the manifest was found, if anywhere.
enum Found {
    Toml(PathBuf),
    Legacy { name: String, text: String },
    Nothing,
}

fn find_manifest(source: &SourceArg) -> Result<Found, Error> {
    match source {
        SourceArg::Toml(p) => return Ok(Found::Toml(p.clone())),
        SourceArg::Legacy(p) => {
            let text = if p.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())
            } else {
                std::fs::read_to_string(p)
            }
            .map_err(|source| Error::ReadLegacy {
                path: p.display().to_string(),
                source,
            })?;
            return Ok(Found::Legacy {
                name: p.display().to_string(),
                text,
            });
        }
        SourceArg::Lookup => {}
    }
    if let Some(p) = std::env::var_os(MANIFEST_ENV).filter(|p| !p.is_empty()) {
        return Ok(Found::Toml(PathBuf::from(p)));
    }
    let default = PathBuf::from(DEFAULT_MANIFEST);
    if default.exists() {
        return Ok(Found::Toml(default));
    }
    match std::env::var(LEGACY_ENV) {
        Ok(text) => Ok(Found::Legacy {
            name: LEGACY_ENV.to_string(),
            text,
        }),
        Err(std::env::VarError::NotUnicode(_)) => Err(Error::LegacyNotUtf8),
        Err(std::env::VarError::NotPresent) => Ok(Found::Nothing),
    }
}

/// Load the plan named by `source`; `Ok(None)` when there is no manifest anywhere.
pub(super) fn load(source: &SourceArg) -> Result<Option<Loaded>, i32> {
    load_with(source, true)
}

/// [`load`]; `loud` says whether to warn about test mode (not for `probe`, which only reads a path).
pub(super) fn load_with(source: &SourceArg, loud: bool) -> Result<Option<Loaded>, i32> {
    let found = find_manifest(source).map_err(|e| {
        log::error!("manifest: {}", crate::errors::chain(&e));
        exit::USAGE
    })?;
    let loaded = match found {
        Found::Nothing => return Ok(None),
        Found::Toml(p) => manifest::load_toml_file(&p),
        Found::Legacy { name, text } => manifest::load_legacy(&name, &text),
    };
    // The legacy variable may hold a bearer token: it must not reach the application's environment, nor stay
    // readable in /proc/<pid>/environ (the original block on the stack, which remove_var leaves as it was).
    // Sound: no other thread exists yet (the supervisor and workers start later).
    if std::env::var_os(LEGACY_ENV).is_some() {
        std::env::remove_var(LEGACY_ENV);
        if let Err(e) = crate::init::process::scrub_env_value(LEGACY_ENV) {
            log::warn!("manifest: wiping {LEGACY_ENV} from the original environment block failed: {}; its value stays readable in /proc/<pid>/environ to root with CAP_SYS_PTRACE; fix: pass the manifest as a file (--manifest)", crate::errors::chain(&e));
        }
    }
    match loaded {
        Ok(l) => {
            for w in &l.warnings {
                log::warn!("{w}");
            }
            if l.plan.test_mode && loud {
                log::warn!("TEST MODE IS ON: raw keys, a fake attester and plain http are allowed. Never use test_mode in production.");
            }
            Ok(Some(l))
        }
        Err(errors) => {
            for e in &errors.0 {
                log::error!("manifest: {e}");
            }
            Err(exit::USAGE)
        }
    }
}
