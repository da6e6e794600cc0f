//! Closing a filesystem: in order at teardown ([`Opened::close`]), and at once when it is dead and about to
//! be re-opened ([`Opened::abandon`]).

use super::{CloseError, Opened};
use std::time::Duration;

impl Opened {
    /// Undo everything: unpublish, unmount (flushing ext4), remove dm, detach NBD or loop + FUSE (flushing
    /// the cache).
    /// Every step is attempted; the first error is returned.
    pub fn close(mut self, patience: Duration) -> Result<(), CloseError> {
        self.close_inner(patience)
    }

    fn close_inner(&mut self, patience: Duration) -> Result<(), CloseError> {
        let mut first: Option<CloseError> = None;
        let i = self.index;
        crate::mount::unpublish(&self.mount_point, &self.hidden);
        let mut busy = false;
        if self.mounted {
            self.mounted = false;
            match crate::mount::unmount(&self.hidden, patience) {
                Ok(crate::mount::Unmounted::Clean) => {}
                Ok(crate::mount::Unmounted::Lazily) => {
                    busy = true;
                    let what = format!(
                        "{} still busy after {} ms (a process, e.g. the application's container, holds a \
                         file open there): detached lazily, so it is gone from every namespace; the \
                         filesystem ends when that file is closed",
                        self.hidden.display(),
                        patience.as_millis()
                    );
                    log::warn!("filesystem[{i}]: {what}");
                    first.get_or_insert(CloseError::Busy);
                }
                Err(e) => {
                    log::error!("filesystem[{i}]: {}", crate::errors::chain(&e));
                    first.get_or_insert(CloseError::Failed);
                }
            }
        }
        // dm-crypt, then the dm-verity under it. A lazily detached filesystem still holds them: the kernel
        // removes each at its last close.
        let crypt = self.dm.take().map(|d| d.remove_held(busy));
        let verity = self.verity_dev.take().map(|d| d.remove_held(busy));
        for removed in [crypt, verity].into_iter().flatten() {
            if let Err(e) = removed {
                log::error!("filesystem[{i}]: {}", crate::errors::chain(&e));
                first.get_or_insert(CloseError::Failed);
            }
        }
        if let Some(backing) = self.backing.take() {
            let detached = if busy {
                backing.detach_held()
            } else {
                backing.detach()
            };
            if let Err(e) = detached {
                log::error!(
                    "filesystem[{i}]: {} detach: {}",
                    self.transport.as_str(),
                    crate::errors::chain(&e)
                );
                first.get_or_insert(CloseError::Failed);
            }
        }
        match first {
            None => {
                log::info!("filesystem[{i}]: closed");
                Ok(())
            }
            Some(e) => Err(e),
        }
    }

    /// A dead filesystem, detached from the application's view without waiting for anything: unpublished,
    /// unmounted lazily (`MNT_DETACH`: gone from every namespace at once; the kernel ends it when its last
    /// open file is closed), its dm devices removed deferred (at their last close) and the transport's
    /// serving side ended at once. Nothing is flushed: the blob service is what failed. Returns whether
    /// every step was accepted (each is logged).
    pub fn abandon(mut self) -> bool {
        let i = self.index;
        let mut ok = true;
        crate::mount::unpublish(&self.mount_point, &self.hidden);
        if std::mem::take(&mut self.mounted) {
            use nix::mount::MntFlags;
            let flags = MntFlags::UMOUNT_NOFOLLOW | MntFlags::MNT_DETACH;
            match nix::mount::umount2(&self.hidden, flags) {
                Ok(()) => {
                    let _ = std::fs::remove_dir(&self.hidden);
                }
                Err(e) => {
                    log::error!(
                        "filesystem[{i}]: unmount {} lazily: {e}",
                        self.hidden.display()
                    );
                    ok = false;
                }
            }
        }
        let crypt = self.dm.take().map(|d| d.remove_held(true));
        let verity = self.verity_dev.take().map(|d| d.remove_held(true));
        for removed in [crypt, verity].into_iter().flatten() {
            if let Err(e) = removed {
                log::error!("filesystem[{i}]: {}", crate::errors::chain(&e));
                ok = false;
            }
        }
        if let Some(backing) = self.backing.take() {
            if let Err(e) = backing.detach_held() {
                log::error!(
                    "filesystem[{i}]: {} detach: {}",
                    self.transport.as_str(),
                    crate::errors::chain(&e)
                );
                ok = false;
            }
        }
        ok
    }
}

impl Drop for Opened {
    fn drop(&mut self) {
        if self.mounted || self.dm.is_some() || self.verity_dev.is_some() || self.backing.is_some()
        {
            let _ = self.close_inner(Duration::from_secs(5));
        }
    }
}
