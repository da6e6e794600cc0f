//! Helpers for the LUKS2 tests: cryptsetup as the oracle, scratch directories, images.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A scratch directory removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "encfs-luks2-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Find a tool in PATH or the sbin directories (Debian puts cryptsetup in /usr/sbin).
pub fn tool(name: &str, package: &str) -> PathBuf {
    let path = std::env::var("PATH").unwrap_or_default();
    for dir in path
        .split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
    {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!("{name} not found: these tests use it as the oracle; install it: apt-get install -y {package}");
}

pub fn cryptsetup() -> PathBuf {
    tool("cryptsetup", "cryptsetup-bin")
}

/// Run a command, panic with its output on failure, return stdout.
pub fn run(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        o.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Write a random key file of `n` bytes.
pub fn key_file(path: &Path, n: usize) -> Vec<u8> {
    let mut k = vec![0u8; n];
    getrandom::fill(&mut k).unwrap();
    std::fs::write(path, &k).unwrap();
    k
}

/// A sparse file of `mib` MiB.
pub fn sparse(path: &Path, mib: u64) {
    let f = std::fs::File::create(path).unwrap();
    f.set_len(mib << 20).unwrap();
}

/// The fast PBKDF options for test images.
pub const FAST_PBKDF2: &[&str] = &["--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"];

/// `cryptsetup luksFormat --type luks2 -q --key-file key <extra> img`.
pub fn luks_format(img: &Path, key: &Path, extra: &[&str]) {
    run(Command::new(cryptsetup())
        .args(["luksFormat", "--type", "luks2", "-q", "--key-file"])
        .arg(key)
        .args(extra)
        .arg(img));
}

/// The volume key according to `cryptsetup luksDump --dump-volume-key`.
pub fn dump_volume_key(img: &Path, key: &Path) -> Vec<u8> {
    let out = run(Command::new(cryptsetup())
        .args([
            "luksDump",
            "--dump-volume-key",
            "--batch-mode",
            "--key-file",
        ])
        .arg(key)
        .arg(img));
    let at = out.find("MK dump:").expect("MK dump line");
    let hex: String = out[at + 8..]
        .chars()
        .filter(|c| c.is_ascii_hexdigit())
        .collect();
    (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

/// The first `n` bytes of a file.
pub fn head(path: &Path, n: usize) -> Vec<u8> {
    use std::io::Read;
    let mut v = Vec::new();
    std::fs::File::open(path)
        .unwrap()
        .take(n as u64)
        .read_to_end(&mut v)
        .unwrap();
    v
}
