//! spumone: a thin type-1 hypervisor for multicore aarch64 boards.
//!
//! - [`hvcore`] holds every decision as plain Rust, unit-tested on the host.
//! - [`dsm`] is the D-System Monitor runtime: when checkers run, and the checkers' view of
//!   Linux, host-tested too.
//! - `arch` (bare-metal aarch64 only) moves bits between system registers, MMIO and those
//!   decisions.
#![cfg_attr(not(test), no_std)]

#[macro_use]
mod macros;

#[path = "core/mod.rs"]
pub mod hvcore;

pub mod dsm;

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub mod arch;
