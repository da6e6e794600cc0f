//! The raw system calls of the init steps, each a small safe function: the core-dump limit, the original
//! environment block (wiping a value in place), whether a descriptor is open, and bringing a network
//! interface up.
//!
//! The errno convention of every `sys` file: a raw call's result is checked with
//! [`Errno::result`](nix::errno::Errno::result) and returned as an [`io::Error`] (which keeps the OS text).
#![allow(unsafe_code)]

use nix::errno::Errno;
use nix::libc;
use std::io;
use std::os::fd::{AsRawFd, RawFd};

/// `setrlimit(RLIMIT_CORE, 0)`: no core dumps.
pub(super) fn no_core_dumps() -> io::Result<()> {
    let none = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit reads the live, initialized `none` through a valid pointer and writes nothing;
    // lowering a limit needs no privilege.
    Errno::result(unsafe { libc::setrlimit(libc::RLIMIT_CORE, &none) })?;
    Ok(())
}

/// Linux caps argv + envp at a quarter of the stack limit; anything larger is not an environment block.
const MAX_ENV_BLOCK: usize = 1 << 30;

/// The original environment block's address range, from fields 50 and 51 (`env_start`, `env_end`) of
/// `/proc/self/stat` (Linux 3.5+).
fn env_block() -> io::Result<(usize, usize)> {
    let bad = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // pid (comm) state ...: comm may hold spaces and parentheses, so count fields after the last ')'.
    let tail = stat
        .rsplit_once(") ")
        .map(|(_, t)| t)
        .ok_or_else(|| bad("/proc/self/stat has no ')'".to_string()))?;
    // The tail starts at field 3.
    let field = |n: usize| -> io::Result<usize> {
        tail.split_whitespace()
            .nth(n - 3)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| bad(format!("/proc/self/stat has no field {n}")))
    };
    let (start, end) = (field(50)?, field(51)?);
    end.checked_sub(start)
        .filter(|l| *l <= MAX_ENV_BLOCK && start != 0)
        .ok_or_else(|| {
            bad(format!(
                "/proc/self/stat says the environment block is {start:#x}..{end:#x}"
            ))
        })?;
    Ok((start, end))
}

/// Overwrite with zero bytes the value of every `name=value` entry in the process's original environment
/// block (see [`super::process::scrub_env_value`]). Returns how many entries were wiped. Sound only while
/// no other thread reads the environment.
pub(super) fn wipe_env_values(name: &str) -> io::Result<usize> {
    let (start, end) = env_block()?;
    // SAFETY: `start..end` is this process's original environment block as the kernel reports it
    // (`mm->env_start..env_end`): the strings `execve` copied onto the initial stack, mapped, readable and
    // writable for the life of the process, and checked by `env_block` to be a plausible, non-null range. No
    // Rust reference points into it: std copies environment values out under its lock, and after
    // `remove_var` libc's `environ` no longer refers to the entries written below; no other thread exists.
    let block = unsafe { std::slice::from_raw_parts_mut(start as *mut u8, end - start) };
    let prefix = format!("{name}=");
    let mut wiped = 0;
    for entry in block.split_mut(|b| *b == 0) {
        if entry.starts_with(prefix.as_bytes()) {
            if let Some(value) = entry.get_mut(prefix.len()..) {
                value.fill(0);
                wiped += 1;
            }
        }
    }
    Ok(wiped)
}

/// Whether descriptor number `fd` is open in this process.
pub(super) fn fd_is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only reads the descriptor flags of `fd`; on a closed fd it fails with EBADF. No
    // memory is passed.
    Errno::result(unsafe { libc::fcntl(fd, libc::F_GETFD) }).is_ok()
}

/// `ip link set lo up` with two ioctls.
pub(super) fn loopback_up() -> io::Result<()> {
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
    let sock = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // SAFETY: `ifreq` is a plain C struct (name array plus a union of plain data); all-zero is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = libc::c_char::from_ne_bytes([*src]);
    }
    // SAFETY: SIOCGIFFLAGS reads the interface named in `req` and writes its flags into `req`, a live,
    // correctly sized `ifreq`; the socket fd is open for the duration of the call.
    Errno::result(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS as _, &mut req) })?;
    // SAFETY: the kernel filled the `ifru_flags` member of the union just above.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    let up = libc::c_short::try_from(libc::IFF_UP | libc::IFF_RUNNING).unwrap_or(1);
    req.ifr_ifru.ifru_flags = flags | up;
    // SAFETY: as above; SIOCSIFFLAGS only reads `req`.
    Errno::result(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS as _, &mut req) })?;
    Ok(())
}
