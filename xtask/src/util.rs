//! Small shared helpers: one string-carrying error type with context chaining, and wrappers that run a host
//! command and turn a non-zero exit into an error that shows the command and the tail of its output.
//!
//! xtask is a developer tool that only ever reports errors to a human, so one error type is enough; callers
//! attach what they were doing with [`Context::context`], and `main` prints the chain once.

use std::fmt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// An error message with its causes already folded in (`doing X: because Y`).
#[derive(Debug)]
pub struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl Error {
    /// An error from a plain message.
    pub fn msg(m: impl Into<String>) -> Self {
        Error(m.into())
    }
}

/// The result type of every xtask function.
pub type Result<T> = std::result::Result<T, Error>;

/// Return early with a formatted [`Error`].
macro_rules! bail {
    ($($arg:tt)*) => { return Err($crate::util::Error::msg(format!($($arg)*))) };
}
pub(crate) use bail;

/// Attach "what we were doing" to any displayable error.
pub trait Context<T> {
    /// Prefix the error with `what`.
    fn context(self, what: impl fmt::Display) -> Result<T>;
    /// Prefix the error with a lazily built message.
    fn with_context<D: fmt::Display>(self, what: impl FnOnce() -> D) -> Result<T>;
}

impl<T, E: fmt::Display> Context<T> for std::result::Result<T, E> {
    fn context(self, what: impl fmt::Display) -> Result<T> {
        self.map_err(|e| Error(format!("{what}: {e}")))
    }
    fn with_context<D: fmt::Display>(self, what: impl FnOnce() -> D) -> Result<T> {
        self.map_err(|e| Error(format!("{}: {e}", what())))
    }
}

/// Write `data` to `path` so that a reader (another thread, another run) sees the old file, no file, or all
/// of `data`, never a part: written to a name of this process and thread beside it, then renamed over it.
pub fn write_whole(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(
        ".part-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let tmp = std::path::PathBuf::from(tmp);
    let written = std::fs::write(&tmp, data).and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// How a command line looks when printed in an error.
pub fn show(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Run `cmd` to completion with captured output; a non-zero exit is an error quoting the last lines of stderr
/// (or stdout when stderr is empty).
pub fn run_captured(cmd: &mut Command) -> Result<Output> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run `{}`", show(cmd)))?;
    if !out.status.success() {
        let text = if out.stderr.is_empty() {
            &out.stdout
        } else {
            &out.stderr
        };
        bail!(
            "`{}` failed ({}):\n{}",
            show(cmd),
            out.status,
            tail(&String::from_utf8_lossy(text), 20)
        );
    }
    Ok(out)
}

/// Run `cmd` and return its stdout as a string.
pub fn stdout_of(cmd: &mut Command) -> Result<String> {
    let out = run_captured(cmd)?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Whether an executable called `name` is on `PATH`.
pub fn on_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| is_executable(&d.join(name))))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Seconds with one decimal, the way every timing is printed.
pub fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// Turn a `None` into an error.
pub trait OrErr<T> {
    /// `None` becomes an error with the message built by `what`.
    fn or_err<D: fmt::Display>(self, what: impl FnOnce() -> D) -> Result<T>;
}

impl<T> OrErr<T> for Option<T> {
    fn or_err<D: fmt::Display>(self, what: impl FnOnce() -> D) -> Result<T> {
        self.ok_or_else(|| Error(what().to_string()))
    }
}
