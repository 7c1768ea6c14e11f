//! The EL1 stage-1 identity map: descriptor encoding and a small table builder.
//!
//! 4 KiB granule, 39-bit addresses (walks start at level 1), so one root table covers
//! 512 GiB with 1 GiB blocks, level 2 has 2 MiB blocks and level 3 has 4 KiB pages. The
//! builder always uses the largest block a range's alignment allows.

use core::fmt;

pub const ENTRIES: usize = 512;
pub const PAGE_SIZE: u64 = 4096;
/// Tables the boot map may use: RAM (with page-level stack guards), GIC, UART, probes.
pub const TABLE_POOL: usize = 12;
/// Input address size; `TCR_EL1.T0SZ` = 64 − this.
pub const VA_BITS: u32 = 39;

/// One translation table, aligned as the hardware needs.
#[repr(C, align(4096))]
#[derive(Clone, Copy)]
pub struct Table(pub [u64; ENTRIES]);

impl Table {
    pub const EMPTY: Table = Table([0; ENTRIES]);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemType {
    /// Write-back cacheable, inner shareable, executable at EL1.
    Normal,
    /// Device-nGnRE, never executable.
    Device,
}

/// An identity-mapped physical range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub base: u64,
    pub size: u64,
    pub mem: MemType,
}

const ATTR_INDEX_NORMAL: u64 = 0;
const ATTR_INDEX_DEVICE: u64 = 1;
/// MAIR_EL1: index 0 normal WB read/write-allocate, index 1 Device-nGnRE.
pub const MAIR_EL1: u64 = (0xff << (8 * ATTR_INDEX_NORMAL)) | (0x04 << (8 * ATTR_INDEX_DEVICE));

const DESC_VALID: u64 = 1 << 0;
/// Bit 1 set: a table (levels 1–2) or a page (level 3); clear: a block.
const DESC_TABLE_OR_PAGE: u64 = 1 << 1;
const DESC_SH_INNER: u64 = 3 << 8;
const DESC_AF: u64 = 1 << 10;
const DESC_PXN: u64 = 1 << 53;
const DESC_UXN: u64 = 1 << 54;
const DESC_ADDR: u64 = 0x0000_ffff_ffff_f000;

/// Bytes mapped by one entry at `level` (1..=3).
pub const fn entry_size(level: u32) -> u64 {
    1 << (12 + 9 * (3 - level))
}

fn entry_index(va: u64, level: u32) -> usize {
    ((va >> (12 + 9 * (3 - level))) as usize) % ENTRIES
}

/// A block (levels 1–2) or page (level 3) descriptor for `pa`.
pub fn leaf_descriptor(pa: u64, mem: MemType, level: u32) -> u64 {
    let kind = if level == 3 {
        DESC_VALID | DESC_TABLE_OR_PAGE
    } else {
        DESC_VALID
    };
    let attrs = match mem {
        MemType::Normal => (ATTR_INDEX_NORMAL << 2) | DESC_SH_INNER | DESC_UXN,
        MemType::Device => (ATTR_INDEX_DEVICE << 2) | DESC_PXN | DESC_UXN,
    };
    (pa & DESC_ADDR) | attrs | DESC_AF | kind
}

pub fn table_descriptor(pa: u64) -> u64 {
    (pa & DESC_ADDR) | DESC_VALID | DESC_TABLE_OR_PAGE
}

fn is_table(desc: u64, level: u32) -> bool {
    level < 3 && desc & (DESC_VALID | DESC_TABLE_OR_PAGE) == DESC_VALID | DESC_TABLE_OR_PAGE
}

fn mem_type_of(desc: u64) -> MemType {
    if (desc >> 2) & 7 == ATTR_INDEX_DEVICE {
        MemType::Device
    } else {
        MemType::Normal
    }
}

/// TCR_EL1 for TTBR0 walks only: 39-bit VA, 4 KiB granule, WB cacheable inner-shareable
/// walks, TTBR1 walks disabled. `pa_range` is `ID_AA64MMFR0_EL1.PARange`, capped at 48 bits.
pub fn tcr_el1(pa_range: u64) -> u64 {
    let t0sz = u64::from(64 - VA_BITS);
    let irgn0_wb = 1 << 8;
    let orgn0_wb = 1 << 10;
    let sh0_inner = 3 << 12;
    let t1sz = u64::from(64 - VA_BITS) << 16;
    let epd1 = 1 << 23;
    let tg1_4k = 2 << 30;
    let ips = (pa_range & 7).min(5) << 32;
    t0sz | irgn0_wb | orgn0_wb | sh0_inner | t1sz | epd1 | tg1_4k | ips
}

/// SCTLR_EL1 with the MMU, data and instruction caches and SP alignment checks on,
/// little-endian, and the ARMv8.0 RES1 bits set.
pub const SCTLR_EL1_MMU_ON: u64 = {
    let res1 = (1 << 29) | (1 << 28) | (1 << 23) | (1 << 22) | (1 << 20) | (1 << 11);
    let m = 1 << 0;
    let c = 1 << 2;
    let sa = 1 << 3;
    let i = 1 << 12;
    res1 | m | c | sa | i
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// Base or size not a multiple of 4 KiB, or an empty range.
    Unaligned,
    /// Beyond the 39-bit input range.
    OutOfRange,
    /// The table pool is exhausted.
    OutOfTables,
    /// The range overlaps an earlier mapping.
    Overlap,
    /// The tables were already built (the MMU is set up once).
    AlreadyEnabled,
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MapError::Unaligned => "unaligned or empty region",
            MapError::OutOfRange => "region beyond the translated range",
            MapError::OutOfTables => "out of page tables",
            MapError::Overlap => "region overlaps an earlier one",
            MapError::AlreadyEnabled => "the MMU was already set up",
        })
    }
}

/// Fills a pool of tables whose first entry is the root. `base` is the physical address
/// of `tables[0]`; the pool must be contiguous (an array), as the descriptors hold
/// physical addresses.
pub struct Mapper<'a> {
    tables: &'a mut [Table],
    base: u64,
    used: usize,
}

impl<'a> Mapper<'a> {
    /// Starts with an empty root. Panics on an empty pool.
    pub fn new(tables: &'a mut [Table], base: u64) -> Self {
        tables[0] = Table::EMPTY;
        Mapper {
            tables,
            base,
            used: 1,
        }
    }

    /// The physical address to put in TTBR0_EL1.
    pub fn root(&self) -> u64 {
        self.base
    }

    /// How many tables are in use.
    pub fn tables_used(&self) -> usize {
        self.used
    }

    /// Identity-maps `region`.
    pub fn map(&mut self, region: Region) -> Result<(), MapError> {
        if region.size == 0 || (region.base | region.size) & (PAGE_SIZE - 1) != 0 {
            return Err(MapError::Unaligned);
        }
        let end = region
            .base
            .checked_add(region.size)
            .filter(|&end| end <= 1 << VA_BITS)
            .ok_or(MapError::OutOfRange)?;
        let mut addr = region.base;
        while addr < end {
            let level = (1..=3)
                .find(|&l| addr & (entry_size(l) - 1) == 0 && end - addr >= entry_size(l))
                .unwrap_or(3);
            self.set_leaf(addr, level, region.mem)?;
            addr += entry_size(level);
        }
        Ok(())
    }

    fn set_leaf(&mut self, addr: u64, level: u32, mem: MemType) -> Result<(), MapError> {
        let mut table = 0;
        for l in 1..level {
            let idx = entry_index(addr, l);
            let desc = self.tables[table].0[idx];
            table = if desc == 0 {
                let next = self.alloc()?;
                self.tables[table].0[idx] = table_descriptor(self.pa_of(next));
                next
            } else if is_table(desc, l) {
                self.index_of(desc & DESC_ADDR).ok_or(MapError::Overlap)?
            } else {
                return Err(MapError::Overlap);
            };
        }
        let slot = &mut self.tables[table].0[entry_index(addr, level)];
        if *slot != 0 {
            return Err(MapError::Overlap);
        }
        *slot = leaf_descriptor(addr, mem, level);
        Ok(())
    }

    fn alloc(&mut self) -> Result<usize, MapError> {
        if self.used == self.tables.len() {
            return Err(MapError::OutOfTables);
        }
        let index = self.used;
        self.tables[index] = Table::EMPTY;
        self.used += 1;
        Ok(index)
    }

    fn pa_of(&self, index: usize) -> u64 {
        self.base + index as u64 * PAGE_SIZE
    }

    fn index_of(&self, pa: u64) -> Option<usize> {
        let index = usize::try_from(pa.checked_sub(self.base)? / PAGE_SIZE).ok()?;
        (index < self.used).then_some(index)
    }
}

/// Walks the tables built by a [`Mapper`] the way the hardware would: the output address
/// and memory type of `va`, or `None` if it is unmapped.
pub fn translate(tables: &[Table], base: u64, va: u64) -> Option<(u64, MemType)> {
    if va >= 1 << VA_BITS {
        return None;
    }
    let mut table = 0;
    for level in 1..=3 {
        let desc = tables[table].0[entry_index(va, level)];
        if desc & DESC_VALID == 0 {
            return None;
        }
        if is_table(desc, level) {
            table = usize::try_from(((desc & DESC_ADDR) - base) / PAGE_SIZE).ok()?;
            continue;
        }
        if level == 3 && desc & DESC_TABLE_OR_PAGE == 0 {
            return None; // reserved encoding at level 3
        }
        let offset = va & (entry_size(level) - 1);
        return Some((
            (desc & DESC_ADDR & !(entry_size(level) - 1)) + offset,
            mem_type_of(desc),
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot::Platform;
    use crate::layout::{regions, PARTITION_RAM_BASE, PARTITION_RAM_SIZE, PL011_BASE};
    use crate::probe::PROBES;

    const BASE: u64 = 0x4410_0000;

    fn build(platform: Platform, pool: &mut [Table]) -> usize {
        let mut m = Mapper::new(pool, BASE);
        for r in regions(platform) {
            m.map(r).unwrap();
        }
        m.tables_used()
    }

    #[test]
    fn descriptor_bits() {
        let normal_block = leaf_descriptor(0x4400_0000, MemType::Normal, 2);
        assert_eq!(normal_block & 3, 1, "block");
        assert_eq!(normal_block & DESC_ADDR, 0x4400_0000);
        assert_ne!(normal_block & DESC_AF, 0);
        assert_eq!(normal_block & DESC_PXN, 0, "RAM holds our code");
        let device_page = leaf_descriptor(0x0900_0000, MemType::Device, 3);
        assert_eq!(device_page & 3, 3, "page");
        assert_eq!((device_page >> 2) & 7, ATTR_INDEX_DEVICE);
        assert_ne!(device_page & DESC_PXN, 0);
        assert_eq!(table_descriptor(0x4410_1000), 0x4410_1003);
    }

    #[test]
    fn partition_layout_translates_identity_with_the_right_types() {
        let mut pool = [Table::EMPTY; TABLE_POOL];
        let used = build(Platform::Bare, &mut pool);
        assert!(used <= TABLE_POOL);
        let guard = crate::layout::stack_top(0) - crate::layout::STACK_SIZE - 8;
        assert_eq!(translate(&pool, BASE, guard), None, "stack guard page");
        let ram_end = PARTITION_RAM_BASE + PARTITION_RAM_SIZE;
        for va in [
            PARTITION_RAM_BASE,
            PARTITION_RAM_BASE + 0x12_3458,
            ram_end - 8,
        ] {
            assert_eq!(translate(&pool, BASE, va), Some((va, MemType::Normal)));
        }
        assert_eq!(translate(&pool, BASE, ram_end), None);
        assert_eq!(translate(&pool, BASE, PARTITION_RAM_BASE - 1), None);
        assert_eq!(
            translate(&pool, BASE, PL011_BASE + 0x18),
            Some((PL011_BASE + 0x18, MemType::Device))
        );
        for p in PROBES {
            assert_eq!(
                translate(&pool, BASE, p.addr),
                Some((p.addr, MemType::Device))
            );
            assert_eq!(translate(&pool, BASE, p.addr + PAGE_SIZE), None);
        }
    }

    #[test]
    fn uart_page_is_absent_under_spumone() {
        let mut pool = [Table::EMPTY; TABLE_POOL];
        build(Platform::Spumone { vcpu: 0 }, &mut pool);
        assert_eq!(translate(&pool, BASE, PL011_BASE), None);
        // The GPIO probe shares the UART's 2 MiB range and is still there.
        assert!(translate(&pool, BASE, PROBES[0].addr).is_some());
    }

    #[test]
    fn largest_blocks_are_used() {
        let mut pool = [Table::EMPTY; 4];
        let mut m = Mapper::new(&mut pool, BASE);
        // 1 GiB block, then 2 MiB blocks and 4 KiB pages for the unaligned tail.
        m.map(Region {
            base: 0x4000_0000,
            size: 0x4000_0000,
            mem: MemType::Normal,
        })
        .unwrap();
        assert_eq!(m.tables_used(), 1);
        m.map(Region {
            base: 0x8000_0000,
            size: 0x20_1000,
            mem: MemType::Normal,
        })
        .unwrap();
        assert_eq!(m.tables_used(), 3);
        assert_eq!(pool[0].0[1] & 3, 1, "level-1 block");
        assert_eq!(pool[1].0[0] & 3, 1, "level-2 block");
        assert_eq!(pool[2].0[0] & 3, 3, "level-3 page");
        assert_eq!(
            translate(&pool, BASE, 0x8020_0fff),
            Some((0x8020_0fff, MemType::Normal))
        );
        assert_eq!(translate(&pool, BASE, 0x8020_1000), None);
    }

    #[test]
    fn bad_regions_are_rejected() {
        let mut pool = [Table::EMPTY; 2];
        let mut m = Mapper::new(&mut pool, BASE);
        let region = |base, size| Region {
            base,
            size,
            mem: MemType::Device,
        };
        assert_eq!(m.map(region(0x1000, 0)), Err(MapError::Unaligned));
        assert_eq!(m.map(region(0x1800, 0x1000)), Err(MapError::Unaligned));
        assert_eq!(m.map(region(1 << 39, 0x1000)), Err(MapError::OutOfRange));
        m.map(region(0x20_0000, 0x20_0000)).unwrap();
        assert_eq!(m.map(region(0x20_0000, 0x1000)), Err(MapError::Overlap));
        // A page elsewhere needs a level-3 table the pool no longer has.
        assert_eq!(m.map(region(0x40_0000, 0x1000)), Err(MapError::OutOfTables));
    }

    #[test]
    fn control_register_values() {
        let tcr = tcr_el1(2);
        assert_eq!(tcr & 0x3f, 25);
        assert_eq!((tcr >> 32) & 7, 2);
        assert_eq!((tcr >> 14) & 3, 0, "TG0 4 KiB");
        assert_ne!(tcr & (1 << 23), 0, "no TTBR1 walks");
        assert_eq!((tcr_el1(6) >> 32) & 7, 5, "capped at 48 bits");
        assert_eq!(SCTLR_EL1_MMU_ON & 0b101, 0b101);
        assert_ne!(SCTLR_EL1_MMU_ON & (1 << 12), 0);
        assert_eq!(SCTLR_EL1_MMU_ON & (1 << 25), 0, "little-endian");
    }
}
