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

/// `image create` (or reading a key file for `image check`) failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading, writing or walking a file or directory failed.
    #[error("{}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The key file is far too large to be a key.
    #[error("{}: {len} bytes is not a key file", path.display())]
    KeyFileTooLarge {
        /// The key file.
        path: PathBuf,
        /// Its size.
        len: u64,
    },
    /// The key file does not hold 32 bytes.
    #[error("{}: {len} bytes; the key file must hold the raw 32-byte key (upstream's rule: not hex, no newline)", path.display())]
    KeyLength {
        /// The key file.
        path: PathBuf,
        /// Its size.
        len: usize,
    },
    /// `--from` is not a directory.
    #[error("--from {}: not a directory", .0.display())]
    FromNotDir(PathBuf),
    /// OUT exists.
    #[error("{} exists; remove it first (it is never overwritten)", .0.display())]
    OutExists(PathBuf),
    /// No mkfs.ext4 on this machine.
    #[error("mkfs.ext4 not found: install e2fsprogs (1.43 or newer, for mkfs.ext4 -d)")]
    NoMkfs,
    /// mkfs.ext4 could not be started.
    #[error("{}", tool.display())]
    RunMkfs {
        /// The program.
        tool: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// mkfs.ext4 failed: its own message.
    #[error("{0}")]
    MkfsSaid(String),
    /// The filesystem could not be made at any size tried.
    #[error("mkfs.ext4 -d {} failed for {size} bytes", from.display())]
    Mkfs {
        /// The source directory.
        from: PathBuf,
        /// The last size tried.
        size: u64,
        /// Why.
        #[source]
        source: Box<Error>,
    },
    /// `--size` leaves no room for a filesystem.
    #[error("--size {0}: the image needs at least {min} bytes (16 MiB header + 2 MiB)", min = DATA_OFFSET + 2 * MIB)]
    SizeTooSmall(u64),
    /// No random bytes for the volume key.
    #[error("getrandom")]
    Random(#[source] getrandom::Error),
    /// The header could not be built.
    #[error("LUKS2 header")]
    Format(#[source] crate::luks2::Error),
    /// Our own header does not parse or open (a bug).
    #[error("our own header does not {0} (a bug)")]
    OwnHeader(&'static str, #[source] crate::luks2::Error),
    /// Sealing the new image with dm-verity failed.
    #[error("--verity")]
    Seal(#[source] super::seal::Error),
    /// Our own header opens to another key, or the volume key has a size the cipher refuses (a bug).
    #[error("{0} (a bug)")]
    Bug(&'static str),
}

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
    /// Append a dm-verity hash tree (`image seal`).
    pub verity: bool,
    /// Output image.
    pub out: PathBuf,
}

const MIB: u64 = 1 << 20;
const CHUNK: usize = 1 << 20;
/// Report progress for filesystems at least this large.
const PROGRESS_FROM: u64 = 64 * MIB;

/// Read the raw key file; upstream's rule is exactly 32 bytes.
pub fn read_key(path: &Path) -> Result<SecretBytes, Error> {
    let meta = fs::metadata(path).map_err(io(path))?;
    if meta.len() > 8 * MIB {
        return Err(Error::KeyFileTooLarge {
            path: path.to_path_buf(),
            len: meta.len(),
        });
    }
    let key = SecretBytes::new(fs::read(path).map_err(io(path))?);
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
fn content_size(dir: &Path) -> Result<(u64, u64), Error> {
    let (mut bytes, mut entries) = (0u64, 0u64);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).map_err(io(&d))? {
            let e = e.map_err(io(&d))?;
            let m = e.path().symlink_metadata().map_err(io(&e.path()))?;
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

fn mkfs(mkfs: &Path, from: &Path, file: &Path, size: u64, entries: u64) -> Result<(), Error> {
    let f = File::create(file).map_err(io(file))?;
    f.set_len(size).map_err(io(file))?;
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
        .map_err(|source| Error::RunMkfs {
            tool: mkfs.to_path_buf(),
            source,
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::MkfsSaid(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }
}

/// An I/O error on `path`.
fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Create the image (see the module docs).
pub fn create(a: &CreateArgs) -> Result<(), Error> {
    let key = read_key(&a.key_file)?;
    if key.len() != 32 {
        return Err(Error::KeyLength {
            path: a.key_file.clone(),
            len: key.len(),
        });
    }
    if !a.from.is_dir() {
        return Err(Error::FromNotDir(a.from.clone()));
    }
    if a.out.exists() {
        return Err(Error::OutExists(a.out.clone()));
    }
    let mkfs_bin = find_tool("mkfs.ext4").ok_or(Error::NoMkfs)?;
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
        Some(s) if s < DATA_OFFSET + 2 * MIB => return Err(Error::SizeTooSmall(s)),
        Some(s) => (s - DATA_OFFSET) / 4096 * 4096,
        None => estimate_fs_size(bytes, entries),
    };
    let mut attempt = 0;
    loop {
        match mkfs(&mkfs_bin, &a.from, &fs_tmp.0, fs_size, entries) {
            Ok(()) => break,
            Err(e) if a.size.is_none() && attempt < 4 => {
                log::info!(
                    "image: {} MiB was too small ({}); retrying larger",
                    fs_size / MIB,
                    crate::errors::chain(&e)
                );
                fs_size = (fs_size + fs_size / 2).div_ceil(MIB) * MIB;
                attempt += 1;
            }
            Err(e) => {
                return Err(Error::Mkfs {
                    from: a.from.clone(),
                    size: fs_size,
                    source: Box::new(e),
                })
            }
        }
    }

    // The header, checked by our own reader before anything is written.
    let mut vk = Zeroizing::new(vec![0u8; 64]);
    getrandom::fill(&mut vk).map_err(Error::Random)?;
    let params = FormatParams {
        kdf: a.kdf,
        sector_size: a.sector_size,
    };
    let mut rng = |b: &mut [u8]| getrandom::fill(b);
    let meta = format::build(&vk, key.expose(), &params, &mut rng).map_err(Error::Format)?;
    let header = Header::parse(&meta).map_err(|e| Error::OwnHeader("parse", e))?;
    let opened = header
        .unlock(&meta, key.expose())
        .map_err(|e| Error::OwnHeader("open", e))?;
    if opened.expose() != vk.as_slice() {
        return Err(Error::Bug("our own header opens to another key"));
    }
    let cipher = DataCipher::new(&vk, &header.segment).ok_or(Error::Bug("volume key size"))?;

    // Write header + encrypted filesystem to OUT.tmp, then rename.
    let tmp = TempFile(dir.join(format!(".{name}.tmp-{}", std::process::id())));
    let mut out = OpenOptions::new()
        .read(true) // --verity reads the image back to hash it
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
    let sealed = if a.verity {
        Some(super::seal::seal_file(&out, &tmp.0).map_err(Error::Seal)?)
    } else {
        None
    };
    drop(out);
    fs::rename(&tmp.0, &a.out).map_err(io(&a.out))?;
    drop(tmp); // renamed away: its removal is a no-op

    let total = DATA_OFFSET + fs_size;
    let mut report = format!(
        "image: {} ({total} bytes: 16 MiB LUKS2 header + {} MiB ext4)\nuuid: {}\n\
         cipher: aes-xts-plain64, 512-bit key, {}-byte sectors, keyslot 0: {}\nheader_sha256 = \"{}\"\n",
        a.out.display(),
        fs_size / MIB,
        header.binary.uuid,
        a.sector_size,
        header.keyslots[0].kdf,
        crate::hex::encode(&header.header_sha256)
    );
    if let Some(sealed) = sealed {
        eprintln!("image: {}", sealed.overhead());
        report += &sealed.manifest_lines();
    }
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
