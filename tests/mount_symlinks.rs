//! The mount of a decrypted filesystem lands on the directory encfs-init made, never where a symlink planted
//! at `.filesystem-<i>` (on a volume the application can write) points. Runs in a private mount namespace
//! (`unshare -m`): the test re-runs itself there and mounts a tmpfs through the product's `mount_at`, the
//! code path of `mount_ext4`. Needs root and util-linux `unshare`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use encfs_init::mount;
use std::path::{Path, PathBuf};
use std::process::Command;

const INSIDE: &str = "ENCFS_TEST_IN_MOUNT_NS";

fn mounted_at(p: &Path) -> bool {
    let p = p.to_str().unwrap();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(p))
}

fn inside(dir: &Path) {
    let victim = dir.join("victim");
    std::fs::create_dir(&victim).unwrap();
    std::fs::write(victim.join("app-data"), "x").unwrap();
    let mp = dir.join("share");
    let hidden = mount::hidden_dir(&mp, 0);
    std::os::unix::fs::symlink(&victim, &hidden).unwrap();
    mount::mount_at(
        Path::new("encfs-test"),
        &hidden,
        "tmpfs",
        sys_mount::MountFlags::NODEV | sys_mount::MountFlags::NOSUID,
        "",
    )
    .unwrap();
    assert!(
        !mounted_at(&victim),
        "the mount followed the planted symlink"
    );
    assert!(
        victim.join("app-data").exists(),
        "the victim is not covered"
    );
    assert!(mounted_at(&hidden), "mounted on our own directory");
    assert!(hidden.symlink_metadata().unwrap().is_dir());
    mount::publish(&mp, &hidden).unwrap();
    std::fs::write(mp.join("through-the-link"), "y").unwrap();
    assert!(hidden.join("through-the-link").exists());
    mount::unmount(&hidden, std::time::Duration::from_secs(1)).unwrap();
    assert!(!mounted_at(&hidden));
}

#[test]
fn a_symlink_at_the_mount_directory_does_not_redirect_the_mount() {
    if let Some(dir) = std::env::var_os(INSIDE) {
        return inside(Path::new(&dir));
    }
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (a mount namespace); run `cargo test` as root"
    );
    let dir: PathBuf = std::env::temp_dir().join(format!("encfs-mount-ns-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private"])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_symlink_at_the_mount_directory_does_not_redirect_the_mount",
            "--nocapture",
        ])
        .env(INSIDE, &dir)
        .output()
        .expect("util-linux unshare");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "in the mount namespace: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
