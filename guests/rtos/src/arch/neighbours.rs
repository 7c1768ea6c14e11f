//! Bare metal only: the other cores of the machine spin, as a neighbour load.
//!
//! `rtos-native-busy` boots the RTOS alone on a 2-core QEMU machine, and the RTOS starts
//! the other core in a loop that never leaves its translated block. That is the
//! hypervisor-free baseline for the RTOS's latency while other cores are busy: under
//! `-icount` QEMU runs all cores in turn on one host thread, and what a busy neighbour does
//! to the RTOS's timer there is QEMU's, not spumone's. On a 1-core machine (`rtos-native`)
//! PSCI refuses every `CPU_ON`, and nothing changes.

use core::arch::global_asm;

use smccc::{psci, Hvc};

/// Affinity-0 numbers tried: QEMU's `virt` numbers its cores 0..n in Aff0.
const MAX_CORES: u64 = 8;

global_asm!(
    r#"
    .section .text, "ax"
    .global rtos_neighbour_spin
rtos_neighbour_spin:
    add     x1, x1, #1
    b       rtos_neighbour_spin
"#
);

extern "C" {
    fn rtos_neighbour_spin();
}

/// Starts every core PSCI lets us start (all but this one) in the spin loop; how many.
/// Bare QEMU with no EL2/EL3 serves PSCI on HVC.
pub fn start() -> u64 {
    let entry = rtos_neighbour_spin as *const () as u64;
    let mut started = 0;
    for core in 1..MAX_CORES {
        // CPU_ON starts another core at `entry`: code that touches no memory, with the MMU
        // off there (the image runs where it is linked); this core is not affected.
        if psci::cpu_on::<Hvc>(core, entry, 0).is_ok() {
            started += 1;
        }
    }
    started
}
