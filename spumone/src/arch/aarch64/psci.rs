//! PSCI calls to the firmware (QEMU implements PSCI over `smc` when there is no EL3).

/// `CPU_ON` (SMC64).
pub const CPU_ON: u64 = 0xC400_0003;
/// `SYSTEM_OFF`.
pub const SYSTEM_OFF: u64 = 0x8400_0008;

fn smc(function: u64, a1: u64, a2: u64, a3: u64) -> i64 {
    let mut x0 = function;
    // SAFETY: an SMCCC call; the firmware preserves x4..x17 for SMC64 calls (we list the
    // argument registers as clobbered to be safe) and only changes the state PSCI describes.
    unsafe {
        core::arch::asm!(
            "smc #0",
            inout("x0") x0,
            inout("x1") a1 => _,
            inout("x2") a2 => _,
            inout("x3") a3 => _,
            options(nostack)
        );
    }
    x0 as i64
}

/// Starts the core `mpidr` at physical address `entry` with `context` in its `x0`.
pub fn cpu_on(mpidr: u64, entry: u64, context: u64) -> Result<(), i64> {
    match smc(CPU_ON, mpidr, entry, context) {
        0 => Ok(()),
        err => Err(err),
    }
}

/// Powers the machine off. Falls back to parking if the firmware returns.
pub fn system_off() -> ! {
    smc(SYSTEM_OFF, 0, 0, 0);
    super::cpu::park()
}
