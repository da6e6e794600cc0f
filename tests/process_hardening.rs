//! `encfs-init run` hardens its own process before reading a secret: it is not dumpable (so /proc/<pid>/
//! environ, mem, ... are root's and no core is written), RLIMIT_CORE is 0, and the value of
//! `EncfsSideCarArgs` is gone from the original environment block that /proc/<pid>/environ shows (remove_var
//! alone leaves it there). It still blocks signals, as PID 1's signalfd design needs.
//!
//! Runs the real binary as an unprivileged user (nobody), which is how "not dumpable" is visible from
//! outside: /proc/<pid>/environ then belongs to root instead of to the process's user. Needs root.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const NOBODY: u32 = 65534;
const SECRET: &str = "c2VjcmV0LWJlYXJlci10b2tlbi1kby1ub3QtbGVhaw";

#[test]
fn run_is_not_dumpable_and_wipes_the_legacy_variable_from_proc_environ() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (it starts encfs-init as another user); run `cargo test` as root"
    );
    let dir = std::env::temp_dir().join(format!("encfs-harden-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let ready = dir.join("ready");
    let manifest = dir.join("manifest.toml");
    std::fs::write(
        &manifest,
        format!("readiness_file = \"{}\"\n", ready.display()),
    )
    .unwrap();
    // The manifest file wins over the legacy variable, which is still taken out of the environment: it may
    // hold a bearer token whichever manifest is used.
    // A copy the other user can execute: the build tree may sit under a directory it cannot enter (a clone in
    // /root, mode 0700 on Debian).
    let exe = dir.join("encfs-init");
    std::fs::copy(env!("CARGO_BIN_EXE_encfs-init"), &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut child = Command::new(&exe)
        .args(["run", "--manifest"])
        .arg(&manifest)
        .args(["--", "/bin/sleep", "30"])
        .env("EncfsSideCarArgs", SECRET)
        .uid(NOBODY)
        .gid(NOBODY)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while !ready.exists() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "encfs-init run never became ready"
        );
        assert!(child.try_wait().unwrap().is_none(), "encfs-init run ended");
        std::thread::sleep(Duration::from_millis(20));
    }
    let proc_dir = std::path::PathBuf::from(format!("/proc/{}", child.id()));
    let environ = std::fs::read(proc_dir.join("environ")).unwrap();
    let owner = std::fs::metadata(proc_dir.join("environ")).unwrap().uid();
    let limits = std::fs::read_to_string(proc_dir.join("limits")).unwrap();
    let status = std::fs::read_to_string(proc_dir.join("status")).unwrap();
    // SIGTERM, not SIGKILL: encfs-init stops the application (no orphaned sleep) and ends.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);

    let environ = String::from_utf8_lossy(&environ);
    assert!(
        !environ.contains(SECRET),
        "/proc/<pid>/environ still holds the legacy variable's value"
    );
    assert_eq!(
        owner, 0,
        "/proc/<pid>/environ of a process running as {NOBODY} belongs to root only when it is not dumpable"
    );
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    assert_eq!(
        core.split_whitespace().collect::<Vec<_>>()[4..6],
        ["0", "0"],
        "{core}"
    );
    let blocked = status
        .lines()
        .find_map(|l| l.strip_prefix("SigBlk:"))
        .map(|m| u64::from_str_radix(m.trim(), 16).unwrap())
        .unwrap();
    for sig in [libc_sig(15), libc_sig(2), libc_sig(17)] {
        assert_ne!(
            blocked & sig,
            0,
            "run blocks TERM, INT and CHLD: {blocked:x}"
        );
    }
}

/// The SigBlk bit of signal number `n`.
fn libc_sig(n: u32) -> u64 {
    1 << (n - 1)
}
