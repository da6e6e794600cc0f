//! Opening a keyslot: KDF, area decryption, AF merge, digest check; within the limits of [`super::cost`].

use super::cost::{self, Limits};
use super::crypto::{self, Xts};
use super::error::{Error, Result};
use super::header::{Header, Kdf, Keyslot};
use super::reader::slice;
use crate::secret::SecretBytes;
use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;
use zeroize::Zeroizing;

/// An opened volume key: zeroized on drop, never printed.
pub struct VolumeKey {
    key: SecretBytes,
    keyslot: u32,
}

impl VolumeKey {
    /// The key bytes, for the one place that builds the dm-crypt key.
    pub fn expose(&self) -> &[u8] {
        self.key.expose()
    }

    /// Key length, bytes.
    pub fn len(&self) -> usize {
        self.key.len()
    }

    /// Never true for an opened key.
    pub fn is_empty(&self) -> bool {
        self.key.is_empty()
    }

    /// The key as a secret, for handing on without a copy (dm-crypt's table).
    pub fn secret(&self) -> &SecretBytes {
        &self.key
    }

    /// The keyslot that opened.
    pub fn keyslot(&self) -> u32 {
        self.keyslot
    }
}

impl fmt::Debug for VolumeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "VolumeKey {{ keyslot: {}, key: <secret: {} bytes> }}",
            self.keyslot,
            self.key.len()
        )
    }
}

/// Parse the header at the start of `buf` and open it with `passphrase` (the raw key file's bytes).
/// `buf` must hold the metadata through the keyslots area (cryptsetup's default layout: 16 MiB).
pub fn unlock(buf: &[u8], passphrase: &[u8]) -> Result<VolumeKey> {
    Header::parse(buf)?.unlock(buf, passphrase)
}

/// As [`unlock`], refusing a header whose area's SHA-256 differs from `pin`.
pub fn unlock_pinned(buf: &[u8], passphrase: &[u8], pin: Option<&[u8; 32]>) -> Result<VolumeKey> {
    Header::parse_pinned(buf, pin)?.unlock(buf, passphrase)
}

/// Argon2 derivations run one at a time in this process: filesystems open in parallel, and two
/// derivations that each fit the memory left could not fit together.
static ARGON2: Mutex<()> = Mutex::new(());

impl Header {
    /// Try the keyslots in [`Header::try_order`]; the first whose key matches the digest wins. `buf` is
    /// the device from offset 0 through the keyslot areas. Bounded by [`Limits::for_this_machine`].
    pub fn unlock(&self, buf: &[u8], passphrase: &[u8]) -> Result<VolumeKey> {
        self.unlock_with(passphrase, |offset, len| {
            slice(buf, offset, len, "keyslot area").map(<[u8]>::to_vec)
        })
    }

    /// As [`Header::unlock`], reading each tried keyslot's material (`len` bytes at device offset
    /// `offset`, at most 256000) through `read`: for a remote device, only what is needed is fetched.
    pub fn unlock_with(
        &self,
        passphrase: &[u8],
        read: impl FnMut(u64, u64) -> Result<Vec<u8>>,
    ) -> Result<VolumeKey> {
        self.unlock_within(passphrase, &Limits::for_this_machine(), read)
    }

    /// What the boot and `image check` both do, so that "does this key open this image" has one answer:
    /// place the data segment on a device of `device_size` bytes ([`Header::data_range`]), then unlock
    /// within `limits` ([`Header::unlock_within`]). Returns the key and the data's `(offset, length)`.
    pub fn open_device(
        &self,
        device_size: u64,
        passphrase: &[u8],
        limits: &Limits,
        read: impl FnMut(u64, u64) -> Result<Vec<u8>>,
    ) -> Result<(VolumeKey, (u64, u64))> {
        let data = self.data_range(device_size)?;
        let vk = self.unlock_within(passphrase, limits, read)?;
        Ok((vk, data))
    }

    /// Refuse, before anything is derived, an unlock that would cost more than `limits` allow: the work
    /// of every keyslot in [`Header::try_order`] with its digest check, and each Argon2 keyslot's memory.
    pub fn check_limits(&self, limits: &Limits) -> Result<()> {
        let order = self.try_order();
        let total = cost::unlock_ns(self);
        if total > limits.work_ns {
            let ids: Vec<String> = order.iter().map(|k| k.id.to_string()).collect();
            let kdfs = order
                .iter()
                .map(|k| cost::kdf_ns(k))
                .fold(0, u64::saturating_add);
            return Err(Error::Work {
                fields: format!("keyslots.{}.kdf, digests.0.iterations", ids.join(",")),
                detail: format!(
                    "{} keyslots would be tried, their KDFs about {} and {} digest checks at {} iterations \
                     about {}: {} of work, over the budget of {}",
                    order.len(),
                    cost::secs(kdfs),
                    order.len(),
                    self.digest.iterations,
                    cost::secs(total.saturating_sub(kdfs)),
                    cost::secs(total),
                    cost::secs(limits.work_ns)
                ),
            });
        }
        self.check_memory(&order, limits)
    }

    fn check_memory(&self, keyslots: &[&Keyslot], limits: &Limits) -> Result<()> {
        let Some((k, need_kib)) = keyslots
            .iter()
            .filter_map(|k| match k.kdf {
                Kdf::Argon2 { memory_kib, .. } => Some((k, u64::from(memory_kib))),
                Kdf::Pbkdf2 { .. } => None,
            })
            .max_by_key(|&(_, m)| m)
        else {
            return Ok(());
        };
        match limits.memory_kib() {
            Some(have_kib) if need_kib > have_kib => Err(Error::Memory {
                field: format!("keyslots.{}.kdf.memory", k.id),
                need_kib,
                have_kib,
            }),
            Some(_) => Ok(()),
            None => {
                log::warn!(
                    "LUKS2: /proc/meminfo unreadable; keyslots.{}.kdf.memory ({need_kib} KiB) not checked \
                     against the machine's memory",
                    k.id
                );
                Ok(())
            }
        }
    }

    /// As [`Header::unlock_with`], within `limits`: [`Header::check_limits`] first; no keyslot is
    /// started once `limits.deadline` has passed (the first always is).
    pub fn unlock_within(
        &self,
        passphrase: &[u8],
        limits: &Limits,
        mut read: impl FnMut(u64, u64) -> Result<Vec<u8>>,
    ) -> Result<VolumeKey> {
        self.check_limits(limits)?;
        let start = Instant::now();
        let order = self.try_order();
        let mut tried = Vec::new();
        for (i, k) in order.iter().enumerate() {
            if i > 0 && start.elapsed() >= limits.deadline {
                return Err(Error::Deadline {
                    tried,
                    untried: order[i..].iter().map(|k| k.id).collect(),
                    secs: limits.deadline.as_secs(),
                });
            }
            tried.push(k.id);
            // Validated: key_size is 32 or 64 and stripes 4000, so this is 128000 or 256000 bytes, a
            // whole number of 512-byte sectors inside the area.
            let len = (k.key_size * k.stripes as usize) as u64;
            let material = Zeroizing::new(read(k.area_offset, len)?);
            if material.len() as u64 != len {
                return Err(Error::Truncated {
                    what: "keyslot area",
                    need: k.area_offset.saturating_add(len),
                    have: k.area_offset.saturating_add(material.len() as u64),
                });
            }
            if let Some(key) = self.open_keyslot(k, material.to_vec(), passphrase, limits)? {
                log::debug!("LUKS2: keyslot {} opened", k.id);
                return Ok(VolumeKey {
                    key: SecretBytes::new(key.to_vec()),
                    keyslot: k.id,
                });
            }
        }
        Err(Error::NoKeyslotOpened { tried })
    }

    /// `Ok(Some(key))` if `passphrase` opens `k` given its encrypted `material`, `Ok(None)` if not.
    fn open_keyslot(
        &self,
        k: &Keyslot,
        material: Vec<u8>,
        passphrase: &[u8],
        limits: &Limits,
    ) -> Result<Option<Zeroizing<Vec<u8>>>> {
        let mut material = Zeroizing::new(material);
        let mut area_key = Zeroizing::new(vec![0u8; k.area_key_size]);
        let kdf_error = |cause| Error::Kdf {
            keyslot: k.id,
            cause,
        };
        if matches!(k.kdf, Kdf::Argon2 { .. }) {
            // A poisoned lock only means another derivation panicked; the guard protects no data.
            let _one_at_a_time = ARGON2.lock().unwrap_or_else(PoisonError::into_inner);
            // Memory may have gone since check_limits (another filesystem, the cache): look again.
            self.check_memory(&[k], limits)?;
            crypto::derive(&k.kdf, passphrase, &mut area_key).map_err(kdf_error)?;
        } else {
            crypto::derive(&k.kdf, passphrase, &mut area_key).map_err(kdf_error)?;
        }
        let xts = Xts::new(&area_key).ok_or(Error::KeySize {
            field: format!("keyslots.{}.area.key_size", k.id),
            value: k.area_key_size as u64,
        })?;
        xts.decrypt(&mut material, 512, 0);
        let key = crypto::af_merge(&material, k.key_size, k.stripes as usize, k.af_hash);
        let d = &self.digest;
        Ok(crypto::digest_matches(d.hash, &key, &d.salt, d.iterations, &d.digest).then_some(key))
    }
}
