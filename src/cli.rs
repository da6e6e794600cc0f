//! Command line.
use crate::init::Context;

/// Parse the command line, run the command, return the exit code.
pub fn main(_ctx: Context) -> i32 {
    0
}
