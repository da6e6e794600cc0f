//! `image seal` and `image create --verity`: a dm-verity hash tree over the whole LUKS2 image (header
//! included), appended at its end ([`crate::verity::tree`]), and the manifest lines that pin it.
//!
//! The verified data is the image as it was, padded with zeros to a multiple of 4096 bytes; the superblock
//! goes right after it (`verity_hash_offset`), then the tree. Nothing else is added: the manifest pins the
//! offset, so the file needs no trailer. The tree is built in an unlinked scratch file beside the image
//! (about 0.8 % of its size) and appended at the end, superblock last, so that a seal interrupted while
//! hashing (Ctrl-C) leaves the image as it was.

use crate::luks2::{self, Header, SegmentSize};
use crate::verity::tree::{self, Hash};
use crate::verity::{Superblock, BLOCK};
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Enough of the image to parse any LUKS2 header (two copies of the largest).
const PARSE_BYTES: u64 = 8 << 20;
/// Report progress for images at least this large.
const PROGRESS_FROM: u64 = 64 << 20;
const B: u64 = BLOCK as u64;

/// Sealing an image failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Opening or reading the image failed.
    #[error("{}", path.display())]
    Io {
        /// The image.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The image has no LUKS2 header we read.
    #[error("{}: not a LUKS2 image; fix: seal an image made by `encfs-init image create`, generatefs.sh or `cryptsetup luksFormat`", path.display())]
    NotLuks2 {
        /// The image.
        path: PathBuf,
        /// Why the header was refused.
        #[source]
        source: luks2::Error,
    },
    /// The LUKS2 data segment does not lie on the file.
    #[error("{}: the LUKS2 data segment does not fit the file", path.display())]
    Segment {
        /// The image.
        path: PathBuf,
        /// Why.
        #[source]
        source: luks2::Error,
    },
    /// Bytes follow a fixed-size data segment: the file is more than the LUKS2 device.
    #[error("{}: {extra} bytes follow the LUKS2 data segment, so the file is not just the LUKS2 device; fix: seal the image as cryptsetup or `image create` made it", path.display())]
    Trailing {
        /// The image.
        path: PathBuf,
        /// Bytes past the segment (rounded up to 4096).
        extra: u64,
    },
    /// The image already ends with a dm-verity tree.
    #[error("{} is already sealed: it ends with a dm-verity hash tree whose superblock is at byte {hash_offset}{}; fix: pin verity_hash_offset = {hash_offset} (and its root hash), or `truncate -s {hash_offset} {}` to remove the tree and seal again", path.display(), root.as_ref().map(|r| format!(", root hash {r}")).unwrap_or_default(), path.display())]
    AlreadySealed {
        /// The image.
        path: PathBuf,
        /// Where its superblock is.
        hash_offset: u64,
        /// Its root hash (from its tree, unverified), when the superblock is one we read.
        root: Option<String>,
    },
    /// No random bytes for the salt and uuid.
    #[error("getrandom")]
    Random(#[source] getrandom::Error),
    /// Writing the tree failed (the image is cut back to its size before).
    #[error("{}: writing the dm-verity hash tree", path.display())]
    Tree {
        /// The image.
        path: PathBuf,
        /// The cause.
        #[source]
        source: tree::Error,
    },
}

/// A sealed image: what the manifest pins and what the tree cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// Byte offset of the superblock: the end of the verified data.
    pub hash_offset: u64,
    /// The root hash.
    pub root: Hash,
    /// The superblock (salt, uuid, data blocks).
    pub superblock: Superblock,
    /// Bytes added after the data: the superblock's block and the tree.
    pub tree_bytes: u64,
}

impl Sealed {
    /// The ready-to-paste `[[filesystem]]` lines.
    pub fn manifest_lines(&self) -> String {
        format!(
            "verity_root_hash = \"{}\"\nverity_hash_offset = {}\n",
            crate::hex::encode(&self.root),
            self.hash_offset
        )
    }

    /// One line on what the tree cost.
    pub fn overhead(&self) -> String {
        format!(
            "verity: {} data blocks, hash tree + superblock {} bytes ({:.2} % of the data), salt {}, uuid {}",
            self.superblock.data_blocks,
            self.tree_bytes,
            self.tree_bytes as f64 * 100.0 / self.hash_offset as f64,
            crate::hex::encode(&self.superblock.salt),
            crate::uuid::text(&self.superblock.uuid)
        )
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Seal `path` (see the module docs), after checking that it is a LUKS2 image not sealed yet and that the
/// file is its LUKS2 device.
pub fn seal(path: &Path) -> Result<Sealed, Error> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io(path))?;
    let size = file.metadata().map_err(io(path))?.len();
    let mut head = Vec::new();
    (&file)
        .take(PARSE_BYTES)
        .read_to_end(&mut head)
        .map_err(io(path))?;
    let header = Header::parse(&head).map_err(|source| Error::NotLuks2 {
        path: path.to_path_buf(),
        source,
    })?;
    let tree_err = |source| Error::Tree {
        path: path.to_path_buf(),
        source,
    };
    if let Some((hash_offset, raw)) = tree::find_superblock(&file, size).map_err(tree_err)? {
        let root = match Superblock::parse(&raw) {
            Ok(sb) => Some(crate::hex::encode(
                &tree::root_hash(&file, &sb, hash_offset).map_err(tree_err)?,
            )),
            Err(_) => None,
        };
        return Err(Error::AlreadySealed {
            path: path.to_path_buf(),
            hash_offset,
            root,
        });
    }
    let padded = size.div_ceil(B) * B;
    header.data_range(padded).map_err(|source| Error::Segment {
        path: path.to_path_buf(),
        source,
    })?;
    if let SegmentSize::Fixed(n) = header.segment.size {
        let end = (header.segment.offset + n).div_ceil(B) * B;
        if padded > end {
            return Err(Error::Trailing {
                path: path.to_path_buf(),
                extra: padded - end,
            });
        }
    }
    seal_file(&file, path)
}

/// An empty file beside `path` for building the tree, already unlinked (gone when closed, even when the
/// process is killed).
fn scratch(path: &Path) -> Result<File, Error> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let at = dir.join(format!(".{name}.verity-{}", std::process::id()));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&at)
        .map_err(io(&at))?;
    std::fs::remove_file(&at).map_err(io(&at))?;
    Ok(file)
}

/// Seal an open image as it is (no checks): what `image create --verity` calls on the image it wrote. On
/// failure the file is cut back to its size before.
pub fn seal_file(file: &File, path: &Path) -> Result<Sealed, Error> {
    let size = file.metadata().map_err(io(path))?.len();
    let hash_offset = size.div_ceil(B) * B;
    let mut salt = vec![0u8; 32];
    let mut uuid = [0u8; 16];
    getrandom::fill(&mut salt).map_err(Error::Random)?;
    getrandom::fill(&mut uuid).map_err(Error::Random)?;
    let superblock = Superblock {
        uuid: crate::uuid::v4_bytes(uuid),
        algorithm: "sha256".into(),
        data_block_size: BLOCK,
        hash_block_size: BLOCK,
        data_blocks: hash_offset / B,
        salt,
    };
    let data_blocks = superblock.data_blocks;
    let mut next_report = data_blocks / 10;
    let mut progress = |done: u64| {
        if hash_offset >= PROGRESS_FROM && done >= next_report {
            eprintln!(
                "image: hashed {} / {} MiB ({}%)",
                (done * B) >> 20,
                hash_offset >> 20,
                done * 100 / data_blocks
            );
            next_report += data_blocks / 10;
        }
    };
    let scratch = scratch(path)?;
    let sealed = tree::seal(file, &scratch, &superblock, hash_offset, &mut progress)
        .map_err(|source| Error::Tree {
            path: path.to_path_buf(),
            source,
        })
        .and_then(|root| {
            file.sync_all().map_err(io(path))?;
            Ok(root)
        });
    let root = match sealed {
        Ok(root) => root,
        Err(e) => {
            let _ = file.set_len(size);
            return Err(e);
        }
    };
    let end = file.metadata().map_err(io(path))?.len();
    Ok(Sealed {
        hash_offset,
        root,
        superblock,
        tree_bytes: end - hash_offset,
    })
}
