//! The command line: `run`, `check`, `probe`, `version`, `help`. A small hand-written parser (the
//! firecracker jailer's habit): four commands and five options do not justify an argument-parsing crate.
//!
//! As PID 1 with no subcommand, `run` is implied; as PID 1 with arguments that are not a subcommand, they are
//! the application to supervise (so `ENTRYPOINT ["/encfs-init"]` + `CMD ["/app", "--flag"]` works as it does
//! with tini).
#![forbid(unsafe_code)]

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

const HELP: &str = "\
encfs-init: PID 1 for confidential containers. Attests the SEV-SNP guest, releases each filesystem's key
from Azure Key Vault / managed HSM, serves the encrypted blob as a block device, opens it with dm-crypt,
mounts it, then supervises the application.

Usage:
  encfs-init run   [--manifest PATH | --legacy FILE] [-- COMMAND [ARG...]]
  encfs-init check [--manifest PATH | --legacy FILE | PATH]
  encfs-init probe [--manifest PATH | --readiness-file PATH]
  encfs-init nbd serve SOURCE (--socket PATH | --listen 127.0.0.1:PORT) [OPTIONS]
  encfs-init image create|check --key-file KEY ...   (LUKS2 images; `encfs-init image --help`)
  encfs-init report [--data HEX] [--raw | --json]
  encfs-init report decode FILE [--raw | --json]
  encfs-init policy-digest (-p BASE64 | -f FILE)
  encfs-init version
  encfs-init help [COMMAND]

As PID 1 without a command, `run` is implied; arguments that are not a command are the application.

Manifest lookup: --manifest, else $ENCFS_INIT_MANIFEST, else /etc/encfs-init/manifest.toml if it exists,
else upstream's $EncfsSideCarArgs (base64 JSON). Log level: $RUST_LOG, else $LogLevel, else the manifest.

Exit codes: 0 ok; 1 probe: not ready; 2 usage or invalid manifest; 3 a boot step failed (nothing left
mounted); 4 supervision gave up; otherwise the application's own code (128+N if killed by signal N).
";

const RUN_HELP: &str = "\
encfs-init run [--manifest PATH | --legacy FILE] [-- COMMAND [ARG...]]

Mount every filesystem of the manifest (attest, release the key, serve the blob, dm-crypt, mount, publish),
write the readiness file, then supervise COMMAND (or the manifest's [app] command): signals are forwarded to
it, orphans are reaped, and its exit code becomes ours. Without an application, wait for SIGTERM. SIGTERM
tears everything down in order.

With no manifest at all and a COMMAND, encfs-init is a plain init for COMMAND (as tini).

Options:
  --manifest PATH   TOML manifest (default: $ENCFS_INIT_MANIFEST, /etc/encfs-init/manifest.toml)
  --legacy FILE     upstream's EncfsSideCarArgs value (base64 or the JSON itself) read from FILE, `-` = stdin
  -h, --help        this text
";

const CHECK_HELP: &str = "\
encfs-init check [--manifest PATH | --legacy FILE | PATH]

Validate the manifest and print the plan (secrets redacted). Every problem is reported on its own line with
its file:line:column (TOML) or JSON path (EncfsSideCarArgs), the field, what is wrong and how to fix it.
Exit 0 when valid, 2 otherwise. Nothing is contacted, mounted or changed.

Options:
  --manifest PATH   TOML manifest (or give PATH directly)
  --legacy FILE     upstream's EncfsSideCarArgs value read from FILE, `-` = stdin
  -h, --help        this text
";

const PROBE_HELP: &str = "\
encfs-init probe [--manifest PATH | --readiness-file PATH]

Exit 0 when the readiness file says ready (every filesystem mounted and published), 1 otherwise. For exec
probes in a scratch image, which has no shell: `[\"/encfs-init\", \"probe\"]`.

Options:
  --manifest PATH         read readiness_file from this manifest
  --readiness-file PATH   check this file directly
  -h, --help              this text
";

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

/// Where `policy-digest` reads the policy.
#[derive(Debug, PartialEq, Eq)]
pub enum PolicySource {
    /// `-p BASE64`.
    Inline(String),
    /// `-f FILE`.
    File(PathBuf),
}

/// A usage error's message.
#[derive(Debug, PartialEq, Eq)]
pub struct Usage(pub String);

/// Parse `args` (without argv[0]). `pid1` makes `run` the default.
pub fn parse(args: &[String], pid1: bool) -> Result<Command, Usage> {
    let Some(first) = args.first() else {
        return if pid1 {
            Ok(Command::Run {
                source: SourceArg::Lookup,
                app: Vec::new(),
            })
        } else {
            Ok(Command::Help(HELP))
        };
    };
    let rest = &args[1..];
    match first.as_str() {
        "run" => parse_run(rest),
        "check" => parse_check(rest),
        "probe" => parse_probe(rest),
        "nbd" => Ok(Command::Nbd(rest.to_vec())),
        "image" => Ok(Command::Image(rest.to_vec())),
        "report" => crate::attest::tool::parse_report(rest),
        "policy-digest" => crate::attest::tool::parse_policy_digest(rest),
        "version" | "--version" | "-V" => Ok(Command::Version),
        "help" | "--help" | "-h" => Ok(Command::Help(match rest.first().map(String::as_str) {
            Some("run") => RUN_HELP,
            Some("check") => CHECK_HELP,
            Some("probe") => PROBE_HELP,
            Some("report") => crate::attest::tool::REPORT_HELP,
            Some("policy-digest") => crate::attest::tool::POLICY_DIGEST_HELP,
            _ => HELP,
        })),
        "--" if pid1 => parse_run(args),
        s if pid1 && !s.starts_with('-') => Ok(Command::Run {
            source: SourceArg::Lookup,
            app: args.to_vec(),
        }),
        "--manifest" | "--legacy" if pid1 => parse_run(args),
        other => Err(Usage(format!(
            "unknown command \"{other}\"; run `encfs-init help`"
        ))),
    }
}

pub(crate) fn value<'a>(
    opt: &str,
    it: &mut impl Iterator<Item = &'a String>,
) -> Result<PathBuf, Usage> {
    it.next()
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .ok_or_else(|| Usage(format!("{opt} needs a value")))
}

fn set_source(slot: &mut SourceArg, new: SourceArg) -> Result<(), Usage> {
    if *slot != SourceArg::Lookup {
        return Err(Usage(
            "give one manifest: --manifest PATH or --legacy FILE, not both or twice".into(),
        ));
    }
    *slot = new;
    Ok(())
}

fn parse_run(args: &[String]) -> Result<Command, Usage> {
    let mut source = SourceArg::Lookup;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--manifest" => set_source(&mut source, SourceArg::Toml(value(a, &mut it)?))?,
            "--legacy" => set_source(&mut source, SourceArg::Legacy(value(a, &mut it)?))?,
            "-h" | "--help" => return Ok(Command::Help(RUN_HELP)),
            "--" => {
                let app: Vec<String> = it.cloned().collect();
                if app.is_empty() {
                    return Err(Usage("nothing after --: give the COMMAND to supervise".into()));
                }
                return Ok(Command::Run { source, app });
            }
            other => {
                return Err(Usage(format!(
                    "run: unexpected argument \"{other}\"; put the application after --, e.g. `encfs-init run -- {other}`"
                )))
            }
        }
    }
    Ok(Command::Run {
        source,
        app: Vec::new(),
    })
}

fn parse_check(args: &[String]) -> Result<Command, Usage> {
    let mut source = SourceArg::Lookup;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--manifest" => set_source(&mut source, SourceArg::Toml(value(a, &mut it)?))?,
            "--legacy" => set_source(&mut source, SourceArg::Legacy(value(a, &mut it)?))?,
            "-h" | "--help" => return Ok(Command::Help(CHECK_HELP)),
            s if !s.starts_with('-') => set_source(&mut source, SourceArg::Toml(PathBuf::from(s)))?,
            other => {
                return Err(Usage(format!(
                    "check: unknown option \"{other}\"; see `encfs-init help check`"
                )))
            }
        }
    }
    Ok(Command::Check { source })
}

fn parse_probe(args: &[String]) -> Result<Command, Usage> {
    let mut source = SourceArg::Lookup;
    let mut readiness_file = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--manifest" => set_source(&mut source, SourceArg::Toml(value(a, &mut it)?))?,
            "--readiness-file" => readiness_file = Some(value(a, &mut it)?),
            "-h" | "--help" => return Ok(Command::Help(PROBE_HELP)),
            other => {
                return Err(Usage(format!(
                    "probe: unknown option \"{other}\"; see `encfs-init help probe`"
                )))
            }
        }
    }
    Ok(Command::Probe {
        source,
        readiness_file,
    })
}

/// Where the manifest was found, if anywhere.
enum Found {
    Toml(PathBuf),
    Legacy { name: String, text: String },
    Nothing,
}

fn find_manifest(source: &SourceArg) -> Result<Found, String> {
    match source {
        SourceArg::Toml(p) => return Ok(Found::Toml(p.clone())),
        SourceArg::Legacy(p) => {
            let text = if p.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())
            } else {
                std::fs::read_to_string(p)
            }
            .map_err(|e| format!("{}: cannot read the legacy manifest: {e}", p.display()))?;
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
        Err(std::env::VarError::NotUnicode(_)) => Err(format!("{LEGACY_ENV} is not valid UTF-8")),
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
        log::error!("manifest: {e}");
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
        Err(Usage(msg)) => {
            log::error!("usage: {msg}");
            return exit::USAGE;
        }
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

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn run_with_command() {
        let c = parse(
            &s(&["run", "--manifest", "/m.toml", "--", "/bin/app", "-x"]),
            false,
        )
        .unwrap();
        assert_eq!(
            c,
            Command::Run {
                source: SourceArg::Toml("/m.toml".into()),
                app: s(&["/bin/app", "-x"])
            }
        );
    }

    #[test]
    fn pid1_defaults_to_run_and_takes_bare_args_as_the_app() {
        assert_eq!(
            parse(&[], true).unwrap(),
            Command::Run {
                source: SourceArg::Lookup,
                app: vec![]
            }
        );
        assert_eq!(
            parse(&s(&["/app", "x"]), true).unwrap(),
            Command::Run {
                source: SourceArg::Lookup,
                app: s(&["/app", "x"])
            }
        );
        assert_eq!(
            parse(&s(&["--", "/app"]), true).unwrap(),
            Command::Run {
                source: SourceArg::Lookup,
                app: s(&["/app"])
            }
        );
        assert!(matches!(parse(&[], false).unwrap(), Command::Help(_)));
        assert!(parse(&s(&["/app"]), false).is_err());
    }

    #[test]
    fn check_takes_a_positional_path_once() {
        assert_eq!(
            parse(&s(&["check", "a.toml"]), false).unwrap(),
            Command::Check {
                source: SourceArg::Toml("a.toml".into())
            }
        );
        assert!(parse(&s(&["check", "a.toml", "--legacy", "x"]), false).is_err());
        assert!(parse(&s(&["run", "--manifest"]), false).is_err());
        assert!(parse(&s(&["run", "--"]), false).is_err());
    }

    #[test]
    fn attestation_commands() {
        use crate::attest::tool::Format;
        assert_eq!(
            parse(&s(&["report", "--data", "ab", "--raw"]), false).unwrap(),
            Command::Report {
                data: Some("ab".into()),
                format: Format::Raw
            }
        );
        assert_eq!(
            parse(&s(&["report", "decode", "r.bin"]), false).unwrap(),
            Command::ReportDecode {
                file: "r.bin".into(),
                format: Format::Json
            }
        );
        assert_eq!(
            parse(&s(&["policy-digest", "-p", "YQ=="]), false).unwrap(),
            Command::PolicyDigest {
                source: PolicySource::Inline("YQ==".into())
            }
        );
        assert!(parse(&s(&["policy-digest"]), false).is_err());
        assert!(parse(&s(&["policy-digest", "-p", "a", "-f", "b"]), false).is_err());
        assert!(parse(&s(&["report", "--bogus"]), false).is_err());
    }

    #[test]
    fn a_panic_becomes_the_internal_error_exit_code() {
        assert_eq!(exit_on_panic(|| 5), 5);
        assert_eq!(
            exit_on_panic(|| panic!("a bug while loading the manifest")),
            exit::INTERNAL
        );
    }

    #[test]
    fn only_run_blocks_signals() {
        let run = parse(&s(&["run", "--", "/app"]), false).unwrap();
        assert!(run.blocks_signals());
        assert!(
            parse(&[], true).unwrap().blocks_signals(),
            "PID 1's implied run"
        );
        for tool in [
            &["check", "m.toml"][..],
            &["probe"],
            &["nbd", "serve", "file:///x", "--socket", "/s"],
            &["image", "check"],
            &["version"],
            &["report"],
        ] {
            assert!(
                !parse(&s(tool), false).unwrap().blocks_signals(),
                "{tool:?}"
            );
        }
    }

    #[test]
    fn every_command_has_help() {
        for c in ["run", "check", "probe"] {
            assert!(
                matches!(parse(&s(&[c, "--help"]), false).unwrap(), Command::Help(t) if t.contains(&format!("encfs-init {c}")))
            );
        }
        assert!(
            matches!(parse(&s(&["help", "probe"]), false).unwrap(), Command::Help(t) if t.contains("readiness"))
        );
    }
}
