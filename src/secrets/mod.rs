//! Keys released for the application: a tmpfs on the shared volume, one file per `[[secret]]` (issue 16).
//!
//! At boot ([`open`]), in parallel with the filesystems and after the same attestation (one per authority,
//! [`Keys::release_material`]):
//!
//! 1. a tmpfs (`noexec,nosuid,nodev`, `size=` from `[secrets] size`, root directory 0755 root) is mounted at
//!    `<parent of mount_point>/.secrets` through [`crate::mount::mount_at`] (the directory is checked and
//!    mounted on through its open handle: nothing planted there is followed), and opened as a directory
//!    handle checked to be that tmpfs;
//! 2. each secret's key is released (once per vault key; or, in test mode, taken raw), put in its format
//!    ([`crate::keyrelease::export`]) and written relative to that handle (`files::write`: parent
//!    directories made with `mkdirat` and opened `O_NOFOLLOW`, the file the one atomic way of
//!    [`crate::atomic`]: new temporary, `fchown`, `fchmod`, write, `fsync`, `renameat`);
//! 3. the tmpfs is published like a filesystem ([`crate::mount::publish`]: `mount_point -> .secrets`, a
//!    relative symlink renamed into place), so an application container sees it by the same mount
//!    propagation as the filesystems, and never sees a partial set.
//!
//! The readiness file then lists each secret ([`Secrets::listing`]) without its value. At teardown
//! ([`Secrets::close`], also on drop, so a failed boot leaves nothing) the link is removed, each file is
//! overwritten with zeros, `fsync`ed and unlinked, and the tmpfs unmounted (lazily when a process still holds
//! it). A secret that cannot be released or written fails the boot closed: [`Error`] names `secret[i]` and
//! its path.
#![forbid(unsafe_code)]

mod files;

use crate::init::keys::Keys;
use crate::keyrelease::{self, export, ReleasedKey};
use crate::manifest::{KeyPlan, Plan, SecretFormat, SecretPlan, SecretsPlan};
use crate::ready::SecretState;
use crate::secret::SecretBytes;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The name of the directory the tmpfs is mounted on, beside `mount_point`.
pub const HIDDEN_NAME: &str = ".secrets";

/// Where the tmpfs of `mount_point` is mounted: `<parent>/.secrets`.
pub fn hidden_dir(mount_point: &Path) -> PathBuf {
    mount_point
        .parent()
        .unwrap_or(Path::new("/"))
        .join(HIDDEN_NAME)
}

/// Why the secrets could not be made ready. Its text names the step (the tmpfs, or `secret[i] <path>`); the
/// cause is its `source()`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Mounting the tmpfs.
    #[error("secrets: mount the tmpfs at {}; fix: check that the parent of [secrets] mount_point exists and is writable by encfs-init", .0.display())]
    Mount(PathBuf, #[source] crate::mount::Error),
    /// Opening the mounted tmpfs (or it is not the tmpfs just mounted).
    #[error("secrets: open the tmpfs at {}; fix: keep the application from writing next to [secrets] mount_point", .0.display())]
    Open(PathBuf, #[source] files::Error),
    /// One secret.
    #[error("secret[{index}] {}", .path.display())]
    Secret {
        /// Its position in the manifest.
        index: usize,
        /// Its file (under the mount point).
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: Box<SecretError>,
    },
    /// The secrets' worker thread could not start or panicked (a bug).
    #[error("secrets: {0}")]
    Worker(String),
    /// Publishing the tmpfs at the mount point.
    #[error("secrets: publish at {}", .0.display())]
    Publish(PathBuf, #[source] crate::mount::Error),
}

/// What went wrong with one secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// The release of its key.
    #[error("release \"{0}\"")]
    Release(String, #[source] Box<keyrelease::Error>),
    /// A release without the attestation session (a bug).
    #[error("no attestation session (a bug: Keys::for_plan saw no release)")]
    NoSession,
    /// The released key cannot be written in the format asked for.
    #[error("write the {kty} key as {format}")]
    Format {
        /// The released key's type.
        kty: String,
        /// The format asked for.
        format: &'static str,
        /// Why.
        #[source]
        source: export::Error,
    },
    /// Writing the file.
    #[error("write the file")]
    Write(#[source] files::Error),
}

/// The mounted tmpfs and the files written in it; torn down by [`Secrets::close`] or on drop.
#[derive(Debug)]
pub struct Secrets {
    mount_point: PathBuf,
    hidden: PathBuf,
    /// The tmpfs's root (open while mounted).
    dir: Option<OwnedFd>,
    /// Each written file, relative to the tmpfs, in order.
    written: Vec<PathBuf>,
    listing: Vec<SecretState>,
    mounted: bool,
}

/// Mount the tmpfs, release and write every secret, publish. On error whatever was done is undone.
pub fn open(sp: &SecretsPlan, plan: &Plan, keys: Option<&Keys>) -> Result<Secrets, Error> {
    let hidden = hidden_dir(&sp.mount_point);
    let flags = sys_mount::MountFlags::NOEXEC
        | sys_mount::MountFlags::NOSUID
        | sys_mount::MountFlags::NODEV;
    // A few inodes per file (directories, the temporary) are plenty; the size bounds the memory.
    let data = format!(
        "size={},mode=0755,uid=0,gid=0,nr_inodes={}",
        sp.size,
        16 + 4 * sp.secrets.len()
    );
    crate::mount::mount_at(Path::new("tmpfs"), &hidden, "tmpfs", flags, &data)
        .map_err(|e| Error::Mount(hidden.clone(), e))?;
    // From here on, dropping `s` undoes the mount.
    let mut s = Secrets {
        mount_point: sp.mount_point.clone(),
        hidden: hidden.clone(),
        dir: None,
        written: Vec::new(),
        listing: Vec::new(),
        mounted: true,
    };
    s.dir = Some(files::open_tmpfs(&hidden).map_err(|e| Error::Open(hidden.clone(), e))?);
    log::info!(
        "secrets: tmpfs of {} bytes at {} (noexec, nosuid, nodev)",
        sp.size,
        hidden.display()
    );
    let mut released: Vec<(&KeyPlan, ReleasedKey)> = Vec::new();
    for secret in &sp.secrets {
        let path = sp.mount_point.join(&secret.path);
        let fail = |source| Error::Secret {
            index: secret.index,
            path: path.clone(),
            source: Box::new(source),
        };
        // A key several secrets name (in several formats) is released once.
        let at = match released
            .iter()
            .position(|(id, _)| same_key(id, &secret.key))
        {
            Some(at) => at,
            None => {
                released.push((&secret.key, obtain(secret, plan, keys).map_err(fail)?));
                released.len() - 1
            }
        };
        let key = &released[at].1;
        let content = render(key, secret.format).map_err(fail)?;
        if let Some(dir) = &s.dir {
            files::write(
                dir,
                &secret.path,
                content.expose(),
                secret.mode,
                secret.uid,
                secret.gid,
            )
            .map_err(|e| fail(SecretError::Write(e)))?;
        }
        s.written.push(secret.path.clone());
        let kid = match &secret.key {
            KeyPlan::Release(rp) => Some(rp.kid.clone()),
            KeyPlan::Raw(_) => None,
        };
        log::info!(
            "secret[{}] {}: written ({}, mode {:04o}, owner {}:{}, key {} {})",
            secret.index,
            path.display(),
            secret.format.as_str(),
            secret.mode,
            secret.uid,
            secret.gid,
            kid.as_deref().unwrap_or("(raw, test mode)"),
            key.kty
        );
        s.listing.push(SecretState {
            index: secret.index,
            path: path.display().to_string(),
            format: secret.format.as_str().to_string(),
            mode: format!("{:04o}", secret.mode),
            owner: format!("{}:{}", secret.uid, secret.gid),
            kid,
            kty: key.kty.clone(),
        });
    }
    crate::mount::publish(&sp.mount_point, &hidden)
        .map_err(|e| Error::Publish(sp.mount_point.clone(), e))?;
    Ok(s)
}

/// Whether two secrets name the same vault key (same vault, same kid).
fn same_key(a: &KeyPlan, b: &KeyPlan) -> bool {
    match (a, b) {
        (KeyPlan::Release(a), KeyPlan::Release(b)) => a.vault.0 == b.vault.0 && a.kid == b.kid,
        _ => false,
    }
}

/// The key of `secret`: released (sharing the boot's attestation), or the raw test-mode key (an oct key).
fn obtain(
    secret: &SecretPlan,
    plan: &Plan,
    keys: Option<&Keys>,
) -> Result<ReleasedKey, SecretError> {
    match &secret.key {
        KeyPlan::Raw(k) => Ok(ReleasedKey {
            kty: "oct".into(),
            key_ops: Vec::new(),
            enc: String::new(),
            plaintext: SecretBytes::new(k.expose().to_vec()),
        }),
        KeyPlan::Release(rp) => keys
            .ok_or(SecretError::NoSession)?
            .release_material(plan, rp)
            .map_err(|e| SecretError::Release(rp.kid.clone(), Box::new(e))),
    }
}

/// The file's content: `key` in `format`.
fn render(key: &ReleasedKey, format: SecretFormat) -> Result<SecretBytes, SecretError> {
    let fail = |source| SecretError::Format {
        kty: key.kty.clone(),
        format: format.as_str(),
        source,
    };
    match format {
        SecretFormat::Raw => Ok(export::raw(key)),
        SecretFormat::Base64 => Ok(export::base64(key)),
        SecretFormat::Jwk => export::jwk(key).map_err(fail),
        SecretFormat::Pem => export::pem(key).map_err(fail),
    }
}

impl Secrets {
    /// What the readiness file says about each secret (never its value).
    pub fn listing(&self) -> &[SecretState] {
        &self.listing
    }

    /// Where the tmpfs is mounted (`<parent>/.secrets`).
    pub fn hidden(&self) -> &Path {
        &self.hidden
    }

    /// Tear down: unpublish, wipe and unlink every file, unmount (lazily once `patience` is over and a
    /// process still holds the tmpfs). Returns whether everything went cleanly; problems are logged.
    pub fn close(mut self, patience: Duration) -> bool {
        self.close_inner(patience)
    }

    fn close_inner(&mut self, patience: Duration) -> bool {
        let mut ok = true;
        crate::mount::unpublish(&self.mount_point, &self.hidden);
        if let Some(dir) = self.dir.take() {
            for path in self.written.drain(..).rev() {
                if let Err(e) = files::wipe(&dir, &path) {
                    log::warn!(
                        "secrets: wipe {}: {}",
                        self.hidden.join(&path).display(),
                        crate::errors::chain(&e)
                    );
                    ok = false;
                }
            }
        }
        if self.mounted {
            self.mounted = false;
            match crate::mount::unmount(&self.hidden, patience) {
                Ok(crate::mount::Unmounted::Clean) => {
                    log::info!("secrets: wiped and unmounted {}", self.hidden.display())
                }
                Ok(crate::mount::Unmounted::Lazily) => log::warn!(
                    "secrets: {} still busy after {} ms (a process holds a file open there): the files \
                     are wiped and the tmpfs detached lazily",
                    self.hidden.display(),
                    patience.as_millis()
                ),
                Err(e) => {
                    log::warn!("secrets: {e}");
                    ok = false;
                }
            }
        }
        ok
    }
}

impl Drop for Secrets {
    fn drop(&mut self) {
        if self.mounted {
            let _ = self.close_inner(Duration::from_secs(5));
        }
    }
}
