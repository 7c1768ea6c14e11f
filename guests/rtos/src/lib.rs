//! The RTOS guest of spumone.
//!
//! Pure logic (the [`kernel`], the service-call ABI, task contexts, boot environment,
//! console chunking, exception syndromes, page-table layout, GIC encodings, latency
//! statistics, fault-probe bookkeeping) is plain Rust tested on the host. Only [`arch`],
//! built for `aarch64` with no OS, touches registers and devices; [`app`] is the boot-time
//! self-test and latency probe that runs on it.
#![cfg_attr(not(test), no_std)]

pub mod boot;
pub mod console;
pub mod context;
pub mod esr;
pub mod gic;
pub mod kernel;
pub mod latency;
pub mod layout;
pub mod mmu;
pub mod probe;
pub mod svc;

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub mod app;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub mod arch;

/// Formats to the RTOS console (the hypercall channel or the PL011, chosen at boot).
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => {
        $crate::arch::console::print_fmt(format_args!($($arg)*))
    };
}

/// Like [`print!`], with a trailing newline.
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
#[macro_export]
macro_rules! println {
    () => {
        $crate::print!("\n")
    };
    ($($arg:tt)*) => {
        $crate::arch::console::print_fmt(format_args!("{}\n", format_args!($($arg)*)))
    };
}
