//! What every mapping of ours shares, whatever its target: create it empty, resume it once its table is
//! loaded (the node appears), remove it (also when dropped before that, so an error path cannot leave it
//! behind), or defer its removal to its last close.

use super::{remove, remove_as, wait_for, Error, Ioctl};
use devicemapper::{DevId, DmFlags, DmName, DmOptions, DmUuid, DM};
use std::path::{Path, PathBuf};

/// An active mapping: removed by [`Mapping::remove`]; a dropped one is removed too (best effort, logged).
#[derive(Debug)]
pub struct Mapping {
    name: String,
    node: PathBuf,
    removed: bool,
}

/// The error of `step` on mapping `name`.
pub(super) fn step(step: &'static str, name: &str) -> impl FnOnce(devicemapper::DmError) -> Error {
    let name = name.to_string();
    move |e| Error::Step {
        step,
        name,
        source: Ioctl(e),
    }
}

impl Mapping {
    /// `DM_DEV_CREATE` of `name` (with `uuid` as the dm uuid, when given) and `flags`: a device without a
    /// table yet. Returns the control handle for the rest of the setup.
    pub(super) fn create(
        name: &str,
        uuid: Option<&str>,
        flags: DmFlags,
    ) -> Result<(DM, Mapping), Error> {
        let dm = DM::new().map_err(Error::Control)?;
        let dm_name = DmName::new(name).map_err(|_| Error::Name(name.to_string()))?;
        let dm_uuid = match uuid {
            Some(u) => Some(DmUuid::new(u).map_err(|_| Error::Name(u.to_string()))?),
            None => None,
        };
        dm.device_create(dm_name, dm_uuid, DmOptions::default().set_flags(flags))
            .map_err(step(super::CREATE, name))?;
        Ok((
            dm,
            Mapping {
                name: name.to_string(),
                node: PathBuf::new(),
                removed: false,
            },
        ))
    }

    /// The mapping's id for ioctls.
    pub(super) fn id(&self) -> Result<DevId<'_>, Error> {
        DmName::new(&self.name)
            .map(DevId::Name)
            .map_err(|_| Error::Name(self.name.clone()))
    }

    /// Make the loaded table live (`DM_DEV_SUSPEND` without `DM_SUSPEND` is "resume") and wait for the node.
    pub(super) fn resume(&mut self, dm: &DM) -> Result<(), Error> {
        let info = dm
            .device_suspend(&self.id()?, DmOptions::default())
            .map_err(step("resume", &self.name))?;
        self.node = PathBuf::from(format!("/dev/dm-{}", info.device().minor));
        wait_for(&self.node).ok_or_else(|| Error::Node(self.node.clone()))?;
        Ok(())
    }

    /// `/dev/dm-<minor>`.
    pub fn node(&self) -> &Path {
        &self.node
    }

    /// The mapping's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Remove the mapping (the crate retries while it is busy).
    pub fn remove(mut self) -> Result<(), Error> {
        self.removed = true;
        remove(&self.name)
    }

    /// Remove the mapping; `held`: it is still held open (by a filesystem that was detached lazily), so it
    /// is removed when its last user closes it (`DM_DEFERRED_REMOVE`; the kernel removes it at once when it
    /// is not open).
    pub fn remove_held(mut self, held: bool) -> Result<(), Error> {
        self.removed = true;
        remove_as(&self.name, held)
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if !self.removed {
            if let Err(e) = remove(&self.name) {
                log::error!(
                    "dm {}: removing after an error failed: {}",
                    self.name,
                    crate::errors::chain(&e)
                );
            }
        }
    }
}
