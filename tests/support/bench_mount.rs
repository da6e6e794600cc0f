//! The benchmark's steps from a block device to a readable mount (guest side of `cargo xtask bench`, used by
//! tests/support/bench_pipelines.rs), with the product's code, each part timed: the LUKS2 header read and
//! unlocked (`luks2`), dm-crypt mapped (`dm::CryptDevice`), ext4 mounted read-only (`mount::mount_ext4`).
//!
//! For `ours-nbd-verity` / `ours-fuse-verity`, first what the boot does for an image pinned by
//! `verity_root_hash` (src/init/filesystems/verity.rs): the verity superblock is read from the blob (behind
//! the cache) at the pinned hash offset, the whole hash tree is checked against the pinned root (the boot's
//! own `checked_superblock`), then `dm::VerityDevice` maps the transport's device;
//! the header is then read through that device and dm-crypt goes over it.
#![allow(dead_code)]

use encfs_init::blob::BlockSource;
use encfs_init::dm::{CryptDevice, CryptParams, VerityDevice, VerityParams};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What the manifest would pin: the root hash and the superblock's byte offset (the end of the verified data).
#[derive(Debug, Clone, Copy)]
pub struct Pin {
    pub root: [u8; 32],
    pub hash_offset: u64,
}

/// Timed parts of a start to a readable mount, in seconds, in order.
pub type Phases = Vec<(&'static str, f64)>;

/// An unlocked, mapped and mounted image; [`Mounted::close`] undoes it (dropping it removes the mappings,
/// dm-crypt first).
pub struct Mounted {
    pub dir: PathBuf,
    dm: Option<CryptDevice>,
    pub verity: Option<VerityDevice>,
    mounted: bool,
}

impl Mounted {
    pub fn close(mut self) -> Result<(), String> {
        let mut errors = Vec::new();
        if self.mounted {
            self.mounted = false;
            if let Err(e) = encfs_init::mount::unmount(&self.dir, Duration::from_secs(10)) {
                errors.push(e.to_string());
            }
        }
        if let Some(dm) = self.dm.take() {
            if let Err(e) = dm.remove() {
                errors.push(encfs_init::errors::chain(&e));
            }
        }
        if let Some(v) = self.verity.take() {
            if let Err(e) = v.remove() {
                errors.push(encfs_init::errors::chain(&e));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if self.mounted {
            let _ = encfs_init::mount::unmount(&self.dir, Duration::from_secs(10));
        }
    }
}

/// Read the LUKS2 header through `read` (a device of `size` bytes), unlock it with `key`, map dm-crypt
/// `name` over `device` and mount ext4 read-only at `dir`: the boot's steps, with the product's code. Pushes
/// the phases "header + unlock" and "dm-crypt + mount".
pub fn crypt_mount(
    name: &str,
    device: &Path,
    size: u64,
    key: &[u8],
    read: &dyn Fn(u64, usize) -> Result<Vec<u8>, String>,
    dir: &Path,
    phases: &mut Phases,
) -> Result<Mounted, String> {
    let t = Instant::now();
    let first = read(0, 4096)?;
    let head = read(0, encfs_init::luks2::both_copies_len(&first) as usize)?;
    let header = encfs_init::luks2::Header::parse(&head).map_err(|e| format!("LUKS2: {e}"))?;
    let (vk, (offset, len)) = header
        .open_device(
            size,
            key,
            &encfs_init::luks2::Limits::for_this_machine(),
            |o, l| {
                read(o, l as usize).map_err(|_| encfs_init::luks2::Error::Truncated {
                    what: "keyslot area",
                    need: o + l,
                    have: o,
                })
            },
        )
        .map_err(|e| format!("unlock: {e}"))?;
    phases.push(("header + unlock", t.elapsed().as_secs_f64()));
    let t = Instant::now();
    let params = CryptParams {
        cipher: header.segment.cipher.clone(),
        iv_offset: header.segment.iv_tweak,
        device: device.to_path_buf(),
        offset_sectors: offset / 512,
        size_sectors: len / 512,
        sector_size: header.segment.sector_size,
        read_only: true,
    };
    let dm = CryptDevice::open(name, None, &params, vk.secret())
        .map_err(|e| encfs_init::errors::chain(&e))?;
    let mut m = Mounted {
        dir: dir.to_path_buf(),
        dm: Some(dm),
        verity: None,
        mounted: false,
    };
    let node =
        m.dm.as_ref()
            .map(|d| d.node().to_path_buf())
            .unwrap_or_default();
    encfs_init::mount::mount_ext4(&node, dir, true).map_err(|e| e.to_string())?;
    m.mounted = true;
    phases.push(("dm-crypt + mount", t.elapsed().as_secs_f64()));
    Ok(m)
}

/// Positional reads of a device or file.
pub fn file_reader(path: &Path) -> Result<impl Fn(u64, usize) -> Result<Vec<u8>, String>, String> {
    let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let p = path.display().to_string();
    Ok(move |off: u64, len: usize| {
        let mut buf = vec![0u8; len];
        f.read_exact_at(&mut buf, off)
            .map_err(|e| format!("{p}: {e}"))?;
        Ok(buf)
    })
}

/// The boot's step for `pin`: the superblock from `src` (the blob behind its cache), the whole-tree check
/// (phase "tree check", superblock read included), then the dm-verity mapping `name` over `device` (phase
/// "verity map"). The verified device is `hash_offset` bytes long.
pub fn map_verity(
    name: &str,
    pin: &Pin,
    src: &dyn BlockSource,
    device: &Path,
    phases: &mut Phases,
) -> Result<VerityDevice, String> {
    let t = Instant::now();
    let offset = pin.hash_offset;
    let superblock = encfs_init::init::filesystems::checked_superblock(src, offset, &pin.root)
        .map_err(|e| encfs_init::errors::chain(&e))?;
    phases.push(("tree check", t.elapsed().as_secs_f64()));
    let t = Instant::now();
    let params = VerityParams {
        device: device.to_path_buf(),
        superblock,
        hash_offset: offset,
        root_hash: pin.root,
    };
    let dev = VerityDevice::open(name, None, &params).map_err(|e| encfs_init::errors::chain(&e))?;
    phases.push(("verity map", t.elapsed().as_secs_f64()));
    Ok(dev)
}

/// One line on what the tree costs in size: the bytes after the verified data (the superblock's block and
/// the tree) against the whole sealed image and against the data.
pub fn size_line(image_bytes: u64, pin: &Pin) -> String {
    let tree = image_bytes.saturating_sub(pin.hash_offset);
    format!(
        "verity tree size: {tree} bytes (superblock block + hash tree) after {} bytes of LUKS2 image: {:.3} % of the sealed image, {:.3} % over the unsealed one",
        pin.hash_offset,
        tree as f64 * 100.0 / image_bytes as f64,
        tree as f64 * 100.0 / pin.hash_offset as f64
    )
}
