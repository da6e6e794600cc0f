//! A blob server for VM scenarios (not a test of its own; `harness = false`): serves one file over HTTP on
//! the guest's 127.0.0.1 the way Azure Blob answers (HEAD, ranged GET, Put Page, ETag, If-Match), reusing
//! the range server of tests/support. The rig builds it static (`cargo_tests = ["guest_blob_server"]`).
//!
//! `guest_blob_server --serve FILE --port-file PATH [--block-blob] [--persist] [--path /c/b]
//! [--break-lease-on FILE] [--tokens FILE] [STORM]`: serve
//! until killed; the chosen port is written to PATH once listening. With `--persist` every Put Page is
//! also written to FILE (a disk such as /dev/vda) and synced before it is acknowledged. Without `--path` any path is the blob; with
//! it only that path is, and any other answers 404 `BlobNotFound` as Azure does.
//!
//! `--replace-on FILE`: once FILE exists, the blob is replaced (as a re-upload would: a new ETag, so that
//! conditional requests of a reader get 412) by the content of the file whose path FILE holds;
//! `blob replaced` is printed on stderr and FILE removed.
//!
//! `--break-lease-on FILE`: once FILE exists, the blob's lease is broken (as `az storage blob lease break`
//! with a break period of 0 would), `lease broken` is printed on stderr and FILE removed.
//!
//! `--tokens FILE`: the blob is private. Every request must carry a bearer token that FILE lists for the
//! storage resource and that has not expired (`guest_fake_azure` writes its issued tokens to `DIR/tokens`);
//! otherwise the answer is Azure Storage's (404 `ResourceNotFound` without a token, 401
//! `InvalidAuthenticationInfo` for an unknown, other-audience or expired one).
//!
//! STORM (`--storm-secs S [--storm-arm FILE] [--storm-after-bytes N] [--storm-dir DIR]`): once FILE exists
//! (at once without `--storm-arm`) and N more bytes of range reads have been served, every GET and PUT
//! answers 503 `ServerBusy` for S seconds. The start and the end are printed on stderr and, with
//! `--storm-dir`, written to `DIR/started` and `DIR/over` (the number of 503 answers), so that a scenario
//! can check that the storm happened while it read.
//!
//! Run without `--serve` (as `cargo test` does) it checks itself: a HEAD and a ranged GET against a served
//! pattern, a 404 for another path when `only_path` is set, the token checks of `--tokens`, and prints the
//! usual test summary line.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test support: a failed expectation is the report

#[path = "support/range_server.rs"]
mod range_server;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// The `--storm-*` options.
struct Storm {
    secs: u64,
    arm: Option<PathBuf>,
    after_bytes: u64,
    dir: Option<PathBuf>,
}

/// Wait for the trigger, then answer 503 to every GET and PUT for `storm.secs` seconds.
fn run_storm(server: &range_server::RangeServer, storm: &Storm) {
    if let Some(arm) = &storm.arm {
        while !arm.exists() {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let base = server.served_bytes.load(Ordering::Relaxed);
    while server.served_bytes.load(Ordering::Relaxed) - base < storm.after_bytes {
        std::thread::sleep(Duration::from_millis(1));
    }
    let before = server.injected.load(Ordering::Relaxed);
    server.set_faults(100, 0, 0, 0, 0);
    server.faults_on(true);
    let served = server.served_bytes.load(Ordering::Relaxed) - base;
    eprintln!(
        "guest_blob_server: 503 storm started ({served} bytes served since armed), for {} s",
        storm.secs
    );
    if let Some(d) = &storm.dir {
        let _ = std::fs::write(d.join("started"), format!("{served}\n"));
    }
    std::thread::sleep(Duration::from_secs(storm.secs));
    server.faults_on(false);
    let answered = server.injected.load(Ordering::Relaxed) - before;
    eprintln!("guest_blob_server: 503 storm over: {answered} requests answered 503");
    if let Some(d) = &storm.dir {
        let _ = std::fs::write(d.join("over"), format!("{answered}\n"));
    }
}

fn serve(args: &[String]) -> Result<(), String> {
    let mut file = None;
    let mut port_file = None;
    let mut blob_type = "PageBlob";
    let mut only_path = None;
    let mut persist = false;
    let mut break_on: Option<PathBuf> = None;
    let mut replace_on: Option<PathBuf> = None;
    let mut tokens: Option<PathBuf> = None;
    let mut storm = Storm {
        secs: 0,
        arm: None,
        after_bytes: 0,
        dir: None,
    };
    let number = |v: Option<&String>, what: &str| -> Result<u64, String> {
        v.and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("{what} wants a number"))
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--serve" => file = it.next().cloned(),
            "--port-file" => port_file = it.next().cloned(),
            "--block-blob" => blob_type = "BlockBlob",
            "--persist" => persist = true,
            "--break-lease-on" => break_on = it.next().map(PathBuf::from),
            "--replace-on" => replace_on = it.next().map(PathBuf::from),
            "--path" => only_path = it.next().cloned(),
            "--tokens" => tokens = it.next().map(PathBuf::from),
            "--storm-secs" => storm.secs = number(it.next(), a)?,
            "--storm-after-bytes" => storm.after_bytes = number(it.next(), a)?,
            "--storm-arm" => storm.arm = it.next().map(PathBuf::from),
            "--storm-dir" => storm.dir = it.next().map(PathBuf::from),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if let Some(p) = &only_path {
        if !p.starts_with('/') {
            return Err(format!(
                "--path {p}: want an absolute URL path like /c/fs.img"
            ));
        }
    }
    let file = file.ok_or("--serve FILE is required")?;
    let port_file = port_file.ok_or("--port-file PATH is required")?;
    let data = std::fs::read(&file).map_err(|e| format!("{file}: {e}"))?;
    let server = range_server::RangeServer::start(data, blob_type);
    *server.faults.only_path.lock().unwrap() = only_path.clone();
    *server.faults.tokens.lock().unwrap() = tokens;
    if persist {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&file)
            .map_err(|e| format!("{file}: {e}"))?;
        server.blob.lock().unwrap().persist = Some(f);
    }
    std::fs::write(&port_file, server.addr.port().to_string())
        .map_err(|e| format!("{port_file}: {e}"))?;
    eprintln!(
        "guest_blob_server: serving {file} ({blob_type}) at http://{}{}",
        server.addr,
        only_path.as_deref().unwrap_or("/ (any path)")
    );
    if let Some(trigger) = break_on {
        let blob = server.blob.clone();
        std::thread::spawn(move || {
            while !trigger.exists() {
                std::thread::sleep(Duration::from_millis(20));
            }
            blob.lock().unwrap().lease = None;
            eprintln!("guest_blob_server: lease broken");
            let _ = std::fs::remove_file(&trigger);
        });
    }
    if let Some(trigger) = replace_on {
        let blob = server.blob.clone();
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_millis(20));
            let Ok(from) = std::fs::read_to_string(&trigger) else {
                continue;
            };
            // Written by `echo`: wait for the whole line.
            let Some(from) = from.strip_suffix('\n') else {
                continue;
            };
            match std::fs::read(from) {
                Ok(data) => {
                    blob.lock().unwrap().replace(data);
                    eprintln!("guest_blob_server: blob replaced by {from}");
                }
                Err(e) => eprintln!("guest_blob_server: replace: {from}: {e}"),
            }
            let _ = std::fs::remove_file(&trigger);
        });
    }
    if storm.secs > 0 {
        run_storm(&server, &storm);
    }
    loop {
        std::thread::park();
    }
}

/// One request on a fresh connection; returns the status line and the body.
fn request(addr: std::net::SocketAddr, head: &str) -> (String, Vec<u8>) {
    let mut c = TcpStream::connect(addr).expect("connect");
    c.write_all(head.as_bytes()).expect("send");
    let mut r = BufReader::new(c);
    let mut status = String::new();
    r.read_line(&mut status).expect("status");
    let mut len = 0usize;
    loop {
        let mut l = String::new();
        r.read_line(&mut l).expect("header");
        if l.trim().is_empty() {
            break;
        }
        if let Some(v) = l.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().expect("length");
        }
    }
    let mut body = vec![0u8; if head.starts_with("HEAD") { 0 } else { len }];
    r.read_exact(&mut body).expect("body");
    (status.trim().to_string(), body)
}

fn self_check() -> bool {
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let server = range_server::RangeServer::start(data.clone(), "PageBlob");
    let (head, _) = request(
        server.addr,
        "HEAD /c/b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let (get, body) = request(
        server.addr,
        "GET /c/b HTTP/1.1\r\nHost: x\r\nx-ms-range: bytes=1000-1999\r\nConnection: close\r\n\r\n",
    );
    *server.faults.only_path.lock().unwrap() = Some("/c/b".into());
    let (served, _) = request(
        server.addr,
        "HEAD /c/b?sv=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let (missing, _) = request(
        server.addr,
        "HEAD /c/other HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    head.contains("200")
        && get.contains("206")
        && body == data[1000..2000]
        && served.contains("200")
        && missing.contains("404")
        && tokens_checked()
}

/// `--tokens`: a listed, live token for storage or for this account is admitted; none, an unknown one,
/// another audience's (another service's or another account's) and an expired one are refused as Azure
/// Storage refuses them.
fn tokens_checked() -> bool {
    let dir = std::env::temp_dir().join(format!("guest-blob-tokens-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let list = dir.join("tokens");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let server = range_server::RangeServer::start(vec![7u8; 4096], "PageBlob");
    std::fs::write(
        &list,
        format!(
            "live https://storage.azure.com/ {}\nvault https://vault.azure.net {}\nold https://storage.azure.com/ {}\naccount http://{} {}\nother http://127.0.0.1:1 {}\n",
            now + 600,
            now + 600,
            now - 1,
            server.addr,
            now + 600,
            now + 600,
        ),
    )
    .unwrap();
    *server.faults.tokens.lock().unwrap() = Some(list);
    let get = |auth: &str| {
        request(
            server.addr,
            &format!(
                "GET /c/b HTTP/1.1\r\nHost: {}\r\nx-ms-range: bytes=0-9\r\n{auth}Connection: close\r\n\r\n",
                server.addr
            ),
        )
    };
    let (live, body) = get("Authorization: Bearer live\r\n");
    let (none, _) = get("");
    let (unknown, _) = get("Authorization: Bearer forged\r\n");
    let (vault, _) = get("Authorization: Bearer vault\r\n");
    let (old, old_body) = get("Authorization: Bearer old\r\n");
    let (account, _) = get("Authorization: Bearer account\r\n");
    let (other, _) = get("Authorization: Bearer other\r\n");
    let _ = std::fs::remove_dir_all(&dir);
    let ok = live.contains("206")
        && body == [7u8; 10]
        && none.contains("404")
        && unknown.contains("401")
        && vault.contains("401 Audience")
        && old.contains("401 Lifetime validation failed")
        && String::from_utf8_lossy(&old_body).contains("InvalidAuthenticationInfo")
        && account.contains("206")
        && other.contains("401 Audience");
    if !ok {
        eprintln!("tokens: live {live}, none {none}, unknown {unknown}, vault {vault}, old {old}, account {account}, other {other}");
    }
    ok
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--serve") {
        if let Err(e) = serve(&args) {
            eprintln!("guest_blob_server: {e}");
            std::process::exit(2);
        }
        return;
    }
    let ok = self_check();
    println!(
        "guest_blob_server self-check: {} passed, {} failed",
        u8::from(ok),
        u8::from(!ok)
    );
    if !ok {
        std::process::exit(1);
    }
}
