//! Architecture mechanism. Only aarch64 exists; pick the ISA here, in one place.

pub mod aarch64;
pub use aarch64::*;
