//! The project's task runner as a library, so the QEMU integration tests (`tests/`) build and
//! boot scenarios exactly as `cargo xtask run` does.
//!
//! - [`setup`]: install what is missing; [`linux`]: the Debian kernel and initramfs; [`modules`]: the
//!   guest's test kernel modules; [`firmware`]: cross-build a scenario's images;
//! - [`run`]: boot a scenario on QEMU and collect its prefixed console lines;
//! - [`bench`]: `cargo xtask bench`, results under `target/bench/`; [`kbuild`]: the kernel-build
//!   workload, its root filesystem image and `bench kbuild`; [`diskbench`]: `bench disk`;
//!   [`storm`]: the adversarial Linux loads for the latency rows;
//! - [`monitor`]: each CPU's state when a run stalls, from QEMU's monitor;
//! - [`ctl`]: `cargo xtask ctl`, the operator's commands to a running board, and the socket a
//!   run serves them on;
//! - [`pathlen`]: the path-length TCG plugin: built, its markers resolved, its report read;
//! - [`demux`], [`defmt_log`], [`event`]: turn spumone's framed UART stream into those lines.

pub mod attack;
pub mod bench;
pub mod ci;
pub mod cli;
pub mod config;
pub mod cpio;
pub mod ctl;
pub mod defmt_log;
pub mod demux;
pub mod diskbench;
pub mod dsmbench;
pub mod event;
pub mod firmware;
pub mod gdb;
pub mod histogram;
pub mod kbuild;
pub mod linux;
pub mod modules;
pub mod monitor;
pub mod pathlen;
pub mod paths;
pub mod probe;
pub mod profile;
pub mod qemu;
pub mod run;
pub mod scenario;
pub mod setup;
pub mod signals;
pub mod storm;
pub mod tui;
