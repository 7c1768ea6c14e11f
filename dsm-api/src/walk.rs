//! A stage-1 page-table walker for the guest's EL1&0 regime: 4K granule, up to 48-bit VA and
//! OA, table, block (1G/2M) and page descriptors.
//!
//! The tables are guest data, so they may be malicious: a walk reads at most one descriptor
//! per level (four at most) and levels only go down, so no table can make it loop; a reverse
//! search over many entries is bounded by a descriptor budget. Every descriptor read goes
//! through the caller's reader, which refuses addresses outside guest RAM.

use core::fmt;

pub const PAGE_SIZE: u64 = 4096;
const PAGE_SHIFT: u32 = 12;
/// Bits each 4K-granule level resolves.
const LEVEL_BITS: u32 = 9;
/// Output-address bits [47:12] of a descriptor.
const OA_MASK: u64 = 0x0000_ffff_ffff_f000;

/// Descriptor bits checkers look at.
pub const DESC_AP_RO: u64 = 1 << 7;
pub const DESC_AF: u64 = 1 << 10;
pub const DESC_PXN: u64 = 1 << 53;
pub const DESC_UXN: u64 = 1 << 54;

/// The registers that define the EL1&0 stage-1 regime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stage1Regs {
    pub ttbr0: u64,
    pub ttbr1: u64,
    pub tcr: u64,
}

/// The result of a translation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Translation {
    pub pa: u64,
    /// Level of the leaf descriptor: 1 (1G block), 2 (2M block) or 3 (4K page).
    pub level: u8,
    /// Size of the block or page.
    pub size: u64,
    /// The leaf descriptor (attributes and permissions).
    pub desc: u64,
}

impl Translation {
    /// Whether EL1 can write through this mapping (AP[2] clear; table-level APTable is not
    /// folded in).
    pub fn el1_writable(&self) -> bool {
        self.desc & DESC_AP_RO == 0
    }

    /// Whether EL1 can execute from this mapping (PXN clear).
    pub fn el1_executable(&self) -> bool {
        self.desc & DESC_PXN == 0
    }
}

/// Why a walk failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalkError {
    /// The VA lies in neither the TTBR0 nor the TTBR1 range that TCR defines.
    VaOutOfRange { va: u64 },
    /// TCR.EPDx disables walks for this half.
    WalkDisabled { va: u64 },
    /// TCR selects a granule other than 4K.
    UnsupportedGranule { tcr: u64 },
    /// TCR.TxSZ is outside 16..=39 (48-bit down to 25-bit regions).
    BadRegionSize { txsz: u8 },
    /// An invalid descriptor: nothing is mapped there.
    NotMapped { va: u64, level: u8 },
    /// A descriptor of a reserved type for its level, or an address beyond 48 bits.
    BadDescriptor { level: u8, desc: u64 },
    /// A table or descriptor address outside guest RAM.
    OutsideRam { pa: u64 },
    /// A search read more descriptors than its budget.
    TooManySteps,
}

impl fmt::Display for WalkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WalkError::VaOutOfRange { va } => write!(f, "VA {va:#x} outside TTBR0/TTBR1 ranges"),
            WalkError::WalkDisabled { va } => write!(f, "walks disabled for VA {va:#x}"),
            WalkError::UnsupportedGranule { tcr } => write!(f, "granule not 4K (TCR {tcr:#x})"),
            WalkError::BadRegionSize { txsz } => write!(f, "unsupported TxSZ {txsz}"),
            WalkError::NotMapped { va, level } => {
                write!(f, "VA {va:#x} not mapped (level {level})")
            }
            WalkError::BadDescriptor { level, desc } => {
                write!(f, "bad level-{level} descriptor {desc:#x}")
            }
            WalkError::OutsideRam { pa } => write!(f, "table at PA {pa:#x} outside guest RAM"),
            WalkError::TooManySteps => write!(f, "too many steps"),
        }
    }
}

/// Reads one descriptor at a PA; must fail with [`WalkError::OutsideRam`] outside guest RAM.
pub type ReadDesc<'a> = dyn FnMut(u64) -> Result<u64, WalkError> + 'a;

/// One half of the address space, as TCR and a TTBR define it.
#[derive(Debug, Clone, Copy)]
struct Region {
    /// Table base (PA), aligned to the first table's size.
    base: u64,
    /// VA bits of the region (64 - TxSZ).
    bits: u32,
    /// First VA of the region.
    va_start: u64,
    start_level: u8,
}

fn region(regs: &Stage1Regs, upper: bool) -> Result<Region, WalkError> {
    let tcr = regs.tcr;
    let (txsz, tg_4k, ttbr) = if upper {
        // TG1: 0b10 is 4K.
        ((tcr >> 16) & 0x3f, (tcr >> 30) & 3 == 0b10, regs.ttbr1)
    } else {
        // TG0: 0b00 is 4K.
        (tcr & 0x3f, (tcr >> 14) & 3 == 0b00, regs.ttbr0)
    };
    if !tg_4k {
        return Err(WalkError::UnsupportedGranule { tcr });
    }
    if !(16..=39).contains(&txsz) {
        return Err(WalkError::BadRegionSize { txsz: txsz as u8 });
    }
    let bits = 64 - txsz as u32;
    let start_level = 3 - ((bits - PAGE_SHIFT - 1) / LEVEL_BITS) as u8;
    let first_width = bits - level_shift(start_level);
    // The first table may be smaller than a page; BADDR is aligned to its size.
    let table_bytes = 8u64 << first_width;
    // BADDR is bits [47:1]; bit 0 is CnP, bits [63:48] the ASID.
    let base = ttbr & 0x0000_ffff_ffff_fffe & !(table_bytes - 1);
    let va_start = if upper { u64::MAX << bits } else { 0 };
    Ok(Region {
        base,
        bits,
        va_start,
        start_level,
    })
}

/// VA bit where the index of `level` starts.
fn level_shift(level: u8) -> u32 {
    PAGE_SHIFT + LEVEL_BITS * (3 - level as u32)
}

/// Picks the half for `va` and checks it is inside that half's range. With TBI the top byte
/// is ignored (replaced by copies of bit 55) as the hardware does for data accesses.
fn select(regs: &Stage1Regs, va: u64) -> Result<(Region, u64), WalkError> {
    let upper = (va >> 55) & 1 == 1;
    let tbi = if upper {
        (regs.tcr >> 38) & 1
    } else {
        (regs.tcr >> 37) & 1
    };
    let eff = if tbi == 1 {
        ((va << 8) as i64 >> 8) as u64
    } else {
        va
    };
    let r = region(regs, upper)?;
    let top = eff >> r.bits;
    let in_range = if upper {
        top == u64::MAX >> r.bits
    } else {
        top == 0
    };
    if !in_range {
        return Err(WalkError::VaOutOfRange { va });
    }
    let epd = if upper {
        (regs.tcr >> 23) & 1
    } else {
        (regs.tcr >> 7) & 1
    };
    if epd == 1 {
        return Err(WalkError::WalkDisabled { va });
    }
    Ok((r, eff))
}

/// What one descriptor means at its level.
enum Desc {
    Invalid,
    Table(u64),
    Leaf { oa: u64, size: u64 },
}

fn decode(level: u8, desc: u64) -> Result<Desc, WalkError> {
    match (desc & 3, level) {
        (0 | 2, _) => Ok(Desc::Invalid),
        (3, 0..=2) => {
            // Table: next-level address bits [47:12]; [51:48] must be zero with 48-bit OA.
            if (desc >> 48) & 0xf != 0 {
                return Err(WalkError::BadDescriptor { level, desc });
            }
            Ok(Desc::Table(desc & OA_MASK))
        }
        (3, 3) => Ok(Desc::Leaf {
            oa: desc & OA_MASK,
            size: PAGE_SIZE,
        }),
        (1, 1 | 2) => {
            let size = 1u64 << level_shift(level);
            Ok(Desc::Leaf {
                oa: desc & OA_MASK & !(size - 1),
                size,
            })
        }
        // Level-0 blocks need 52-bit addressing; level-3 type 0b01 is reserved.
        _ => Err(WalkError::BadDescriptor { level, desc }),
    }
}

/// Translates `va` through the guest's tables. At most four descriptor reads.
pub fn translate(
    regs: &Stage1Regs,
    va: u64,
    read: &mut ReadDesc,
) -> Result<Translation, WalkError> {
    let (r, eff) = select(regs, va)?;
    let mut table = r.base;
    for level in r.start_level..=3 {
        let shift = level_shift(level);
        let width = if level == r.start_level {
            r.bits - shift
        } else {
            LEVEL_BITS
        };
        let idx = (eff >> shift) & ((1u64 << width) - 1);
        let desc = read(table + idx * 8)?;
        match decode(level, desc)? {
            Desc::Invalid => return Err(WalkError::NotMapped { va, level }),
            Desc::Table(next) => table = next,
            Desc::Leaf { oa, size } => {
                return Ok(Translation {
                    pa: oa | (eff & (size - 1)),
                    level,
                    size,
                    desc,
                })
            }
        }
    }
    // Level 3 always ends in a leaf, an invalid or a bad descriptor.
    Err(WalkError::NotMapped { va, level: 3 })
}

/// Finds the lowest VA in `[lo, hi)` of the TTBR1 half that maps `target_pa`, reading at most
/// `max_descriptors` descriptors. Invalid, reserved and out-of-RAM entries map nothing and
/// are skipped, as the hardware would fault on them.
pub fn find_upper_va(
    regs: &Stage1Regs,
    lo: u64,
    hi: u64,
    target_pa: u64,
    max_descriptors: u64,
    read: &mut ReadDesc,
) -> Result<Option<u64>, WalkError> {
    let r = region(regs, true)?;
    if (regs.tcr >> 23) & 1 == 1 {
        return Err(WalkError::WalkDisabled { va: lo });
    }
    let mut s = Search {
        lo,
        hi,
        target: target_pa,
        left: max_descriptors,
        read,
    };
    let width = r.bits - level_shift(r.start_level);
    s.table(r.base, r.start_level, r.va_start, 1u64 << width)
}

struct Search<'a, 'b> {
    lo: u64,
    hi: u64,
    target: u64,
    left: u64,
    read: &'a mut ReadDesc<'b>,
}

impl Search<'_, '_> {
    /// Depth is at most four: each call goes one level down.
    fn table(
        &mut self,
        base: u64,
        level: u8,
        va0: u64,
        entries: u64,
    ) -> Result<Option<u64>, WalkError> {
        let span = 1u64 << level_shift(level);
        for i in 0..entries {
            let va = va0.wrapping_add(i * span);
            let last = va.wrapping_add(span - 1);
            if last < self.lo || va >= self.hi {
                continue;
            }
            if self.left == 0 {
                return Err(WalkError::TooManySteps);
            }
            self.left -= 1;
            let desc = match (self.read)(base + i * 8) {
                Ok(d) => d,
                Err(WalkError::OutsideRam { .. }) => continue,
                Err(e) => return Err(e),
            };
            match decode(level, desc) {
                Ok(Desc::Table(next)) if level < 3 => {
                    if let Some(found) = self.table(next, level + 1, va, 1 << LEVEL_BITS)? {
                        return Ok(Some(found));
                    }
                }
                Ok(Desc::Leaf { oa, size }) if self.target >= oa && self.target - oa < size => {
                    let hit = va + (self.target - oa);
                    if hit >= self.lo && hit < self.hi {
                        return Ok(Some(hit));
                    }
                }
                _ => {}
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::collections::BTreeMap;

    const RAM: core::ops::Range<u64> = 0x4000_0000..0x4100_0000;
    /// 48-bit TTBR0/TTBR1, 4K granules.
    const TCR48: u64 = 16 | (16 << 16) | (0b10 << 30);

    /// Sparse guest RAM: unset words read as zero, addresses outside `RAM` fail.
    #[derive(Default)]
    struct Mem {
        words: BTreeMap<u64, u64>,
        reads: Cell<u64>,
    }

    impl Mem {
        fn set(&mut self, pa: u64, v: u64) {
            self.words.insert(pa, v);
        }
        fn read(&self, pa: u64) -> Result<u64, WalkError> {
            self.reads.set(self.reads.get() + 1);
            if !RAM.contains(&pa) || !pa.is_multiple_of(8) {
                return Err(WalkError::OutsideRam { pa });
            }
            Ok(*self.words.get(&pa).unwrap_or(&0))
        }
        fn translate(&self, regs: &Stage1Regs, va: u64) -> Result<Translation, WalkError> {
            translate(regs, va, &mut |pa| self.read(pa))
        }
    }

    fn regs(ttbr0: u64, ttbr1: u64, tcr: u64) -> Stage1Regs {
        Stage1Regs { ttbr0, ttbr1, tcr }
    }

    const L0: u64 = 0x4000_0000;
    const L1: u64 = 0x4000_1000;
    const L2: u64 = 0x4000_2000;
    const L3: u64 = 0x4000_3000;

    /// A 4-level chain for `va` ending in a 4K page at `pa`.
    fn chain(m: &mut Mem, va: u64, pa: u64, leaf_attrs: u64) {
        m.set(L0 + ((va >> 39) & 0x1ff) * 8, L1 | 3);
        m.set(L1 + ((va >> 30) & 0x1ff) * 8, L2 | 3);
        m.set(L2 + ((va >> 21) & 0x1ff) * 8, L3 | 3);
        m.set(L3 + ((va >> 12) & 0x1ff) * 8, pa | leaf_attrs | 3);
    }

    #[test]
    fn page_block_and_halves() {
        let mut m = Mem::default();
        let va = 0xffff_8000_1234_5678;
        chain(&mut m, va, 0x4080_0000, DESC_AF | DESC_AP_RO);
        let r = regs(0, L0 | (7 << 48), TCR48);
        let t = m.translate(&r, va).unwrap();
        assert_eq!(t.pa, 0x4080_0678);
        assert_eq!((t.level, t.size), (3, PAGE_SIZE));
        assert!(!t.el1_writable() && t.el1_executable());

        // 2M block at level 2 and 1G block at level 1, through TTBR0.
        let mut m = Mem::default();
        m.set(L0, L1 | 3);
        m.set(L1 + 8, 0x8000_0000 | 1); // 1G at VA 0x4000_0000
        m.set(L1, L2 | 3);
        m.set(L2 + 3 * 8, 0x4060_0000 | DESC_PXN | 1); // 2M at VA 0x60_0000
        let r = regs(L0, 0, TCR48);
        let t = m.translate(&r, 0x4abc_def0).unwrap();
        assert_eq!((t.pa, t.level, t.size), (0x8abc_def0, 1, 1 << 30));
        let t = m.translate(&r, 0x67_89ab).unwrap();
        assert_eq!((t.pa, t.level), (0x4067_89ab, 2));
        assert!(!t.el1_executable());
    }

    #[test]
    fn smaller_regions_start_lower() {
        // T1SZ = 25: a 39-bit upper half whose walk starts at level 1.
        let mut m = Mem::default();
        let va = 0xffff_ff80_0020_1000u64;
        m.set(L1 + ((va >> 30) & 0x1ff) * 8, L2 | 3);
        m.set(L2 + ((va >> 21) & 0x1ff) * 8, L3 | 3);
        m.set(L3 + ((va >> 12) & 0x1ff) * 8, 0x4050_0000 | 3);
        let r = regs(0, L1, 16 | (25 << 16) | (0b10 << 30));
        assert_eq!(m.translate(&r, va).unwrap().pa, 0x4050_0000);
        assert_eq!(m.reads.get(), 3);
        // Below the 39-bit upper half.
        assert_eq!(
            m.translate(&r, 0xffff_ff00_0000_0000),
            Err(WalkError::VaOutOfRange {
                va: 0xffff_ff00_0000_0000
            })
        );
    }

    #[test]
    fn ranges_tbi_epd_and_granules() {
        let mut m = Mem::default();
        chain(&mut m, 0x1000, 0x4070_0000, 3);
        let r = regs(L0, L0, TCR48);
        // Non-canonical and tagged addresses.
        let bad = 0x0001_0000_0000_1000;
        assert_eq!(
            m.translate(&r, bad),
            Err(WalkError::VaOutOfRange { va: bad })
        );
        let tagged = 0x5a00_0000_0000_1000;
        assert_eq!(
            m.translate(&r, tagged),
            Err(WalkError::VaOutOfRange { va: tagged })
        );
        let tbi0 = regs(L0, L0, TCR48 | (1 << 37));
        assert_eq!(m.translate(&tbi0, tagged).unwrap().pa, 0x4070_0000);
        // EPD0 disables TTBR0 walks.
        let epd0 = regs(L0, L0, TCR48 | (1 << 7));
        assert_eq!(
            m.translate(&epd0, 0x1000),
            Err(WalkError::WalkDisabled { va: 0x1000 })
        );
        // 64K TG0, 16K TG1 and absurd sizes are refused.
        let tg0 = regs(L0, L0, TCR48 | (0b01 << 14));
        assert!(matches!(
            m.translate(&tg0, 0x1000),
            Err(WalkError::UnsupportedGranule { .. })
        ));
        let tg1 = regs(L0, L0, (TCR48 & !(3 << 30)) | (0b01 << 30));
        assert!(matches!(
            m.translate(&tg1, 0xffff_ffff_ffff_f000),
            Err(WalkError::UnsupportedGranule { .. })
        ));
        for txsz in [0u64, 15, 40, 63] {
            let r = regs(L0, L0, (TCR48 & !0x3f) | txsz);
            assert_eq!(
                m.translate(&r, 0),
                Err(WalkError::BadRegionSize { txsz: txsz as u8 })
            );
        }
    }

    #[test]
    fn invalid_and_reserved_descriptors() {
        let r = regs(L0, 0, TCR48);
        let mut m = Mem::default();
        assert_eq!(
            m.translate(&r, 0x1000),
            Err(WalkError::NotMapped {
                va: 0x1000,
                level: 0
            })
        );
        // Level-0 block: reserved with 4K granules and 48-bit OA.
        m.set(L0, 0x4000_0000 | 1);
        assert!(matches!(
            m.translate(&r, 0),
            Err(WalkError::BadDescriptor { level: 0, .. })
        ));
        // Level-3 type 0b01: reserved.
        let mut m = Mem::default();
        chain(&mut m, 0x1000, 0x4070_0000, 0);
        m.set(L3 + 8, 0x4070_0000 | 1);
        assert!(matches!(
            m.translate(&r, 0x1000),
            Err(WalkError::BadDescriptor { level: 3, .. })
        ));
        // A table address beyond 48 bits.
        m.set(L2, (1 << 50) | L3 | 3);
        assert!(matches!(
            m.translate(&r, 0x1000),
            Err(WalkError::BadDescriptor { level: 2, .. })
        ));
        // Type 0b10 is invalid at any level.
        m.set(L2, L3 | 2);
        assert_eq!(
            m.translate(&r, 0x1000),
            Err(WalkError::NotMapped {
                va: 0x1000,
                level: 2
            })
        );
    }

    #[test]
    fn tables_outside_ram_are_refused() {
        let mut m = Mem::default();
        m.set(L0, L1 | 3);
        m.set(L1, 0x9000_0000 | 3); // a level-2 table outside RAM
        let r = regs(L0, 0, TCR48);
        assert_eq!(
            m.translate(&r, 0),
            Err(WalkError::OutsideRam { pa: 0x9000_0000 })
        );
        // A TTBR outside RAM.
        let r = regs(0x1_0000_0000, 0, TCR48);
        assert_eq!(
            m.translate(&r, 0),
            Err(WalkError::OutsideRam { pa: 0x1_0000_0000 })
        );
    }

    #[test]
    fn self_referencing_tables_end_in_four_reads() {
        // Every entry of the root points at the root itself.
        let mut m = Mem::default();
        for i in 0..512 {
            m.set(L0 + i * 8, L0 | 3);
        }
        let r = regs(L0, L0, TCR48);
        // At level 3 the entry reads as a page mapping the table itself: still one read per
        // level, then done.
        let t = m.translate(&r, 0x7fff_ffff_f123).unwrap();
        assert_eq!(t.pa, L0 | 0x123);
        assert_eq!(m.reads.get(), 4);
    }

    #[test]
    fn searches_are_bounded_on_hostile_tables() {
        let mut m = Mem::default();
        for i in 0..512 {
            m.set(L0 + i * 8, L0 | 3);
        }
        let r = regs(0, L0, TCR48);
        // 512^4 paths, none mapping the target: the budget stops it.
        let got = find_upper_va(&r, 0, u64::MAX, 0x4080_0000, 10_000, &mut |pa| m.read(pa));
        assert_eq!(got, Err(WalkError::TooManySteps));
        assert!(m.reads.get() <= 10_000);
    }

    #[test]
    fn random_tables_never_panic() {
        // Every word of 64 pages of table memory is pseudo-random (an LCG), and so are TCR and
        // the VAs: each walk ends in a result or an error within four reads.
        let mut m = Mem::default();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            x
        };
        for i in 0..64 * 512 {
            // Keep half the words' addresses inside the table area so walks go deep.
            let w = next();
            let w = if w & 1 == 0 {
                (w & 0xffff_0000_0000_0fff) | (L0 + (w >> 20) % (64 << 12))
            } else {
                w
            };
            m.set(L0 + 8 * i, w);
        }
        for _ in 0..20_000 {
            let r = regs(L0 + (next() % 64) * 4096, L0 + (next() % 64) * 4096, next());
            let before = m.reads.get();
            let _ = m.translate(&r, next());
            assert!(m.reads.get() - before <= 4);
        }
        let r = regs(0, L0, TCR48);
        let got = find_upper_va(&r, 0, u64::MAX, 0x4080_0000, 50_000, &mut |pa| m.read(pa));
        assert!(matches!(got, Err(WalkError::TooManySteps) | Ok(_)));
        assert!(m.reads.get() < 20_000 * 4 + 50_001);
    }

    #[test]
    fn search_finds_the_lowest_va_in_the_window() {
        let mut m = Mem::default();
        let target = 0x4080_0000;
        // Linear-map alias (below the window) and the image mapping (inside).
        chain(&mut m, 0xffff_0000_0080_0000, target, 3);
        chain(&mut m, 0xffff_9000_0000_0000, target, 3);
        // Entries outside RAM or reserved on the way are skipped, not fatal.
        m.set(L0 + 300 * 8, 0x9000_0000 | 3);
        let r = regs(0, L0, TCR48);
        let win = 0xffff_8000_0000_0000;
        let got = find_upper_va(&r, win, u64::MAX, target + 0x10, 1 << 16, &mut |pa| {
            m.read(pa)
        });
        assert_eq!(got, Ok(Some(0xffff_9000_0000_0010)));
        let none = find_upper_va(&r, win, u64::MAX, 0x4090_0000, 1 << 16, &mut |pa| {
            m.read(pa)
        });
        assert_eq!(none, Ok(None));
    }
}
