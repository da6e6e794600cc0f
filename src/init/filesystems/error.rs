//! The errors of opening and closing a filesystem: a failed step with the layer's error as its cause, and
//! why a close was not clean.

use crate::manifest::FilesystemPlan;
use std::path::PathBuf;

/// Any error of a layer below, boxed as the cause of a [`StepError`]; [`crate::errors::chain`] prints it.
pub(super) type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A failed step of one filesystem: its own text is `filesystem[i] (mount point): step[; fix: ...]`, and the
/// layer's error is its `source()`, so [`crate::errors::chain`] prints
/// `filesystem[i] (mount point): step: cause: ...; fix: ...`.
#[derive(Debug)]
pub struct StepError {
    /// Which filesystem.
    pub index: usize,
    /// Its mount point.
    pub mount_point: PathBuf,
    /// The step.
    pub step: &'static str,
    /// The fix this step knows, where the cause does not name one.
    pub(super) fix: Option<&'static str>,
    pub(super) cause: Cause,
}

impl StepError {
    /// The opening thread of `fs` panicked (or could not start): a bug, reported as such.
    pub fn panicked(fs: &FilesystemPlan, what: &str) -> Self {
        StepError {
            index: fs.index,
            mount_point: fs.mount_point.clone(),
            step: "open",
            fix: Some("please report it"),
            cause: format!("internal error: {what}").into(),
        }
    }
}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "filesystem[{}] ({}): {}",
            self.index,
            self.mount_point.display(),
            self.step,
        )?;
        match self.fix {
            Some(fix) => write!(f, "; fix: {fix}"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for StepError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.cause)
    }
}

/// Why [`super::Opened::close`] did not end cleanly; each problem was logged where it happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseError {
    /// The filesystem was still busy and was detached lazily: it ends when its last file is closed.
    Busy,
    /// A teardown step failed.
    Failed,
}

impl std::fmt::Display for CloseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CloseError::Busy => "still busy: detached lazily",
            CloseError::Failed => "a teardown step failed (logged above)",
        })
    }
}

impl std::error::Error for CloseError {}

/// Why a verity-pinned filesystem could not be mapped or read at boot.
#[derive(Debug, thiserror::Error)]
pub enum VerityError {
    /// A read through the dm-verity device failed: with EIO, a block did not match the pinned tree.
    #[error("reading the {what} through {} (every block checked against verity_root_hash){}", node.display(), eio_fix(source))]
    Read {
        /// What was read.
        what: &'static str,
        /// The dm-verity device.
        node: PathBuf,
        /// The cause (EIO: verification failed).
        #[source]
        source: std::io::Error,
    },
    /// The blob ends before the superblock.
    #[error("the blob has {size} bytes, so no verity superblock can be at byte {offset}; fix: check verity_hash_offset (`encfs-init image seal` prints it) and that the blob is the sealed image")]
    Short {
        /// The blob's size.
        size: u64,
        /// verity_hash_offset.
        offset: u64,
    },
    /// A block of the hash tree does not match its entry in the level above (or the root).
    #[error("hash tree block {block} (level {level}, in 4096-byte blocks of the image) does not match verity_root_hash; fix: the blob does not match verity_root_hash: it is another or an older image, or bytes of its hash tree were changed; serve the image the manifest pins, or pin this image's root hash (`encfs-init image seal` prints it)")]
    Tree {
        /// The tree level (0: the hashes of data blocks).
        level: u32,
        /// The block, from the start of the blob.
        block: u64,
    },
    /// The superblock's number of data blocks makes no tree that fits in 64-bit offsets.
    #[error("the verity superblock's {0} data blocks make no hash tree; fix: the blob is not the sealed image the manifest pins")]
    Geometry(u64),
    /// The hash tree could not be read from the blob.
    #[error("reading the hash tree")]
    TreeRead(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The superblock could not be read from the blob.
    #[error(transparent)]
    SuperblockRead(Box<crate::blob::Error>),
    /// What is at the hash offset is not a dm-verity superblock this can use.
    #[error(transparent)]
    Superblock(crate::verity::Error),
    /// The superblock's data area does not end where the tree begins.
    #[error("the verity superblock covers {covered} bytes of data, but verity_hash_offset is {offset}; fix: check verity_hash_offset (`encfs-init image seal` prints it)")]
    Extent {
        /// data blocks × block size.
        covered: u64,
        /// verity_hash_offset.
        offset: u64,
    },
}

fn eio_fix(e: &std::io::Error) -> &'static str {
    if e.raw_os_error() == Some(nix::libc::EIO) {
        "; fix: the blob does not match verity_root_hash: it is another or an older image, or bytes of its \
         LUKS2 header or hash tree were changed; serve the image the manifest pins, or pin this image's root \
         hash (`encfs-init image seal` prints it)"
    } else {
        ""
    }
}
