//! `cargo xtask bench`: the issue-6 benchmark in one VM boot (not part of `cargo xtask test`).
//!
//! Cold sequential read of a random blob (256 MiB by default) served by the in-guest HTTP range server,
//! through: a raw range-GET client (the ceiling, 512 KiB and 4 MiB ranges), our blob client + cache + NBD
//! server on `/dev/nbdN`, and Debian's `nbdkit` curl plugin + `nbd-client`. The guest side is
//! `tests/guest_bench.rs`, built static and optimized as the product ships (`--release`); its report lines
//! start with `bench:` and are printed here. The guest exits non-zero when any pipeline returned wrong data
//! (or could not run); slowness is never a failure. The full console is in `.cache/vm/logs/bench.log`.
//!
//! Under TCG absolute numbers are slow and noisy: compare the ratios printed, all from the same boot.
//!
//! Options: `--latency-ms N` makes the range server wait N ms before every response (a remote service's
//! round trip; loopback has none, so only then can parallel fetching show what it buys against Azure's
//! ~5-20 ms range GETs); `--tune W:R[:B][,...]` adds `ours` runs with W fetch workers, a readahead of R
//! blocks and B KiB blocks (default budget); `--only NAME[,NAME...]` measures only those pipelines (`ceiling-512k`, `ceiling-4m`, `ours`,
//! `ours-wWrR[bB]`, `blob-1m`, `cache-1m`, `nbdkit`).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::initramfs::{self, Common, ModuleIndex};
use crate::qemu::{self, Accel, Boot};
use crate::scenario::{Expect, Scenario};
use crate::setup::{self, Apt};
use crate::util::{bail, secs, Result};
use crate::vmtest::{self, Paths};

/// Where the peers live on the host (and, copied with their libraries, in the guest).
const NBDKIT: &str = "/usr/bin/nbdkit";
const CURL_PLUGIN: &str = "/usr/lib/x86_64-linux-gnu/nbdkit/plugins/nbdkit-curl-plugin.so";
const NBD_CLIENT: &str = "/usr/sbin/nbd-client";

/// Options of `bench`.
#[derive(Debug)]
pub struct Options {
    /// Blob size in MiB.
    pub size_mib: u32,
    /// Rounds (each measures every pipeline once).
    pub rounds: u32,
    /// Also measure the library without the kernel (blob client alone, cache alone).
    pub diag: bool,
    /// Delay in ms the range server adds before every response (0: loopback as is).
    pub latency_ms: u32,
    /// Extra `ours` runs with other cache tunings, `WORKERS:READAHEAD[:BLOCK_KIB][,...]`.
    pub tune: Option<String>,
    /// Only these pipelines (comma-separated names), when given.
    pub only: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            size_mib: 256,
            rounds: 3,
            diag: false,
            latency_ms: 0,
            tune: None,
            only: None,
        }
    }
}

/// Parse `bench`'s arguments.
pub fn parse(args: &[String]) -> Result<Options> {
    let mut o = Options::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let num = |v: Option<&String>, lo: u32, hi: u32| {
            v.and_then(|n| n.parse::<u32>().ok())
                .filter(|n| (lo..=hi).contains(n))
        };
        match a.as_str() {
            "--size-mib" => match num(it.next(), 16, 1024) {
                Some(n) => o.size_mib = n,
                None => bail!("--size-mib wants a number from 16 to 1024"),
            },
            "--rounds" => match num(it.next(), 1, 9) {
                Some(n) => o.rounds = n,
                None => bail!("--rounds wants a number from 1 to 9"),
            },
            "--diag" => o.diag = true,
            "--latency-ms" => match num(it.next(), 0, 1000) {
                Some(n) => o.latency_ms = n,
                None => bail!("--latency-ms wants a number from 0 to 1000"),
            },
            "--tune" => {
                match it.next().filter(|v| valid_list(v, true)) {
                    Some(v) => o.tune = Some(v.clone()),
                    None => {
                        bail!("--tune wants WORKERS:READAHEAD[:BLOCK_KIB][,...], e.g. 8:16,4:8,4:4:4096")
                    }
                }
            }
            "--only" => match it.next().filter(|v| valid_list(v, false)) {
                Some(v) => o.only = Some(v.clone()),
                None => bail!("--only wants pipeline names, e.g. ceiling-4m,ours,nbdkit"),
            },
            other => bail!("unknown bench option `{other}`"),
        }
    }
    Ok(o)
}

/// A comma-separated list of names (`[a-z0-9:-]`), or of `N:M` pairs when `pairs`.
fn valid_list(v: &str, pairs: bool) -> bool {
    !v.is_empty()
        && v.split(',').all(|x| {
            if pairs {
                let f: Vec<&str> = x.split(':').collect();
                (2..=3).contains(&f.len())
                    && f[0].parse::<u32>().is_ok_and(|a| (1..=64).contains(&a))
                    && f[1].parse::<u32>().is_ok()
                    && f.get(2)
                        .is_none_or(|b| b.parse::<u32>().is_ok_and(|b| b >= 4 && b % 4 == 0))
            } else {
                !x.is_empty()
                    && x.bytes().all(|c| {
                        c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b':'
                    })
            }
        })
}

/// Run the benchmark; `Ok(false)` when the guest reported wrong data or a pipeline that did not run.
pub fn run(paths: &Paths, opts: &Options) -> Result<bool> {
    let t_all = Instant::now();
    let kernel = vmtest::setup(paths, false)?;
    let installed = setup::ensure_listed(
        &Apt::new(&paths.cache),
        &paths.cache.join("apt-install-bench.log"),
        setup::BENCH_PACKAGES,
    )?;
    if !installed.is_empty() {
        eprintln!("bench: installed {}", installed.join(" "));
    }
    for p in [NBDKIT, CURL_PLUGIN, NBD_CLIENT] {
        if !Path::new(p).is_file() {
            bail!("{p} is missing after installing the bench packages");
        }
    }
    crate::tasks::ensure_musl_target()?;
    if !qemu::available() {
        bail!("qemu-system-x86_64 is not installed");
    }
    let t = Instant::now();
    let built = vmtest::build_cargo_tests_in(&paths.root, &["guest_bench".to_string()], true)?;
    let Some((_, exe)) = built.into_iter().next() else {
        bail!("cargo built no guest_bench")
    };
    eprintln!(
        "bench: built guest_bench (release) in {}",
        secs(t.elapsed())
    );

    let work = paths
        .cache
        .join("work")
        .join(format!("bench-{}", std::process::id()));
    let logs = paths.cache.join("logs");
    for d in [&work, &logs] {
        fs::create_dir_all(d)
            .map_err(|e| crate::util::Error::msg(format!("creating {}: {e}", d.display())))?;
    }
    let script = work.join("init.sh");
    fs::write(&script, init_script(opts))
        .map_err(|e| crate::util::Error::msg(format!("writing {}: {e}", script.display())))?;
    let mut s = Scenario::probe(script);
    s.name = "bench".into();
    s.modules = vec!["nbd".into()];
    s.files = vec![(exe, "/bench/guest_bench".into())];
    s.host_tools = [NBDKIT, CURL_PLUGIN, NBD_CLIENT]
        .iter()
        .map(PathBuf::from)
        .collect();
    s.expect = Expect::Status(0);
    // The blob lives in the server's memory; the page cache, our cache (64 MiB) and each run's buffers
    // come on top.
    s.memory_mib = 3072;
    let tunes = opts
        .tune
        .as_ref()
        .map_or(0, |t| t.split(',').count() as u64);
    s.timeout = Duration::from_secs(
        600 + 300 * (1 + tunes / 2) * u64::from(opts.rounds) * u64::from(opts.size_mib) / 256,
    );

    let common = Common::load(None)?;
    let index = ModuleIndex::load(&kernel, &paths.cache)?;
    let initrd = work.join("initramfs.cpio.gz");
    initramfs::build(&s, &common, &index, &initrd)?;
    eprintln!(
        "bench: booting one VM ({} MiB blob, {} round(s), {} ms latency, TCG, 2 vCPUs, {} MiB; timeout {})",
        opts.size_mib,
        opts.rounds,
        opts.latency_ms,
        s.memory_mib,
        secs(s.timeout)
    );
    let log = qemu::log_path(&logs, &s.name);
    let outcome = Boot {
        kernel: kernel.vmlinux.clone(),
        initrd,
        append: String::new(),
        init_args: vec![],
        timeout: s.timeout,
        memory_mib: s.memory_mib,
        cpus: 2,
        accel: Accel::Tcg,
        log: log.clone(),
        disk: None,
    }
    .run_retrying(qemu::EMULATOR_RETRIES);
    let _ = fs::remove_dir_all(&work);
    let outcome = outcome?;
    for n in &outcome.notes {
        println!("bench: note: {n}");
    }
    for l in outcome.console.iter().filter(|l| l.contains("bench:")) {
        println!("{}", l.trim_start());
    }
    let verdict = vmtest::evaluate(&s, &outcome);
    println!(
        "bench: total {} (boot {}), console log {}",
        secs(t_all.elapsed()),
        secs(outcome.elapsed),
        log.display()
    );
    match verdict {
        Ok(_) => Ok(true),
        Err(why) => {
            println!("bench: FAILED: {why}");
            for l in outcome.tail(30) {
                println!("| {l}");
            }
            Ok(false)
        }
    }
}

/// The guest's /init: mounts, the nbd module, loopback up, the bench, the verdict, power off.
fn init_script(opts: &Options) -> String {
    format!(
        r#"#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
release=$(cat /etc/vmtest/release)
while read -r m; do insmod "/lib/modules/$release/$m" || echo "FAILED insmod $m"; done < /etc/vmtest/modules.load
ip link set lo up 2>/dev/null || ifconfig lo 127.0.0.1 up
echo "bench: guest kernel $(uname -r), $(grep -c ^processor /proc/cpuinfo) vCPUs, $(grep MemTotal /proc/meminfo)"
echo "bench: /dev/nbd0 read_ahead_kb $(cat /sys/block/nbd0/queue/read_ahead_kb), max_sectors_kb $(cat /sys/block/nbd0/queue/max_sectors_kb)"
/bench/guest_bench --bench --size-mib {size} --rounds {rounds} --latency-ms {latency} {diag}{tune}{only}\
    --nbdkit {NBDKIT} --curl-plugin {CURL_PLUGIN} --nbd-client {NBD_CLIENT}
status=$?
echo "{verdict}$status"
exec poweroff -f
"#,
        size = opts.size_mib,
        rounds = opts.rounds,
        diag = if opts.diag { "--diag " } else { "" },
        latency = opts.latency_ms,
        tune = opts
            .tune
            .as_ref()
            .map_or(String::new(), |t| format!("--tune {t} ")),
        only = opts
            .only
            .as_ref()
            .map_or(String::new(), |t| format!("--only {t} ")),
        verdict = qemu::VERDICT,
    )
}
