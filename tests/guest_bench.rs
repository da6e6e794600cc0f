//! The issue-6 benchmark, guest side (not a test of its own; `harness = false`; `cargo xtask bench` builds it
//! static and runs it in one VM). Cold sequential read of one blob through three pipelines, all from the same
//! in-process HTTP range server (tests/support/range_server.rs) on the guest's 127.0.0.1:
//!
//! - `ceiling-512k` / `ceiling-4m`: a raw range-GET client, one keep-alive connection, sequential ranges of
//!   512 KiB / 4 MiB, no block layer (what any pipeline could at best reach);
//! - `ours`: our Azure Blob client + block cache (the manifest's default block size and budget) + our NBD
//!   server, attached to /dev/nbdN by our kernel code; `dd if=/dev/nbdN of=/dev/null bs=1M` after
//!   `drop_caches`, on a freshly attached device with an empty cache;
//! - `nbdkit`: Debian's `nbdkit` curl plugin + `nbd-client`, the same `dd`.
//!
//! After each `dd` the device is read again and its SHA-256 compared with the blob's; a ceiling run compares
//! the bytes it received. A mismatch (wrong data) makes the exit status 1; slowness never does. Each round
//! runs every pipeline once, the order alternating between rounds. MB = 10^6 bytes.
//!
//! With `--diag`, two more pipelines without the kernel: `blob-1m` (our blob client alone, sequential 1 MiB
//! reads, one at a time) and `cache-1m` (the same reads through our cache: fetch workers, readahead).
//!
//! With `--latency-ms N` the range server waits N ms before every response (a remote round trip). With
//! `--tune W:R[:B][,...]`, extra `ours-wWrR[bB]` pipelines use W fetch workers, a readahead of R blocks and
//! (when given) B KiB blocks, in the default cache budget. With
//! `--only NAME[,NAME...]` only those pipelines run.
//!
//! `guest_bench --bench [--size-mib N] [--rounds N] [--latency-ms N] [--diag] [--tune W:R[:B],...] [--only NAMES]
//! [--nbdkit PATH --curl-plugin PATH --nbd-client PATH]`.
//! Run without `--bench` (as `cargo test` does) it checks its ceiling client against a small blob and prints
//! the usual summary line.

#![allow(clippy::expect_used, clippy::unwrap_used)] // bench support: a failed expectation is the report

#[path = "support/range_server.rs"]
mod range_server;

use encfs_init::blob::{self, AzureBlob, BlockSource, CacheConfig, CachedSource};
use encfs_init::manifest::validate::{DEFAULT_BLOCK_SIZE, DEFAULT_CACHE_SIZE};
use encfs_init::manifest::NetworkPlan;
use encfs_init::nbd::kernel;
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;
const NBDKIT_PORT: u16 = 10809;
const BLOB_SEED: u64 = 0x5eed_b10b;

/// Deterministic pseudo-random bytes (xorshift64*), 8 at a time: fast enough under TCG.
fn random_blob(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let v = x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
        let n = v.len().min(len - out.len());
        out.extend_from_slice(&v[..n]);
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Sequential range GETs of `range` bytes over one keep-alive connection into `dst` (whose length is the
/// blob's size). Returns an error text for anything but a 206 with the expected length.
fn ceiling_read(addr: SocketAddr, range: usize, dst: &mut [u8]) -> Result<(), String> {
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

fn self_check() -> bool {
    let data = random_blob(3 * MIB + 12345, 5);
    let server = range_server::RangeServer::start(data.clone(), "PageBlob");
    [512 << 10, 4 << 20].into_iter().all(|range| {
        let mut got = vec![0u8; data.len()];
        ceiling_read(server.addr, range, &mut got).is_ok() && got == data
    })
}

/// An `ours` variant: fetch workers, readahead blocks, block size in KiB (0: the default).
type Tune = (usize, u64, u64);

/// One measured run.
struct Run {
    mbps: f64,
    secs: f64,
    note: String,
}

struct Bench {
    /// The range server: a child process (this binary with `--serve-blob`), as a remote blob service is
    /// not in our address space (threads of one process share TLB shootdowns and the allocator).
    addr: SocketAddr,
    size: usize,
    digest: Vec<u8>,
    nbdkit: Option<(String, String, String)>,
}

fn sh(cmd: &str) -> Result<(), String> {
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

/// `dd if=DEV of=/dev/null bs=1M`, timed.
fn timed_dd(dev: &Path, size: usize) -> Result<(f64, f64), String> {
    drop_caches()?;
    let t = Instant::now();
    let out = Command::new("/bin/dd")
        .arg(format!("if={}", dev.display()))
        .args(["of=/dev/null", "bs=1M"])
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("dd: {e}"))?;
    let secs = t.elapsed().as_secs_f64();
    if !out.status.success() {
        return Err(format!(
            "dd {}: {} {}",
            dev.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok((size as f64 / 1e6 / secs, secs))
}

/// SHA-256 of the whole device.
fn device_digest(dev: &Path) -> Result<Vec<u8>, String> {
    let mut f = std::fs::File::open(dev).map_err(|e| format!("{}: {e}", dev.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; MIB];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| format!("{}: {e}", dev.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().to_vec())
}

impl Bench {
    fn url(&self) -> String {
        format!("http://{}/container/disk.img", self.addr)
    }

    /// `Err` = the pipeline could not run; `Ok((run, data_ok))`.
    fn ceiling(&self, range: usize) -> Result<(Run, bool), String> {
        let mut dst = vec![0u8; self.size];
        // Touch the destination first, so page faults are not timed.
        dst.iter_mut().step_by(4096).for_each(|b| *b = 1);
        let t = Instant::now();
        ceiling_read(self.addr, range, &mut dst)?;
        let secs = t.elapsed().as_secs_f64();
        let ok = Sha256::digest(&dst).as_slice() == self.digest.as_slice();
        Ok((
            Run {
                mbps: self.size as f64 / 1e6 / secs,
                secs,
                note: String::new(),
            },
            ok,
        ))
    }

    /// Diagnostics without the kernel: sequential 1 MiB `read_at`s from one thread, on the raw blob client
    /// (`blob-1m`: one range GET at a time) or through the cache (`cache-1m`: its fetch workers and readahead).
    fn library(&self, cached: bool) -> Result<(Run, bool), String> {
        let azure = self.open_blob()?;
        let src: Box<dyn BlockSource> = if cached {
            let config = CacheConfig::new(DEFAULT_BLOCK_SIZE, DEFAULT_CACHE_SIZE);
            Box::new(CachedSource::new(azure, config).map_err(|e| e.to_string())?)
        } else {
            Box::new(azure)
        };
        let mut dst = vec![0u8; self.size];
        dst.iter_mut().step_by(4096).for_each(|b| *b = 1);
        let t = Instant::now();
        for (i, chunk) in dst.chunks_mut(MIB).enumerate() {
            src.read_at((i * MIB) as u64, chunk)
                .map_err(|e| e.to_string())?;
        }
        let secs = t.elapsed().as_secs_f64();
        let ok = Sha256::digest(&dst).as_slice() == self.digest.as_slice();
        Ok((
            Run {
                mbps: self.size as f64 / 1e6 / secs,
                secs,
                note: String::new(),
            },
            ok,
        ))
    }

    fn open_blob(&self) -> Result<AzureBlob, String> {
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

    fn ours(&self, tune: Option<Tune>) -> Result<(Run, bool), String> {
        let azure = self.open_blob()?;
        let mut config = CacheConfig::new(DEFAULT_BLOCK_SIZE, DEFAULT_CACHE_SIZE);
        if let Some((workers, readahead, block_kib)) = tune {
            config.workers = workers;
            config.readahead = readahead;
            if block_kib > 0 {
                config.block_size = block_kib << 10;
            }
        }
        let cached = Arc::new(CachedSource::new(azure, config).map_err(|e| e.to_string())?);
        let src: Arc<dyn BlockSource> = cached.clone();
        let att = kernel::attach(src, true)?;
        let dev = att.device().to_path_buf();
        let measured = timed_dd(&dev, self.size);
        let stats = cached.stats();
        let digest = measured.as_ref().ok().map(|_| device_digest(&dev));
        let detached = att.detach();
        let (mbps, secs) = measured?;
        let digest = digest.unwrap_or_else(|| Err("not read".into()))?;
        detached?;
        Ok((
            Run {
                mbps,
                secs,
                note: format!(
                    "{} ({} block, {} budget, {} workers, readahead {}; during dd: {} demand fetches, {} prefetches, {} hits)",
                    dev.display(),
                    config.block_size,
                    config.cache_size,
                    config.workers,
                    config.readahead,
                    stats.demand_fetches,
                    stats.prefetches,
                    stats.hits
                ),
            },
            digest == self.digest,
        ))
    }

    fn nbdkit(&self) -> Result<(Run, bool), String> {
        let Some((nbdkit, plugin, client)) = &self.nbdkit else {
            return Err("nbdkit not given".into());
        };
        let dev = free_nbd(1).ok_or("no free /dev/nbdN for nbd-client")?;
        let mut server = Command::new(nbdkit)
            .args(["-f", "-r", "--exit-with-parent", "-i", "127.0.0.1", "-p"])
            .arg(NBDKIT_PORT.to_string())
            .arg(plugin)
            .arg(format!("url={}", self.url()))
            .spawn()
            .map_err(|e| format!("{nbdkit}: {e}"))?;
        let r = self.nbdkit_with(&mut server, client, &dev);
        let _ = server.kill();
        let _ = server.wait();
        r
    }

    fn nbdkit_with(
        &self,
        server: &mut Child,
        client: &str,
        dev: &Path,
    ) -> Result<(Run, bool), String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", NBDKIT_PORT)).is_err() {
            if let Ok(Some(st)) = server.try_wait() {
                return Err(format!("nbdkit exited: {st}"));
            }
            if Instant::now() > deadline {
                return Err("nbdkit did not listen within 60 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
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
            std::thread::sleep(Duration::from_millis(10));
        }
        let measured = timed_dd(dev, self.size);
        let digest = measured.as_ref().ok().map(|_| device_digest(dev));
        let _ = sh(&format!("{client} -d {d} >/dev/null 2>&1"));
        let (mbps, secs) = measured?;
        let digest = digest.unwrap_or_else(|| Err("not read".into()))?;
        Ok((
            Run {
                mbps,
                secs,
                note: format!("{d} (nbdkit curl plugin, nbd-client -b 4096)"),
            },
            digest == self.digest,
        ))
    }
}

/// The first `/dev/nbdN` from `from` on without a connection.
fn free_nbd(from: u32) -> Option<std::path::PathBuf> {
    (from..16)
        .find(|n| {
            Path::new(&format!("/dev/nbd{n}")).exists()
                && !Path::new(&format!("/sys/block/nbd{n}/pid")).exists()
        })
        .map(|n| format!("/dev/nbd{n}").into())
}

/// Worst / median / best of `v` (MB/s: worst is the lowest).
fn wmb(v: &[f64]) -> Option<(f64, f64, f64)> {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    Some((*s.first()?, s[s.len() / 2], *s.last()?))
}

fn bench(args: &[String]) -> Result<bool, String> {
    let mut size_mib = 256usize;
    let mut rounds = 3usize;
    let mut diag = false;
    let mut latency_ms = 0u64;
    let mut tune = Vec::new();
    let mut only: Option<Vec<String>> = None;
    let (mut nbdkit, mut plugin, mut client) = (None, None, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().cloned().ok_or(format!("{a} wants a value"));
        match a.as_str() {
            "--bench" => {}
            "--diag" => diag = true,
            "--size-mib" => size_mib = val()?.parse().map_err(|_| "bad --size-mib")?,
            "--rounds" => rounds = val()?.parse().map_err(|_| "bad --rounds")?,
            "--latency-ms" => latency_ms = val()?.parse().map_err(|_| "bad --latency-ms")?,
            "--tune" => {
                for spec in val()?.split(',') {
                    let f: Vec<&str> = spec.split(':').collect();
                    let t = match f.as_slice() {
                        [w, r] => w.parse().ok().zip(r.parse().ok()).map(|(w, r)| (w, r, 0)),
                        [w, r, b] => w
                            .parse()
                            .ok()
                            .zip(r.parse().ok())
                            .zip(b.parse().ok())
                            .map(|((w, r), b)| (w, r, b)),
                        _ => None,
                    };
                    tune.push(t.ok_or("bad --tune: want WORKERS:READAHEAD[:BLOCK_KIB][,...]")?);
                }
            }
            "--only" => only = Some(val()?.split(',').map(str::to_string).collect()),
            "--nbdkit" => nbdkit = Some(val()?),
            "--curl-plugin" => plugin = Some(val()?),
            "--nbd-client" => client = Some(val()?),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let size = size_mib * MIB;
    let t = Instant::now();
    let data = random_blob(size, BLOB_SEED);
    let digest = Sha256::digest(&data).to_vec();
    println!(
        "bench: blob {size_mib} MiB of random data, sha256 {} (made in {:.1} s); server latency {latency_ms} ms per request",
        hex(&digest),
        t.elapsed().as_secs_f64()
    );
    drop(data);
    if latency_ms > 0 {
        // Timers under TCG on a loaded host can overshoot: say what a sleep of the latency really takes.
        let t = Instant::now();
        for _ in 0..20 {
            std::thread::sleep(Duration::from_millis(latency_ms));
        }
        println!(
            "bench: a {latency_ms} ms sleep takes {:.1} ms in this guest (mean of 20)",
            t.elapsed().as_secs_f64() * 1000.0 / 20.0
        );
    }
    let port_file = "/tmp/guest_bench.port";
    let _ = std::fs::remove_file(port_file);
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let mut child = Command::new(exe)
        .args([
            "--serve-blob",
            &size_mib.to_string(),
            "--port-file",
            port_file,
            "--latency-ms",
            &latency_ms.to_string(),
        ])
        .spawn()
        .map_err(|e| format!("starting the blob server: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(120);
    let port: u16 = loop {
        if let Some(p) = std::fs::read_to_string(port_file)
            .ok()
            .and_then(|p| p.trim().parse().ok())
        {
            break p;
        }
        if Instant::now() > deadline || child.try_wait().ok().flatten().is_some() {
            let _ = child.kill();
            return Err("the blob server did not start".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let r = measure(
        Bench {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            size,
            digest,
            nbdkit: match (nbdkit, plugin, client) {
                (Some(a), Some(b), Some(c)) => Some((a, b, c)),
                _ => None,
            },
        },
        size_mib,
        rounds,
        diag,
        &tune,
        only.as_deref(),
    );
    let _ = child.kill();
    let _ = child.wait();
    r
}

/// The blob server process: the same pseudo-random blob, served until killed.
fn serve_blob(args: &[String]) -> Result<(), String> {
    let size_mib: usize = args
        .get(1)
        .and_then(|n| n.parse().ok())
        .ok_or("--serve-blob wants a size in MiB")?;
    let port_file = match args.get(2..4) {
        Some([flag, path]) if flag == "--port-file" => path,
        _ => return Err("--port-file PATH is required".into()),
    };
    let latency_ms: u64 = match args.get(4..6) {
        Some([flag, ms]) if flag == "--latency-ms" => ms.parse().map_err(|_| "bad --latency-ms")?,
        _ => 0,
    };
    let server =
        range_server::RangeServer::start(random_blob(size_mib * MIB, BLOB_SEED), "PageBlob");
    server.set_latency_ms(latency_ms);
    let tmp = format!("{port_file}.tmp");
    std::fs::write(&tmp, server.addr.port().to_string()).map_err(|e| format!("{tmp}: {e}"))?;
    std::fs::rename(&tmp, port_file).map_err(|e| format!("{port_file}: {e}"))?;
    loop {
        std::thread::park();
    }
}

fn measure(
    b: Bench,
    size_mib: usize,
    rounds: usize,
    diag: bool,
    tune: &[Tune],
    only: Option<&[String]>,
) -> Result<bool, String> {
    let tuned: Vec<String> = tune
        .iter()
        .map(|(w, r, b)| match b {
            0 => format!("ours-w{w}r{r}"),
            b => format!("ours-w{w}r{r}b{b}"),
        })
        .collect();
    let mut names = vec!["ceiling-512k", "ceiling-4m", "ours"];
    names.extend(tuned.iter().map(String::as_str));
    if diag {
        names.extend(["blob-1m", "cache-1m"]);
    }
    if b.nbdkit.is_some() {
        names.push("nbdkit");
    }
    if let Some(only) = only {
        names.retain(|n| only.iter().any(|o| o == n));
    }
    let mut results: Vec<(&str, Vec<f64>)> = names.iter().map(|n| (*n, Vec::new())).collect();
    let mut wrong = Vec::new();
    let mut broken = Vec::new();
    for round in 0..rounds {
        let mut order = names.clone();
        if round % 2 == 1 {
            order.reverse();
        }
        for name in order {
            let r = match name {
                "ceiling-512k" => b.ceiling(512 << 10),
                "ceiling-4m" => b.ceiling(4 << 20),
                "ours" => b.ours(None),
                n if n.starts_with("ours-w") => {
                    let i = tuned.iter().position(|t| t == n).unwrap_or(0);
                    b.ours(tune.get(i).copied())
                }
                "blob-1m" => b.library(false),
                "cache-1m" => b.library(true),
                _ => b.nbdkit(),
            };
            match r {
                Ok((run, ok)) => {
                    println!(
                        "bench: round {} {name:<12} {:>7.1} MB/s ({:.2} s) data {} {}",
                        round + 1,
                        run.mbps,
                        run.secs,
                        if ok { "ok" } else { "WRONG" },
                        run.note
                    );
                    if !ok {
                        wrong.push(format!("{name} round {}", round + 1));
                    }
                    if let Some((_, v)) = results.iter_mut().find(|(n, _)| *n == name) {
                        v.push(run.mbps);
                    }
                }
                Err(e) => {
                    println!("bench: round {} {name}: FAILED: {e}", round + 1);
                    broken.push(format!("{name} round {}: {e}", round + 1));
                }
            }
        }
    }
    println!("bench: cold sequential read of {size_mib} MiB, MB/s worst / median / best ({rounds} rounds):");
    let get = |n: &str| {
        results
            .iter()
            .find(|(m, _)| *m == n)
            .and_then(|(_, v)| wmb(v))
    };
    for (name, v) in &results {
        if let Some((w, m, best)) = wmb(v) {
            println!("bench:   {name:<12} {w:>7.1} / {m:>7.1} / {best:>7.1}");
        }
    }
    let ratio = |a: &str, z: &str| {
        if let (Some(x), Some(y)) = (get(a), get(z)) {
            println!(
                "bench:   ratio {a}/{z}: {:.2} / {:.2} / {:.2}",
                x.0 / y.0,
                x.1 / y.1,
                x.2 / y.2
            );
        }
    };
    ratio("ours", "nbdkit");
    ratio("ours", "ceiling-512k");
    ratio("ours", "ceiling-4m");
    ratio("nbdkit", "ceiling-512k");
    if !broken.is_empty() {
        println!("bench: pipelines that failed to run: {}", broken.join("; "));
    }
    if !wrong.is_empty() {
        println!("bench: WRONG DATA in: {}", wrong.join(", "));
        return Ok(false);
    }
    Ok(broken.is_empty())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "--serve-blob") {
        if let Err(e) = serve_blob(&args) {
            eprintln!("guest_bench: {e}");
            std::process::exit(2);
        }
        return;
    }
    if args.iter().any(|a| a == "--bench") {
        match bench(&args) {
            Ok(true) => println!("bench: done"),
            Ok(false) => std::process::exit(1),
            Err(e) => {
                eprintln!("guest_bench: {e}");
                std::process::exit(2);
            }
        }
        return;
    }
    let ok = self_check();
    println!(
        "guest_bench self-check: {} passed, {} failed",
        u8::from(ok),
        u8::from(!ok)
    );
    if !ok {
        std::process::exit(1);
    }
}
