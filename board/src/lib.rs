//! Board descriptions and partition configs for spumone.
//!
//! - [`rt`] (always, `no_std`, no allocation): the static tables spumone boots from.
//! - With the `host` feature: [`load_config`] parses a partition config and its board, checks
//!   it, and [`ValidatedConfig::to_rust`] turns it into Rust source for [`rt::Config`].
//!
//! The schema and the rules are described in `docs/internals.md` ("Partition configuration").
#![cfg_attr(not(feature = "host"), no_std)]
#![forbid(unsafe_code)]

// Lets generated code (`board::rt::...`) compile inside this crate's own tests.
extern crate self as board;

pub mod rt;

#[cfg(feature = "host")]
mod host;
#[cfg(feature = "host")]
pub use host::*;
