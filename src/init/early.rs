//! Early setup: find out which PID-1 situation we are in and, as a VM's PID 1, build the minimal system the
//! rest needs.
//!
//! Detection (never compiled in; the same binary runs everywhere):
//!
//! * pid != 1 → [`Context::Process`]: a tool invocation, or `run` under another init.
//! * pid 1 and `/proc` already mounted (statfs magic, or `/proc/self` exists) → [`Context::Container`]: the
//!   runtime set up `/proc`, `/sys`, `/dev`, and the utility VM loaded the kernel modules.
//! * pid 1 and nothing mounted → [`Context::Vm`]: we are the kernel's init in an initramfs. We mount `proc`,
//!   `sysfs`, `devtmpfs` on `/dev` (which also creates `/dev/mapper/control`, `/dev/nbdN`, `/dev/dm-N`
//!   without udev), `tmpfs` on `/run`, and, best effort, `devpts`, `/dev/shm` and `configfs` on
//!   `/sys/kernel/config`. If the initramfs has no `/dev/console`, the kernel started us with fds 0-2 closed:
//!   we open `/dev/console` onto them so the log has somewhere to go. The loopback interface is brought up
//!   (the test rig's fake services listen on the guest's 127.0.0.1; nothing else touches the network).
//!
//! This runs before logging exists, so problems are recorded and [`super::run`] reports them (a failed
//! required mount fails the boot closed).
#![forbid(unsafe_code)]

use super::Context;
use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::mount::{mount, MsFlags};
use nix::sys::stat::Mode;
use nix::sys::statfs::{statfs, PROC_SUPER_MAGIC};
use std::os::fd::{AsRawFd, IntoRawFd};
use std::path::Path;
use std::sync::Mutex;

/// A problem met before logging was up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// What failed, with its cause.
    pub what: String,
    /// Whether the boot cannot go on without it.
    pub required: bool,
}

static PROBLEMS: Mutex<Vec<Problem>> = Mutex::new(Vec::new());

fn record(what: String, required: bool) {
    if let Ok(mut p) = PROBLEMS.lock() {
        p.push(Problem { what, required });
    }
}

/// Take the problems recorded so far (each is reported once).
pub fn take_problems() -> Vec<Problem> {
    PROBLEMS
        .lock()
        .map(|mut p| std::mem::take(&mut *p))
        .unwrap_or_default()
}

/// Detect the context (see the module doc).
pub fn detect() -> Context {
    if nix::unistd::getpid().as_raw() != 1 {
        Context::Process
    } else if proc_mounted() {
        Context::Container
    } else {
        Context::Vm
    }
}

fn proc_mounted() -> bool {
    statfs("/proc").is_ok_and(|s| s.filesystem_type() == PROC_SUPER_MAGIC)
        || Path::new("/proc/self").exists()
}

/// One filesystem of the VM's minimal system.
struct Mount {
    source: &'static str,
    target: &'static str,
    fstype: &'static str,
    flags: MsFlags,
    data: Option<&'static str>,
    required: bool,
}

const NOSUID_NODEV_NOEXEC: MsFlags = MsFlags::MS_NOSUID
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC);

/// In order: later targets live inside earlier ones.
const VM_MOUNTS: [Mount; 6] = [
    Mount {
        source: "proc",
        target: "/proc",
        fstype: "proc",
        flags: NOSUID_NODEV_NOEXEC,
        data: None,
        required: true,
    },
    Mount {
        source: "sysfs",
        target: "/sys",
        fstype: "sysfs",
        flags: NOSUID_NODEV_NOEXEC,
        data: None,
        required: true,
    },
    Mount {
        source: "devtmpfs",
        target: "/dev",
        fstype: "devtmpfs",
        flags: MsFlags::MS_NOSUID,
        data: Some("mode=0755"),
        required: true,
    },
    Mount {
        source: "devpts",
        target: "/dev/pts",
        fstype: "devpts",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NOEXEC),
        data: Some("gid=5,mode=0620,ptmxmode=0666"),
        required: false,
    },
    Mount {
        source: "shm",
        target: "/dev/shm",
        fstype: "tmpfs",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV),
        data: Some("mode=1777"),
        required: false,
    },
    Mount {
        source: "tmpfs",
        target: "/run",
        fstype: "tmpfs",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV),
        data: Some("mode=0755"),
        required: true,
    },
];

/// As a VM's PID 1: mount the basics, attach the console, bring up loopback. Problems are recorded.
pub fn setup_vm() {
    for m in &VM_MOUNTS {
        if let Err(e) = mount_one(m) {
            record(
                format!("mount {} on {}: {e}", m.fstype, m.target),
                m.required,
            );
        }
    }
    attach_console();
    mount_configfs();
    if let Err(e) = super::sys::loopback_up() {
        record(format!("bring up the loopback interface: {e}"), false);
    }
}

fn mount_one(m: &Mount) -> Result<(), Errno> {
    if let Err(e) = std::fs::create_dir_all(m.target) {
        return Err(e.raw_os_error().map_or(Errno::EIO, Errno::from_raw));
    }
    match mount(Some(m.source), m.target, Some(m.fstype), m.flags, m.data) {
        // EBUSY: already mounted there (a kernel with CONFIG_DEVTMPFS_MOUNT, say).
        Ok(()) | Err(Errno::EBUSY) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Mount configfs on `/sys/kernel/config` if the kernel has it (the directory exists) and it is not mounted.
/// Called again after modules are loaded, since configfs may be one.
pub fn mount_configfs() {
    const TARGET: &str = "/sys/kernel/config";
    use std::os::unix::fs::MetadataExt;
    let (Ok(dir), Ok(parent)) = (std::fs::metadata(TARGET), std::fs::metadata("/sys/kernel"))
    else {
        return; // no configfs in this kernel (yet)
    };
    if dir.dev() != parent.dev() {
        return; // something is mounted there already
    }
    let m = Mount {
        source: "configfs",
        target: TARGET,
        fstype: "configfs",
        flags: NOSUID_NODEV_NOEXEC,
        data: None,
        required: false,
    };
    if let Err(e) = mount_one(&m) {
        record(format!("mount configfs on {TARGET}: {e}"), false);
    }
}

/// Point each closed fd among 0, 1, 2 at `/dev/console`.
fn attach_console() {
    for fd in 0..3 {
        if super::sys::fd_is_open(fd) {
            continue;
        }
        match open(
            "/dev/console",
            OFlag::O_RDWR | OFlag::O_NOCTTY,
            Mode::empty(),
        ) {
            // Lower fds are open by now, so open() returned the lowest free one: `fd` itself. Keep it open
            // for the life of the process.
            Ok(f) if f.as_raw_fd() == fd => {
                let _ = f.into_raw_fd();
            }
            Ok(_) => record(
                format!("attach /dev/console to fd {fd}: got another fd"),
                false,
            ),
            Err(e) => record(format!("open /dev/console for fd {fd}: {e}"), false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_test_process_is_not_pid_1() {
        assert_eq!(detect(), Context::Process);
        assert!(proc_mounted(), "the host test runs with /proc mounted");
    }

    #[test]
    fn mount_table_is_ordered_parents_first() {
        for (i, m) in VM_MOUNTS.iter().enumerate() {
            for later in &VM_MOUNTS[i + 1..] {
                assert!(
                    !Path::new(m.target).starts_with(later.target),
                    "{} before {}",
                    later.target,
                    m.target
                );
            }
        }
    }

    #[test]
    fn problems_are_taken_once() {
        record("x".into(), false);
        let got = take_problems();
        assert!(got.contains(&Problem {
            what: "x".into(),
            required: false
        }));
        assert!(!take_problems().contains(&Problem {
            what: "x".into(),
            required: false
        }));
    }
}
