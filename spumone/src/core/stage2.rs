//! Identity stage-2 translation tables: 4 KiB granule, 40-bit IPA, start at level 1.
//!
//! A 40-bit IPA at level 1 needs 1024 entries, so the root is two concatenated level-1
//! tables (8 KiB, 8 KiB aligned). Ranges are mapped with 1 GiB and 2 MiB blocks wherever
//! alignment allows and 4 KiB pages elsewhere. Every operation first checks the whole range
//! and counts the tables it needs, so a failed call leaves the tables unchanged.
//!
//! The code only writes memory it was given; the caller publishes the tables (barriers,
//! `VTTBR_EL2`) and invalidates TLBs after changing live tables.

/// One translation table: 512 descriptors, one 4 KiB page.
pub type Table = [u64; ENTRIES];

use board::rt::Partition;

const PAGE_SIZE: u64 = 4096;
const ENTRIES: usize = 512;
/// Size of the intermediate physical address space.
pub const IPA_BITS: u32 = 40;
const IPA_LIMIT: u64 = 1 << IPA_BITS;
const ROOT_LEVEL: u8 = 1;
const ROOT_TABLES: usize = 2;
const ROOT_ALIGN: u64 = ROOT_TABLES as u64 * PAGE_SIZE;

const DESC_VALID: u64 = 1 << 0;
/// Bit 1: a table at levels 1-2, a page at level 3; clear means a block at levels 1-2.
const DESC_TABLE_OR_PAGE: u64 = 1 << 1;
const MEMATTR_NORMAL_WB: u64 = 0b1111 << 2;
const MEMATTR_DEVICE_NGNRE: u64 = 0b0001 << 2;
const MEMATTR_MASK: u64 = 0b1111 << 2;
const S2AP_READ: u64 = 1 << 6;
const S2AP_WRITE: u64 = 1 << 7;
const SH_INNER: u64 = 0b11 << 8;
const AF: u64 = 1 << 10;
/// XN[1:0] = 0b10: not executable at EL1 or EL0 (bit 53 is RES0 without FEAT_XNX).
const XN_NONE: u64 = 0b10 << 53;
const XN_MASK: u64 = 0b11 << 53;
const ATTR_MASK: u64 = MEMATTR_MASK | S2AP_READ | S2AP_WRITE | (0b11 << 8) | AF | XN_MASK;
/// Output address bits [47:12].
const OA_MASK: u64 = 0x0000_FFFF_FFFF_F000;

/// The memory type of a stage-2 mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemType {
    /// Normal memory, inner and outer write-back cacheable, inner shareable.
    Normal,
    /// Device-nGnRE memory.
    Device,
}

/// Stage-2 attributes of a mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct S2Attrs {
    /// Memory type.
    pub mem: MemType,
    /// The guest may read.
    pub read: bool,
    /// The guest may write.
    pub write: bool,
    /// The guest may execute.
    pub exec: bool,
}

impl S2Attrs {
    /// Guest RAM: normal memory, read, write and execute.
    pub const RAM: Self = Self {
        mem: MemType::Normal,
        read: true,
        write: true,
        exec: true,
    };
    /// A passed-through device: device memory, read and write, no execute.
    pub const DEVICE: Self = Self {
        mem: MemType::Device,
        read: true,
        write: true,
        exec: false,
    };

    /// The descriptor attribute bits (MemAttr, S2AP, SH, AF, XN).
    pub const fn bits(self) -> u64 {
        let mut bits = AF;
        bits |= match self.mem {
            MemType::Normal => MEMATTR_NORMAL_WB | SH_INNER,
            MemType::Device => MEMATTR_DEVICE_NGNRE,
        };
        if self.read {
            bits |= S2AP_READ;
        }
        if self.write {
            bits |= S2AP_WRITE;
        }
        if !self.exec {
            bits |= XN_NONE;
        }
        bits
    }

    /// Decodes the attributes of a leaf descriptor written by this module.
    pub const fn from_bits(desc: u64) -> Option<Self> {
        let mem = match desc & MEMATTR_MASK {
            MEMATTR_NORMAL_WB => MemType::Normal,
            MEMATTR_DEVICE_NGNRE => MemType::Device,
            _ => return None,
        };
        Some(Self {
            mem,
            read: desc & S2AP_READ != 0,
            write: desc & S2AP_WRITE != 0,
            exec: desc & XN_MASK == 0,
        })
    }
}

/// Why a stage-2 operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage2Error {
    /// An address, size or the pool base is not 4 KiB aligned.
    Unaligned,
    /// Part of the range is already mapped.
    Overlap,
    /// Part of the range lies beyond the 40-bit IPA space.
    OutOfRange,
    /// The table pool has too few free tables.
    PoolExhausted,
    /// Part of the range is not mapped (for [`Stage2::protect`]).
    NotMapped,
    /// A table descriptor points outside the pool.
    Corrupt,
}

/// The memory the tables are carved from.
pub struct TablePool<'a> {
    tables: &'a mut [Table],
    base_pa: u64,
    used: usize,
}

impl<'a> TablePool<'a> {
    /// A pool over `tables`, whose first table sits at physical address `base_pa`.
    pub fn new(tables: &'a mut [Table], base_pa: u64) -> Self {
        Self {
            tables,
            base_pa,
            used: 0,
        }
    }

    /// A pool whose first `used` tables already hold a tree (see [`Stage2::reopen`]).
    pub fn resume(tables: &'a mut [Table], base_pa: u64, used: usize) -> Self {
        let used = used.min(tables.len());
        Self {
            tables,
            base_pa,
            used,
        }
    }

    /// Tables handed out so far (including any skipped to align the root).
    pub fn used(&self) -> usize {
        self.used
    }

    /// Total number of tables in the pool.
    pub fn capacity(&self) -> usize {
        self.tables.len()
    }

    fn free(&self) -> usize {
        self.tables.len() - self.used
    }

    fn pa_of(&self, index: usize) -> u64 {
        self.base_pa + index as u64 * PAGE_SIZE
    }

    fn index_of(&self, pa: u64) -> Option<usize> {
        let offset = pa.checked_sub(self.base_pa)?;
        let index = usize::try_from(offset / PAGE_SIZE).ok()?;
        (index < self.used).then_some(index)
    }

    /// Hands out `count` zeroed, consecutive tables whose first one is `align`-aligned.
    fn alloc(&mut self, count: usize, align: u64) -> Option<usize> {
        let mut first = self.used;
        while !self.pa_of(first).is_multiple_of(align) {
            first += 1;
        }
        let end = first.checked_add(count)?;
        let tables = self.tables.get_mut(first..end)?;
        for table in tables {
            *table = [0; ENTRIES];
        }
        self.used = end;
        Some(first)
    }
}

/// Counts of what a stage-2 tree holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stage2Stats {
    /// Level-1 (1 GiB) block mappings.
    pub gib_blocks: usize,
    /// Level-2 (2 MiB) block mappings.
    pub mib_blocks: usize,
    /// Level-3 (4 KiB) page mappings.
    pub pages: usize,
    /// Level-2 tables.
    pub l2_tables: usize,
    /// Level-3 tables.
    pub l3_tables: usize,
}

/// A table in the pool: its first index and its number of entries (1024 for the root).
#[derive(Clone, Copy)]
struct TableRef {
    first: usize,
    entries: usize,
}

impl TableRef {
    const fn single(index: usize) -> Self {
        Self {
            first: index,
            entries: ENTRIES,
        }
    }
}

enum Entry {
    Invalid,
    Leaf(u64),
    Table(TableRef),
}

/// What a range walk does to each entry.
#[derive(Clone, Copy)]
enum Op {
    Map(S2Attrs),
    Protect(S2Attrs),
}

/// One partition's identity stage-2 translation tables.
pub struct Stage2<'a> {
    pool: TablePool<'a>,
    root: TableRef,
}

const fn shift(level: u8) -> u32 {
    12 + 9 * (3 - level as u32)
}

const fn block_size(level: u8) -> u64 {
    1 << shift(level)
}

/// The `VTCR_EL2` value for these tables.
pub const fn vtcr_el2() -> u64 {
    const T0SZ: u64 = 64 - IPA_BITS as u64;
    const SL0_LEVEL1: u64 = 0b01 << 6;
    const IRGN0_WBWA: u64 = 0b01 << 8;
    const ORGN0_WBWA: u64 = 0b01 << 10;
    const SH0_INNER: u64 = 0b11 << 12;
    const TG0_4K: u64 = 0b00 << 14;
    const PS_40BIT: u64 = 0b010 << 16;
    const RES1: u64 = 1 << 31;
    T0SZ | SL0_LEVEL1 | IRGN0_WBWA | ORGN0_WBWA | SH0_INNER | TG0_4K | PS_40BIT | RES1
}

/// Tables needed to build fresh structure for `[start, end)`, a partial piece of one entry
/// at `level` (the table below that entry, and any below it).
fn fresh_tables(level: u8, start: u64, end: u64) -> usize {
    let child = level + 1;
    let mut count = 1;
    if child < 3 {
        let size = block_size(child);
        let mut addr = start;
        while addr < end {
            let entry_base = addr & !(size - 1);
            let chunk_end = end.min(entry_base + size);
            if addr != entry_base || chunk_end != entry_base + size {
                count += fresh_tables(child, addr, chunk_end);
            }
            addr = chunk_end;
        }
    }
    count
}

impl<'a> Stage2<'a> {
    /// Empty tables; takes the root (two tables, 8 KiB aligned) from `pool`.
    pub fn new(mut pool: TablePool<'a>) -> Result<Self, Stage2Error> {
        if !pool.base_pa.is_multiple_of(PAGE_SIZE) {
            return Err(Stage2Error::Unaligned);
        }
        let end = (pool.capacity() as u64)
            .checked_mul(PAGE_SIZE)
            .and_then(|bytes| bytes.checked_add(pool.base_pa));
        if end.is_none_or(|end| end > OA_MASK + PAGE_SIZE) {
            return Err(Stage2Error::OutOfRange);
        }
        let first = pool
            .alloc(ROOT_TABLES, ROOT_ALIGN)
            .ok_or(Stage2Error::PoolExhausted)?;
        Ok(Self {
            pool,
            root: TableRef {
                first,
                entries: ROOT_TABLES * ENTRIES,
            },
        })
    }

    /// The tree built earlier in `pool` with its root at table `root_index` (from
    /// [`Stage2::root_index`]), to change it later (write watches).
    pub fn reopen(pool: TablePool<'a>, root_index: usize) -> Self {
        Self {
            pool,
            root: TableRef {
                first: root_index,
                entries: ROOT_TABLES * ENTRIES,
            },
        }
    }

    /// Index of the root's first table in the pool.
    pub fn root_index(&self) -> usize {
        self.root.first
    }

    /// Physical address of the root table (for `VTTBR_EL2.BADDR`).
    pub fn root_pa(&self) -> u64 {
        self.pool.pa_of(self.root.first)
    }

    /// The `VTTBR_EL2` value for these tables under an 8-bit `vmid`.
    pub fn vttbr_el2(&self, vmid: u8) -> u64 {
        (u64::from(vmid) << 48) | self.root_pa()
    }

    /// Tables taken from the pool so far.
    pub fn tables_used(&self) -> usize {
        self.pool.used()
    }

    /// Maps `[ipa, ipa + size)` to the same physical addresses with `attrs`.
    pub fn map(&mut self, ipa: u64, size: u64, attrs: S2Attrs) -> Result<(), Stage2Error> {
        self.apply_checked(ipa, size, Op::Map(attrs), &mut |_| {})
    }

    /// Changes the attributes of the mapped range `[ipa, ipa + size)`, splitting blocks
    /// that it covers only partly. The caller invalidates the stage-2 TLB entries after it;
    /// splitting a block is not break-before-make, so do it while the partition's vCPUs
    /// are stopped.
    pub fn protect(&mut self, ipa: u64, size: u64, attrs: S2Attrs) -> Result<(), Stage2Error> {
        self.apply_checked(ipa, size, Op::Protect(attrs), &mut |_| {})
    }

    /// [`Self::protect`] for live tables, break-before-make: a block being split is first
    /// made invalid and `flush(block base)` is called (it must invalidate the stage-2 TLB
    /// entries for it on every core) before the table replaces it. The caller still
    /// invalidates the TLBs after it, for the permission changes.
    pub fn protect_live(
        &mut self,
        ipa: u64,
        size: u64,
        attrs: S2Attrs,
        flush: &mut dyn FnMut(u64),
    ) -> Result<(), Stage2Error> {
        self.apply_checked(ipa, size, Op::Protect(attrs), flush)
    }

    /// Walks the tables: the physical address, attributes and level of the leaf for `ipa`.
    pub fn translate(&self, ipa: u64) -> Option<(u64, S2Attrs, u8)> {
        let (desc, level) = self.leaf(ipa)?;
        let size = block_size(level);
        let pa = (desc & OA_MASK & !(size - 1)) | (ipa & (size - 1));
        Some((pa, S2Attrs::from_bits(desc)?, level))
    }

    /// Counts blocks, pages and tables reachable from the root.
    pub fn stats(&self) -> Stage2Stats {
        let mut stats = Stage2Stats::default();
        self.count(self.root, ROOT_LEVEL, &mut stats);
        stats
    }

    fn count(&self, table: TableRef, level: u8, stats: &mut Stage2Stats) {
        for index in 0..table.entries {
            match self.entry(table, index, level) {
                Ok(Entry::Invalid) | Err(_) => {}
                Ok(Entry::Leaf(_)) => match level {
                    1 => stats.gib_blocks += 1,
                    2 => stats.mib_blocks += 1,
                    _ => stats.pages += 1,
                },
                Ok(Entry::Table(next)) => {
                    if level == 1 {
                        stats.l2_tables += 1;
                    } else {
                        stats.l3_tables += 1;
                    }
                    self.count(next, level + 1, stats);
                }
            }
        }
    }

    /// The leaf descriptor covering `ipa` and its level.
    fn leaf(&self, ipa: u64) -> Option<(u64, u8)> {
        if ipa >= IPA_LIMIT {
            return None;
        }
        let mut table = self.root;
        let mut level = ROOT_LEVEL;
        loop {
            match self
                .entry(table, self.index(table, ipa, level), level)
                .ok()?
            {
                Entry::Invalid => return None,
                Entry::Leaf(desc) => return Some((desc, level)),
                Entry::Table(next) => {
                    table = next;
                    level += 1;
                }
            }
        }
    }

    fn index(&self, table: TableRef, ipa: u64, level: u8) -> usize {
        ((ipa >> shift(level)) as usize) & (table.entries - 1)
    }

    fn raw(&self, table: TableRef, index: usize) -> u64 {
        self.pool.tables[table.first + index / ENTRIES][index % ENTRIES]
    }

    fn set(&mut self, table: TableRef, index: usize, desc: u64) {
        self.pool.tables[table.first + index / ENTRIES][index % ENTRIES] = desc;
    }

    fn entry(&self, table: TableRef, index: usize, level: u8) -> Result<Entry, Stage2Error> {
        let desc = self.raw(table, index);
        if desc & DESC_VALID == 0 {
            return Ok(Entry::Invalid);
        }
        let is_table_bit = desc & DESC_TABLE_OR_PAGE != 0;
        match (level, is_table_bit) {
            (3, true) | (1..=2, false) => Ok(Entry::Leaf(desc)),
            (3, false) => Ok(Entry::Invalid),
            _ => self
                .pool
                .index_of(desc & OA_MASK)
                .map(|index| Entry::Table(TableRef::single(index)))
                .ok_or(Stage2Error::Corrupt),
        }
    }

    fn apply_checked(
        &mut self,
        ipa: u64,
        size: u64,
        op: Op,
        flush: &mut dyn FnMut(u64),
    ) -> Result<(), Stage2Error> {
        if !ipa.is_multiple_of(PAGE_SIZE) || !size.is_multiple_of(PAGE_SIZE) {
            return Err(Stage2Error::Unaligned);
        }
        let end = ipa.checked_add(size).ok_or(Stage2Error::OutOfRange)?;
        if end > IPA_LIMIT {
            return Err(Stage2Error::OutOfRange);
        }
        if size == 0 {
            return Ok(());
        }
        let needed = self.check(self.root, ROOT_LEVEL, ipa, end, op)?;
        if needed > self.pool.free() {
            return Err(Stage2Error::PoolExhausted);
        }
        self.apply(self.root, ROOT_LEVEL, ipa, end, op, flush)
    }

    /// Validates `[start, end)` for `op` without writing; returns the tables it will need.
    fn check(
        &self,
        table: TableRef,
        level: u8,
        start: u64,
        end: u64,
        op: Op,
    ) -> Result<usize, Stage2Error> {
        let size = block_size(level);
        let mut needed = 0;
        let mut addr = start;
        while addr < end {
            let entry_base = addr & !(size - 1);
            let chunk_end = end.min(entry_base + size);
            let whole = addr == entry_base && chunk_end == entry_base + size;
            match (
                self.entry(table, self.index(table, addr, level), level)?,
                op,
            ) {
                (Entry::Table(next), _) => {
                    needed += self.check(next, level + 1, addr, chunk_end, op)?
                }
                (Entry::Invalid, Op::Map(_)) | (Entry::Leaf(_), Op::Protect(_)) => {
                    if !whole {
                        needed += fresh_tables(level, addr, chunk_end);
                    }
                }
                (Entry::Leaf(_), Op::Map(_)) => return Err(Stage2Error::Overlap),
                (Entry::Invalid, Op::Protect(_)) => return Err(Stage2Error::NotMapped),
            }
            addr = chunk_end;
        }
        Ok(needed)
    }

    /// Performs `op` on `[start, end)`; [`Self::check`] has already accepted it.
    fn apply(
        &mut self,
        table: TableRef,
        level: u8,
        start: u64,
        end: u64,
        op: Op,
        flush: &mut dyn FnMut(u64),
    ) -> Result<(), Stage2Error> {
        let size = block_size(level);
        let leaf_type = if level == 3 { DESC_TABLE_OR_PAGE } else { 0 };
        let mut addr = start;
        while addr < end {
            let entry_base = addr & !(size - 1);
            let chunk_end = end.min(entry_base + size);
            let whole = addr == entry_base && chunk_end == entry_base + size;
            let index = self.index(table, addr, level);
            let next = match (self.entry(table, index, level)?, op) {
                (Entry::Table(next), _) => next,
                (Entry::Invalid, Op::Map(attrs)) if whole => {
                    let desc = entry_base | attrs.bits() | leaf_type | DESC_VALID;
                    self.set(table, index, desc);
                    addr = chunk_end;
                    continue;
                }
                (Entry::Invalid, Op::Map(_)) => self.new_table(table, index, None)?,
                (Entry::Leaf(desc), Op::Protect(attrs)) if whole => {
                    self.set(table, index, (desc & !ATTR_MASK) | attrs.bits());
                    addr = chunk_end;
                    continue;
                }
                (Entry::Leaf(desc), Op::Protect(_)) => {
                    // Break before make.
                    self.set(table, index, 0);
                    flush(entry_base);
                    self.new_table(table, index, Some((desc, entry_base, level + 1)))?
                }
                (Entry::Leaf(_), Op::Map(_)) => return Err(Stage2Error::Overlap),
                (Entry::Invalid, Op::Protect(_)) => return Err(Stage2Error::NotMapped),
            };
            self.apply(next, level + 1, addr, chunk_end, op, flush)?;
            addr = chunk_end;
        }
        Ok(())
    }

    /// Hangs a new table under `table[index]`; `split` = (old block, its base, child level)
    /// fills it with smaller leaves that keep the block's attributes.
    fn new_table(
        &mut self,
        table: TableRef,
        index: usize,
        split: Option<(u64, u64, u8)>,
    ) -> Result<TableRef, Stage2Error> {
        let new = self
            .pool
            .alloc(1, PAGE_SIZE)
            .ok_or(Stage2Error::PoolExhausted)?;
        if let Some((block, base, child_level)) = split {
            let child_size = block_size(child_level);
            let leaf_type = if child_level == 3 {
                DESC_TABLE_OR_PAGE
            } else {
                0
            };
            let attrs = block & ATTR_MASK;
            for (i, slot) in self.pool.tables[new].iter_mut().enumerate() {
                *slot = (base + i as u64 * child_size) | attrs | leaf_type | DESC_VALID;
            }
        }
        let desc = self.pool.pa_of(new) | DESC_TABLE_OR_PAGE | DESC_VALID;
        self.set(table, index, desc);
        Ok(TableRef::single(new))
    }
}

/// The 4 KiB pages covering `base..base + size`, as `(base, size)`: stage 2 maps whole pages,
/// so devices smaller than a page (virtio-mmio transports, 0x200 each) share one.
pub const fn device_pages(base: u64, size: u64) -> (u64, u64) {
    let start = base & !0xfff;
    let end = (base + size + 0xfff) & !0xfff;
    (start, end - start)
}

/// Maps what partition `partition` may reach, and nothing else: its RAM (normal memory) and
/// the pages of its devices and their windows (device memory, each page once). Memory only
/// spumone touches (its own region, a Linux partition's `reset_copy`) is never in that list.
pub fn map_partition(s2: &mut Stage2, partition: &Partition) -> Result<(), &'static str> {
    for range in partition.ram {
        s2.map(range.base, range.size, S2Attrs::RAM)
            .map_err(|_| "cannot map RAM")?;
    }
    let mut mapped: heapless::Vec<(u64, u64), 16> = heapless::Vec::new();
    let ranges = partition.devices.iter().flat_map(|device| {
        core::iter::once((device.base, device.size))
            .chain(device.windows.iter().map(|w| (w.base, w.size)))
    });
    for (base, size) in ranges {
        let (base, size) = device_pages(base, size);
        // Devices sharing a page are mapped once.
        if mapped.contains(&(base, size)) {
            continue;
        }
        s2.map(base, size, S2Attrs::DEVICE)
            .map_err(|_| "cannot map a device")?;
        let _ = mapped.push((base, size));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_pages_round_out_to_whole_pages() {
        assert_eq!(device_pages(0x0a00_0200, 0x200), (0x0a00_0000, 0x1000));
        assert_eq!(device_pages(0x0a00_0e00, 0x400), (0x0a00_0000, 0x2000));
        assert_eq!(device_pages(0x0900_0000, 0x1000), (0x0900_0000, 0x1000));
    }
    use std::vec;
    use std::vec::Vec;

    const KIB: u64 = 1024;
    const MIB: u64 = 1024 * KIB;
    const GIB: u64 = 1024 * MIB;
    const POOL_BASE: u64 = 0x4010_0000;

    fn pool(n: usize) -> Vec<Table> {
        vec![[0u64; ENTRIES]; n]
    }

    const RO_NX: S2Attrs = S2Attrs {
        mem: MemType::Normal,
        read: true,
        write: false,
        exec: false,
    };

    #[test]
    fn vtcr_fields() {
        let v = vtcr_el2();
        assert_eq!(v & 0x3F, 24, "T0SZ");
        assert_eq!((v >> 6) & 0b11, 1, "SL0");
        assert_eq!((v >> 8) & 0b11, 0b01, "IRGN0");
        assert_eq!((v >> 10) & 0b11, 0b01, "ORGN0");
        assert_eq!((v >> 12) & 0b11, 0b11, "SH0");
        assert_eq!((v >> 14) & 0b11, 0b00, "TG0");
        assert_eq!((v >> 16) & 0b111, 0b010, "PS");
        assert_eq!((v >> 31) & 1, 1, "RES1");
        assert_eq!(v & !0x8007_FFFF, 0, "nothing else set");
        assert_eq!(v, 0x8002_3558);
    }

    #[test]
    fn root_is_two_tables_8k_aligned() {
        let mut tables = pool(4);
        let s2 = Stage2::new(TablePool::new(&mut tables, POOL_BASE)).unwrap();
        assert_eq!(s2.root_pa(), POOL_BASE);
        assert_eq!(s2.tables_used(), 2);
        assert_eq!(s2.vttbr_el2(5), (5 << 48) | POOL_BASE);

        // A pool starting on an odd page skips one table to align the root.
        let mut tables = pool(3);
        let s2 = Stage2::new(TablePool::new(&mut tables, POOL_BASE + 0x1000)).unwrap();
        assert_eq!(s2.root_pa(), POOL_BASE + 0x2000);
        assert_eq!(s2.tables_used(), 3);

        let mut tables = pool(2);
        let r = Stage2::new(TablePool::new(&mut tables, POOL_BASE + 0x1000));
        assert_eq!(r.err(), Some(Stage2Error::PoolExhausted));
        let mut tables = pool(1);
        let r = Stage2::new(TablePool::new(&mut tables, POOL_BASE));
        assert_eq!(r.err(), Some(Stage2Error::PoolExhausted));
        let mut tables = pool(2);
        let r = Stage2::new(TablePool::new(&mut tables, POOL_BASE + 8));
        assert_eq!(r.err(), Some(Stage2Error::Unaligned));
    }

    #[test]
    fn rtos_partition_uses_2m_blocks_only() {
        let mut tables = pool(8);
        let mut s2 = Stage2::new(TablePool::new(&mut tables, POOL_BASE)).unwrap();
        s2.map(0x4400_0000, 64 * MIB, S2Attrs::RAM).unwrap();
        assert_eq!(
            s2.stats(),
            Stage2Stats {
                gib_blocks: 0,
                mib_blocks: 32,
                pages: 0,
                l2_tables: 1,
                l3_tables: 0,
            }
        );
        assert_eq!(s2.tables_used(), 3);
        for i in 0..32 {
            let ipa = 0x4400_0000 + i * 2 * MIB;
            assert_eq!(s2.translate(ipa), Some((ipa, S2Attrs::RAM, 2)));
            assert_eq!(
                s2.translate(ipa + 0x1_2345),
                Some((ipa + 0x1_2345, S2Attrs::RAM, 2))
            );
        }
        assert_eq!(s2.translate(0x4400_0000 - 1), None);
        assert_eq!(s2.translate(0x4800_0000), None);
    }

    #[test]
    fn aligned_gib_is_one_level1_block() {
        let mut tables = pool(4);
        let mut s2 = Stage2::new(TablePool::new(&mut tables, POOL_BASE)).unwrap();
        s2.map(IPA_LIMIT - GIB, GIB, S2Attrs::RAM).unwrap();
        let stats = s2.stats();
        assert_eq!(stats.gib_blocks, 1);
        assert_eq!(stats.mib_blocks + stats.pages + stats.l2_tables, 0);
        assert_eq!(s2.tables_used(), 2);
        // The last GiB of the space uses the second root table.
        let last = 0xFF_FFFF_FFFF;
        assert_eq!(s2.translate(last), Some((last, S2Attrs::RAM, 1)));
        assert_eq!(s2.raw(s2.root, 1023) & OA_MASK, 0xFF_C000_0000);
    }

    #[test]
    fn straddling_range_picks_the_largest_fitting_blocks() {
        let mut tables = pool(8);
        let mut s2 = Stage2::new(TablePool::new(&mut tables, POOL_BASE)).unwrap();
        // 0x3FE0_0000 .. 0x8040_0000: one 2 MiB block, one GiB, two 2 MiB blocks.
        s2.map(0x3FE0_0000, 2 * MIB + GIB + 4 * MIB, S2Attrs::RAM)
            .unwrap();
        let stats = s2.stats();
        assert_eq!((stats.gib_blocks, stats.mib_blocks, stats.pages), (1, 3, 0));
        assert_eq!(stats.l2_tables, 2);
        assert_eq!(s2.translate(0x3FE0_0000).unwrap().2, 2);
        assert_eq!(s2.translate(0x4000_0000).unwrap().2, 1);
        assert_eq!(s2.translate(0x8020_0000).unwrap().2, 2);
        assert_eq!(s2.translate(0x8040_0000), None);
    }

    #[test]
    fn odd_range_mixes_pages_and_blocks() {
        let mut tables = pool(8);
        let mut s2 = Stage2::new(TablePool::new(&mut tables, POOL_BASE)).unwrap();
        let start = 0x4400_1000;
        let end = start + 5 * MIB;
        s2.map(start, 5 * MIB, S2Attrs::RAM).unwrap();
        let stats = s2.stats();
        // 511 pages up to 0x4420_0000, one block, 257 pages up to 0x4450_1000.
        assert_eq!(stats.pages, 511 + 257);
        assert_eq!(stats.mib_blocks, 1);
        assert_eq!(stats.l3_tables, 2);
        assert_eq!(s2.tables_used(), 2 + 1 + 2);
        let mut ipa = start;
        while ipa < end {
            let (pa, attrs, level) = s2.translate(ipa).unwrap();
            assert_eq!(pa, ipa);
            assert_eq!(attrs, S2Attrs::RAM);
            let in_block = (0x4420_0000..0x4440_0000).contains(&ipa);
            assert_eq!(level, if in_block { 2 } else { 3 }, "{ipa:#x}");
            ipa += 4 * KIB;
        }
        assert_eq!(s2.translate(start - 4 * KIB), None);
        assert_eq!(s2.translate(end), None);
    }

    #[test]
    fn adjacent_ranges_share_tables() {
        let mut tables = pool(8);
        let mut s2 = Stage2::new(TablePool::new(&mut tables, POOL_BASE)).unwrap();
        s2.map(0x4400_0000, 4 * KIB, S2Attrs::RAM).unwrap();
        s2.map(0x4400_1000, 2 * MIB - 4 * KIB, S2Attrs::DEVICE)
            .unwrap();
        assert_eq!(s2.tables_used(), 4);
        assert_eq!(s2.stats().pages, 512);
        assert_eq!(s2.translate(0x4400_0000).unwrap().1, S2Attrs::RAM);
        assert_eq!(s2.translate(0x441F_F000).unwrap().1, S2Attrs::DEVICE);
    }

    #[test]
    fn overlap_is_rejected_and_changes_nothing() {
        let mut tables = pool(8);
        let mut s2 = Stage2::new(TablePool::new(&mut tables, POOL_BASE)).unwrap();
        s2.map(0x4400_0000, 2 * MIB, S2Attrs::RAM).unwrap();
        let used = s2.tables_used();
        // Starts below the block, so the first page would be mapped before the clash.
        let r = s2.map(0x43FF_F000, 8 * KIB, S2Attrs::RAM);
        assert_eq!(r, Err(Stage2Error::Overlap));
        assert_eq!(s2.translate(0x43FF_F000), None);
        assert_eq!(s2.tables_used(), used);
        // Same range twice.
        assert_eq!(
            s2.map(0x4400_0000, 2 * MIB, S2Attrs::RAM),
            Err(Stage2Error::Overlap)
        );
        // A block over an existing page.
        s2.map(0x4600_3000, 4 * KIB, S2Attrs::DEVICE).unwrap();
        assert_eq!(
            s2.map(0x4600_0000, 2 * MIB, S2Attrs::RAM),
            Err(Stage2Error::Overlap)
        );
        // A GiB over an existing 2 MiB block.
        assert_eq!(
            s2.map(0x4000_0000, GIB, S2Attrs::RAM),
            Err(Stage2Error::Overlap)
        );
    }

    #[test]
    fn misaligned_and_out_of_range_are_rejected() {
        let mut tables = pool(8);
        let mut s2 = Stage2::new(TablePool::new(&mut tables, POOL_BASE)).unwrap();
        assert_eq!(
            s2.map(0x4400_0800, 4 * KIB, S2Attrs::RAM),
            Err(Stage2Error::Unaligned)
        );
        assert_eq!(
            s2.map(0x4400_0000, 0x800, S2Attrs::RAM),
            Err(Stage2Error::Unaligned)
        );
        assert_eq!(
            s2.map(IPA_LIMIT - 4 * KIB, 8 * KIB, S2Attrs::RAM),
            Err(Stage2Error::OutOfRange)
        );
        assert_eq!(
            s2.map(IPA_LIMIT, 4 * KIB, S2Attrs::RAM),
            Err(Stage2Error::OutOfRange)
        );
        assert_eq!(
            s2.map(0xFFFF_FFFF_FFFF_F000, 4 * KIB, S2Attrs::RAM),
            Err(Stage2Error::OutOfRange)
        );
        assert_eq!(s2.map(0x4400_0000, 0, S2Attrs::RAM), Ok(()));
        assert_eq!(s2.tables_used(), 2);
        s2.map(IPA_LIMIT - 4 * KIB, 4 * KIB, S2Attrs::RAM).unwrap();
        assert_eq!(s2.translate(IPA_LIMIT - 1).unwrap().0, IPA_LIMIT - 1);
        assert_eq!(s2.translate(IPA_LIMIT), None);
    }

    #[test]
    fn descriptor_bits() {
        let mut tables = pool(8);
        let mut s2 = Stage2::new(TablePool::new(&mut tables, POOL_BASE)).unwrap();
        s2.map(0x0900_0000, 4 * KIB, S2Attrs::DEVICE).unwrap();
        s2.map(0x4400_0000, 2 * MIB, S2Attrs::RAM).unwrap();
        s2.map(0x4600_0000, 4 * KIB, RO_NX).unwrap();

        // Page, Device-nGnRE (0b0001), S2AP=RW, SH=00, AF, XN=0b10.
        let (desc, level) = s2.leaf(0x0900_0000).unwrap();
        assert_eq!(level, 3);
        assert_eq!(desc, 0x0040_0000_0900_04C7);
        assert_eq!(desc & 0b11, 0b11);
        assert_eq!((desc >> 2) & 0b1111, 0b0001);
        assert_eq!((desc >> 6) & 0b11, 0b11);
        assert_eq!((desc >> 8) & 0b11, 0b00);
        assert_eq!((desc >> 10) & 1, 1);
        assert_eq!((desc >> 53) & 0b11, 0b10);

        // Block, normal WB (0b1111), RW, inner shareable, AF, executable.
        let (desc, level) = s2.leaf(0x4400_0000).unwrap();
        assert_eq!(level, 2);
        assert_eq!(desc, 0x4400_07FD);

        // Read-only, not executable.
        let (desc, _) = s2.leaf(0x4600_0000).unwrap();
        assert_eq!((desc >> 6) & 0b11, 0b01);
        assert_eq!((desc >> 53) & 0b11, 0b10);

        // Table descriptors point into the pool.
        let l1 = s2.raw(s2.root, 1);
        assert_eq!(l1 & 0b11, 0b11);
        let l2 = s2.pool.index_of(l1 & OA_MASK).unwrap();
        assert!(l2 >= 2);
    }

    #[test]
    fn attrs_round_trip() {
        for mem in [MemType::Normal, MemType::Device] {
            for bits in 0..8u8 {
                let attrs = S2Attrs {
                    mem,
                    read: bits & 1 != 0,
                    write: bits & 2 != 0,
                    exec: bits & 4 != 0,
                };
                assert_eq!(S2Attrs::from_bits(attrs.bits()), Some(attrs));
            }
        }
        assert_eq!(S2Attrs::from_bits(0b0101 << 2), None);
    }

    #[test]
    fn pool_exhaustion_is_clean() {
        // Root plus one table: a single page needs a level-2 and a level-3 table.
        let mut tables = pool(3);
        let mut s2 = Stage2::new(TablePool::new(&mut tables, POOL_BASE)).unwrap();
        assert_eq!(
            s2.map(0x4400_0000, 4 * KIB, S2Attrs::RAM),
            Err(Stage2Error::PoolExhausted)
        );
        assert_eq!(s2.tables_used(), 2);
        assert_eq!(s2.stats(), Stage2Stats::default());
        // A 2 MiB block needs only the level-2 table.
        s2.map(0x4400_0000, 2 * MIB, S2Attrs::RAM).unwrap();
        assert_eq!(s2.tables_used(), 3);
        assert_eq!(
            s2.map(0x4420_0000, 4 * KIB, S2Attrs::RAM),
            Err(Stage2Error::PoolExhausted)
        );
        assert_eq!(s2.translate(0x4420_0000), None);
    }

    #[test]
    fn protect_splits_blocks_and_keeps_the_rest() {
        let mut tables = pool(8);
        let mut s2 = Stage2::new(TablePool::new(&mut tables, POOL_BASE)).unwrap();
        s2.map(0x4400_0000, 64 * MIB, S2Attrs::RAM).unwrap();
        s2.protect(0x4400_1000, 4 * KIB, RO_NX).unwrap();
        assert_eq!(s2.tables_used(), 4);
        assert_eq!(
            s2.translate(0x4400_0000),
            Some((0x4400_0000, S2Attrs::RAM, 3))
        );
        assert_eq!(s2.translate(0x4400_1000), Some((0x4400_1000, RO_NX, 3)));
        assert_eq!(
            s2.translate(0x4400_2000),
            Some((0x4400_2000, S2Attrs::RAM, 3))
        );
        assert_eq!(
            s2.translate(0x441F_F000),
            Some((0x441F_F000, S2Attrs::RAM, 3))
        );
        assert_eq!(
            s2.translate(0x4420_0000),
            Some((0x4420_0000, S2Attrs::RAM, 2))
        );
        let stats = s2.stats();
        assert_eq!((stats.mib_blocks, stats.pages), (31, 512));

        // A whole block keeps its size.
        s2.protect(0x4600_0000, 2 * MIB, RO_NX).unwrap();
        assert_eq!(s2.translate(0x4610_0000), Some((0x4610_0000, RO_NX, 2)));
        assert_eq!(s2.tables_used(), 4);
    }

    #[test]
    fn protect_splits_a_gib_down_to_pages() {
        let mut tables = pool(8);
        let mut s2 = Stage2::new(TablePool::new(&mut tables, POOL_BASE)).unwrap();
        s2.map(0x4000_0000, GIB, S2Attrs::RAM).unwrap();
        s2.protect(0x4060_0000, 4 * KIB, RO_NX).unwrap();
        assert_eq!(s2.tables_used(), 4);
        let stats = s2.stats();
        assert_eq!(
            (stats.gib_blocks, stats.mib_blocks, stats.pages),
            (0, 511, 512)
        );
        assert_eq!(s2.translate(0x4060_0000), Some((0x4060_0000, RO_NX, 3)));
        assert_eq!(
            s2.translate(0x4060_1000),
            Some((0x4060_1000, S2Attrs::RAM, 3))
        );
        assert_eq!(
            s2.translate(0x7FFF_FFFF),
            Some((0x7FFF_FFFF, S2Attrs::RAM, 2))
        );
    }

    #[test]
    fn protect_rejects_unmapped_and_exhaustion_without_changes() {
        let mut tables = pool(3);
        let mut s2 = Stage2::new(TablePool::new(&mut tables, POOL_BASE)).unwrap();
        s2.map(0x4400_0000, 2 * MIB, S2Attrs::RAM).unwrap();
        // Runs past the mapping: nothing changes, even the mapped part.
        assert_eq!(
            s2.protect(0x4400_0000, 4 * MIB, RO_NX),
            Err(Stage2Error::NotMapped)
        );
        assert_eq!(s2.translate(0x4400_0000).unwrap().1, S2Attrs::RAM);
        // Splitting needs a level-3 table the pool lacks.
        assert_eq!(
            s2.protect(0x4400_0000, 4 * KIB, RO_NX),
            Err(Stage2Error::PoolExhausted)
        );
        assert_eq!(
            s2.translate(0x4400_0000),
            Some((0x4400_0000, S2Attrs::RAM, 2))
        );
        assert_eq!(
            s2.protect(0x4400_0000, 0x800, RO_NX),
            Err(Stage2Error::Unaligned)
        );
    }

    #[test]
    fn fresh_table_counts() {
        // One page inside an empty GiB: a level-2 and a level-3 table.
        assert_eq!(fresh_tables(1, 0x4400_0000, 0x4400_1000), 2);
        // 2 MiB-aligned piece of a GiB: only the level-2 table.
        assert_eq!(fresh_tables(1, 0x4400_0000, 0x4440_0000), 1);
        // Ragged at both ends within one GiB: level-2 plus two level-3 tables.
        assert_eq!(fresh_tables(1, 0x4400_1000, 0x4450_1000), 3);
        // A partial 2 MiB entry: one level-3 table.
        assert_eq!(fresh_tables(2, 0x4400_1000, 0x4400_3000), 1);
    }

    #[test]
    fn write_watch_of_kernel_text_splits_only_the_edge_blocks() {
        // Linux's partition and an Image whose text + rodata start and end mid-block.
        let mut tables = pool(16);
        let (before, used, root) = {
            let mut s2 = Stage2::new(TablePool::new(&mut tables, POOL_BASE)).unwrap();
            s2.map(0x4800_0000, 0x7000_0000, S2Attrs::RAM).unwrap();
            (s2.stats(), s2.tables_used(), s2.root_index())
        };
        // Later, from the DSM: reopen the same tree and write-protect the range.
        let mut s2 = Stage2::reopen(TablePool::resume(&mut tables, POOL_BASE, used), root);
        assert_eq!(s2.stats(), before, "reopening keeps the tree");
        let ro = S2Attrs {
            write: false,
            ..S2Attrs::RAM
        };
        let (start, end) = (0x4821_0000, 0x4990_3000);
        let mut flushed = Vec::new();
        s2.protect_live(start, end - start, ro, &mut |base| flushed.push(base))
            .unwrap();
        assert_eq!(
            flushed,
            [0x4820_0000, 0x4980_0000],
            "each split block broken first"
        );
        let after = s2.stats();
        // Two 2 MiB blocks split into pages; the 10 whole ones in between stay blocks.
        assert_eq!(after.l3_tables, before.l3_tables + 2);
        assert_eq!(after.mib_blocks, before.mib_blocks - 2);
        assert_eq!(after.pages, before.pages + 2 * 512);
        assert_eq!(s2.tables_used(), used + 2);
        for (ipa, writable) in [
            (start - 0x1000, true),
            (start, false),
            (0x4880_0000, false),
            (end - 0x1000, false),
            (end, true),
        ] {
            let (pa, attrs, _) = s2.translate(ipa).unwrap();
            assert_eq!(
                (pa, attrs.write, attrs.read, attrs.exec),
                (ipa, writable, true, true)
            );
        }
        // Lifting the watch makes it writable again without new tables.
        s2.protect(start, end - start, S2Attrs::RAM).unwrap();
        assert_eq!(s2.tables_used(), used + 2);
        assert!(s2.translate(start).unwrap().1.write);
    }

    mod demo {
        include!("../../../board/tests/golden/demo.rs");
    }

    /// The shipped demo's stage 2, built as spumone builds it: no partition reaches a byte of
    /// Linux's pristine copy (every 4 KiB page of it translates to nothing), nor spumone's
    /// own region, while its RAM does translate.
    #[test]
    fn no_partition_maps_the_reset_copy_or_the_hypervisor() {
        let copy = demo::LINUX[0].reset_copy.expect("demo keeps a reset copy");
        let hv = demo::CONFIG.hypervisor_ram;
        for partition in demo::CONFIG.partitions {
            let mut tables = pool(64);
            let mut s2 = Stage2::new(TablePool::new(&mut tables, POOL_BASE)).unwrap();
            map_partition(&mut s2, partition).unwrap();
            for range in [copy, hv] {
                for page in (range.base..range.end()).step_by(PAGE_SIZE as usize) {
                    assert_eq!(
                        s2.translate(page),
                        None,
                        "{} maps {page:#x}",
                        partition.name
                    );
                }
            }
            for r in partition.ram {
                assert!(s2.translate(r.base).is_some());
                assert!(s2.translate(r.end() - 1).is_some());
            }
        }
    }
}
