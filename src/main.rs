//! The encfs-init binary: block signals, find out where we run, set up logging, dispatch the command line,
//! and end (exit, or power off as a VM's PID 1). Everything else lives in the library.

fn main() {
    // First, before any thread exists: threads inherit the mask, and the supervisor loop owns the signals.
    encfs_init::supervise::signals::block_all();
    let ctx = encfs_init::init::early();
    let code = encfs_init::cli::main(ctx);
    encfs_init::init::finish(ctx, code)
}
