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
    /// Part of the range is not mapped (changing its permissions needs a mapping).
    Unmapped,
}

const VALID: u64 = 1;
const TABLE_OR_PAGE: u64 = 1 << 1;
const ATTR_INDEX_SHIFT: u64 = 2;
/// AP[1] is RES1 in the EL2 regime; AP[2] = 0 is read/write.
const AP_RES1: u64 = 1 << 6;
/// AP[2] = 1: read-only, at EL2 and for an SMMU's stage-1 context alike.
const AP_RO: u64 = 1 << 7;
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

    /// The map built earlier in `pool` that took its first `used` tables
    /// ([`Self::tables_used`]), to change it later ([`Self::set_writable`]).
    pub fn reopen(pool: &'a mut [Table], used: usize) -> Self {
        assert!(
            (1..=pool.len()).contains(&used),
            "a built map has its root in the pool"
        );
        El2Map { pool, used }
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

    /// Makes the mapped range `[base, base + size)` writable or read-only (AP[2] of its
    /// leaves), keeping every other attribute and every output address. A block the range
    /// covers only partly is split into a table of the next level first; each new table is
    /// filled completely and handed to `publish` before a descriptor points at it (so a
    /// walker that does not share this core's caches can be made to see it). Nothing is
    /// written unless the pool holds every table the change needs. Returns how many leaves
    /// changed permission (0: the range already had it).
    pub fn set_writable(
        &mut self,
        base: u64,
        size: u64,
        writable: bool,
        publish: &mut dyn FnMut(&Table),
    ) -> Result<usize, MapError> {
        let page = 1u64 << PAGE_SHIFT;
        let end = base.checked_add(size).ok_or(MapError::BadRange)?;
        if (base | size) & (page - 1) != 0 || end > 1 << VA_BITS {
            return Err(MapError::BadRange);
        }
        if size == 0 {
            return Ok(0);
        }
        let ro = if writable { 0 } else { AP_RO };
        let needed = self.tables_to_split(0, 0, base, end, ro)?;
        if needed > self.pool.len() - self.used {
            return Err(MapError::OutOfTables);
        }
        self.apply_ap(0, 0, base, end, ro, publish)
    }

    /// Tables that setting AP[2] to `ro` over `[start, end)` under table `table` (at
    /// `LEVELS[level]`) needs; writes nothing.
    fn tables_to_split(
        &self,
        table: usize,
        level: usize,
        start: u64,
        end: u64,
        ro: u64,
    ) -> Result<usize, MapError> {
        let mut needed = 0;
        for (addr, chunk_end, whole) in chunks(start, end, LEVELS[level]) {
            let entry = self.pool[table].0[entry_index(addr, LEVELS[level])];
            if entry & VALID == 0 {
                return Err(MapError::Unmapped);
            }
            if level + 1 < LEVELS.len() && entry & TABLE_OR_PAGE != 0 {
                let next = self.index_of(entry & ADDR_MASK);
                needed += self.tables_to_split(next, level + 1, addr, chunk_end, ro)?;
            } else if !whole && entry & AP_RO != ro {
                needed += split_tables(level, addr, chunk_end);
            }
        }
        Ok(needed)
    }

    /// Sets AP[2] to `ro` over `[start, end)`; [`Self::tables_to_split`] has counted the
    /// tables it takes.
    fn apply_ap(
        &mut self,
        table: usize,
        level: usize,
        start: u64,
        end: u64,
        ro: u64,
        publish: &mut dyn FnMut(&Table),
    ) -> Result<usize, MapError> {
        let mut changed = 0;
        for (addr, chunk_end, whole) in chunks(start, end, LEVELS[level]) {
            let index = entry_index(addr, LEVELS[level]);
            let entry = self.pool[table].0[index];
            if entry & VALID == 0 {
                return Err(MapError::Unmapped);
            }
            if level + 1 < LEVELS.len() && entry & TABLE_OR_PAGE != 0 {
                let next = self.index_of(entry & ADDR_MASK);
                changed += self.apply_ap(next, level + 1, addr, chunk_end, ro, publish)?;
            } else if entry & AP_RO == ro {
                // Already so.
            } else if whole {
                self.pool[table].0[index] = (entry & !AP_RO) | ro;
                changed += 1;
            } else {
                let next = self.split(entry, level)?;
                publish(&self.pool[next]);
                self.pool[table].0[index] = table_addr(&self.pool[next]) | TABLE_OR_PAGE | VALID;
                changed += self.apply_ap(next, level + 1, addr, chunk_end, ro, publish)?;
            }
        }
        Ok(changed)
    }

    /// A new table of leaves one level below `block` (a block at `LEVELS[level]`), covering
    /// what it covers with the same attributes. Not linked yet.
    fn split(&mut self, block: u64, level: usize) -> Result<usize, MapError> {
        let next = self.alloc()?;
        let child_shift = LEVELS[level + 1];
        let base = block & ADDR_MASK & !((1u64 << LEVELS[level]) - 1);
        let attrs = block & !(ADDR_MASK | VALID | TABLE_OR_PAGE);
        let page = if level + 2 == LEVELS.len() {
            TABLE_OR_PAGE
        } else {
            0
        };
        for (i, slot) in self.pool[next].0.iter_mut().enumerate() {
            *slot = (base + ((i as u64) << child_shift)) | attrs | page | VALID;
        }
        Ok(next)
    }

    /// Whether `addr` is mapped writable (`None`: not mapped).
    pub fn writable(&self, addr: u64) -> Option<bool> {
        let mut table = 0;
        for (level, &shift) in LEVELS.iter().enumerate() {
            let entry = self.pool[table].0[entry_index(addr, shift)];
            if entry & VALID == 0 {
                return None;
            }
            if level == LEVELS.len() - 1 || entry & TABLE_OR_PAGE == 0 {
                return Some(entry & AP_RO == 0);
            }
            table = self.index_of(entry & ADDR_MASK);
        }
        None
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

/// `[start, end)` cut at the boundaries of `1 << shift` entries: each piece's start, end and
/// whether it is an entry's whole span.
fn chunks(start: u64, end: u64, shift: u32) -> impl Iterator<Item = (u64, u64, bool)> {
    let size = 1u64 << shift;
    let mut addr = start;
    core::iter::from_fn(move || {
        if addr >= end {
            return None;
        }
        let entry_base = addr & !(size - 1);
        let chunk_end = end.min(entry_base + size);
        let piece = (
            addr,
            chunk_end,
            addr == entry_base && chunk_end == entry_base + size,
        );
        addr = chunk_end;
        Some(piece)
    })
}

fn entry_index(addr: u64, shift: u32) -> usize {
    ((addr >> shift) & (ENTRIES as u64 - 1)) as usize
}

/// Tables needed to split a leaf at `LEVELS[level]` of which `[start, end)` is only a part,
/// down to where `[start, end)` is made of whole leaves.
const fn split_tables(level: usize, start: u64, end: u64) -> usize {
    let mut count = 1;
    if level + 2 < LEVELS.len() {
        let size = 1u64 << LEVELS[level + 1];
        let mut addr = start;
        while addr < end {
            let entry_base = addr & !(size - 1);
            let chunk_end = if end < entry_base + size {
                end
            } else {
                entry_base + size
            };
            if addr != entry_base || chunk_end != entry_base + size {
                count += split_tables(level + 1, addr, chunk_end);
            }
            addr = chunk_end;
        }
    }
    count
}

/// Tables an identity map of `ram` (page-aligned ranges) can take, built by
/// [`El2Map::map`] and then changed by `watches` calls of [`El2Map::set_writable`] that
/// each make one range writable or read-only: a root; a level-2 table for each 1 GiB the
/// RAM touches; a level-3 table at each end of each RAM range; and one at each end of each
/// changed range (a split block stays split, and a range inside one block has both ends
/// in it, so a change never needs more).
pub const fn identity_tables_bound(ram: &[(u64, u64)], watches: usize) -> usize {
    const GIB_SHIFT: u32 = LEVELS[0];
    let mut count = 1 + 2 * watches;
    let mut i = 0;
    while i < ram.len() {
        let (base, size) = ram[i];
        if size > 0 {
            count += 2;
            let first = base >> GIB_SHIFT;
            let last = (base + size - 1) >> GIB_SHIFT;
            // The GiB regions earlier ranges already touched are not counted again.
            let mut gib = first;
            while gib <= last {
                let mut seen = false;
                let mut j = 0;
                while j < i {
                    let (b, s) = ram[j];
                    if s > 0 && b >> GIB_SHIFT <= gib && gib <= (b + s - 1) >> GIB_SHIFT {
                        seen = true;
                    }
                    j += 1;
                }
                if !seen {
                    count += 1;
                }
                gib += 1;
            }
        }
        i += 1;
    }
    count
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

    /// Linux's RAM in `demo`, mapped as the SMMU's identity map is.
    fn linux_map(tables: &mut [Table]) -> usize {
        let mut map = El2Map::new(tables);
        map.map(0x4800_0000, 0x7000_0000, MemKind::Normal).unwrap();
        map.tables_used()
    }

    fn no_publish() -> impl FnMut(&Table) {
        |_| {}
    }

    /// Output address and kind are what they were before any change, everywhere.
    fn assert_identity(map: &El2Map, addrs: &[u64]) {
        for &a in addrs {
            assert_eq!(map.translate(a), Some((a, MemKind::Normal)), "{a:#x}");
        }
    }

    #[test]
    fn read_only_range_inside_one_block() {
        let mut tables = pool(8);
        let used = linux_map(&mut tables);
        let mut map = El2Map::reopen(&mut tables, used);
        // Three pages in the middle of the 2 MiB block at 0x4a00_0000.
        let (base, size) = (0x4a01_3000, 0x3000);
        let mut published = 0;
        let changed = map
            .set_writable(base, size, false, &mut |_| published += 1)
            .unwrap();
        assert_eq!(changed, 3);
        assert_eq!(published, 1, "one page table replaces the block");
        assert_eq!(map.tables_used(), used + 1);
        assert_eq!(map.writable(base - 1), Some(true));
        assert_eq!(map.writable(base), Some(false));
        assert_eq!(map.writable(base + size - 1), Some(false));
        assert_eq!(map.writable(base + size), Some(true));
        assert_eq!(map.writable(0x49ff_ffff), Some(true));
        assert_eq!(map.writable(0x4a20_0000), Some(true));
        assert_eq!(map.level_of(base), Some(3));
        assert_eq!(map.level_of(0x4a20_0000), Some(2));
        assert_identity(
            &map,
            &[
                0x4a00_0000,
                base - 8,
                base,
                base + 0x1234,
                base + size,
                0x4a1f_fff8,
            ],
        );
        // The same again changes nothing and takes nothing.
        assert_eq!(
            map.set_writable(base, size, false, &mut no_publish()),
            Ok(0)
        );
        assert_eq!(map.tables_used(), used + 1);
        // Writable again: as before, but the block stays split.
        assert_eq!(map.set_writable(base, size, true, &mut no_publish()), Ok(3));
        for a in (0x4a00_0000..0x4a20_0000).step_by(0x1000) {
            assert_eq!(map.writable(a), Some(true), "{a:#x}");
        }
        assert_identity(&map, &[base, base + size - 1]);
    }

    #[test]
    fn kernel_text_sized_range_splits_only_its_end_blocks() {
        let mut tables = pool(8);
        let used = linux_map(&mut tables);
        let mut map = El2Map::reopen(&mut tables, used);
        // ~22 MiB of text and rodata, both ends inside a 2 MiB block.
        let (base, end) = (0x4821_0000u64, 0x4987_5000u64);
        let changed = map
            .set_writable(base, end - base, false, &mut no_publish())
            .unwrap();
        // Pages in the first and last blocks, whole blocks between them.
        let first = (0x4840_0000 - base) / 0x1000;
        let last = (end - 0x4980_0000) / 0x1000;
        assert_eq!(changed as u64, first + 10 + last);
        assert_eq!(map.tables_used(), used + 2);
        for a in [0x4820_f000, 0x4820_fff8, end, end + 0x1000, 0x49a0_0000] {
            assert_eq!(map.writable(a), Some(true), "{a:#x}");
        }
        for a in [
            base,
            base + 0xfff,
            0x4840_0000,
            0x4900_0000,
            0x4980_0000,
            end - 8,
        ] {
            assert_eq!(map.writable(a), Some(false), "{a:#x}");
        }
        assert_eq!(
            map.level_of(0x4840_0000),
            Some(2),
            "inner blocks stay blocks"
        );
        assert_eq!(map.level_of(base), Some(3));
        assert_eq!(map.level_of(end), Some(3));
        assert_identity(
            &map,
            &[0x4800_0000, base, 0x4900_0000, end - 1, end, 0xb7ff_fff8],
        );
        // All of the RAM writable again, as a restart does.
        map.set_writable(0x4800_0000, 0x7000_0000, true, &mut no_publish())
            .unwrap();
        for a in [base, 0x4840_0000, end - 8] {
            assert_eq!(map.writable(a), Some(true), "{a:#x}");
        }
        assert_eq!(map.tables_used(), used + 2);
    }

    #[test]
    fn gigabyte_block_splits_down_to_pages_keeping_attributes() {
        let mut tables = pool(8);
        let used = {
            let mut map = El2Map::new(&mut tables);
            map.map(0x4000_0000, 0x4000_0000, MemKind::Normal).unwrap();
            map.map(0x0900_0000, 0x1000, MemKind::Device).unwrap();
            map.tables_used()
        };
        let before = tables[0].0[1];
        let mut map = El2Map::reopen(&mut tables, used);
        map.set_writable(0x4030_1000, 0x20_0000, false, &mut no_publish())
            .unwrap();
        // A level-2 table and a page table at each end.
        assert_eq!(map.tables_used(), used + 3);
        assert_eq!(map.writable(0x4030_0fff), Some(true));
        assert_eq!(map.writable(0x4030_1000), Some(false));
        assert_eq!(map.writable(0x4050_0fff), Some(false));
        assert_eq!(map.writable(0x4050_1000), Some(true));
        assert_eq!(map.writable(0x7fff_f000), Some(true));
        assert_identity(&map, &[0x4000_0000, 0x4030_1000, 0x4050_1000, 0x7fff_fff8]);
        assert_eq!(
            map.translate(0x0900_0000),
            Some((0x0900_0000, MemKind::Device))
        );
        // Leaves keep the block's attributes but for AP[2] (and the page type bit).
        let attrs = |d: u64| d & !(ADDR_MASK | TABLE_OR_PAGE | AP_RO);
        let l2 = map.index_of(map.pool[0].0[1] & ADDR_MASK);
        assert_eq!(attrs(map.pool[l2].0[0]), attrs(before));
        let l3 = map.index_of(map.pool[l2].0[1] & ADDR_MASK);
        assert_eq!(attrs(map.pool[l3].0[0x100]), attrs(before));
        assert_eq!(map.pool[l3].0[0x101] & AP_RO, AP_RO);
        assert_eq!(map.pool[l3].0[0x100] & AP_RO, 0);
    }

    #[test]
    fn out_of_tables_changes_nothing() {
        let mut tables = pool(5);
        let used = linux_map(&mut tables);
        assert_eq!(used, 3);
        let mut map = El2Map::reopen(&mut tables, used);
        // Both ends unaligned, in different blocks: the last two tables of the pool.
        assert_eq!(
            map.set_writable(0x4a01_0000, 0x40_0000, false, &mut no_publish()),
            Ok(0x1f0 + 1 + 0x10)
        );
        assert_eq!(map.tables_used(), 5);
        let after: Vec<[u64; ENTRIES]> = map.pool.iter().map(|t| t.0).collect();
        // A whole block, then a page of the next: the block is not changed either.
        assert_eq!(
            map.set_writable(0x5000_0000, 0x20_1000, false, &mut no_publish()),
            Err(MapError::OutOfTables)
        );
        let now: Vec<[u64; ENTRIES]> = map.pool.iter().map(|t| t.0).collect();
        assert_eq!(now, after, "nothing written");
        assert_eq!(map.writable(0x5000_0000), Some(true));
        assert_eq!(map.writable(0x5020_0000), Some(true));
        // Changes that need no new table still work.
        assert_eq!(
            map.set_writable(0x4a01_0000, 0x1000, true, &mut no_publish()),
            Ok(1)
        );
        assert_eq!(
            map.set_writable(0x5000_0000, 0x20_0000, false, &mut no_publish()),
            Ok(1)
        );
    }

    #[test]
    fn bad_and_unmapped_ranges_are_refused() {
        let mut tables = pool(8);
        let used = linux_map(&mut tables);
        let mut map = El2Map::reopen(&mut tables, used);
        assert_eq!(
            map.set_writable(0x4800_0800, 0x1000, false, &mut no_publish()),
            Err(MapError::BadRange)
        );
        // Partly outside the RAM: refused before anything is written.
        assert_eq!(
            map.set_writable(0xb7ff_f000, 0x2000, false, &mut no_publish()),
            Err(MapError::Unmapped)
        );
        assert_eq!(map.writable(0xb7ff_f000), Some(true));
        assert_eq!(map.writable(0xb800_0000), None);
        assert_eq!(map.tables_used(), used);
    }

    #[test]
    fn table_bound_covers_the_worst_watches() {
        // demo's Linux RAM: 1.75 GiB across two GiB regions.
        let ram = [(0x4800_0000, 0x7000_0000)];
        let bound = identity_tables_bound(&ram, 8);
        assert_eq!(bound, 1 + 2 + 2 + 16);
        let mut tables = pool(bound);
        let used = linux_map(&mut tables);
        let mut map = El2Map::reopen(&mut tables, used);
        // Eight ranges, each with both ends in a different block.
        for i in 0..8u64 {
            let base = 0x4a00_0000 + i * 0x0100_0000 + 0x1000;
            map.set_writable(base, 0x40_0000, false, &mut no_publish())
                .unwrap();
        }
        assert!(map.tables_used() <= bound);
        // A 1 GiB block per range: the level-2 tables are in the bound too.
        let ram = [(0x4000_0000, 0x8000_0000), (0x4000_0000, 0x1000)];
        assert_eq!(identity_tables_bound(&ram, 1), 1 + 2 + 4 + 2);
    }
}
