//! A blob server for VM scenarios (not a test of its own; `harness = false`): serves one file over HTTP on
//! the guest's 127.0.0.1 the way Azure Blob answers (HEAD, ranged GET, Put Page, ETag, If-Match), reusing
//! the range server of tests/support. The rig builds it static (`cargo_tests = ["guest_blob_server"]`).
//!
//! `guest_blob_server --serve FILE --port-file PATH [--block-blob]`: serve until killed; the chosen port is
//! written to PATH once listening. Run without `--serve` (as `cargo test` does) it checks itself: a HEAD and
//! a ranged GET against a served pattern, and prints the usual test summary line.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test support: a failed expectation is the report

#[path = "support/range_server.rs"]
mod range_server;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;

fn serve(args: &[String]) -> Result<(), String> {
    let mut file = None;
    let mut port_file = None;
    let mut blob_type = "PageBlob";
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--serve" => file = it.next().cloned(),
            "--port-file" => port_file = it.next().cloned(),
            "--block-blob" => blob_type = "BlockBlob",
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let file = file.ok_or("--serve FILE is required")?;
    let port_file = port_file.ok_or("--port-file PATH is required")?;
    let data = std::fs::read(&file).map_err(|e| format!("{file}: {e}"))?;
    let server = range_server::RangeServer::start(data, blob_type);
    std::fs::write(&port_file, server.addr.port().to_string())
        .map_err(|e| format!("{port_file}: {e}"))?;
    eprintln!(
        "guest_blob_server: serving {file} ({blob_type}) at http://{}/",
        server.addr
    );
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
    head.contains("200") && get.contains("206") && body == data[1000..2000]
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
