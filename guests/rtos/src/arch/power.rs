//! Leaving: PSCI `SYSTEM_OFF`, or spumone's `EXIT` hypercall with a status.

use super::on_spumone;
use core::arch::asm;
use smccc::psci;
use smccc::{Hvc, Smc};
use spumone_abi::hvc::EXIT;

/// Powers off after a successful run, or reports failure: under spumone with `EXIT` code 1
/// (bare QEMU has no exit status to give, so it just powers off).
pub fn finish(success: bool) -> ! {
    if !success && on_spumone() == Some(true) {
        exit(1)
    }
    system_off()
}

/// PSCI `SYSTEM_OFF` over `SMC #0`: spumone traps it and stops this partition; bare QEMU
/// with no EL2/EL3 serves PSCI on HVC instead.
pub fn system_off() -> ! {
    // Returns only on failure, and then this core halts.
    let _ = if on_spumone() == Some(true) {
        psci::system_off::<Smc>()
    } else {
        psci::system_off::<Hvc>()
    };
    halt()
}

/// spumone's `EXIT` hypercall: stops the partition with `code`.
pub fn exit(code: u64) -> ! {
    // SAFETY: EXIT does not return; nothing in memory is touched.
    unsafe { asm!("hvc #0", in("x0") EXIT, in("x1") code, clobber_abi("C"), options(nostack)) };
    halt()
}

/// Parks the core for good (when powering off did not work).
pub fn halt() -> ! {
    loop {
        // SAFETY: waiting for an event has no effect on memory.
        unsafe { asm!("wfe", options(nomem, nostack, preserves_flags)) };
    }
}
