//! Health reads while supervising: every `health_interval`, one 4 KiB block at a random offset of each
//! filesystem's dm-crypt device is read with `O_DIRECT` (no page cache), so the read goes through
//! dm-crypt → NBD → our server → the block cache, and to the blob service whenever the block is not cached
//! (a random block of a large blob rarely is). The result is written into the readiness file, whose
//! `encfs-init probe` then fails while a filesystem's latest read failed; changes are logged.
//!
//! The reads run in a thread of their own (a stalled device must not stall signal handling and reaping);
//! [`Monitor::stop`] ends it before teardown.
#![forbid(unsafe_code)]

use crate::ready::{FsState, Health};
use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const BLOCK: usize = 4096;

/// Why a health read failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The device could not be opened.
    #[error("open {}", path.display())]
    Open {
        /// The device.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Its size could not be read.
    #[error("size of {}", path.display())]
    Size {
        /// The device.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// It has no whole block.
    #[error("{} is empty", path.display())]
    Empty {
        /// The device.
        path: PathBuf,
    },
    /// No aligned window in the buffer (cannot happen).
    #[error("no aligned buffer")]
    NoAlignedBuffer,
    /// The read failed.
    #[error("read 4 KiB at {offset} of {}", path.display())]
    Read {
        /// Where.
        offset: u64,
        /// The device.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// The running health thread.
#[derive(Debug)]
pub struct Monitor {
    stop: Sender<()>,
    thread: JoinHandle<()>,
}

impl Monitor {
    /// Start reading every `interval`; results go into `states` and the readiness file at `ready`.
    pub fn start(
        interval: Duration,
        ready: PathBuf,
        mut states: Vec<FsState>,
    ) -> std::io::Result<Monitor> {
        let (stop, stopped) = channel::<()>();
        let thread = std::thread::Builder::new()
            .name("health".into())
            .spawn(move || loop {
                match stopped.recv_timeout(interval) {
                    Err(RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
                for st in &mut states {
                    update(st, read_block(Path::new(&st.device)));
                }
                // Rewritten on every round: `checked_unix` says how fresh it is.
                if let Err(e) = crate::ready::mark_ready_with(&ready, &states) {
                    log::warn!("health: rewrite {}: {e}", ready.display());
                }
            })?;
        Ok(Monitor { stop, thread })
    }

    /// End the thread (after a read in progress, if any).
    pub fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

/// Fold one read into the state; logs when health changes. Returns whether it changed.
fn update(st: &mut FsState, r: Result<Duration, Error>) -> bool {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (checks, failures, was_ok) = st
        .health
        .as_ref()
        .map_or((0, 0, true), |h| (h.checks, h.failures, h.ok));
    let next = match r {
        Ok(took) => Health {
            ok: true,
            checked_unix: now,
            latency_ms: u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
            error: None,
            checks: checks + 1,
            failures,
        },
        Err(e) => Health {
            ok: false,
            checked_unix: now,
            latency_ms: 0,
            error: Some(crate::errors::chain(&e)),
            checks: checks + 1,
            failures: failures + 1,
        },
    };
    match (was_ok, next.ok) {
        (true, false) => log::error!(
            "filesystem[{}]: health read failed: {}; `encfs-init probe` fails until a read succeeds",
            st.index,
            next.error.as_deref().unwrap_or_default()
        ),
        (false, true) => log::info!("filesystem[{}]: health read succeeds again", st.index),
        _ if checks == 0 => log::info!(
            "filesystem[{}]: first health read ok ({} ms through dm-crypt, NBD and the blob)",
            st.index,
            next.latency_ms
        ),
        _ => {}
    }
    let changed = was_ok != next.ok;
    st.health = Some(next);
    changed
}

/// Read one random 4 KiB block of `dev` with O_DIRECT; the time it took.
pub fn read_block(dev: &Path) -> Result<Duration, Error> {
    let t = Instant::now();
    let path = || dev.to_path_buf();
    let mut f = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_DIRECT)
        .open(dev)
        .map_err(|source| Error::Open {
            path: path(),
            source,
        })?;
    let size = f.seek(SeekFrom::End(0)).map_err(|source| Error::Size {
        path: path(),
        source,
    })?;
    let blocks = size / BLOCK as u64;
    if blocks == 0 {
        return Err(Error::Empty { path: path() });
    }
    let offset = (getrandom::u64().unwrap_or(0) % blocks) * BLOCK as u64;
    // O_DIRECT wants a buffer aligned to the logical block size: take an aligned window of a larger one.
    let mut raw = vec![0u8; 2 * BLOCK];
    let skew = raw.as_ptr().align_offset(BLOCK);
    let buf = raw
        .get_mut(skew..skew + BLOCK)
        .ok_or(Error::NoAlignedBuffer)?;
    f.read_exact_at(buf, offset).map_err(|source| Error::Read {
        offset,
        path: path(),
        source,
    })?;
    Ok(t.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> FsState {
        FsState {
            index: 0,
            mount_point: "/mnt/a".into(),
            device: "/dev/dm-0".into(),
            block_device: "/dev/nbd0".into(),
            transport: "nbd".into(),
            read_only: true,
            etag: None,
            lease: None,
            timings_ms: vec![],
            health: None,
        }
    }

    #[test]
    fn health_counts_and_flips() {
        let mut st = state();
        assert!(!update(&mut st, Ok(Duration::from_millis(7))));
        let h = st.health.clone().unwrap();
        assert!(h.ok && h.checks == 1 && h.failures == 0 && h.latency_ms == 7);
        let eio = || Error::Read {
            offset: 0,
            path: "/dev/dm-0".into(),
            source: std::io::Error::other("EIO"),
        };
        assert!(update(&mut st, Err(eio())));
        let h = st.health.clone().unwrap();
        assert!(!h.ok && h.checks == 2 && h.failures == 1);
        assert_eq!(
            h.error.as_deref(),
            Some("read 4 KiB at 0 of /dev/dm-0: EIO")
        );
        assert!(!update(&mut st, Err(eio())));
        assert!(update(&mut st, Ok(Duration::ZERO)));
        let h = st.health.unwrap();
        assert!(h.ok && h.checks == 4 && h.failures == 2 && h.error.is_none());
    }

    #[test]
    fn a_read_of_a_missing_device_names_it() {
        let e = crate::errors::chain(&read_block(Path::new("/nonexistent/dm-9")).unwrap_err());
        assert!(e.contains("/nonexistent/dm-9"), "{e}");
    }
}
