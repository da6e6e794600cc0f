//! `encfs-init doctor`: what the boot would meet on this platform, checked without releasing any key.
//!
//! Each check is a function returning [`Finding`]s (its typed result), so tests can drive it with fakes:
//! [`kernel`] (the features the transports and dm-crypt need, and the very choice `auto` makes at boot,
//! [`crate::transport::choose`]), [`evidence`] (the SEV-SNP interface, a fresh report verified against the
//! pinned AMD roots, host_data against a CCE policy, the UVM information), [`network`] (DNS, TCP and TLS to
//! every endpoint the manifest names, identity tokens and their audience, MAA) and [`blob`] (each blob's
//! properties, its LUKS2 header and, when pinned, its dm-verity tree).
//!
//! Output: one line per finding, `STATUS  CHECK: DETAIL[; fix: FIX]`, STATUS `ok`, `problem` or `skipped`
//! (not checked, with the reason; not a failure), then a summary line; or, with `--json`, one JSON array of
//! `{check, status, detail, fix}`. Exit 0 when nothing is a problem, 1 when something is, 2 for a usage
//! error or an invalid manifest.
#![forbid(unsafe_code)]

pub mod blob;
pub mod evidence;
pub mod kernel;
pub mod network;

use crate::manifest::Plan;
use std::path::PathBuf;

/// Exit code when at least one check found a problem.
pub const PROBLEM: i32 = 1;

/// A check's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Found as the boot needs it.
    Ok,
    /// The boot would fail (or misbehave) here; the finding says how to fix it.
    Problem,
    /// Not checked (the detail says why); not a failure.
    Skipped,
}

impl Status {
    /// As printed.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Problem => "problem",
            Status::Skipped => "skipped",
        }
    }
}

/// What one check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The check's name (`kernel nbd`, `dns HOST`, `blob[0] luks2`, ...).
    pub check: String,
    /// The verdict.
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// How to fix a problem.
    pub fix: Option<String>,
}

impl Finding {
    /// An `ok` finding.
    pub fn ok(check: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(check, Status::Ok, detail, None)
    }

    /// A `problem` with its fix.
    pub fn problem(check: impl Into<String>, detail: impl Into<String>, fix: &str) -> Self {
        Self::new(check, Status::Problem, detail, Some(fix.to_string()))
    }

    /// A `skipped` check and why.
    pub fn skipped(check: impl Into<String>, why: impl Into<String>) -> Self {
        Self::new(check, Status::Skipped, why, None)
    }

    /// A `problem` from an error: its chain ([`crate::errors::chain`]) as the detail, its fixes as the fix
    /// (or `fix` when the error names none).
    pub fn error(check: impl Into<String>, e: &dyn std::error::Error, fix: &str) -> Self {
        Self::from_line(check, &crate::errors::chain(e), fix)
    }

    /// A `problem` from one error line `what[; fix: ...]`.
    pub fn from_line(check: impl Into<String>, line: &str, fix: &str) -> Self {
        let (detail, own) = match line.split_once("; fix: ") {
            Some((d, f)) => (d.to_string(), f.to_string()),
            None => (line.to_string(), fix.to_string()),
        };
        Self::new(check, Status::Problem, detail, Some(own))
    }

    fn new(
        check: impl Into<String>,
        status: Status,
        detail: impl Into<String>,
        fix: Option<String>,
    ) -> Self {
        Finding {
            check: check.into(),
            status,
            detail: detail.into(),
            fix,
        }
    }

    /// The finding's line: `STATUS  CHECK: DETAIL[; fix: FIX]`.
    pub fn line(&self) -> String {
        let mut l = format!(
            "{:<7}  {}: {}",
            self.status.as_str(),
            self.check,
            self.detail
        );
        if let Some(f) = &self.fix {
            l.push_str("; fix: ");
            l.push_str(f);
        }
        l
    }

    /// As JSON: `{check, status, detail, fix}` (`fix` null when there is none).
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "check": self.check,
            "status": self.status.as_str(),
            "detail": self.detail,
            "fix": self.fix,
        })
    }
}

/// What the command line asked for besides the manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// `--policy FILE`: the base64 CCE policy whose digest host_data must be.
    pub policy: Option<PathBuf>,
    /// `--json`.
    pub json: bool,
}

/// Run every check for `plan` (none releases a key).
pub fn run(plan: &Plan, opts: &Options) -> Vec<Finding> {
    let mut out = kernel::check(
        &crate::transport::Probe::kernel(),
        &kernel::Features::look(),
        plan,
    );
    let client = crate::http::Client::new(&plan.network);
    let uvm = crate::attest::uvm::load(&crate::attest::uvm::process_env, std::path::Path::new("/"));
    out.push(evidence::uvm(&uvm));
    let uvm = uvm.unwrap_or_default();
    let host_certs = uvm.host_certs.is_some();
    let client = match client {
        Ok(c) => c,
        Err(e) => {
            out.push(Finding::error(
                "http client",
                &e,
                "fix [network] ca_bundle in the manifest",
            ));
            out.extend(evidence::attestation(
                plan,
                &uvm,
                None,
                opts.policy.as_deref(),
            ));
            return out;
        }
    };
    out.extend(evidence::attestation(
        plan,
        &uvm,
        Some(&client),
        opts.policy.as_deref(),
    ));
    out.extend(network::check(plan, &client, host_certs));
    out.extend(blob::check(plan, &client));
    out
}

/// The exit code for `findings`: 0 when none is a problem, else [`PROBLEM`].
pub fn exit_code(findings: &[Finding]) -> i32 {
    if findings.iter().any(|f| f.status == Status::Problem) {
        PROBLEM
    } else {
        crate::exit::OK
    }
}

/// The text output: a line per finding, then `doctor: N ok, N problem(s), N skipped`.
pub fn render(findings: &[Finding]) -> String {
    let mut s = String::new();
    for f in findings {
        s.push_str(&f.line());
        s.push('\n');
    }
    let n = |st| findings.iter().filter(|f| f.status == st).count();
    let problems = n(Status::Problem);
    s.push_str(&format!(
        "doctor: {} ok, {problems} problem{}, {} skipped{}\n",
        n(Status::Ok),
        if problems == 1 { "" } else { "s" },
        n(Status::Skipped),
        if problems == 0 {
            ": nothing found that would stop the boot"
        } else {
            ": fix the problems above before deploying"
        }
    ));
    s
}

/// The `--json` output: one array of findings.
pub fn render_json(findings: &[Finding]) -> String {
    let v: Vec<serde_json::Value> = findings.iter().map(Finding::json).collect();
    format!("{}\n", serde_json::Value::Array(v))
}

/// Run the checks and print them; returns the exit code.
pub fn main(plan: &Plan, opts: &Options) -> i32 {
    let findings = run(plan, opts);
    let text = if opts.json {
        render_json(&findings)
    } else {
        render(&findings)
    };
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(text.as_bytes()).and_then(|()| o.flush());
    exit_code(&findings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_carries_its_fix_at_the_end_and_the_exit_code_counts_problems_only() {
        let p = Finding::from_line("dns x", "cannot resolve x; fix: check the name", "other");
        assert_eq!(
            p.line(),
            "problem  dns x: cannot resolve x; fix: check the name"
        );
        let s = Finding::skipped("host_data", "no --policy FILE given");
        assert_eq!(s.line(), "skipped  host_data: no --policy FILE given");
        assert_eq!(exit_code(&[s.clone(), Finding::ok("a", "b")]), 0);
        assert_eq!(exit_code(&[s, p.clone()]), PROBLEM);
        assert_eq!(p.json()["fix"], "check the name");
        assert!(render(&[p]).ends_with(
            "doctor: 0 ok, 1 problem, 0 skipped: fix the problems above before deploying\n"
        ));
    }
}
