//! The RTOS guest of spumone.
//!
//! Pure logic (boot environment, console chunking, exception syndromes, page-table layout,
//! fault-probe bookkeeping) is plain Rust tested on the host. Only [`arch`], built for
//! `aarch64` with no OS, touches registers and devices.
#![cfg_attr(not(test), no_std)]

pub mod boot;
pub mod console;
pub mod esr;
pub mod layout;
pub mod mmu;
pub mod probe;

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
