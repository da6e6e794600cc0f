//! `[secrets]` and `[[secret]]` manifests, and where encfs-init may write its own files beside what it mounts:
//! each refused case makes `encfs-init check` exit 2 with one error line naming the field, the problem and the fix; the example config/secrets.toml is valid.

#![allow(clippy::unwrap_used)]

mod common;

use common::{run, scratch};

/// A valid secrets manifest that cases modify.
const OK: &str = r#"
[[filesystem]]
mount_point = "/mnt/remote/a"
url = "https://acct.blob.core.windows.net/c/a.img"
[filesystem.key]
kid = "k1"
authority = "sharedeus.eus.attest.azure.net"
vault = "v.vault.azure.net"

[secrets]
mount_point = "/mnt/remote/secrets"

[[secret]]
path = "tls/key.pem"
format = "pem"
mode = "0440"
owner = "1000:1001"
[secret.key]
kid = "tls"
kty = "RSA-HSM"
authority = "sharedeus.eus.attest.azure.net"
vault = "v.vault.azure.net"

[[secret]]
path = "app.jwk"
format = "jwk"
[secret.key]
kid = "app"
kty = "oct-HSM"
authority = "sharedeus.eus.attest.azure.net"
vault = "v.vault.azure.net"
"#;

fn check(name: &str, text: &str) -> common::Out {
    let dir = scratch(&format!("secret-{}", name.replace(' ', "_")));
    let path = dir.join("m.toml");
    std::fs::write(&path, text).unwrap();
    run(&["check", path.to_str().unwrap()], &[], "")
}

#[test]
fn a_valid_secrets_manifest_and_the_example_pass() {
    let out = check("ok", OK);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let ec = OK.replace("kty = \"RSA-HSM\"", "kty = \"EC-HSM\"");
    assert_eq!(check("ec", &ec).code, 0, "an EC key may be written as pem");
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config/secrets.toml");
    let out = run(&["check", example], &[], "");
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[test]
fn check_prints_each_secret_with_its_file_form_mode_owner_and_key() {
    let out = check("printed", OK);
    assert_eq!(out.code, 0, "{}", out.stderr);
    for line in [
        "secrets:         tmpfs of 1MiB at /mnt/remote/secrets (noexec, nosuid, nodev)",
        "secret[0]:       /mnt/remote/secrets/tls/key.pem as pem, mode 0440, owner 1000:1001",
        "  key:           release \"tls\" (RSA-HSM) from https://v.vault.azure.net (Key Vault)",
        "secret[1]:       /mnt/remote/secrets/app.jwk as jwk, mode 0400, owner 0:0",
    ] {
        assert!(out.stdout.contains(line), "no {line:?} in:\n{}", out.stdout);
    }
}

#[test]
fn bad_secrets_exit_2_with_the_field_problem_and_fix() {
    let no_secrets_table = {
        let start = OK.find("[secrets]").unwrap();
        let end = OK.find("[[secret]]").unwrap();
        format!("{}{}", &OK[..start], &OK[end..])
    };
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "secret without mount point",
            no_secrets_table,
            vec![
                "secrets.mount_point",
                "no mount point",
                "[secrets] mount_point",
            ],
        ),
        (
            "relative mount point",
            OK.replace("\"/mnt/remote/secrets\"", "\"mnt/secrets\""),
            vec!["secrets.mount_point", "not an absolute path"],
        ),
        (
            "system mount point",
            OK.replace("\"/mnt/remote/secrets\"", "\"/dev/shm/s\""),
            vec!["secrets.mount_point", "system path"],
        ),
        (
            "root mount point",
            OK.replace("\"/mnt/remote/secrets\"", "\"/\""),
            vec!["secrets.mount_point", "system path"],
        ),
        (
            "mount point of a filesystem",
            OK.replace("\"/mnt/remote/secrets\"", "\"/mnt/remote/a\""),
            vec!["secrets.mount_point", "overlaps filesystem[0]"],
        ),
        (
            "mount point inside a filesystem",
            OK.replace("\"/mnt/remote/secrets\"", "\"/mnt/remote/a/s\""),
            vec!["secrets.mount_point", "overlaps filesystem[0]"],
        ),
        (
            "mount point around a filesystem",
            OK.replace("\"/mnt/remote/secrets\"", "\"/mnt\""),
            vec!["secrets.mount_point", "overlaps filesystem[0]"],
        ),
        (
            "mount point named like the tmpfs's directory",
            OK.replace("\"/mnt/remote/secrets\"", "\"/mnt/remote/.secrets\""),
            vec!["secrets.mount_point", "tmpfs's own directory"],
        ),
        (
            "a filesystem at the tmpfs's directory",
            OK.replace("\"/mnt/remote/a\"", "\"/mnt/remote/.secrets\""),
            vec!["secrets.mount_point", "tmpfs's own directory"],
        ),
        (
            "readiness file among the secrets",
            format!("readiness_file = \"/mnt/remote/secrets/ready\"\n{OK}"),
            vec![
                "readiness_file",
                "inside /mnt/remote/secrets, where [secrets] is mounted",
                "e.g. /mnt/remote/ready",
            ],
        ),
        (
            "readiness file on the secrets' tmpfs",
            format!("readiness_file = \"/mnt/remote/.secrets/ready\"\n{OK}"),
            vec!["readiness_file", "where [secrets] is mounted"],
        ),
        (
            "readiness file inside a filesystem",
            format!("readiness_file = \"/mnt/remote/a/ready\"\n{OK}"),
            vec![
                "readiness_file",
                "inside /mnt/remote/a, where filesystem[0] is mounted",
            ],
        ),
        (
            "readiness file on a filesystem's own directory",
            format!("readiness_file = \"/mnt/remote/.filesystem-0/ready\"\n{OK}"),
            vec!["readiness_file", "where filesystem[0] is mounted"],
        ),
        (
            "readiness file in a FUSE directory",
            format!("readiness_file = \"/run/encfs-init/fuse-0-r1/ready\"\n{OK}"),
            vec![
                "readiness_file",
                "inside /run/encfs-init/fuse-0-r1, where a filesystem's FUSE file is mounted",
                "e.g. /run/encfs-init/ready",
            ],
        ),
        (
            "log file inside a filesystem",
            format!("[log]\nfile = \"/mnt/remote/a/log\"\n{OK}"),
            vec!["log.file", "where filesystem[0] is mounted"],
        ),
        (
            "tmpfs too small",
            OK.replace(
                "mount_point = \"/mnt/remote/secrets\"",
                "mount_point = \"/mnt/remote/secrets\"\nsize = \"1KiB\"",
            ),
            vec!["secrets.size", "out of range", "4KiB to 64MiB"],
        ),
        (
            "tmpfs too large",
            OK.replace(
                "mount_point = \"/mnt/remote/secrets\"",
                "mount_point = \"/mnt/remote/secrets\"\nsize = \"1GiB\"",
            ),
            vec!["secrets.size", "out of range"],
        ),
        (
            "absolute secret path",
            OK.replace("\"tls/key.pem\"", "\"/etc/key.pem\""),
            vec!["secret[0].path", "not a plain relative path"],
        ),
        (
            "dot-dot secret path",
            OK.replace("\"tls/key.pem\"", "\"../key.pem\""),
            vec!["secret[0].path", "not a plain relative path"],
        ),
        (
            "dot secret path",
            OK.replace("\"tls/key.pem\"", "\"./key.pem\""),
            vec!["secret[0].path", "not a plain relative path"],
        ),
        (
            "empty secret path",
            OK.replace("\"tls/key.pem\"", "\"\""),
            vec!["secret[0].path", "not a plain relative path"],
        ),
        (
            "duplicate secret path",
            OK.replace("\"app.jwk\"", "\"tls/key.pem\""),
            vec!["secret[1].path", "collides with secret[0]"],
        ),
        (
            "secret path under another's file",
            OK.replace("\"app.jwk\"", "\"tls/key.pem/x\""),
            vec!["secret[1].path", "collides with secret[0]"],
        ),
        (
            "mode not octal",
            OK.replace("\"0440\"", "\"0948\""),
            vec!["secret[0].mode", "not an octal file mode"],
        ),
        (
            "setuid mode",
            OK.replace("\"0440\"", "\"4440\""),
            vec!["secret[0].mode", "setuid", "permission bits only"],
        ),
        (
            "sticky mode",
            OK.replace("\"0440\"", "\"1400\""),
            vec!["secret[0].mode", "sticky"],
        ),
        (
            "group-writable mode",
            OK.replace("\"0440\"", "\"0460\""),
            vec!["secret[0].mode", "group or others write"],
        ),
        (
            "world-writable mode",
            OK.replace("\"0440\"", "\"0402\""),
            vec!["secret[0].mode", "group or others write"],
        ),
        (
            "unreadable mode",
            OK.replace("\"0440\"", "\"0100\""),
            vec!["secret[0].mode", "nobody read"],
        ),
        (
            "owner by name",
            OK.replace("\"1000:1001\"", "\"app:app\""),
            vec!["secret[0].owner", "not a numeric owner", "uid:gid"],
        ),
        (
            "owner negative",
            OK.replace("\"1000:1001\"", "\"-1\""),
            vec!["secret[0].owner", "not a numeric owner"],
        ),
        (
            "owner out of range",
            OK.replace("\"1000:1001\"", "\"4294967295\""),
            vec!["secret[0].owner", "not a numeric owner"],
        ),
        (
            "unknown format",
            OK.replace("\"jwk\"", "\"jwt\""),
            vec![
                "secret[1].format",
                "unknown secret format",
                "did you mean \"jwk\"",
            ],
        ),
        (
            "pem of an oct key",
            OK.replace("\"jwk\"", "\"pem\""),
            vec!["secret[1].format", "pem is for RSA and EC", "raw"],
        ),
        (
            "unknown key type",
            OK.replace("\"RSA-HSM\"", "\"DSA\""),
            vec!["secret[0].key.kty", "unknown key type"],
        ),
        (
            "no key",
            OK[..OK.rfind("[secret.key]").unwrap()].to_string(),
            vec!["secret[1].key", "no key", "[secret.key]"],
        ),
        (
            "raw key outside test mode",
            OK.replace(
                "kid = \"app\"",
                "raw_key = \"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\"",
            ),
            vec!["secret[1].key", "only in test mode"],
        ),
        (
            "secrets table without a secret",
            OK[..OK.find("[[secret]]").unwrap()].to_string(),
            vec!["secrets", "no [[secret]]"],
        ),
    ];
    for (name, text, words) in cases {
        let out = check(name, &text);
        assert_eq!(out.code, 2, "{name}: exit code\n{}", out.stderr);
        let line = out
            .stderr
            .lines()
            .find(|l| l.contains("manifest:") && words.iter().all(|w| l.contains(w)))
            .unwrap_or_else(|| panic!("{name}: no line with {words:?} in:\n{}", out.stderr));
        assert!(line.contains("; fix: "), "{name}: says the fix: {line}");
    }
}
