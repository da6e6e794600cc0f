//! The command line: `run`, `check`, `probe`, `version`, `help`, and the tools (`nbd serve`, `image`,
//! `report`, `policy-digest`). [`parse`] turns the arguments into a [`Command`] (every command's options go
//! through the one parser, [`crate::argv`]); [`main`] runs it: it finds and loads the manifest, runs the
//! boot or a check, or hands over to a tool.
//!
//! As PID 1 with no subcommand, `run` is implied; as PID 1 with arguments that are not a subcommand, they are
//! the application to supervise (so `ENTRYPOINT ["/encfs-init"]` + `CMD ["/app", "--flag"]` works as it does
//! with tini).
#![forbid(unsafe_code)]

mod help;
mod parse;

pub use crate::argv::Usage;
pub use crate::attest::tool::PolicySource;
pub use parse::parse;

use crate::exit;
use crate::init::Context;
use crate::manifest::{self, AppPlan, Loaded, RestartMode};
use std::ffi::OsString;
use std::path::PathBuf;

/// Default manifest path.
pub const DEFAULT_MANIFEST: &str = "/etc/encfs-init/manifest.toml";
/// Environment variable naming the manifest.
pub const MANIFEST_ENV: &str = "ENCFS_INIT_MANIFEST";
/// Upstream's environment variable (base64 JSON).
pub const LEGACY_ENV: &str = "EncfsSideCarArgs";

/// A parsed command line.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// `run`.
    Run {
        /// Where the manifest comes from.
        source: SourceArg,
        /// COMMAND after `--`.
        app: Vec<String>,
    },
    /// `check`.
    Check {
        /// Where the manifest comes from.
        source: SourceArg,
    },
    /// `probe`.
    Probe {
        /// Where the manifest comes from.
        source: SourceArg,
        /// `--readiness-file`.
        readiness_file: Option<PathBuf>,
    },
    /// `nbd ...` (the arguments after `nbd`).
    Nbd(Vec<String>),
    /// `image ...` (the arguments after `image`).
    Image(Vec<String>),
    /// `report`.
    Report {
        /// report_data hex.
        data: Option<String>,
        /// Output format.
        format: crate::attest::tool::Format,
    },
    /// `report decode FILE`.
    ReportDecode {
        /// The file.
        file: PathBuf,
        /// Output format.
        format: crate::attest::tool::Format,
    },
    /// `policy-digest`.
    PolicyDigest {
        /// The base64 policy, or `@FILE` for a file.
        source: PolicySource,
    },
    /// `version`.
    Version,
    /// `help` or `--help`; the text to print.
    Help(&'static str),
}

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
fn load(source: &SourceArg) -> Result<Option<Loaded>, i32> {
    load_with(source, true)
}

/// [`load`]; `loud` says whether to warn about test mode (not for `probe`, which only reads a path).
fn load_with(source: &SourceArg, loud: bool) -> Result<Option<Loaded>, i32> {
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
            log::warn!("manifest: wiping {LEGACY_ENV} from the original environment block failed: {e}; its value stays readable in /proc/<pid>/environ to root with CAP_SYS_PTRACE; fix: pass the manifest as a file (--manifest)");
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

impl Command {
    /// Whether the process must block signals before anything else: only `run` (PID 1's signalfd design,
    /// see [`crate::supervise::signals`]). The tools keep default dispositions, so Ctrl-C and SIGTERM end
    /// them (`nbd serve` reads them itself to finish cleanly).
    pub fn blocks_signals(&self) -> bool {
        matches!(self, Command::Run { .. })
    }
}

/// Parse the process's own command line (`pid1` makes `run` the default). Starts no thread and logs
/// nothing (the logger is not up yet): an error is the usage message [`main`] reports.
pub fn parse_process_args(pid1: bool) -> Result<Command, Usage> {
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(OsString::into_string)
        .collect::<Result<_, _>>()
        .map_err(|bad| Usage(format!("argument {bad:?} is not valid UTF-8")))?;
    parse(&args, pid1)
}

/// Run the parsed command line; return the exit code. A panic (a bug) becomes [`exit::INTERNAL`], so the
/// caller's orderly finish still ends the process (as a VM's PID 1 an unwinding `main` panics the kernel).
pub fn main(ctx: Context, cmd: Result<Command, Usage>) -> i32 {
    exit_on_panic(|| dispatch(ctx, cmd))
}

/// `f()`, or [`exit::INTERNAL`] if it panics (the panic hook has already printed the message).
pub fn exit_on_panic(f: impl FnOnce() -> i32) -> i32 {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|_| {
        log::error!("internal error (a bug): a panic; see the message above; please report it");
        exit::INTERNAL
    })
}

fn dispatch(ctx: Context, cmd: Result<Command, Usage>) -> i32 {
    crate::logging::init();
    let cmd = match cmd {
        Ok(c) => c,
        Err(e) => return crate::argv::fail(&e),
    };
    match cmd {
        Command::Help(text) => {
            print!("{text}");
            exit::OK
        }
        Command::Nbd(args) => crate::nbd::cli::main(&args),
        Command::Image(args) => crate::image::main(&args),
        Command::Version => {
            println!(
                "encfs-init {} ({})",
                env!("CARGO_PKG_VERSION"),
                build_kind()
            );
            exit::OK
        }
        Command::Check { source } => check(&source),
        Command::Probe {
            source,
            readiness_file,
        } => probe(&source, readiness_file),
        Command::Run { source, app } => run(ctx, &source, app),
        Command::Report { data, format } => crate::attest::tool::exit_code(
            "report",
            crate::attest::tool::report(data.as_deref(), format),
        ),
        Command::ReportDecode { file, format } => crate::attest::tool::exit_code(
            "report decode",
            crate::attest::tool::decode(&file, format),
        ),
        Command::PolicyDigest { source } => crate::attest::tool::policy_digest_cmd(&source),
    }
}

fn build_kind() -> &'static str {
    if cfg!(target_env = "musl") {
        "static musl build"
    } else {
        "glibc build"
    }
}

fn check(source: &SourceArg) -> i32 {
    match load(source) {
        Ok(Some(l)) => {
            print!("{}", manifest::render(&l.plan));
            println!("manifest is valid");
            exit::OK
        }
        Ok(None) => {
            log::error!(
                "manifest: none found; fix: pass --manifest PATH, set {MANIFEST_ENV}, create {DEFAULT_MANIFEST} or set {LEGACY_ENV}"
            );
            exit::USAGE
        }
        Err(code) => code,
    }
}

fn probe(source: &SourceArg, readiness_file: Option<PathBuf>) -> i32 {
    let path = match readiness_file {
        Some(p) => p,
        None => match load_with(source, false) {
            Ok(Some(l)) => l.plan.readiness_file,
            Ok(None) => PathBuf::from(manifest::validate::DEFAULT_READINESS_FILE),
            Err(code) => return code,
        },
    };
    if crate::ready::is_ready(&path) {
        exit::OK
    } else {
        eprintln!(
            "encfs-init: not ready ({} does not say ready)",
            path.display()
        );
        exit::NOT_READY
    }
}

fn run(ctx: Context, source: &SourceArg, app: Vec<String>) -> i32 {
    // Before any secret is read: no core dumps, no memory reads through /proc by non-ptracers.
    if let Err(e) = crate::init::process::harden() {
        log::error!("{e}");
        return exit::INTERNAL;
    }
    let mut plan = match load(source) {
        Ok(Some(l)) => l.plan,
        Ok(None) if !app.is_empty() => match manifest::empty_plan() {
            Ok(p) => p,
            Err(e) => {
                log::error!("manifest: built-in defaults invalid (a bug): {e}");
                return exit::INTERNAL;
            }
        },
        Ok(None) => {
            log::error!(
                "manifest: none found and no COMMAND given, so there is nothing to do; fix: pass --manifest PATH (or set {MANIFEST_ENV}, create {DEFAULT_MANIFEST}, set {LEGACY_ENV}), or give a COMMAND after --"
            );
            return exit::USAGE;
        }
        Err(code) => return code,
    };
    crate::logging::apply(&plan.log);
    if !app.is_empty() {
        let restart = plan.app.as_ref().map_or(RestartMode::Never, |a| a.restart);
        plan.app = Some(AppPlan { argv: app, restart });
    }
    log::info!(
        "plan: {} filesystem(s), application {}",
        plan.filesystems.len(),
        plan.app
            .as_ref()
            .map_or_else(|| "none".to_string(), |a| format!("{:?}", a.argv))
    );
    // Secrets in the plan are redacting types: its Debug form is safe to log.
    log::debug!("plan: {plan:?}");
    crate::init::run(ctx, plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_the_internal_error_exit_code() {
        assert_eq!(exit_on_panic(|| 5), 5);
        assert_eq!(
            exit_on_panic(|| panic!("a bug while loading the manifest")),
            exit::INTERNAL
        );
    }
}
