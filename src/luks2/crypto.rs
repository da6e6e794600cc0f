//! The keyslot cryptography: KDF, AES-XTS with plain64 IVs, the LUKS1 anti-forensic splitter, the digest.
//!
//! - **plain64**: the IV of a sector is its number as a little-endian 64-bit integer, zero-padded to 16
//!   bytes. In a keyslot area sectors are 512 bytes and numbered from the area's start. In the data
//!   segment sectors are `sector_size` bytes but the IV still counts **512-byte units** from the segment
//!   start, plus `iv_tweak`: LUKS2 never sets dm-crypt's `iv_large_sectors`. (Verified against cryptsetup
//!   2.6's own userspace encryption: `tests/luks2_iv.rs` decrypts a `cryptsetup reencrypt --encrypt` image.)
//! - **AF merge** (LUKS1 splitter, also used by LUKS2): `d = 0; for each stripe s_i but the last:
//!   d = H(d ^ s_i)`; the key is `d ^ s_last`. `H` is the diffuser: the buffer is cut into hash-sized
//!   blocks, block `j` becomes the first bytes of `hash(be32(j) || block)`.
//! - **digest**: PBKDF2(hash, volume key, salt, iterations) must equal the stored digest (compared in
//!   constant time).

use super::header::{Argon2Variant, Hash, Kdf};
use aes::cipher::KeyInit;
use aes::{Aes128, Aes256};
use sha2::Digest;
use subtle::ConstantTimeEq;
use xts_mode::Xts128;
use zeroize::Zeroizing;

/// PBKDF2-HMAC with the named hash.
pub fn pbkdf2(hash: Hash, password: &[u8], salt: &[u8], iterations: u32, out: &mut [u8]) {
    match hash {
        Hash::Sha1 => pbkdf2::pbkdf2_hmac::<sha1::Sha1>(password, salt, iterations, out),
        Hash::Sha256 => pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password, salt, iterations, out),
        Hash::Sha512 => pbkdf2::pbkdf2_hmac::<sha2::Sha512>(password, salt, iterations, out),
    }
}

/// Derive `out.len()` bytes from `password` with a keyslot's KDF. PBKDF2 cannot fail; Argon2 refuses
/// parameters outside its own limits (the allowlist keeps ours inside them, so an `Err` is unexpected).
pub fn derive(kdf: &Kdf, password: &[u8], out: &mut [u8]) -> Result<(), argon2::Error> {
    match kdf {
        Kdf::Pbkdf2 {
            hash,
            iterations,
            salt,
        } => {
            pbkdf2(*hash, password, salt, *iterations, out);
            Ok(())
        }
        Kdf::Argon2 {
            variant,
            time,
            memory_kib,
            cpus,
            salt,
        } => {
            let alg = match variant {
                Argon2Variant::Argon2i => argon2::Algorithm::Argon2i,
                Argon2Variant::Argon2id => argon2::Algorithm::Argon2id,
            };
            let params = argon2::Params::new(*memory_kib, *time, *cpus, Some(out.len()))?;
            argon2::Argon2::new(alg, argon2::Version::V0x13, params)
                .hash_password_into(password, salt, out)
        }
    }
}

/// AES-XTS with a 32-byte (AES-128) or 64-byte (AES-256) key.
pub enum Xts {
    /// AES-128-XTS.
    Aes128(Box<Xts128<Aes128>>),
    /// AES-256-XTS.
    Aes256(Box<Xts128<Aes256>>),
}

impl std::fmt::Debug for Xts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Xts::Aes128(_) => "Xts(AES-128, key redacted)",
            Xts::Aes256(_) => "Xts(AES-256, key redacted)",
        })
    }
}

fn tweak(iv: u64) -> xts_mode::Array<u8, aes::cipher::consts::U16> {
    xts_mode::get_tweak_default(u128::from(iv))
}

impl Xts {
    /// A cipher for `key` (32 or 64 bytes); `None` for any other length.
    pub fn new(key: &[u8]) -> Option<Self> {
        let half = key.len() / 2;
        match key.len() {
            32 => Some(Xts::Aes128(Box::new(Xts128::new(
                Aes128::new_from_slice(&key[..half]).ok()?,
                Aes128::new_from_slice(&key[half..]).ok()?,
            )))),
            64 => Some(Xts::Aes256(Box::new(Xts128::new(
                Aes256::new_from_slice(&key[..half]).ok()?,
                Aes256::new_from_slice(&key[half..]).ok()?,
            )))),
            _ => None,
        }
    }

    /// Decrypt whole sectors of `sector_size` bytes in place; the IV of sector `i` (0-based in `buf`) is
    /// `first_iv + i * (sector_size / 512)`. `buf.len()` must be a multiple of `sector_size` (a trailing
    /// partial sector is left as is).
    pub fn decrypt(&self, buf: &mut [u8], sector_size: usize, first_iv: u64) {
        let step = (sector_size / 512) as u64;
        for (i, s) in buf.chunks_exact_mut(sector_size).enumerate() {
            let t = tweak(first_iv.wrapping_add(i as u64 * step));
            match self {
                Xts::Aes128(x) => x.decrypt_sector(s, t),
                Xts::Aes256(x) => x.decrypt_sector(s, t),
            }
        }
    }

    /// Encrypt; the inverse of [`Xts::decrypt`].
    pub fn encrypt(&self, buf: &mut [u8], sector_size: usize, first_iv: u64) {
        let step = (sector_size / 512) as u64;
        for (i, s) in buf.chunks_exact_mut(sector_size).enumerate() {
            let t = tweak(first_iv.wrapping_add(i as u64 * step));
            match self {
                Xts::Aes128(x) => x.encrypt_sector(s, t),
                Xts::Aes256(x) => x.encrypt_sector(s, t),
            }
        }
    }
}

fn hash_block(hash: Hash, index: u32, block: &[u8], out: &mut [u8]) {
    let n = out.len();
    match hash {
        Hash::Sha1 => out.copy_from_slice(
            &sha1::Sha1::new()
                .chain_update(index.to_be_bytes())
                .chain_update(block)
                .finalize()[..n],
        ),
        Hash::Sha256 => out.copy_from_slice(
            &sha2::Sha256::new()
                .chain_update(index.to_be_bytes())
                .chain_update(block)
                .finalize()[..n],
        ),
        Hash::Sha512 => out.copy_from_slice(
            &sha2::Sha512::new()
                .chain_update(index.to_be_bytes())
                .chain_update(block)
                .finalize()[..n],
        ),
    }
}

/// The AF diffuser, in place.
fn diffuse(hash: Hash, buf: &mut [u8]) {
    let hl = hash.output_len();
    let mut tmp = Zeroizing::new([0u8; 64]);
    for (j, chunk) in buf.chunks_mut(hl).enumerate() {
        let n = chunk.len();
        hash_block(hash, j as u32, chunk, &mut tmp[..n]);
        chunk.copy_from_slice(&tmp[..n]);
    }
}

/// Merge `stripes` stripes of `key_size` bytes (the decrypted keyslot material) into the key.
pub fn af_merge(
    material: &[u8],
    key_size: usize,
    stripes: usize,
    hash: Hash,
) -> Zeroizing<Vec<u8>> {
    let mut d = Zeroizing::new(vec![0u8; key_size]);
    for (i, s) in material.chunks_exact(key_size).take(stripes).enumerate() {
        for (a, b) in d.iter_mut().zip(s) {
            *a ^= b;
        }
        if i + 1 < stripes {
            diffuse(hash, &mut d);
        }
    }
    d
}

/// Split `key` into `stripes` stripes; `material` holds `stripes * key.len()` random bytes on entry and
/// the split on return (the last stripe is overwritten).
pub fn af_split(key: &[u8], stripes: usize, hash: Hash, material: &mut [u8]) {
    let ks = key.len();
    let mut d = Zeroizing::new(vec![0u8; ks]);
    for s in material.chunks_exact(ks).take(stripes - 1) {
        for (a, b) in d.iter_mut().zip(s) {
            *a ^= b;
        }
        diffuse(hash, &mut d);
    }
    let last = &mut material[(stripes - 1) * ks..stripes * ks];
    for ((o, a), k) in last.iter_mut().zip(d.iter()).zip(key) {
        *o = a ^ k;
    }
}

/// Whether `key` matches a PBKDF2 digest, in constant time.
pub fn digest_matches(
    hash: Hash,
    key: &[u8],
    salt: &[u8],
    iterations: u32,
    expected: &[u8],
) -> bool {
    let mut out = Zeroizing::new(vec![0u8; expected.len()]);
    pbkdf2(hash, key, salt, iterations, &mut out);
    bool::from(out.as_slice().ct_eq(expected))
}

/// Data-segment encryption exactly as dm-crypt does it for a LUKS2 segment (no `iv_large_sectors`): the
/// IV of the sector at byte `pos` of the segment is `iv_tweak + pos / 512`.
#[derive(Debug)]
pub struct DataCipher {
    xts: Xts,
    sector_size: usize,
    iv_tweak: u64,
}

impl DataCipher {
    /// A cipher for `segment` with `key`; `None` if the key length is not 32 or 64.
    pub fn new(key: &[u8], segment: &super::header::Segment) -> Option<Self> {
        Some(Self {
            xts: Xts::new(key)?,
            sector_size: segment.sector_size as usize,
            iv_tweak: segment.iv_tweak,
        })
    }

    fn first_iv(&self, pos: u64) -> u64 {
        self.iv_tweak.wrapping_add(pos / 512)
    }

    /// Encrypt whole sectors in place; `pos` is the byte offset of `buf` in the segment (sector aligned).
    pub fn encrypt(&self, buf: &mut [u8], pos: u64) {
        self.xts.encrypt(buf, self.sector_size, self.first_iv(pos));
    }

    /// Decrypt whole sectors in place; `pos` as for [`DataCipher::encrypt`].
    pub fn decrypt(&self, buf: &mut [u8], pos: u64) {
        self.xts.decrypt(buf, self.sector_size, self.first_iv(pos));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn af_split_then_merge_gives_the_key_for_every_hash() {
        for hash in [Hash::Sha1, Hash::Sha256, Hash::Sha512] {
            for ks in [32usize, 64] {
                let key: Vec<u8> = (0..ks as u8).collect();
                let mut m: Vec<u8> = (0..ks * 10).map(|i| (i * 7 % 251) as u8).collect();
                af_split(&key, 10, hash, &mut m);
                assert_eq!(af_merge(&m, ks, 10, hash).as_slice(), key.as_slice());
                m[0] ^= 1;
                assert_ne!(af_merge(&m, ks, 10, hash).as_slice(), key.as_slice());
            }
        }
    }

    #[test]
    fn xts_iv_steps_by_512_byte_units_across_calls() {
        let x = Xts::new(&[7u8; 64]).unwrap();
        let mut whole = vec![0u8; 8192];
        x.encrypt(&mut whole, 4096, 0);
        let mut second = vec![0u8; 4096];
        x.encrypt(&mut second, 4096, 8);
        assert_eq!(&whole[4096..], &second[..]);
        x.decrypt(&mut whole, 4096, 0);
        assert!(whole.iter().all(|&b| b == 0));
        assert!(Xts::new(&[0u8; 48]).is_none());
    }
}
