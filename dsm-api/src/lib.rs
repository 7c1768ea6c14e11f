//! D-System Monitor runtime API.
//!
//! The operations a kernel-integrity checker sees ([`Guest`]), the checker plugin trait
//! ([`Checker`]), a bounded stage-1 page-table walker ([`walk`]), the kernel's symbols
//! ([`symbols`]) and the run-time KASLR slide search ([`kaslr`]). The hypervisor implements
//! [`Guest`]; checkers (`monitors/*`) are safe code that only see this crate.
//!
//! Every value read from the guest is untrusted: the API returns errors, never panics, on
//! whatever the guest's memory or registers hold.
//!
//! Features: `std` adds host-side parsing of the kernel `Image` ([`image`]) used to generate
//! symbol tables at build time; `test-support` adds an in-memory guest built from the real
//! Debian `Image` ([`test_support`]).
#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]

mod checker;
pub mod digest;
mod guest;
pub mod kaslr;
pub mod kmem;
pub mod symbols;
pub mod walk;
pub mod xref;

#[cfg(feature = "std")]
pub mod image;
#[cfg(feature = "test-support")]
pub mod test_objects;
#[cfg(feature = "test-support")]
pub mod test_support;

pub use checker::{Budget, CheckError, Checker, Progress};
pub use guest::{
    at_el1, exception_level, Access, Finding, Guest, GuestError, KernelInfo, PhysRange,
    StopTheWorld, SysReg, WatchEvent, WatchId,
};
pub use symbols::KernelSymbols;
pub use walk::{Stage1Regs, Translation, WalkError};

/// The arm64 kernel's link-time virtual address of `_text` (48-bit VA, 6.1): the KASLR slide
/// is `VA(_text) - KIMAGE_VADDR`.
pub const KIMAGE_VADDR: u64 = 0xffff_8000_0800_0000;
