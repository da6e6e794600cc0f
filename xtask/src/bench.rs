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
}

impl Default for Options {
    fn default() -> Self {
        Options {
            size_mib: 256,
            rounds: 3,
            diag: false,
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
            other => bail!("unknown bench option `{other}`"),
        }
    }
    Ok(o)
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
    s.timeout =
        Duration::from_secs(600 + 300 * u64::from(opts.rounds) * u64::from(opts.size_mib) / 256);

    let common = Common::load(None)?;
    let index = ModuleIndex::load(&kernel, &paths.cache)?;
    let initrd = work.join("initramfs.cpio.gz");
    initramfs::build(&s, &common, &index, &initrd)?;
    eprintln!(
        "bench: booting one VM ({} MiB blob, {} round(s), TCG, 2 vCPUs, {} MiB; timeout {})",
        opts.size_mib,
        opts.rounds,
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
    .run();
    let _ = fs::remove_dir_all(&work);
    let outcome = outcome?;
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
/bench/guest_bench --bench --size-mib {size} --rounds {rounds} {diag}\
    --nbdkit {NBDKIT} --curl-plugin {CURL_PLUGIN} --nbd-client {NBD_CLIENT}
status=$?
echo "{verdict}$status"
exec poweroff -f
"#,
        size = opts.size_mib,
        rounds = opts.rounds,
        diag = if opts.diag { "--diag " } else { "" },
        verdict = qemu::VERDICT,
    )
}
