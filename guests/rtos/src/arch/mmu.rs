//! Turns on the EL1 MMU with the identity map from [`crate::layout::regions`].

use super::sysreg;
use crate::boot::Platform;
use crate::layout;
use crate::mmu::{
    tcr_el1, MapError, Mapper, Table, MAIR_EL1, PAGE_SIZE, SCTLR_EL1_MMU_ON, TABLE_POOL as POOL,
};
use core::arch::asm;

static mut TABLES: [Table; POOL] = [Table::EMPTY; POOL];

/// Builds the tables and enables the MMU and caches. Call once, MMU off, on the boot core.
/// Returns how many tables the map uses.
pub fn enable(platform: Platform) -> Result<usize, MapError> {
    let pool = &raw mut TABLES;
    let base = pool as u64;
    // With the MMU off our stores bypass the caches; drop any stale lines over the tables so
    // cacheable table walks read what we write.
    invalidate_dcache(base, POOL as u64 * PAGE_SIZE);
    // SAFETY: single core, MMU still off, called once: nothing else refers to TABLES.
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
