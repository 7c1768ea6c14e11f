//! The EL1 virtual timer, used as a one-shot for the kernel's next deadline (tick-less).

use core::arch::asm;

/// `CNTV_CTL_EL0.ENABLE` (IMASK clear: the timer raises PPI 27).
const CTL_ENABLE: u64 = 1;

/// The virtual counter, in kernel ticks.
#[inline(always)]
pub fn now() -> u64 {
    let value: u64;
    // SAFETY: reading the counter has no side effects; the ISB keeps the read from being
    // hoisted above earlier instructions, so a timestamp is taken where it is written.
    unsafe {
        asm!("isb", "mrs {}, cntvct_el0", out(reg) value, options(nomem, nostack, preserves_flags));
    }
    value
}

/// [`now`] at the latency probe's timestamp: the same instructions, and the address of the
/// counter read recorded in the ELF section `.rtos_latency_timestamp` (not loaded), where a
/// path-length plugin ends the path from the IRQ vector to the task (see
/// `docs/qemu-timing.md`). A section rather than a symbol: the compiler may inline the probe's
/// loop more than once, and each copy records its own address. It adds no instruction.
#[inline(always)]
pub fn latency_timestamp() -> u64 {
    let value: u64;
    // SAFETY: as in `now`; the section entry is data outside the loaded image.
    unsafe {
        asm!(
            "isb",
            "2:",
            "mrs {}, cntvct_el0",
            ".pushsection .rtos_latency_timestamp, \"\", %progbits",
            ".quad 2b",
            ".popsection",
            out(reg) value,
            options(nomem, nostack, preserves_flags)
        );
    }
    value
}

/// Counter ticks per second.
pub fn frequency() -> u64 {
    let value: u64;
    // SAFETY: reading CNTFRQ_EL0 has no side effects.
    unsafe { asm!("mrs {}, cntfrq_el0", out(reg) value, options(nomem, nostack, preserves_flags)) };
    value
}

/// Fires PPI 27 once the counter reaches `deadline` (at once if it already has); `None`
/// stops the timer, which also drops a pending timer interrupt.
pub fn program(deadline: Option<u64>) {
    match deadline {
        // SAFETY: the virtual timer belongs to this EL1 image; no memory is involved.
        Some(deadline) => unsafe {
            asm!(
                "msr cntv_cval_el0, {cval}",
                "msr cntv_ctl_el0, {ctl}",
                "isb",
                cval = in(reg) deadline,
                ctl = in(reg) CTL_ENABLE,
                options(nomem, nostack, preserves_flags),
            );
        },
        // SAFETY: as above.
        None => unsafe {
            asm!(
                "msr cntv_ctl_el0, xzr",
                "isb",
                options(nomem, nostack, preserves_flags)
            );
        },
    }
}
