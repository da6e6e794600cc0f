//! The FUSE + loop transport against the host's real kernel (it has FUSE and loop, not device-mapper):
//! a FUSE file served by `encfs_init::fuse` over an in-memory source, a loop device over it, and I/O through
//! `/dev/loopN` with `O_DIRECT`. Needs root, `/dev/fuse` and `/dev/loop-control` (the suite says so and
//! fails otherwise, like the PID-1 conformance suite).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use encfs_init::blob::{check_range, BlockSource, Error, Result};
use encfs_init::fuse::{self, Config};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// An in-memory source that records what happened to it, in order.
struct Rec {
    data: Mutex<Vec<u8>>,
    read_only: bool,
    /// What happened to the source, with when.
    events: Mutex<Vec<(&'static str, Instant)>>,
    /// How long a flush takes (to see that fsync waits for it).
    flush_delay: Duration,
}

impl Rec {
    fn new(size: usize, read_only: bool) -> Arc<Rec> {
        Self::with_flush_delay(size, read_only, Duration::from_millis(300))
    }
    fn with_flush_delay(size: usize, read_only: bool, flush_delay: Duration) -> Arc<Rec> {
        let data = (0..size)
            .map(|i| (i as u64).wrapping_mul(2_654_435_761).to_le_bytes()[1])
            .collect();
        Arc::new(Rec {
            data: Mutex::new(data),
            read_only,
            events: Mutex::new(Vec::new()),
            flush_delay,
        })
    }
    fn snapshot(&self) -> Vec<u8> {
        self.data.lock().unwrap().clone()
    }
    fn events(&self) -> Vec<&'static str> {
        self.events.lock().unwrap().iter().map(|e| e.0).collect()
    }
    fn events_timed(&self) -> Vec<(&'static str, Instant)> {
        self.events.lock().unwrap().clone()
    }
}

impl BlockSource for Rec {
    fn size(&self) -> u64 {
        self.data.lock().unwrap().len() as u64
    }
    fn read_only(&self) -> bool {
        self.read_only
    }
    fn read_at(&self, o: u64, b: &mut [u8]) -> Result<()> {
        check_range(o, b.len() as u64, self.size())?;
        b.copy_from_slice(&self.data.lock().unwrap()[o as usize..o as usize + b.len()]);
        Ok(())
    }
    fn write_at(&self, o: u64, d: &[u8]) -> Result<()> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        check_range(o, d.len() as u64, self.size())?;
        self.data.lock().unwrap()[o as usize..o as usize + d.len()].copy_from_slice(d);
        self.events.lock().unwrap().push(("write", Instant::now()));
        Ok(())
    }
    fn flush(&self) -> Result<()> {
        self.events
            .lock()
            .unwrap()
            .push(("flush started", Instant::now()));
        std::thread::sleep(self.flush_delay);
        self.events
            .lock()
            .unwrap()
            .push(("flush done", Instant::now()));
        Ok(())
    }
}

fn require_root() {
    let _ = env_logger::builder().is_test(true).try_init();
    assert!(
        nix::unistd::geteuid().is_root(),
        "the FUSE + loop suite needs root (it mounts FUSE and configures loop devices); run it as root"
    );
    for dev in ["/dev/fuse", "/dev/loop-control"] {
        assert!(
            Path::new(dev).exists(),
            "the FUSE + loop suite needs {dev} (CONFIG_FUSE_FS, CONFIG_BLK_DEV_LOOP)"
        );
    }
}

/// The mount directory (made by attach, removed by detach).
fn dir(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("encfs-fuse-{}-{name}", std::process::id()))
}

fn attach(src: &Arc<Rec>, name: &str, read_only: bool) -> fuse::Attached {
    require_root();
    let src: Arc<dyn BlockSource> = src.clone();
    fuse::attach(src, &Config::new(dir(name), read_only)).unwrap()
}

/// A 4096-aligned buffer for O_DIRECT.
struct Aligned {
    raw: Vec<u8>,
    off: usize,
    len: usize,
}

impl Aligned {
    fn new(len: usize) -> Self {
        let raw = vec![0u8; len + 4096];
        let off = raw.as_ptr().align_offset(4096);
        Aligned { raw, off, len }
    }
    fn buf(&mut self) -> &mut [u8] {
        &mut self.raw[self.off..self.off + self.len]
    }
}

fn open_direct(dev: &Path, write: bool) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(nix::libc::O_DIRECT)
        .open(dev)
}

fn read_direct(dev: &Path, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
    let f = open_direct(dev, false)?;
    let mut a = Aligned::new(len);
    f.read_exact_at(a.buf(), offset)?;
    Ok(a.buf().to_vec())
}

fn mounted(dir: &Path) -> bool {
    let d = dir.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(d.as_str()))
}

fn loop_bound(dev: &Path) -> bool {
    let name = dev.file_name().unwrap().to_string_lossy().into_owned();
    Path::new(&format!("/sys/block/{name}/loop/backing_file")).exists()
}

#[test]
fn reads_and_writes_through_the_loop_device_equal_the_source() {
    let src = Rec::new(16 << 20, false);
    let a = attach(&src, "rw", false);
    let dev = a.device().to_path_buf();
    assert!(dev.starts_with("/dev"), "{}", dev.display());
    let size = std::fs::read_to_string(format!(
        "/sys/block/{}/size",
        dev.file_name().unwrap().to_string_lossy()
    ))
    .unwrap();
    assert_eq!(size.trim().parse::<u64>().unwrap() * 512, 16 << 20);
    // Reads: small, large (several FUSE requests), at the end.
    let want = src.snapshot();
    for (off, len) in [
        (0u64, 4096usize),
        (1 << 20, 3 << 20),
        ((16 << 20) - 8192, 8192),
    ] {
        let got = read_direct(&dev, off, len).unwrap();
        assert!(
            got == want[off as usize..off as usize + len],
            "read {off}+{len} differs from the source"
        );
    }
    // The whole device, buffered, as dd would.
    let mut all = Vec::new();
    std::io::Read::read_to_end(&mut File::open(&dev).unwrap(), &mut all).unwrap();
    assert!(all == want, "a buffered read of the whole device differs");
    // Writes: through the loop device, direct, then fsync.
    let f = open_direct(&dev, true).unwrap();
    let mut a4 = Aligned::new(2 << 20);
    for (i, b) in a4.buf().iter_mut().enumerate() {
        *b = (i % 251) as u8;
    }
    f.write_all_at(a4.buf(), 5 << 20).unwrap();
    f.sync_all().unwrap();
    let now = src.snapshot();
    assert!(
        now[5 << 20..7 << 20] == *a4.buf(),
        "the source does not hold what was written"
    );
    assert!(now[..5 << 20] == want[..5 << 20] && now[7 << 20..] == want[7 << 20..]);
    // And reading it back through the device gives the same.
    assert!(read_direct(&dev, 5 << 20, 2 << 20).unwrap() == *a4.buf());
    drop(f);
    a.detach().unwrap();
}

#[test]
fn ext4_on_the_loop_device_keeps_its_files_across_detach_and_reattach() {
    let src = Rec::with_flush_delay(64 << 20, false, Duration::ZERO);
    let a = attach(&src, "ext4", false);
    let dev = a.device().to_path_buf();
    let run = |cmd: &str, args: &[&str]| {
        let out = std::process::Command::new(cmd).args(args).output().unwrap();
        assert!(out.status.success(), "{cmd} {args:?}: {out:?}");
    };
    run(
        "/usr/sbin/mkfs.ext4",
        &["-q", "-F", &dev.display().to_string()],
    );
    let mnt = dir("ext4-mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let data: Vec<u8> = (0..(5u32 << 20)).map(|i| (i % 253) as u8).collect();
    nix::mount::mount(
        Some(&dev),
        &mnt,
        Some("ext4"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .unwrap();
    std::fs::write(mnt.join("file.bin"), &data).unwrap();
    nix::mount::umount(&mnt).unwrap();
    a.detach().unwrap();
    // Everything reached the source: a new attachment over the same source sees a clean filesystem
    // holding the file.
    let a = attach(&src, "ext4-again", false);
    let dev = a.device().to_path_buf();
    run(
        "/usr/sbin/e2fsck",
        &["-n", "-f", &dev.display().to_string()],
    );
    nix::mount::mount(
        Some(&dev),
        &mnt,
        Some("ext4"),
        nix::mount::MsFlags::MS_RDONLY,
        None::<&str>,
    )
    .unwrap();
    let back = std::fs::read(mnt.join("file.bin"));
    nix::mount::umount(&mnt).unwrap();
    std::fs::remove_dir(&mnt).unwrap();
    assert!(back.unwrap() == data, "the file differs after reattaching");
    a.detach().unwrap();
}

#[test]
fn fsync_on_the_loop_device_returns_only_after_the_source_flushed() {
    let src = Rec::new(4 << 20, false);
    let a = attach(&src, "fsync", false);
    let f = open_direct(a.device(), true).unwrap();
    let mut buf = Aligned::new(4096);
    buf.buf().fill(0xa5);
    f.write_all_at(buf.buf(), 8192).unwrap();
    let ev = src.events();
    assert!(ev.contains(&"write"), "{ev:?}");
    let before = ev.len();
    let t = Instant::now();
    f.sync_all().unwrap();
    let returned = Instant::now();
    let took = returned - t;
    // A flush started after the write and had finished when fsync returned. (Other flushes may start
    // around it: the kernel sends its own, so the last event need not be ours.)
    let ev = src.events_timed();
    let started = ev[before..]
        .iter()
        .position(|e| e.0 == "flush started")
        .map(|i| before + i);
    let Some(started) = started else {
        panic!("fsync did not reach the source: {ev:?}");
    };
    assert!(
        ev[started..]
            .iter()
            .any(|e| e.0 == "flush done" && e.1 <= returned),
        "fsync returned before the flush finished: {:?}",
        ev.iter().map(|e| e.0).collect::<Vec<_>>()
    );
    assert!(took >= src.flush_delay, "fsync returned in {took:?}");
    drop(f);
    a.detach().unwrap();
}

#[test]
fn statfs_of_the_fuse_mount_has_a_block_size_and_other_operations_are_refused() {
    let src = Rec::new(1 << 20, false);
    let a = attach(&src, "statfs", false);
    let st = nix::sys::statvfs::statvfs(a.dir()).unwrap();
    assert_eq!(st.block_size(), 4096);
    assert_eq!(st.blocks(), (1 << 20) / 4096);
    let file = a.dir().join("disk");
    let md = std::fs::metadata(&file).unwrap();
    assert_eq!(md.len(), 1 << 20);
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&md.permissions()) & 0o777,
        0o600
    );
    // The size is fixed; nothing else can be made or removed.
    let f = OpenOptions::new().write(true).open(&file).unwrap();
    assert!(f.set_len(4096).is_err(), "truncate must be refused");
    assert!(
        f.write_all_at(b"x", 1 << 20).is_err(),
        "a write past the end must be refused"
    );
    drop(f);
    assert!(std::fs::write(a.dir().join("new"), b"x").is_err());
    assert!(std::fs::create_dir(a.dir().join("d")).is_err());
    assert!(std::fs::remove_file(&file).is_err());
    assert_eq!(src.size(), 1 << 20);
    a.detach().unwrap();
}

#[test]
fn a_panicking_serving_thread_is_replaced_and_its_request_served_by_the_successor() {
    let src = Rec::new(4 << 20, false);
    let a = attach(&src, "panic", false);
    let dev = a.device().to_path_buf();
    let want = src.snapshot();
    // One crash: the successor serves the held request, the reader sees nothing.
    assert!(a.sever());
    let got = read_direct(&dev, 1 << 20, 65536).unwrap();
    assert!(got == want[1 << 20..(1 << 20) + 65536]);
    assert_eq!(a.restarts(), 1);
    // A request that crashes its thread and the successor is answered EIO, not retried forever.
    a.sever();
    a.sever();
    let e = read_direct(&dev, 2 << 20, 4096).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(nix::libc::EIO), "{e}");
    assert_eq!(a.restarts(), 3);
    // And serving goes on.
    for i in 0..20u64 {
        let off = i * 65536;
        assert!(read_direct(&dev, off, 65536).unwrap() == want[off as usize..off as usize + 65536]);
    }
    a.detach().unwrap();
}

#[test]
fn a_serving_side_that_keeps_dying_is_given_up_and_fails_closed() {
    let src = Rec::new(4 << 20, true);
    let a = attach(&src, "giveup", true);
    let dev = a.device().to_path_buf();
    let dir = a.dir().to_path_buf();
    for _ in 0..1000 {
        a.sever();
    }
    // Every request now crashes its thread and the successor (then EIO): two restarts per read, until the
    // budget of restarts is spent and the connection is aborted.
    let mut reads = 0;
    while a.gave_up().is_none() {
        assert!(read_direct(&dev, 0, 4096).is_err(), "a read succeeded");
        reads += 1;
        assert!(
            reads <= encfs_init::supervise::budget::MAX_RESTARTS,
            "never gave up ({} restarts)",
            a.restarts()
        );
    }
    let why = a.gave_up().unwrap();
    assert!(why.contains("not restarting it again"), "{why}");
    // Fail closed: I/O errors now, no hang.
    assert!(read_direct(&dev, 8192, 4096).is_err());
    // The keeper decides, then aborts (a lazy unmount may wait for an RCU grace period).
    let t = Instant::now();
    while mounted(&dir) {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "the aborted FUSE mount is still there"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // Teardown still removes everything, and says the serving side had given up.
    let e = encfs_init::errors::chain(&a.detach().unwrap_err());
    assert!(e.contains("not restarting"), "{e}");
    assert!(!loop_bound(&dev), "{} still bound", dev.display());
}

#[test]
fn read_only_refuses_writes() {
    let src = Rec::new(1 << 20, true);
    let a = attach(&src, "ro", true);
    let dev = a.device().to_path_buf();
    let name = dev.file_name().unwrap().to_string_lossy().into_owned();
    assert_eq!(
        std::fs::read_to_string(format!("/sys/block/{name}/ro"))
            .unwrap()
            .trim(),
        "1"
    );
    // Some kernels refuse the open for writing, others the write itself.
    if let Ok(f) = open_direct(&dev, true) {
        let mut buf = Aligned::new(4096);
        let e = f.write_all_at(buf.buf(), 0).unwrap_err();
        assert!(
            matches!(
                e.raw_os_error(),
                Some(nix::libc::EPERM | nix::libc::EROFS | nix::libc::EACCES | nix::libc::EIO)
            ),
            "{e}"
        );
    }
    let e = OpenOptions::new()
        .write(true)
        .open(a.dir().join("disk"))
        .unwrap_err();
    assert_eq!(e.raw_os_error(), Some(nix::libc::EROFS), "{e}");
    assert!(read_direct(&dev, 0, 4096).unwrap() == src.snapshot()[..4096]);
    assert!(!src.events().contains(&"write"));
    a.detach().unwrap();
}

#[test]
fn teardown_leaves_no_loop_device_and_no_fuse_mount() {
    let src = Rec::new(1 << 20, false);
    let a = attach(&src, "teardown", false);
    let dev = a.device().to_path_buf();
    let dir = a.dir().to_path_buf();
    assert!(mounted(&dir) && loop_bound(&dev));
    // Keep the device busy the way dm-crypt does until just before detach.
    let f = open_direct(&dev, true).unwrap();
    let mut buf = Aligned::new(4096);
    buf.buf().fill(1);
    f.write_all_at(buf.buf(), 0).unwrap();
    drop(f);
    a.detach().unwrap();
    assert!(!loop_bound(&dev), "{} still bound", dev.display());
    assert!(!mounted(&dir), "{} still mounted", dir.display());
    assert!(!dir.exists(), "{} left behind", dir.display());
    // The final flush reached the source.
    assert_eq!(src.events().last(), Some(&"flush done"));
}

/// Sequential read through the loop device with and without loop direct I/O, each pass on a fresh mount
/// (cold page cache), from a source without latency (CPU cost) and from one that takes 2 ms per call (as a
/// blob service's first byte would; what matters is how many requests are in flight). Run by hand:
/// `cargo test --release --test fuse_loop -- --ignored --nocapture`.
#[test]
#[ignore = "benchmark: by hand, as root"]
fn bench_loop_direct_io_against_buffered() {
    require_root();
    for (size, delay) in [
        (256usize << 20, Duration::ZERO),
        (64 << 20, Duration::from_millis(2)),
    ] {
        for round in 0..3 {
            for direct_io in [false, true] {
                for readers in [1u64, 4] {
                    let src = Rec::new(size, true);
                    let s: Arc<dyn BlockSource> = Arc::new(Slow(src, delay));
                    let mut cfg = Config::new(
                        dir(&format!(
                            "bench{}{round}{direct_io}{readers}",
                            delay.as_millis()
                        )),
                        true,
                    );
                    cfg.direct_io = direct_io;
                    let a = fuse::attach(s, &cfg).unwrap();
                    let t = Instant::now();
                    std::thread::scope(|s| {
                        for k in 0..readers {
                            let dev = a.device().to_path_buf();
                            s.spawn(move || {
                                let f = open_direct(&dev, false).unwrap();
                                let mut buf = Aligned::new(1 << 20);
                                let part = size as u64 / readers;
                                let mut off = k * part;
                                while off < (k + 1) * part {
                                    f.read_exact_at(buf.buf(), off).unwrap();
                                    off += 1 << 20;
                                }
                            });
                        }
                    });
                    let took = t.elapsed();
                    println!(
                        "source delay {} ms, round {round}: loop direct I/O {} (asked {direct_io}), {readers} reader(s) of 1 MiB O_DIRECT reads: {:.0} MiB/s",
                        delay.as_millis(),
                        a.direct_io(),
                        size as f64 / (1 << 20) as f64 / took.as_secs_f64()
                    );
                    a.detach().unwrap();
                }
            }
        }
    }
}

/// A source that takes `delay` per read call.
struct Slow(Arc<Rec>, Duration);

impl BlockSource for Slow {
    fn size(&self) -> u64 {
        self.0.size()
    }
    fn read_only(&self) -> bool {
        true
    }
    fn read_at(&self, o: u64, b: &mut [u8]) -> Result<()> {
        std::thread::sleep(self.1);
        self.0.read_at(o, b)
    }
    fn write_at(&self, _: u64, _: &[u8]) -> Result<()> {
        Err(Error::ReadOnly)
    }
    fn flush(&self) -> Result<()> {
        Ok(())
    }
}
