//! The generic timer: the system counter for timestamps, and the EL2 physical timer
//! (`CNTHP_*`, PPI 26) as each core's tick.

use aarch64_cpu::registers::{Readable, Writeable, CNTFRQ_EL0, CNTHP_CTL_EL2, CNTPCT_EL0};

/// The EL2 physical timer's interrupt (PPI 10).
pub const HYP_TIMER_INTID: u32 = 26;

/// Tick period of the EL2 timer.
pub const TICK_US: u64 = 10_000;

pub fn frequency_hz() -> u64 {
    CNTFRQ_EL0.get()
}

/// Microseconds since the counter started.
pub fn uptime_us() -> u64 {
    let freq = frequency_hz().max(1);
    let ticks = CNTPCT_EL0.get();
    ((u128::from(ticks) * 1_000_000) / u128::from(freq)) as u64
}

fn set_tval(ticks: u64) {
    // SAFETY: CNTHP_TVAL_EL2 is the EL2 physical timer's countdown; writing it only re-arms
    // this core's hypervisor timer.
    unsafe { core::arch::asm!("msr cnthp_tval_el2, {}", in(reg) ticks, options(nomem, nostack)) };
}

/// Arms the next tick, one period from now.
pub fn rearm() {
    set_tval(frequency_hz() * TICK_US / 1_000_000);
}

/// Starts this core's tick (its interrupt must be enabled at the GIC separately).
pub fn start_tick() {
    rearm();
    CNTHP_CTL_EL2.write(CNTHP_CTL_EL2::ENABLE::SET + CNTHP_CTL_EL2::IMASK::CLEAR);
}

/// Stops this core's tick (a pending one is withdrawn with the timer's output).
pub fn stop_tick() {
    CNTHP_CTL_EL2.write(CNTHP_CTL_EL2::ENABLE::CLEAR + CNTHP_CTL_EL2::IMASK::SET);
}

/// Arms this core's EL2 timer for counter value `cval` (a deadline, not a period).
pub fn set_deadline(cval: u64) {
    // SAFETY: CNTHP_CVAL_EL2 is this core's hypervisor timer compare value.
    unsafe { core::arch::asm!("msr cnthp_cval_el2, {}", in(reg) cval, options(nomem, nostack)) };
    CNTHP_CTL_EL2.write(CNTHP_CTL_EL2::ENABLE::SET + CNTHP_CTL_EL2::IMASK::CLEAR);
}

/// The system counter now.
pub fn counter() -> u64 {
    CNTPCT_EL0.get()
}
