//! The issue-13 benchmark, guest side (not a test of its own; `harness = false`; `cargo xtask bench` builds it
//! static and runs it in one VM). Cold sequential read of one 256 MiB file inside an encrypted image (LUKS2,
//! ext4), served as a blob by the in-process HTTP range server (tests/support/range_server.rs, in a child
//! process) on the guest's 127.0.0.1, through ext4 on dm-crypt as the application reads it
//! (tests/support/bench_pipelines.rs):
//!
//! - `ours-nbd` / `ours-fuse`: our blob client + block cache (the manifest's defaults) behind the product's
//!   NBD front end (`/dev/nbdN`) or FUSE + loop front end (`/dev/loopN`);
//! - `ours-nbd-verity` / `ours-fuse-verity` (the image is sealed, `--verity-root` given): the same with
//!   dm-verity between the transport and dm-crypt, as the boot maps an image pinned by `verity_root_hash`
//!   (the whole tree checked first, the LUKS2 header read through the verified device);
//! - `nbdkit`: Debian's `nbdkit` curl plugin + `nbd-client`;
//! - `ceiling-512k` / `ceiling-4m`: a raw range-GET client over the whole blob, one keep-alive connection,
//!   no block layer (what any pipeline could at best reach);
//! - `dmcrypt-ram`: the image in tmpfs under a loop device: dm-crypt + ext4 alone (the layer limit; on the
//!   azure-uvm kernel dm-crypt runs the generic C AES).
//!
//! A pipeline the kernel cannot run (NBD on azure-uvm) is left out and said so. Each round runs every pipeline
//! once, the order reversed every other round. The report gives MB/s (10^6 bytes) worst / median / best, the
//! time from start to a readable mount and its phases (medians), and per-round ratios (each against
//! `ceiling-4m`, FUSE against NBD, verity against none per transport, under `--profile azure` each as a
//! fraction of the 60 MiB/s cap, mount time FUSE - NBD and verity - none), worst / median / best, the hash
//! tree's size, then one verdict line per target (judged on the median). Wrong data makes the exit status
//! 1; slowness never does.
//!
//! `--profile azure` makes the server an Azure page blob: first byte after 10 ms, 60 MiB/s and 500
//! requests/s per blob. `--latency-ms N` only delays every response. `--diag` adds `raw-nbd` / `raw-fuse`
//! (`dd` of the transport's device, no dm-crypt), `blob-1m` and `cache-1m` (the library without the
//! kernel). `--tune W:R[:B],...` adds `ours-nbd-wWrR[bB]` and `ours-fuse-wWrR[bB]` with W fetch workers,
//! readahead R blocks, B KiB blocks. `--only NAME,...` runs only those; there `ours-nbd-rw0` and
//! `ours-fuse-rw0` (the cache with a reorder window of 0: readahead only for requests in exact order) can
//! be named for an A/B of the window in the same boot.
//!
//! `guest_bench --bench --image PATH --image-bytes N --image-sha256 HEX --file NAME --file-sha256 HEX --key
//! PATH [--verity-root HEX --verity-offset BYTES] [--rounds N] [--profile azure] [--latency-ms N] [--diag] [--tune ...] [--only NAMES] [--nbdkit PATH
//! --curl-plugin PATH --nbd-client PATH]`. Run without `--bench` (as `cargo test` does) it checks its
//! ceiling client and the Azure profile's rate limit against a small blob and prints the usual summary.

#![allow(clippy::expect_used, clippy::unwrap_used)] // bench support: a failed expectation is the report

#[path = "support/bench_mount.rs"]
mod bench_mount;
#[path = "support/bench_pipelines.rs"]
mod bench_pipelines;
#[path = "support/range_server.rs"]
mod range_server;

use bench_pipelines::{Bench, Run, Tune, MIB};
use encfs_init::transport::Kind;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

/// Azure's per-page-blob throughput cap, in MB/s (10^6 bytes).
const CAP_MBPS: f64 = 60.0 * 1048576.0 / 1e6;

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

fn unhex(s: &str) -> Result<Vec<u8>, String> {
    encfs_init::hex::decode(s).ok_or(format!("bad hex {s}"))
}

/// The ceiling client reads a small blob right, and the Azure profile holds a reader to its byte rate.
fn self_check() -> bool {
    let data = random_blob(3 * MIB + 12345, 5);
    let server = range_server::RangeServer::start(data.clone(), "PageBlob");
    let plain = [512 << 10, 4 << 20].into_iter().all(|range| {
        let mut got = vec![0u8; data.len()];
        bench_pipelines::ceiling_read(server.addr, range, &mut got).is_ok() && got == data
    });
    let big = random_blob(24 * MIB, 6);
    let server = range_server::RangeServer::start(big.clone(), "PageBlob");
    server.set_profile(Some(range_server::Profile::azure()));
    let mut got = vec![0u8; big.len()];
    let t = Instant::now();
    let read = bench_pipelines::ceiling_read(server.addr, 4 << 20, &mut got).is_ok();
    let took = t.elapsed();
    let mib_s = 24.0 / took.as_secs_f64();
    // The limiter's promise: over any interval T at most rate x (T + SLACK) bytes, give or take one paced
    // piece. So 24 MiB take at least (24 MiB - one piece) / rate - SLACK, whatever the load; unpaced, a
    // loopback read takes a small fraction of that. Only a read that is too fast fails.
    let rate = range_server::Profile::azure().bytes_per_sec;
    let floor =
        ((big.len() - range_server::PACE_CHUNK) as f64 / rate) - range_server::SLACK.as_secs_f64();
    let paced = took.as_secs_f64() >= floor;
    if !paced {
        eprintln!(
            "guest_bench self-check: the Azure profile let {mib_s:.1} MiB/s through ({:.3} s, at least {floor:.3} s)",
            took.as_secs_f64()
        );
    }
    plain && read && got == big && paced
}

struct Args {
    bench: Bench,
    rounds: usize,
    profile: bool,
    latency_ms: u64,
    diag: bool,
    tune: Vec<Tune>,
    only: Option<Vec<String>>,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let mut rounds = 3usize;
    let (mut profile, mut diag, mut latency_ms) = (false, false, 0u64);
    let mut tune = Vec::new();
    let mut only: Option<Vec<String>> = None;
    let (mut image, mut image_bytes, mut image_sha, mut file, mut file_sha, mut key) =
        (None, None, None, None, None, None);
    let (mut nbdkit, mut plugin, mut client) = (None, None, None);
    let (mut verity_root, mut verity_offset) = (None, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().cloned().ok_or(format!("{a} wants a value"));
        match a.as_str() {
            "--bench" => {}
            "--diag" => diag = true,
            "--rounds" => rounds = val()?.parse().map_err(|_| "bad --rounds")?,
            "--profile" => match val()?.as_str() {
                "azure" => profile = true,
                "none" => profile = false,
                p => return Err(format!("unknown profile {p}")),
            },
            "--latency-ms" => latency_ms = val()?.parse().map_err(|_| "bad --latency-ms")?,
            "--tune" => {
                for spec in val()?.split(',') {
                    let f: Vec<u64> = spec.split(':').filter_map(|n| n.parse().ok()).collect();
                    match f.as_slice() {
                        [w, r] => tune.push((*w as usize, *r, 0)),
                        [w, r, b] => tune.push((*w as usize, *r, *b)),
                        _ => {
                            return Err(
                                "bad --tune: want WORKERS:READAHEAD[:BLOCK_KIB][,...]".into()
                            )
                        }
                    }
                }
            }
            "--only" => only = Some(val()?.split(',').map(str::to_string).collect()),
            "--image" => image = Some(val()?),
            "--image-bytes" => {
                image_bytes = Some(val()?.parse::<usize>().map_err(|_| "bad --image-bytes")?)
            }
            "--image-sha256" => image_sha = Some(unhex(&val()?)?),
            "--file" => file = Some(val()?),
            "--file-sha256" => file_sha = Some(unhex(&val()?)?),
            "--key" => key = Some(val()?),
            "--nbdkit" => nbdkit = Some(val()?),
            "--curl-plugin" => plugin = Some(val()?),
            "--nbd-client" => client = Some(val()?),
            "--verity-root" => {
                let root =
                    <[u8; 32]>::try_from(unhex(&val()?)?).map_err(|_| "bad --verity-root")?;
                verity_root = Some(root)
            }
            "--verity-offset" => {
                verity_offset = Some(val()?.parse::<u64>().map_err(|_| "bad --verity-offset")?)
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let need = |what: &str| format!("{what} is required");
    let key_path = key.ok_or(need("--key"))?;
    let bench = Bench {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        image_bytes: image_bytes.ok_or(need("--image-bytes"))?,
        image_digest: image_sha.ok_or(need("--image-sha256"))?,
        image_path: image.ok_or(need("--image"))?.into(),
        file_name: file.ok_or(need("--file"))?,
        file_digest: file_sha.ok_or(need("--file-sha256"))?,
        key: std::fs::read(&key_path).map_err(|e| format!("{key_path}: {e}"))?,
        nbdkit: match (nbdkit, plugin, client) {
            (Some(a), Some(b), Some(c)) => Some((a, b, c)),
            _ => None,
        },
        verity: match (verity_root, verity_offset) {
            (Some(root), Some(hash_offset)) => Some(bench_mount::Pin { root, hash_offset }),
            (None, None) => None,
            _ => return Err("--verity-root and --verity-offset go together".into()),
        },
    };
    Ok(Args {
        bench,
        rounds,
        profile,
        latency_ms,
        diag,
        tune,
        only,
    })
}

/// Start the range server child on the image; its address.
fn start_server(a: &Args) -> Result<(std::process::Child, SocketAddr), String> {
    let port_file = "/tmp/guest_bench.port";
    let _ = std::fs::remove_file(port_file);
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let mut child = Command::new(exe)
        .arg("--serve-file")
        .arg(&a.bench.image_path)
        .args(["--bytes", &a.bench.image_bytes.to_string()])
        .args(["--port-file", port_file])
        .args(["--latency-ms", &a.latency_ms.to_string()])
        .args(["--profile", if a.profile { "azure" } else { "none" }])
        .spawn()
        .map_err(|e| format!("starting the blob server: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if let Some(p) = std::fs::read_to_string(port_file)
            .ok()
            .and_then(|p| p.trim().parse::<u16>().ok())
        {
            return Ok((child, SocketAddr::from(([127, 0, 0, 1], p))));
        }
        if Instant::now() > deadline || child.try_wait().ok().flatten().is_some() {
            let _ = child.kill();
            return Err("the blob server did not start".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The blob server process: the image's bytes, served until killed.
fn serve_file(args: &[String]) -> Result<(), String> {
    let mut it = args.iter().skip(1);
    let path = it.next().ok_or("--serve-file wants a path")?.clone();
    let (mut bytes, mut port_file, mut latency_ms, mut profile) = (None, None, 0u64, false);
    while let Some(a) = it.next() {
        let v = it.next().ok_or(format!("{a} wants a value"))?;
        match a.as_str() {
            "--bytes" => bytes = Some(v.parse::<u64>().map_err(|_| "bad --bytes")?),
            "--port-file" => port_file = Some(v.clone()),
            "--latency-ms" => latency_ms = v.parse().map_err(|_| "bad --latency-ms")?,
            "--profile" => profile = v == "azure",
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let bytes = bytes.ok_or("--bytes is required")?;
    let port_file = port_file.ok_or("--port-file is required")?;
    let mut data = Vec::with_capacity(bytes as usize);
    let f = std::fs::File::open(&path).map_err(|e| format!("{path}: {e}"))?;
    std::io::Read::read_to_end(&mut std::io::Read::take(f, bytes), &mut data)
        .map_err(|e| format!("{path}: {e}"))?;
    if data.len() as u64 != bytes {
        return Err(format!("{path}: {} bytes, want {bytes}", data.len()));
    }
    let server = range_server::RangeServer::start(data, "PageBlob");
    server.set_latency_ms(latency_ms);
    if profile {
        server.set_profile(Some(range_server::Profile::azure()));
    }
    let tmp = format!("{port_file}.tmp");
    std::fs::write(&tmp, server.addr.port().to_string()).map_err(|e| format!("{tmp}: {e}"))?;
    std::fs::rename(&tmp, &port_file).map_err(|e| format!("{port_file}: {e}"))?;
    loop {
        std::thread::park();
    }
}

/// Worst / median / best of `v`; `higher_is_better` says which end is the worst.
fn wmb(v: &[f64], higher_is_better: bool) -> Option<(f64, f64, f64)> {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let (lo, mid, hi) = (*s.first()?, s[s.len() / 2], *s.last()?);
    Some(if higher_is_better {
        (lo, mid, hi)
    } else {
        (hi, mid, lo)
    })
}

fn tune_name(prefix: &str, (w, r, b): Tune) -> String {
    match b {
        0 => format!("{prefix}-w{w}r{r}"),
        b => format!("{prefix}-w{w}r{r}b{b}"),
    }
}

fn bench(args: &[String]) -> Result<bool, String> {
    let mut a = parse(args)?;
    let t = Instant::now();
    let (mut child, addr) = start_server(&a)?;
    a.bench.addr = addr;
    println!(
        "bench: image {} bytes served from {} (loaded in {:.1} s); server profile {}{}",
        a.bench.image_bytes,
        a.bench.image_path.display(),
        t.elapsed().as_secs_f64(),
        if a.profile {
            "azure (first byte 10 ms, 60 MiB/s and 500 requests/s per blob; requests over the rate wait)"
        } else {
            "none (loopback)"
        },
        if a.latency_ms > 0 {
            format!(", {} ms latency per response", a.latency_ms)
        } else {
            String::new()
        }
    );
    let r = measure(&a);
    let _ = child.kill();
    let _ = child.wait();
    r
}

fn measure(a: &Args) -> Result<bool, String> {
    let probe = encfs_init::transport::Probe::kernel();
    let has_nbd = probe.nbd_netlink || probe.nbd_device;
    let mut names: Vec<String> = ["ceiling-512k", "ceiling-4m", "dmcrypt-ram"]
        .map(String::from)
        .to_vec();
    let mut transports = vec![("ours-fuse", Kind::Fuse)];
    if has_nbd {
        transports.insert(0, ("ours-nbd", Kind::Nbd));
    } else {
        println!("bench: this kernel has no NBD: ours-nbd, nbdkit and raw-nbd cannot run here");
    }
    for (n, _) in &transports {
        names.push(n.to_string());
        names.extend(a.tune.iter().map(|t| tune_name(n, *t)));
        if a.bench.verity.is_some() {
            names.push(format!("{n}-verity"));
        }
    }
    if has_nbd && a.bench.nbdkit.is_some() {
        names.push("nbdkit".into());
    }
    if a.diag {
        if has_nbd {
            names.push("raw-nbd".into());
        }
        names.extend(["raw-fuse", "blob-1m", "cache-1m"].map(String::from));
    }
    if let Some(only) = &a.only {
        // The A/B of the cache's reorder window: named only, never run by default.
        for n in ["ours-nbd-rw0", "ours-fuse-rw0"] {
            if only.iter().any(|o| o == n) && (has_nbd || n.contains("fuse")) {
                names.push(n.to_string());
            }
        }
        names.retain(|n| only.contains(n));
    }
    let run_one = |name: &str| -> Result<Run, String> {
        let kind = |n: &str| {
            if n.starts_with("ours-nbd") || n == "raw-nbd" {
                Kind::Nbd
            } else {
                Kind::Fuse
            }
        };
        match name {
            "ceiling-512k" => a.bench.ceiling(512 << 10),
            "ceiling-4m" => a.bench.ceiling(4 << 20),
            "dmcrypt-ram" => a.bench.dmcrypt_ram(),
            "nbdkit" => a.bench.nbdkit(),
            "raw-nbd" | "raw-fuse" => {
                a.bench
                    .ours(kind(name), Bench::cache_config(None), true, false)
            }
            "ours-nbd-verity" | "ours-fuse-verity" => {
                a.bench
                    .ours(kind(name), Bench::cache_config(None), false, true)
            }
            "ours-nbd-rw0" | "ours-fuse-rw0" => {
                let mut config = Bench::cache_config(None);
                config.reorder_window = 0;
                a.bench.ours(kind(name), config, false, false)
            }
            "blob-1m" => a.bench.library(false),
            "cache-1m" => a.bench.library(true),
            n => {
                let tune =
                    a.tune.iter().copied().find(|t| {
                        tune_name("ours-nbd", *t) == n || tune_name("ours-fuse", *t) == n
                    });
                a.bench
                    .ours(kind(n), Bench::cache_config(tune), false, false)
            }
        }
    };
    // Per pipeline, per round: the run (None when it failed).
    let mut runs: BTreeMap<String, Vec<Option<Run>>> = BTreeMap::new();
    let (mut wrong, mut broken) = (Vec::new(), Vec::new());
    for round in 0..a.rounds {
        let mut order = names.clone();
        if round % 2 == 1 {
            order.reverse();
        }
        for name in &order {
            let r = run_one(name);
            match &r {
                Ok(run) => {
                    println!(
                        "bench: round {} {name:<16} {:>7.1} MB/s ({:.2} s){} data {} {}",
                        round + 1,
                        run.mbps,
                        run.secs,
                        run.mount_secs
                            .map_or(String::new(), |m| format!(", mounted in {m:.2} s")),
                        if run.ok { "ok" } else { "WRONG" },
                        run.note
                    );
                    if !run.ok {
                        wrong.push(format!("{name} round {}", round + 1));
                    }
                }
                Err(e) => {
                    println!("bench: round {} {name}: FAILED: {e}", round + 1);
                    broken.push(format!("{name} round {}: {e}", round + 1));
                }
            }
            runs.entry(name.clone()).or_default().push(r.ok());
        }
    }
    report(a, &names, &runs);
    if !broken.is_empty() {
        println!("bench: pipelines that failed to run: {}", broken.join("; "));
    }
    if !wrong.is_empty() {
        println!("bench: WRONG DATA in: {}", wrong.join(", "));
        return Ok(false);
    }
    Ok(broken.is_empty())
}

/// Per-round values of `f` over the rounds where every pipeline in `of` ran.
fn per_round(
    runs: &BTreeMap<String, Vec<Option<Run>>>,
    of: &[&str],
    f: impl Fn(&[&Run]) -> Option<f64>,
) -> Vec<f64> {
    let rounds = runs.values().map(Vec::len).max().unwrap_or(0);
    (0..rounds)
        .filter_map(|i| {
            let rs: Option<Vec<&Run>> = of
                .iter()
                .map(|n| runs.get(*n).and_then(|v| v.get(i)).and_then(Option::as_ref))
                .collect();
            f(&rs?)
        })
        .collect()
}

/// Prints one worst / median / best line: label, values, whether higher is better, unit, digits.
type PrintLine<'a> = &'a dyn Fn(&str, &[f64], bool, &str, usize);

/// The seconds of phase `name` of a run, when it has one.
fn phase(r: &Run, name: &str) -> Option<f64> {
    r.phases.iter().find(|(p, _)| *p == name).map(|(_, s)| *s)
}

/// What verity costs, per transport in the same rounds: the read (verity / none), the time to a readable
/// mount (verity - none) split into the whole-tree check, the mapping and the header read + unlock through
/// dm-verity against from the blob; and the tree's size.
fn report_verity(a: &Args, runs: &BTreeMap<String, Vec<Option<Run>>>, line: PrintLine<'_>) {
    let Some(pin) = &a.bench.verity else { return };
    println!("bench: what verity costs, per round in the same boot, worst / median / best (mount: the verity run's time to a readable mount - the plain one's; of it: the whole-tree check, the mapping, and the header read + unlock through dm-verity - from the blob):");
    for n in ["ours-nbd", "ours-fuse"] {
        let v = format!("{n}-verity");
        let of = [n, v.as_str()];
        let read = per_round(runs, &of, |r| Some(r[1].mbps / r[0].mbps));
        line(&format!("{v} / {n}, read"), &read, true, "", 3);
        let mount = per_round(runs, &of, |r| Some(r[1].mount_secs? - r[0].mount_secs?));
        line(&format!("{v} - {n}, mount s"), &mount, false, "", 3);
        let tree = per_round(runs, &of[1..], |r| phase(r[0], "tree check"));
        line("  tree check, s", &tree, false, "", 3);
        let map = per_round(runs, &of[1..], |r| phase(r[0], "verity map"));
        line("  verity map, s", &map, false, "", 3);
        let unlock = per_round(runs, &of, |r| {
            Some(phase(r[1], "header + unlock")? - phase(r[0], "header + unlock")?)
        });
        line("  header + unlock, verity - blob, s", &unlock, false, "", 3);
    }
    println!(
        "bench: {}",
        bench_mount::size_line(a.bench.image_bytes as u64, pin)
    );
}

fn report(a: &Args, names: &[String], runs: &BTreeMap<String, Vec<Option<Run>>>) {
    let line = |label: &str, v: &[f64], higher: bool, unit: &str, digits: usize| {
        if let Some((w, m, b)) = wmb(v, higher) {
            println!(
                "bench:   {label:<44} {w:>7.digits$} / {m:>7.digits$} / {b:>7.digits$}{unit}  ({} rounds)",
                v.len()
            );
        }
    };
    let rounds = a.rounds;
    println!(
        "bench: cold sequential read through ext4 on dm-crypt (ceilings: the raw blob), worst / median / best of {rounds} rounds:"
    );
    for n in names {
        let v = per_round(runs, &[n], |r| Some(r[0].mbps));
        line(&format!("{n} MB/s"), &v, true, "", 1);
    }
    for n in names {
        let v = per_round(runs, &[n], |r| r[0].mount_secs);
        line(&format!("{n} start to readable mount, s"), &v, false, "", 2);
    }
    for n in names {
        let Some(first) = runs.get(n).and_then(|v| v.iter().flatten().next()) else {
            continue;
        };
        let parts: Vec<String> = first
            .phases
            .iter()
            .filter_map(|(p, _)| {
                let v = per_round(runs, &[n], |r| phase(r[0], p));
                wmb(&v, false).map(|(_, m, _)| format!("{p} {m:.3}"))
            })
            .collect();
        if !parts.is_empty() {
            println!(
                "bench:   {n} to a readable mount, median s: {}",
                parts.join(", ")
            );
        }
    }
    println!("bench: ratios, per round, worst / median / best:");
    for n in names.iter().filter(|n| !n.starts_with("ceiling")) {
        let v = per_round(runs, &[n, "ceiling-4m"], |r| Some(r[0].mbps / r[1].mbps));
        line(&format!("{n} / ceiling-4m"), &v, true, "", 3);
    }
    let fuse_nbd = per_round(runs, &["ours-fuse", "ours-nbd"], |r| {
        Some(r[0].mbps / r[1].mbps)
    });
    line("ours-fuse / ours-nbd", &fuse_nbd, true, "", 3);
    for n in ["ours-nbd", "ours-fuse"] {
        let rw0 = format!("{n}-rw0");
        let v = per_round(runs, &[n, &rw0], |r| Some(r[0].mbps / r[1].mbps));
        line(
            &format!("{n} / {rw0} (reorder window A/B)"),
            &v,
            true,
            "",
            3,
        );
    }
    let mount_gap = per_round(runs, &["ours-fuse", "ours-nbd"], |r| {
        Some(r[0].mount_secs? - r[1].mount_secs?)
    });
    line("mount ours-fuse - ours-nbd, s", &mount_gap, false, "", 3);
    report_verity(a, runs, &line);
    let mut cap = BTreeMap::new();
    if a.profile {
        for n in names {
            let v = per_round(runs, &[n], |r| Some(r[0].mbps / CAP_MBPS));
            line(&format!("{n} / 60 MiB/s cap"), &v, true, "", 3);
            cap.insert(n.as_str(), v);
        }
    }
    println!("bench: targets (judged on the median; never a failure):");
    let verdict = |what: &str, v: &[f64], ok: &dyn Fn(f64) -> bool| {
        match wmb(v, true) {
        Some((_, m, _)) => println!(
            "bench:   {what}: median {m:.3}: {}",
            if ok(m) { "met" } else { "MISSED" }
        ),
        None => println!("bench:   {what}: not measured (a pipeline it needs did not run: no NBD in this kernel, or left out by --only)"),
    }
    };
    verdict("ours-fuse >= 0.8 x ours-nbd (same boot)", &fuse_nbd, &|m| {
        m >= 0.8
    });
    verdict("mount ours-fuse <= ours-nbd + 0.1 s", &mount_gap, &|m| {
        m <= 0.1
    });
    for n in ["ours-nbd", "ours-fuse"] {
        let v = per_round(runs, &[n, "ceiling-4m"], |r| Some(r[0].mbps / r[1].mbps));
        verdict(&format!("{n} >= 0.8 x ceiling-4m"), &v, &|m| m >= 0.8);
        if a.profile {
            let v = cap.get(n).cloned().unwrap_or_default();
            verdict(&format!("{n} >= 0.9 x the 60 MiB/s cap"), &v, &|m| m >= 0.9);
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "--serve-file") {
        if let Err(e) = serve_file(&args) {
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
