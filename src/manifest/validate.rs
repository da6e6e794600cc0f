//! From the user's [`Manifest`] to the typed [`Plan`]: defaults applied, every value checked once, secret files
//! read into redacting types. Every problem found is reported (not only the first), each naming its place.
#![forbid(unsafe_code)]

use super::error::{did_you_mean, Error, Errors, FieldPath, Locate};
use super::plan::*;
use super::schema::{self, Manifest};
use super::units::Dur;
use crate::secret::{SecretBytes, SecretString};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

/// Default readiness file for TOML manifests.
pub const DEFAULT_READINESS_FILE: &str = "/run/encfs-init/ready";

/// The readiness file's default: on the shared volume, next to the first filesystem's mount point (the
/// directory that holds the mount points, which an application container sees too); without filesystems
/// [`DEFAULT_READINESS_FILE`].
pub fn default_readiness_file(filesystems: &[FilesystemPlan]) -> PathBuf {
    filesystems
        .first()
        .and_then(|f| f.mount_point.parent())
        .map_or_else(
            || PathBuf::from(DEFAULT_READINESS_FILE),
            |dir| dir.join("encfs-init.ready"),
        )
}
/// Default cache block size: 1 MiB (a multiple of every sector size, under Put Page's 4 MiB, and near the
/// kernel's 1280 KiB max_sectors_kb for NBD so one kernel request maps to about one range GET).
pub const DEFAULT_BLOCK_SIZE: u64 = 1 << 20;
/// Default cache budget per filesystem.
pub const DEFAULT_CACHE_SIZE: u64 = 64 << 20;
/// Default HKDF label, as upstream.
pub const DEFAULT_LABEL: &str = "Symmetric Encryption Key";

const MIN_BLOCK: u64 = 64 << 10;
const MAX_BLOCK: u64 = 4 << 20;
const MAX_CACHE: u64 = 64 << 30;
const MIN_CACHE_BLOCKS: u64 = 4;

/// Inputs besides the manifest itself.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// Directory relative secret-file paths are resolved against (the manifest's directory).
    pub base_dir: Option<PathBuf>,
    /// Where the plan came from.
    pub origin: Option<Origin>,
}

struct V<'a> {
    loc: &'a dyn Locate,
    errors: Vec<Error>,
    base_dir: Option<PathBuf>,
    test_mode: bool,
}

impl V<'_> {
    fn err(&mut self, path: &FieldPath, problem: impl Into<String>, fix: impl Into<String>) {
        let (at, field) = self.loc.locate(path);
        self.errors.push(Error {
            source: self.loc.source().to_string(),
            at,
            field,
            problem: problem.into(),
            fix: fix.into(),
        });
    }

    fn resolve(&self, p: &str) -> PathBuf {
        let path = PathBuf::from(p);
        match (&self.base_dir, path.is_absolute()) {
            (Some(base), false) => base.join(path),
            _ => path,
        }
    }

    fn read_file(&mut self, path: &FieldPath, p: &str, what: &str) -> Option<Vec<u8>> {
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

    fn abs_path(&mut self, path: &FieldPath, p: &str, example: &str) -> Option<PathBuf> {
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

    fn dur(
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
                format!("{} is out of range", super::units::fmt_duration(d)),
                format!(
                    "use a value above 0 and at most {}",
                    super::units::fmt_duration(max)
                ),
            );
        }
        d
    }

    /// A service endpoint: `host`, `host:port` or `https://host[:port][/path]`; http only in test mode.
    fn endpoint(&mut self, path: &FieldPath, raw: &str) -> Option<Endpoint> {
        let raw = raw.trim();
        let (scheme, rest) = match raw.split_once("://") {
            Some((s, r)) => (s.to_ascii_lowercase(), r),
            None => ("https".to_string(), raw),
        };
        let rest = rest.trim_end_matches('/');
        let host = rest.split('/').next().unwrap_or_default();
        let bad_host = host.is_empty()
            || !host.chars().all(|c| {
                c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']' | '_')
            });
        if bad_host || rest.contains(['?', '#', ' ']) {
            self.err(
                path,
                format!("\"{raw}\" is not a valid endpoint"),
                "write a host name such as myvault.vault.azure.net or an https:// URL",
            );
            return None;
        }
        match scheme.as_str() {
            "https" => {}
            "http" if self.test_mode => {}
            "http" => {
                self.err(
                    path,
                    format!("\"{raw}\" uses plain http"),
                    "use https (plain http is allowed only with test_mode = true)",
                );
                return None;
            }
            other => {
                self.err(
                    path,
                    format!("unsupported scheme \"{other}\" in \"{raw}\""),
                    "use https://",
                );
                return None;
            }
        }
        Some(Endpoint(format!("{scheme}://{rest}")))
    }

    /// A fixed-default endpoint that may use http (IMDS is http by design, on a link-local address).
    fn service_url(&mut self, path: &FieldPath, raw: Option<&str>, default: &str) -> Endpoint {
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
        }
        Endpoint(raw.trim_end_matches('/').to_string())
    }

    fn hex(
        &mut self,
        path: &FieldPath,
        s: &str,
        len: Option<usize>,
        what: &str,
    ) -> Option<Vec<u8>> {
        let s = s.trim();
        let bytes = s.as_bytes();
        if bytes.len() % 2 != 0 || !bytes.iter().all(u8::is_ascii_hexdigit) {
            self.err(
                path,
                format!("{what} is not hex"),
                "write hex digits only (0-9, a-f), an even number of them",
            );
            return None;
        }
        let out: Vec<u8> = bytes
            .chunks(2)
            .map(|c| {
                let h = |b: u8| match b {
                    b'0'..=b'9' => b - b'0',
                    b'a'..=b'f' => b - b'a' + 10,
                    _ => b - b'A' + 10,
                };
                (h(c[0]) << 4) | h(c[1])
            })
            .collect();
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

/// Validate `m` into a plan. `loc` locates fields for messages.
pub fn validate(m: Manifest, loc: &dyn Locate, cx: &Context) -> Result<Plan, Errors> {
    let mut v = V {
        loc,
        errors: Vec::new(),
        base_dir: cx.base_dir.clone(),
        test_mode: m.test_mode,
    };
    let root = FieldPath::root();

    let readiness_explicit = m.readiness_file.as_deref().map(|r| {
        v.abs_path(
            &root.key("readiness_file"),
            r,
            "/mnt/remote/encfs-init.ready",
        )
        .unwrap_or_default()
    });

    let level = match m.log.level.as_deref() {
        None => log::LevelFilter::Info,
        Some(l) => parse_level(l).unwrap_or_else(|| {
            v.err(
                &root.key("log").key("level"),
                format!("unknown log level \"{l}\""),
                "use one of error, warn, info, debug, trace",
            );
            log::LevelFilter::Info
        }),
    };
    let log_file = m
        .log
        .file
        .as_deref()
        .and_then(|f| v.abs_path(&root.key("log").key("file"), f, "/var/log/encfs-init.log"));

    let mut kernel_modules = Vec::new();
    for (i, name) in m.kernel_modules.iter().enumerate() {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            v.err(
                &root.key("kernel_modules").index(i),
                format!("\"{name}\" is not a module name"),
                "write the module name without path or .ko, e.g. dm-crypt",
            );
        } else {
            kernel_modules.push(name.clone());
        }
    }

    let app = m.app.as_ref().and_then(|a| {
        let p = root.key("app");
        if a.command.is_empty() || a.command[0].is_empty() {
            v.err(
                &p.key("command"),
                "the command is empty",
                "give the program and its arguments, e.g. [\"/usr/bin/myapp\", \"--serve\"]",
            );
            return None;
        }
        let restart = match a.restart.as_deref() {
            None | Some("never") => RestartMode::Never,
            Some("on-failure") => RestartMode::OnFailure,
            Some("always") => RestartMode::Always,
            Some(o) => {
                v.err(
                    &p.key("restart"),
                    format!("unknown restart mode \"{o}\""),
                    "use \"never\", \"on-failure\" or \"always\"",
                );
                RestartMode::Never
            }
        };
        Some(AppPlan {
            argv: a.command.clone(),
            restart,
        })
    });

    let sp = root.key("supervise");
    let hour = Duration::from_secs(3600);
    let supervise = SupervisePlan {
        grace_period: v.dur(
            &sp.key("grace_period"),
            m.supervise.grace_period,
            Duration::from_secs(10),
            hour,
        ),
        backoff_initial: v.dur(
            &sp.key("backoff_initial"),
            m.supervise.backoff_initial,
            Duration::from_millis(500),
            hour,
        ),
        backoff_max: v.dur(
            &sp.key("backoff_max"),
            m.supervise.backoff_max,
            Duration::from_secs(30),
            hour,
        ),
        stable_after: v.dur(
            &sp.key("stable_after"),
            m.supervise.stable_after,
            Duration::from_secs(60),
            24 * hour,
        ),
        max_restarts: m.supervise.max_restarts.unwrap_or(10),
        health_interval: v.dur(
            &sp.key("health_interval"),
            m.supervise.health_interval,
            Duration::from_secs(30),
            24 * hour,
        ),
    };
    if supervise.backoff_initial > supervise.backoff_max {
        v.err(
            &sp.key("backoff_initial"),
            "backoff_initial is larger than backoff_max",
            "make backoff_initial <= backoff_max",
        );
    }

    let np = root.key("network");
    let network = NetworkPlan {
        connect_timeout: v.dur(
            &np.key("connect_timeout"),
            m.network.connect_timeout,
            Duration::from_secs(10),
            10 * 60 * Duration::from_secs(1),
        ),
        request_timeout: v.dur(
            &np.key("request_timeout"),
            m.network.request_timeout,
            Duration::from_secs(60),
            hour,
        ),
        retries: m.network.retries.unwrap_or(5),
        retry_backoff_max: v.dur(
            &np.key("retry_backoff_max"),
            m.network.retry_backoff_max,
            Duration::from_secs(10),
            hour,
        ),
        ca_bundle: m.network.ca_bundle.as_deref().map(|p| v.resolve(p)),
    };
    if network.retries > 100 {
        v.err(
            &np.key("retries"),
            format!("{} retries is not a sane budget", network.retries),
            "use at most 100",
        );
    }
    if let Some(ca) = &network.ca_bundle {
        match std::fs::read_to_string(ca) {
            Ok(t) if t.contains("-----BEGIN CERTIFICATE-----") => {}
            Ok(_) => v.err(
                &np.key("ca_bundle"),
                format!("{} holds no PEM certificate", ca.display()),
                "give a PEM file with -----BEGIN CERTIFICATE----- blocks",
            ),
            Err(e) => v.err(
                &np.key("ca_bundle"),
                format!("cannot read {}: {e}", ca.display()),
                "point it at a readable PEM file",
            ),
        }
    }

    let ep = root.key("endpoints");
    let endpoints = Endpoints {
        imds: v.service_url(
            &ep.key("imds"),
            m.endpoints.imds.as_deref(),
            "http://169.254.169.254",
        ),
        thim: v.service_url(
            &ep.key("thim"),
            m.endpoints.thim.as_deref(),
            "http://169.254.169.254/metadata/THIM/amd/certification",
        ),
        azcache: v.service_url(
            &ep.key("azcache"),
            m.endpoints.azcache.as_deref(),
            "https://global.acccache.azure.net",
        ),
        amd_kds: v.service_url(
            &ep.key("amd_kds"),
            m.endpoints.amd_kds.as_deref(),
            "https://kdsintf.amd.com",
        ),
        login_authority: v.service_url(
            &ep.key("login_authority"),
            m.endpoints.login_authority.as_deref(),
            "https://login.microsoftonline.com",
        ),
    };

    let ap = root.key("api_versions");
    let api = |name: &'static str, val: &Option<String>, default: &str, v: &mut V<'_>| -> String {
        let s = val.as_deref().unwrap_or(default);
        let s = s.strip_prefix("api-version=").unwrap_or(s);
        if s.is_empty()
            || !s
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        {
            v.err(
                &ap.key(name),
                format!("\"{s}\" is not an API version"),
                format!("write it like \"{default}\""),
            );
        }
        s.to_string()
    };
    let api_versions = ApiVersions {
        maa: api("maa", &m.api_versions.maa, "2020-10-01", &mut v),
        akv: api("akv", &m.api_versions.akv, "7.4", &mut v),
        imds: api("imds", &m.api_versions.imds, "2018-02-01", &mut v),
        blob: api("blob", &m.api_versions.blob, "2020-10-02", &mut v),
    };

    let identity = IdentityPlan {
        client_id: m.identity.client_id.clone().filter(|s| !s.is_empty()),
    };

    let certcache = m
        .certcache
        .as_ref()
        .and_then(|c| certcache(&mut v, &root.key("certcache"), c));

    let attestation = attestation(&mut v, &root.key("attestation"), &m.attestation);

    let mut filesystems = Vec::new();
    for (i, f) in m.filesystem.into_iter().enumerate() {
        if let Some(fs) = filesystem(&mut v, &root.key("filesystem").index(i), i, f) {
            filesystems.push(fs);
        }
    }
    check_mount_points(&mut v, &filesystems);
    let readiness_file = readiness_explicit.unwrap_or_else(|| default_readiness_file(&filesystems));

    if !v.errors.is_empty() {
        return Err(Errors(v.errors));
    }
    Ok(Plan {
        origin: cx.origin.clone().unwrap_or(Origin::None),
        test_mode: m.test_mode,
        log: LogPlan {
            level,
            file: log_file,
        },
        readiness_file,
        kernel_modules,
        app,
        supervise,
        network,
        endpoints,
        api_versions,
        identity,
        certcache,
        attestation,
        filesystems,
    })
}

fn attestation(v: &mut V<'_>, p: &FieldPath, a: &schema::Attestation) -> AttestationPlan {
    AttestationPlan {
        fake_vcek_key: fake_vcek_key(v, p, a),
        test_ark_pin: test_ark_pin(v, p, a),
    }
}

fn fake_vcek_key(
    v: &mut V<'_>,
    p: &FieldPath,
    a: &schema::Attestation,
) -> Option<(PathBuf, SecretBytes)> {
    let file = a.fake_vcek_key_file.as_deref()?;
    let fp = p.key("fake_vcek_key_file");
    if !v.test_mode {
        v.err(
            &fp,
            "a fake VCEK key is allowed only in test mode",
            "remove fake_vcek_key_file (a real SEV-SNP guest signs its own reports), or set test_mode = true for testing",
        );
        return None;
    }
    let full = v.resolve(file);
    let bytes = v.read_file(&fp, file, "fake VCEK key")?;
    match crate::attest::fake::pkcs8_der(&bytes) {
        Ok(der) => Some((full, der)),
        Err(e) => {
            v.err(
                &fp,
                format!("{} is not a P-384 private key: {e}", full.display()),
                "give a PKCS#8 P-384 key, PEM (-----BEGIN PRIVATE KEY-----) or DER",
            );
            None
        }
    }
}

fn test_ark_pin(
    v: &mut V<'_>,
    p: &FieldPath,
    a: &schema::Attestation,
) -> Option<(PathBuf, [u8; 32])> {
    let file = a.test_ark_file.as_deref()?;
    let fp = p.key("test_ark_file");
    if !v.test_mode {
        v.err(
            &fp,
            "an extra trusted ARK is allowed only in test mode",
            "remove test_ark_file (reports are verified against AMD's own root keys), or set test_mode = true for testing",
        );
        return None;
    }
    let full = v.resolve(file);
    let bytes = v.read_file(&fp, file, "test ARK certificate")?;
    let cert = if bytes.starts_with(b"-----") {
        crate::attest::cert::Cert::from_pem_chain(&bytes)
            .ok()
            .and_then(|mut c| (c.len() == 1).then(|| c.remove(0)))
    } else {
        crate::attest::cert::Cert::from_der(&bytes).ok()
    };
    match cert.map(|c| c.spki_sha256()) {
        Some(Ok(pin)) => Some((full, pin)),
        _ => {
            v.err(
                &fp,
                format!("{} is not one X.509 certificate", full.display()),
                "give the test ARK's certificate, PEM (one -----BEGIN CERTIFICATE----- block) or DER",
            );
            None
        }
    }
}

/// `error|warn|warning|info|debug|trace` (plus logrus' `fatal`, `panic`) to a level filter.
pub fn parse_level(s: &str) -> Option<log::LevelFilter> {
    Some(match s.to_ascii_lowercase().as_str() {
        "off" => log::LevelFilter::Off,
        "error" | "fatal" | "panic" => log::LevelFilter::Error,
        "warn" | "warning" => log::LevelFilter::Warn,
        "info" => log::LevelFilter::Info,
        "debug" => log::LevelFilter::Debug,
        "trace" => log::LevelFilter::Trace,
        _ => return None,
    })
}

fn certcache(v: &mut V<'_>, p: &FieldPath, c: &schema::CertCache) -> Option<CertCachePlan> {
    let kind = match c.endpoint_type.to_ascii_lowercase().as_str() {
        "amd" => CertCacheKind::Amd,
        "azcache" => CertCacheKind::AzCache,
        "localthim" => CertCacheKind::LocalThim,
        other => {
            v.err(
                &p.key("endpoint_type"),
                format!("unknown endpoint type \"{other}\""),
                "use \"AMD\", \"AzCache\" or \"LocalTHIM\"",
            );
            return None;
        }
    };
    let endpoint = if kind == CertCacheKind::LocalThim && !c.endpoint.contains("://") {
        // THIM is served over plain http on the host-local address (upstream fetches it with http://).
        Endpoint(format!("http://{}", c.endpoint.trim_end_matches('/')))
    } else {
        v.endpoint(&p.key("endpoint"), &c.endpoint)?
    };
    let strip = |s: &Option<String>, prefix: &str| {
        s.as_deref()
            .filter(|s| !s.is_empty())
            .map(|s| s.strip_prefix(prefix).unwrap_or(s).to_string())
    };
    Some(CertCachePlan {
        kind,
        endpoint,
        tee_type: c.tee_type.clone().filter(|s| !s.is_empty()),
        api_version: strip(&c.api_version, "api-version="),
        client_id: strip(&c.client_id, "clientId="),
    })
}

/// Split a blob URL into the URL without its query and the query (a SAS when it has `sig=`).
fn blob_url(v: &mut V<'_>, p: &FieldPath, raw: &str) -> Option<(BlobUrl, Option<String>)> {
    let fix = "write https://<account>.blob.core.windows.net/<container>/<blob>";
    let Some((scheme, rest)) = raw.split_once("://") else {
        v.err(p, format!("\"{}\" is not a URL", redact_query(raw)), fix);
        return None;
    };
    match scheme.to_ascii_lowercase().as_str() {
        "https" => {}
        "http" if v.test_mode => {}
        "http" => {
            v.err(
                p,
                format!("\"{}\" uses plain http", redact_query(raw)),
                "use https (plain http is allowed only with test_mode = true)",
            );
            return None;
        }
        other => {
            v.err(p, format!("unsupported URL scheme \"{other}\""), fix);
            return None;
        }
    }
    if rest.contains('#') || rest.contains(char::is_whitespace) {
        v.err(p, "the URL contains a fragment (#) or whitespace", fix);
        return None;
    }
    let (base, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q.to_string()).filter(|q| !q.is_empty())),
        None => (rest, None),
    };
    let (host, path) = base.split_once('/').unwrap_or((base, ""));
    let segments = path.split('/').filter(|s| !s.is_empty()).count();
    if host.is_empty() || segments < 2 {
        v.err(
            p,
            format!("\"{}\" names no container and blob", redact_query(raw)),
            fix,
        );
        return None;
    }
    Some((
        BlobUrl {
            url: format!("{}://{base}", scheme.to_ascii_lowercase()),
        },
        query,
    ))
}

/// The URL with any query value hidden (a SAS signature is a secret).
pub fn redact_query(url: &str) -> String {
    match url.split_once('?') {
        Some((b, _)) => format!("{b}?<redacted>"),
        None => url.to_string(),
    }
}

fn filesystem(
    v: &mut V<'_>,
    p: &FieldPath,
    index: usize,
    f: schema::Filesystem,
) -> Option<FilesystemPlan> {
    let errors_before = v.errors.len();
    let mount_point = v.abs_path(&p.key("mount_point"), &f.mount_point, "/mnt/remote/data");
    if let Some(mp) = &mount_point {
        let forbidden = ["/proc", "/sys", "/dev", "/run/encfs-init"];
        if mp == Path::new("/") || forbidden.iter().any(|f| mp.starts_with(f)) {
            v.err(
                &p.key("mount_point"),
                format!("\"{}\" is a system path", mp.display()),
                "mount below a directory of your own, e.g. /mnt/remote/data",
            );
        }
    }

    let (url, query) = blob_url(v, &p.key("url"), &f.url).unzip();
    let query = query.flatten();
    let has_sig = query
        .as_deref()
        .is_some_and(|q| q.split('&').any(|kv| kv.starts_with("sig=")));
    let sas_file = f
        .sas_token_file
        .as_deref()
        .and_then(|path| v.read_file(&p.key("sas_token_file"), path, "SAS token"));
    let access = match f.access.as_deref() {
        None if has_sig || sas_file.is_some() => "sas",
        None => "private",
        Some(a) => a,
    };
    let access = match access {
        "private" | "anonymous" if has_sig => {
            v.err(
                &p.key("access"),
                format!("access = \"{access}\" but the URL carries a SAS (sig=...)"),
                "set access = \"sas\", or remove the query from the URL",
            );
            None
        }
        "private" => Some(Access::Private),
        "anonymous" => Some(Access::Anonymous),
        "sas" => match (sas_file, query) {
            (Some(_), Some(_)) => {
                v.err(
                    &p.key("sas_token_file"),
                    "a SAS is given both in the URL and in sas_token_file",
                    "keep only one",
                );
                None
            }
            (Some(bytes), None) => match String::from_utf8(bytes) {
                Ok(s) if !s.trim().is_empty() => Some(Access::Sas(SecretString::new(
                    s.trim().trim_start_matches('?').to_string(),
                ))),
                _ => {
                    v.err(
                        &p.key("sas_token_file"),
                        "the SAS token file is empty or not text",
                        "put the SAS query string (sv=...&sig=...) in the file",
                    );
                    None
                }
            },
            (None, Some(q)) if has_sig => Some(Access::Sas(SecretString::new(q))),
            _ => {
                v.err(&p.key("access"), "access = \"sas\" but there is no SAS (no sig= in the URL query, no sas_token_file)", "append the SAS to the URL (?sv=...&sig=...) or set sas_token_file");
                None
            }
        },
        other => {
            let hint = did_you_mean(other, ["private", "anonymous", "sas"])
                .map(|s| format!("did you mean \"{s}\"? "))
                .unwrap_or_default();
            v.err(
                &p.key("access"),
                format!("unknown access \"{other}\""),
                format!("{hint}use \"private\" (identity token), \"anonymous\" or \"sas\""),
            );
            None
        }
    };
    if f.read_write && matches!(access, Some(Access::Anonymous)) {
        v.err(
            &p.key("read_write"),
            "read_write needs write access, but the blob is anonymous",
            "use access = \"private\" (a token with write rights) or a SAS with write permission",
        );
    }

    let block_size = f.block_size.map_or(DEFAULT_BLOCK_SIZE, |s| s.0);
    if !block_size.is_power_of_two() || !(MIN_BLOCK..=MAX_BLOCK).contains(&block_size) {
        v.err(
            &p.key("block_size"),
            format!(
                "block size {} is not allowed",
                super::units::fmt_size(block_size)
            ),
            "use a power of two from 64KiB to 4MiB (Put Page takes at most 4MiB)",
        );
    }
    let cache_size = f.cache_size.map_or(DEFAULT_CACHE_SIZE, |s| s.0);
    if cache_size < MIN_CACHE_BLOCKS * block_size || cache_size > MAX_CACHE {
        v.err(
            &p.key("cache_size"),
            format!(
                "cache size {} is out of range for block size {}",
                super::units::fmt_size(cache_size),
                super::units::fmt_size(block_size)
            ),
            format!(
                "use at least {} blocks ({}) and at most 64GiB",
                MIN_CACHE_BLOCKS,
                super::units::fmt_size(MIN_CACHE_BLOCKS * block_size)
            ),
        );
    }
    let io_deadline = v.dur(
        &p.key("io_deadline"),
        f.io_deadline,
        Duration::from_secs(60),
        Duration::from_secs(3600),
    );
    let nbd_timeout = v.dur(
        &p.key("nbd_timeout"),
        f.nbd_timeout,
        io_deadline + Duration::from_secs(30),
        Duration::from_secs(7200),
    );
    if nbd_timeout <= io_deadline {
        v.err(
            &p.key("nbd_timeout"),
            format!(
                "nbd_timeout {} is not longer than io_deadline {}: the kernel would give up on requests the server is still retrying",
                super::units::fmt_duration(nbd_timeout),
                super::units::fmt_duration(io_deadline)
            ),
            "make nbd_timeout longer than io_deadline (the default is io_deadline + 30s)",
        );
    }
    let header_sha256 = f
        .header_sha256
        .as_deref()
        .and_then(|h| v.hex(&p.key("header_sha256"), h, Some(32), "header_sha256"))
        .map(|b| {
            let mut a = [0u8; 32];
            a.copy_from_slice(&b);
            a
        });

    let key = key_plan(v, p, f.key, f.key_derivation);
    if v.errors.len() != errors_before {
        return None;
    }
    Some(FilesystemPlan {
        index,
        mount_point: mount_point?,
        url: url?,
        access: access?,
        read_write: f.read_write,
        cache_size,
        block_size,
        io_deadline,
        nbd_timeout,
        key: key?,
        header_sha256,
    })
}

fn key_plan(
    v: &mut V<'_>,
    p: &FieldPath,
    key: Option<schema::Key>,
    kd: Option<schema::KeyDerivation>,
) -> Option<KeyPlan> {
    let kp = p.key("key");
    let Some(k) = key else {
        v.err(&kp, "no key", "add a [filesystem.key] table with kid, authority and vault (or raw_key with test_mode = true)");
        return None;
    };
    let kid = k.kid.filter(|s| !s.is_empty());
    let raw = match (k.raw_key, k.raw_key_file) {
        (Some(_), Some(_)) => {
            v.err(
                &kp.key("raw_key_file"),
                "both raw_key and raw_key_file are set",
                "keep only one",
            );
            return None;
        }
        (Some(hex), None) => Some((
            kp.key("raw_key"),
            v.hex(&kp.key("raw_key"), &hex, Some(32), "raw_key"),
        )),
        (None, Some(path)) => {
            let bytes = v.read_file(&kp.key("raw_key_file"), &path, "raw key");
            let key = bytes.and_then(|b| raw_key_from_file(v, &kp.key("raw_key_file"), b));
            Some((kp.key("raw_key_file"), key))
        }
        (None, None) => None,
    };
    match (kid, raw) {
        (Some(_), Some((rp, _))) => {
            v.err(
                &rp,
                "both kid (key release) and a raw key are set",
                "keep kid for secure key release, or remove it to use the raw key in test mode",
            );
            None
        }
        (None, None) => {
            v.err(
                &kp.key("kid"),
                "key material missing: no kid and no raw key",
                "set kid (the key's name in the vault), authority and vault",
            );
            None
        }
        (None, Some((rp, key))) => {
            if !v.test_mode {
                v.err(&rp, "a raw key is allowed only in test mode", "use secure key release (kid, authority, vault), or set test_mode = true for testing");
                return None;
            }
            Some(KeyPlan::Raw(SecretBytes::new(key?)))
        }
        (Some(kid), None) => {
            if !kid
                .split('/')
                .all(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
                || kid.split('/').count() > 2
            {
                v.err(
                    &kp.key("kid"),
                    format!("\"{kid}\" is not a key name"),
                    "write the key's name, or name/version (letters, digits, dashes)",
                );
            }
            let kty = k.kty.filter(|s| !s.is_empty());
            if let Some(t) = &kty {
                if !matches!(t.as_str(), "oct" | "oct-HSM" | "RSA" | "RSA-HSM") {
                    v.err(
                        &kp.key("kty"),
                        format!("key type \"{t}\" cannot be a disk key"),
                        "use an oct-HSM key (32 bytes) or an RSA-HSM key (with key_derivation)",
                    );
                }
            }
            let authority = match k.authority {
                Some(a) => v.endpoint(&kp.key("authority"), &a),
                None => {
                    v.err(
                        &kp.key("authority"),
                        "no attestation authority",
                        "set authority to your MAA endpoint, e.g. sharedeus.eus.attest.azure.net",
                    );
                    None
                }
            };
            let vault = match k.vault {
                Some(a) => v.endpoint(&kp.key("vault"), &a),
                None => {
                    v.err(&kp.key("vault"), "no vault", "set vault to the Key Vault or managed HSM host, e.g. myhsm.managedhsm.azure.net");
                    None
                }
            };
            let bearer_token = match (k.bearer_token, k.bearer_token_file) {
                (Some(_), Some(_)) => {
                    v.err(
                        &kp.key("bearer_token_file"),
                        "both bearer_token and bearer_token_file are set",
                        "keep only one",
                    );
                    None
                }
                (Some(t), None) => Some(SecretString::new(t)),
                (None, Some(path)) => v
                    .read_file(&kp.key("bearer_token_file"), &path, "bearer token")
                    .and_then(|b| String::from_utf8(b).ok())
                    .map(|s| SecretString::new(s.trim().to_string())),
                (None, None) => None,
            };
            let kdp = p.key("key_derivation");
            let kd = kd.unwrap_or_default();
            let salt = match kd.salt.as_deref().filter(|s| !s.is_empty()) {
                Some(s) => v.hex(&kdp.key("salt"), s, None, "salt").unwrap_or_default(),
                None => Vec::new(),
            };
            let label = kd
                .label
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| DEFAULT_LABEL.to_string());
            let (authority, vault) = (authority?, vault?);
            let vault_kind = if vault.0.contains("managedhsm") {
                VaultKind::ManagedHsm
            } else {
                VaultKind::KeyVault
            };
            Some(KeyPlan::Release(ReleasePlan {
                kid,
                kty,
                authority,
                vault,
                vault_kind,
                bearer_token,
                salt,
                label,
            }))
        }
    }
}

/// A key file holds the raw 32 bytes (upstream's keyfile.bin), or 64 hex digits and an optional newline.
fn raw_key_from_file(v: &mut V<'_>, p: &FieldPath, bytes: Vec<u8>) -> Option<Vec<u8>> {
    if bytes.len() == 32 {
        return Some(bytes);
    }
    let text = std::str::from_utf8(&bytes).unwrap_or_default().trim();
    if text.len() == 64 {
        return v.hex(p, text, Some(32), "raw key file");
    }
    v.err(
        p,
        format!("the raw key file holds {} bytes", bytes.len()),
        "give 32 raw bytes (like upstream's keyfile.bin) or 64 hex digits",
    );
    None
}

fn check_mount_points(v: &mut V<'_>, fss: &[FilesystemPlan]) {
    for (i, a) in fss.iter().enumerate() {
        for b in &fss[..i] {
            let path = FieldPath::root()
                .key("filesystem")
                .index(a.index)
                .key("mount_point");
            if a.mount_point == b.mount_point {
                v.err(
                    &path,
                    format!(
                        "mount point {} is used twice (also by filesystem[{}])",
                        a.mount_point.display(),
                        b.index
                    ),
                    "give each filesystem its own mount point",
                );
            } else if a.mount_point.starts_with(&b.mount_point)
                || b.mount_point.starts_with(&a.mount_point)
            {
                v.err(
                    &path,
                    format!(
                        "mount point {} nests with {} (filesystem[{}])",
                        a.mount_point.display(),
                        b.mount_point.display(),
                        b.index
                    ),
                    "use sibling directories, e.g. /mnt/remote/a and /mnt/remote/b",
                );
            }
        }
    }
}
