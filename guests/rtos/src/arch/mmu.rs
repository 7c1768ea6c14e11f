//! Turns on the EL1 MMU with the identity map from [`crate::layout::regions`].

use super::sysreg;
use crate::boot::Platform;
use crate::layout;
use crate::mmu::{
    tcr_el1, MapError, Mapper, Table, MAIR_EL1, PAGE_SIZE, SCTLR_EL1_MMU_ON, TABLE_POOL as POOL,
};
use core::arch::asm;
use core::sync::atomic::{AtomicBool, Ordering};

static mut TABLES: [Table; POOL] = [Table::EMPTY; POOL];
/// Set once [`enable`] has turned the MMU on: the tables are in use from then on.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Builds the tables and enables the MMU and caches, on the boot core (the only one that
/// runs Rust: others run `neighbours`' spin loop). Returns how many tables the map uses; a
/// second call changes nothing and returns `AlreadyEnabled`.
pub fn enable(platform: Platform) -> Result<usize, MapError> {
    // A plain load, not an atomic swap: with the MMU off memory is Device, where exclusives
    // may not work; one core runs this, so a plain check suffices.
    if ENABLED.load(Ordering::Relaxed) {
        return Err(MapError::AlreadyEnabled);
    }
    let pool = &raw mut TABLES;
    let base = pool as u64;
    // With the MMU off our stores bypass the caches; drop any stale lines over the tables so
    // cacheable table walks read what we write.
    invalidate_dcache(base, POOL as u64 * PAGE_SIZE);
    // SAFETY: ENABLED keeps out every call after the MMU is on; this is the one core that
    // runs Rust, and an earlier call that failed has returned: nothing else refers to TABLES.
    let tables = unsafe { &mut *pool };
    let mut mapper = Mapper::new(tables, base);
    for region in layout::regions(platform) {
        mapper.map(region)?;
    }
    let root = mapper.root();
    let used = mapper.tables_used();
    let tcr = tcr_el1(sysreg::id_aa64mmfr0_el1() & 0xf);
    // SAFETY: the identity map covers the image, its stack and every device we touch, so
    // execution continues at the same addresses once SCTLR_EL1.M is set.
    unsafe {
        asm!(
            "msr mair_el1, {mair}",
            "msr tcr_el1, {tcr}",
            "msr ttbr0_el1, {root}",
            "dsb ish",
            "isb",
            "tlbi vmalle1",
            "dsb ish",
            "isb",
            "msr sctlr_el1, {sctlr}",
            "isb",
            "ic iallu",
            "dsb ish",
            "isb",
            mair = in(reg) MAIR_EL1,
            tcr = in(reg) tcr,
            root = in(reg) root,
            sctlr = in(reg) SCTLR_EL1_MMU_ON,
            options(nostack),
        );
    }
    // Stored with the caches on, so later checks read it through them.
    ENABLED.store(true, Ordering::Relaxed);
    Ok(used)
}

fn invalidate_dcache(base: u64, len: u64) {
    let line = 4u64 << ((sysreg::ctr_el0() >> 16) & 0xf);
    let mut addr = base & !(line - 1);
    while addr < base + len {
        // SAFETY: invalidating lines of our own .bss loses nothing (it is rewritten next).
        unsafe { asm!("dc ivac, {}", in(reg) addr, options(nostack, preserves_flags)) };
        addr += line;
    }
    // SAFETY: a barrier has no memory effect of its own.
    unsafe { asm!("dsb ish", options(nostack, preserves_flags)) };
}
