//! The service manager's readiness protocol (`sd_notify`): when `NOTIFY_SOCKET` names a Unix datagram
//! socket (a path, or `@name` for the abstract namespace), encfs-init sends `READY=1` once the readiness
//! file is written and `STOPPING=1` when shutdown begins. Without the variable nothing is sent. Failures
//! are logged, never fatal: the readiness file stays the contract.
#![forbid(unsafe_code)]

use std::ffi::OsStr;
use std::io;
use std::os::unix::net::UnixDatagram;

/// Send `message` to the socket named by `NOTIFY_SOCKET`, if set.
pub fn notify(message: &str) {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    match send(&socket, message) {
        Ok(()) => log::debug!("sd_notify: {message}"),
        Err(e) => log::warn!(
            "sd_notify: cannot send {message} to NOTIFY_SOCKET={}: {e}",
            socket.to_string_lossy()
        ),
    }
}

/// Send `message` to `socket` (a path, or `@name` for an abstract socket).
pub fn send(socket: &OsStr, message: &str) -> io::Result<()> {
    let s = UnixDatagram::unbound()?;
    let raw = socket.as_encoded_bytes();
    if let Some(name) = raw.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        s.send_to_addr(message.as_bytes(), &addr)?;
    } else {
        s.send_to(message.as_bytes(), socket)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_reaches_a_path_socket_and_an_abstract_one() {
        let dir = std::env::temp_dir().join(format!("encfs-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let rx = UnixDatagram::bind(&path).unwrap();
        send(path.as_os_str(), "READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");

        use std::os::linux::net::SocketAddrExt;
        let name = format!("encfs-notify-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let rx2 = UnixDatagram::bind_addr(&addr).unwrap();
        send(OsStr::new(&format!("@{name}")), "STOPPING=1").unwrap();
        let n = rx2.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_missing_socket_is_an_error_not_a_panic() {
        assert!(send(OsStr::new("/nonexistent/notify.sock"), "READY=1").is_err());
    }
}
