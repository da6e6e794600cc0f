//! Opening a keyslot: KDF, area decryption, AF merge, digest check.

use super::crypto::{self, Xts};
use super::error::{Error, Result};
use super::header::{Header, Keyslot};
use super::reader::slice;
use crate::secret::SecretBytes;
use std::fmt;
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

impl Header {
    /// Try the keyslots in [`Header::try_order`]; the first whose key matches the digest wins. `buf` is
    /// the device from offset 0 through the keyslot areas.
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
        mut read: impl FnMut(u64, u64) -> Result<Vec<u8>>,
    ) -> Result<VolumeKey> {
        let mut tried = Vec::new();
        for k in self.try_order() {
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
            if let Some(key) = self.open_keyslot(k, material.to_vec(), passphrase)? {
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
    ) -> Result<Option<Zeroizing<Vec<u8>>>> {
        let mut material = Zeroizing::new(material);
        let mut area_key = Zeroizing::new(vec![0u8; k.area_key_size]);
        crypto::derive(&k.kdf, passphrase, &mut area_key).map_err(|detail| Error::Kdf {
            keyslot: k.id,
            detail,
        })?;
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
