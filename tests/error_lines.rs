//! One boot failure, one line, and in it the innermost cause exactly once (issue 14, item 2). The real binary
//! runs `run` on the host (no kernel part is reached: each failure comes before NBD, dm or mount) for failures
//! from different layers: TLS (a server certificate of an unknown issuer), HTTP (403 with Azure's error
//! code), LUKS2 (a field the allowlist refuses, in an image cryptsetup made). The failures that need a kernel
//! (a device's permission denied, a dm ioctl's EBUSY) are the VM scenario `error-lines`.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod luks2_util;
mod support;

use std::io::{BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A scratch directory with the raw key file the manifests name.
fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("encfs-error-lines-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("key.bin"), [7u8; 32]).unwrap();
    d
}

/// Run `encfs-init run` with a one-filesystem test-mode manifest for `url`; return the exit code and the
/// `boot failed:` lines of its log.
fn boot(dir: &Path, url: &str, retries: u32) -> (Option<i32>, Vec<String>, String) {
    let manifest = dir.join("manifest.toml");
    std::fs::write(
        &manifest,
        format!(
            "test_mode = true\nreadiness_file = \"{d}/ready\"\n\
             [network]\nretries = {retries}\n\
             [[filesystem]]\nmount_point = \"{d}/mnt/data\"\nurl = \"{url}\"\naccess = \"anonymous\"\n\
             [filesystem.key]\nraw_key_file = \"{d}/key.bin\"\n",
            d = dir.display()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_encfs-init"))
        .arg("run")
        .arg("--manifest")
        .arg(&manifest)
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    let lines = log
        .lines()
        .filter(|l| l.contains("boot failed:"))
        .map(str::to_string)
        .collect();
    assert!(
        !dir.join("ready").exists(),
        "readiness file after a failed boot:\n{log}"
    );
    (out.status.code(), lines, log)
}

/// The boot failed (exit 3) with exactly one `boot failed:` line that names `step` and holds each of
/// `innermost` exactly once.
fn assert_one_line(r: &(Option<i32>, Vec<String>, String), step: &str, innermost: &[&str]) {
    let (code, lines, log) = r;
    assert_eq!(*code, Some(3), "exit::BOOT_FAILED:\n{log}");
    assert_eq!(lines.len(), 1, "one boot failure line:\n{log}");
    let line = &lines[0];
    eprintln!("{line}");
    assert!(
        line.contains(step),
        "the line names the step {step:?}: {line}"
    );
    for cause in innermost {
        assert_eq!(
            line.matches(cause).count(),
            1,
            "the innermost cause {cause:?} exactly once: {line}"
        );
    }
}

#[test]
fn tls_unknown_issuer_is_printed_once() {
    let dir = scratch("tls");
    // A chain under a root nobody trusts (not in the web roots, no ca_bundle).
    let pki = support::pki::web_pki("untrusted", "localhost");
    let server = support::Server::start(
        Some((pki.tls_chain.clone(), pki.tls_key.clone())),
        std::sync::Arc::new(|_: &support::Req| support::Resp::text(200, "")),
    );
    let url = format!("{}/c/fs.img", server.url());
    let r = boot(&dir, &url, 2);
    assert_one_line(&r, "filesystem[0]", &["UnknownIssuer"]);
    assert!(r.1[0].contains(": blob"), "the blob step: {}", r.1[0]);
    // A certificate problem is a TLS failure with its fix, not a connection reset (which is retried).
    assert!(r.1[0].contains("TLS failure"), "named as TLS: {}", r.1[0]);
    assert!(
        !r.2.contains("retry 1"),
        "a certificate problem is not retried:\n{}",
        r.2
    );
    assert!(
        r.1[0].contains("; fix: ") && r.1[0].contains("ca_bundle"),
        "the fix: {}",
        r.1[0]
    );
}

#[test]
fn http_403_with_azures_code_is_printed_once() {
    let dir = scratch("403");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Azure's answer to a caller without the data role: 403 with the code in x-ms-error-code (a HEAD has
    // no body).
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let _ = support::read_headers(&mut BufReader::new(&mut s));
            let _ = s.write_all(
                b"HTTP/1.1 403 This request is not authorized to perform this operation using this permission.\r\n\
                  x-ms-error-code: AuthorizationPermissionMismatch\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            );
        }
    });
    let r = boot(&dir, &format!("http://127.0.0.1:{port}/c/fs.img"), 0);
    assert_one_line(
        &r,
        "filesystem[0]",
        &["AuthorizationPermissionMismatch", "HTTP 403"],
    );
    assert!(r.1[0].contains(": blob"), "the blob step: {}", r.1[0]);
}

#[test]
fn a_refused_luks2_field_is_printed_once() {
    let dir = scratch("luks2");
    let img = dir.join("fs.img");
    luks2_util::sparse(&img, 32);
    // A cipher outside the allowlist (aes-xts-plain64 only), in a header cryptsetup wrote.
    luks2_util::luks_format(
        &img,
        &dir.join("key.bin"),
        &[
            &["--cipher", "aes-cbc-essiv:sha256", "--key-size", "256"],
            luks2_util::FAST_PBKDF2,
        ]
        .concat(),
    );
    let server =
        support::range_server::RangeServer::start(std::fs::read(&img).unwrap(), "PageBlob");
    let r = boot(&dir, &server.url(), 0);
    assert_one_line(&r, "LUKS2 header", &["aes-cbc-essiv:sha256"]);
    assert!(r.1[0].contains("; fix: "), "the fix is named: {}", r.1[0]);
}
