//! dm-crypt through device-mapper ioctls (the devicemapper crate): create, load one `crypt` target, resume,
//! remove. No cryptsetup, no loop device, no key file. dm-verity under it, for images pinned by a root hash,
//! is [`verity`].
//!
//! The kernel contract (Documentation/admin-guide/device-mapper/dm-crypt.rst): a `crypt` target's parameters
//! are `<cipher> <key> <iv_offset> <device> <offset> [<#opt> <opt>...]`, lengths and offsets in 512-byte
//! sectors whatever the encryption sector size. `<key>` is the hex key, or `:<bytes>:logon:<description>` to
//! take it from the kernel keyring ([`keyring`]): we use the keyring where the kernel has one, so the table
//! never holds the key. Without a keyring (Azure's CVM kernels are built without it) the hex key goes into the
//! table; the devicemapper crate logs tables at trace level, so `logging` caps its log target at info.
//!
//! Without udev there is no `/dev/mapper/<name>`: the device is `/dev/dm-<minor>`, which devtmpfs creates.
//! The keyring's two raw calls are in `sys`, the only `unsafe` of the area.
#![deny(unsafe_code)] // the raw calls are in `sys` (the one file allowed them)

mod ioctl;
pub mod keyring;
mod mapping;
mod sys;
pub mod verity;

pub use ioctl::Ioctl;
pub use mapping::Mapping;
pub use verity::{VerityDevice, VerityParams};

use crate::secret::SecretBytes;
use devicemapper::{DevId, DmFlags, DmName, DmOptions, DM};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// What a crypt mapping needs, in the kernel's units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CryptParams {
    /// dm-crypt cipher spec, e.g. `aes-xts-plain64`.
    pub cipher: String,
    /// IV offset (LUKS2 `iv_tweak`), in 512-byte sectors.
    pub iv_offset: u64,
    /// The backing block device, e.g. `/dev/nbd0`.
    pub device: PathBuf,
    /// Where the encrypted data starts on the backing device, in 512-byte sectors.
    pub offset_sectors: u64,
    /// Length of the mapping, in 512-byte sectors.
    pub size_sectors: u64,
    /// Encryption sector size: 512 or 4096.
    pub sector_size: u32,
    /// Map read-only.
    pub read_only: bool,
}

/// How the key reaches the kernel.
pub enum KeyRef {
    /// `:<len>:logon:<description>`.
    Keyring {
        /// Key length, bytes.
        len: usize,
        /// The logon key's description.
        description: String,
    },
    /// The hex key itself (no keyring in this kernel): see [`crate::hex::encode_secret`].
    Hex(Zeroizing<String>),
}

impl fmt::Debug for KeyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyRef::Keyring { len, description } => write!(f, ":{len}:logon:{description}"),
            KeyRef::Hex(h) => write!(f, "<hex key: {} chars>", h.len()),
        }
    }
}

impl CryptParams {
    /// The target's parameter string: the one place a key reference (or, without a keyring, the hex key) is
    /// formatted. Zeroized on drop; never logged. Built in one allocation of its final size, so that no
    /// outgrown buffer holding the hex key goes back to the allocator unwiped.
    pub fn table(&self, key: &KeyRef) -> Zeroizing<String> {
        let reference;
        let key_field: &str = match key {
            KeyRef::Keyring { len, description } => {
                reference = format!(":{len}:logon:{description}");
                &reference
            }
            KeyRef::Hex(h) => h.as_str(),
        };
        // No `iv_large_sectors`: LUKS2 counts plain64 IVs in 512-byte sectors whatever the encryption sector
        // size (cryptsetup's own table for a 4096-byte LUKS2 volume has only `sector_size:4096`; the root-dm
        // VM test compares the tables and the plaintext).
        let opts = if self.sector_size != 512 {
            format!(" 1 sector_size:{}", self.sector_size)
        } else {
            String::new()
        };
        let (iv_offset, device, offset) = (
            self.iv_offset.to_string(),
            self.device.display().to_string(),
            self.offset_sectors.to_string(),
        );
        let parts = [
            self.cipher.as_str(),
            " ",
            key_field,
            " ",
            &iv_offset,
            " ",
            &device,
            " ",
            &offset,
            &opts,
        ];
        let mut s = Zeroizing::new(String::with_capacity(parts.iter().map(|p| p.len()).sum()));
        for p in parts {
            s.push_str(p);
        }
        s
    }
}

/// The step whose failure most often means a missing module.
const LOAD: &str = "load the crypt table of";
/// The same for a verity mapping.
const LOAD_VERITY: &str = "load the verity table of";

/// The fix a failed step knows: a refused table most often means a missing module; a name that is taken
/// means a mapping left by an earlier run.
fn fix(step: &str, name: &str, cause: &Ioctl) -> String {
    if step == LOAD {
        "; fix: make sure dm-crypt and the cipher's modules (xts, aesni-intel) are loaded".into()
    } else if step == LOAD_VERITY {
        "; fix: make sure dm-verity is loaded (kernel_modules: dm-verity)".into()
    } else if step == CREATE && cause.errno() == Some(nix::errno::Errno::EBUSY) {
        format!(
            "; fix: a device-mapper device named {name} exists already (left by an earlier run, or another \
             encfs-init in this VM): remove it (`dmsetup remove {name}`) or restart the container group"
        )
    } else {
        String::new()
    }
}

/// The step whose failure, with EBUSY, means the name is taken.
const CREATE: &str = "create";

/// An error of one dm step, naming the device and how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `/dev/mapper/control` could not be opened.
    #[error("cannot open /dev/mapper/control; fix: load dm-mod and dm-crypt (kernel_modules), run privileged")]
    Control(#[source] devicemapper::DmError),
    /// A dm ioctl failed.
    #[error("{step} {name}{}", fix(step, name, source))]
    Step {
        /// What we were doing.
        step: &'static str,
        /// The mapping's name.
        name: String,
        /// The cause.
        #[source]
        source: Ioctl,
    },
    /// The name is not a valid dm name.
    #[error("\"{0}\" is not a valid device-mapper name")]
    Name(String),
    /// The kernel keyring refused the key for a reason other than "not supported".
    #[error("adding the key to the kernel keyring")]
    Keyring(#[source] std::io::Error),
    /// The mapping has no verity target (or a status we cannot read).
    #[error("{0} has no dm-verity status")]
    NotVerity(String),
    /// `/dev/dm-<minor>` did not appear.
    #[error("{} did not appear; fix: mount devtmpfs on /dev", .0.display())]
    Node(PathBuf),
}

/// An active crypt mapping: a [`Mapping`] (its node and name), removed by [`CryptDevice::remove`] or when
/// dropped.
#[derive(Debug)]
pub struct CryptDevice(Mapping);

impl std::ops::Deref for CryptDevice {
    type Target = Mapping;
    fn deref(&self) -> &Mapping {
        &self.0
    }
}

impl CryptDevice {
    /// Create `name` as a crypt mapping over `p.device` with `key` (the volume key).
    /// `uuid`, when given, becomes the dm uuid (cryptsetup's `CRYPT-LUKS2-<uuid>-<name>` lets `cryptsetup status`
    /// recognize the mapping).
    pub fn open(
        name: &str,
        uuid: Option<&str>,
        p: &CryptParams,
        key: &SecretBytes,
    ) -> Result<Self, Error> {
        let ro = if p.read_only {
            DmFlags::DM_READONLY
        } else {
            DmFlags::empty()
        };
        // From here on the device exists: any failure removes it (on drop).
        let (dm, mut dev) = Mapping::create(name, uuid, ro)?;
        let id = dev.id()?;

        // The keyring key must live in this thread across the table load, and not a moment longer.
        let description = format!("encfs:{name}");
        let (key_ref, logon) = match keyring::LogonKey::add(&description, key.expose()) {
            Ok(k) => (
                KeyRef::Keyring {
                    len: key.len(),
                    description,
                },
                Some(k),
            ),
            Err(e) if keyring::unsupported(&e) => {
                log::warn!("dm {name}: the kernel has no keyring; the key goes into the dm table (readable by root)");
                (KeyRef::Hex(crate::hex::encode_secret(key.expose())), None)
            }
            Err(e) => return Err(Error::Keyring(e)),
        };
        let mut table = p.table(&key_ref);
        // The crate wants owned Strings: the table moves in (no copy) and is wiped right after the call. The
        // crate's own ioctl buffer holds another copy that it frees unwiped (the kernel wipes its side:
        // DM_SECURE_DATA); the keyring path keeps the key out of the table altogether.
        let mut targets = vec![(
            0,
            p.size_sectors,
            "crypt".to_string(),
            std::mem::take(&mut *table),
        )];
        let loaded = dm.table_load(
            &id,
            &targets,
            DmOptions::default().set_flags(ro | DmFlags::DM_SECURE_DATA),
        );
        zeroize::Zeroize::zeroize(&mut targets[0].3);
        drop(logon);
        loaded.map_err(mapping::step(LOAD, name))?;
        dev.resume(&dm)?;
        log::info!(
            "dm {name}: {} over {} ({} sectors of 512, {}{})",
            dev.node().display(),
            p.device.display(),
            p.size_sectors,
            if p.read_only {
                "read-only"
            } else {
                "read-write"
            },
            if matches!(key_ref, KeyRef::Keyring { .. }) {
                ", key by keyring reference"
            } else {
                ""
            }
        );
        Ok(CryptDevice(dev))
    }

    /// Remove the mapping (the crate retries while it is busy).
    pub fn remove(self) -> Result<(), Error> {
        self.0.remove()
    }

    /// Remove the mapping, at its last close when it is still `held` (see [`Mapping::remove_held`]).
    pub fn remove_held(self, held: bool) -> Result<(), Error> {
        self.0.remove_held(held)
    }
}

/// Remove mapping `name`.
pub fn remove(name: &str) -> Result<(), Error> {
    remove_as(name, false)
}

/// `DM_DEV_REMOVE` of `name`; `deferred`: with `DM_DEFERRED_REMOVE` (removed at its last close).
fn remove_as(name: &str, deferred: bool) -> Result<(), Error> {
    let dm = DM::new().map_err(Error::Control)?;
    let dm_name = DmName::new(name).map_err(|_| Error::Name(name.to_string()))?;
    let (opts, step) = if deferred {
        let flags = DmOptions::default().set_flags(DmFlags::DM_DEFERRED_REMOVE);
        (flags, "deferred remove")
    } else {
        (DmOptions::default(), "remove")
    };
    dm.device_remove(&DevId::Name(dm_name), opts)
        .map(|_| {
            if deferred {
                log::info!("dm {name}: removal deferred until its last user closes it");
            } else {
                log::info!("dm {name}: removed");
            }
        })
        .map_err(|e| Error::Step {
            step,
            name: name.to_string(),
            source: Ioctl(e),
        })
}

/// Names of every dm device present (for tests and for teardown checks).
pub fn list() -> Result<Vec<String>, Error> {
    let dm = DM::new().map_err(Error::Control)?;
    let devs = dm.list_devices().map_err(|e| Error::Step {
        step: "list",
        name: String::new(),
        source: Ioctl(e),
    })?;
    Ok(devs.into_iter().map(|(n, _, _)| n.to_string()).collect())
}

/// Names of the device-mapper targets the kernel has loaded (`encfs-init doctor`).
pub fn targets() -> Result<Vec<String>, Error> {
    let dm = DM::new().map_err(Error::Control)?;
    let t = dm.list_versions().map_err(|e| Error::Step {
        step: "list targets",
        name: String::new(),
        source: Ioctl(e),
    })?;
    Ok(t.into_iter().map(|(n, ..)| n).collect())
}

/// devtmpfs creates the node as the device is registered; give it a moment.
fn wait_for(node: &Path) -> Option<()> {
    let deadline = Instant::now() + Duration::from_secs(2);
    while !node.exists() {
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(sector_size: u32) -> CryptParams {
        CryptParams {
            cipher: "aes-xts-plain64".into(),
            iv_offset: 0,
            device: "/dev/nbd0".into(),
            offset_sectors: 32768,
            size_sectors: 100,
            sector_size,
            read_only: true,
        }
    }

    #[test]
    fn keyring_table_carries_only_a_reference() {
        let t = params(4096).table(&KeyRef::Keyring {
            len: 64,
            description: "encfs:remote-crypt-0".into(),
        });
        assert_eq!(
            t.as_str(),
            "aes-xts-plain64 :64:logon:encfs:remote-crypt-0 0 /dev/nbd0 32768 1 sector_size:4096"
        );
    }

    #[test]
    fn the_hex_key_table_is_built_at_its_final_size() {
        let key: Vec<u8> = (0u8..64).collect();
        let hex = crate::hex::encode_secret(&key);
        let expected: String = key.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex.as_str(), expected);
        assert_eq!(hex.capacity(), hex.len());
        for sector_size in [512, 4096] {
            let t = params(sector_size).table(&KeyRef::Hex(crate::hex::encode_secret(&key)));
            assert!(t.contains(&expected));
            assert_eq!(t.capacity(), t.len(), "one allocation, never outgrown");
        }
    }

    #[test]
    fn hex_table_for_512_byte_sectors_has_no_options() {
        let t = params(512).table(&KeyRef::Hex(Zeroizing::new("00ff".into())));
        assert_eq!(t.as_str(), "aes-xts-plain64 00ff 0 /dev/nbd0 32768");
    }

    #[test]
    fn a_busy_ioctl_keeps_its_os_text_once_and_the_fix_last() {
        let busy = devicemapper::DmError::Core(devicemapper::errors::Error::Ioctl(
            4,
            None,
            None,
            Box::new(nix::errno::Errno::EBUSY),
        ));
        let e = Error::Step {
            step: LOAD,
            name: "fs0".into(),
            source: Ioctl(busy),
        };
        let line = crate::errors::chain(&e);
        assert!(line.starts_with("load the crypt table of fs0: "), "{line}");
        assert_eq!(line.matches("Device or resource busy").count(), 1, "{line}");
        assert!(
            line.ends_with(
                "; fix: make sure dm-crypt and the cipher's modules (xts, aesni-intel) are loaded"
            ),
            "{line}"
        );
        // A taken name: the ioctl by name and the OS text once, no header dump, and the fix that says so.
        let taken = Error::Step {
            step: CREATE,
            name: "remote-crypt-0".into(),
            source: Ioctl(devicemapper::DmError::Core(
                devicemapper::errors::Error::Ioctl(
                    3,
                    None,
                    None,
                    Box::new(nix::errno::Errno::EBUSY),
                ),
            )),
        };
        let ebusy = std::io::Error::from_raw_os_error(nix::libc::EBUSY);
        assert_eq!(
            crate::errors::chain(&taken),
            format!(
                "create remote-crypt-0: DM_DEV_CREATE: {ebusy}; fix: a device-mapper device named \
                 remote-crypt-0 exists already (left by an earlier run, or another encfs-init in this VM): \
                 remove it (`dmsetup remove remote-crypt-0`) or restart the container group"
            )
        );
        let e = Error::Keyring(std::io::Error::from_raw_os_error(nix::libc::EACCES));
        assert_eq!(
            crate::errors::chain(&e),
            "adding the key to the kernel keyring: Permission denied (os error 13)"
        );
    }
}
