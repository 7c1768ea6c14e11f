//! Small per-core CPU helpers.

use aarch64_cpu::asm::{wfe, wfi};
use aarch64_cpu::registers::{Readable, MPIDR_EL1, TPIDR_EL2};

/// This core's logical number, set by the entry code in `TPIDR_EL2`.
pub fn core_index() -> usize {
    TPIDR_EL2.get() as usize
}

/// The affinity fields of this core's MPIDR.
pub fn mpidr() -> u64 {
    MPIDR_EL1.get() & 0xff_00ff_ffff
}

/// Masks every exception type at EL2 (EL2 normally runs like this anyway).
pub fn mask_all() {
    // SAFETY: only sets the PSTATE mask bits.
    unsafe {
        core::arch::asm!(
            "msr daifset, #0xf",
            options(nomem, nostack, preserves_flags)
        )
    };
}

/// Waits for an interrupt to become pending. With interrupts masked this only wakes the core;
/// the caller then polls the interrupt controller.
pub fn wait_for_interrupt() {
    wfi();
}

/// One turn of a wait loop on another core: the `yield` hint. Hardware treats it as a hint;
/// QEMU's round-robin TCG (which `-icount` forces) ends the vCPU's time slice on it, so the
/// awaited cores run at once instead of after a slice of spinning, which is guest time.
pub fn relax() {
    // SAFETY: a hint instruction; no state changes.
    unsafe { core::arch::asm!("yield", options(nomem, nostack, preserves_flags)) };
}

/// How every EL2 lock waits: [`relax`] (`yield`) rather than the default `isb`. Under QEMU's
/// round robin a core spinning on a lock whose holder's vCPU thread is descheduled would
/// otherwise spin out its whole time slice, and a core that then waits behind it (the
/// RTOS's, for its timer) waits that long too. On hardware both are hints.
pub struct YieldWhileLocked;

impl spin::RelaxStrategy for YieldWhileLocked {
    fn relax() {
        relax();
    }
}

/// spumone's spin lock (see [`YieldWhileLocked`]).
pub type Lock<T> = spin::mutex::Mutex<T, YieldWhileLocked>;
/// What [`Lock::lock`] returns.
pub type LockGuard<'a, T> = spin::mutex::MutexGuard<'a, T, YieldWhileLocked>;

/// Stops this core for good: interrupts masked, `wfe` forever.
pub fn park() -> ! {
    mask_all();
    loop {
        wfe();
    }
}

/// Cleans the data cache lines of `base..base + len` to the point of coherency, so a guest
/// running with its MMU (and caches) off reads what was written.
pub fn clean_dcache_range(base: u64, len: u64) {
    const LINE: u64 = 64;
    let mut addr = base & !(LINE - 1);
    while addr < base + len {
        // SAFETY: a cache maintenance operation on mapped memory; it changes no data.
        unsafe { core::arch::asm!("dc cvac, {}", in(reg) addr, options(nostack, preserves_flags)) };
        addr += LINE;
    }
    // SAFETY: a barrier only.
    unsafe { core::arch::asm!("dsb sy", options(nostack, preserves_flags)) };
}

/// Invalidates the stage-1+2 TLB entries of the VMID in `VTTBR_EL2` on every core (inner
/// shareable), after stage-2 descriptors of that VMID were written.
pub fn invalidate_guest_tlbs() {
    // SAFETY: barriers and a TLB invalidation; no memory is changed.
    unsafe {
        core::arch::asm!(
            "dsb ishst",
            "tlbi vmalls12e1is",
            "dsb ish",
            "isb",
            options(nostack, preserves_flags)
        )
    };
}
