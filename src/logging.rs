//! Logging through `log` + env_logger, on stderr (the console as PID 1), optionally teed to a file.
//!
//! Level precedence: `RUST_LOG` (full env_logger syntax) > `LogLevel` (upstream's variable, logrus names) >
//! the manifest's `[log] level` > info. `LogFile` (upstream's variable) or `[log] file` appends to a file
//! created 0600. The devicemapper crate logs whole dm tables at trace level, so its target is capped at info
//! whatever the filters say: no table (and so no key) can reach a log; ureq (which logs URLs, so SAS
//! tokens, and headers at trace) and rustls are capped the same way.
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
    match &rust_log {
        Some(filters) => {
            b.parse_filters(filters);
        }
        None => {
            b.filter_level(log::LevelFilter::Trace);
        }
    }
    // Never let a dependency's trace output through: the devicemapper crate logs whole dm tables, ureq logs
    // request URLs (a SAS is a query string) and headers. Our own modules log what matters, redacted.
    for target in ["devicemapper", "ureq", "ureq_proto", "rustls"] {
        b.filter_module(target, log::LevelFilter::Info);
    }
    b.target(env_logger::Target::Pipe(Box::new(Tee)));
    b.format(move |f, r| {
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
    let _ = LEVEL_FROM_ENV.set(rust_log.is_some() || upstream.is_some());
    if rust_log.is_none() {
        log::set_max_level(upstream.unwrap_or(log::LevelFilter::Info));
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
