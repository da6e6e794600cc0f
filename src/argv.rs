//! The one command-line parser every command uses (`run`, `check`, `probe`, `report`, `policy-digest`,
//! `nbd serve`, `image create|seal|check`), built on the `lexopt` crate: `--flag value` and `--flag=value`,
//! `-p VALUE` and `-pVALUE`, `--` ending the options, `-h`/`--help` anywhere, and one wording for every usage
//! error (an unknown option, a stray argument, a missing value, a value given to a flag).
//!
//! Each command keeps its own options next to its own code and asks [`Args`] for the next one; this module
//! knows no command. Why lexopt and not clap (release musl binary, measured for issue 14): moving the four
//! hand-written parsers onto lexopt, with the typed errors of the same change, grew it by 52 KiB; clap only
//! added beside them grew it by 220 KiB (its `std` feature alone) to 344 KiB (its default features), and
//! our help texts would have to be rebuilt in clap's form.
#![forbid(unsafe_code)]

use crate::exit;
use std::path::PathBuf;

/// A usage error: one line saying what is wrong with the command line (and where to read more). A leaf
/// error: it has no cause.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);

impl Usage {
    /// A usage error with this text.
    pub fn new(text: impl Into<String>) -> Self {
        Usage(text.into())
    }
}

/// Report a usage error the one way (`usage: ...` in the log) and return its exit code, [`exit::USAGE`].
pub fn fail(e: &Usage) -> i32 {
    log::error!("usage: {e}");
    exit::USAGE
}

/// What a command's parser decided: run the command, or print a help text.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<T> {
    /// Run with these arguments.
    Run(T),
    /// `-h` / `--help`: print this text and exit 0.
    Help(&'static str),
}

/// One item of a command line.
#[derive(Debug, PartialEq, Eq)]
pub enum Arg {
    /// An option as it was named: `--manifest`, `-p` (its value, if any, comes from [`Args::value`]).
    Opt(String),
    /// A positional argument (or anything after `--`).
    Value(String),
    /// `-h` or `--help`.
    Help,
}

/// The arguments of one command (after its command words), read one at a time.
#[derive(Debug)]
pub struct Args {
    parser: lexopt::Parser,
    /// The command words, for messages: `check`, `image create`, `nbd serve`.
    cmd: &'static str,
    /// Where to read more, for messages: `encfs-init help check`.
    help_cmd: &'static str,
    /// The option (or command word) whose value [`Args::value`] reads.
    last: String,
}

impl Args {
    /// The arguments `args` of command `cmd` (its words, e.g. `image create`); `help_cmd` is the command
    /// that prints its help (e.g. `encfs-init help image`).
    pub fn new(cmd: &'static str, help_cmd: &'static str, args: &[String]) -> Self {
        Args {
            parser: lexopt::Parser::from_args(args),
            cmd,
            help_cmd,
            last: String::new(),
        }
    }

    /// The next option or argument; `None` at the end.
    pub fn next_arg(&mut self) -> Result<Option<Arg>, Usage> {
        let arg = match self.parser.next() {
            Ok(Some(a)) => a,
            Ok(None) => return Ok(None),
            Err(e) => return Err(self.lexopt_error(e)),
        };
        let opt = match arg {
            lexopt::Arg::Short('h') | lexopt::Arg::Long("help") => return Ok(Some(Arg::Help)),
            lexopt::Arg::Short(c) => format!("-{c}"),
            lexopt::Arg::Long(l) => format!("--{l}"),
            lexopt::Arg::Value(v) => {
                let v = utf8(v)?;
                // A command word that takes a value (`report decode FILE`) names it in messages.
                self.last.clone_from(&v);
                return Ok(Some(Arg::Value(v)));
            }
        };
        self.last.clone_from(&opt);
        Ok(Some(Arg::Opt(opt)))
    }

    /// The value of the option just returned by [`Args::next_arg`] (`--opt VALUE` or `--opt=VALUE`); an empty
    /// value counts as missing.
    pub fn value(&mut self) -> Result<String, Usage> {
        let v = self
            .parser
            .value()
            .map_err(|e| self.lexopt_error(e))
            .and_then(utf8)?;
        if v.is_empty() {
            return Err(self.missing());
        }
        Ok(v)
    }

    /// [`Args::value`] as a path.
    pub fn path(&mut self) -> Result<PathBuf, Usage> {
        self.value().map(PathBuf::from)
    }

    /// Everything after a `--` that comes next (`None` when the next argument is not `--`): `run`'s
    /// application, whose own options are not ours.
    pub fn after_double_dash(&mut self) -> Option<Vec<String>> {
        let mut raw = self.parser.try_raw_args()?;
        raw.next_if(|a| a == "--")?;
        Some(raw.map(|a| a.to_string_lossy().into_owned()).collect())
    }

    /// The usage error for an item the command does not take.
    pub fn unexpected(&self, arg: Arg) -> Usage {
        match arg {
            Arg::Opt(o) => self.error(format!("unknown option \"{o}\"")),
            Arg::Value(v) => self.error(format!("unexpected argument \"{v}\"")),
            Arg::Help => self.error("unexpected --help".into()),
        }
    }

    /// A usage error of this command: `CMD: TEXT; see `HELP_CMD``.
    pub fn error(&self, text: String) -> Usage {
        Usage(format!("{}: {text}; see `{}`", self.cmd, self.help_cmd))
    }

    /// A usage error about the value of the last option: `CMD: --opt TEXT` (TEXT usually starts with the
    /// value, e.g. `"64MB" is ambiguous ...`).
    pub fn bad_value(&self, text: impl std::fmt::Display) -> Usage {
        Usage(format!("{}: {} {text}", self.cmd, self.last))
    }

    /// A usage error of this command without the pointer to its help: `CMD: TEXT`.
    pub fn plain(&self, text: impl std::fmt::Display) -> Usage {
        Usage(format!("{}: {text}", self.cmd))
    }

    fn missing(&self) -> Usage {
        Usage(format!("{}: {} needs a value", self.cmd, self.last))
    }

    fn lexopt_error(&self, e: lexopt::Error) -> Usage {
        match e {
            lexopt::Error::MissingValue { .. } => self.missing(),
            lexopt::Error::UnexpectedValue { option, .. } => {
                self.error(format!("{option} takes no value"))
            }
            other => self.error(other.to_string()),
        }
    }
}

/// An argument as text: the process's arguments are checked when read, so this fails only for a caller's own
/// non-UTF-8 list.
fn utf8(v: std::ffi::OsString) -> Result<String, Usage> {
    v.into_string()
        .map_err(|bad| Usage(format!("argument {bad:?} is not valid UTF-8")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Args {
        let v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
        Args::new("demo", "encfs-init help demo", &v)
    }

    #[test]
    fn both_value_forms_and_help_anywhere() {
        for form in [&["--out", "x"][..], &["--out=x"]] {
            let mut a = args(form);
            assert_eq!(a.next_arg().unwrap(), Some(Arg::Opt("--out".into())));
            assert_eq!(a.value().unwrap(), "x");
            assert_eq!(a.next_arg().unwrap(), None);
        }
        let mut a = args(&["-pVAL", "pos", "-h"]);
        assert_eq!(a.next_arg().unwrap(), Some(Arg::Opt("-p".into())));
        assert_eq!(a.value().unwrap(), "VAL");
        assert_eq!(a.next_arg().unwrap(), Some(Arg::Value("pos".into())));
        assert_eq!(a.next_arg().unwrap(), Some(Arg::Help));
    }

    #[test]
    fn one_wording_for_every_usage_error() {
        let mut a = args(&["--out"]);
        a.next_arg().unwrap();
        assert_eq!(a.value().unwrap_err().0, "demo: --out needs a value");
        let mut a = args(&["--out="]);
        a.next_arg().unwrap();
        assert_eq!(a.value().unwrap_err().0, "demo: --out needs a value");
        let mut a = args(&["--flag=x", "y"]);
        a.next_arg().unwrap();
        assert_eq!(
            a.next_arg().unwrap_err().0,
            "demo: --flag takes no value; see `encfs-init help demo`"
        );
        let mut a = args(&["--bogus"]);
        let bogus = a.next_arg().unwrap().unwrap();
        assert_eq!(
            a.unexpected(bogus).0,
            "demo: unknown option \"--bogus\"; see `encfs-init help demo`"
        );
    }

    #[test]
    fn a_value_may_look_like_an_option_and_double_dash_ends_options() {
        let mut a = args(&["--legacy", "-", "--", "/app", "--x"]);
        a.next_arg().unwrap();
        assert_eq!(a.value().unwrap(), "-");
        assert_eq!(
            a.after_double_dash(),
            Some(vec!["/app".into(), "--x".into()])
        );
        let mut a = args(&["/app"]);
        assert_eq!(a.after_double_dash(), None);
        assert_eq!(a.next_arg().unwrap(), Some(Arg::Value("/app".into())));
    }
}
