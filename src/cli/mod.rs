//! The command line: `run`, `check`, `probe`, `version`, `help`, and the tools (`nbd serve`, `image`,
//! `report`, `policy-digest`). [`parse()`] turns the arguments into a [`Command`] (every command's options go
//! through the one parser, [`crate::argv`]; the help texts are in `help.rs`); [`main`] runs it: it finds and
//! loads the manifest (`source.rs`), runs the boot, a check or a probe, or hands over to a tool.
//!
//! As PID 1 with no subcommand, `run` is implied; as PID 1 with arguments that are not a subcommand, they are
//! the application to supervise (so `ENTRYPOINT ["/encfs-init"]` + `CMD ["/app", "--flag"]` works as it does
//! with tini).
#![forbid(unsafe_code)]

mod help;
mod key;
mod parse;
mod source;

pub use crate::argv::Usage;
pub use crate::attest::tool::PolicySource;
pub use parse::parse;
pub use source::{SourceArg, DEFAULT_MANIFEST, LEGACY_ENV, MANIFEST_ENV};

use crate::exit;
use crate::init::Context;
use crate::manifest::{self, AppPlan, RestartMode};
use source::{load, load_with};
use std::ffi::OsString;
use std::path::PathBuf;

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
        /// `-p BASE64` or `-f FILE`.
        source: PolicySource,
    },
    /// `doctor`.
    Doctor {
        /// Where the manifest comes from.
        source: SourceArg,
        /// `--policy FILE`, `--json`.
        opts: crate::doctor::Options,
    },
    /// `key import|policy`.
    Key(crate::keyimport::KeyCommand),
    /// `version`.
    Version,
    /// `help` or `--help`; the text to print.
    Help(&'static str),
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
        Command::Key(cmd) => crate::keyimport::main(&cmd),
        Command::Version => {
            println!(
                "encfs-init {} ({})",
                env!("CARGO_PKG_VERSION"),
                build_kind()
            );
            exit::OK
        }
        Command::Check { source } => check(&source),
        Command::Doctor { source, opts } => doctor(&source, &opts),
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

fn doctor(source: &SourceArg, opts: &crate::doctor::Options) -> i32 {
    match load(source) {
        Ok(Some(l)) => crate::doctor::main(&l.plan, opts),
        Ok(None) => match manifest::empty_plan() {
            // No manifest: the platform's checks (kernel, evidence, UVM information) only.
            Ok(p) => crate::doctor::main(&p, opts),
            Err(e) => {
                log::error!("manifest: built-in defaults invalid (a bug): {e}");
                exit::INTERNAL
            }
        },
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
        for why in crate::ready::unhealthy(&path) {
            eprintln!("encfs-init: not ready: {why}");
        }
        exit::NOT_READY
    }
}

fn run(ctx: Context, source: &SourceArg, app: Vec<String>) -> i32 {
    // Before any secret is read: no core dumps, no memory reads through /proc by non-ptracers.
    if let Err(e) = crate::init::process::harden() {
        log::error!("{}", crate::errors::chain(&e));
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
