//! The manifest: a TOML file (`schema`, `toml_src`) or upstream's `EncfsSideCarArgs` (`legacy`), validated
//! once into a [`Plan`] (`validate`). Everything downstream takes the plan.
//!
//! The manifest sits below every other area: besides its own modules it uses only the generic helpers
//! ([`crate::hex`], [`crate::redact`], [`crate::url`], [`crate::secret`], [`crate::x509`] for a test ARK,
//! [`crate::pkcs8`] for a fake VCEK key), never attestation, HTTP or key release.
#![forbid(unsafe_code)]

pub mod error;
pub mod legacy;
mod plan;
mod render;
pub mod schema;
mod toml_src;
pub mod units;
pub mod validate;

pub use error::{Error, Errors};
pub use plan::*;
pub use render::render;
pub use toml_src::TomlSource;

use std::path::Path;

/// A loaded plan and the warnings found on the way (unknown legacy keys, ignored fields).
#[derive(Debug)]
pub struct Loaded {
    /// The plan.
    pub plan: Plan,
    /// Warnings to log.
    pub warnings: Vec<String>,
}

/// Load and validate a TOML manifest file.
pub fn load_toml_file(path: &Path) -> Result<Loaded, Errors> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| Error {
        source: name.clone(),
        at: None,
        field: String::new(),
        problem: format!("cannot read the manifest: {e}"),
        fix: "check the path (--manifest, ENCFS_INIT_MANIFEST or /etc/encfs-init/manifest.toml)"
            .to_string(),
    })?;
    let base = path.parent().map(Path::to_path_buf);
    load_toml_str(&name, &text, base, Origin::Toml(path.to_path_buf()))
}

/// Load and validate TOML text; `base_dir` resolves relative secret-file paths.
pub fn load_toml_str(
    name: &str,
    text: &str,
    base_dir: Option<std::path::PathBuf>,
    origin: Origin,
) -> Result<Loaded, Errors> {
    let (src, m) = TomlSource::parse(name, text)?;
    let cx = validate::Context {
        base_dir,
        origin: Some(origin),
    };
    let plan = validate::validate(m, &src, &cx)?;
    Ok(Loaded {
        plan,
        warnings: Vec::new(),
    })
}

/// Load and validate upstream's `EncfsSideCarArgs` value (base64 JSON, or JSON), named `name` in messages.
pub fn load_legacy(name: &str, text: &str) -> Result<Loaded, Errors> {
    let (src, m) = legacy::parse(name, text)?;
    let cx = validate::Context {
        base_dir: None,
        origin: Some(Origin::Legacy(name.to_string())),
    };
    let plan = validate::validate(m, &src, &cx)?;
    Ok(Loaded {
        plan,
        warnings: src.warnings,
    })
}

/// The empty plan: no manifest at all (encfs-init as a plain init for a command). The defaults are valid;
/// a unit test proves it, and an error here would still be reported, not panic.
pub fn empty_plan() -> Result<Plan, Errors> {
    struct Nowhere;
    impl error::Locate for Nowhere {
        fn source(&self) -> &str {
            "(no manifest)"
        }
        fn locate(&self, path: &error::FieldPath) -> (Option<String>, String) {
            (None, path.to_string())
        }
    }
    let cx = validate::Context {
        base_dir: None,
        origin: Some(Origin::None),
    };
    validate::validate(schema::Manifest::default(), &Nowhere, &cx)
}
