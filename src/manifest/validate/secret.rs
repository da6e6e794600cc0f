//! `[secrets]` and `[[secret]]`: the tmpfs released secrets go to, and each secret's key, file and form.
//!
//! The tmpfs is mounted where the application can reach it, so every choice that could widen who reads a
//! key is checked here: the mount point (absolute, not a system path, not inside or around a filesystem's),
//! its size, each file's path (relative, plain names, one file per name), mode (no set-id or sticky bits,
//! not writable by group or others) and numeric owner (scratch images have no /etc/passwd), and the format
//! (PEM only for RSA and EC keys).

use super::*;
use filesystem::key_plan;

/// Default size of the secrets' tmpfs.
pub const DEFAULT_SECRETS_SIZE: u64 = 1 << 20;
/// The smallest tmpfs: one page.
pub const MIN_SECRETS_SIZE: u64 = 4 << 10;
/// The largest tmpfs: it is memory.
pub const MAX_SECRETS_SIZE: u64 = 64 << 20;
/// Default file mode: readable by its owner only.
pub const DEFAULT_SECRET_MODE: u32 = 0o400;

/// The secrets' plan, or `None` when the manifest has none.
pub(super) fn secrets(
    v: &mut V<'_>,
    root: &FieldPath,
    table: Option<schema::Secrets>,
    list: Vec<schema::Secret>,
    filesystems: &[FilesystemPlan],
) -> Option<SecretsPlan> {
    if table.is_none() && list.is_empty() {
        return None;
    }
    let sp = root.key("secrets");
    let table = table.unwrap_or_default();
    let mount_point = match table.mount_point.as_deref() {
        Some(m) => mount_point(v, &sp.key("mount_point"), m, filesystems),
        None => {
            v.err(
                &sp.key("mount_point"),
                "no mount point for the secrets' tmpfs",
                "add [secrets] mount_point = \"/mnt/remote/secrets\" (on the volume the application shares)",
            );
            None
        }
    };
    let size = table.size.map_or(DEFAULT_SECRETS_SIZE, |s| s.0);
    if !(MIN_SECRETS_SIZE..=MAX_SECRETS_SIZE).contains(&size) {
        v.err(
            &sp.key("size"),
            format!("{size} bytes is out of range for the secrets' tmpfs"),
            "use a size from 4KiB to 64MiB (it is memory), e.g. \"1MiB\"",
        );
    }
    if list.is_empty() {
        v.err(
            &sp,
            "[secrets] is set but there is no [[secret]]",
            "add a [[secret]] with path and [secret.key], or remove [secrets]",
        );
    }
    let mut secrets = Vec::new();
    let mut paths: Vec<(usize, PathBuf)> = Vec::new();
    for (i, s) in list.into_iter().enumerate() {
        let p = root.key("secret").index(i);
        let path = file_path(v, &p.key("path"), &s.path);
        if let Some(path) = &path {
            if let Some((j, other)) = paths
                .iter()
                .find(|(_, o)| o.starts_with(path) || path.starts_with(o))
            {
                v.err(
                    &p.key("path"),
                    format!(
                        "\"{}\" collides with secret[{j}]'s \"{}\"",
                        path.display(),
                        other.display()
                    ),
                    "give each secret a file of its own (no file may also be another's directory)",
                );
            } else {
                paths.push((i, path.clone()));
            }
        }
        let format = format(v, &p.key("format"), s.format.as_deref());
        let mode = mode(v, &p.key("mode"), s.mode.as_deref());
        let owner = owner(v, &p.key("owner"), s.owner.as_deref());
        let key = key(v, &p, s.key, format);
        if let (Some(path), Some(format), Some(mode), Some((uid, gid)), Some(key)) =
            (path, format, mode, owner, key)
        {
            secrets.push(SecretPlan {
                index: i,
                path,
                format,
                mode,
                uid,
                gid,
                key,
            });
        }
    }
    Some(SecretsPlan {
        mount_point: mount_point?,
        size,
        secrets,
    })
}

/// The tmpfs's mount point: absolute, plain, not a system path, neither a filesystem's mount point nor
/// inside one nor around one.
fn mount_point(
    v: &mut V<'_>,
    p: &FieldPath,
    m: &str,
    filesystems: &[FilesystemPlan],
) -> Option<PathBuf> {
    let mp = v.abs_path(p, m, "/mnt/remote/secrets")?;
    let forbidden = ["/proc", "/sys", "/dev", "/run/encfs-init"];
    if mp == Path::new("/") || forbidden.iter().any(|f| mp.starts_with(f)) {
        v.err(
            p,
            format!("\"{}\" is a system path", mp.display()),
            "mount the secrets below a directory of your own, e.g. /mnt/remote/secrets",
        );
        return None;
    }
    // The tmpfs is mounted beside it at `.secrets`: that name must be free.
    let hidden = crate::secrets::hidden_dir(&mp);
    if hidden == mp || filesystems.iter().any(|f| f.mount_point == hidden) {
        v.err(
            p,
            format!(
                "\"{}\" would put the link on the tmpfs's own directory {}",
                mp.display(),
                hidden.display()
            ),
            "name the mount point something other than .secrets, and keep .secrets beside it free",
        );
        return None;
    }
    for f in filesystems {
        if mp.starts_with(&f.mount_point) || f.mount_point.starts_with(&mp) {
            v.err(
                p,
                format!(
                    "\"{}\" overlaps filesystem[{}]'s mount point {}",
                    mp.display(),
                    f.index,
                    f.mount_point.display()
                ),
                "put the secrets beside the filesystems, e.g. /mnt/remote/secrets",
            );
            return None;
        }
    }
    Some(mp)
}

/// A file's path inside the tmpfs: relative, plain names only.
fn file_path(v: &mut V<'_>, p: &FieldPath, s: &str) -> Option<PathBuf> {
    let path = PathBuf::from(s);
    let plain = !s.is_empty()
        && !s.contains("//")
        && !s.ends_with('/')
        && path.components().all(|c| matches!(c, Component::Normal(_)));
    if !plain {
        v.err(
            p,
            format!("\"{s}\" is not a plain relative path"),
            "give the file's name inside the secrets' tmpfs, e.g. \"app/key.pem\" (no leading /, no . or ..)",
        );
        return None;
    }
    Some(path)
}

fn format(v: &mut V<'_>, p: &FieldPath, f: Option<&str>) -> Option<SecretFormat> {
    Some(match f.unwrap_or("raw") {
        "raw" => SecretFormat::Raw,
        "base64" => SecretFormat::Base64,
        "jwk" => SecretFormat::Jwk,
        "pem" => SecretFormat::Pem,
        other => {
            v.unknown_choice(
                p,
                "secret format",
                other,
                ["raw", "base64", "jwk", "pem"],
                "use raw (the key's bytes), base64, jwk or pem (RSA and EC keys)",
            );
            return None;
        }
    })
}

/// An octal mode: permission bits only, not writable by group or others.
fn mode(v: &mut V<'_>, p: &FieldPath, m: Option<&str>) -> Option<u32> {
    let Some(m) = m else {
        return Some(DEFAULT_SECRET_MODE);
    };
    let digits = m.strip_prefix("0o").unwrap_or(m);
    let Some(mode) = u32::from_str_radix(digits, 8)
        .ok()
        .filter(|_| !digits.is_empty() && digits.len() <= 4)
    else {
        v.err(
            p,
            format!("\"{m}\" is not an octal file mode"),
            "write it like \"0400\" or \"0440\"",
        );
        return None;
    };
    if mode > 0o777 {
        v.err(
            p,
            format!("mode {m} sets setuid, setgid or sticky bits"),
            "use permission bits only, e.g. \"0400\"",
        );
        return None;
    }
    if mode & 0o022 != 0 {
        v.err(
            p,
            format!("mode {m} lets group or others write the key"),
            "a key is read, never written: use e.g. \"0400\" or \"0440\"",
        );
        return None;
    }
    if mode & 0o444 == 0 {
        v.err(
            p,
            format!("mode {m} lets nobody read the key"),
            "give the owner (or group) read permission, e.g. \"0400\"",
        );
        return None;
    }
    Some(mode)
}

/// `uid` or `uid:gid`, numeric.
fn owner(v: &mut V<'_>, p: &FieldPath, o: Option<&str>) -> Option<(u32, u32)> {
    let Some(o) = o else {
        return Some((0, 0));
    };
    // u32::MAX is chown's "leave unchanged".
    let id = |s: &str| {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u32>().ok())
            .flatten()
            .filter(|n| *n != u32::MAX)
    };
    let parsed = match o.split_once(':') {
        Some((u, g)) => id(u).zip(id(g)),
        None => id(o).map(|u| (u, u)),
    };
    if parsed.is_none() {
        v.err(
            p,
            format!("\"{o}\" is not a numeric owner"),
            "write \"uid\" or \"uid:gid\" in numbers, e.g. \"1000:1000\" (a scratch image has no /etc/passwd to look names up in)",
        );
    }
    parsed
}

/// `[secret.key]`: a filesystem key's fields; any key type the vault releases (oct, RSA, EC), PEM only
/// for RSA and EC.
fn key(
    v: &mut V<'_>,
    p: &FieldPath,
    key: Option<schema::Key>,
    format: Option<SecretFormat>,
) -> Option<KeyPlan> {
    let Some(mut key) = key else {
        v.err(
            &p.key("key"),
            "no key",
            "add a [secret.key] table with kid, authority and vault (or raw_key with test_mode = true)",
        );
        return None;
    };
    // The type is checked here (a secret may be an EC key, which no disk key is), then kept in the plan.
    let kty = key.kty.take().filter(|s| !s.is_empty());
    if let Some(t) = &kty {
        if crate::keyrelease::export::Family::of(t).is_err() {
            v.unknown_choice(
                &p.key("key").key("kty"),
                "key type",
                t,
                ["oct-HSM", "RSA-HSM", "EC-HSM", "oct", "RSA", "EC"],
                "use the vault's key type: oct-HSM, RSA-HSM or EC-HSM (or oct, RSA, EC)",
            );
        }
    }
    let oct = match (&kty, &key.raw_key, &key.raw_key_file) {
        (Some(t), _, _) => t.starts_with("oct"),
        // A raw key (test mode) is 32 bytes of oct.
        (None, raw, file) => raw.is_some() || file.is_some(),
    };
    if oct && format == Some(SecretFormat::Pem) {
        v.err(
            &p.key("format"),
            "pem is for RSA and EC private keys, and this key is symmetric (oct)",
            "use format = \"raw\", \"base64\" or \"jwk\" for an oct key",
        );
    }
    let mut plan = key_plan(v, p, Some(key), None)?;
    if let KeyPlan::Release(rp) = &mut plan {
        rp.kty = kty;
    }
    Some(plan)
}
