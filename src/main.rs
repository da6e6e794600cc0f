//! The encfs-init binary: everything lives in the library.
fn main() {}
