//! Released secrets on the host's kernel: the real binary runs `run` (test mode, raw keys, no attestation)
//! and mounts a real tmpfs; the application (a shell, and `setpriv` as the secrets' owner) checks what an
//! application container would: the files' content in each format, mode and owner, the mount's flags and
//! size, that it cannot write there, and the readiness listing without values. After teardown the tmpfs is
//! gone, and a file a process kept open reads as zeros (wiped, then detached lazily). A secret that cannot
//! be written fails the boot closed. Needs root (mount), as the other host suites that mount do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{b64, run, scratch};
use std::path::Path;

const KEY_HEX: &str = "5e3c7e75ec2e75ec2e75ec2e75ec2e7500112233445566778899aabbccddeeff";

fn key() -> Vec<u8> {
    (0..32)
        .map(|i| u8::from_str_radix(&KEY_HEX[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

/// Like the project's other host suites that mount (fuse_loop, mount_symlinks): root is required, and its
/// absence fails the test rather than skipping it.
fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the secrets suite needs root (it mounts a tmpfs); run `cargo test` as root"
    );
}

fn mounted(path: &Path) -> Option<String> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let p = path.to_str().unwrap();
    mounts
        .lines()
        .find(|l| l.split(' ').nth(1) == Some(p))
        .map(str::to_string)
}

fn secret(path: &str, format: &str, mode: &str, owner: &str) -> String {
    format!(
        "[[secret]]\npath = \"{path}\"\nformat = \"{format}\"\nmode = \"{mode}\"\nowner = \"{owner}\"\n[secret.key]\nraw_key = \"{KEY_HEX}\"\n"
    )
}

#[test]
fn an_application_reads_its_secrets_and_teardown_wipes_and_unmounts_them() {
    require_root();
    let dir = scratch("secrets-tmpfs");
    let vol = dir.join("vol");
    std::fs::create_dir_all(&vol).unwrap();
    // Others must reach the volume to read as uid 1000.
    for d in [&dir, &vol] {
        std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    let mp = vol.join("secrets");
    let out = dir.join("app.out");
    let held = dir.join("held.out");
    // The application: runs checks, records them; a background reader keeps k.raw open past teardown and
    // reads it again after it.
    let script = format!(
        r#"set -u
mp={mp}
o={out}
{{
echo "raw $(od -An -tx1 -v $mp/d/k.raw | tr -d ' \n')"
echo "b64 $(cat $mp/k.b64)"
echo "jwk $(cat $mp/k.jwk)"
for f in d/k.raw k.b64 k.jwk; do echo "stat $f $(stat -c '%a %u:%g' $mp/$f)"; done
echo "mount $(grep " {hidden} " /proc/self/mounts)"
cat {ready} | tr -d ' \n'; echo
setpriv --reuid 1000 --regid 1001 --clear-groups sh -c "cat $mp/d/k.raw >/dev/null && echo read-as-owner ok"
setpriv --reuid 1000 --regid 1001 --clear-groups sh -c "echo x >> $mp/d/k.raw" 2>/dev/null || echo append refused
setpriv --reuid 1000 --regid 1001 --clear-groups sh -c "echo x > $mp/new" 2>/dev/null || echo create refused
setpriv --reuid 2000 --regid 2000 --clear-groups sh -c "cat $mp/k.jwk" 2>/dev/null || echo other-uid refused
}} > $o 2>&1
(exec 3< $mp/d/k.raw; touch {held}.open; sleep 3; od -An -tx1 -v <&3 | tr -d ' \n' > {held}) &
while [ ! -e {held}.open ]; do sleep 0.05; done
"#,
        mp = mp.display(),
        out = out.display(),
        held = held.display(),
        hidden = vol.join(".secrets").display(),
        ready = vol.join("ready").display(),
    );
    let manifest = format!(
        "test_mode = true\nreadiness_file = \"{ready}\"\n[supervise]\ngrace_period = \"1s\"\n[app]\ncommand = [\"/bin/sh\", \"-c\", {script:?}]\n[secrets]\nmount_point = \"{mp}\"\nsize = \"64KiB\"\n{}{}{}",
        secret("d/k.raw", "raw", "0440", "1000:1001"),
        secret("k.b64", "base64", "0400", "1000"),
        secret("k.jwk", "jwk", "0400", "1000:1000"),
        ready = vol.join("ready").display(),
        mp = mp.display(),
    );
    let m = dir.join("m.toml");
    std::fs::write(&m, manifest).unwrap();
    let r = run(&["run", "--manifest", m.to_str().unwrap()], &[], "");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let got = std::fs::read_to_string(&out).unwrap();
    let line = |prefix: &str| {
        got.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} in:\n{got}"))
            .to_string()
    };
    let k = key();
    let hex: String = k.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(line("raw "), format!("raw {hex}"));
    assert_eq!(line("b64 "), format!("b64 {}", b64(&k)));
    let jwk: serde_json::Value = serde_json::from_str(&line("jwk ")[4..]).unwrap();
    assert_eq!(jwk["kty"], "oct");
    assert_eq!(
        jwk["k"],
        b64(&k)
            .replace('+', "-")
            .replace('/', "_")
            .trim_end_matches('=')
    );
    assert_eq!(line("stat d/k.raw"), "stat d/k.raw 440 1000:1001");
    assert_eq!(line("stat k.b64"), "stat k.b64 400 1000:1000");
    assert_eq!(line("stat k.jwk"), "stat k.jwk 400 1000:1000");
    let mount = line("mount ");
    for flag in ["tmpfs", "nosuid", "nodev", "noexec", "size=64k"] {
        assert!(mount.contains(flag), "{flag} in {mount}");
    }
    // The readiness file lists each secret's place and form, never its value.
    let ready_line = got
        .lines()
        .find(|l| l.starts_with('{'))
        .expect("readiness file");
    let ready: serde_json::Value = serde_json::from_str(ready_line).unwrap();
    assert_eq!(ready["ready"], true);
    let listed = ready["secrets"].as_array().unwrap();
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[0]["path"], mp.join("d/k.raw").to_str().unwrap());
    assert_eq!(listed[0]["format"], "raw");
    assert_eq!(listed[0]["mode"], "0440");
    assert_eq!(listed[0]["owner"], "1000:1001");
    assert_eq!(listed[2]["format"], "jwk");
    assert_eq!(listed[0]["kty"], "oct");
    for needle in [hex.as_str(), &b64(&k)[..12], &hex.to_uppercase()] {
        assert!(!ready_line.contains(needle), "no value in the listing");
    }
    assert!(got.contains("read-as-owner ok"), "{got}");
    assert!(got.contains("append refused"), "{got}");
    assert!(got.contains("create refused"), "{got}");
    assert!(got.contains("other-uid refused"), "{got}");
    // Teardown: no link, no tmpfs, no readiness file; the file held open reads as zeros (wiped, detached).
    assert!(mounted(&vol.join(".secrets")).is_none(), "unmounted");
    assert!(
        !mp.exists() && mp.symlink_metadata().is_err(),
        "link removed"
    );
    assert!(!vol.join("ready").exists());
    assert!(
        r.stderr.contains("detached lazily"),
        "busy: detached lazily: {}",
        r.stderr
    );
    std::thread::sleep(std::time::Duration::from_secs(4));
    let held = std::fs::read_to_string(&held).expect("the background reader ran");
    assert_eq!(
        held,
        "00".repeat(32),
        "the held file was overwritten with zeros"
    );
    // The log names no value either.
    assert!(!r.stderr.contains(&hex) && !r.stderr.contains(&b64(&k)[..12]));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_secret_that_cannot_be_written_fails_the_boot_closed() {
    require_root();
    let dir = scratch("secrets-full");
    let vol = dir.join("vol");
    std::fs::create_dir_all(&vol).unwrap();
    let mp = vol.join("secrets");
    let ready = vol.join("ready");
    // One page: the first secret fits, the second does not.
    let manifest = format!(
        "test_mode = true\nreadiness_file = \"{}\"\n[app]\ncommand = [\"/bin/true\"]\n[secrets]\nmount_point = \"{}\"\nsize = \"4KiB\"\n{}{}",
        ready.display(),
        mp.display(),
        secret("a", "raw", "0400", "0"),
        secret("b", "jwk", "0400", "0"),
    );
    let m = dir.join("m.toml");
    std::fs::write(&m, manifest).unwrap();
    let r = run(&["run", "--manifest", m.to_str().unwrap()], &[], "");
    assert_eq!(r.code, 3, "{}", r.stderr);
    let line = r
        .stderr
        .lines()
        .find(|l| l.contains("boot failed:"))
        .expect("a boot failed line");
    assert!(
        line.contains(&format!(
            "boot failed: secret[1] {}",
            mp.join("b").display()
        )),
        "{line}"
    );
    assert!(
        line.contains("full") && line.contains("fix: raise [secrets] size"),
        "{line}"
    );
    assert_eq!(r.stderr.matches("boot failed:").count(), 1);
    assert!(mounted(&vol.join(".secrets")).is_none(), "nothing mounted");
    assert!(!vol.join(".secrets").exists() && mp.symlink_metadata().is_err());
    assert!(!ready.exists(), "no readiness file");
    assert!(!r.stderr.contains("started the application"));
    std::fs::remove_dir_all(&dir).unwrap();
}
