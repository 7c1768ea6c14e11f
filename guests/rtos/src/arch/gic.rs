//! GICv3 through the ICC system registers and the redistributor of this core. Under spumone
//! the same code reaches the emulated GICD/GICR and the virtual CPU interface.

use crate::gic::*;
use crate::kernel::InterruptLine;
use core::arch::asm;
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

/// Base of this core's redistributor (its RD frame), once found.
static RD_BASE: AtomicU64 = AtomicU64::new(0);

/// Polls of a busy bit before giving up.
const SPIN_LIMIT: u32 = 1_000_000;

#[derive(Clone, Copy, Debug)]
pub enum GicError {
    NoRedistributor { affinity: u32 },
    DistributorBusy,
    RedistributorAsleep,
}

impl fmt::Display for GicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GicError::NoRedistributor { affinity } => {
                write!(f, "no GIC redistributor with affinity {affinity:#x}")
            }
            GicError::DistributorBusy => f.write_str("GICD_CTLR.RWP never cleared"),
            GicError::RedistributorAsleep => f.write_str("GICR_WAKER.ChildrenAsleep never cleared"),
        }
    }
}

// MMIO goes through plain `ldr`/`str` with a base register: the compiler may otherwise pick
// write-back or pair forms, whose aborts carry no syndrome for spumone to emulate them by.

fn read32(addr: u64) -> u32 {
    let value: u32;
    // SAFETY: only called with GIC register addresses, mapped as device memory by the boot
    // map; a single aligned load.
    unsafe {
        asm!("ldr {v:w}, [{a}]", v = out(reg) value, a = in(reg) addr, options(nostack, preserves_flags));
    }
    value
}

fn write32(addr: u64, value: u32) {
    // SAFETY: as in read32, a single aligned store.
    unsafe {
        asm!("str {v:w}, [{a}]", v = in(reg) value, a = in(reg) addr, options(nostack, preserves_flags));
    }
}

fn read64(addr: u64) -> u64 {
    let value: u64;
    // SAFETY: as in read32 (GICR_TYPER is a 64-bit register).
    unsafe {
        asm!("ldr {v}, [{a}]", v = out(reg) value, a = in(reg) addr, options(nostack, preserves_flags));
    }
    value
}

fn spin_until(mut done: impl FnMut() -> bool) -> bool {
    (0..SPIN_LIMIT).any(|_| done())
}

fn mpidr() -> u64 {
    let value: u64;
    // SAFETY: reading MPIDR_EL1 has no side effects.
    unsafe { asm!("mrs {}, mpidr_el1", out(reg) value, options(nomem, nostack, preserves_flags)) };
    value
}

/// Enables the distributor (bare only: under spumone the hypervisor owns it), wakes this
/// core's redistributor and enables the CPU interface for group 1. Returns the frame index.
pub fn init(bare: bool) -> Result<u64, GicError> {
    if bare {
        let ctlr = GICD_BASE + GICD_CTLR;
        write32(ctlr, read32(ctlr) | GICD_CTLR_ENABLE);
        if !spin_until(|| read32(ctlr) & GICD_CTLR_RWP == 0) {
            return Err(GicError::DistributorBusy);
        }
    }
    let affinity = mpidr_affinity(mpidr());
    let index = find_redistributor(affinity, |i| {
        read64(GICR_BASE + i * GICR_STRIDE + GICR_TYPER)
    })
    .ok_or(GicError::NoRedistributor { affinity })?;
    let rd = GICR_BASE + index * GICR_STRIDE;
    RD_BASE.store(rd, Ordering::Relaxed);
    let waker = rd + GICR_WAKER;
    write32(waker, read32(waker) & !GICR_WAKER_PROCESSOR_SLEEP);
    if !spin_until(|| read32(waker) & GICR_WAKER_CHILDREN_ASLEEP == 0) {
        return Err(GicError::RedistributorAsleep);
    }
    // SAFETY: configures this core's CPU interface only; interrupts are still masked in
    // PSTATE, so nothing is taken before the kernel is ready.
    unsafe {
        asm!(
            "mrs {t}, icc_sre_el1",
            "orr {t}, {t}, {sre}",
            "msr icc_sre_el1, {t}",
            "isb",
            "msr icc_pmr_el1, {pmr}",
            "mrs {t}, icc_ctlr_el1",
            "bic {t}, {t}, {eoimode}",
            "msr icc_ctlr_el1, {t}",
            "mov {t}, #1",
            "msr icc_igrpen1_el1, {t}",
            "isb",
            t = out(reg) _,
            sre = in(reg) ICC_SRE_SRE,
            pmr = in(reg) ICC_PMR_ALL,
            eoimode = in(reg) ICC_CTLR_EOIMODE,
            options(nomem, nostack),
        );
    }
    Ok(index)
}

/// Programs a private interrupt (SGI/PPI) of this core as the kernel describes it: group 1,
/// its priority, enabled or not.
pub fn configure_private(line: &InterruptLine) {
    let sgi = RD_BASE.load(Ordering::Relaxed) + GICR_SGI_FRAME;
    let bit = private_bit(line.intid);
    write32(sgi + GICR_IGROUPR0, read32(sgi + GICR_IGROUPR0) | bit);
    let (offset, _) = priority_word(line.intid, 0, 0);
    let (_, word) = priority_word(line.intid, read32(sgi + offset), line.gic_priority());
    write32(sgi + offset, word);
    if line.enabled {
        write32(sgi + GICR_ISENABLER0, bit);
    } else {
        write32(sgi + GICR_ICENABLER0, bit);
    }
}

/// Acknowledges the highest-priority pending group 1 interrupt (`ICC_IAR1_EL1`).
pub fn acknowledge() -> u64 {
    let iar: u64;
    // SAFETY: acknowledging changes only GIC state, which the caller completes with eoi.
    unsafe { asm!("mrs {}, icc_iar1_el1", out(reg) iar, options(nomem, nostack, preserves_flags)) };
    iar
}

/// Ends an acknowledged interrupt (EOImode 0: priority drop and deactivation).
pub fn end_of_interrupt(iar: u64) {
    // SAFETY: writes back the value read from IAR, as the architecture requires.
    unsafe {
        asm!("msr icc_eoir1_el1, {}", "isb", in(reg) iar, options(nomem, nostack, preserves_flags))
    };
}
