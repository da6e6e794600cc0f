//! `encfs-init key import` and `key policy`: upstream importkey's job (issue 16, upstream-spec §8.2).
//!
//! `key import` reads a config ([`config`]: our TOML, or upstream's config.json as is), makes or reads the
//! key ([`key`]: oct-HSM 32 bytes, or RSA-HSM), builds the release policy from the claims ([`policy`]: by
//! default host_data, azure-compliant-uvm, not debuggable, VMPL 0), and imports the key with it into Key
//! Vault or a managed HSM ([`vault`]), with the config's bearer token or, with `--imds`, a managed identity
//! token ([`crate::keyrelease::token`]). It prints the policy, the new key id, and how the boot derives the
//! disk key, with the exact manifest lines, so `image create` and the boot agree:
//!
//! - oct-HSM: the key is the disk key (no derivation);
//! - RSA-HSM: HKDF-SHA256(salt, D, label) ([`crate::keyrelease::unwrap::rsa_hkdf`]); the salt is the config's,
//!   else EMPTY (what the boot uses when the manifest gives none), and random only with `--random-salt`,
//!   which prints it (upstream's importkey took a random salt that remotefs never knew: issue 233).
//!
//! Files are written only where asked, 0600 and never over an existing file: `--disk-key-out` (the 32-byte
//! disk key, for `image create --key-file`) and `--private-key-out` (a generated RSA key). They are written
//! before the import, so a key the vault holds is never lost, and removed again if the import fails.
//!
//! `key policy` prints the policy (and its base64url `data`) without importing anything.
#![forbid(unsafe_code)]

pub mod config;
mod forms;
pub mod key;
pub mod policy;
pub mod vault;

use crate::exit;
use crate::keyrelease::token::{vault_resource, TokenSource};
use crate::secret::SecretString;
use config::{Config, Kty};
use std::io::Write;
use std::path::{Path, PathBuf};

/// `key import` options.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ImportArgs {
    /// `--config FILE`.
    pub config: PathBuf,
    /// `--key-file FILE` (oct-HSM: 32 raw bytes or 64 hex digits; `-` is stdin).
    pub key_file: Option<PathBuf>,
    /// `--rsa-key PEM` (RSA-HSM: a PKCS#8 private key).
    pub rsa_key: Option<PathBuf>,
    /// `--imds`: a managed identity token instead of the config's bearer token.
    pub imds: bool,
    /// `--workload-identity`: an AKS workload identity token (from the `AZURE_*` environment the
    /// workload identity webhook sets) instead of the config's bearer token.
    pub workload_identity: bool,
    /// `--random-salt`: a new random HKDF salt for an RSA-HSM key (printed).
    pub random_salt: bool,
    /// `--disk-key-out FILE`.
    pub disk_key_out: Option<PathBuf>,
    /// `--private-key-out FILE` (a generated RSA key).
    pub private_key_out: Option<PathBuf>,
    /// `--ca-bundle FILE`: extra trust roots (for an upstream JSON config, which has no `[network]`).
    pub ca_bundle: Option<PathBuf>,
}

/// A parsed `key` command.
#[derive(Debug, PartialEq, Eq)]
pub enum KeyCommand {
    /// `key import`.
    Import(ImportArgs),
    /// `key policy --config FILE`.
    Policy(PathBuf),
}

/// `key import` / `key policy` failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The config.
    #[error(transparent)]
    Config(#[from] config::Error),
    /// An option does not fit the config.
    #[error("{0}")]
    Options(String),
    /// The key material or an output file.
    #[error(transparent)]
    Key(#[from] key::Error),
    /// The HTTP client (trust roots).
    #[error("HTTP client")]
    Http(#[source] crate::http::Error),
    /// The vault token (IMDS or workload identity).
    #[error("vault token")]
    Token(#[source] crate::keyrelease::Error),
    /// The import.
    #[error(transparent)]
    Vault(#[from] vault::Error),
    /// Writing stdout.
    #[error("stdout")]
    Stdout(#[source] std::io::Error),
}

/// Run a `key` command; returns the exit code (0; 1 when the import or a file failed; 2 for a config or
/// option that cannot work).
pub fn main(cmd: &KeyCommand) -> i32 {
    let (what, r) = match cmd {
        KeyCommand::Import(a) => ("key import", import(a)),
        KeyCommand::Policy(c) => ("key policy", show_policy(c)),
    };
    match r {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("encfs-init {what}: {}", crate::errors::chain(&e));
            match e {
                Error::Config(_) | Error::Options(_) => exit::USAGE,
                _ => 1,
            }
        }
    }
}

fn out(text: &str) -> Result<(), Error> {
    let mut o = std::io::stdout().lock();
    o.write_all(text.as_bytes())
        .and_then(|()| o.flush())
        .map_err(Error::Stdout)
}

fn show_policy(path: &Path) -> Result<(), Error> {
    let c = config::load(path)?;
    let p = policy::json(&c.authority, &c.claims);
    out(&format!("{p}\ndata: {}\n", policy::data(&p)))
}

/// Check the options against the config before anything is made or sent.
fn check_options(a: &ImportArgs, c: &Config) -> Result<(), Error> {
    let bad = |s: &str| Err(Error::Options(s.to_string()));
    match c.kty {
        Kty::Oct if a.rsa_key.is_some() => {
            return bad("--rsa-key gives an RSA key, but the config's kty is oct-HSM; fix: set kty = \"RSA-HSM\" or use --key-file")
        }
        Kty::Oct if a.private_key_out.is_some() => {
            return bad("--private-key-out is for a generated RSA-HSM key; fix: use --disk-key-out to keep an oct-HSM key")
        }
        Kty::Oct if a.random_salt => {
            return bad("--random-salt applies to RSA-HSM keys only (an oct-HSM key is the disk key as it is)")
        }
        Kty::Rsa if a.key_file.is_some() => {
            return bad("--key-file gives an oct key, but the config's kty is RSA-HSM; fix: use --rsa-key PEM or set kty = \"oct-HSM\"")
        }
        Kty::Rsa if a.rsa_key.is_some() && a.private_key_out.is_some() => {
            return bad("--private-key-out writes a generated key, but --rsa-key gives one you already have")
        }
        _ => {}
    }
    if a.random_salt && c.salt.is_some() {
        return bad(
            "--random-salt and the config's key_derivation.salt both set the salt; fix: keep one",
        );
    }
    let sources = [a.imds, a.workload_identity, c.bearer_token.is_some()];
    match sources.iter().filter(|s| **s).count() {
        0 => return bad("no vault token: the config has no bearer_token; fix: set bearer_token_file, or pass --imds (the managed identity) or --workload-identity (AKS)"),
        1 => {}
        _ => return bad("--imds, --workload-identity and the config's bearer token each give the token; fix: keep one"),
    }
    Ok(())
}

fn import(a: &ImportArgs) -> Result<(), Error> {
    let c = config::load(&a.config)?;
    check_options(a, &c)?;
    let policy_json = policy::json(&c.authority, &c.claims);
    let data = policy::data(&policy_json);
    let defaults = crate::manifest::empty_plan()
        .map_err(|e| Error::Options(format!("built-in defaults invalid (a bug): {e}")))?;
    let mut network = defaults.network;
    network.ca_bundle = a.ca_bundle.clone().or_else(|| c.ca_bundle.clone());
    let client = crate::http::Client::new(&network).map_err(Error::Http)?;
    let resource = vault_resource(c.vault_kind);
    let source = if let Some(t) = &c.bearer_token {
        TokenSource::Static(SecretString::new(t.expose().to_string()))
    } else if a.workload_identity {
        TokenSource::workload(
            resource,
            &defaults.endpoints.login_authority.0,
            false,
            &crate::attest::uvm::process_env,
        )
        .map_err(Error::Token)?
        .ok_or_else(|| {
            let missing =
                crate::keyrelease::token::workload_env_missing(&crate::attest::uvm::process_env);
            Error::Options(format!(
                "--workload-identity: {} not set; fix: run it in a pod whose service account has the \
                 azure.workload.identity/use label (the webhook sets them), or set them yourself",
                missing.join(", ")
            ))
        })?
    } else {
        TokenSource::Imds {
            base: c.imds.clone(),
            api_version: "2018-02-01".into(),
            resource: resource.to_string(),
            client_id: c.client_id.clone(),
        }
    };
    let bearer = source.fetch(&client).map_err(Error::Token)?.0;
    let key = key::obtain(c.kty, a.key_file.as_deref(), a.rsa_key.as_deref())?;
    let salt = match (&c.salt, a.random_salt) {
        (Some(s), _) => s.clone(),
        (None, true) => key::random32()?.expose().to_vec(),
        (None, false) => Vec::new(),
    };
    // Files first (never over an existing one), so that a key the vault holds is never lost.
    let mut written: Vec<&Path> = Vec::new();
    let r = (|| {
        if let Some(p) = &a.disk_key_out {
            let dk = key::disk_key(&key, &salt, &c.label)?;
            key::write_new(p, dk.expose())?;
            written.push(p);
        }
        if let (Some(p), key::Key::Rsa { key: k, .. }) = (&a.private_key_out, &key) {
            key::write_new(p, key::private_pem(k)?.as_bytes())?;
            written.push(p);
        }
        let jwk = key::jwk(&key, c.key_ops.as_deref())?;
        Ok::<_, Error>(vault::import(
            &client,
            &c.vault,
            &c.kid,
            &c.api_version,
            &bearer,
            &jwk,
            &data,
        )?)
    })();
    let kid = match r {
        Ok(k) => k,
        Err(e) => {
            for p in written {
                let _ = std::fs::remove_file(p);
            }
            return Err(e);
        }
    };
    out(&report(&c, &key, &policy_json, &kid, &salt, a))
}

/// What `key import` prints: the policy, the key id, the disk key rule and the manifest lines.
fn report(
    c: &Config,
    key: &key::Key,
    policy_json: &str,
    kid: &str,
    salt: &[u8],
    a: &ImportArgs,
) -> String {
    let mut s = format!("release policy: {policy_json}\nimported: {kid}\n");
    match key {
        key::Key::Oct(_) => {
            s.push_str("disk key: the oct-HSM key itself (32 bytes, no key derivation)\n");
        }
        key::Key::Rsa { generated, .. } => {
            s.push_str(&format!(
                "disk key: HKDF-SHA256(salt, the RSA private exponent D, label \"{}\"), 32 bytes; salt: {}\n",
                c.label,
                if salt.is_empty() {
                    "empty (none given; the boot uses an empty salt when the manifest gives none)".to_string()
                } else {
                    crate::hex::encode(salt)
                }
            ));
            if *generated && a.private_key_out.is_none() {
                s.push_str("private key: generated and not kept (the vault holds it; --private-key-out FILE keeps a copy)\n");
            }
        }
    }
    if let Some(p) = &a.disk_key_out {
        s.push_str(&format!(
            "disk key written to {} (for `encfs-init image create --key-file {}`)\n",
            p.display(),
            p.display()
        ));
    }
    if let Some(p) = &a.private_key_out {
        s.push_str(&format!("private key written to {}\n", p.display()));
    }
    s.push_str(&format!(
        "\n# manifest lines for this key:\n[filesystem.key]\nkid = \"{}\"\nkty = \"{}\"\nauthority = \"{}\"\nvault = \"{}\"\n",
        c.kid,
        c.kty.name(),
        c.authority,
        c.vault
    ));
    if c.kty == Kty::Rsa {
        s.push_str("[filesystem.key_derivation]\n");
        if !salt.is_empty() {
            s.push_str(&format!("salt = \"{}\"\n", crate::hex::encode(salt)));
        }
        s.push_str(&format!("label = \"{}\"\n", c.label));
    }
    s
}
