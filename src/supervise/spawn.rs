//! Starting children: the only place in the project that creates a process.
//!
//! Every child starts in a clean signal state whatever ours is: between `fork` and `exec` (a `pre_exec` hook,
//! so async-signal-safe calls only) it
//!
//! 1. becomes the leader of its own process group (`setpgid(0, 0)`), so the supervisor can signal the whole
//!    application (a shell and its pipeline) with one `killpg`, as tini `-g` and catatonit `-g` do;
//! 2. when asked and stdin is a terminal, takes the terminal's foreground (`tcsetpgrp`), so an interactive
//!    app (`docker run -it`) can read it without `SIGTTIN`; `SIGTTOU` is still blocked at that point, which
//!    is what lets a background group make the call;
//! 3. resets every signal disposition to `SIG_DFL`: handlers vanish at `exec` anyway, but `SIG_IGN` would be
//!    inherited (std itself ignores `SIGPIPE`);
//! 4. empties the signal mask — not restores the original: a container runtime may hand PID 1 a blocked
//!    mask, and std's `Command` leaves the mask alone (measured), so without this step the application would
//!    never see `SIGTERM`.
//!
//! stdio and the environment are inherited. `argv[0]` without a slash is looked up in `PATH` (or a default
//! one, since a VM's PID 1 gets no `PATH` from the kernel); failures map to the shell's codes: 127 when the
//! program is not found, 126 when it cannot be executed.
//!
//! Children are never waited for here (the returned [`std::process::Child`] is dropped): the reaper owns
//! `waitpid`. The one exception is std's own: when `exec` fails, `spawn` reaps that child itself before
//! returning the error, and it does so synchronously in the supervisor thread.
#![forbid(unsafe_code)]

use nix::errno::Errno;
use nix::unistd::Pid;
use std::ffi::OsStr;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `PATH` used when the environment has none (the kernel starts a VM's init without one).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Exit code for "command not found" (as shells report it).
pub const NOT_FOUND: i32 = 127;
/// Exit code for "found but cannot be executed".
pub const NOT_EXECUTABLE: i32 = 126;

/// How to start a child.
#[derive(Debug, Clone, Default)]
pub struct SpawnOptions {
    /// Give it the terminal's foreground when stdin is a terminal (for the application only).
    pub foreground_tty: bool,
}

/// A started child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spawned {
    /// Its pid.
    pub pid: Pid,
    /// Its process group (equal to the pid: it leads its own group).
    pub pgid: Pid,
}

/// Why a child could not be started.
#[derive(Debug)]
pub enum Error {
    /// No argv at all.
    EmptyArgv,
    /// `argv[0]` was not found (in `PATH` when it has no slash).
    NotFound {
        /// `argv[0]` as given.
        program: String,
        /// The file exists, but the interpreter its `#!` line names does not.
        bad_interpreter: bool,
    },
    /// It exists but cannot be executed (permissions, not an executable format, a directory...).
    NotExecutable {
        /// `argv[0]` as given.
        program: String,
        /// The OS error.
        source: io::Error,
    },
    /// `fork` or another part of starting it failed.
    Spawn {
        /// `argv[0]` as given.
        program: String,
        /// The OS error.
        source: io::Error,
    },
}

impl Error {
    /// The exit code a shell would report for this failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::EmptyArgv | Error::NotFound { .. } => NOT_FOUND,
            Error::NotExecutable { .. } | Error::Spawn { .. } => NOT_EXECUTABLE,
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::EmptyArgv => write!(f, "Empty command line"),
            Error::NotFound {
                program,
                bad_interpreter: true,
            } => {
                write!(
                    f,
                    "{program}: bad interpreter (the program its #! line names does not exist)"
                )
            }
            Error::NotFound { program, .. } if program.contains('/') => {
                write!(f, "{program}: command not found")
            }
            Error::NotFound { program, .. } => write!(f, "{program}: command not found in PATH"),
            Error::NotExecutable { program, .. } => write!(f, "{program}: cannot execute"),
            Error::Spawn { program, .. } => write!(f, "{program}: cannot start"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::EmptyArgv | Error::NotFound { .. } => None,
            Error::NotExecutable { source, .. } | Error::Spawn { source, .. } => Some(source),
        }
    }
}

/// What a `PATH` lookup found.
#[derive(Debug, PartialEq, Eq)]
enum Lookup {
    Found(PathBuf),
    /// Only non-executable candidates exist (execvp then reports EACCES).
    NotExecutable(PathBuf),
    NotFound,
}

/// Resolve `program` the way `execvp` does: as is when it has a slash, else the first executable regular
/// file `dir/program` over the `:`-separated `path` (an empty entry means the current directory).
fn lookup(program: &str, path: &OsStr) -> Lookup {
    if program.contains('/') {
        return Lookup::Found(PathBuf::from(program));
    }
    if program.is_empty() {
        return Lookup::NotFound;
    }
    let mut not_executable = None;
    for dir in std::env::split_paths(path) {
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
        let candidate = dir.join(program);
        let Ok(meta) = std::fs::metadata(&candidate) else {
            continue;
        };
        if !meta.is_file() {
            continue; // a directory of that name is not a command (bash skips it too)
        }
        if meta.permissions().mode() & 0o111 != 0 {
            return Lookup::Found(candidate);
        }
        not_executable.get_or_insert(candidate);
    }
    not_executable.map_or(Lookup::NotFound, Lookup::NotExecutable)
}

/// Start `argv` in its own process group with a clean signal state (see the module doc).
pub fn spawn(argv: &[String], opts: &SpawnOptions) -> Result<Spawned, Error> {
    let (program, args) = argv.split_first().ok_or(Error::EmptyArgv)?;
    let path = std::env::var_os("PATH").unwrap_or_else(|| DEFAULT_PATH.into());
    let resolved = match lookup(program, &path) {
        Lookup::Found(p) => p,
        Lookup::NotExecutable(p) => {
            let source = io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("{} is not executable", p.display()),
            );
            return Err(Error::NotExecutable {
                program: program.clone(),
                source,
            });
        }
        Lookup::NotFound => {
            return Err(Error::NotFound {
                program: program.clone(),
                bad_interpreter: false,
            })
        }
    };
    let mut cmd = Command::new(&resolved);
    cmd.arg0(program).args(args);
    let foreground = opts.foreground_tty;
    super::sys::clean_child_state(&mut cmd, foreground);
    match cmd.spawn() {
        Ok(child) => {
            let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
            Ok(Spawned { pid, pgid: pid })
        }
        Err(source) => Err(classify(program, &resolved, source)),
    }
}

/// Map a failed `spawn` to the shell's categories.
fn classify(program: &str, resolved: &Path, source: io::Error) -> Error {
    let program = program.to_owned();
    match source.raw_os_error().map(Errno::from_raw) {
        // ENOENT from exec of a path that exists: a script whose `#!` interpreter is missing. Shells report
        // that as 127 too.
        Some(Errno::ENOENT | Errno::ENOTDIR) => Error::NotFound {
            bad_interpreter: resolved.exists(),
            program,
        },
        Some(Errno::EACCES | Errno::ENOEXEC | Errno::EISDIR | Errno::EPERM | Errno::ETXTBSY) => {
            Error::NotExecutable { program, source }
        }
        _ => Error::Spawn { program, source },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn tempdir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("encfs-init-spawn-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn write(path: &Path, mode: u32) {
        fs::write(path, "#!/bin/sh\nexit 0\n").unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn lookup_takes_the_first_executable_in_path_order() {
        let dir = tempdir("order");
        let (a, b) = (dir.join("a"), dir.join("b"));
        fs::create_dir_all(&a).unwrap();
        fs::create_dir_all(&b).unwrap();
        write(&a.join("tool"), 0o644);
        write(&b.join("tool"), 0o755);
        let path = std::env::join_paths([&a, &b]).unwrap();
        assert_eq!(lookup("tool", &path), Lookup::Found(b.join("tool")));
        // Only a non-executable candidate: EACCES, like execvp.
        let only_a = std::env::join_paths([&a]).unwrap();
        assert_eq!(
            lookup("tool", &only_a),
            Lookup::NotExecutable(a.join("tool"))
        );
        assert_eq!(lookup("missing", &path), Lookup::NotFound);
        // A directory of that name is not a program.
        fs::create_dir_all(b.join("adir")).unwrap();
        assert_eq!(lookup("adir", &path), Lookup::NotFound);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn lookup_keeps_paths_with_a_slash() {
        assert_eq!(
            lookup("./x", OsStr::new("/bin")),
            Lookup::Found(PathBuf::from("./x"))
        );
        assert_eq!(lookup("", OsStr::new("/bin")), Lookup::NotFound);
    }

    #[test]
    fn failures_map_to_shell_codes() {
        assert_eq!(
            spawn(&[], &SpawnOptions::default())
                .unwrap_err()
                .exit_code(),
            127
        );
        let err = spawn(
            &["/nonexistent/encfs-init-test".into()],
            &SpawnOptions::default(),
        )
        .unwrap_err();
        assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
        assert_eq!(err.exit_code(), 127);
        let dir = tempdir("noexec");
        let file = dir.join("data");
        write(&file, 0o644);
        // Root bypasses permission bits only when some x bit is set: this is EACCES even as root.
        let err = spawn(
            &[file.to_string_lossy().into_owned()],
            &SpawnOptions::default(),
        )
        .unwrap_err();
        assert!(matches!(err, Error::NotExecutable { .. }), "{err:?}");
        assert_eq!(err.exit_code(), 126);
        let err = spawn(
            &[dir.to_string_lossy().into_owned()],
            &SpawnOptions::default(),
        )
        .unwrap_err();
        assert_eq!(err.exit_code(), 126, "{err:?}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
