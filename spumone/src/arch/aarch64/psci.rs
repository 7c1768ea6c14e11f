//! PSCI calls to the firmware (QEMU implements PSCI over `smc` when there is no EL3), made
//! with the `smccc` crate.

use smccc::psci;
use smccc::Smc;

/// Starts the core `mpidr` at physical address `entry` with `context` in its `x0`; the PSCI
/// error code if the firmware refuses.
pub fn cpu_on(mpidr: u64, entry: u64, context: u64) -> Result<(), i64> {
    psci::cpu_on::<Smc>(mpidr, entry, context).map_err(i64::from)
}

/// Powers the machine off. Falls back to parking if the firmware returns.
pub fn system_off() -> ! {
    let _ = psci::system_off::<Smc>();
    super::cpu::park()
}
