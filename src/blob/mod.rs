//! Block sources: what the NBD server serves. A [`BlockSource`] is a fixed-size byte array with positioned
//! reads and writes, implemented by a local file ([`FileSource`]), an Azure blob over HTTP ([`AzureBlob`])
//! and the caching layer in front of either ([`CachedSource`]).
//!
//! Contract of every implementation:
//! - `size()` never changes while the source is open;
//! - `read_at` fills the whole buffer or fails; a range past the end is [`Error::OutOfRange`];
//! - `write_at` on a read-only source is [`Error::ReadOnly`]; writes never grow the source;
//! - `flush` returns only once every write acknowledged before it is durable at the backend;
//! - errors are values, never panics: a panic inside a backend is caught where threads are run
//!   ([`cache`]) and becomes [`Error::Panic`].
#![forbid(unsafe_code)]

pub mod azure;
pub mod cache;
pub mod fatal;
pub mod file;
pub mod token;

pub use azure::{Auth, AzureBlob, BlobType, LeaseConfig, LeaseState, LeaseWatch};
pub use cache::{CacheConfig, CacheStats, CachedSource};
pub use fatal::FatalWatch;
pub use file::FileSource;
pub use token::{BearerSource, StaticToken};

use std::fmt;
use std::sync::Arc;

/// Result alias for block sources.
pub type Result<T> = std::result::Result<T, Error>;

/// A block source failure.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The range is not inside the source.
    OutOfRange {
        /// Start.
        offset: u64,
        /// Length.
        len: u64,
        /// Source size.
        size: u64,
    },
    /// A write to a read-only source.
    ReadOnly,
    /// A write that the backend cannot take at this alignment (page blobs: 512 bytes).
    Unaligned {
        /// Start.
        offset: u64,
        /// Length.
        len: u64,
        /// Required alignment.
        align: u64,
    },
    /// The HTTP layer failed (after its retries).
    Http(crate::http::Error),
    /// The blob changed since it was opened (its ETag no longer matches): refusing to mix data.
    Changed {
        /// The blob URL (no query).
        url: String,
        /// The ETag pinned at open.
        etag: String,
    },
    /// The blob is not there (HTTP 404 at open): wrong account, container or blob name, or a private
    /// container read anonymously (Azure answers 404, not 403, to hide it).
    NotFound {
        /// The blob URL (no query, so never a SAS).
        url: String,
        /// Azure's `x-ms-error-code` (`BlobNotFound`, `ContainerNotFound`, `ResourceNotFound`), if sent.
        code: Option<String>,
    },
    /// The blob service refused the credentials at open (HTTP 401 or 403).
    Denied {
        /// The blob URL (no query, so never a SAS).
        url: String,
        /// 401 or 403.
        status: u16,
        /// Azure's `x-ms-error-code` (`AuthenticationFailed`, `AuthorizationPermissionMismatch`, ...).
        code: Option<String>,
        /// How we authenticated: `SAS`, `bearer token` or `anonymous`.
        how: &'static str,
    },
    /// Read-write open refused: another writer holds the blob's lease (HTTP 409 at Lease Blob acquire).
    Leased {
        /// The blob URL (no query).
        url: String,
        /// Azure's `x-ms-error-code` (`LeaseAlreadyPresent`, `LeaseIsBreakingAndCannotBeAcquired`).
        code: Option<String>,
    },
    /// Our lease on a read-write blob is gone (broken, taken, or expired unrenewed): writes are refused.
    LeaseLost {
        /// The blob URL (no query).
        url: String,
        /// How it was found out.
        why: String,
    },
    /// The source cannot be used this way (for example read-write on a block blob).
    Unsupported(String),
    /// No bearer token for a private blob: the identity endpoint's failure, with its causes.
    Token(String),
    /// The backend answered something the protocol does not allow.
    Protocol(String),
    /// A local I/O error.
    Io {
        /// What was being done (`open`, `read`, ...).
        op: &'static str,
        /// The file.
        path: String,
        /// The error kind.
        kind: std::io::ErrorKind,
        /// Its message.
        detail: String,
    },
    /// A worker panicked while serving this request (caught; the process goes on).
    Panic(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OutOfRange { offset, len, size } => write!(
                f,
                "range {offset}+{len} is outside the source ({size} bytes)"
            ),
            Self::ReadOnly => write!(f, "the source is read-only"),
            Self::Unaligned { offset, len, align } => {
                write!(f, "write {offset}+{len} is not {align}-byte aligned")
            }
            Self::Http(e) => write!(f, "{e}"),
            Self::Changed { url, etag } => write!(
                f,
                "blob {url} was replaced or modified by someone else since it was opened (ETag {etag} no \
                 longer matches); refusing to serve mixed data: remount to use the new content"
            ),
            Self::NotFound { url, code } => {
                write!(f, "{url}: no such blob (HTTP 404")?;
                if let Some(c) = code {
                    write!(f, " {c}")?;
                }
                write!(
                    f,
                    "); fix: check the storage account, container and blob names in the filesystem's url \
                     (they are case-sensitive) and that the blob exists there; with access = \"anonymous\" \
                     the container must also allow public read access (Azure answers 404 otherwise)"
                )
            }
            Self::Denied {
                url,
                status,
                code,
                how,
            } => {
                write!(f, "{url}: the blob service refused our {how} (HTTP {status}")?;
                if let Some(c) = code {
                    write!(f, " {c}")?;
                }
                let fix = match *how {
                    "SAS" => "check the SAS: its expiry (se=) and start (st=) times, its permissions (sp= needs r, and w for read_write), that it was made for this blob or its container, and that the account key or user delegation key that signed it is still valid",
                    // Azure says which half failed: the token itself (authentication) or the identity's
                    // rights (authorization).
                    "bearer token" if code.as_deref().is_some_and(|c| {
                        matches!(
                            c,
                            "AuthenticationFailed"
                                | "InvalidAuthenticationInfo"
                                | "NoAuthenticationInformation"
                        )
                    }) => "the token itself was not accepted: it must be for storage (https://storage.azure.com/ or the account's own origin, which encfs-init asks for), issued by the storage account's tenant, and current (its nbf/exp against this machine's clock); check the identity's client_id or the workload identity's tenant and audience",
                    "bearer token" => "give the identity a data-plane role on the container: Storage Blob Data Reader (Storage Blob Data Contributor for read_write); management roles such as Owner do not grant blob data access",
                    _ => "the container does not allow anonymous reads: use a SAS (access = \"sas\") or an identity (access = \"private\")",
                };
                write!(f, "); fix: {fix}")
            }
            Self::Leased { url, code } => {
                write!(f, "{url} is leased by another writer (HTTP 409")?;
                if let Some(c) = code {
                    write!(f, " {c}")?;
                }
                write!(
                    f,
                    "): another encfs-init (or another tool) has it open read-write, and a second writer \
                     would corrupt it; fix: stop the other writer; if it is gone, its lease expires by \
                     itself (encfs-init's within 60 s of its last renewal), or break it now: {}",
                    azure::lease::break_hint(url)
                )
            }
            Self::LeaseLost { url, why } => write!(
                f,
                "{url}: our write lease on the blob is lost ({why}): another writer may have written \
                 to it, so every write is refused; fix: make sure only one encfs-init mounts this blob \
                 read-write, then restart this one (it takes a new lease at open); check the filesystem \
                 (fsck) if two writers may have written"
            ),
            Self::Unsupported(s) => write!(f, "{s}"),
            Self::Token(s) => write!(f, "blob token: {s}"),
            Self::Protocol(s) => write!(f, "unexpected backend response: {s}"),
            Self::Io {
                op, path, detail, ..
            } => write!(f, "{op} {path}: {detail}"),
            Self::Panic(s) => write!(f, "internal error (worker panicked): {s}"),
        }
    }
}

impl std::error::Error for Error {
    /// `Http` is transparent: its text is the HTTP error's own, so its source is the HTTP error's source
    /// (returning the HTTP error itself would print it twice).
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Http(e) => e.source(),
            _ => None,
        }
    }
}

impl From<crate::http::Error> for Error {
    fn from(e: crate::http::Error) -> Self {
        Self::Http(e)
    }
}

/// A fixed-size, randomly accessible byte store.
pub trait BlockSource: Send + Sync {
    /// Size in bytes (constant while open).
    fn size(&self) -> u64;

    /// True when writes are refused.
    fn read_only(&self) -> bool;

    /// Fill `buf` from `offset`.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()>;

    /// Write `data` at `offset` (not necessarily durable before [`flush`](Self::flush)).
    fn write_at(&self, offset: u64, data: &[u8]) -> Result<()>;

    /// Read `len` bytes at `offset` and hand them to `sink` once, as consecutive slices in order, only
    /// when the whole range was read (on `Err`, `sink` was not called). A cache lends its blocks this way
    /// instead of copying them; the default reads into `scratch` (grown as needed, kept for reuse).
    fn read_lend(
        &self,
        offset: u64,
        len: usize,
        scratch: &mut Vec<u8>,
        sink: &mut dyn FnMut(&[&[u8]]),
    ) -> Result<()> {
        if scratch.len() < len {
            scratch.resize(len, 0);
        }
        self.read_at(offset, &mut scratch[..len])?;
        sink(&[&scratch[..len]]);
        Ok(())
    }

    /// Make every acknowledged write durable.
    fn flush(&self) -> Result<()>;

    /// Write `data` and make it durable before returning (NBD FUA).
    fn write_at_fua(&self, offset: u64, data: &[u8]) -> Result<()> {
        self.write_at(offset, data)?;
        self.flush()
    }

    /// Writes must start and end on multiples of this (the last one may end at `size()`).
    fn write_alignment(&self) -> u64 {
        1
    }
}

/// `Arc<T>` and `Box<T>` are block sources when `T` is: every method forwards, including the ones with
/// default bodies (so that `T`'s overrides, such as a cache's lending `read_lend`, are kept).
macro_rules! forward_block_source {
    ($($wrapper:ident),*) => {$(
        impl<T: BlockSource + ?Sized> BlockSource for $wrapper<T> {
            fn size(&self) -> u64 {
                (**self).size()
            }
            fn read_only(&self) -> bool {
                (**self).read_only()
            }
            fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
                (**self).read_at(offset, buf)
            }
            fn write_at(&self, offset: u64, data: &[u8]) -> Result<()> {
                (**self).write_at(offset, data)
            }
            fn read_lend(
                &self,
                offset: u64,
                len: usize,
                scratch: &mut Vec<u8>,
                sink: &mut dyn FnMut(&[&[u8]]),
            ) -> Result<()> {
                (**self).read_lend(offset, len, scratch, sink)
            }
            fn flush(&self) -> Result<()> {
                (**self).flush()
            }
            fn write_at_fua(&self, offset: u64, data: &[u8]) -> Result<()> {
                (**self).write_at_fua(offset, data)
            }
            fn write_alignment(&self) -> u64 {
                (**self).write_alignment()
            }
        }
    )*};
}

forward_block_source!(Arc, Box);

/// Check that `offset..offset+len` lies inside `size`.
pub fn check_range(offset: u64, len: u64, size: u64) -> Result<()> {
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(Error::OutOfRange { offset, len, size }),
    }
}

/// Turn a caught panic payload into an [`Error::Panic`].
pub fn panic_error(payload: &(dyn std::any::Any + Send)) -> Error {
    Error::Panic(crate::errors::panic_message(payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denied(code: &str, how: &'static str) -> String {
        Error::Denied {
            url: "https://a.blob.core.windows.net/c/b".into(),
            status: 403,
            code: Some(code.into()),
            how,
        }
        .to_string()
    }

    #[test]
    fn a_refused_bearer_token_gets_the_fix_for_the_half_that_failed() {
        // Authentication: the token itself.
        for code in ["AuthenticationFailed", "InvalidAuthenticationInfo"] {
            let shown = denied(code, "bearer token");
            assert!(shown.contains("not accepted"), "{shown}");
            assert!(!shown.contains("Storage Blob Data Reader"), "{shown}");
        }
        // Authorization: the identity's role.
        let shown = denied("AuthorizationPermissionMismatch", "bearer token");
        assert!(shown.contains("Storage Blob Data Reader"), "{shown}");
        assert!(!shown.contains("not accepted"), "{shown}");
        // A SAS is a SAS whatever the code.
        assert!(denied("AuthenticationFailed", "SAS").contains("se="));
    }
}
