//! PID-1 conformance (tini/catatonit style), on the host: the real binary runs as PID 1 of a fresh PID
//! namespace (`unshare --pid --fork --mount-proc`, so the context is "container"), with a private tmpfs on
//! `/run`, and a shell application probes what a PID 1 must guarantee: exit codes pass through, signal deaths
//! become 128+N, orphans are reaped, the application's signal state is clean, signals reach it, SIGTERM
//! escalates to SIGKILL after the grace period, a missing command is 127, restarts follow the policy.
//!
//! Needs root (a PID namespace) and util-linux `unshare`; without them every test fails with a message,
//! none passes silently. The CI runs as root.

#[cfg(test)]
mod pid1 {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    use std::io::Read;
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::thread::JoinHandle;
    use std::time::{Duration, Instant};

    const BIN: &str = env!("CARGO_BIN_EXE_encfs-init");
    const TIMEOUT: Duration = Duration::from_secs(30);

    /// Runs in the new namespace before encfs-init: a private /run (the default readiness file lives there),
    /// then `exec`, so encfs-init keeps PID 1. With `$PID1_TEST_ENV` (GNU `env` options such as
    /// `--block-signal`), encfs-init starts through `env`, which blocks or ignores signals right before the
    /// exec; a `cat` started the same way first reports the signal state encfs-init will inherit. (The shell
    /// itself cannot do this: dash clears its signal mask at startup.)
    const WRAPPER: &str = r#"
mount -t tmpfs encfs-pid1-test /run || exit 90
if [ -n "$PID1_TEST_ENV" ]; then
    env $PID1_TEST_ENV cat /proc/self/status | while read -r key val rest; do
        case $key in SigBlk: | SigIgn:) echo "inherited $key $val" >&2 ;; esac
    done
    exec env $PID1_TEST_ENV "$@"
fi
exec "$@"
"#;

    fn require_root() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the PID-1 conformance suite needs root (it creates PID namespaces); run `cargo test` as root"
        );
        assert!(
            Path::new("/usr/bin/unshare").exists() || Path::new("/bin/unshare").exists(),
            "the PID-1 conformance suite needs util-linux `unshare`"
        );
    }

    /// A fresh scratch directory (shared with the namespace: only /run is private there).
    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("encfs-pid1-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// A manifest in `dir` with the readiness file inside `dir` and `extra` TOML appended.
    fn manifest(dir: &Path, extra: &str) -> PathBuf {
        let path = dir.join("manifest.toml");
        let text = format!("readiness_file = \"{}/ready\"\n{extra}\n", dir.display());
        std::fs::write(&path, text).unwrap();
        path
    }

    #[derive(Default)]
    struct Opts<'a> {
        manifest: Option<&'a Path>,
        /// GNU `env` options applied to encfs-init's start (`--block-signal --ignore-signal=TERM`).
        env_opts: &'a str,
    }

    struct Running {
        child: Child,
        started: Instant,
        out: JoinHandle<String>,
        err: JoinHandle<String>,
    }

    #[derive(Debug)]
    struct Finished {
        code: i32,
        stdout: String,
        stderr: String,
        elapsed: Duration,
    }

    fn reader(mut r: impl Read + Send + 'static) -> JoinHandle<String> {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    }

    /// Start `encfs-init run [--manifest M] [-- app...]` as PID 1 of a new PID namespace.
    fn start(app: &[&str], opts: &Opts) -> Running {
        require_root();
        let mut cmd = Command::new("unshare");
        cmd.args([
            "--pid",
            "--fork",
            "--kill-child",
            "--mount-proc",
            "/bin/sh",
            "-c",
            WRAPPER,
            "wrapper",
            BIN,
            "run",
        ]);
        if let Some(m) = opts.manifest {
            cmd.arg("--manifest").arg(m);
        }
        if !app.is_empty() {
            cmd.arg("--").args(app);
        }
        cmd.env("PID1_TEST_ENV", opts.env_opts)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn unshare");
        let out = reader(child.stdout.take().unwrap());
        let err = reader(child.stderr.take().unwrap());
        Running {
            child,
            started: Instant::now(),
            out,
            err,
        }
    }

    impl Running {
        /// encfs-init's host pid: the child of `unshare` (the wrapper shell exec'd it).
        fn init_pid(&self) -> Pid {
            let parent = i32::try_from(self.child.id()).unwrap();
            for entry in std::fs::read_dir("/proc").unwrap().flatten() {
                let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                    continue;
                };
                // pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
                let Some((head, tail)) = stat.rsplit_once(") ") else {
                    continue;
                };
                let ppid = tail
                    .split_whitespace()
                    .nth(1)
                    .and_then(|p| p.parse::<i32>().ok());
                if ppid == Some(parent) {
                    let pid = head.split_whitespace().next().unwrap().parse().unwrap();
                    return Pid::from_raw(pid);
                }
            }
            panic!("no child of unshare {parent} found");
        }

        fn wait(mut self) -> Finished {
            let code = loop {
                if let Some(status) = self.child.try_wait().unwrap() {
                    break status.code().unwrap_or(-1);
                }
                if self.started.elapsed() > TIMEOUT {
                    // --kill-child takes the whole namespace down with unshare.
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    panic!(
                        "encfs-init did not finish within {TIMEOUT:?}; stderr: {}",
                        self.err.join().unwrap()
                    );
                }
                std::thread::sleep(Duration::from_millis(10));
            };
            let elapsed = self.started.elapsed();
            Finished {
                code,
                stdout: self.out.join().unwrap(),
                stderr: self.err.join().unwrap(),
                elapsed,
            }
        }
    }

    fn run(app: &[&str], opts: &Opts) -> Finished {
        start(app, opts).wait()
    }

    fn sh(script: &str, opts: &Opts) -> Finished {
        run(&["/bin/sh", "-c", script], opts)
    }

    fn wait_for_file(path: &Path) {
        let t0 = Instant::now();
        while !path.exists() {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "{} never appeared",
                path.display()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn plain_init_without_manifest() {
        let r = run(&["/bin/true"], &Opts::default());
        assert_eq!(r.code, 0, "{r:?}");
        // Context detection: PID 1 with /proc mounted is a container.
        assert!(r.stderr.contains("Container"), "{}", r.stderr);
    }

    #[test]
    fn exit_codes_pass_through() {
        let dir = scratch("exit-codes");
        let m = manifest(&dir, "");
        for code in [0, 1, 2, 127, 255] {
            let r = sh(
                &format!("exit {code}"),
                &Opts {
                    manifest: Some(&m),
                    ..Opts::default()
                },
            );
            assert_eq!(r.code, code, "{r:?}");
        }
    }

    #[test]
    fn signal_deaths_are_128_plus_n() {
        let dir = scratch("signal-deaths");
        let m = manifest(&dir, "");
        for (name, n) in [
            ("TERM", 15),
            ("HUP", 1),
            ("INT", 2),
            ("USR1", 10),
            ("USR2", 12),
            ("KILL", 9),
        ] {
            // The shell resets INT to default first: a non-interactive shell may start with it ignored.
            let r = sh(
                &format!("trap - INT; kill -{name} $$; sleep 5"),
                &Opts {
                    manifest: Some(&m),
                    ..Opts::default()
                },
            );
            assert_eq!(r.code, 128 + n, "SIG{name}: {r:?}");
        }
    }

    #[test]
    fn orphans_are_all_reaped() {
        let dir = scratch("orphans");
        let m = manifest(&dir, "");
        // Each (sleep &) subshell exits at once; its sleep is re-parented to PID 1, which must reap it. The
        // app then counts zombies in the namespace's /proc with builtins only (a forked grep would count
        // itself) and exits with that count.
        let script = r#"
for i in $(seq 200); do (sleep 0.01 &); done
sleep 1
tries=0
while :; do
    zombies=0
    for f in /proc/[0-9]*/status; do
        while read -r key val rest; do
            if [ "$key" = State: ]; then [ "$val" = Z ] && zombies=$((zombies + 1)); break; fi
        done < "$f" 2>/dev/null
    done
    echo "orphans: $zombies zombies"
    [ "$zombies" -eq 0 ] && exit 0
    tries=$((tries + 1))
    [ "$tries" -ge 20 ] && exit $zombies
    sleep 0.25
done
"#;
        let r = sh(
            script,
            &Opts {
                manifest: Some(&m),
                ..Opts::default()
            },
        );
        assert_eq!(r.code, 0, "zombies left: {r:?}");
        assert!(r.stdout.contains("orphans: 0 zombies"), "{r:?}");
    }

    #[test]
    fn app_starts_with_no_blocked_or_ignored_signals() {
        let dir = scratch("sigmask");
        let m = manifest(&dir, "");
        let script = r#"
status=0
while read -r key val rest; do
    case $key in SigBlk: | SigIgn:) echo "app $key $val"; [ "$val" = 0000000000000000 ] || status=1 ;; esac
done < /proc/$$/status
exit $status
"#;
        let env_opts =
            "--block-signal --ignore-signal=TERM,INT,HUP,USR1,USR2,QUIT,PIPE,CHLD,WINCH,ALRM";
        let opts = Opts {
            manifest: Some(&m),
            env_opts,
        };
        let r = sh(script, &opts);
        // The precondition: encfs-init itself was started with signals blocked and ignored.
        let inherited = |key: &str| {
            let line = r
                .stderr
                .lines()
                .find(|l| l.starts_with(&format!("inherited {key}")))
                .unwrap_or("");
            line.rsplit(' ')
                .next()
                .is_some_and(|v| v.chars().any(|c| c != '0'))
        };
        assert!(
            inherited("SigBlk:") && inherited("SigIgn:"),
            "precondition not met: {r:?}"
        );
        assert!(r.stdout.contains("app SigBlk: 0000000000000000"), "{r:?}");
        assert!(r.stdout.contains("app SigIgn: 0000000000000000"), "{r:?}");
        assert_eq!(r.code, 0, "{r:?}");
    }

    #[test]
    fn signals_sent_to_pid_1_reach_the_app() {
        let dir = scratch("forward");
        let m = manifest(&dir, "");
        // `sleep & wait` lets the trap run as soon as the signal arrives.
        for (name, code) in [
            ("USR1", 42),
            ("USR2", 43),
            ("HUP", 44),
            ("QUIT", 45),
            ("WINCH", 46),
            ("INT", 47),
        ] {
            let script =
                format!("trap 'exit {code}' {name}; kill -{name} 1; sleep 10 & wait; exit 1");
            let r = sh(
                &script,
                &Opts {
                    manifest: Some(&m),
                    ..Opts::default()
                },
            );
            assert_eq!(r.code, code, "SIG{name}: {r:?}");
            assert!(
                r.elapsed < Duration::from_secs(5),
                "SIG{name} took {:?}",
                r.elapsed
            );
        }
    }

    #[test]
    fn sigterm_escalates_to_sigkill_after_the_grace_period() {
        let dir = scratch("grace");
        let m = manifest(&dir, "[supervise]\ngrace_period = \"1s\"");
        let marker = dir.join("started");
        // The app and its children ignore TERM; only SIGKILL ends them.
        let script = format!(
            "trap '' TERM; touch {}; while :; do sleep 0.1; done",
            marker.display()
        );
        let running = start(
            &["/bin/sh", "-c", &script],
            &Opts {
                manifest: Some(&m),
                ..Opts::default()
            },
        );
        wait_for_file(&marker);
        let sent = Instant::now();
        kill(running.init_pid(), Signal::SIGTERM).unwrap();
        let r = running.wait();
        let took = sent.elapsed();
        assert_eq!(r.code, 137, "{r:?}");
        assert!(
            took >= Duration::from_millis(950),
            "SIGKILL came before the grace period: {took:?}"
        );
        assert!(
            took < Duration::from_millis(2500),
            "SIGKILL came late: {took:?}"
        );
        assert!(r.stderr.contains("SIGKILL"), "{r:?}");
    }

    #[test]
    fn sigterm_from_outside_stops_a_cooperative_app_at_once() {
        let dir = scratch("term");
        let m = manifest(&dir, "[supervise]\ngrace_period = \"10s\"");
        let marker = dir.join("started");
        let script = format!("touch {}; while :; do sleep 0.1; done", marker.display());
        let running = start(
            &["/bin/sh", "-c", &script],
            &Opts {
                manifest: Some(&m),
                ..Opts::default()
            },
        );
        wait_for_file(&marker);
        assert!(
            dir.join("ready").exists(),
            "readiness file missing while the app runs"
        );
        let sent = Instant::now();
        kill(running.init_pid(), Signal::SIGTERM).unwrap();
        let r = running.wait();
        assert_eq!(r.code, 143, "{r:?}");
        assert!(
            sent.elapsed() < Duration::from_secs(3),
            "took {:?}",
            sent.elapsed()
        );
        assert!(!dir.join("ready").exists(), "readiness file left behind");
    }

    #[test]
    fn without_an_app_sigterm_ends_with_0_and_orphans_are_reaped() {
        let dir = scratch("no-app");
        let m = manifest(&dir, "");
        let running = start(
            &[],
            &Opts {
                manifest: Some(&m),
                ..Opts::default()
            },
        );
        wait_for_file(&dir.join("ready"));
        kill(running.init_pid(), Signal::SIGTERM).unwrap();
        let r = running.wait();
        assert_eq!(r.code, 0, "{r:?}");
        assert!(!dir.join("ready").exists(), "readiness file left behind");
    }

    #[test]
    fn leftover_processes_get_sigterm_before_pid_1_exits() {
        let dir = scratch("sweep");
        let m = manifest(&dir, "");
        let note = dir.join("daemon");
        // A daemon in its own session outlives the app; PID 1 must ask it to stop (SIGTERM) before leaving,
        // so a teardown finds no users of the mounts.
        let script = format!(
            "setsid sh -c 'trap \"echo term > {0}; exit 0\" TERM; touch {0}.up; while :; do sleep 0.1; done' & \
             while [ ! -e {0}.up ]; do sleep 0.05; done; exit 3",
            note.display()
        );
        let r = sh(
            &script,
            &Opts {
                manifest: Some(&m),
                ..Opts::default()
            },
        );
        assert_eq!(r.code, 3, "{r:?}");
        assert_eq!(
            std::fs::read_to_string(&note).unwrap_or_default(),
            "term\n",
            "{r:?}"
        );
    }

    #[test]
    fn missing_or_unrunnable_commands_are_127_and_126() {
        let dir = scratch("missing");
        let m = manifest(&dir, "");
        let r = run(
            &["encfs-no-such-command"],
            &Opts {
                manifest: Some(&m),
                ..Opts::default()
            },
        );
        assert_eq!(r.code, 127, "{r:?}");
        let errors: Vec<&str> = r.stderr.lines().filter(|l| l.contains("ERROR")).collect();
        assert_eq!(errors.len(), 1, "one error line: {r:?}");
        assert!(errors[0].contains("encfs-no-such-command"), "{r:?}");
        let data = dir.join("not-executable");
        std::fs::write(&data, "#!/bin/sh\n").unwrap();
        let r = run(
            &[data.to_str().unwrap()],
            &Opts {
                manifest: Some(&m),
                ..Opts::default()
            },
        );
        assert_eq!(r.code, 126, "{r:?}");
    }

    /// An app that counts its runs in `dir/count` and exits 0 from run `succeed_at` on (never if 0).
    fn counting_app(dir: &Path, succeed_at: u32, fail_code: i32) -> String {
        let count = dir.join("count");
        format!(
            "n=$(cat {c} 2>/dev/null || echo 0); n=$((n + 1)); echo $n > {c}; \
             [ {s} -gt 0 ] && [ $n -ge {s} ] && exit 0; exit {fail_code}",
            c = count.display(),
            s = succeed_at
        )
    }

    fn runs(dir: &Path) -> u32 {
        std::fs::read_to_string(dir.join("count"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    #[test]
    fn on_failure_restarts_until_success() {
        let dir = scratch("restart");
        let app = counting_app(&dir, 4, 1);
        let m = manifest(
            &dir,
            &format!(
                "[app]\ncommand = [\"/bin/sh\", \"-c\", \"{app}\"]\nrestart = \"on-failure\"\n\
                 [supervise]\nbackoff_initial = \"50ms\"\nbackoff_max = \"200ms\"\nmax_restarts = 3"
            ),
        );
        let r = run(
            &[],
            &Opts {
                manifest: Some(&m),
                ..Opts::default()
            },
        );
        assert_eq!(r.code, 0, "{r:?}");
        assert_eq!(runs(&dir), 4, "3 failures, 3 restarts, then success");
        // Backoff 50 + 100 + 200 ms at least.
        assert!(r.elapsed >= Duration::from_millis(350), "{:?}", r.elapsed);
        assert!(r.stderr.contains("restart 3"), "{r:?}");
    }

    #[test]
    fn gives_up_after_max_restarts_in_a_row() {
        let dir = scratch("give-up");
        let app = counting_app(&dir, 0, 5);
        let m = manifest(
            &dir,
            &format!(
                "[app]\ncommand = [\"/bin/sh\", \"-c\", \"{app}\"]\nrestart = \"on-failure\"\n\
                 [supervise]\nbackoff_initial = \"10ms\"\nbackoff_max = \"20ms\"\nmax_restarts = 2"
            ),
        );
        let r = run(
            &[],
            &Opts {
                manifest: Some(&m),
                ..Opts::default()
            },
        );
        assert_eq!(r.code, 4, "exit::GAVE_UP: {r:?}");
        assert_eq!(runs(&dir), 3, "first run plus 2 restarts");
        assert!(!dir.join("ready").exists(), "readiness file left behind");
    }

    #[test]
    fn restart_never_passes_a_failure_through() {
        let dir = scratch("never");
        let app = counting_app(&dir, 0, 9);
        let m = manifest(
            &dir,
            &format!("[app]\ncommand = [\"/bin/sh\", \"-c\", \"{app}\"]\nrestart = \"never\""),
        );
        let r = run(
            &[],
            &Opts {
                manifest: Some(&m),
                ..Opts::default()
            },
        );
        assert_eq!(r.code, 9, "{r:?}");
        assert_eq!(runs(&dir), 1);
    }

    #[test]
    fn a_filesystem_that_cannot_open_fails_closed_with_one_line() {
        let dir = scratch("fs-fail-closed");
        let m = manifest(
            &dir,
            "[[filesystem]]\nmount_point = \"/mnt/remote/model\"\n\
             url = \"https://acct.blob.core.windows.net/c/model.img\"\naccess = \"private\"\n\
             [filesystem.key]\nkid = \"k\"\nauthority = \"a.eus.attest.azure.net\"\n\
             vault = \"v.vault.azure.net\"",
        );
        // A stale readiness claim from an earlier run must not survive a failed boot.
        std::fs::write(dir.join("ready"), "1\n").unwrap();
        let marker = dir.join("app-ran");
        let r = sh(
            &format!("touch {}", marker.display()),
            &Opts {
                manifest: Some(&m),
                ..Opts::default()
            },
        );
        assert_eq!(r.code, 3, "exit::BOOT_FAILED: {r:?}");
        let errors: Vec<&str> = r.stderr.lines().filter(|l| l.contains("ERROR")).collect();
        assert_eq!(errors.len(), 1, "one error line: {r:?}");
        assert!(
            errors[0].contains("attestation: no SEV-SNP attestation interface found"),
            "{r:?}"
        );
        assert!(!marker.exists(), "the application ran although boot failed");
        assert!(
            !dir.join("ready").exists(),
            "stale readiness file left behind"
        );
    }

    #[test]
    fn the_applications_whole_group_is_stopped_before_the_run_ends() {
        let dir = scratch("group-drain");
        let m = manifest(&dir, "[supervise]\ngrace_period = \"5s\"");
        let marker = dir.join("child-stopped");
        // A background child of the app (same process group) that takes a moment to stop, as a writer
        // finishing a write would; the leader exits at once on SIGTERM.
        let script = format!(
            "( trap 'sleep 0.5; echo stopped > {}; exit 0' TERM; while :; do sleep 0.1; done ) &\n\
             sleep 0.3\n\
             trap 'exit 0' TERM\n\
             kill -TERM 1\n\
             sleep 10 & wait\n\
             exit 1",
            marker.display()
        );
        let r = sh(
            &script,
            &Opts {
                manifest: Some(&m),
                ..Opts::default()
            },
        );
        assert_eq!(r.code, 0, "{r:?}");
        assert!(marker.exists(), "the child did not stop cleanly: {r:?}");
        // The supervisor waited for the group itself; the final sweep found nobody left.
        assert!(
            r.stderr
                .contains("SIGTERM to the rest of the application's process group"),
            "{r:?}"
        );
        assert!(
            !r.stderr
                .contains("sending SIGTERM to the remaining processes"),
            "{r:?}"
        );
    }
}
