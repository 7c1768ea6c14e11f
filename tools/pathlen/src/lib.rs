//! `spumone-pathlen`: a TCG plugin for QEMU 7.2 (plugin API version 1) that counts, per vCPU,
//! the instructions that vCPU itself executes between marker addresses, and flags every window
//! in which QEMU's round robin interfered.
//!
//! Under `-icount shift=0` one instruction is one virtual nanosecond, but with several busy
//! vCPUs QEMU 7.2 delays interrupts by whole round-robin slices, so a guest's own latency
//! figures measure QEMU. This plugin measures the path instead: a *window* opens when a vCPU
//! executes a start address and closes when the same vCPU executes an end address; its length
//! is that vCPU's own instructions in between. A window is *distorted* when another vCPU ran
//! while it was open (QEMU descheduled the marked vCPU) or when a *disturb* address (an extra
//! exception entry) was hit inside it. *Spans* count the instructions a vCPU spends in an
//! address range and its longest unbroken stretch there. See `docs/qemu-timing.md`.
//!
//! The crate is both the plugin (`cdylib`, loaded with `-plugin file=...`) and a library
//! (`rlib`) whose pure parts, [`tracker`], [`args`] and [`report`], xtask and the host tests
//! use. The plugin API is declared by hand in [`ffi`] rather than taken from the crates.io
//! `qemu-plugin` crate: that crate is GPL-2.0-or-later while this workspace is MIT OR
//! Apache-2.0, and its API-v1 feature targets QEMU before 9 in general, not 7.2 as Debian
//! bookworm ships it. The few functions used are resolved from the QEMU binary when it loads
//! the plugin.
//!
//! Counting: every translation block outside the *exact* ranges gets one execution callback
//! that adds its instruction count (which is also how a vCPU switch shows); blocks with an
//! instruction in an exact range or a span get a callback per instruction, so a block cut
//! short by an exception never over-counts measured code. A marker in a block counted ahead
//! gets its own callback that knows its index in the block. The one assumption: exact ranges
//! and markers are virtual addresses, so code of another context mapped at the same addresses
//! (Linux user code at the hypervisor's or the RTOS's addresses) would be taken for theirs;
//! Debian's user space lives far above them.

pub mod args;
pub mod ffi;
mod plugin;
pub mod report;
pub mod tracker;

pub use args::Config;
pub use report::Report;
pub use tracker::Tracker;
