//! `cargo xtask`: project tasks that need more than `cargo test` (see README, "Tests").
//!
//! ```text
//! cargo xtask test
//!     Every test: host tests, the fixture tests (when ../shared is there), fuzz smoke, the image, vmtest.
//!     Installs everything it needs first (packages, musl target, Azurite, kernel).
//! cargo xtask vmtest [--list] [--keep] [--jobs N] [--refresh] [NAME|PREFIX*...]
//!     Boot every scenario of tests/vm/ (or the named ones) under QEMU with encfs-init, or a scenario's
//!     script, as PID 1. Installs what it needs on a Debian 12 host (root) on first use.
//! cargo xtask setup [--refresh]
//!     Only the host part: packages (QEMU 10 from bookworm-backports, busybox-static, ...), the kernel, and
//!     Azurite (the Azure Storage emulator, npm) for tests/blob_azurite.rs under `.cache/azurite/`.
//! cargo xtask demo
//!     Install what the VM rig needs, then boot the demo VM (scenario tests/vm/demo) and show what it printed.
//! cargo xtask bench [--kernel debian|azure-uvm] [--profile azure] [--rounds N] [--size-mib N] [--latency-ms N]
//!                   [--diag] [--tune W:R[:B],...] [--only NAMES]
//!     The issue-13 benchmark in one VM (not part of `test`): cold sequential read of a file through ext4 on
//!     dm-crypt over ours-NBD, ours-FUSE and nbdkit curl + nbd-client, beside the ceilings (raw range GETs)
//!     and dm-crypt over RAM; MB/s, time to a readable mount, ratios and target verdicts.
//! ```
//!
//! Everything lives under `.cache/vm/` (apt state, the unpacked kernel, logs, images), Azurite under
//! `.cache/azurite/`; no network traffic except apt to the machine's configured Debian mirror and npm to its
//! registry. The guest never has a NIC.

mod bench;
mod cpio;
mod ignored;
mod initramfs;
mod kernel;
mod kernel_build;
mod qemu;
mod scenario;
mod setup;
mod setup_azurite;
mod tasks;
mod tomlish;
mod util;
mod vmtest;

use std::process::ExitCode;

use util::{bail, Result};
use vmtest::{Options, Paths};

const USAGE: &str =
    "usage: cargo xtask test      (everything CI runs: host tests, fixture tests, image, VM scenarios)
       cargo xtask demo      (boot the demo VM)
       cargo xtask bench [--kernel debian|azure-uvm] [--profile azure] [--rounds N] [--size-mib N]
                         [--latency-ms N] [--diag] [--tune W:R[:B],...] [--only NAMES]
                                                                (the read benchmark, one VM)
       cargo xtask vmtest [--list] [--keep] [--jobs N] [--refresh] [NAME|PREFIX*...]
       cargo xtask setup [--refresh]";

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(args: Vec<String>) -> Result<bool> {
    let Some((task, rest)) = args.split_first() else {
        bail!("{USAGE}")
    };
    let paths = Paths::discover();
    match task.as_str() {
        "vmtest" => vmtest::run(&paths, &parse_vmtest(rest)?),
        "setup" => {
            let refresh = match rest {
                [] => false,
                [r] if r == "--refresh" => true,
                _ => bail!("{USAGE}"),
            };
            tasks::prepare(&paths, true, refresh)?;
            Ok(true)
        }
        "demo" => tasks::demo(&paths, rest),
        "bench" => bench::run(&paths, &bench::parse(rest)?),
        "test" => tasks::test(&paths, rest),
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(true)
        }
        other => bail!("unknown task `{other}`\n{USAGE}"),
    }
}

/// Boots at once: one per host CPU, at most 4. Under TCG each guest is CPU-bound only while booting, so two
/// boots on two cores finish the suite ~25% sooner than one at a time; `--jobs 1` serializes.
pub(crate) fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().clamp(1, 4))
}

fn parse_vmtest(args: &[String]) -> Result<Options> {
    let mut o = Options {
        jobs: default_jobs(),
        ..Options::default()
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--list" => o.list = true,
            "--keep" => o.keep = true,
            "--refresh" => o.refresh = true,
            "-j" | "--jobs" => {
                let n = it
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|n| (1..=16).contains(n));
                let Some(n) = n else {
                    bail!("--jobs wants a number from 1 to 16")
                };
                o.jobs = n;
            }
            f if f.starts_with('-') => bail!("unknown option `{f}`\n{USAGE}"),
            name => o.patterns.push(name.to_string()),
        }
    }
    Ok(o)
}
