//! Logging through `log` + env_logger, on stderr (the console as PID 1), optionally teed to a file.
//!
//! Level precedence: `RUST_LOG` (env_logger's directive syntax, parsed here: see [`parse_rust_log`]) >
//! `LogLevel` (upstream's variable, logrus names) > the manifest's `[log] level` > info. `LogFile`
//! (upstream's variable) or `[log] file` appends to a file created 0600. The devicemapper crate logs whole dm
//! tables at trace level, so its target is capped at info whatever the filters say: no table (and so no key)
//! can reach a log; ureq (which logs URLs, so SAS tokens, and headers at trace) and rustls are capped the
//! same way.
#![forbid(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

static START: OnceLock<Instant> = OnceLock::new();
static FILE: Mutex<Option<File>> = Mutex::new(None);
static LEVEL_FROM_ENV: OnceLock<bool> = OnceLock::new();
/// `RUST_LOG`'s `/text` part: only records whose message contains it are written.
static MESSAGE_FILTER: OnceLock<String> = OnceLock::new();

/// Targets whose trace output must never reach a log, whatever the filters say: the devicemapper crate logs
/// whole dm tables, ureq logs request URLs (a SAS is a query string) and headers.
const CAPPED: [&str; 4] = ["devicemapper", "ureq", "ureq_proto", "rustls"];

/// One `RUST_LOG` directive: a level for a module path prefix, or (no module) for everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    /// The module path prefix, or `None` for every module.
    pub module: Option<String>,
    /// The most verbose level let through.
    pub level: log::LevelFilter,
}

/// Why a `RUST_LOG` value is refused (a leaf: it names the directive at fault).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RustLogError {
    /// `a/b/c`: at most one text filter.
    #[error("RUST_LOG {spec:?}: more than one '/'")]
    Slashes {
        /// The whole value.
        spec: String,
    },
    /// `a=b=c`.
    #[error("RUST_LOG directive {directive:?}: more than one '='")]
    Equals {
        /// The directive.
        directive: String,
    },
    /// `module=loud`.
    #[error(
        "RUST_LOG directive {directive:?}: {level:?} is not a level (off, error, warn, info, debug, trace)"
    )]
    Level {
        /// The directive.
        directive: String,
        /// What stood where a level belongs.
        level: String,
    },
    /// `=info`.
    #[error("RUST_LOG directive {directive:?}: no module before '='")]
    NoModule {
        /// The directive.
        directive: String,
    },
}

/// Parse `RUST_LOG` the way env_logger documents it: `directive[,directive...][/text]`, where a directive is
/// `level`, `module` (all levels) or `module=level`, and `text` keeps only messages containing it (a plain
/// substring, as env_logger without its regex feature). Parsed here rather than by env_logger because the
/// devicemapper crate turns on env_logger's regex feature, and a filter parser that can compile a regex links
/// about half a megabyte of regex engine into PID 1. Directives for a module under a `CAPPED` target are
/// capped at info.
pub fn parse_rust_log(spec: &str) -> Result<(Vec<Directive>, Option<String>), RustLogError> {
    let mut parts = spec.split('/');
    let directives = parts.next().unwrap_or_default();
    let text = parts.next().map(str::to_owned);
    if parts.next().is_some() {
        return Err(RustLogError::Slashes { spec: spec.into() });
    }
    let mut out = Vec::new();
    for d in directives
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
    {
        let mut kv = d.split('=');
        let (name, level) = (kv.next().unwrap_or_default().trim(), kv.next());
        if kv.next().is_some() {
            return Err(RustLogError::Equals {
                directive: d.into(),
            });
        }
        let directive =
            match level {
                None => match name.parse::<log::LevelFilter>() {
                    Ok(level) => Directive {
                        module: None,
                        level,
                    },
                    Err(_) => Directive {
                        module: Some(name.to_owned()),
                        level: log::LevelFilter::Trace,
                    },
                },
                Some(level) => {
                    let level = level.trim().parse::<log::LevelFilter>().map_err(|_| {
                        RustLogError::Level {
                            directive: d.into(),
                            level: level.into(),
                        }
                    })?;
                    if name.is_empty() {
                        return Err(RustLogError::NoModule {
                            directive: d.into(),
                        });
                    }
                    Directive {
                        module: Some(name.to_owned()),
                        level,
                    }
                }
            };
        out.push(directive);
    }
    for d in &mut out {
        let capped = d.module.as_deref().is_some_and(|m| {
            CAPPED.iter().any(|c| {
                m.strip_prefix(c)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
            })
        });
        if capped {
            d.level = d.level.min(log::LevelFilter::Info);
        }
    }
    Ok((out, text.filter(|t| !t.is_empty())))
}

/// Writes each record to stderr and, when set, to the log file.
struct Tee;

impl Write for Tee {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let _ = io::stderr().write_all(buf);
        if let Ok(mut f) = FILE.lock() {
            if let Some(f) = f.as_mut() {
                let _ = f.write_all(buf);
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

/// Set up the logger from the environment. Safe to call more than once (later calls do nothing).
pub fn init() {
    let start = *START.get_or_init(Instant::now);
    let mut b = env_logger::Builder::new();
    let rust_log = std::env::var("RUST_LOG").ok().filter(|s| !s.is_empty());
    let upstream = std::env::var("LogLevel")
        .ok()
        .and_then(|l| crate::manifest::validate::parse_level(&l));
    let parsed = rust_log.as_deref().map(parse_rust_log);
    match &parsed {
        Some(Ok((directives, text))) => {
            for d in directives {
                match &d.module {
                    Some(m) => b.filter_module(m, d.level),
                    None => b.filter_level(d.level),
                };
            }
            if let Some(t) = text {
                let _ = MESSAGE_FILTER.set(t.clone());
            }
        }
        // A bad RUST_LOG is reported once the logger works, and the next level source applies.
        Some(Err(_)) | None => {
            b.filter_level(log::LevelFilter::Trace);
        }
    }
    // Never let a dependency's trace output through (see CAPPED); our own modules log what matters, redacted.
    for target in CAPPED {
        b.filter_module(target, log::LevelFilter::Info);
    }
    b.target(env_logger::Target::Pipe(Box::new(Tee)));
    b.format(move |f, r| {
        if let Some(text) = MESSAGE_FILTER.get() {
            if !r.args().to_string().contains(text.as_str()) {
                return Ok(());
            }
        }
        let t = start.elapsed();
        writeln!(
            f,
            "[{:>4}.{:03} {:<5} {}] {}",
            t.as_secs(),
            t.subsec_millis(),
            r.level(),
            r.target().trim_start_matches("encfs_init::"),
            r.args()
        )
    });
    if b.try_init().is_err() {
        return;
    }
    let rust_log_ok = matches!(parsed, Some(Ok(_)));
    let _ = LEVEL_FROM_ENV.set(rust_log_ok || upstream.is_some());
    if !rust_log_ok {
        log::set_max_level(upstream.unwrap_or(log::LevelFilter::Info));
    }
    if let Some(Err(e)) = &parsed {
        log::warn!("{e}; RUST_LOG ignored (fix: see README, Logging)");
    }
    if let Ok(path) = std::env::var("LogFile") {
        if !path.is_empty() {
            if let Err(e) = set_file(Path::new(&path)) {
                log::warn!("LogFile {path}: cannot open: {e}; logging to the console only");
            }
        }
    }
}

/// Apply the manifest's settings: its level unless the environment chose one, and its log file.
pub fn apply(plan: &crate::manifest::LogPlan) {
    if !LEVEL_FROM_ENV.get().copied().unwrap_or(false) {
        log::set_max_level(plan.level);
    }
    if let Some(path) = &plan.file {
        if let Err(e) = set_file(path) {
            log::warn!(
                "log file {}: cannot open: {e}; logging to the console only",
                path.display()
            );
        }
    }
}

/// Append log records to `path` too (created 0600 if missing).
pub fn set_file(path: &Path) -> io::Result<()> {
    let f = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    if let Ok(mut slot) = FILE.lock() {
        *slot = Some(f);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use log::LevelFilter as L;

    fn d(module: Option<&str>, level: L) -> Directive {
        Directive {
            module: module.map(str::to_owned),
            level,
        }
    }

    #[test]
    fn rust_log_directives_follow_env_logger_syntax() {
        let (ds, text) = parse_rust_log("warn, encfs_init::nbd=trace ,encfs_init::blob").unwrap();
        assert_eq!(
            ds,
            vec![
                d(None, L::Warn),
                d(Some("encfs_init::nbd"), L::Trace),
                d(Some("encfs_init::blob"), L::Trace),
            ]
        );
        assert_eq!(text, None);
        let (ds, text) = parse_rust_log("DEBUG/attempt 3").unwrap();
        assert_eq!(
            (ds, text.as_deref()),
            (vec![d(None, L::Debug)], Some("attempt 3"))
        );
        assert_eq!(
            parse_rust_log("x=off").unwrap().0,
            vec![d(Some("x"), L::Off)]
        );
        assert_eq!(parse_rust_log("").unwrap(), (vec![], None));
    }

    #[test]
    fn rust_log_cannot_lift_the_caps_on_secret_bearing_targets() {
        let (ds, _) =
            parse_rust_log("devicemapper::core=trace,ureq=debug,rustls,ureq_protocol=trace")
                .unwrap();
        assert_eq!(
            ds,
            vec![
                d(Some("devicemapper::core"), L::Info),
                d(Some("ureq"), L::Info),
                d(Some("rustls"), L::Info),
                // Only the target itself and its submodules are capped, not a longer name.
                d(Some("ureq_protocol"), L::Trace),
            ]
        );
    }

    #[test]
    fn bad_rust_log_is_an_error_naming_the_directive() {
        let e = parse_rust_log("nbd=loud").unwrap_err().to_string();
        assert!(
            e.contains("\"nbd=loud\"") && e.contains("not a level"),
            "{e}"
        );
        assert!(parse_rust_log("a=b=c")
            .unwrap_err()
            .to_string()
            .contains("more than one '='"));
        assert!(parse_rust_log("info/a/b")
            .unwrap_err()
            .to_string()
            .contains("more than one '/'"));
        assert!(parse_rust_log("=info")
            .unwrap_err()
            .to_string()
            .contains("no module"));
    }
}
