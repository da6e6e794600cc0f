//! `[[filesystem]]`: the blob URL, the key (released or raw), the cache and timeouts, and the mount points.

use super::*;
use crate::manifest::units;

/// Split a blob URL into the URL without its query and the query (a SAS when it has `sig=`).
pub(super) fn blob_url(
    v: &mut V<'_>,
    p: &FieldPath,
    raw: &str,
) -> Option<(BlobUrl, Option<String>)> {
    let fix = "write https://<account>.blob.core.windows.net/<container>/<blob>";
    let Some((scheme, rest)) = raw.split_once("://") else {
        v.err(
            p,
            format!("\"{}\" is not a URL", crate::redact::url(raw)),
            fix,
        );
        return None;
    };
    match scheme.to_ascii_lowercase().as_str() {
        "https" => {}
        "http" if v.test_mode => {}
        "http" => {
            v.err(
                p,
                format!("\"{}\" uses plain http", crate::redact::url(raw)),
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
            format!(
                "\"{}\" names no container and blob",
                crate::redact::url(raw)
            ),
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

pub(super) fn filesystem(
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
            v.unknown_choice(
                &p.key("access"),
                "access",
                other,
                ["private", "anonymous", "sas"],
                "use \"private\" (identity token), \"anonymous\" or \"sas\"",
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
            format!("block size {} is not allowed", units::fmt_size(block_size)),
            "use a power of two from 64KiB to 4MiB (Put Page takes at most 4MiB)",
        );
    }
    let cache_size = f.cache_size.map_or(DEFAULT_CACHE_SIZE, |s| s.0);
    if cache_size < MIN_CACHE_BLOCKS * block_size || cache_size > MAX_CACHE {
        v.err(
            &p.key("cache_size"),
            format!(
                "cache size {} is out of range for block size {}",
                units::fmt_size(cache_size),
                units::fmt_size(block_size)
            ),
            format!(
                "use at least {} blocks ({}) and at most 64GiB",
                MIN_CACHE_BLOCKS,
                units::fmt_size(MIN_CACHE_BLOCKS * block_size)
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
                units::fmt_duration(nbd_timeout),
                units::fmt_duration(io_deadline)
            ),
            "make nbd_timeout longer than io_deadline (the default is io_deadline + 30s)",
        );
    }
    let transport = match f.transport.as_deref().unwrap_or("auto") {
        "auto" => Some(TransportChoice::Auto),
        "nbd" => Some(TransportChoice::Nbd),
        "fuse" => Some(TransportChoice::Fuse),
        other => {
            v.unknown_choice(
                &p.key("transport"),
                "transport",
                other,
                ["auto", "nbd", "fuse"],
                "use \"auto\" (NBD where the kernel has it, else FUSE + loop), \"nbd\" or \"fuse\"",
            );
            None
        }
    };
    let on_failure = match f.on_failure.as_deref().unwrap_or("restart") {
        "restart" => Some(FailurePolicy::Restart),
        "stay-down" => Some(FailurePolicy::StayDown),
        other => {
            v.unknown_choice(
                &p.key("on_failure"),
                "on_failure",
                other,
                ["restart", "stay-down"],
                "use \"restart\" (re-open a dead mount) or \"stay-down\"",
            );
            None
        }
    };
    // Health reads of a dead blob service fail only after io_deadline already: as long again by default.
    let dead_after = v.dur(
        &p.key("dead_after"),
        f.dead_after,
        io_deadline,
        Duration::from_secs(24 * 3600),
    );
    let restart_limit = f.restart_limit.unwrap_or(5);
    if restart_limit == 0 || restart_limit > 1000 {
        v.err(
            &p.key("restart_limit"),
            format!("restart_limit {restart_limit} is out of range"),
            "use 1 to 1000 (on_failure = \"stay-down\" never restarts)",
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

    let verity = super::verity::verity_pin(
        v,
        p,
        f.verity_root_hash.as_deref(),
        f.verity_hash_offset.map(|s| s.0),
        f.read_write,
    );

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
        transport: transport?,
        on_failure: on_failure?,
        dead_after,
        restart_limit,
        key: key?,
        header_sha256,
        verity,
    })
}

pub(super) fn key_plan(
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

pub(super) fn check_mount_points(v: &mut V<'_>, fss: &[FilesystemPlan]) {
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
