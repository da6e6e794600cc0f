//! `encfs-init key import|policy`: the options, parsed by the one parser into a
//! [`crate::keyimport::KeyCommand`] (the help text is `help.rs`'s `KEY_HELP`).

use super::help::KEY_HELP;
use super::Command;
use crate::argv::{Arg, Args, Usage};
use crate::keyimport::{ImportArgs, KeyCommand};

/// Parse the arguments after `key`.
pub(super) fn parse_key(args: &[String]) -> Result<Command, Usage> {
    let (sub, import) = match args.first().map(String::as_str) {
        None | Some("-h" | "--help" | "help") => return Ok(Command::Help(KEY_HELP)),
        Some("import") => ("key import", true),
        Some("policy") => ("key policy", false),
        Some(other) => {
            return Err(Usage(format!(
                "unknown key command \"{other}\"; use import or policy"
            )))
        }
    };
    let mut a = Args::new(sub, "encfs-init help key", &args[1..]);
    let mut o = ImportArgs::default();
    let mut config = None;
    while let Some(arg) = a.next_arg()? {
        let opt = match arg {
            Arg::Help => return Ok(Command::Help(KEY_HELP)),
            Arg::Opt(opt) => opt,
            other => return Err(a.unexpected(other)),
        };
        match (opt.as_str(), import) {
            ("--config", _) => config = Some(a.path()?),
            ("--key-file", true) => o.key_file = Some(a.path()?),
            ("--rsa-key", true) => o.rsa_key = Some(a.path()?),
            ("--imds", true) => o.imds = true,
            ("--workload-identity", true) => o.workload_identity = true,
            ("--random-salt", true) => o.random_salt = true,
            ("--disk-key-out", true) => o.disk_key_out = Some(a.path()?),
            ("--private-key-out", true) => o.private_key_out = Some(a.path()?),
            ("--ca-bundle", true) => o.ca_bundle = Some(a.path()?),
            // Upstream's -kh took the key in argv, where every process can read it (/proc/*/cmdline).
            ("--key-hex" | "-k", true) => {
                return Err(a.error(format!(
                    "{opt} is not offered: a key on the command line is readable by every process; \
                     give it with --key-file FILE (32 raw bytes or 64 hex digits), or --key-file - on stdin"
                )))
            }
            _ => return Err(a.unexpected(Arg::Opt(opt))),
        }
    }
    let config = config.ok_or_else(|| a.plain("--config FILE is required"))?;
    if o.key_file.is_some() && o.rsa_key.is_some() {
        return Err(a.plain("give --key-file (oct-HSM) or --rsa-key (RSA-HSM), not both"));
    }
    Ok(Command::Key(if import {
        o.config = config;
        KeyCommand::Import(o)
    } else {
        KeyCommand::Policy(config)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn key_commands_parse_and_refuse_a_key_in_argv() {
        let c = parse_key(&s(&[
            "import",
            "--config",
            "c.toml",
            "--key-file",
            "k",
            "--imds",
            "--disk-key-out=d",
        ]))
        .unwrap();
        let Command::Key(KeyCommand::Import(a)) = c else {
            panic!("{c:?}")
        };
        assert_eq!(
            (a.config, a.key_file, a.imds, a.disk_key_out),
            ("c.toml".into(), Some("k".into()), true, Some("d".into()))
        );
        assert_eq!(
            parse_key(&s(&["policy", "--config", "c"])).unwrap(),
            Command::Key(KeyCommand::Policy("c".into()))
        );
        assert!(parse_key(&s(&["policy", "--config", "c", "--imds"])).is_err());
        assert!(parse_key(&s(&["import"])).is_err());
        let e = parse_key(&s(&["import", "--config", "c", "--key-hex", "00"])).unwrap_err();
        assert!(e.0.contains("readable by every process"), "{e}");
        assert!(
            matches!(parse_key(&s(&["--help"])).unwrap(), Command::Help(t) if t.contains("encfs-init key import"))
        );
    }
}
