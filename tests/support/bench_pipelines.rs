//! The benchmark's pipelines (guest side of `cargo xtask bench`, used by tests/guest_bench.rs): each reads
//! one file of an encrypted image cold, through ext4 on dm-crypt, as the application does.
//!
//! The image (LUKS2, ext4 holding one file of random data) is served as a blob by the range server. Each
//! transport pipeline starts its transport, reads the LUKS2 header and unlocks it, maps dm-crypt and mounts
//! ext4 read-only with the product's code (tests/support/bench_mount.rs), so "start to
//! readable mount" is timed the same way for every transport; then caches are dropped and the file is read
//! with `dd bs=1M` (timed), and its SHA-256 is compared (untimed, from the page cache dd filled).
//! `ours-*-verity` put dm-verity between the transport and dm-crypt and read the header through it, as the
//! boot does for a pinned image; the time to a readable mount is split into phases.
#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)]

use crate::bench_mount::{self, crypt_mount, file_reader, Mounted, Phases, Pin};
use encfs_init::blob::{self, AzureBlob, BlockSource, CacheConfig, CachedSource};
use encfs_init::manifest::validate::{DEFAULT_BLOCK_SIZE, DEFAULT_CACHE_SIZE};
use encfs_init::manifest::NetworkPlan;
use encfs_init::transport::{self, Kind};
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const MIB: usize = 1 << 20;
const NBDKIT_PORT: u16 = 10809;

/// A cache variant of `ours-*`: fetch workers, readahead blocks, block size in KiB (0: the default).
pub type Tune = (usize, u64, u64);

/// One measured run: MB/s of the cold read, its time, the time from start to a readable mount (transport
/// pipelines only) and its timed parts (`ours-*` only), whether the data was right, and a note.
#[derive(Debug)]
pub struct Run {
    pub mbps: f64,
    pub secs: f64,
    pub mount_secs: Option<f64>,
    pub phases: Phases,
    pub ok: bool,
    pub note: String,
}

/// What every pipeline reads, and where from.
#[derive(Debug)]
pub struct Bench {
    /// The range server (a child process: a remote service is not in our address space).
    pub addr: SocketAddr,
    /// The image: its bytes (the blob's size), its SHA-256, where the guest has it (for `dmcrypt-ram`).
    pub image_bytes: usize,
    pub image_digest: Vec<u8>,
    pub image_path: PathBuf,
    /// The file inside: its name at the filesystem's root, its SHA-256.
    pub file_name: String,
    pub file_digest: Vec<u8>,
    /// The raw 32-byte key (the LUKS2 passphrase, as upstream uses it).
    pub key: Vec<u8>,
    /// nbdkit, its curl plugin, nbd-client.
    pub nbdkit: Option<(String, String, String)>,
    /// The image's verity pin (the image is sealed): `ours-*-verity` can run.
    pub verity: Option<Pin>,
}

pub fn sh(cmd: &str) -> Result<(), String> {
    let st = Command::new("/bin/sh")
        .arg("-c")
        .arg(cmd)
        .status()
        .map_err(|e| format!("`{cmd}`: {e}"))?;
    if st.success() {
        Ok(())
    } else {
        Err(format!("`{cmd}`: {st}"))
    }
}

fn drop_caches() -> Result<(), String> {
    sh("sync; echo 3 > /proc/sys/vm/drop_caches")
}

/// `dd if=PATH of=/dev/null bs=1M` after dropping caches, timed: `(MB/s, seconds)` for `size` bytes.
pub fn timed_dd(path: &Path, size: u64) -> Result<(f64, f64), String> {
    drop_caches()?;
    let t = Instant::now();
    let out = Command::new("/bin/dd")
        .arg(format!("if={}", path.display()))
        .args(["of=/dev/null", "bs=1M"])
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("dd: {e}"))?;
    let secs = t.elapsed().as_secs_f64();
    if !out.status.success() {
        return Err(format!(
            "dd {}: {} {}",
            path.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok((size as f64 / 1e6 / secs, secs))
}

/// SHA-256 of a whole file or device.
pub fn digest_of(path: &Path) -> Result<Vec<u8>, String> {
    let mut f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; MIB];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().to_vec())
}

/// Sequential range GETs of `range` bytes over one keep-alive connection into `dst` (whose length is the
/// blob's size). Returns an error text for anything but a 206 with the expected length.
pub fn ceiling_read(addr: SocketAddr, range: usize, dst: &mut [u8]) -> Result<(), String> {
    let conn = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    conn.set_nodelay(true)
        .map_err(|e| format!("nodelay: {e}"))?;
    let mut w = conn.try_clone().map_err(|e| format!("clone: {e}"))?;
    let mut r = BufReader::with_capacity(64 << 10, conn);
    let mut at = 0usize;
    let mut line = String::new();
    while at < dst.len() {
        let end = (at + range).min(dst.len());
        let req = format!(
            "GET /container/disk.img HTTP/1.1\r\nHost: 127.0.0.1\r\nx-ms-range: bytes={at}-{}\r\n\r\n",
            end - 1
        );
        w.write_all(req.as_bytes())
            .map_err(|e| format!("send: {e}"))?;
        line.clear();
        r.read_line(&mut line).map_err(|e| format!("status: {e}"))?;
        if !line.starts_with("HTTP/1.1 206") {
            return Err(format!("range {at}: status {}", line.trim()));
        }
        let mut len = None;
        loop {
            line.clear();
            r.read_line(&mut line).map_err(|e| format!("header: {e}"))?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse::<usize>().ok();
                }
            }
        }
        if len != Some(end - at) {
            return Err(format!(
                "range {at}: Content-Length {len:?}, want {}",
                end - at
            ));
        }
        r.read_exact(&mut dst[at..end])
            .map_err(|e| format!("body: {e}"))?;
        at = end;
    }
    Ok(())
}

impl Bench {
    pub fn url(&self) -> String {
        format!("http://{}/container/disk.img", self.addr)
    }

    fn mount_dir(name: &str) -> PathBuf {
        PathBuf::from(format!("/mnt/bench-{name}"))
    }

    /// Time the cold read of the file under `m`, then check it.
    fn read_file(&self, m: &Mounted) -> Result<(f64, f64, bool), String> {
        let path = m.dir.join(&self.file_name);
        let size = std::fs::metadata(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .len();
        let (mbps, secs) = timed_dd(&path, size)?;
        let ok = digest_of(&path)? == self.file_digest;
        Ok((mbps, secs, ok))
    }

    /// `ceiling-*`: the whole blob by sequential range GETs of `range` bytes, no block layer.
    pub fn ceiling(&self, range: usize) -> Result<Run, String> {
        let mut dst = vec![0u8; self.image_bytes];
        // Touch the destination first, so page faults are not timed.
        dst.iter_mut().step_by(4096).for_each(|b| *b = 1);
        let t = Instant::now();
        ceiling_read(self.addr, range, &mut dst)?;
        let secs = t.elapsed().as_secs_f64();
        let ok = Sha256::digest(&dst).as_slice() == self.image_digest.as_slice();
        Ok(Run {
            mbps: self.image_bytes as f64 / 1e6 / secs,
            secs,
            mount_secs: None,
            phases: Vec::new(),
            ok,
            note: format!("{} range GETs, one connection", range >> 10),
        })
    }

    pub fn open_blob(&self) -> Result<AzureBlob, String> {
        let plan = NetworkPlan {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(60),
            retries: 3,
            retry_backoff_max: Duration::from_millis(500),
            ca_bundle: None,
            ca_bundle_sha256: None,
        };
        let client = encfs_init::http::Client::new(&plan).map_err(|e| e.to_string())?;
        AzureBlob::open(
            client,
            &self.url(),
            blob::Auth::Anonymous,
            "2020-10-02",
            false,
        )
        .map_err(|e| e.to_string())
    }

    pub fn cache_config(tune: Option<Tune>) -> CacheConfig {
        let mut config = CacheConfig::new(DEFAULT_BLOCK_SIZE, DEFAULT_CACHE_SIZE);
        if let Some((workers, readahead, block_kib)) = tune {
            config.workers = workers;
            config.readahead = readahead;
            if block_kib > 0 {
                config.block_size = block_kib << 10;
            }
        }
        config
    }

    /// `ours-nbd` / `ours-fuse`: our blob client + cache behind the product's NBD or FUSE + loop front end,
    /// then LUKS2 + dm-crypt + ext4 (`config`: the manifest's defaults unless tuned).
    /// With `raw`, no dm-crypt: `dd` of the whole block device (a diagnosis of the transport alone). With
    /// `verity` (`ours-*-verity`), dm-verity over the transport's device as the boot maps a pinned image: the
    /// header is read through it and dm-crypt goes over it.
    pub fn ours(
        &self,
        kind: Kind,
        config: CacheConfig,
        raw: bool,
        verity: bool,
    ) -> Result<Run, String> {
        let pin = match (verity, self.verity) {
            (false, _) => None,
            (true, Some(pin)) => Some(pin),
            (true, None) => return Err("the image is not sealed (no verity pin given)".into()),
        };
        let t0 = Instant::now();
        let cached =
            Arc::new(CachedSource::new(self.open_blob()?, config).map_err(|e| e.to_string())?);
        let src: Arc<dyn BlockSource> = cached.clone();
        let tag = match kind {
            Kind::Nbd => "nbd",
            Kind::Fuse => "fuse",
        };
        let opts = transport::AttachOptions {
            read_only: true,
            nbd_timeouts: encfs_init::nbd::kernel::Timeouts {
                request: Duration::from_secs(60),
                dead_connection: Duration::from_secs(120),
            },
            fuse_dir: PathBuf::from(format!("/run/bench-fuse-{tag}")),
        };
        if raw {
            let backing =
                transport::attach(kind, src, &opts).map_err(|e| encfs_init::errors::chain(&e))?;
            let dev = backing.device().to_path_buf();
            let measured = timed_dd(&dev, self.image_bytes as u64);
            let ok = measured
                .as_ref()
                .ok()
                .map(|_| digest_of(&dev).map(|d| d == self.image_digest));
            let detached = backing.detach();
            let (mbps, secs) = measured?;
            let ok = ok.unwrap_or(Ok(false))?;
            detached.map_err(|e| encfs_init::errors::chain(&e))?;
            return Ok(Run {
                mbps,
                secs,
                mount_secs: None,
                phases: Vec::new(),
                ok,
                note: format!("dd of {} (no dm-crypt)", dev.display()),
            });
        }
        let backing = transport::attach(kind, src.clone(), &opts)
            .map_err(|e| encfs_init::errors::chain(&e))?;
        let mut phases = vec![("blob + attach", t0.elapsed().as_secs_f64())];
        let dev = backing.device().to_path_buf();
        let dir = Self::mount_dir(tag);
        let mounted = match pin {
            // Unpinned: the header is read through the cache (as the boot does), the data through the
            // transport.
            None => {
                let reader = |off: u64, len: usize| {
                    let mut buf = vec![0u8; len];
                    src.read_at(off, &mut buf).map_err(|e| e.to_string())?;
                    Ok(buf)
                };
                let name = format!("bench-{tag}");
                crypt_mount(
                    &name,
                    &dev,
                    src.size(),
                    &self.key,
                    &reader,
                    &dir,
                    &mut phases,
                )
            }
            // Pinned: the tree checked from the blob, dm-verity over the device, then everything (header,
            // keyslots, data) through the verified device.
            Some(pin) => {
                let name = format!("bench-verity-{tag}");
                bench_mount::map_verity(&name, &pin, &*src, &dev, &mut phases).and_then(|v| {
                    let node = v.node().to_path_buf();
                    let reader = file_reader(&node)?;
                    let name = format!("bench-{tag}-verity");
                    let size = pin.hash_offset;
                    let mut m =
                        crypt_mount(&name, &node, size, &self.key, &reader, &dir, &mut phases)?;
                    m.verity = Some(v);
                    Ok(m)
                })
            }
        };
        let mounted = match mounted {
            Ok(m) => m,
            Err(e) => {
                let _ = backing.detach();
                return Err(e);
            }
        };
        let mount_secs = t0.elapsed().as_secs_f64();
        let before = cached.stats();
        let read = self.read_file(&mounted);
        let after = cached.stats();
        let closed = mounted.close();
        let detached = backing.detach();
        let (mbps, secs, ok) = read?;
        closed?;
        detached.map_err(|e| encfs_init::errors::chain(&e))?;
        Ok(Run {
            mbps,
            secs,
            mount_secs: Some(mount_secs),
            phases,
            ok,
            note: format!(
                "{}{} ({} KiB blocks, {} MiB budget, {} workers, readahead {}, reorder window {}; during the read: {} demand fetches, {} prefetches, {} hits)",
                dev.display(),
                if pin.is_some() { " + dm-verity" } else { "" },
                config.block_size >> 10,
                config.cache_size >> 20,
                config.workers,
                config.readahead,
                config.reorder_window,
                after.demand_fetches - before.demand_fetches,
                after.prefetches - before.prefetches,
                after.hits - before.hits
            ),
        })
    }

    /// `nbdkit`: Debian's `nbdkit` curl plugin + `nbd-client`, then the same LUKS2 + dm-crypt + ext4.
    pub fn nbdkit(&self) -> Result<Run, String> {
        let Some((nbdkit, plugin, client)) = &self.nbdkit else {
            return Err("nbdkit not given".into());
        };
        let dev = free_nbd(1).ok_or("no free /dev/nbdN for nbd-client")?;
        let t0 = Instant::now();
        let mut server = Command::new(nbdkit)
            .args(["-f", "-r", "--exit-with-parent", "-i", "127.0.0.1", "-p"])
            .arg(NBDKIT_PORT.to_string())
            .arg(plugin)
            .arg(format!("url={}", self.url()))
            .spawn()
            .map_err(|e| format!("{nbdkit}: {e}"))?;
        let r = self.nbdkit_with(t0, &mut server, client, &dev);
        let _ = sh(&format!("{client} -d {} >/dev/null 2>&1", dev.display()));
        let _ = server.kill();
        let _ = server.wait();
        r
    }

    fn nbdkit_with(
        &self,
        t0: Instant,
        server: &mut Child,
        client: &str,
        dev: &Path,
    ) -> Result<Run, String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", NBDKIT_PORT)).is_err() {
            if let Ok(Some(st)) = server.try_wait() {
                return Err(format!("nbdkit exited: {st}"));
            }
            if Instant::now() > deadline {
                return Err("nbdkit did not listen within 60 s".into());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let d = dev.display().to_string();
        sh(&format!(
            "{client} -N bench -b 4096 127.0.0.1 {NBDKIT_PORT} {d} >/dev/null"
        ))?;
        let n: String = d.trim_start_matches("/dev/nbd").to_string();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !Path::new(&format!("/sys/block/nbd{n}/pid")).exists() {
            if Instant::now() > deadline {
                return Err(format!("{d} not connected by nbd-client"));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let reader = file_reader(dev)?;
        let mut phases = vec![("nbdkit + nbd-client", t0.elapsed().as_secs_f64())];
        let m = crypt_mount(
            "bench-nbdkit",
            dev,
            self.image_bytes as u64,
            &self.key,
            &reader,
            &Self::mount_dir("nbdkit"),
            &mut phases,
        )?;
        let mount_secs = t0.elapsed().as_secs_f64();
        let read = self.read_file(&m);
        let closed = m.close();
        let (mbps, secs, ok) = read?;
        closed?;
        Ok(Run {
            mbps,
            secs,
            mount_secs: Some(mount_secs),
            phases,
            ok,
            note: format!("{d} (nbdkit curl plugin, nbd-client -b 4096)"),
        })
    }

    /// `dmcrypt-ram`: the image in a tmpfs file under a loop device (no network, no transport): what
    /// dm-crypt + ext4 alone can do on this kernel and CPU, the layer limit.
    pub fn dmcrypt_ram(&self) -> Result<Run, String> {
        let copy = Path::new("/ram/image.img");
        if !copy.exists() {
            std::fs::create_dir_all("/ram").map_err(|e| format!("/ram: {e}"))?;
            sh("grep -q ' /ram ' /proc/mounts || mount -t tmpfs -o mode=0700 tmpfs /ram")?;
            let mut src = std::fs::File::open(&self.image_path)
                .map_err(|e| format!("{}: {e}", self.image_path.display()))?;
            let mut dst = std::fs::File::create(copy).map_err(|e| format!("{copy:?}: {e}"))?;
            std::io::copy(&mut (&mut src).take(self.image_bytes as u64), &mut dst)
                .map_err(|e| format!("copying the image to {copy:?}: {e}"))?;
        }
        let backing = std::fs::File::open(copy).map_err(|e| format!("{copy:?}: {e}"))?;
        let lo = encfs_init::loopdev::attach(
            &backing,
            encfs_init::loopdev::Options {
                read_only: true,
                direct_io: false,
                block_size: 512,
            },
        )
        .map_err(|e| encfs_init::errors::chain(&e))?;
        let dev = lo.device().to_path_buf();
        let reader = file_reader(copy)?;
        let m = crypt_mount(
            "bench-ram",
            &dev,
            self.image_bytes as u64,
            &self.key,
            &reader,
            &Self::mount_dir("ram"),
            &mut Vec::new(),
        );
        let m = match m {
            Ok(m) => m,
            Err(e) => {
                let _ = lo.detach();
                return Err(e);
            }
        };
        let read = self.read_file(&m);
        let closed = m.close();
        let detached = lo.detach();
        let (mbps, secs, ok) = read?;
        closed?;
        detached.map_err(|e| encfs_init::errors::chain(&e))?;
        Ok(Run {
            mbps,
            secs,
            mount_secs: None,
            phases: Vec::new(),
            ok,
            note: format!("{} over a tmpfs file", dev.display()),
        })
    }

    /// Diagnostics without the kernel: sequential 1 MiB `read_at`s of the whole blob from one thread, on the
    /// raw blob client (`blob-1m`: one range GET at a time) or through the cache (`cache-1m`).
    pub fn library(&self, cached: bool) -> Result<Run, String> {
        let azure = self.open_blob()?;
        let src: Box<dyn BlockSource> = if cached {
            let config = CacheConfig::new(DEFAULT_BLOCK_SIZE, DEFAULT_CACHE_SIZE);
            Box::new(CachedSource::new(azure, config).map_err(|e| e.to_string())?)
        } else {
            Box::new(azure)
        };
        let mut dst = vec![0u8; self.image_bytes];
        dst.iter_mut().step_by(4096).for_each(|b| *b = 1);
        let t = Instant::now();
        for (i, chunk) in dst.chunks_mut(MIB).enumerate() {
            src.read_at((i * MIB) as u64, chunk)
                .map_err(|e| e.to_string())?;
        }
        let secs = t.elapsed().as_secs_f64();
        let ok = Sha256::digest(&dst).as_slice() == self.image_digest.as_slice();
        Ok(Run {
            mbps: self.image_bytes as f64 / 1e6 / secs,
            secs,
            mount_secs: None,
            phases: Vec::new(),
            ok,
            note: String::new(),
        })
    }
}

/// The first `/dev/nbdN` from `from` on without a connection.
fn free_nbd(from: u32) -> Option<PathBuf> {
    (from..16)
        .find(|n| {
            Path::new(&format!("/dev/nbd{n}")).exists()
                && !Path::new(&format!("/sys/block/nbd{n}/pid")).exists()
        })
        .map(|n| format!("/dev/nbd{n}").into())
}
