//! `cargo xtask bench`: the issue-13 benchmark in one VM boot (not part of `cargo xtask test`).
//!
//! Cold sequential read of one 256 MiB random file in an encrypted image (LUKS2, ext4; made on the host by
//! `encfs-init image create --verity`, so sealed with a dm-verity hash tree, cached under
//! `.cache/vm/bench-image-<MiB>/`, attached to the guest as its virtio disk), served as a blob by the
//! in-guest HTTP range server, through ext4 on dm-crypt as the application reads it: ours-nbd (our blob
//! client + cache + NBD front end), ours-fuse (the same engine behind our FUSE + loop front end),
//! ours-nbd-verity / ours-fuse-verity (the same with dm-verity under dm-crypt, as the boot maps an image
//! pinned by `verity_root_hash`: the cost of tamper evidence), nbdkit (`nbdkit curl` + `nbd-client`), beside the ceilings (a raw
//! range-GET client, 512 KiB and 4 MiB ranges) and dmcrypt-ram (dm-crypt + ext4 over a tmpfs file: the layer
//! limit). The guest side is `tests/guest_bench.rs` with `tests/support/bench_pipelines.rs`, built static
//! and optimized as the product ships (`--release`); its report lines start with `bench:` and are printed
//! here. The guest exits non-zero when any pipeline returned wrong data (or could not run); slowness is
//! never a failure. The full console is in `.cache/vm/logs/bench.log`.
//!
//! Under TCG absolute numbers are slow and noisy: compare the ratios printed, all from the same boot.
//!
//! Options: `--kernel debian|azure-uvm` (the azure-uvm kernel has no NBD: only FUSE, the ceilings and
//! dmcrypt-ram run there); `--profile azure` makes the range server an Azure page blob (first byte after
//! 10 ms, 60 MiB/s and 500 requests/s per blob); `--latency-ms N` only delays every response; `--tune
//! W:R[:B][,...]` adds ours-nbd/ours-fuse runs with W fetch workers, a readahead of R blocks and B KiB
//! blocks; `--only NAME[,NAME...]` measures only those pipelines (`ceiling-512k`, `ceiling-4m`,
//! `dmcrypt-ram`, `ours-nbd`, `ours-fuse`, `ours-nbd-verity`, `ours-fuse-verity`, `nbdkit`, with `--diag` also `raw-nbd`, `raw-fuse`, `blob-1m`,
//! `cache-1m`).

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::initramfs::{self, Common, ModuleIndex};
use crate::kernel::{self, Flavor};
use crate::qemu::{self, Accel, Boot};
use crate::scenario::{Expect, Scenario};
use crate::setup::{self, Apt};
use crate::util::{bail, secs, stdout_of, Context, Result};
use crate::vmtest::{self, Paths};

/// Where the peers live on the host (and, copied with their libraries, in the guest).
const NBDKIT: &str = "/usr/bin/nbdkit";
const CURL_PLUGIN: &str = "/usr/lib/x86_64-linux-gnu/nbdkit/plugins/nbdkit-curl-plugin.so";
const NBD_CLIENT: &str = "/usr/sbin/nbd-client";
/// The bench image's raw key (the LUKS2 passphrase, as upstream uses the key): fixed, it protects nothing.
const BENCH_KEY: &[u8; 32] = b"encfs-init-bench-key-0123456789a";
/// The one file in the bench image.
const FILE_NAME: &str = "data.bin";

/// Options of `bench`.
#[derive(Debug)]
pub struct Options {
    /// Size of the file in the image, MiB.
    pub size_mib: u32,
    /// Rounds (each measures every pipeline once).
    pub rounds: u32,
    /// Also measure the transports' raw devices and the library without the kernel.
    pub diag: bool,
    /// Delay in ms the range server adds before every response (0: loopback as is).
    pub latency_ms: u32,
    /// The range server behaves like an Azure page blob.
    pub azure: bool,
    /// Which kernel the VM boots.
    pub kernel: Flavor,
    /// Extra `ours-*` runs with other cache tunings, `WORKERS:READAHEAD[:BLOCK_KIB][,...]`.
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
            azure: false,
            kernel: Flavor::Debian,
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
            "--profile" => match it.next().map(String::as_str) {
                Some("azure") => o.azure = true,
                Some("none") => o.azure = false,
                _ => bail!("--profile wants `azure` (or `none`)"),
            },
            "--kernel" => match it.next().and_then(|k| Flavor::parse(k)) {
                Some(k) => o.kernel = k,
                None => bail!("--kernel wants `debian` or `azure-uvm`"),
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
                None => bail!("--only wants pipeline names, e.g. ceiling-4m,ours-nbd,ours-fuse"),
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

/// The bench image on the host: made once per file size, then reused.
struct Image {
    path: PathBuf,
    key: PathBuf,
    bytes: u64,
    sha256: String,
    file_sha256: String,
    /// The verity pin `image create --verity` printed: root hash (hex) and hash offset.
    verity_root: String,
    verity_offset: u64,
}

fn sha256_of(path: &Path) -> Result<String> {
    let out = stdout_of(Command::new("sha256sum").arg(path))?;
    match out.split_whitespace().next() {
        Some(h) if h.len() == 64 => Ok(h.to_string()),
        _ => bail!("sha256sum {} printed {out:?}", path.display()),
    }
}

/// `.cache/vm/bench-image-<MiB>/`: `image.img` (LUKS2 + ext4 holding [`FILE_NAME`], `size_mib` MiB from
/// /dev/urandom, sealed with a dm-verity tree), `key.bin`, and `sums` (the image's and the file's SHA-256,
/// the verity root hash and hash offset), written last; a cache from before the seal is made again.
fn bench_image(paths: &Paths, encfs_init: &Path, size_mib: u32) -> Result<Image> {
    let dir = paths.cache.join(format!("bench-image-{size_mib}"));
    let (path, key, sums) = (dir.join("image.img"), dir.join("key.bin"), dir.join("sums"));
    let current = fs::read_to_string(&sums).is_ok_and(|t| t.split_whitespace().count() == 4);
    if !current {
        let t = Instant::now();
        let _ = fs::remove_dir_all(&dir);
        let content = dir.join("content");
        fs::create_dir_all(&content).with_context(|| format!("creating {}", content.display()))?;
        let file = content.join(FILE_NAME);
        let mut out =
            fs::File::create(&file).with_context(|| format!("creating {}", file.display()))?;
        let random = fs::File::open("/dev/urandom").context("opening /dev/urandom")?;
        std::io::copy(&mut random.take(u64::from(size_mib) << 20), &mut out)
            .with_context(|| format!("writing {}", file.display()))?;
        drop(out);
        fs::write(&key, BENCH_KEY).with_context(|| format!("writing {}", key.display()))?;
        let file_sha = sha256_of(&file)?;
        let printed = stdout_of(
            Command::new(encfs_init)
                .args(["image", "create", "--verity", "--key-file"])
                .arg(&key)
                .arg("--from")
                .arg(&content)
                .arg(&path),
        )?;
        let _ = fs::remove_dir_all(&content);
        let pinned = |name: &str| {
            printed.lines().find_map(|l| {
                let (k, v) = l.split_once('=')?;
                (k.trim() == name).then(|| v.trim().trim_matches('"').to_string())
            })
        };
        let (Some(root), Some(offset)) = (pinned("verity_root_hash"), pinned("verity_hash_offset"))
        else {
            bail!("image create --verity printed no verity pin: {printed:?}")
        };
        let image_sha = sha256_of(&path)?;
        fs::write(&sums, format!("{image_sha} {file_sha} {root} {offset}\n"))
            .with_context(|| format!("writing {}", sums.display()))?;
        eprintln!(
            "bench: made the bench image {} in {}",
            path.display(),
            secs(t.elapsed())
        );
    }
    let text = fs::read_to_string(&sums).with_context(|| format!("reading {}", sums.display()))?;
    let mut w = text.split_whitespace();
    let (Some(sha256), Some(file_sha256), Some(root), Some(Ok(offset))) = (
        w.next(),
        w.next(),
        w.next(),
        w.next().map(str::parse::<u64>),
    ) else {
        bail!(
            "{}: unreadable; remove {} to remake it",
            sums.display(),
            dir.display()
        )
    };
    let bytes = fs::metadata(&path)
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    Ok(Image {
        path,
        key,
        bytes,
        sha256: sha256.to_string(),
        file_sha256: file_sha256.to_string(),
        verity_root: root.to_string(),
        verity_offset: offset,
    })
}

/// The host's load averages, printed beside every run (the machine is shared: numbers are noisy).
fn load() -> String {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into())
}

/// Run the benchmark; `Ok(false)` when the guest reported wrong data or a pipeline that did not run.
pub fn run(paths: &Paths, opts: &Options) -> Result<bool> {
    let t_all = Instant::now();
    let debian = vmtest::setup(paths, false)?;
    let apt = Apt::new(&paths.cache);
    let installed = setup::ensure_listed(
        &apt,
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
    let kernel = match opts.kernel {
        Flavor::Debian => debian,
        k => kernel::ensure_flavor(&paths.root, &paths.cache, &apt, k)?,
    };
    crate::tasks::ensure_musl_target()?;
    if !qemu::available() {
        bail!("qemu-system-x86_64 is not installed");
    }
    let t = Instant::now();
    let encfs_init = vmtest::build_encfs_init(&paths.root)?;
    let built = vmtest::build_cargo_tests_in(&paths.root, &["guest_bench".to_string()], true)?;
    let Some((_, exe)) = built.into_iter().next() else {
        bail!("cargo built no guest_bench")
    };
    eprintln!(
        "bench: built encfs-init and guest_bench (release) in {}",
        secs(t.elapsed())
    );
    let image = bench_image(paths, &encfs_init, opts.size_mib)?;

    let work = paths
        .cache
        .join("work")
        .join(format!("bench-{}", std::process::id()));
    let logs = paths.cache.join("logs");
    for d in [&work, &logs] {
        fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let script = work.join("init.sh");
    let nbd = opts.kernel == Flavor::Debian;
    fs::write(&script, init_script(opts, &image, nbd))
        .with_context(|| format!("writing {}", script.display()))?;
    let mut s = Scenario::probe(script);
    s.name = "bench".into();
    s.kernel = opts.kernel;
    if nbd {
        // The azure-uvm kernel has everything built in (and no NBD).
        s.modules = [
            "nbd",
            "loop",
            "dm-mod",
            "dm-crypt",
            "dm-verity",
            "xts",
            "aesni-intel",
            // dm-verity's SHA-256 (sha256-ni / -avx2 / -ssse3) as udev would load it; without it, the C one.
            "sha256-ssse3",
            "virtio_blk",
        ]
        .map(String::from)
        .to_vec();
        s.host_tools = [NBDKIT, CURL_PLUGIN, NBD_CLIENT]
            .iter()
            .map(PathBuf::from)
            .collect();
    }
    s.files = vec![
        (exe, "/bench/guest_bench".into()),
        (image.key.clone(), "/bench/key.bin".into()),
    ];
    s.expect = Expect::Status(0);
    // The blob lives in the server's memory, a copy in tmpfs (dmcrypt-ram), the ceilings' buffers and the
    // page cache on top.
    s.memory_mib = 3072;
    let tunes = opts
        .tune
        .as_ref()
        .map_or(0, |t| t.split(',').count() as u64);
    let slow = if opts.azure { 2 } else { 1 };
    s.timeout = Duration::from_secs(
        600 + 300 * slow * (1 + tunes / 2) * u64::from(opts.rounds) * u64::from(opts.size_mib)
            / 256,
    );

    let common = Common::load(None, None)?;
    let index = ModuleIndex::load(&kernel, &paths.cache)?;
    let initrd = work.join("initramfs.cpio.gz");
    initramfs::build(&s, &common, &index, &initrd)?;
    println!(
        "bench: booting one VM, kernel {} ({}), profile {}, {} MiB file, {} round(s), {} ms latency, TCG, 2 vCPUs, {} MiB; timeout {}; host load {}",
        opts.kernel.name(),
        kernel.release,
        if opts.azure { "azure" } else { "none" },
        opts.size_mib,
        opts.rounds,
        opts.latency_ms,
        s.memory_mib,
        secs(s.timeout),
        load()
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
        disk: Some(image.path.clone()),
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
        "bench: total {} (boot {}), host load at the end {}, console log {}",
        secs(t_all.elapsed()),
        secs(outcome.elapsed),
        load(),
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

/// The guest's /init: mounts, modules (Debian), loopback up, the bench, the verdict, power off.
fn init_script(opts: &Options, image: &Image, nbd: bool) -> String {
    let peers = if nbd {
        format!("--nbdkit {NBDKIT} --curl-plugin {CURL_PLUGIN} --nbd-client {NBD_CLIENT}")
    } else {
        String::new()
    };
    format!(
        r#"#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /run /mnt /tmp
if [ -f /etc/vmtest/modules.load ]; then
    release=$(cat /etc/vmtest/release)
    while read -r m; do insmod "/lib/modules/$release/$m" || echo "FAILED insmod $m"; done < /etc/vmtest/modules.load
fi
ip link set lo up 2>/dev/null || ifconfig lo 127.0.0.1 up
echo "bench: guest kernel $(uname -r), $(grep -c ^processor /proc/cpuinfo) vCPUs, $(grep MemTotal /proc/meminfo)"
echo "bench: AES drivers in /proc/crypto: $(grep -E '^driver +: (aes|xts)-' /proc/crypto | sed 's/.*: //' | sort -u | tr '\n' ' ')"
echo "bench: SHA-256 drivers in /proc/crypto (dm-verity): $(grep -E '^driver +: sha256-' /proc/crypto | sed 's/.*: //' | sort -u | tr '\n' ' ')"
[ -e /sys/block/nbd0 ] && echo "bench: /dev/nbd0 read_ahead_kb $(cat /sys/block/nbd0/queue/read_ahead_kb), max_sectors_kb $(cat /sys/block/nbd0/queue/max_sectors_kb)"
/bench/guest_bench --bench --rounds {rounds} --profile {profile} --latency-ms {latency} {diag}{tune}{only}\
    --image /dev/vda --image-bytes {bytes} --image-sha256 {sha} --file {FILE_NAME} --file-sha256 {file_sha} \
    --verity-root {root} --verity-offset {offset} --key /bench/key.bin {peers}
status=$?
echo "{verdict}$status"
exec poweroff -f
"#,
        rounds = opts.rounds,
        profile = if opts.azure { "azure" } else { "none" },
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
        bytes = image.bytes,
        sha = image.sha256,
        file_sha = image.file_sha256,
        root = image.verity_root,
        offset = image.verity_offset,
        verdict = qemu::SCRIPT_VERDICT,
    )
}
