//! The process's own attributes (sys-level): no core dumps and no ptrace-style reads of PID 1's memory, and
//! the legacy variable's value wiped from the original environment block.
//!
//! `std::env::remove_var` only takes the variable out of libc's `environ` array: the bytes the kernel copied
//! onto the initial stack at `execve` stay, and `/proc/<pid>/environ` shows exactly that block (the range
//! `env_start..env_end` of `/proc/<pid>/stat`). [`scrub_env_value`] overwrites the value there in place.

use nix::libc;

/// Make the process non-dumpable (`PR_SET_DUMPABLE` 0: no core dump, `/proc/<pid>/{mem,environ,...}` owned
/// by root and closed to ptrace-less readers) and set `RLIMIT_CORE` to 0. One line on failure.
pub fn harden() -> Result<(), String> {
    nix::sys::prctl::set_dumpable(false).map_err(|e| {
        format!("process hardening: prctl(PR_SET_DUMPABLE, 0) failed: {e}; fix: run on Linux with prctl allowed by the seccomp profile")
    })?;
    let none = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit reads the live, initialized `none` through a valid pointer and writes nothing;
    // lowering a limit needs no privilege.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_CORE, &none) };
    if rc != 0 {
        return Err(format!(
            "process hardening: setrlimit(RLIMIT_CORE, 0) failed: {}; fix: run on Linux with setrlimit allowed by the seccomp profile",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// The original environment block's address range, from fields 50 and 51 (`env_start`, `env_end`) of
/// `/proc/self/stat` (Linux 3.5+).
fn env_block() -> Result<(usize, usize), String> {
    let stat = std::fs::read_to_string("/proc/self/stat")
        .map_err(|e| format!("read /proc/self/stat: {e}"))?;
    // pid (comm) state ...: comm may hold spaces and parentheses, so count fields after the last ')'.
    let tail = stat
        .rsplit_once(") ")
        .map(|(_, t)| t)
        .ok_or("/proc/self/stat has no ')'")?;
    // The tail starts at field 3.
    let field = |n: usize| -> Result<usize, String> {
        tail.split_whitespace()
            .nth(n - 3)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("/proc/self/stat has no field {n}"))
    };
    Ok((field(50)?, field(51)?))
}

/// Overwrite with zero bytes the value of every `name=value` entry in the process's original environment
/// block (what `/proc/<pid>/environ` shows); the name and `=` stay. Returns how many entries were wiped.
/// Call it after the value was read, and after `std::env::remove_var(name)` so that nothing refers to
/// those bytes any more. Sound only while no other thread reads the environment. Works when the process
/// is not dumpable (it reads the block from memory, not through `/proc/self/environ`, which is then root's).
pub fn scrub_env_value(name: &str) -> Result<usize, String> {
    let (start, end) = env_block()?;
    let len = end
        .checked_sub(start)
        .filter(|l| *l <= MAX_ENV_BLOCK && start != 0)
        .ok_or_else(|| {
            format!("/proc/self/stat says the environment block is {start:#x}..{end:#x}")
        })?;
    // SAFETY: `start..end` is this process's original environment block as the kernel reports it
    // (`mm->env_start..env_end`): the strings `execve` copied onto the initial stack, mapped, readable and
    // writable for the life of the process, and checked above to be a plausible, non-null range. No Rust
    // reference points into it: std copies environment values out under its lock, and after `remove_var`
    // libc's `environ` no longer refers to the entries written below; no other thread exists.
    let block = unsafe { std::slice::from_raw_parts_mut(start as *mut u8, len) };
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

/// Linux caps argv + envp at a quarter of the stack limit; anything larger is not an environment block.
const MAX_ENV_BLOCK: usize = 1 << 30;
