//! T1: the kernel NBD client over our server, on a real kernel (run in the VM rig: `cargo xtask vmtest
//! root-nbd`, where encfs-init is PID 1 and runs this binary as its application). The blob is a page blob on
//! an in-process HTTP range server (tests/support/range_server.rs) behind our Azure Blob client and cache.
//! On the host these are ignored: the host kernel has no NBD.

#[path = "support/range_server.rs"]
mod range_server;

#[cfg(test)]
mod root {
    use super::range_server::RangeServer;
    use encfs_init::blob::{self, AzureBlob, BlockSource, CacheConfig, CachedSource};
    use encfs_init::dm::{CryptDevice, CryptParams};
    use encfs_init::manifest::NetworkPlan;
    use encfs_init::nbd::kernel;
    use encfs_init::secret::SecretBytes;
    use sha2::{Digest, Sha256};
    use std::fs::{self, OpenOptions};
    use std::io::{Read, Seek, SeekFrom, Write};
    use std::path::Path;
    use std::process::Command;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    const MIB: usize = 1 << 20;

    fn pattern(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    fn network() -> NetworkPlan {
        NetworkPlan {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            retries: 3,
            retry_backoff_max: Duration::from_millis(200),
            ca_bundle: None,
            ca_bundle_sha256: None,
        }
    }

    /// The server's blob behind our client and a 16 MiB cache.
    fn source(server: &RangeServer, read_write: bool) -> Arc<dyn BlockSource> {
        source_cached(server, read_write, 16 << 20)
    }

    /// The server's blob behind our client and a cache of `budget` bytes (1 MiB blocks).
    fn source_cached(server: &RangeServer, read_write: bool, budget: u64) -> Arc<dyn BlockSource> {
        let client = encfs_init::http::Client::new(&network()).unwrap();
        let blob = AzureBlob::open(
            client,
            &server.url(),
            blob::Auth::Anonymous,
            "2020-10-02",
            read_write,
        )
        .unwrap();
        Arc::new(CachedSource::new(blob, CacheConfig::new(1 << 20, budget)).unwrap())
    }

    /// Short kernel timeouts, so that requests in flight on a dead connection are re-sent after 2 s.
    const RESTART_TIMEOUTS: kernel::Timeouts = kernel::Timeouts {
        request: Duration::from_secs(2),
        dead_connection: Duration::from_secs(30),
    };

    fn sh(cmd: &str) {
        let out = Command::new("/bin/sh").arg("-c").arg(cmd).output().unwrap();
        assert!(
            out.status.success(),
            "`{cmd}`: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn blob_bytes(server: &RangeServer) -> Vec<u8> {
        server.blob.lock().unwrap().data.clone()
    }

    #[test]
    #[ignore = "root+kernel: run via cargo xtask vmtest root-nbd"]
    fn root_nbd_raw_writes_reach_the_blob_and_read_back() {
        let initial = pattern(32 * MIB, 7);
        let server = RangeServer::start(initial.clone(), "PageBlob");
        let att = kernel::attach(source(&server, true), false).unwrap();
        let dev = att.device().to_path_buf();
        // Reads see the blob.
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&dev)
            .unwrap();
        let mut head = vec![0u8; 4 * MIB];
        f.read_exact(&mut head).unwrap();
        assert!(
            head == initial[..4 * MIB],
            "reads through /dev/nbd differ from the blob"
        );
        // Unaligned-to-cache-block writes, then fsync: acknowledged only once the blob has them.
        let data = pattern(3 * MIB + 4096, 9);
        let at = 5 * MIB as u64 + 8192;
        f.seek(SeekFrom::Start(at)).unwrap();
        f.write_all(&data).unwrap();
        f.sync_all().unwrap();
        let blob = blob_bytes(&server);
        let at = at as usize;
        assert!(
            blob[at..at + data.len()] == data[..],
            "fsync returned before the blob had the data"
        );
        assert!(
            blob[..at] == initial[..at],
            "bytes before the write changed"
        );
        drop(f);
        let pid = sys_pid(att.device());
        att.detach().unwrap();
        assert!(!pid.exists(), "the device is released");
    }

    #[test]
    #[ignore = "root+kernel: run via cargo xtask vmtest root-nbd"]
    fn root_nbd_dm_crypt_ext4_survives_detach_and_reattach() {
        let server = RangeServer::start(vec![0u8; 96 * MIB], "PageBlob");
        let key = SecretBytes::new(pattern(64, 3));
        let params = |dev: &Path, read_only: bool| CryptParams {
            cipher: "aes-xts-plain64".into(),
            iv_offset: 0,
            device: dev.to_path_buf(),
            offset_sectors: 0,
            size_sectors: (96 * MIB / 512) as u64,
            sector_size: 4096,
            read_only,
        };
        let payload = pattern(64 * MIB, 11);
        let digest = Sha256::digest(&payload);
        fs::create_dir_all("/mnt/t").unwrap();
        {
            let att = kernel::attach(source(&server, true), false).unwrap();
            let dm =
                CryptDevice::open("rw-test", None, &params(att.device(), false), &key).unwrap();
            let node = dm.node().display().to_string();
            sh(&format!("/usr/sbin/mke2fs -q -t ext4 {node}"));
            sh(&format!("mount -t ext4 {node} /mnt/t"));
            fs::write("/mnt/t/payload", &payload).unwrap();
            sh("sync");
            sh("umount /mnt/t");
            dm.remove().unwrap();
            att.detach().unwrap();
        }
        // The blob now holds ciphertext only: the payload's first MiB appears nowhere in it.
        let blob = blob_bytes(&server);
        assert!(
            !blob
                .windows(4096)
                .step_by(4096)
                .any(|w| w == &payload[..4096]),
            "plaintext reached the blob"
        );
        // A fresh client, cache and device read the file back.
        let att = kernel::attach(source(&server, false), true).unwrap();
        let dm = CryptDevice::open("ro-test", None, &params(att.device(), true), &key).unwrap();
        sh(&format!(
            "mount -t ext4 -o ro,noload {} /mnt/t",
            dm.node().display()
        ));
        let back = fs::read("/mnt/t/payload").unwrap();
        assert_eq!(Sha256::digest(&back), digest, "the file read back differs");
        sh("umount /mnt/t");
        dm.remove().unwrap();
        att.detach().unwrap();
    }

    /// `/sys/block/nbdN/pid` for `/dev/nbdN`: present while the device is connected. (Other tests attach
    /// devices concurrently, so a test checks its own device, never a fixed one.)
    fn sys_pid(dev: &Path) -> std::path::PathBuf {
        let name = dev.file_name().unwrap().to_str().unwrap();
        Path::new("/sys/block").join(name).join("pid")
    }

    /// Read the whole device with O_DIRECT (the page cache would hide the server), comparing each MiB.
    fn read_all_direct(dev: &Path, want: &[u8]) -> Result<(), String> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_DIRECT)
            .open(dev)
            .map_err(|e| format!("open {}: {e}", dev.display()))?;
        // O_DIRECT wants an aligned buffer: take a 4096-aligned MiB out of a larger one.
        let mut raw = vec![0u8; MIB + 4096];
        let skew = raw.as_ptr().align_offset(4096);
        let buf = &mut raw[skew..skew + MIB];
        for (i, chunk) in want.chunks(MIB).enumerate() {
            f.read_exact(buf)
                .map_err(|e| format!("I/O error at MiB {i}: {e}"))?;
            if buf[..] != chunk[..] {
                return Err(format!("MiB {i} differs from the blob"));
            }
        }
        Ok(())
    }

    #[test]
    #[ignore = "root+kernel: run via cargo xtask vmtest root-nbd"]
    fn root_nbd_serving_side_killed_10_times_during_reads_gives_no_io_error() {
        let _ = env_logger::builder()
            .filter_level(log::LevelFilter::Info)
            .try_init();
        let data = pattern(24 * MIB, 21);
        let server = RangeServer::start(data.clone(), "PageBlob");
        // The reader keeps 1 MiB O_DIRECT requests going, so the server dies with requests in flight.
        // No cache to speak of: every pass goes to the server.
        let src = source_cached(&server, false, 2 << 20);
        let att = kernel::attach_with(src, true, RESTART_TIMEOUTS).unwrap();
        let dev = att.device().to_path_buf();
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (stop, dev, data) = (stop.clone(), dev.clone(), data.clone());
            std::thread::spawn(move || -> Result<u32, String> {
                let mut passes = 0;
                while !stop.load(Ordering::SeqCst) {
                    read_all_direct(&dev, &data)?;
                    passes += 1;
                }
                Ok(passes)
            })
        };
        let t = Instant::now();
        for k in 1..=10u32 {
            std::thread::sleep(Duration::from_millis(400));
            assert!(
                att.sever(),
                "the attachment has no restartable serving side"
            );
            let deadline = Instant::now() + Duration::from_secs(20);
            while att.restarts() < k {
                assert!(Instant::now() < deadline, "restart {k} did not happen");
                std::thread::sleep(Duration::from_millis(10));
            }
            assert!(
                !reader.is_finished(),
                "the reader stopped early: {:?}",
                reader.join()
            );
        }
        // One more full pass after the last restart, then stop.
        std::thread::sleep(Duration::from_secs(1));
        stop.store(true, Ordering::SeqCst);
        let passes = reader.join().unwrap().expect("reads through the restarts");
        eprintln!(
            "10 serving-side restarts in {:.1} s, {passes} full passes of 24 MiB, no I/O error",
            t.elapsed().as_secs_f64()
        );
        assert!(passes >= 1);
        let pid = sys_pid(&dev);
        att.detach().unwrap();
        assert!(!pid.exists(), "the device is released");
    }

    /// A source whose first read past `at` panics (a bug in the serving side), then works.
    struct PanicsOnce {
        inner: Arc<dyn BlockSource>,
        at: u64,
        armed: AtomicBool,
    }

    impl BlockSource for PanicsOnce {
        fn size(&self) -> u64 {
            self.inner.size()
        }
        fn read_only(&self) -> bool {
            true
        }
        fn read_at(&self, offset: u64, buf: &mut [u8]) -> blob::Result<()> {
            if offset + buf.len() as u64 > self.at && self.armed.swap(false, Ordering::SeqCst) {
                panic!("injected: a bug in the serving side at {offset}");
            }
            self.inner.read_at(offset, buf)
        }
        fn write_at(&self, _: u64, _: &[u8]) -> blob::Result<()> {
            unreachable!("read-only")
        }
        fn flush(&self) -> blob::Result<()> {
            Ok(())
        }
    }

    #[test]
    #[ignore = "root+kernel: run via cargo xtask vmtest root-nbd"]
    fn root_nbd_a_panicking_request_is_sent_again_to_a_restarted_server() {
        let data = pattern(8 * MIB, 33);
        let server = RangeServer::start(data.clone(), "PageBlob");
        let src: Arc<dyn BlockSource> = Arc::new(PanicsOnce {
            inner: source(&server, false),
            at: 5 * MIB as u64,
            armed: AtomicBool::new(true),
        });
        let att = kernel::attach_with(src, true, RESTART_TIMEOUTS).unwrap();
        // The read through the panicking block succeeds: the kernel sends it again after the request
        // timeout, to the server the keeper restarted.
        read_all_direct(att.device(), &data).expect("no I/O error despite the panic");
        assert_eq!(att.restarts(), 1, "one restart after the panic");
        att.detach().unwrap();
    }
}
