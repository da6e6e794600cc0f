//! A local file as a block source (`file:///path`, tests). Positioned I/O (`pread`/`pwrite`), so
//! concurrent requests need no lock; writes never grow the file; `flush` is `fdatasync`.
#![forbid(unsafe_code)]

use super::{check_range, BlockSource, Error, Result};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// A local file.
#[derive(Debug)]
pub struct FileSource {
    file: File,
    path: PathBuf,
    size: u64,
    writable: bool,
}

impl FileSource {
    /// Open `path`, read-write when `writable`.
    pub fn open(path: &Path, writable: bool) -> Result<Self> {
        let io = |op, e: std::io::Error| Error::Io {
            op,
            path: path.display().to_string(),
            kind: e.kind(),
            detail: e.to_string(),
        };
        let file = OpenOptions::new()
            .read(true)
            .write(writable)
            .open(path)
            .map_err(|e| io("open", e))?;
        let size = file.metadata().map_err(|e| io("stat", e))?.len();
        Ok(Self {
            file,
            path: path.to_path_buf(),
            size,
            writable,
        })
    }

    fn io(&self, op: &'static str, e: &std::io::Error) -> Error {
        Error::Io {
            op,
            path: self.path.display().to_string(),
            kind: e.kind(),
            detail: e.to_string(),
        }
    }
}

impl BlockSource for FileSource {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_only(&self) -> bool {
        !self.writable
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        check_range(offset, buf.len() as u64, self.size)?;
        self.file
            .read_exact_at(buf, offset)
            .map_err(|e| self.io("read", &e))
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> Result<()> {
        if !self.writable {
            return Err(Error::ReadOnly);
        }
        check_range(offset, data.len() as u64, self.size)?;
        self.file
            .write_all_at(data, offset)
            .map_err(|e| self.io("write", &e))
    }

    fn flush(&self) -> Result<()> {
        if !self.writable {
            return Ok(());
        }
        self.file.sync_data().map_err(|e| self.io("fsync", &e))
    }
}
