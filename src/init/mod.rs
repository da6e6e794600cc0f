//! The boot sequence: the only place that knows the order of the steps.
//!
//! OWNED BY the PID-1 work (issue 3): `early` (context detection, VM mounts, modules), `run` (boot steps and
//! supervision), `finish` (exit or power off).

use crate::manifest::Plan;

/// Which PID-1 situation we are in. Detected at run time, never compiled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// Not PID 1 (a tool invocation, or `run` under another init).
    Process,
    /// PID 1 of a container: the runtime mounted /proc, /sys, /dev.
    Container,
    /// PID 1 of a VM: nothing mounted; we mount, load modules and power off at the end.
    Vm,
}

/// Detect the context and, as PID 1 of a VM, mount what the rest needs and point fds 0-2 at the console.
/// Runs before logging is set up; problems are returned, not printed.
pub fn early() -> Context {
    Context::Process
}

/// Run the plan: boot steps, then supervise. Returns the exit code.
pub fn run(_ctx: Context, _plan: Plan) -> i32 {
    crate::exit::OK
}

/// End the process with `code`: exit, or as a VM's PID 1 print the verdict line and power off.
pub fn finish(_ctx: Context, code: i32) -> ! {
    #[allow(clippy::exit)]
    std::process::exit(code)
}
