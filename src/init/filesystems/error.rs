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

/// Why [`Opened::close`] did not end cleanly; each problem was logged where it happened.
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
