//! The encfs-init binary: read the command line, block signals when it is `run`, find out where we run, set up
//! logging, dispatch, and end (exit, or power off as a VM's PID 1). Everything else lives in the library.
#![forbid(unsafe_code)]

fn main() {
    // Parsing spawns no thread and touches nothing; it decides whether this is PID 1's `run`.
    let pid1 = encfs_init::init::early::detect() != encfs_init::init::Context::Process;
    let cmd = encfs_init::cli::parse_process_args(pid1);
    if cmd
        .as_ref()
        .is_ok_and(encfs_init::cli::Command::blocks_signals)
    {
        // Before any thread exists: threads inherit the mask, and the supervisor loop owns the signals. The
        // tools keep the dispositions they were started with, so Ctrl-C and SIGTERM end them.
        encfs_init::supervise::signals::block_all();
    }
    let ctx = encfs_init::init::early();
    let code = encfs_init::cli::main(ctx, cmd);
    encfs_init::init::finish(ctx, code)
}
