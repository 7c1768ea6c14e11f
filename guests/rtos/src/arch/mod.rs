//! The thin hardware layer: entry, vectors, system registers, console backends, MMU,
//! power, GIC, timer, and the kernel's exception-level glue. Built only for `aarch64` with no OS.

mod boot;
pub mod console;
pub mod exceptions;
pub mod gic;
pub mod mmu;
pub mod neighbours;
pub mod power;
pub mod probe;
pub mod rtos;
pub mod sysreg;
pub mod timer;

use crate::boot::Platform;
use core::sync::atomic::{AtomicU8, Ordering};

const PLATFORM_UNKNOWN: u8 = 0;
const PLATFORM_BARE: u8 = 1;
const PLATFORM_SPUMONE: u8 = 2;

/// Set once at boot; decides the console backend and how to power off.
static PLATFORM: AtomicU8 = AtomicU8::new(PLATFORM_UNKNOWN);

pub fn set_platform(platform: Platform) {
    let value = match platform {
        Platform::Bare => PLATFORM_BARE,
        Platform::Spumone { .. } => PLATFORM_SPUMONE,
    };
    PLATFORM.store(value, Ordering::SeqCst);
}

/// `Some(true)` under spumone, `Some(false)` bare, `None` before [`set_platform`].
fn on_spumone() -> Option<bool> {
    match PLATFORM.load(Ordering::SeqCst) {
        PLATFORM_BARE => Some(false),
        PLATFORM_SPUMONE => Some(true),
        _ => None,
    }
}
