//! Health reads while supervising: every `health_interval`, one 4 KiB block at a random offset of each
//! filesystem's dm-crypt device is read with `O_DIRECT` (no page cache), so the read goes through
//! dm-crypt → NBD → our server → the block cache, and to the blob service whenever the block is not cached
//! (a random block of a large blob rarely is). The result is written into the readiness file, whose
//! `encfs-init probe` then fails while a filesystem's latest read failed; changes are logged.
//!
//! A filesystem whose image is pinned by `verity_root_hash` is also checked for corruption on every round:
//! dm-verity's status line (`dmsetup status`) says `V` while every block read so far matched the tree and
//! `C` once one did not. That block reads as EIO for the application; the others are still served (the chosen
//! policy: keep serving the good blocks). The first `C` is recorded in the readiness file (so `encfs-init
//! probe` fails from then on) and logged once, naming the filesystem and the first bad block when the
//! kernel's message (`/dev/kmsg`) gives it.
//!
//! After each read the filesystem is judged on every sign, and every second (from a thread of its own, so
//! also while a read is stalled) on the signs that need no read ([`super::revive::Fleet::check`]): one whose
//! reads keep failing
//! for `dead_after`, whose serving side gave up, whose blob was replaced, whose lease was lost or whose token
//! can no longer be refreshed is dead, and is re-opened (or marked down) off this thread.
//!
//! The reads run in threads of their own, one per filesystem (a stalled device must not stall signal
//! handling and reaping, nor the other filesystems' reads, nor the judging); [`Monitor::stop`] ends them
//! before teardown.
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

/// How often a filesystem is judged between its health reads.
pub const JUDGE_EVERY: Duration = Duration::from_secs(1);

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

/// The running health threads: one per filesystem, so a read stalled on one filesystem's blob service (up to
/// its `io_deadline`) does not delay the reads, and so the death verdicts, of the others; and one that judges
/// every filesystem every [`JUDGE_EVERY`], so a death that needs no read is acted on even while a read of
/// that filesystem is stalled.
#[derive(Debug)]
pub struct Monitor {
    threads: Vec<(Sender<()>, JoinHandle<()>)>,
}

impl Monitor {
    /// Start reading every `interval` each ready filesystem of `fleet`, each in its own thread; results go
    /// into its state and the readiness file, and the filesystem is judged after its read (every sign). In
    /// between, every [`JUDGE_EVERY`], each filesystem is judged on the signs that need no read (a lost lease,
    /// a replaced blob, a token past refreshing, a serving side that gave up), so such a death is acted on
    /// within a second, not at the next read, which may be `health_interval` away.
    pub fn start(
        interval: Duration,
        fleet: std::sync::Arc<super::revive::Fleet>,
    ) -> std::io::Result<Monitor> {
        let n = fleet.len();
        let judged = fleet.clone();
        Self::each(
            interval,
            JUDGE_EVERY,
            n,
            move |k| {
                if let Some(dev) = fleet.ready_device(k) {
                    let r = read_block(&dev);
                    fleet.record(k, &dev, |st| {
                        let ok = r.is_ok();
                        update(st, r);
                        check_verity(st);
                        ok
                    });
                }
                fleet.check(k, true);
                // Rewritten after every read: `checked_unix` says how fresh it is.
                fleet.write();
            },
            move || (0..n).for_each(|k| judged.check(k, false)),
        )
    }

    /// `read(k)` in thread `health-<k>` for each `k` below `n`, `interval` after the end of the previous
    /// one; `judge()` in thread `health-judge` every `judge_every`.
    fn each(
        interval: Duration,
        judge_every: Duration,
        n: usize,
        read: impl Fn(usize) + Send + Sync + 'static,
        judge: impl Fn() + Send + 'static,
    ) -> std::io::Result<Monitor> {
        let read = std::sync::Arc::new(read);
        let mut m = Monitor {
            threads: Vec::with_capacity(n + 1),
        };
        let mut spawn = |name: String, every: Duration, mut f: Box<dyn FnMut() + Send>| {
            let (stop, stopped) = channel::<()>();
            let spawned = std::thread::Builder::new().name(name).spawn(move || loop {
                match stopped.recv_timeout(every) {
                    Err(RecvTimeoutError::Timeout) => f(),
                    _ => return,
                }
            });
            spawned.map(|thread| m.threads.push((stop, thread)))
        };
        let mut started = spawn("health-judge".into(), judge_every, Box::new(judge));
        for k in 0..n {
            if started.is_err() {
                break;
            }
            let read = read.clone();
            started = spawn(format!("health-{k}"), interval, Box::new(move || read(k)));
        }
        match started {
            Ok(()) => Ok(m),
            Err(e) => {
                m.stop();
                Err(e)
            }
        }
    }

    /// End the threads (each after its read in progress, if any).
    pub fn stop(self) {
        for (stop, _) in &self.threads {
            let _ = stop.send(());
        }
        for (_, thread) in self.threads {
            let _ = thread.join();
        }
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

/// Look at a pinned filesystem's dm-verity status; on the first corruption record it in `st` and log it.
/// Returns whether it changed. dm-verity's `C` never goes back to `V`, so neither does this.
fn check_verity(st: &mut FsState) -> bool {
    let Some(v) = st.verity.as_mut() else {
        return false;
    };
    if v.corrupted {
        return false;
    }
    match crate::dm::verity::status(&v.name) {
        Ok(crate::dm::verity::Status::Verified) => return false,
        Ok(crate::dm::verity::Status::Corrupted) => {}
        Err(e) => {
            log::debug!(
                "filesystem[{}]: dm-verity status: {}",
                st.index,
                crate::errors::chain(&e)
            );
            return false;
        }
    }
    v.corrupted = true;
    v.first_bad_block = first_bad_block(Path::new(&st.block_device));
    let which = v.first_bad_block.map_or_else(
        || "a block (which one: see the kernel log)".to_string(),
        |b| format!("block {b} (of 4096 bytes, from the start of the image)"),
    );
    log::error!(
        "filesystem[{}] ({}): dm-verity: corrupted: {which} does not match verity_root_hash; the application \
         gets EIO for it and good blocks are still served; `encfs-init probe` fails from now on; fix: restore \
         the blob from the sealed image (someone who can write the blob changed it)",
        st.index,
        st.mount_point
    );
    true
}

/// The first block the kernel reported corrupted on the dm-verity mapping over `data_dev` (its message:
/// `device-mapper: verity: <major>:<minor>: data block <n> is corrupted`), from `/dev/kmsg`; `None` when the
/// kernel log cannot be read (a container without access) or holds no such line.
fn first_bad_block(data_dev: &Path) -> Option<u64> {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    let rdev = std::fs::metadata(data_dev).ok()?.rdev();
    let tag = format!(
        "verity: {}:{}: ",
        nix::sys::stat::major(rdev),
        nix::sys::stat::minor(rdev)
    );
    let mut kmsg = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open("/dev/kmsg")
        .ok()?;
    // One record per read; EAGAIN at the end; EPIPE when a record was overwritten while reading (go on).
    let mut buf = vec![0u8; 8192];
    for _ in 0..100_000 {
        match kmsg.read(&mut buf) {
            Ok(0) => return None,
            Ok(n) => {
                if let Some(b) = bad_block_in(&String::from_utf8_lossy(&buf[..n]), &tag) {
                    return Some(b);
                }
            }
            Err(e) if e.raw_os_error() == Some(nix::libc::EPIPE) => {}
            Err(_) => return None,
        }
    }
    None
}

/// The block number of a `<tag>data block <n> is corrupted` (or `metadata block`) kernel message.
fn bad_block_in(record: &str, tag: &str) -> Option<u64> {
    let rest = &record[record.find(tag)? + tag.len()..];
    let rest = rest
        .strip_prefix("data block ")
        .or_else(|| rest.strip_prefix("metadata block "))?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    if !rest[digits.len()..].starts_with(" is corrupted") {
        return None;
    }
    digits.parse().ok()
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
            verity: None,
            state: crate::ready::MountState::Ready,
            why: None,
        }
    }

    /// One filesystem's read stalled (its blob service gone, up to `io_deadline`) must not hold up the
    /// others' reads, nor the judging: with one thread for all, filesystem 1 was not read, and nothing was
    /// judged, until filesystem 0's read returned.
    #[test]
    fn a_stalled_read_delays_neither_the_other_reads_nor_the_judging() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::{Arc, Mutex};
        let (release, stalled) = channel::<()>();
        let stalled = Mutex::new(stalled);
        let reads = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
        let judged = Arc::new(AtomicUsize::new(0));
        let (seen, judging) = (reads.clone(), judged.clone());
        let tick = Duration::from_millis(10);
        let m = Monitor::each(
            tick,
            tick,
            2,
            move |k| {
                seen[k].fetch_add(1, Ordering::SeqCst);
                if k == 0 {
                    // Stalls until the test releases it.
                    let _ = stalled.lock().unwrap().recv();
                }
            },
            move || {
                judging.fetch_add(1, Ordering::SeqCst);
            },
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while (reads[1].load(Ordering::SeqCst) < 5 || judged.load(Ordering::SeqCst) < 5)
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        let r0 = reads[0].load(Ordering::SeqCst);
        let r1 = reads[1].load(Ordering::SeqCst);
        let j = judged.load(Ordering::SeqCst);
        drop(release);
        m.stop();
        assert_eq!(r0, 1, "filesystem 0 is read once and stalls");
        assert!(r1 >= 5, "filesystem 1 was read {r1} times while 0 stalled");
        assert!(j >= 5, "judged {j} times while filesystem 0's read stalled");
    }

    /// Between reads the filesystems are judged every `judge_every`, so a death that needs no read (a lost
    /// lease, a replaced blob) is acted on long before the next read.
    #[test]
    fn the_filesystems_are_judged_between_their_reads() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        let counts = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
        let (reads, judged) = (counts.clone(), counts.clone());
        let m = Monitor::each(
            Duration::from_secs(3600),
            Duration::from_millis(10),
            1,
            move |_| {
                reads[1].fetch_add(1, Ordering::SeqCst);
            },
            move || {
                judged[0].fetch_add(1, Ordering::SeqCst);
            },
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while counts[0].load(Ordering::SeqCst) < 5 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        m.stop();
        assert!(
            counts[0].load(Ordering::SeqCst) >= 5,
            "judged between reads"
        );
        assert_eq!(
            counts[1].load(Ordering::SeqCst),
            0,
            "no read before the interval"
        );
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
    fn the_kernels_corruption_message_gives_the_block_of_that_device_only() {
        let tag = "verity: 43:0: ";
        let rec = "3,812,5123456,-;device-mapper: verity: 43:0: data block 4100 is corrupted\n";
        assert_eq!(bad_block_in(rec, tag), Some(4100));
        let meta =
            "3,813,5123457,-;device-mapper: verity: 43:0: metadata block 12290 is corrupted\n";
        assert_eq!(bad_block_in(meta, tag), Some(12290));
        assert_eq!(bad_block_in(rec, "verity: 7:0: "), None, "another device");
        assert_eq!(
            bad_block_in(
                "6,1,1,-;device-mapper: verity: 43:0: data block 5 is fine",
                tag
            ),
            None
        );
        assert_eq!(
            bad_block_in("6,2,2,-;nbd0: detected capacity change", tag),
            None
        );
    }

    #[test]
    fn an_unpinned_filesystem_has_no_verity_verdict() {
        let mut st = state();
        assert!(!check_verity(&mut st));
        assert!(st.verity.is_none());
    }

    #[test]
    fn a_read_of_a_missing_device_names_it() {
        let e = crate::errors::chain(&read_block(Path::new("/nonexistent/dm-9")).unwrap_err());
        assert!(e.contains("/nonexistent/dm-9"), "{e}");
    }
}
