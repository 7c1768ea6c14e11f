//! spumone's own (EL2 stage-1) identity map: 4 KiB granule, 39-bit addresses, walks starting
//! at level 1, with 1 GiB and 2 MiB blocks wherever alignment allows.

/// Entries in one translation table.
pub const ENTRIES: usize = 512;

/// One 4 KiB translation table.
#[repr(C, align(4096))]
#[derive(Clone)]
pub struct Table(pub [u64; ENTRIES]);

impl Table {
    pub const EMPTY: Table = Table([0; ENTRIES]);
}

/// Input address bits covered (TCR_EL2.T0SZ = 64 - VA_BITS).
pub const VA_BITS: u32 = 39;

/// MAIR_EL2 value matching [`MemKind`]: index 0 normal write-back, index 1 Device-nGnRE.
pub const MAIR_EL2: u64 = 0xff | (0x04 << 8);

/// How a range is mapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemKind {
    /// Normal memory, inner/outer write-back, inner shareable, executable.
    Normal,
    /// Device-nGnRE, never executable.
    Device,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// Base or size not 4 KiB aligned, or the range leaves the address space.
    BadRange,
    /// The table pool ran out.
    OutOfTables,
    /// Part of the range was already mapped with other attributes.
    Conflict,
}

const VALID: u64 = 1;
const TABLE_OR_PAGE: u64 = 1 << 1;
const ATTR_INDEX_SHIFT: u64 = 2;
/// AP[1] is RES1 in the EL2 regime; AP[2] = 0 is read/write.
const AP_RES1: u64 = 1 << 6;
const SH_INNER: u64 = 0b11 << 8;
const AF: u64 = 1 << 10;
const XN: u64 = 1 << 54;
const ADDR_MASK: u64 = 0x0000_ffff_ffff_f000;

const PAGE_SHIFT: u32 = 12;
const LEVELS: [u32; 3] = [30, 21, 12];

fn leaf_attrs(kind: MemKind) -> u64 {
    match kind {
        MemKind::Normal => AF | SH_INNER | AP_RES1,
        MemKind::Device => AF | AP_RES1 | XN | (1 << ATTR_INDEX_SHIFT),
    }
}

/// Builds the map in a caller-provided pool; `pool[0]` is the root (level 1) table.
pub struct El2Map<'a> {
    pool: &'a mut [Table],
    used: usize,
}

impl<'a> El2Map<'a> {
    /// Clears the root table. `pool` must hold at least one table.
    pub fn new(pool: &'a mut [Table]) -> Self {
        assert!(!pool.is_empty(), "the pool needs a root table");
        pool[0] = Table::EMPTY;
        El2Map { pool, used: 1 }
    }

    /// Address of the root table, for TTBR0_EL2 (identity mapped, so also physical).
    pub fn root_addr(&self) -> u64 {
        table_addr(&self.pool[0])
    }

    pub fn tables_used(&self) -> usize {
        self.used
    }

    /// Identity-maps `[base, base + size)`.
    pub fn map(&mut self, base: u64, size: u64, kind: MemKind) -> Result<(), MapError> {
        let page = 1u64 << PAGE_SHIFT;
        let end = base.checked_add(size).ok_or(MapError::BadRange)?;
        if (base | size) & (page - 1) != 0 || end > 1 << VA_BITS {
            return Err(MapError::BadRange);
        }
        let mut addr = base;
        while addr < end {
            addr = self.map_one(addr, end, kind)?;
        }
        Ok(())
    }

    /// Maps the largest block or page starting at `addr` that fits below `end`; returns the
    /// next address to map.
    fn map_one(&mut self, addr: u64, end: u64, kind: MemKind) -> Result<u64, MapError> {
        let mut table = 0;
        for (level, &shift) in LEVELS.iter().enumerate() {
            let size = 1u64 << shift;
            let index = ((addr >> shift) & (ENTRIES as u64 - 1)) as usize;
            let last = level == LEVELS.len() - 1;
            let entry = self.pool[table].0[index];
            let fits = addr & (size - 1) == 0 && end - addr >= size;
            if last || (fits && entry & VALID == 0) {
                let leaf = addr | leaf_attrs(kind) | VALID | if last { TABLE_OR_PAGE } else { 0 };
                if entry & VALID != 0 && entry != leaf {
                    return Err(MapError::Conflict);
                }
                self.pool[table].0[index] = leaf;
                return Ok(addr + size);
            }
            table = if entry & VALID == 0 {
                let next = self.alloc()?;
                self.pool[table].0[index] = table_addr(&self.pool[next]) | TABLE_OR_PAGE | VALID;
                next
            } else if entry & TABLE_OR_PAGE != 0 {
                self.index_of(entry & ADDR_MASK)
            } else {
                // A block already covers this address.
                if (entry & ADDR_MASK) | leaf_attrs(kind) | VALID == entry {
                    return Ok(((addr >> shift) + 1) << shift);
                }
                return Err(MapError::Conflict);
            };
        }
        unreachable!("the last level always maps")
    }

    fn alloc(&mut self) -> Result<usize, MapError> {
        if self.used == self.pool.len() {
            return Err(MapError::OutOfTables);
        }
        self.pool[self.used] = Table::EMPTY;
        self.used += 1;
        Ok(self.used - 1)
    }

    fn index_of(&self, addr: u64) -> usize {
        self.pool[..self.used]
            .iter()
            .position(|t| table_addr(t) == addr)
            .expect("table descriptors only point into the pool")
    }

    /// Walks the tables: the output address and kind of `addr`, if mapped.
    pub fn translate(&self, addr: u64) -> Option<(u64, MemKind)> {
        let mut table = 0;
        for (level, &shift) in LEVELS.iter().enumerate() {
            let index = ((addr >> shift) & (ENTRIES as u64 - 1)) as usize;
            let entry = self.pool[table].0[index];
            if entry & VALID == 0 {
                return None;
            }
            let last = level == LEVELS.len() - 1;
            if last || entry & TABLE_OR_PAGE == 0 {
                let kind = if (entry >> ATTR_INDEX_SHIFT) & 0b111 == 1 {
                    MemKind::Device
                } else {
                    MemKind::Normal
                };
                let offset = addr & ((1u64 << shift) - 1);
                return Some(((entry & ADDR_MASK & !((1u64 << shift) - 1)) | offset, kind));
            }
            table = self.index_of(entry & ADDR_MASK);
        }
        None
    }

    /// Level at which `addr` is mapped (1 = 1 GiB block, 2 = 2 MiB block, 3 = page).
    pub fn level_of(&self, addr: u64) -> Option<usize> {
        let mut table = 0;
        for (level, &shift) in LEVELS.iter().enumerate() {
            let index = ((addr >> shift) & (ENTRIES as u64 - 1)) as usize;
            let entry = self.pool[table].0[index];
            if entry & VALID == 0 {
                return None;
            }
            if level == LEVELS.len() - 1 || entry & TABLE_OR_PAGE == 0 {
                return Some(level + 1);
            }
            table = self.index_of(entry & ADDR_MASK);
        }
        None
    }
}

fn table_addr(table: &Table) -> u64 {
    table as *const Table as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(n: usize) -> Vec<Table> {
        vec![Table::EMPTY; n]
    }

    #[test]
    fn ram_uses_gigabyte_blocks_and_devices_use_pages() {
        let mut tables = pool(16);
        let mut map = El2Map::new(&mut tables);
        map.map(0x4000_0000, 0x8000_0000, MemKind::Normal).unwrap();
        map.map(0x0900_0000, 0x1000, MemKind::Device).unwrap();
        assert_eq!(map.level_of(0x4000_0000), Some(1));
        assert_eq!(map.level_of(0xbfff_ffff), Some(1));
        assert_eq!(map.level_of(0x0900_0000), Some(3));
        assert_eq!(
            map.translate(0x4123_4567),
            Some((0x4123_4567, MemKind::Normal))
        );
        assert_eq!(
            map.translate(0x0900_0ff8),
            Some((0x0900_0ff8, MemKind::Device))
        );
        assert_eq!(map.translate(0x0900_1000), None);
        assert_eq!(map.translate(0xc000_0000), None);
        // Root, one level-2 table and one level-3 table.
        assert_eq!(map.tables_used(), 3);
    }

    #[test]
    fn unaligned_span_mixes_blocks_and_pages() {
        let mut tables = pool(16);
        let mut map = El2Map::new(&mut tables);
        // The GICv3 redistributors on QEMU virt.
        map.map(0x080a_0000, 0xf6_0000, MemKind::Device).unwrap();
        assert_eq!(map.level_of(0x080a_0000), Some(3));
        assert_eq!(map.level_of(0x0820_0000), Some(2));
        assert_eq!(map.level_of(0x08ff_f000), Some(2));
        assert_eq!(map.translate(0x0900_0000), None);
        assert_eq!(map.translate(0x0809_f000), None);
    }

    #[test]
    fn errors_are_reported() {
        let mut tables = pool(2);
        let mut map = El2Map::new(&mut tables);
        assert_eq!(
            map.map(0x1001, 0x1000, MemKind::Normal),
            Err(MapError::BadRange)
        );
        assert_eq!(
            map.map(1 << VA_BITS, 0x1000, MemKind::Normal),
            Err(MapError::BadRange)
        );
        map.map(0x4000_0000, 0x4000_0000, MemKind::Normal).unwrap();
        assert_eq!(
            map.map(0x4000_0000, 0x1000, MemKind::Device),
            Err(MapError::Conflict)
        );
        // Mapping again the same way is fine.
        map.map(0x4000_0000, 0x1000, MemKind::Normal).unwrap();
        // Needs a level-2 and a level-3 table, but only one is left.
        assert_eq!(
            map.map(0x0900_0000, 0x1000, MemKind::Device),
            Err(MapError::OutOfTables)
        );
    }
}
