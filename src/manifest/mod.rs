//! The manifest.
mod plan;
pub use plan::*;
