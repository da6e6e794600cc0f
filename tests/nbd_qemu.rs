//! Real NBD clients (qemu-io, qemu-img from qemu-utils) against `encfs-init nbd serve`: random reads and
//! writes with flushes over a file and over our HTTP range server, verified against the backing data.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use sha2::{Digest, Sha256};
use std::time::Duration;
use support::nbd_serve::{qemu_io, Serve};
use support::pattern;
use support::range_server::RangeServer;

fn sha(b: &[u8]) -> Vec<u8> {
    Sha256::digest(b).to_vec()
}

/// Random writes (patterned), reads checked with -P, and flushes; returns the commands and the model.
fn workload(size: usize, seed: u64, n: usize, model: &mut [u8]) -> Vec<String> {
    let mut x = seed | 1;
    let mut rnd = |m: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % m
    };
    let mut cmds = Vec::new();
    let mut written: Vec<(usize, usize, u8)> = Vec::new();
    for i in 0..n {
        match rnd(6) {
            0..=2 => {
                let len = (rnd(64) as usize + 1) * 512;
                let off = rnd(((size - len) / 512) as u64) as usize * 512
                    + if i % 3 == 0 { 0 } else { 512 };
                let off = off.min(size - len);
                let p = (rnd(250) + 1) as u8;
                cmds.push(format!("write -P {p} {off} {len}"));
                model[off..off + len].fill(p);
                written.push((off, len, p));
            }
            3 if !written.is_empty() => {
                let (off, len, _) = written[rnd(written.len() as u64) as usize];
                // Verify the latest content of the range: it may have been partly overwritten since.
                let p = model[off];
                if model[off..off + len].iter().all(|&b| b == p) {
                    cmds.push(format!("read -P {p} {off} {len}"));
                }
            }
            4 => cmds.push("flush".into()),
            _ => {
                let len = (rnd(300) as usize + 1) * 512;
                let off = rnd((size - len) as u64) as usize;
                cmds.push(format!("read {off} {len}"));
            }
        }
    }
    cmds.push("flush".into());
    cmds
}

fn assert_clean(ok: bool, out: &str) {
    assert!(ok, "qemu-io failed:\n{out}");
    for bad in ["fail", "error", "Error", "mismatch"] {
        assert!(!out.contains(bad), "qemu-io reported {bad}:\n{out}");
    }
}

#[test]
fn qemu_io_random_reads_and_writes_over_a_file_match_a_model() {
    let dir = std::env::temp_dir().join(format!("encfs-nbd-qemu-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let img = dir.join("disk.img");
    let size = 8 << 20;
    let mut model = pattern(size, 11);
    std::fs::write(&img, &model).unwrap();
    let sock = dir.join("nbd.sock");
    let server = Serve::start(&[
        &format!("file://{}", img.display()),
        "--socket",
        sock.to_str().unwrap(),
        "--block-size",
        "64KiB",
        "--cache-size",
        "512KiB",
        "--once",
    ]);
    let cmds = workload(size, 5, 300, &mut model);
    let (ok, out) = qemu_io(
        &format!("nbd+unix:///?socket={}", sock.display()),
        false,
        &cmds,
    );
    assert_clean(ok, &out);
    assert_eq!(server.wait(Duration::from_secs(20)), 0);
    let disk = std::fs::read(&img).unwrap();
    assert!(
        sha(&disk) == sha(&model),
        "backing file differs from the model"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn qemu_io_over_http_page_blob_and_read_only_export() {
    let size = 4 << 20;
    let mut model = pattern(size, 21);
    let blob = RangeServer::start(model.clone(), "PageBlob");
    blob.set_faults(10, 5, 0, 5, 0);
    blob.faults_on(true);
    let server = Serve::start(&[
        &blob.url(),
        "--listen",
        "127.0.0.1:0",
        "--block-size",
        "64KiB",
        "--cache-size",
        "1MiB",
        "--once",
    ]);
    let cmds = workload(size, 9, 200, &mut model);
    let (ok, out) = qemu_io(&format!("nbd://{}", server.addr), false, &cmds);
    assert_clean(ok, &out);
    assert_eq!(server.wait(Duration::from_secs(30)), 0);
    assert!(
        sha(&blob.blob.lock().unwrap().data) == sha(&model),
        "blob differs from the model"
    );

    // Read-only: reads work, the export refuses writers.
    let ro = Serve::start(&[&blob.url(), "--listen", "127.0.0.1:0", "--read-only"]);
    let uri = format!("nbd://{}", ro.addr);
    let p = model[0];
    let (ok, out) = qemu_io(
        &uri,
        true,
        &["read 0 512".into(), format!("read -P {p} 0 1")],
    );
    assert_clean(ok, &out);
    let (ok, out) = qemu_io(&uri, false, &["write -P 1 0 512".into()]);
    assert!(
        !ok || out.contains("denied") || out.contains("not permitted"),
        "{out}"
    );
    assert!(blob.blob.lock().unwrap().data[..512] == model[..512]);
}

#[test]
fn listening_beyond_loopback_is_refused() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_encfs-init"))
        .args([
            "nbd",
            "serve",
            "file:///dev/null",
            "--listen",
            "0.0.0.0:10809",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("only loopback"));
}

/// Throughput of `nbd serve` from a local HTTP range server through qemu-img convert, against the
/// ceiling of plain sequential 512 KiB range GETs. A measurement, not a check: run it by hand with
/// `cargo test --release --test nbd_qemu -- --ignored --nocapture`.
#[test]
#[ignore = "benchmark: run by hand with --release"]
fn bench_sequential_read_vs_range_get_ceiling() {
    use encfs_init::http::{Client, Request};
    let size = 256 << 20;
    let data = pattern(size, 77);
    let blob = RangeServer::start(data.clone(), "PageBlob");
    let client = Client::new(&support::fast_network(3)).unwrap();
    let url = blob.url();
    let t = std::time::Instant::now();
    let mut off = 0;
    while off < size {
        let n = (512 << 10).min(size - off);
        let req = Request::new("GET", &url)
            .header("x-ms-range", format!("bytes={off}-{}", off + n - 1))
            .body_limit(n as u64);
        let r = client.send(&req, &[206]).unwrap();
        assert_eq!(r.body.len(), n);
        off += n;
    }
    let ceiling = size as f64 / t.elapsed().as_secs_f64() / 1e6;
    let out = std::env::temp_dir().join(format!("encfs-bench-{}.raw", std::process::id()));
    let server = Serve::start(&[&url, "--listen", "127.0.0.1:0", "--read-only", "--once"]);
    let t = std::time::Instant::now();
    let st = std::process::Command::new("qemu-img")
        .args(["convert", "-f", "raw", "-O", "raw"])
        .arg(format!("nbd://{}", server.addr))
        .arg(&out)
        .status()
        .unwrap();
    let nbd = size as f64 / t.elapsed().as_secs_f64() / 1e6;
    assert!(st.success());
    // The same without the output file's cost: qemu-io sequential 1 MiB reads.
    let server2 = Serve::start(&[&url, "--listen", "127.0.0.1:0", "--read-only", "--once"]);
    let t = std::time::Instant::now();
    let (ok, text) = qemu_io(
        &format!("nbd://{}", server2.addr),
        true,
        &(0..256)
            .map(|i| format!("read -q {}M 1M", i))
            .collect::<Vec<_>>(),
    );
    let _ = text;
    assert!(ok);
    let nbd_io = size as f64 / t.elapsed().as_secs_f64() / 1e6;
    eprintln!("BENCH qemu-io 1MiB sequential reads (one at a time): {nbd_io:.1} MB/s");
    assert!(sha(&std::fs::read(&out).unwrap()) == sha(&data));
    let _ = std::fs::remove_file(&out);
    eprintln!(
        "BENCH ceiling (sequential 512KiB GETs): {ceiling:.1} MB/s; nbd serve via qemu-img convert: {nbd:.1} MB/s ({:.0}%)",
        100.0 * nbd / ceiling
    );
}
