//! From the command line to a [`Command`]: the command word (or, as PID 1, the implied `run` and its
//! application), then each command's own options through the one parser, [`crate::argv::Args`].
//! `nbd` and `image` are parsed by their own modules when they run.

use super::help::{
    CHECK_HELP, DOCTOR_HELP, HELP, POLICY_DIGEST_HELP, PROBE_HELP, REPORT_HELP, RUN_HELP,
};
use super::{Command, SourceArg};
use crate::argv::{Arg, Args, Usage};
use crate::attest::tool::{Format, PolicySource};
use std::path::PathBuf;

/// Parse `args` (without `argv[0]`). `pid1` makes `run` the default.
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
        "doctor" => parse_doctor(rest),
        "nbd" => Ok(Command::Nbd(rest.to_vec())),
        "image" => Ok(Command::Image(rest.to_vec())),
        "report" => parse_report(rest),
        "policy-digest" => parse_policy_digest(rest),
        "key" => super::key::parse_key(rest),
        "version" | "--version" | "-V" => Ok(Command::Version),
        "help" | "--help" | "-h" => Ok(Command::Help(help_of(rest.first().map(String::as_str)))),
        "--" if pid1 => parse_run(args),
        s if pid1 && !s.starts_with('-') => Ok(Command::Run {
            source: SourceArg::Lookup,
            app: args.to_vec(),
        }),
        s if pid1 && (s.starts_with("--manifest") || s.starts_with("--legacy")) => parse_run(args),
        other => Err(Usage(format!(
            "unknown command \"{other}\"; run `encfs-init help`"
        ))),
    }
}

/// `help COMMAND`'s text.
fn help_of(command: Option<&str>) -> &'static str {
    match command {
        Some("run") => RUN_HELP,
        Some("check") => CHECK_HELP,
        Some("probe") => PROBE_HELP,
        Some("doctor") => DOCTOR_HELP,
        Some("report") => REPORT_HELP,
        Some("policy-digest") => POLICY_DIGEST_HELP,
        Some("image") => crate::image::HELP,
        Some("nbd") => crate::nbd::cli::HELP,
        Some("key") => super::help::KEY_HELP,
        _ => HELP,
    }
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

/// `--manifest PATH` and `--legacy FILE`, which `run` and `check` share; `Ok(false)` for another option.
fn source_option(a: &mut Args, opt: &str, source: &mut SourceArg) -> Result<bool, Usage> {
    match opt {
        "--manifest" => set_source(source, SourceArg::Toml(a.path()?))?,
        "--legacy" => set_source(source, SourceArg::Legacy(a.path()?))?,
        _ => return Ok(false),
    }
    Ok(true)
}

fn parse_run(args: &[String]) -> Result<Command, Usage> {
    let mut a = Args::new("run", "encfs-init help run", args);
    let mut source = SourceArg::Lookup;
    loop {
        if let Some(app) = a.after_double_dash() {
            if app.is_empty() {
                return Err(Usage(
                    "nothing after --: give the COMMAND to supervise".into(),
                ));
            }
            return Ok(Command::Run { source, app });
        }
        match a.next_arg()? {
            None => break,
            Some(Arg::Help) => return Ok(Command::Help(RUN_HELP)),
            Some(Arg::Opt(o)) if source_option(&mut a, &o, &mut source)? => {}
            Some(Arg::Value(v)) => {
                return Err(Usage(format!(
                    "run: unexpected argument \"{v}\"; put the application after --, e.g. `encfs-init run -- {v}`"
                )))
            }
            Some(other) => return Err(a.unexpected(other)),
        }
    }
    Ok(Command::Run {
        source,
        app: Vec::new(),
    })
}

fn parse_doctor(args: &[String]) -> Result<Command, Usage> {
    let mut a = Args::new("doctor", "encfs-init help doctor", args);
    let mut source = SourceArg::Lookup;
    let mut opts = crate::doctor::Options::default();
    while let Some(arg) = a.next_arg()? {
        match arg {
            Arg::Help => return Ok(Command::Help(DOCTOR_HELP)),
            Arg::Opt(o) if source_option(&mut a, &o, &mut source)? => {}
            Arg::Opt(o) if o == "--policy" => opts.policy = Some(a.path()?),
            Arg::Opt(o) if o == "--json" => opts.json = true,
            other => return Err(a.unexpected(other)),
        }
    }
    Ok(Command::Doctor { source, opts })
}

fn parse_check(args: &[String]) -> Result<Command, Usage> {
    let mut a = Args::new("check", "encfs-init help check", args);
    let mut source = SourceArg::Lookup;
    while let Some(arg) = a.next_arg()? {
        match arg {
            Arg::Help => return Ok(Command::Help(CHECK_HELP)),
            Arg::Opt(o) if source_option(&mut a, &o, &mut source)? => {}
            Arg::Value(v) => set_source(&mut source, SourceArg::Toml(PathBuf::from(v)))?,
            other => return Err(a.unexpected(other)),
        }
    }
    Ok(Command::Check { source })
}

fn parse_probe(args: &[String]) -> Result<Command, Usage> {
    let mut a = Args::new("probe", "encfs-init help probe", args);
    let mut source = SourceArg::Lookup;
    let mut readiness_file = None;
    while let Some(arg) = a.next_arg()? {
        match arg {
            Arg::Help => return Ok(Command::Help(PROBE_HELP)),
            Arg::Opt(o) if o == "--manifest" => {
                set_source(&mut source, SourceArg::Toml(a.path()?))?;
            }
            Arg::Opt(o) if o == "--readiness-file" => readiness_file = Some(a.path()?),
            other => return Err(a.unexpected(other)),
        }
    }
    Ok(Command::Probe {
        source,
        readiness_file,
    })
}

fn parse_report(args: &[String]) -> Result<Command, Usage> {
    let mut a = Args::new("report", "encfs-init help report", args);
    let mut data = None;
    let mut format = Format::Json;
    let mut decode = None;
    while let Some(arg) = a.next_arg()? {
        match arg {
            Arg::Help => return Ok(Command::Help(REPORT_HELP)),
            Arg::Opt(o) if o == "--data" => data = Some(a.value()?),
            Arg::Opt(o) if o == "--raw" => format = Format::Raw,
            Arg::Opt(o) if o == "--json" => format = Format::Json,
            Arg::Value(v) if v == "decode" && decode.is_none() && data.is_none() => {
                decode = Some(a.path()?);
            }
            other => return Err(a.unexpected(other)),
        }
    }
    match decode {
        Some(file) if data.is_none() => Ok(Command::ReportDecode { file, format }),
        Some(_) => Err(Usage(
            "report decode: --data makes no sense with decode".into(),
        )),
        None => Ok(Command::Report { data, format }),
    }
}

fn parse_policy_digest(args: &[String]) -> Result<Command, Usage> {
    let mut a = Args::new("policy-digest", "encfs-init help policy-digest", args);
    let mut source = None;
    while let Some(arg) = a.next_arg()? {
        let new = match arg {
            Arg::Help => return Ok(Command::Help(POLICY_DIGEST_HELP)),
            Arg::Opt(o) if o == "-p" => PolicySource::Inline(a.value()?),
            Arg::Opt(o) if o == "-f" => PolicySource::File(a.path()?),
            other => return Err(a.unexpected(other)),
        };
        if source.replace(new).is_some() {
            return Err(Usage("policy-digest: give one of -p or -f, once".into()));
        }
    }
    source
        .map(|source| Command::PolicyDigest { source })
        .ok_or_else(|| Usage("policy-digest: give -p BASE64 or -f FILE".into()))
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
    fn both_value_forms_and_one_wording() {
        assert_eq!(
            parse(&s(&["run", "--manifest=/m.toml"]), true).unwrap(),
            Command::Run {
                source: SourceArg::Toml("/m.toml".into()),
                app: vec![]
            }
        );
        assert_eq!(
            parse(&s(&["--manifest=/m.toml", "--", "/app"]), true).unwrap(),
            Command::Run {
                source: SourceArg::Toml("/m.toml".into()),
                app: s(&["/app"])
            }
        );
        assert_eq!(
            parse(&s(&["probe", "--bogus"]), false).unwrap_err().0,
            "probe: unknown option \"--bogus\"; see `encfs-init help probe`"
        );
        assert_eq!(
            parse(&s(&["run", "/app"]), false).unwrap_err().0,
            "run: unexpected argument \"/app\"; put the application after --, e.g. `encfs-init run -- /app`"
        );
    }

    #[test]
    fn attestation_commands() {
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
        assert_eq!(
            parse(&s(&["doctor", "--policy", "p.b64", "--json"]), false).unwrap(),
            Command::Doctor {
                source: SourceArg::Lookup,
                opts: crate::doctor::Options {
                    policy: Some(PathBuf::from("p.b64")),
                    json: true,
                },
            }
        );
        assert!(parse(&s(&["doctor", "extra"]), false).is_err());
        assert!(parse(&s(&["policy-digest", "-p", "a", "-f", "b"]), false).is_err());
        assert!(parse(&s(&["report", "--bogus"]), false).is_err());
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
        for c in ["run", "check", "probe", "doctor"] {
            assert!(
                matches!(parse(&s(&[c, "--help"]), false).unwrap(), Command::Help(t) if t.contains(&format!("encfs-init {c}")))
            );
        }
        assert!(
            matches!(parse(&s(&["help", "probe"]), false).unwrap(), Command::Help(t) if t.contains("readiness"))
        );
        for c in ["image", "nbd", "report", "policy-digest", "key", "doctor"] {
            assert!(
                matches!(parse(&s(&["help", c]), false).unwrap(), Command::Help(t) if t.contains(&format!("encfs-init {c}"))),
                "{c}"
            );
        }
    }
}
