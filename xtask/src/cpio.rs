//! A writer for the cpio "newc" format, the only archive format the kernel unpacks into its initramfs
//! (`Documentation/driver-api/early-userspace/buffer-format.rst`).
//!
//! Each member is a 110-byte ASCII header (`070701` and thirteen 8-digit hex fields), the NUL-terminated name
//! padded to a multiple of 4, then the data padded to a multiple of 4; a member named `TRAILER!!!` ends the
//! archive. Writing it ourselves means device nodes (`/dev/console`, which the kernel opens as init's
//! stdin/stdout/stderr *before* any devtmpfs exists) need no `mknod` on the host, owners are root and
//! mtimes are 0 without privileges, and the output is byte-for-byte reproducible.
//!
//! Members are kept in a sorted map, so a directory always precedes its contents, and adding a path creates
//! its missing parent directories.

use std::collections::BTreeMap;
use std::io::{self, Write};

/// One archive member.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Member {
    Dir { mode: u32 },
    File { mode: u32, data: Vec<u8> },
    Symlink { target: String },
    CharDev { mode: u32, major: u32, minor: u32 },
}

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;

/// An in-memory archive, written out with [`Archive::write_to`].
#[derive(Debug, Default)]
pub struct Archive {
    members: BTreeMap<String, Member>,
}

impl Archive {
    /// An empty archive.
    pub fn new() -> Self {
        Self::default()
    }

    /// A directory (and its parents).
    pub fn dir(&mut self, path: &str, mode: u32) {
        self.put(path, Member::Dir { mode });
    }

    /// A regular file; an existing member of that name is replaced.
    pub fn file(&mut self, path: &str, mode: u32, data: Vec<u8>) {
        self.put(path, Member::File { mode, data });
    }

    /// A symbolic link to `target`.
    pub fn symlink(&mut self, path: &str, target: &str) {
        self.put(
            path,
            Member::Symlink {
                target: target.to_string(),
            },
        );
    }

    /// A character device node.
    pub fn char_dev(&mut self, path: &str, mode: u32, major: u32, minor: u32) {
        self.put(path, Member::CharDev { mode, major, minor });
    }

    /// Drop a member (its parent directories stay).
    pub fn remove(&mut self, path: &str) {
        self.members.remove(clean(path));
    }

    fn put(&mut self, path: &str, member: Member) {
        let path = clean(path);
        let mut parent = path;
        while let Some((p, _)) = parent.rsplit_once('/') {
            self.members
                .entry(p.to_string())
                .or_insert(Member::Dir { mode: 0o755 });
            parent = p;
        }
        self.members.insert(path.to_string(), member);
    }

    /// Total size of file contents, for reporting.
    pub fn payload_bytes(&self) -> usize {
        self.members
            .values()
            .map(|m| {
                if let Member::File { data, .. } = m {
                    data.len()
                } else {
                    0
                }
            })
            .sum()
    }

    /// Serialize as newc.
    pub fn write_to(&self, w: &mut impl Write) -> io::Result<()> {
        for (ino, (name, m)) in (1..).zip(&self.members) {
            let (mode, nlink, body, rdev): (u32, u32, &[u8], (u32, u32)) = match m {
                Member::Dir { mode } => (S_IFDIR | mode, 2, &[], (0, 0)),
                Member::File { mode, data } => (S_IFREG | mode, 1, data, (0, 0)),
                Member::Symlink { target } => (S_IFLNK | 0o777, 1, target.as_bytes(), (0, 0)),
                Member::CharDev { mode, major, minor } => {
                    (S_IFCHR | mode, 1, &[], (*major, *minor))
                }
            };
            write_member(w, ino, mode, nlink, rdev, name, body)?;
        }
        write_member(w, 0, 0, 1, (0, 0), "TRAILER!!!", &[])
    }
}

/// Archive paths are relative ("bin/sh"), whatever the caller wrote.
fn clean(path: &str) -> &str {
    path.trim_start_matches('/').trim_end_matches('/')
}

fn write_member(
    w: &mut impl Write,
    ino: u32,
    mode: u32,
    nlink: u32,
    rdev: (u32, u32),
    name: &str,
    body: &[u8],
) -> io::Result<()> {
    let size = u32::try_from(body.len())
        .map_err(|_| io::Error::other(format!("{name}: larger than 4 GiB")))?;
    let namesize = u32::try_from(name.len() + 1).map_err(|_| io::Error::other("name too long"))?;
    // ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor namesize check
    let fields = [
        ino, mode, 0, 0, nlink, 0, size, 0, 0, rdev.0, rdev.1, namesize, 0,
    ];
    let mut header = String::with_capacity(110);
    header.push_str("070701");
    for f in fields {
        header.push_str(&format!("{f:08x}"));
    }
    w.write_all(header.as_bytes())?;
    w.write_all(name.as_bytes())?;
    w.write_all(&[0])?;
    w.write_all(&[0; 3][..pad4(110 + name.len() + 1)])?;
    w.write_all(body)?;
    w.write_all(&[0; 3][..pad4(body.len())])
}

/// Bytes needed to reach the next multiple of 4.
fn pad4(n: usize) -> usize {
    (4 - n % 4) % 4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_come_first_and_layout_is_aligned() {
        let mut a = Archive::new();
        a.file("/bin/busybox", 0o755, b"hello".to_vec());
        a.symlink("bin/sh", "busybox");
        a.char_dev("/dev/console", 0o600, 5, 1);
        let mut out = Vec::new();
        a.write_to(&mut out).unwrap();
        assert_eq!(out.len() % 4, 0);
        let names: Vec<&String> = a.members.keys().collect();
        assert_eq!(
            names,
            ["bin", "bin/busybox", "bin/sh", "dev", "dev/console"]
        );
        // First member: the "bin" directory, mode 040755, namesize 4.
        let h = std::str::from_utf8(&out[..110]).unwrap();
        assert!(h.starts_with("070701"));
        assert_eq!(&h[14..22], "000041ed");
        assert_eq!(&h[94..102], "00000004");
        assert_eq!(&out[110..114], b"bin\0");
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.contains("busybox\0\0\0hello"),
            "file data follows its padded name"
        );
        assert!(text.ends_with("TRAILER!!!\0\0\0\0"));
    }

    #[test]
    fn host_cpio_reads_it_back() {
        if !crate::util::on_path("cpio") {
            return; // the byte-level test above still ran
        }
        let mut a = Archive::new();
        a.file("etc/x/y.txt", 0o644, b"data".to_vec());
        a.symlink("lnk", "etc/x/y.txt");
        let mut out = Vec::new();
        a.write_to(&mut out).unwrap();
        let mut child = std::process::Command::new("cpio")
            .args(["-it", "--quiet"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&out).unwrap();
        let listed = child.wait_with_output().unwrap();
        assert!(listed.status.success());
        assert_eq!(
            String::from_utf8_lossy(&listed.stdout),
            "etc\netc/x\netc/x/y.txt\nlnk\n"
        );
    }
}
