//! From the user's [`Manifest`] to the typed [`Plan`]: defaults applied, every value checked once, secret files
//! read into redacting types. Every problem found is reported (not only the first), each naming its place.
//!
//! This module walks the manifest and checks the top-level sections (log, app, supervise, network,
//! endpoints, api_versions); `check` holds the checks many fields share, `filesystem` and `attestation`
//! the sections of those names.
#![forbid(unsafe_code)]

use super::error::{did_you_mean, Error, Errors, FieldPath, Locate};
use super::plan::*;
use super::schema::{self, Manifest};
use super::units::Dur;
use crate::secret::{SecretBytes, SecretString};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

mod attestation;
mod check;
mod filesystem;
mod secret;
mod skr;
mod verity;
use attestation::{attestation, certcache};
use check::V;
use filesystem::{check_mount_points, filesystem};

/// Azure's link-local address: IMDS and THIM are served there over plain http.
pub const AZURE_LINK_LOCAL: &str = "169.254.169.254";

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

    let shared_volume = match m.shared_volume.as_deref().unwrap_or("auto") {
        "auto" => SharedVolume::Auto,
        "required" => SharedVolume::Required,
        "off" => SharedVolume::Off,
        other => {
            v.unknown_choice(
                &root.key("shared_volume"),
                "shared_volume",
                other,
                ["auto", "required", "off"],
                "use \"auto\" (warn when the volume is private in the sidecar shape), \"required\" (fail the boot) or \"off\"",
            );
            SharedVolume::Auto
        }
    };

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
        ca_bundle_sha256: m.network.ca_bundle_sha256.as_deref().and_then(|h| {
            let pin = v.hex(&np.key("ca_bundle_sha256"), h, Some(32), "ca_bundle_sha256")?;
            <[u8; 32]>::try_from(pin.as_slice()).ok()
        }),
    };
    if network.retries > 100 {
        v.err(
            &np.key("retries"),
            format!("{} retries is not a sane budget", network.retries),
            "use at most 100",
        );
    }
    if m.network.ca_bundle_sha256.is_some() && network.ca_bundle.is_none() {
        v.err(
            &np.key("ca_bundle_sha256"),
            "ca_bundle_sha256 is set but there is no ca_bundle to check",
            "set [network] ca_bundle to the PEM file it pins, or remove ca_bundle_sha256",
        );
    }
    if let Some(ca) = &network.ca_bundle {
        match std::fs::read(ca) {
            Ok(b) if !String::from_utf8_lossy(&b).contains("-----BEGIN CERTIFICATE-----") => v.err(
                &np.key("ca_bundle"),
                format!("{} holds no PEM certificate", ca.display()),
                "give a PEM file with -----BEGIN CERTIFICATE----- blocks",
            ),
            Ok(b) => {
                if let Err(e) = network.check_ca_bundle_pin(&b) {
                    v.err(
                        &np.key("ca_bundle_sha256"),
                        format!("CA bundle {}: {}", ca.display(), e.problem()),
                        CaBundlePinMismatch::FIX,
                    );
                }
            }
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
            true,
        ),
        thim: v.service_url(
            &ep.key("thim"),
            m.endpoints.thim.as_deref(),
            "http://169.254.169.254/metadata/THIM/amd/certification",
            true,
        ),
        azcache: v.service_url(
            &ep.key("azcache"),
            m.endpoints.azcache.as_deref(),
            "https://global.acccache.azure.net",
            false,
        ),
        amd_kds: v.service_url(
            &ep.key("amd_kds"),
            m.endpoints.amd_kds.as_deref(),
            "https://kdsintf.amd.com",
            false,
        ),
        login_authority: v.service_url(
            &ep.key("login_authority"),
            m.endpoints.login_authority.as_deref(),
            "https://login.microsoftonline.com",
            false,
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
    let secrets = secret::secrets(&mut v, &root, m.secrets, m.secret, &filesystems);
    let skr = m.skr.and_then(|s| skr::skr(&mut v, &root.key("skr"), s));
    if let Some(r) = &readiness_explicit {
        outside_mounts(
            &mut v,
            &root.key("readiness_file"),
            r,
            &filesystems,
            secrets.as_ref(),
        );
    }
    if let Some(l) = &log_file {
        outside_mounts(
            &mut v,
            &root.key("log").key("file"),
            l,
            &filesystems,
            secrets.as_ref(),
        );
    }
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
        shared_volume,
        app,
        supervise,
        network,
        endpoints,
        api_versions,
        identity,
        certcache,
        attestation,
        filesystems,
        secrets,
        skr,
    })
}

/// A file encfs-init writes (the readiness file, the log) must not lie where encfs-init mounts something: a
/// filesystem's mount point or the directory it is mounted on, its FUSE directory, the secrets' mount point
/// or their tmpfs. There
/// it would be written into the mounted filesystem (read-only, or the application's data), vanish when the
/// filesystem is re-opened, or sit among the released secrets.
fn outside_mounts(
    v: &mut V<'_>,
    p: &FieldPath,
    file: &Path,
    filesystems: &[FilesystemPlan],
    secrets: Option<&SecretsPlan>,
) {
    let fs_dirs = filesystems.iter().flat_map(|f| {
        [
            (f.mount_point.clone(), format!("filesystem[{}]", f.index)),
            (
                crate::mount::hidden_dir(&f.mount_point, f.index),
                format!("filesystem[{}]", f.index),
            ),
        ]
    });
    let secret_dirs = secrets.into_iter().flat_map(|s| {
        [
            (s.mount_point.clone(), "[secrets]".to_string()),
            (
                crate::secrets::hidden_dir(&s.mount_point),
                "[secrets]".to_string(),
            ),
        ]
    });
    // FUSE mounts each filesystem's file under /run/encfs-init/fuse-<i>[-r<n>].
    let fuse_dir = file
        .strip_prefix("/run/encfs-init")
        .ok()
        .and_then(|rest| rest.components().next())
        .filter(|c| c.as_os_str().to_string_lossy().starts_with("fuse-"))
        .map(|c| {
            (
                Path::new("/run/encfs-init").join(c),
                "a filesystem's FUSE file".to_string(),
            )
        });
    if let Some((dir, whose)) = fs_dirs
        .chain(secret_dirs)
        .chain(fuse_dir)
        .find(|(dir, _)| file.starts_with(dir))
    {
        v.err(
            p,
            format!(
                "\"{}\" is inside {}, where {whose} is mounted",
                file.display(),
                dir.display()
            ),
            format!(
                "put it beside the mount points, e.g. {}",
                dir.parent()
                    .unwrap_or(Path::new("/"))
                    .join(file.file_name().unwrap_or_default())
                    .display()
            ),
        );
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
