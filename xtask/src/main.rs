//! Developer tasks: `cargo xtask vmtest` (see README).
fn main() {
    eprintln!("xtask: not implemented yet");
    std::process::exit(2);
}
