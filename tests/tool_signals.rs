//! The tools end on SIGINT and SIGTERM (only `run`, as PID 1, blocks signals and reads them itself):
//! a tool waiting for input dies of the signal at once, and `nbd serve` finishes what it was doing, flushes
//! and exits 0, with a write made before the signal in the file afterwards.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use support::nbd_serve::Serve;

const PATIENCE: Duration = Duration::from_secs(5);

fn scratch(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("encfs-toolsig-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Wait for `child` to end within [`PATIENCE`]; kill it and fail otherwise.
fn ends_within_patience(child: &mut Child, what: &str) -> ExitStatus {
    let t = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if t.elapsed() > PATIENCE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} ignored the signal: still running after {PATIENCE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(child: &Child, sig: Signal) {
    kill(Pid::from_raw(i32::try_from(child.id()).unwrap()), sig).unwrap();
}

/// `check --legacy -` waits for stdin, which the test keeps open: a signal must end it.
#[test]
fn a_waiting_tool_dies_of_sigterm_and_sigint() {
    for sig in [Signal::SIGTERM, Signal::SIGINT] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_encfs-init"))
            .args(["check", "--legacy", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Let it reach the read of stdin (the signal must arrive while it waits, not before it starts).
        std::thread::sleep(Duration::from_millis(300));
        signal(&child, sig);
        let st = ends_within_patience(&mut child, "encfs-init check --legacy -");
        assert_eq!(st.signal(), Some(sig as i32), "{sig}: {st:?}");
    }
}

/// A minimal NBD client: fixed newstyle, `NBD_OPT_EXPORT_NAME`, then one write, acknowledged.
fn nbd_write(sock: &std::path::Path, offset: u64, data: &[u8]) -> UnixStream {
    let mut c = UnixStream::connect(sock).unwrap();
    let mut greeting = [0u8; 18];
    c.read_exact(&mut greeting).unwrap();
    c.write_all(&3u32.to_be_bytes()).unwrap(); // FIXED_NEWSTYLE | NO_ZEROES
    let mut opt = b"IHAVEOPT".to_vec();
    opt.extend_from_slice(&1u32.to_be_bytes()); // NBD_OPT_EXPORT_NAME
    opt.extend_from_slice(&0u32.to_be_bytes()); // empty name
    c.write_all(&opt).unwrap();
    let mut export = [0u8; 10]; // size, transmission flags
    c.read_exact(&mut export).unwrap();
    let mut req = 0x2560_9513u32.to_be_bytes().to_vec();
    req.extend_from_slice(&0u16.to_be_bytes()); // flags
    req.extend_from_slice(&1u16.to_be_bytes()); // NBD_CMD_WRITE
    req.extend_from_slice(&7u64.to_be_bytes()); // handle
    req.extend_from_slice(&offset.to_be_bytes());
    req.extend_from_slice(&u32::try_from(data.len()).unwrap().to_be_bytes());
    req.extend_from_slice(data);
    c.write_all(&req).unwrap();
    let mut reply = [0u8; 16];
    c.read_exact(&mut reply).unwrap();
    assert_eq!(
        reply[..4],
        0x6744_6698u32.to_be_bytes(),
        "simple reply magic"
    );
    assert_eq!(reply[4..8], [0; 4], "the write succeeded");
    assert_eq!(reply[8..], 7u64.to_be_bytes(), "our handle");
    c
}

#[test]
fn nbd_serve_finishes_and_flushes_on_sigterm() {
    let dir = scratch("nbd");
    let img = dir.join("disk.img");
    std::fs::write(&img, vec![0u8; 4 << 20]).unwrap();
    let sock = dir.join("nbd.sock");
    let mut serve = Serve::start(&[
        &format!("file://{}", img.display()),
        "--socket",
        sock.to_str().unwrap(),
    ]);
    let data = vec![0xa5u8; 64 << 10];
    // The client stays connected: the server must end its connection itself.
    let client = nbd_write(&sock, 1 << 20, &data);
    signal(&serve.child, Signal::SIGTERM);
    let st = ends_within_patience(&mut serve.child, "encfs-init nbd serve");
    assert_eq!(st.code(), Some(0), "a clean shutdown: {st:?}");
    let disk = std::fs::read(&img).unwrap();
    assert_eq!(
        &disk[1 << 20..(1 << 20) + data.len()],
        &data[..],
        "the write acknowledged before SIGTERM is in the file"
    );
    assert!(!sock.exists(), "the socket is removed on exit");
    drop(client);
    std::fs::remove_dir_all(dir).unwrap();
}
