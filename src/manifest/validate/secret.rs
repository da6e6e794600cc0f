//! `[secrets]` and `[[secret]]`: the tmpfs released secrets go to, and each secret's key, file and form.

use super::*;
use filesystem::key_plan;

/// Default size of the secrets' tmpfs.
pub const DEFAULT_SECRETS_SIZE: u64 = 1 << 20;

/// The secrets' plan, or `None` when the manifest has none.
pub(super) fn secrets(
    v: &mut V<'_>,
    root: &FieldPath,
    table: Option<schema::Secrets>,
    list: Vec<schema::Secret>,
    _filesystems: &[FilesystemPlan],
) -> Option<SecretsPlan> {
    // Issue 16 (secrets): full checks (mount point, size bounds, paths, modes, owners, formats).
    if table.is_none() && list.is_empty() {
        return None;
    }
    let table = table.unwrap_or_default();
    let mount_point = table.mount_point.as_deref().and_then(|m| {
        v.abs_path(
            &root.key("secrets").key("mount_point"),
            m,
            "/mnt/remote/secrets",
        )
    })?;
    let mut secrets = Vec::new();
    for (i, s) in list.into_iter().enumerate() {
        let p = root.key("secret").index(i);
        let key = key_plan(v, &p, s.key, None)?;
        secrets.push(SecretPlan {
            index: i,
            path: PathBuf::from(s.path),
            format: SecretFormat::Raw,
            mode: 0o400,
            uid: 0,
            gid: 0,
            key,
        });
    }
    Some(SecretsPlan {
        mount_point,
        size: table.size.map_or(DEFAULT_SECRETS_SIZE, |s| s.0),
        secrets,
    })
}
