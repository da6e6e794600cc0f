//! Opening one filesystem of the plan, and closing it again: the data path of the boot sequence.
//!
//! Per filesystem, in order (each step timed and logged; any failure undoes the steps before it):
//! 1. the disk key (a raw key in test mode; secure key release otherwise);
//! 2. the blob as a [`BlockSource`]: Azure Blob over HTTP(S) behind the block cache, or a local file in test mode;
//! 3. the LUKS2 header read from the source, checked (allowlist, optional pin) and unlocked with the key
//!    (`unlock`);
//! 4. the source served to the kernel as a block device, by the transport the manifest asks for or the
//!    kernel offers ([`crate::transport`]): the NBD client over a socketpair (`/dev/nbdN`), or a FUSE file
//!    of our own on a loop device (`/dev/loopN`);
//! 5. dm-crypt over that device, named `remote-crypt-<i>` as upstream: `/dev/dm-M`;
//! 6. ext4 mounted at `<parent>/.filesystem-<i>`, then published by the `mount_point` symlink.
//!
//! A filesystem whose manifest pins `verity_root_hash` goes another order (`verity`): key, blob, the
//! transport (read-only, the whole blob), dm-verity `remote-verity-<i>` over it, then the header read and
//! unlocked THROUGH the dm-verity device (never from the blob), dm-crypt over the dm-verity device, ext4
//! read-only. Teardown is the reverse: unmount, dm-crypt, dm-verity, transport.

use crate::blob::{self, BlockSource};
use crate::dm::{CryptDevice, CryptParams};
use crate::manifest::{Access, FilesystemPlan, Plan};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod detach;
mod error;
mod unlock;
mod verity;
use error::Cause;
pub use error::{CloseError, StepError, VerityError};
use unlock::Reader;
pub use verity::checked_superblock;

/// An opened, mounted and published filesystem. [`Opened::close`] undoes it in reverse order; dropping one
/// without closing still removes what it can (the dm device, the NBD or FUSE + loop attachment).
#[derive(Debug)]
pub struct Opened {
    /// Position in the plan.
    pub index: usize,
    /// Where the application finds it.
    pub mount_point: PathBuf,
    /// Where it is mounted.
    pub hidden: PathBuf,
    /// The block device under dm-crypt: `/dev/nbdN` (NBD) or `/dev/loopN` (FUSE + loop).
    pub block_device: PathBuf,
    /// Which transport serves it.
    pub transport: crate::transport::Kind,
    /// `/dev/dm-M`.
    pub dm_device: PathBuf,
    /// Mounted read-only.
    pub read_only: bool,
    /// Step timings.
    pub timings: Vec<(&'static str, Duration)>,
    /// The blob's ETag pinned at open.
    pub etag: Option<String>,
    /// Read-write Azure blobs: the write lease (taken at open, released when the blob is dropped at close).
    pub lease: Option<blob::LeaseWatch>,
    /// The dm-verity mapping under dm-crypt, for an image the manifest pins.
    pub verity: Option<VerityInfo>,
    /// Azure blobs: set when the blob was replaced or its token can no longer be refreshed.
    pub fatal: Option<blob::FatalWatch>,
    mounted: bool,
    dm: Option<CryptDevice>,
    verity_dev: Option<crate::dm::VerityDevice>,
    backing: Option<crate::transport::Backing>,
}

/// The dm-verity mapping of a pinned filesystem.
#[derive(Debug, Clone)]
pub struct VerityInfo {
    /// `remote-verity-<i>`.
    pub name: String,
    /// `/dev/dm-M`.
    pub device: PathBuf,
    /// The pinned root hash, hex.
    pub root_hash: String,
}

impl Opened {
    /// Shutdown, before leftover processes are ended: a read-write filesystem is remounted read-only
    /// (which writes back everything and the clean superblock), and the device is flushed, so that every
    /// byte is acknowledged by the blob service now. When the remount is refused (a process still writes),
    /// unmounting does it later. Read-only filesystems have nothing to do. True when nothing is left to
    /// send to the blob service.
    pub fn quiesce(&self) -> bool {
        if self.read_only || !self.mounted {
            return true;
        }
        let i = self.index;
        let t = Instant::now();
        if let Err(e) = crate::mount::remount_read_only(&self.hidden) {
            log::warn!(
                "filesystem[{i}]: remount read-only: {e}; data is flushed at unmount instead"
            );
            return false;
        }
        let flushed = std::fs::OpenOptions::new()
            .write(true)
            .open(&self.dm_device)
            .and_then(|f| f.sync_all());
        match flushed {
            Ok(()) => {
                log::info!(
                    "filesystem[{i}]: read-only now, all data acknowledged by the blob service ({} ms)",
                    t.elapsed().as_millis()
                );
                true
            }
            Err(e) => {
                log::error!(
                    "filesystem[{i}]: flushing {}: {e}; unmounting tries again",
                    self.dm_device.display()
                );
                false
            }
        }
    }

    /// Fault injection (test mode): end the serving side abruptly (NBD: the connection; FUSE: a serving
    /// thread panics holding a request); it is replaced and serving goes on.
    pub fn sever_nbd(&self) -> bool {
        self.backing
            .as_ref()
            .is_some_and(crate::transport::Backing::sever)
    }

    /// Why this filesystem's serving side is gone for good, if it is (the supervisor then gives up).
    pub fn gave_up(&self) -> Option<String> {
        let why = self.backing.as_ref()?.gave_up()?;
        Some(format!("filesystem[{}]: {why}", self.index))
    }
}

struct Steps {
    index: usize,
    /// Appended to the dm names and the FUSE directory of a re-open (`-r<n>`): a lazily detached
    /// predecessor may still hold its names until its last user closes.
    suffix: String,
    mount_point: PathBuf,
    t: Instant,
    timings: Vec<(&'static str, Duration)>,
}

impl Steps {
    fn done(&mut self, step: &'static str) {
        let d = self.t.elapsed();
        log::info!(
            "filesystem[{}]: {step}: done in {} ms",
            self.index,
            d.as_millis()
        );
        self.timings.push((step, d));
        self.t = Instant::now();
    }

    fn fail(&self, step: &'static str, cause: impl Into<Cause>) -> StepError {
        self.fail_fix(step, None, cause)
    }

    /// A failed step with the fix this step knows (when the cause's own text does not say one).
    fn fail_fix(
        &self,
        step: &'static str,
        fix: Option<&'static str>,
        cause: impl Into<Cause>,
    ) -> StepError {
        StepError {
            index: self.index,
            mount_point: self.mount_point.clone(),
            step,
            fix,
            cause: cause.into(),
        }
    }
}

/// The blob behind its cache, its ETag, (read-write) its lease and its fatal condition.
type Source = (
    Arc<dyn BlockSource>,
    (Option<String>, Option<blob::LeaseWatch>),
    Option<blob::FatalWatch>,
);

/// The fix for a LUKS2 header refused by its checks (the boot's and `doctor`'s).
pub const HEADER_FIX: &str = "the blob must be a LUKS2 image with allowed parameters (README, \"LUKS2 allowlist\"), e.g. made by `encfs-init image create`; if it may have been tampered with, restore it and pin header_sha256 (or verity_root_hash) in the manifest";

/// How requests to `fs`'s blob are authorized (the boot's open and `doctor` alike): its SAS, the identity's
/// token for the storage account (reporting to `fatal` once it can no longer be refreshed), or none.
pub fn blob_auth(
    fs: &FilesystemPlan,
    plan: &Plan,
    client: &crate::http::Client,
    fatal: Option<blob::FatalWatch>,
) -> Result<blob::Auth, crate::keyrelease::Error> {
    Ok(match &fs.access {
        Access::Anonymous => blob::Auth::Anonymous,
        Access::Sas(s) => blob::Auth::Sas(Arc::new(crate::secret::SecretString::new(
            s.expose().to_string(),
        ))),
        Access::Private => {
            let token = super::keys::BlobToken::for_blob(&fs.url.url, plan, client.clone())?;
            blob::Auth::Bearer(Arc::new(match fatal {
                Some(w) => token.watched(w),
                None => token,
            }))
        }
    })
}

/// The blob behind its cache.
fn open_source(fs: &FilesystemPlan, plan: &Plan) -> Result<Source, Cause> {
    let mut etag = None;
    let mut lease = None;
    let mut fatal = None;
    let url = fs.url.url.as_str();
    let raw: Box<dyn BlockSource> = if let Some(path) = url.strip_prefix("file://") {
        Box::new(blob::FileSource::open(
            std::path::Path::new(path),
            fs.read_write,
        )?)
    } else {
        let client = crate::http::Client::new(&plan.network)?;
        // The open at boot retries as [network] says; after it, the data path retries transient failures
        // until the filesystem's deadline rather than a count: a block request fails only when the blob
        // service has been failing for io_deadline.
        let data_policy = crate::http::RetryPolicy {
            retries: u32::MAX,
            deadline: Some(fs.io_deadline),
            ..*client.policy()
        };
        let watch = fatal.insert(blob::FatalWatch::new()).clone();
        let auth = blob_auth(fs, plan, &client, Some(watch.clone()))?;
        let mut b =
            blob::AzureBlob::open(client, url, auth, &plan.api_versions.blob, fs.read_write)?;
        b.set_retry_policy(data_policy);
        b.watch_fatal(watch);
        etag = Some(b.etag());
        lease = b.lease();
        Box::new(b)
    };
    let config = blob::CacheConfig::new(fs.block_size, fs.cache_size);
    let src: Arc<dyn BlockSource> = Arc::new(blob::CachedSource::new(raw, config)?);
    Ok((src, (etag, lease), fatal))
}

/// Open, map, mount and publish `fs`.
pub fn open(
    fs: &FilesystemPlan,
    plan: &Plan,
    keys: Option<&super::keys::Keys>,
) -> Result<Opened, StepError> {
    open_again(fs, plan, keys, 0)
}

/// [`open`] for the `generation`th time (0 at boot): a re-open names its dm devices and FUSE directory
/// with `-r<generation>`.
pub fn open_again(
    fs: &FilesystemPlan,
    plan: &Plan,
    keys: Option<&super::keys::Keys>,
    generation: u32,
) -> Result<Opened, StepError> {
    let mut s = Steps {
        index: fs.index,
        suffix: match generation {
            0 => String::new(),
            n => format!("-r{n}"),
        },
        mount_point: fs.mount_point.clone(),
        t: Instant::now(),
        timings: Vec::new(),
    };
    let key = super::keys::disk_key(&fs.key, keys, plan).map_err(|e| s.fail("key", e))?;
    s.done("key");

    let (src, etag_lease, fatal) = open_source(fs, plan).map_err(|e| s.fail("blob", e))?;
    s.done("blob");

    let Some(pin) = &fs.verity else {
        // Unpinned: the header is read from the blob before anything is attached.
        let unlocked =
            unlock::unlock(&mut s, &Reader::Blob(&*src), fs.header_sha256.as_ref(), key)?;
        let (kind, backing) = attach(&mut s, fs, src, !fs.read_write)?;
        let mut o = map_and_mount(s, fs, etag_lease, (kind, backing), None, unlocked)?;
        o.fatal = fatal;
        return Ok(o);
    };
    // Pinned: the whole blob is attached read-only and mapped through dm-verity first; the header, the
    // keyslots and the data are then read only through the verified device.
    let (kind, backing) = attach(&mut s, fs, src.clone(), true)?;
    let verity_dev = verity::map(&mut s, pin, &*src, backing.device())?;
    let node = verity_dev.node().to_path_buf();
    let unlocked = {
        let file = std::fs::File::open(&node).map_err(|e| s.fail(verity::STEP, e))?;
        let size = pin.hash_offset;
        let reader = Reader::Verified {
            file: &file,
            node: &node,
            size,
        };
        unlock::unlock(&mut s, &reader, fs.header_sha256.as_ref(), key)
    };
    // On an error, the verity device is removed before the transport is detached (drop order).
    let unlocked = unlocked?;
    let verity_dev = Some(verity_dev);
    let mut o = map_and_mount(s, fs, etag_lease, (kind, backing), verity_dev, unlocked)?;
    o.fatal = fatal;
    Ok(o)
}

/// The transport the manifest asks for or the kernel offers, attached over `src`.
fn attach(
    s: &mut Steps,
    fs: &FilesystemPlan,
    src: Arc<dyn BlockSource>,
    read_only: bool,
) -> Result<(crate::transport::Kind, crate::transport::Backing), StepError> {
    let (kind, why) = crate::transport::choose(fs.transport, &crate::transport::Probe::kernel())
        .map_err(|e| s.fail("transport", e))?;
    log::info!(
        "filesystem[{}]: transport {}: {why}",
        fs.index,
        kind.as_str()
    );
    let opts = crate::transport::AttachOptions {
        read_only,
        nbd_timeouts: crate::nbd::kernel::Timeouts {
            request: fs.nbd_timeout,
            dead_connection: (fs.nbd_timeout * 2).max(Duration::from_secs(120)),
        },
        fuse_dir: PathBuf::from(format!("/run/encfs-init/fuse-{}{}", fs.index, s.suffix)),
    };
    let (step, done) = match kind {
        crate::transport::Kind::Nbd => ("NBD", "NBD attach"),
        crate::transport::Kind::Fuse => ("FUSE + loop", "FUSE + loop attach"),
    };
    let backing = crate::transport::attach(kind, src, &opts).map_err(|e| s.fail(step, e))?;
    s.done(done);
    Ok((kind, backing))
}

/// dm-crypt over the transport's device (or over dm-verity), then mount and publish.
fn map_and_mount(
    mut s: Steps,
    fs: &FilesystemPlan,
    (etag, lease): (Option<String>, Option<blob::LeaseWatch>),
    (kind, backing): (crate::transport::Kind, crate::transport::Backing),
    verity_dev: Option<crate::dm::VerityDevice>,
    unlocked: unlock::Unlocked,
) -> Result<Opened, StepError> {
    let read_only = !fs.read_write;
    let block_device = backing.device().to_path_buf();
    let crypt_over = verity_dev
        .as_ref()
        .map_or_else(|| block_device.clone(), |v| v.node().to_path_buf());
    let header = &unlocked.header;
    let name = format!("remote-crypt-{}{}", fs.index, s.suffix);
    let uuid = format!("CRYPT-LUKS2-{}-{name}", header.binary.uuid.replace('-', ""));
    let params = CryptParams {
        cipher: header.segment.cipher.clone(),
        iv_offset: header.segment.iv_tweak,
        device: crypt_over,
        offset_sectors: unlocked.offset / 512,
        size_sectors: unlocked.len / 512,
        sector_size: header.segment.sector_size,
        read_only,
    };
    let mut opened = Opened {
        index: fs.index,
        mount_point: fs.mount_point.clone(),
        hidden: crate::mount::hidden_dir(&fs.mount_point, fs.index),
        block_device,
        transport: kind,
        dm_device: PathBuf::new(),
        read_only,
        timings: Vec::new(),
        etag,
        lease,
        fatal: None,
        verity: fs
            .verity
            .as_ref()
            .zip(verity_dev.as_ref())
            .map(|(pin, v)| VerityInfo {
                name: v.name().to_string(),
                device: v.node().to_path_buf(),
                root_hash: crate::hex::encode(&pin.root_hash),
            }),
        mounted: false,
        dm: None,
        verity_dev,
        backing: Some(backing),
    };
    let vk = unlocked.vk;
    let dm = CryptDevice::open(&name, Some(&uuid), &params, vk.secret())
        .map_err(|e| s.fail("dm-crypt", e))?;
    // The volume key's only copy in this process, wiped now that the kernel holds it.
    drop(vk);
    opened.dm_device = dm.node().to_path_buf();
    opened.dm = Some(dm);
    s.done("dm-crypt");

    crate::mount::mount_ext4(&opened.dm_device, &opened.hidden, read_only).map_err(|e| {
        s.fail_fix(
            "mount",
            Some("the image must hold ext4 (as `encfs-init image create` makes)"),
            e,
        )
    })?;
    opened.mounted = true;
    s.done("mount");

    crate::mount::publish(&fs.mount_point, &opened.hidden).map_err(|e| s.fail("publish", e))?;
    s.done("publish");
    opened.timings = s.timings;
    Ok(opened)
}

impl Opened {
    /// What the readiness file says about this filesystem.
    pub fn state(&self) -> crate::ready::FsState {
        crate::ready::FsState {
            index: self.index,
            mount_point: self.mount_point.display().to_string(),
            device: self.dm_device.display().to_string(),
            block_device: self.block_device.display().to_string(),
            transport: self.transport.as_str().to_string(),
            read_only: self.read_only,
            etag: self.etag.clone(),
            lease: self.lease.clone(),
            timings_ms: self
                .timings
                .iter()
                .map(|(k, d)| {
                    (
                        k.to_string(),
                        u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
                    )
                })
                .collect(),
            health: None,
            state: crate::ready::MountState::Ready,
            why: None,
            verity: self.verity.as_ref().map(|v| crate::ready::VerityState {
                name: v.name.clone(),
                device: v.device.display().to_string(),
                root_hash: v.root_hash.clone(),
                corrupted: false,
                first_bad_block: None,
            }),
        }
    }
}
