//! `image create`: ext4 from a directory, a LUKS2 header, userspace encryption.

use crate::luks2::crypto::DataCipher;
use crate::luks2::format::{self, FormatParams, NewKdf, DATA_OFFSET};
use crate::luks2::Header;
use crate::secret::SecretBytes;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use zeroize::Zeroizing;

/// Arguments of `image create`.
#[derive(Debug, PartialEq, Eq)]
pub struct CreateArgs {
    /// Raw key file (32 bytes), used as the passphrase.
    pub key_file: PathBuf,
    /// Directory to copy into the filesystem.
    pub from: PathBuf,
    /// Whole image size; computed when absent.
    pub size: Option<u64>,
    /// Keyslot KDF.
    pub kdf: NewKdf,
    /// Data sector size.
    pub sector_size: u32,
    /// Output image.
    pub out: PathBuf,
}

const MIB: u64 = 1 << 20;
const CHUNK: usize = 1 << 20;
/// Report progress for filesystems at least this large.
const PROGRESS_FROM: u64 = 64 * MIB;

/// Read the raw key file; upstream's rule is exactly 32 bytes.
pub fn read_key(path: &Path) -> Result<SecretBytes, String> {
    let meta = fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.len() > 8 * MIB {
        return Err(format!(
            "{}: {} bytes is not a key file",
            path.display(),
            meta.len()
        ));
    }
    let key = SecretBytes::new(fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?);
    Ok(key)
}

fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file());
    found
}

/// Bytes and entries under `dir` (files rounded up to 4 KiB blocks; symlinks not followed).
fn content_size(dir: &Path) -> Result<(u64, u64), String> {
    let (mut bytes, mut entries) = (0u64, 0u64);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).map_err(|e| format!("{}: {e}", d.display()))? {
            let e = e.map_err(|e| format!("{}: {e}", d.display()))?;
            let m = e
                .path()
                .symlink_metadata()
                .map_err(|err| format!("{}: {err}", e.path().display()))?;
            entries += 1;
            bytes = bytes.saturating_add(m.len().div_ceil(4096) * 4096);
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    Ok((bytes, entries))
}

/// A first guess for the ext4 size: content + 15 % + inodes + journal, in whole MiB, at least 16 MiB.
fn estimate_fs_size(bytes: u64, entries: u64) -> u64 {
    let base = bytes + bytes / 7 + entries * 8192;
    let journal = match base {
        b if b < 128 * MIB => 4 * MIB,
        b if b < 1024 * MIB => 16 * MIB,
        b if b < 2048 * MIB => 32 * MIB,
        b if b < 16384 * MIB => 64 * MIB,
        _ => 128 * MIB,
    };
    (base + journal + 4 * MIB).div_ceil(MIB).max(16) * MIB
}

/// A file removed on drop unless kept.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

fn mkfs(mkfs: &Path, from: &Path, file: &Path, size: u64, entries: u64) -> Result<(), String> {
    let f = File::create(file).map_err(|e| format!("{}: {e}", file.display()))?;
    f.set_len(size)
        .map_err(|e| format!("{}: {e}", file.display()))?;
    drop(f);
    let inodes = (entries * 2 + 1024).max(size / 16384);
    let out = Command::new(mkfs)
        .args([
            "-q",
            "-F",
            "-t",
            "ext4",
            "-b",
            "4096",
            "-m",
            "0",
            "-N",
            &inodes.to_string(),
            "-d",
        ])
        .arg(from)
        .arg(file)
        .output()
        .map_err(|e| format!("{}: {e}", mkfs.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> String + '_ {
    move |e| format!("{}: {e}", path.display())
}

/// Create the image (see the module docs).
pub fn create(a: &CreateArgs) -> Result<(), String> {
    let key = read_key(&a.key_file)?;
    if key.len() != 32 {
        return Err(format!(
            "{}: {} bytes; the key file must hold the raw 32-byte key (upstream's rule: not hex, no newline)",
            a.key_file.display(),
            key.len()
        ));
    }
    if !a.from.is_dir() {
        return Err(format!("--from {}: not a directory", a.from.display()));
    }
    if a.out.exists() {
        return Err(format!(
            "{} exists; remove it first (it is never overwritten)",
            a.out.display()
        ));
    }
    let mkfs_bin = find_tool("mkfs.ext4")
        .ok_or("mkfs.ext4 not found: install e2fsprogs (1.43 or newer, for mkfs.ext4 -d)")?;
    let (bytes, entries) = content_size(&a.from)?;
    let dir = a
        .out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = a
        .out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let fs_tmp = TempFile(dir.join(format!(".{name}.ext4-{}", std::process::id())));

    // The filesystem: at the given size, or grown until the content fits.
    let mut fs_size = match a.size {
        Some(s) if s < DATA_OFFSET + 2 * MIB => {
            return Err(format!(
                "--size {s}: the image needs at least {} bytes (16 MiB header + 2 MiB)",
                DATA_OFFSET + 2 * MIB
            ))
        }
        Some(s) => (s - DATA_OFFSET) / 4096 * 4096,
        None => estimate_fs_size(bytes, entries),
    };
    let mut attempt = 0;
    loop {
        match mkfs(&mkfs_bin, &a.from, &fs_tmp.0, fs_size, entries) {
            Ok(()) => break,
            Err(e) if a.size.is_none() && attempt < 4 => {
                log::info!(
                    "image: {} MiB was too small ({e}); retrying larger",
                    fs_size / MIB
                );
                fs_size = (fs_size + fs_size / 2).div_ceil(MIB) * MIB;
                attempt += 1;
            }
            Err(e) => {
                return Err(format!(
                    "mkfs.ext4 -d {} failed for {} bytes: {e}",
                    a.from.display(),
                    fs_size
                ))
            }
        }
    }

    // The header, checked by our own reader before anything is written.
    let mut vk = Zeroizing::new(vec![0u8; 64]);
    getrandom::fill(&mut vk).map_err(|e| format!("getrandom: {e}"))?;
    let params = FormatParams {
        kdf: a.kdf,
        sector_size: a.sector_size,
    };
    let mut rng = |b: &mut [u8]| getrandom::fill(b);
    let meta = format::build(&vk, key.expose(), &params, &mut rng).map_err(|e| e.to_string())?;
    let header =
        Header::parse(&meta).map_err(|e| format!("our own header does not parse (a bug): {e}"))?;
    let opened = header
        .unlock(&meta, key.expose())
        .map_err(|e| format!("our own header does not open (a bug): {e}"))?;
    if opened.expose() != vk.as_slice() {
        return Err("our own header opens to another key (a bug)".into());
    }
    let cipher = DataCipher::new(&vk, &header.segment).ok_or("volume key size (a bug)")?;

    // Write header + encrypted filesystem to OUT.tmp, then rename.
    let tmp = TempFile(dir.join(format!(".{name}.tmp-{}", std::process::id())));
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp.0)
        .map_err(io(&tmp.0))?;
    out.write_all(&meta).map_err(io(&tmp.0))?;
    let mut src = File::open(&fs_tmp.0).map_err(io(&fs_tmp.0))?;
    let mut buf = vec![0u8; CHUNK];
    let (mut pos, mut next_report) = (0u64, fs_size / 10);
    while pos < fs_size {
        let n = usize::try_from((fs_size - pos).min(CHUNK as u64)).unwrap_or(CHUNK);
        src.read_exact(&mut buf[..n]).map_err(io(&fs_tmp.0))?;
        cipher.encrypt(&mut buf[..n], pos);
        out.write_all(&buf[..n]).map_err(io(&tmp.0))?;
        pos += n as u64;
        if fs_size >= PROGRESS_FROM && pos >= next_report {
            eprintln!(
                "image: encrypted {} / {} MiB ({}%)",
                pos / MIB,
                fs_size / MIB,
                pos * 100 / fs_size
            );
            next_report += fs_size / 10;
        }
    }
    out.sync_all().map_err(io(&tmp.0))?;
    drop(out);
    fs::rename(&tmp.0, &a.out).map_err(io(&a.out))?;
    drop(tmp); // renamed away: its removal is a no-op

    let total = DATA_OFFSET + fs_size;
    let report = format!(
        "image: {} ({total} bytes: 16 MiB LUKS2 header + {} MiB ext4)\nuuid: {}\n\
         cipher: aes-xts-plain64, 512-bit key, {}-byte sectors, keyslot 0: {}\nheader_sha256 = \"{}\"\n",
        a.out.display(),
        fs_size / MIB,
        header.binary.uuid,
        a.sector_size,
        header.keyslots[0].kdf,
        crate::hex::encode(&header.header_sha256)
    );
    let _ = std::io::stdout().write_all(report.as_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimate_grows_with_content_and_is_whole_mib() {
        assert_eq!(estimate_fs_size(0, 0), 16 * MIB);
        let s = estimate_fs_size(500 * MIB, 1000);
        assert!(s > 570 * MIB && s < 620 * MIB && s % MIB == 0, "{s}");
    }
}
