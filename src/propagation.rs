//! Does the shared volume propagate mounts? The deployment shape of Azure Container Instances.
//!
//! On ACI (and Kubernetes), encfs-init is PID 1 of a privileged container and the application is a sibling
//! container: each has a mount namespace of its own, and they share one volume (an emptyDir). encfs-init
//! mounts ext4 at `<volume>/.filesystem-<i>` and publishes the `mount_point` symlink there. The symlink is a
//! file of the volume, so every container sees it; the *mount* reaches the application's namespace only by
//! mount propagation (`Documentation/filesystems/sharedsubtree.rst`): encfs-init's view of the volume must be
//! a shared mount (Kubernetes `mountPropagation: Bidirectional`, `--mount ...,bind-propagation=rshared`), and
//! the application's must receive (`HostToContainer`: rslave, or rshared). On a private volume the
//! application finds an empty `.filesystem-<i>` behind the link, and nothing says why.
//!
//! So at boot, for the directory of each mount point, the mount holding it is looked up in
//! `/proc/self/mountinfo` (`proc(5)`: field 5 is the mount point, octal-escaped; then optional fields up to a
//! lone `-`, among them `shared:N` for a mount of peer group N and `master:N` for a slave of group N). A
//! mount with `shared:N` propagates; one without does not. What follows is the manifest's `shared_volume`:
//! [`decide`].
#![forbid(unsafe_code)]

use crate::manifest::SharedVolume;
use std::path::{Path, PathBuf};

/// Where the kernel lists this process's mounts.
pub const MOUNTINFO: &str = "/proc/self/mountinfo";

/// One line of `/proc/self/mountinfo`, as far as propagation is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// Where it is mounted (unescaped).
    pub mount_point: PathBuf,
    /// `shared:N`: the peer group it propagates to and from.
    pub shared: Option<u32>,
    /// `master:N`: the peer group it receives from (a slave).
    pub master: Option<u32>,
}

/// Every well-formed line of a mountinfo text, in order (a later mount at the same place is on top).
pub fn parse(text: &str) -> Vec<MountEntry> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<MountEntry> {
    let mut fields = line.split(' ');
    // mount ID, parent ID, major:minor, root, mount point, options, then optional fields up to "-".
    let mount_point = fields.nth(4)?;
    let _options = fields.next()?;
    let mut shared = None;
    let mut master = None;
    let mut terminated = false;
    for f in fields {
        if f == "-" {
            terminated = true;
            break;
        }
        if let Some(n) = f.strip_prefix("shared:") {
            shared = n.parse().ok();
        } else if let Some(n) = f.strip_prefix("master:") {
            master = n.parse().ok();
        }
    }
    terminated.then(|| MountEntry {
        mount_point: PathBuf::from(unescape(mount_point)),
        shared,
        master,
    })
}

/// The kernel writes space, tab, newline and backslash in paths as `\ooo` (octal).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b
            .get(i + 1..i + 4)
            .filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match oct {
            Some(d) => {
                let v = d.iter().fold(0u32, |a, c| a * 8 + u32::from(c - b'0'));
                out.push(u8::try_from(v).unwrap_or(b'?'));
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mount that holds `path` (absolute, symlinks resolved): the one with the longest mount point that is
/// `path` or an ancestor of it; among equals the last listed, which is the one on top.
pub fn holding<'a>(entries: &'a [MountEntry], path: &Path) -> Option<&'a MountEntry> {
    let mut best: Option<&MountEntry> = None;
    for e in entries.iter().filter(|e| path.starts_with(&e.mount_point)) {
        if best.is_none_or(|b| e.mount_point.as_os_str().len() >= b.mount_point.as_os_str().len()) {
            best = Some(e);
        }
    }
    best
}

/// `dir`, or its nearest ancestor that exists, with symlinks resolved (a mount point's directory may not
/// exist yet at boot: encfs-init creates it on the mount that holds its nearest ancestor).
pub fn resolve(dir: &Path) -> PathBuf {
    dir.ancestors()
        .find_map(|a| std::fs::canonicalize(a).ok())
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// What the check found for one directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// On a shared mount: mounts made there reach the sibling containers.
    Shared {
        /// The directory checked.
        dir: PathBuf,
        /// The mount that holds it.
        mount: PathBuf,
        /// Its peer group.
        group: u32,
    },
    /// On a mount that does not propagate: the application container will not see the filesystem.
    Private {
        /// The directory checked.
        dir: PathBuf,
        /// The mount that holds it.
        mount: PathBuf,
        /// It is a slave (receives from the host, sends nothing back).
        slave: bool,
    },
    /// `/proc/self/mountinfo` could not be read, or lists nothing that holds the directory.
    Unknown {
        /// The directory checked.
        dir: PathBuf,
        /// Why.
        why: String,
    },
}

impl Finding {
    /// One line: the cause and the fix (the caller names the step).
    pub fn message(&self) -> String {
        match self {
            Finding::Shared { dir, mount, group } => format!(
                "{} is on {}, a shared mount (peer group {group}): the application container sees the filesystem",
                dir.display(),
                mount.display()
            ),
            Finding::Private { dir, mount, slave } => format!(
                "{} is on {}, {} (no shared:N in {MOUNTINFO}): the application container will not see the \
                 filesystem; fix: mount the volume with mountPropagation: Bidirectional in encfs-init's \
                 container and HostToContainer in the application's (docker/podman: --mount \
                 type=bind,...,bind-propagation=rshared), or set shared_volume = \"off\" if the application \
                 runs in encfs-init's own mount namespace",
                dir.display(),
                mount.display(),
                if *slave {
                    "a slave mount that does not propagate back"
                } else {
                    "a private mount"
                }
            ),
            Finding::Unknown { dir, why } => format!(
                "cannot tell whether {} propagates mounts: {why}; fix: mount /proc in encfs-init's container, \
                 or set shared_volume = \"off\"",
                dir.display()
            ),
        }
    }
}

/// Check `dir` against a mountinfo text (the pure part of [`check`]).
pub fn find(mountinfo: &str, dir: &Path, resolved: &Path) -> Finding {
    let entries = parse(mountinfo);
    match holding(&entries, resolved) {
        None => Finding::Unknown {
            dir: dir.to_path_buf(),
            why: format!("no mount in {MOUNTINFO} holds {}", resolved.display()),
        },
        Some(MountEntry {
            mount_point,
            shared: Some(group),
            ..
        }) => Finding::Shared {
            dir: dir.to_path_buf(),
            mount: mount_point.clone(),
            group: *group,
        },
        Some(e) => Finding::Private {
            dir: dir.to_path_buf(),
            mount: e.mount_point.clone(),
            slave: e.master.is_some(),
        },
    }
}

/// Check `dir` in this process's mount namespace.
pub fn check(dir: &Path) -> Finding {
    match std::fs::read_to_string(MOUNTINFO) {
        Ok(text) => find(&text, dir, &resolve(dir)),
        Err(e) => Finding::Unknown {
            dir: dir.to_path_buf(),
            why: format!("read {MOUNTINFO}: {e}"),
        },
    }
}

/// What the boot does about a finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Nothing to check (`off`, or `auto` with an application under encfs-init).
    Skip,
    /// Checked and fine: log at info.
    Fine(String),
    /// Warn once and go on.
    Warn(String),
    /// Fail the boot at the step "shared volume".
    Fail(String),
}

/// Whether the check runs at all: `auto` checks only in the shape of a sidecar whose application is another
/// container: encfs-init supervises no application (one under encfs-init shares its mount namespace, and
/// propagation does not matter) and is not a VM's PID 1 (a VM has no sibling containers).
pub fn wanted(mode: SharedVolume, has_app: bool, vm: bool) -> bool {
    match mode {
        SharedVolume::Off => false,
        SharedVolume::Auto => !has_app && !vm,
        SharedVolume::Required => true,
    }
}

/// The boot's decision for `finding` under `mode` (see [`wanted`] for whether to look at all).
pub fn decide(mode: SharedVolume, finding: &Finding) -> Action {
    match (mode, finding) {
        (SharedVolume::Off, _) => Action::Skip,
        (_, Finding::Shared { .. }) => Action::Fine(finding.message()),
        (SharedVolume::Required, _) => Action::Fail(finding.message()),
        (SharedVolume::Auto, _) => Action::Warn(finding.message()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Shaped like a container's view: the root, /proc, and the volume at /mnt/remote.
    const SHARED: &str = "\
22 1 0:20 / / rw,relatime - rootfs rootfs rw
25 22 0:22 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
31 22 0:27 / /mnt/remote rw,relatime shared:7 - tmpfs emptydir rw
";
    const PRIVATE: &str = "\
22 1 0:20 / / rw,relatime shared:1 - rootfs rootfs rw
31 22 0:27 / /mnt/remote rw,relatime - tmpfs emptydir rw
";
    const SLAVE: &str = "\
22 1 0:20 / / rw,relatime - rootfs rootfs rw
31 22 0:27 / /mnt/remote rw,relatime master:7 - tmpfs emptydir rw
";

    fn at(text: &str, dir: &str) -> Finding {
        find(text, Path::new(dir), Path::new(dir))
    }

    #[test]
    fn parses_optional_fields_and_escapes() {
        let e = parse(
            "36 35 98:0 /mnt1 /mnt/my\\040vol rw,noatime master:1 shared:4 - ext3 /dev/root rw\n\
             garbage line\n",
        );
        assert_eq!(
            e,
            vec![MountEntry {
                mount_point: PathBuf::from("/mnt/my vol"),
                shared: Some(4),
                master: Some(1),
            }]
        );
        assert_eq!(unescape("a\\134b\\011"), "a\\b\t");
        assert_eq!(unescape("trailing\\04"), "trailing\\04");
    }

    #[test]
    fn the_deepest_mount_holds_the_directory_and_the_last_one_is_on_top() {
        let text = format!("{SHARED}40 31 0:30 / /mnt/remote rw - tmpfs over rw\n");
        let e = parse(&text);
        assert_eq!(
            holding(&e, Path::new("/mnt/remote")).unwrap().shared,
            None,
            "a mount stacked later on the same place is the one in use"
        );
        let e = parse(SHARED);
        assert_eq!(
            holding(&e, Path::new("/mnt/remote/x")).unwrap().shared,
            Some(7)
        );
        // A path component is not a prefix of a string: /mnt/remote2 is on the root.
        assert_eq!(
            holding(&e, Path::new("/mnt/remote2")).unwrap().mount_point,
            PathBuf::from("/")
        );
    }

    #[test]
    fn a_shared_volume_passes_and_a_private_or_slave_one_is_caught() {
        assert!(matches!(
            at(SHARED, "/mnt/remote"),
            Finding::Shared { group: 7, .. }
        ));
        // The root being shared does not help a private volume mounted on it.
        let f = at(PRIVATE, "/mnt/remote");
        assert!(matches!(f, Finding::Private { slave: false, .. }), "{f:?}");
        let m = f.message();
        for w in [
            "a private mount",
            "will not see the filesystem",
            "fix: ",
            "Bidirectional",
            "HostToContainer",
            "bind-propagation=rshared",
        ] {
            assert!(m.contains(w), "{w:?} in {m}");
        }
        assert!(matches!(
            at(SLAVE, "/mnt/remote"),
            Finding::Private { slave: true, .. }
        ));
        assert!(matches!(at("", "/mnt/remote"), Finding::Unknown { .. }));
    }

    #[test]
    fn the_mode_decides() {
        let private = at(PRIVATE, "/mnt/remote");
        let shared = at(SHARED, "/mnt/remote");
        assert!(matches!(
            decide(SharedVolume::Required, &private),
            Action::Fail(_)
        ));
        assert!(matches!(
            decide(SharedVolume::Auto, &private),
            Action::Warn(_)
        ));
        assert_eq!(decide(SharedVolume::Off, &private), Action::Skip);
        assert!(matches!(
            decide(SharedVolume::Required, &shared),
            Action::Fine(_)
        ));
        assert!(wanted(SharedVolume::Required, true, true));
        assert!(wanted(SharedVolume::Auto, false, false));
        assert!(!wanted(SharedVolume::Auto, true, false));
        assert!(!wanted(SharedVolume::Auto, false, true));
        assert!(!wanted(SharedVolume::Off, false, false));
    }
}
