//! GICv3: distributor, one redistributor per core, and the CPU interface through the `ICC_*`
//! system registers.
//!
//! The register blocks are small `tock-registers` structs rather than the `arm-gic` crate:
//! that driver manages the CPU interface for an EL1 kernel (`ICC_SRE_EL1`, one owner of all
//! redistributors), while spumone runs at EL2, enables the interface through `ICC_SRE_EL2`,
//! needs `EOImode = 1` split priority drop/deactivation, and will own the `ICH_*` virtual
//! interface next to it.

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::{Readable, Writeable, ICC_SRE_EL2};
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite, WriteOnly};

use crate::hvcore::vgic::GICR_FRAME_SIZE;

register_structs! {
    /// Distributor (`GICD_*`), only the registers spumone uses.
    pub GicdRegs {
        (0x0000 => ctlr: ReadWrite<u32>),
        (0x0004 => typer: ReadOnly<u32>),
        (0x0008 => _r0),
        (0x0080 => igroupr: [ReadWrite<u32>; 32]),
        (0x0100 => isenabler: [ReadWrite<u32>; 32]),
        (0x0180 => icenabler: [ReadWrite<u32>; 32]),
        (0x0200 => ispendr: [ReadWrite<u32>; 32]),
        (0x0280 => icpendr: [ReadWrite<u32>; 32]),
        (0x0300 => _r1b),
        (0x0380 => icactiver: [ReadWrite<u32>; 32]),
        (0x0400 => _r1),
        (0x0400 => ipriorityr: [ReadWrite<u32>; 256]),
        (0x0800 => _r2a),
        (0x0c00 => icfgr: [ReadWrite<u32>; 64]),
        (0x0d00 => _r2),
        (0x6100 => irouter: [ReadWrite<u64>; 988]),
        (0x7fe0 => _r3),
        (0xffe8 => pidr2: ReadOnly<u32>),
        (0xffec => @END),
    }
}

register_structs! {
    /// One redistributor frame pair: `RD_base` then `SGI_base` (64 KiB each).
    pub GicrRegs {
        (0x0_0000 => ctlr: ReadWrite<u32>),
        (0x0_0004 => _r0),
        (0x0_0008 => typer: ReadOnly<u64>),
        (0x0_0010 => _r1),
        (0x0_0014 => waker: ReadWrite<u32>),
        (0x0_0018 => _r2),
        (0x1_0080 => igroupr0: ReadWrite<u32>),
        (0x1_0084 => _r3),
        (0x1_0100 => isenabler0: ReadWrite<u32>),
        (0x1_0104 => _r4),
        (0x1_0180 => icenabler0: WriteOnly<u32>),
        (0x1_0184 => _r5a),
        (0x1_0280 => icpendr0: WriteOnly<u32>),
        (0x1_0284 => _r5b),
        (0x1_0380 => icactiver0: WriteOnly<u32>),
        (0x1_0384 => _r5),
        (0x1_0400 => ipriorityr: [ReadWrite<u32>; 8]),
        (0x1_0420 => _r6),
        // GICR_FRAME_SIZE (the macro takes a literal).
        (0x2_0000 => @END),
    }
}

const GICD_CTLR_RWP: u32 = 1 << 31;
const GICD_CTLR_ARE: u32 = 1 << 4;
const GICD_CTLR_ENABLE_GRP1: u32 = 1 << 1;
const GICR_WAKER_PROCESSOR_SLEEP: u32 = 1 << 1;
const GICR_WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;
const GICR_TYPER_LAST: u64 = 1 << 4;
/// Stride between redistributors (no virtual LPI frames on GICv3).
const GICR_STRIDE: usize = GICR_FRAME_SIZE as usize;
/// Priority spumone gives every interrupt it enables.
pub const DEFAULT_PRIORITY: u8 = 0xa0;
/// INTIDs from here on are special (spurious and friends).
pub const SPECIAL_INTID_START: u32 = 1020;

static GICD_BASE: AtomicUsize = AtomicUsize::new(0);
static GICR_BASE: AtomicUsize = AtomicUsize::new(0);
static GICR_SIZE: AtomicU64 = AtomicU64::new(0);

fn gicd() -> &'static GicdRegs {
    // SAFETY: set by `init_distributor` to the DTB's distributor, mapped as device memory;
    // accessed only through volatile register accessors.
    unsafe { &*(GICD_BASE.load(Ordering::Relaxed) as *const GicdRegs) }
}

fn redistributor(base: usize) -> &'static GicrRegs {
    // SAFETY: `base` is a redistributor frame inside the DTB's redistributor region, mapped
    // as device memory.
    unsafe { &*(base as *const GicrRegs) }
}

/// What the boot core learnt about the GIC.
pub struct GicInfo {
    /// Architecture revision from GICD_PIDR2 (3 or 4).
    pub arch_rev: u32,
    pub spis: u32,
}

/// Sets up the distributor: affinity routing, group 1, all SPIs disabled and routed to the
/// boot core until a partition claims them.
pub fn init_distributor(gicd_base: u64, gicr_base: u64, gicr_size: u64) -> GicInfo {
    GICD_BASE.store(gicd_base as usize, Ordering::Relaxed);
    GICR_BASE.store(gicr_base as usize, Ordering::Relaxed);
    GICR_SIZE.store(gicr_size, Ordering::Relaxed);
    let d = gicd();
    d.ctlr.set(0);
    wait_rwp(d);
    let lines = ((d.typer.get() & 0x1f) + 1) * 32;
    let lines = lines.min(SPECIAL_INTID_START);
    for word in 1..(lines / 32) as usize {
        d.icenabler[word].set(u32::MAX);
        d.igroupr[word].set(u32::MAX);
    }
    let priority = u32::from_ne_bytes([DEFAULT_PRIORITY; 4]);
    for word in 8..(lines / 4) as usize {
        d.ipriorityr[word].set(priority);
    }
    // Route every SPI to affinity 0.0.0.0 until a partition claims it.
    for route in d.irouter.iter().take(lines as usize - 32) {
        route.set(0);
    }
    wait_rwp(d);
    d.ctlr.set(GICD_CTLR_ARE | GICD_CTLR_ENABLE_GRP1);
    wait_rwp(d);
    GicInfo {
        arch_rev: (d.pidr2.get() >> 4) & 0xf,
        spis: lines - 32,
    }
}

fn wait_rwp(d: &GicdRegs) {
    while d.ctlr.get() & GICD_CTLR_RWP != 0 {
        core::hint::spin_loop();
    }
}

/// Finds this core's redistributor by its affinity.
fn my_redistributor(mpidr: u64) -> Option<&'static GicrRegs> {
    let affinity = (mpidr & 0xff_ffff) | ((mpidr >> 32) & 0xff) << 24;
    let start = GICR_BASE.load(Ordering::Relaxed);
    let end = start + GICR_SIZE.load(Ordering::Relaxed) as usize;
    let mut base = start;
    while base + GICR_STRIDE <= end {
        let r = redistributor(base);
        let typer = r.typer.get();
        if typer >> 32 == affinity {
            return Some(r);
        }
        if typer & GICR_TYPER_LAST != 0 {
            break;
        }
        base += GICR_STRIDE;
    }
    None
}

/// Wakes this core's redistributor, puts SGIs/PPIs in group 1 with the default priority,
/// and enables the CPU interface at EL2.
pub fn init_core(mpidr: u64) -> Result<(), &'static str> {
    let r = my_redistributor(mpidr).ok_or("no redistributor matches this core")?;
    r.waker.set(r.waker.get() & !GICR_WAKER_PROCESSOR_SLEEP);
    while r.waker.get() & GICR_WAKER_CHILDREN_ASLEEP != 0 {
        core::hint::spin_loop();
    }
    r.icenabler0.set(u32::MAX);
    r.igroupr0.set(u32::MAX);
    let priority = u32::from_ne_bytes([DEFAULT_PRIORITY; 4]);
    for word in &r.ipriorityr {
        word.set(priority);
    }

    ICC_SRE_EL2.write(
        ICC_SRE_EL2::SRE::SET
            + ICC_SRE_EL2::DFB::SET
            + ICC_SRE_EL2::DIB::SET
            + ICC_SRE_EL2::ENABLE::SET,
    );
    barrier::isb(barrier::SY);
    if ICC_SRE_EL2.read(ICC_SRE_EL2::SRE) == 0 {
        return Err("system register interface unavailable");
    }
    // SAFETY: programs this core's physical CPU interface: accept all priorities, no
    // preemption grouping, split EOI (EOImode = 1) and group 1 on.
    unsafe {
        core::arch::asm!(
            "msr icc_pmr_el1, {pmr}",
            "msr icc_bpr1_el1, xzr",
            "msr icc_ctlr_el1, {ctlr}",
            "msr icc_igrpen1_el1, {one}",
            "isb",
            pmr = in(reg) 0xffu64,
            ctlr = in(reg) 1u64 << 1,
            one = in(reg) 1u64,
            options(nostack)
        );
    }
    Ok(())
}

/// Enables a private interrupt (SGI/PPI, INTID < 32) on this core.
pub fn enable_private(mpidr: u64, intid: u32) {
    if let (Some(r), true) = (my_redistributor(mpidr), intid < 32) {
        r.isenabler0.set(1 << intid);
    }
}

/// Physical base of the distributor (guests see their virtual one at the same IPA).
pub fn distributor_base() -> u64 {
    GICD_BASE.load(Ordering::Relaxed) as u64
}

/// Physical base of the redistributor region.
pub fn redistributor_base() -> u64 {
    GICR_BASE.load(Ordering::Relaxed) as u64
}

/// Sets byte `index` of a priority register bank.
fn set_priority(words: &[ReadWrite<u32>], index: usize, priority: u8) {
    if let Some(word) = words.get(index / 4) {
        let shift = (index % 4) * 8;
        word.set((word.get() & !(0xff << shift)) | u32::from(priority) << shift);
    }
}

/// Priority and enable of private interrupt `intid` on the core with `mpidr` (any core may
/// program another core's redistributor).
pub fn configure_private(mpidr: u64, intid: u32, enable: bool, priority: u8) {
    let (Some(r), true) = (my_redistributor(mpidr), intid < 32) else {
        return;
    };
    set_priority(&r.ipriorityr, intid as usize, priority);
    if enable {
        r.isenabler0.set(1 << intid);
    } else {
        r.icenabler0.set(1 << intid);
    }
}

/// Priority, route and enable of SPI `intid`.
pub fn configure_spi(intid: u32, enable: bool, priority: u8, route_mpidr: u64) {
    if !(32..SPECIAL_INTID_START).contains(&intid) {
        return;
    }
    let d = gicd();
    let (word, bit) = ((intid / 32) as usize, 1u32 << (intid % 32));
    if !enable {
        d.icenabler[word].set(bit);
    }
    set_priority(&d.ipriorityr, intid as usize, priority);
    if let Some(route) = d.irouter.get(intid as usize - 32) {
        route.set(route_mpidr & 0xff_00ff_ffff);
    }
    if enable {
        d.isenabler[word].set(bit);
    }
}

/// Makes SPI `intid` edge-triggered (GICD_ICFGR): for a device that signals with a pulse,
/// such as an SMMU's queue and error interrupts. Call while the SPI is disabled.
pub fn set_edge_triggered(intid: u32) {
    if !(32..SPECIAL_INTID_START).contains(&intid) {
        return;
    }
    if let Some(word) = gicd().icfgr.get((intid / 16) as usize) {
        word.set(word.get() | 0b10 << ((intid % 16) * 2));
    }
}

/// Routes SPI `intid` to the core with `mpidr`, leaving its enable and priority as they are
/// (its vCPU migrated there).
pub fn route_spi(intid: u32, mpidr: u64) {
    if !(32..SPECIAL_INTID_START).contains(&intid) {
        return;
    }
    if let Some(route) = gicd().irouter.get(intid as usize - 32) {
        route.set(mpidr & 0xff_00ff_ffff);
    }
}

/// Makes SPI `intid` pending again at the distributor, so it is delivered wherever it is
/// routed now (one that reached a core its vCPU just left).
pub fn repend_spi(intid: u32) {
    if !(32..SPECIAL_INTID_START).contains(&intid) {
        return;
    }
    gicd().ispendr[(intid / 32) as usize].set(1 << (intid % 32));
}

/// Disables interrupt `intid` (private ones on the core with `mpidr`).
pub fn disable(mpidr: u64, intid: u32) {
    if intid < 32 {
        if let Some(r) = my_redistributor(mpidr) {
            r.icenabler0.set(1 << intid);
        }
    } else if intid < SPECIAL_INTID_START {
        gicd().icenabler[(intid / 32) as usize].set(1 << (intid % 32));
    }
}

/// Disables private interrupt `intid` of the core with `mpidr` and clears its pending and
/// active states: a vCPU leaving for good may have left it active through a hardware list
/// register that is now gone, which would silence it for the next vCPU.
pub fn quiesce_private(mpidr: u64, intid: u32) {
    if intid >= 32 {
        return;
    }
    if let Some(r) = my_redistributor(mpidr) {
        r.icenabler0.set(1 << intid);
        r.icpendr0.set(1 << intid);
        r.icactiver0.set(1 << intid);
    }
}

/// Disables SPI `intid` and clears its pending and active states: a device of a partition
/// being restarted must not leave it active (a hardware list register that linked it is gone)
/// or pending for the next kernel.
pub fn quiesce_spi(intid: u32) {
    if !(32..SPECIAL_INTID_START).contains(&intid) {
        return;
    }
    let (word, bit) = ((intid / 32) as usize, 1 << (intid % 32));
    let d = gicd();
    d.icenabler[word].set(bit);
    d.icpendr[word].set(bit);
    d.icactiver[word].set(bit);
}

/// Priority drop only (`ICC_EOIR1_EL1`): the interrupt stays active until the guest's
/// virtual EOI deactivates it through a hardware list register.
pub fn priority_drop(intid: u32) {
    // SAFETY: drops the running priority of the interrupt this core acknowledged; with
    // EOImode = 1 it stays active.
    unsafe {
        core::arch::asm!(
            "msr icc_eoir1_el1, {0}",
            "isb",
            in(reg) u64::from(intid),
            options(nostack)
        );
    }
}

/// [`priority_drop`] when the next thing this core does is the `eret` to the guest, which
/// synchronizes the write, so no `isb` is needed.
pub fn priority_drop_before_eret(intid: u32) {
    // SAFETY: as in `priority_drop`; only the synchronization is left to the `eret`.
    unsafe {
        core::arch::asm!("msr icc_eoir1_el1, {0}", in(reg) u64::from(intid), options(nostack));
    }
}

/// Deactivation only (`ICC_DIR_EL1`) of an interrupt whose priority was dropped before.
pub fn deactivate(intid: u32) {
    // SAFETY: ends the active state of an interrupt this core took; nothing else changes.
    unsafe {
        core::arch::asm!("msr icc_dir_el1, {0}", "isb", in(reg) u64::from(intid), options(nostack));
    }
}

/// Sends a physical SGI (`ICC_SGI1R_EL1` value) after the stores it announces.
pub fn send_sgi(sgi1r: u64) {
    // SAFETY: generates an SGI to other cores; `dsb ishst` first so a woken core that reads
    // what this core posted sees it.
    unsafe {
        core::arch::asm!(
            "dsb ishst",
            "msr icc_sgi1r_el1, {0}",
            "isb",
            in(reg) sgi1r,
            options(nostack)
        );
    }
}

/// Acknowledges the highest-priority pending group 1 interrupt.
pub fn acknowledge() -> u32 {
    let iar: u64;
    // SAFETY: reading ICC_IAR1_EL1 acknowledges one interrupt on this core; the caller ends
    // it with `end_of_interrupt`.
    unsafe { core::arch::asm!("mrs {}, icc_iar1_el1", out(reg) iar, options(nostack)) };
    (iar & 0xff_ffff) as u32
}

/// Priority drop (`ICC_EOIR1_EL1`) then deactivation (`ICC_DIR_EL1`) of an interrupt the
/// hypervisor handled itself.
pub fn end_of_interrupt(intid: u32) {
    // SAFETY: ends the interrupt this core acknowledged; with EOImode = 1 both writes are
    // needed.
    unsafe {
        core::arch::asm!(
            "msr icc_eoir1_el1, {0}",
            "isb",
            "msr icc_dir_el1, {0}",
            in(reg) u64::from(intid),
            options(nostack)
        );
    }
}
