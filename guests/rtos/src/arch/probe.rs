//! Probe accesses that must fault, and the flags the exception handler shares with them.

use crate::esr::Access;
use crate::probe::Probe;
use core::arch::asm;
use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};

const NOT_ARMED: u8 = 0;
const ARMED_READ: u8 = 1;
const ARMED_WRITE: u8 = 2;

/// The access of the probe in flight, for which an external abort is expected.
static ARMED: AtomicU8 = AtomicU8::new(NOT_ARMED);
/// The in-flight probe took its abort.
static FAULTED: AtomicBool = AtomicBool::new(false);

pub fn armed() -> Option<Access> {
    match ARMED.load(Ordering::SeqCst) {
        ARMED_READ => Some(Access::Read),
        ARMED_WRITE => Some(Access::Write),
        _ => None,
    }
}

/// Called by the handler for a contained abort: one abort per probe.
pub fn note_fault() {
    ARMED.store(NOT_ARMED, Ordering::SeqCst);
    FAULTED.store(true, Ordering::SeqCst);
}

/// Performs `probe`'s access; true if it raised the external abort.
pub fn run(probe: &Probe) -> bool {
    FAULTED.store(false, Ordering::SeqCst);
    let armed = match probe.access {
        Access::Read => ARMED_READ,
        Access::Write => ARMED_WRITE,
    };
    ARMED.store(armed, Ordering::SeqCst);
    match probe.access {
        // SAFETY: the address is mapped as device memory and outside the partition, so the
        // access either faults (handled: the handler skips it) or reads a harmless value.
        // clobber_abi("C") because the handler runs Rust code that may use FP registers.
        Access::Read => unsafe {
            asm!("ldr w9, [{addr}]", addr = in(reg) probe.addr, out("x9") _,
                 clobber_abi("C"), options(nostack));
        },
        // SAFETY: as above; if spumone failed to stop it, the write lands outside our
        // partition, which is the failure the probe exists to reveal.
        Access::Write => unsafe {
            asm!("str wzr, [{addr}]", addr = in(reg) probe.addr, clobber_abi("C"),
                 options(nostack));
        },
    }
    ARMED.store(NOT_ARMED, Ordering::SeqCst);
    FAULTED.load(Ordering::SeqCst)
}
