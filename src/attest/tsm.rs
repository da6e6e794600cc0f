//! configfs-tsm report provider (Linux >= 6.7, `Documentation/ABI/testing/configfs-tsm`).
//!
//! Contract: `mkdir <base>/<entry>` makes a report request; its attributes are `inblob` (write the 64-byte
//! report_data), `privlevel` (write the VMPL, `0`), `outblob` (read: the raw 1184-byte SNP report),
//! `auxblob` (read: the GUID-indexed certificate table of the SNP extended report, possibly empty),
//! `provider` (read: `sev_guest`) and `generation` (read: bumped on every write, used to detect a
//! concurrent writer). `rmdir <base>/<entry>` releases it. File-system access goes through [`ConfigFs`]
//! so tests can emulate the kernel in a directory of their own.
#![forbid(unsafe_code)]

use super::{Attester, Error, Evidence};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// The kernel's report directory.
pub const DEFAULT_BASE: &str = "/sys/kernel/config/tsm/report";

/// The four file operations configfs-tsm needs.
pub trait ConfigFs: Send + Sync {
    /// mkdir.
    fn mkdir(&self, p: &Path) -> std::io::Result<()>;
    /// Write a whole attribute.
    fn write(&self, p: &Path, data: &[u8]) -> std::io::Result<()>;
    /// Read a whole attribute.
    fn read(&self, p: &Path) -> std::io::Result<Vec<u8>>;
    /// rmdir.
    fn rmdir(&self, p: &Path) -> std::io::Result<()>;
}

/// The real file system.
#[derive(Debug)]
pub struct RealFs;

impl ConfigFs for RealFs {
    fn mkdir(&self, p: &Path) -> std::io::Result<()> {
        std::fs::create_dir(p)
    }
    fn write(&self, p: &Path, data: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        // configfs binary attributes take the whole value in one write.
        let mut f = std::fs::OpenOptions::new().write(true).open(p)?;
        f.write_all(data)
    }
    fn read(&self, p: &Path) -> std::io::Result<Vec<u8>> {
        std::fs::read(p)
    }
    fn rmdir(&self, p: &Path) -> std::io::Result<()> {
        std::fs::remove_dir(p)
    }
}

/// The base directory is a configfs-tsm report directory (or a test's emulation of one).
pub fn looks_usable(base: &Path) -> bool {
    base.is_dir()
}

/// A configfs-tsm provider.
pub struct TsmAttester {
    base: PathBuf,
    fs: Box<dyn ConfigFs>,
}

impl std::fmt::Debug for TsmAttester {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TsmAttester({})", self.base.display())
    }
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// Removes the entry whatever happens.
struct Entry<'a> {
    fs: &'a dyn ConfigFs,
    dir: PathBuf,
}

impl Drop for Entry<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.fs.rmdir(&self.dir) {
            log::warn!("configfs-tsm: rmdir {}: {e}", self.dir.display());
        }
    }
}

impl TsmAttester {
    /// A provider over `base` with the file operations `fs`.
    pub fn new(base: PathBuf, fs: Box<dyn ConfigFs>) -> Self {
        TsmAttester { base, fs }
    }
}

fn io<'a>(step: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io {
        step,
        path: path.to_path_buf(),
        source,
    }
}

fn generation(fs: &dyn ConfigFs, dir: &Path) -> Option<String> {
    fs.read(&dir.join("generation"))
        .ok()
        .map(|g| String::from_utf8_lossy(&g).trim().to_string())
}

impl Attester for TsmAttester {
    fn name(&self) -> &'static str {
        "configfs-tsm"
    }

    fn report(&self, report_data: &[u8; 64]) -> Result<Evidence, Error> {
        let name = format!(
            "encfs-init-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let dir = self.base.join(name);
        self.fs
            .mkdir(&dir)
            .map_err(io("create the report entry", &dir))?;
        let entry = Entry {
            fs: self.fs.as_ref(),
            dir,
        };
        let dir = &entry.dir;
        if let Ok(p) = self.fs.read(&dir.join("provider")) {
            let p = String::from_utf8_lossy(&p).trim().to_string();
            if p != "sev_guest" {
                return Err(Error::Firmware {
                    provider: "configfs-tsm",
                    detail: format!("provider is {p:?}, not sev_guest"),
                });
            }
        }
        let inblob = dir.join("inblob");
        self.fs
            .write(&inblob, report_data)
            .map_err(io("write", &inblob))?;
        let privlevel = dir.join("privlevel");
        self.fs
            .write(&privlevel, b"0\n")
            .map_err(io("write", &privlevel))?;
        let gen_before = generation(self.fs.as_ref(), dir);
        let outblob = dir.join("outblob");
        let report = self.fs.read(&outblob).map_err(io("read", &outblob))?;
        let aux = self.fs.read(&dir.join("auxblob")).unwrap_or_default();
        if gen_before != generation(self.fs.as_ref(), dir) {
            return Err(Error::BadReport {
                provider: "configfs-tsm",
                detail: "another writer changed the request while it was read (generation changed)"
                    .into(),
            });
        }
        if report.len() != super::report::REPORT_LEN {
            return Err(Error::BadReport {
                provider: "configfs-tsm",
                detail: format!("outblob is {} bytes", report.len()),
            });
        }
        if report[0x50..0x90] != report_data[..] {
            return Err(Error::BadReport {
                provider: "configfs-tsm",
                detail: "report_data does not echo inblob".into(),
            });
        }
        let certs = parse_cert_table(&aux).map_err(|source| Error::CertTable {
            provider: "configfs-tsm",
            source,
        })?;
        Ok(Evidence {
            report,
            certs,
            provider: "configfs-tsm",
        })
    }
}

/// GUIDs of the SNP certificate table (GHCB spec, "SNP Extended Guest Request"), in their byte order.
const VCEK_GUID: &str = "63da758d-e664-4564-adc5-f4b93be8accd";
const VLEK_GUID: &str = "a8074bc2-a25a-483e-aae6-39c045a0b8a1";

fn guid_string(b: &[u8]) -> String {
    // Mixed-endian (Microsoft) GUID layout.
    format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{}",
        b[3],
        b[2],
        b[1],
        b[0],
        b[5],
        b[4],
        b[7],
        b[6],
        b[8],
        b[9],
        crate::hex::encode(&b[10..16])
    )
}

/// Why a certificate table does not parse (a leaf).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertTableError {
    /// No all-zero entry before the end.
    #[error("table ends without a terminating entry")]
    Unterminated,
    /// An entry's offset and length reach past the table.
    #[error("an entry points outside the table")]
    OutOfBounds,
}

/// Parse the certificate table: entries of (GUID 16, offset u32, length u32) until an all-zero entry;
/// offsets are from the table's start. Returns DER certificates, the VCEK/VLEK first.
pub fn parse_cert_table(t: &[u8]) -> Result<Vec<Vec<u8>>, CertTableError> {
    let mut out: Vec<(bool, Vec<u8>)> = Vec::new();
    let mut pos = 0;
    loop {
        let Some(e) = t.get(pos..pos + 24) else {
            if t.is_empty() {
                return Ok(Vec::new());
            }
            return Err(CertTableError::Unterminated);
        };
        if e.iter().all(|&b| b == 0) {
            break;
        }
        let off = u32::from_le_bytes([e[16], e[17], e[18], e[19]]) as usize;
        let len = u32::from_le_bytes([e[20], e[21], e[22], e[23]]) as usize;
        let cert = off
            .checked_add(len)
            .and_then(|end| t.get(off..end))
            .ok_or(CertTableError::OutOfBounds)?;
        let guid = guid_string(&e[..16]);
        out.push((guid == VCEK_GUID || guid == VLEK_GUID, cert.to_vec()));
        pos += 24;
    }
    out.sort_by_key(|(leaf, _)| !leaf);
    Ok(out.into_iter().map(|(_, c)| c).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cert_table() {
        let vcek_guid: [u8; 16] = [
            0x8d, 0x75, 0xda, 0x63, 0x64, 0xe6, 0x64, 0x45, 0xad, 0xc5, 0xf4, 0xb9, 0x3b, 0xe8,
            0xac, 0xcd,
        ];
        let mut t = Vec::new();
        t.extend_from_slice(&[0x11; 16]);
        t.extend_from_slice(&72u32.to_le_bytes());
        t.extend_from_slice(&3u32.to_le_bytes());
        t.extend_from_slice(&vcek_guid);
        t.extend_from_slice(&75u32.to_le_bytes());
        t.extend_from_slice(&2u32.to_le_bytes());
        t.extend_from_slice(&[0; 24]);
        t.extend_from_slice(b"ASKVC");
        let certs = parse_cert_table(&t).unwrap();
        assert_eq!(certs, vec![b"VC".to_vec(), b"ASK".to_vec()]);
        assert!(parse_cert_table(&[]).unwrap().is_empty());
        assert!(parse_cert_table(&t[..30]).is_err());
        // One empty entry (offset 0, length 0) and no terminator.
        let mut open = vec![0x11; 16];
        open.extend_from_slice(&[0; 8]);
        assert_eq!(parse_cert_table(&open), Err(CertTableError::Unterminated));
        let mut bad = t.clone();
        bad[16] = 200;
        assert_eq!(parse_cert_table(&bad), Err(CertTableError::OutOfBounds));
    }
}
