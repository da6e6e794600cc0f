//! The validator's state and the checks many fields share: a finding recorded with its place, paths
//! (relative to the manifest, absolute), secret files read, durations in range, endpoint and service URLs
//! (https unless test mode), hex values.

use super::*;

/// The validator: where findings are collected, and the checks many fields share.
pub(super) struct V<'a> {
    pub(super) loc: &'a dyn Locate,
    pub(super) errors: Vec<Error>,
    pub(super) base_dir: Option<PathBuf>,
    pub(super) test_mode: bool,
}

impl V<'_> {
    pub(super) fn err(
        &mut self,
        path: &FieldPath,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) {
        let (at, field) = self.loc.locate(path);
        self.errors.push(Error {
            source: self.loc.source().to_string(),
            at,
            field,
            problem: problem.into(),
            fix: fix.into(),
        });
    }

    /// `got` is none of `choices` for `what`: "unknown {what} \"{got}\"", the fix led by a did-you-mean hint.
    pub(super) fn unknown_choice<const N: usize>(
        &mut self,
        path: &FieldPath,
        what: &str,
        got: &str,
        choices: [&str; N],
        fix: &str,
    ) {
        let hint = did_you_mean(got, choices)
            .map(|s| format!("did you mean \"{s}\"? "))
            .unwrap_or_default();
        self.err(
            path,
            format!("unknown {what} \"{got}\""),
            format!("{hint}{fix}"),
        );
    }

    pub(super) fn resolve(&self, p: &str) -> PathBuf {
        let path = PathBuf::from(p);
        match (&self.base_dir, path.is_absolute()) {
            (Some(base), false) => base.join(path),
            _ => path,
        }
    }

    pub(super) fn read_file(&mut self, path: &FieldPath, p: &str, what: &str) -> Option<Vec<u8>> {
        let full = self.resolve(p);
        match std::fs::read(&full) {
            Ok(b) => Some(b),
            Err(e) => {
                self.err(
                    path,
                    format!("cannot read {what} file {}: {e}", full.display()),
                    "point it at a readable file (relative paths are relative to the manifest)",
                );
                None
            }
        }
    }

    pub(super) fn abs_path(&mut self, path: &FieldPath, p: &str, example: &str) -> Option<PathBuf> {
        if !p.starts_with('/') {
            self.err(
                path,
                format!("\"{p}\" is not an absolute path"),
                format!("use an absolute path such as {example}"),
            );
            return None;
        }
        let pb = PathBuf::from(p);
        if pb
            .components()
            .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
            || p.contains("//")
            || (p.len() > 1 && p.ends_with('/'))
        {
            self.err(
                path,
                format!(
                    "\"{p}\" is not a normalized path (no \".\", \"..\", \"//\" or trailing \"/\")"
                ),
                format!("write it plainly, e.g. {example}"),
            );
            return None;
        }
        Some(pb)
    }

    pub(super) fn dur(
        &mut self,
        path: &FieldPath,
        v: Option<Dur>,
        default: Duration,
        max: Duration,
    ) -> Duration {
        let d = v.map_or(default, |d| d.0);
        if d.is_zero() || d > max {
            self.err(
                path,
                format!(
                    "{} is out of range",
                    crate::manifest::units::fmt_duration(d)
                ),
                format!(
                    "use a value above 0 and at most {}",
                    crate::manifest::units::fmt_duration(max)
                ),
            );
        }
        d
    }

    /// A service endpoint: `host`, `host:port` or `https://host[:port][/path]`; http only in test mode
    /// ([`crate::url::endpoint`]).
    pub(super) fn endpoint(&mut self, path: &FieldPath, raw: &str) -> Option<Endpoint> {
        use crate::url::EndpointError as E;
        match crate::url::endpoint(raw, self.test_mode) {
            Ok(url) => Some(Endpoint(url)),
            Err(e) => {
                let fix = match e {
                    E::Invalid => {
                        "write a host name such as myvault.vault.azure.net or an https:// URL"
                    }
                    E::PlainHttp => "use https (plain http is allowed only with test_mode = true)",
                    E::Scheme(_) => "use https://",
                };
                self.err(path, format!("\"{}\" {e}", raw.trim()), fix);
                None
            }
        }
    }

    /// A fixed-default endpoint given as an http(s) URL. Tokens and assertions travel to (or from) these:
    /// https only, unless `test_mode`; with `link_local`, plain http is allowed to Azure's link-local
    /// address too ([`AZURE_LINK_LOCAL`]: IMDS and THIM are served there over http by design).
    pub(super) fn service_url(
        &mut self,
        path: &FieldPath,
        raw: Option<&str>,
        default: &str,
        link_local: bool,
    ) -> Endpoint {
        let Some(raw) = raw else {
            return Endpoint(default.to_string());
        };
        let ok = (raw.starts_with("http://") || raw.starts_with("https://"))
            && raw
                .split_once("://")
                .is_some_and(|(_, r)| !r.is_empty() && !r.starts_with('/'))
            && !raw.contains([' ', '?', '#']);
        if !ok {
            self.err(
                path,
                format!("\"{raw}\" is not an http(s) URL"),
                format!("write a URL such as {default}"),
            );
        } else if raw.starts_with("http://")
            && !self.test_mode
            && !(link_local && crate::url::host(raw) == AZURE_LINK_LOCAL)
        {
            self.err(
                path,
                format!("\"{raw}\" uses plain http"),
                if link_local {
                    format!("use https, or http only to Azure's link-local {AZURE_LINK_LOCAL} (any other plain http needs test_mode = true)")
                } else {
                    "use https (plain http is allowed only with test_mode = true)".to_string()
                },
            );
        }
        Endpoint(raw.trim_end_matches('/').to_string())
    }

    pub(super) fn hex(
        &mut self,
        path: &FieldPath,
        s: &str,
        len: Option<usize>,
        what: &str,
    ) -> Option<Vec<u8>> {
        let Some(out) = crate::hex::decode(s) else {
            self.err(
                path,
                format!("{what} is not hex"),
                "write hex digits only (0-9, a-f), an even number of them",
            );
            return None;
        };
        if let Some(n) = len {
            if out.len() != n {
                self.err(
                    path,
                    format!("{what} has {} bytes", out.len()),
                    format!("give exactly {n} bytes ({} hex digits)", n * 2),
                );
                return None;
            }
        }
        Some(out)
    }
}
