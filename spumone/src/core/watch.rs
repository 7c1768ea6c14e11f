//! Stage-2 write watches (the DSM's event path): which guest-physical ranges are
//! write-protected, and what a trapped store writes.
//!
//! A store to a watched page faults at stage 2 with a permission fault. With a valid syndrome
//! (`ISV`) the ESR gives the register and size; without one (`stp`, or a store with base
//! writeback) the instruction is fetched and decoded here. Either way the result is the bytes
//! the guest meant to write, which the DSM judges and, if legitimate, stores from EL2.

use super::esr::DataAbort;
use super::mmio::fault_ipa;

/// Most watched ranges per partition.
pub const MAX_WATCHES: usize = 8;

/// One register's part of a store: `len` bytes at `ipa`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    pub ipa: u64,
    pub len: u8,
    pub value: u64,
}

/// A decoded store: one part (`str`) or two (`stp`), and the base register's new value when
/// the instruction writes it back (pre- or post-index).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Store {
    pub parts: [Option<Part>; 2],
    pub writeback: Option<(u8, u64)>,
}

impl Store {
    pub fn parts(&self) -> impl Iterator<Item = Part> + '_ {
        self.parts.iter().flatten().copied()
    }
}

/// Why a trapped store could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// A cache maintenance instruction (`dc ivac`), not a store.
    CacheMaintenance,
    /// The stage-1 table walk hit the watched page (a table inside the range).
    TableWalk,
    /// Not a store this decoder knows (atomics, exclusives, SIMD registers).
    Unknown,
    /// The store crosses out of the faulting page.
    CrossesPage,
}

/// A register read as a store's source: 31 is `xzr`.
fn src(regs: &[u64; 31], r: u32) -> u64 {
    regs.get(r as usize).copied().unwrap_or(0)
}

fn truncate(value: u64, len: u8) -> u64 {
    if len >= 8 {
        value
    } else {
        value & ((1u64 << (8 * u32::from(len))) - 1)
    }
}

/// The store from the syndrome, when `ISV` is set.
pub fn from_syndrome(
    abort: &DataAbort,
    hpfar: u64,
    far: u64,
    regs: &[u64; 31],
) -> Result<Option<Store>, DecodeError> {
    if abort.cm {
        return Err(DecodeError::CacheMaintenance);
    }
    if abort.s1ptw {
        return Err(DecodeError::TableWalk);
    }
    if !abort.isv {
        return Ok(None);
    }
    let ipa = fault_ipa(hpfar, far);
    let len = abort.size;
    let value = truncate(src(regs, u32::from(abort.reg)), len);
    Ok(Some(Store {
        parts: [Some(Part { ipa, len, value }), None],
        writeback: None,
    }))
}

fn sext(value: u32, bits: u32) -> i64 {
    (i64::from(value) << (64 - bits)) >> (64 - bits)
}

/// Decodes the store instruction `insn` whose access faulted at `fault_ipa` (HPFAR page and
/// FAR offset): `regs` are x0..x30, `sp` the stack pointer of the faulting EL. Covers
/// `str`/`strb`/`strh` (unsigned offset, unscaled, pre/post-index, register offset) and
/// `stp` of general registers; the address is recomputed from the base register and must
/// land on the faulting page.
pub fn decode(insn: u32, regs: &[u64; 31], sp: u64, fault_ipa: u64) -> Result<Store, DecodeError> {
    let base_reg = (insn >> 5) & 31;
    let base = if base_reg == 31 {
        sp
    } else {
        src(regs, base_reg)
    };
    let rt = insn & 31;
    // (address, size, writeback value)
    let (addr, size, wb, pair) = if insn & 0x3A00_0000 == 0x2800_0000 {
        // Load/store pair (general registers): opc in 31:30, L in 22, mode in 24:23.
        if insn & (1 << 22) != 0 || insn & (1 << 26) != 0 {
            return Err(DecodeError::Unknown);
        }
        let size: u8 = match insn >> 30 {
            0 => 4,
            2 => 8,
            _ => return Err(DecodeError::Unknown),
        };
        let off = sext((insn >> 15) & 0x7F, 7) * i64::from(size);
        let target = base.wrapping_add(off as u64);
        let (addr, wb) = match (insn >> 23) & 3 {
            1 => (base, Some(target)),   // post-index
            2 => (target, None),         // signed offset
            3 => (target, Some(target)), // pre-index
            _ => return Err(DecodeError::Unknown),
        };
        let rt2 = (insn >> 10) & 31;
        (addr, size, wb, Some(rt2))
    } else if insn & 0x3F00_0000 == 0x3900_0000 {
        // Unsigned offset: size in 31:30, opc (22) = 0 for a store.
        if insn & (3 << 22) != 0 {
            return Err(DecodeError::Unknown);
        }
        let size = 1u8 << (insn >> 30);
        let off = u64::from((insn >> 10) & 0xFFF) * u64::from(size);
        (base.wrapping_add(off), size, None, None)
    } else if insn & 0x3F20_0000 == 0x3800_0000 {
        if insn & (3 << 22) != 0 {
            return Err(DecodeError::Unknown);
        }
        let size = 1u8 << (insn >> 30);
        let off = sext((insn >> 12) & 0x1FF, 9) as u64;
        let target = base.wrapping_add(off);
        match (insn >> 10) & 3 {
            0 => (target, size, None, None),       // unscaled (stur)
            1 => (base, size, Some(target), None), // post-index
            3 => (target, size, Some(target), None),
            _ => return Err(DecodeError::Unknown), // unprivileged (sttr): not used on text
        }
    } else if insn & 0x3F20_0C00 == 0x3820_0800 {
        // Register offset: option in 15:13, S in 12.
        if insn & (3 << 22) != 0 {
            return Err(DecodeError::Unknown);
        }
        let size = 1u8 << (insn >> 30);
        let rm = src(regs, (insn >> 16) & 31);
        let option = (insn >> 13) & 7;
        let shift = if insn & (1 << 12) != 0 {
            size.trailing_zeros()
        } else {
            0
        };
        let index = match option {
            0b010 => rm & 0xFFFF_FFFF,           // uxtw
            0b011 | 0b111 => rm,                 // lsl / sxtx
            0b110 => sext(rm as u32, 32) as u64, // sxtw
            _ => return Err(DecodeError::Unknown),
        };
        (base.wrapping_add(index << shift), size, None, None)
    } else {
        return Err(DecodeError::Unknown);
    };
    let total = u64::from(size) * if pair.is_some() { 2 } else { 1 };
    let ipa = (fault_ipa & !0xFFF) | (addr & 0xFFF);
    // The faulting access must be this one: same page offset as the fault, within a page.
    if (addr & 0xFFF) + total > 0x1000 || ipa > fault_ipa || fault_ipa >= ipa + total {
        return Err(DecodeError::CrossesPage);
    }
    let first = Part {
        ipa,
        len: size,
        value: truncate(src(regs, rt), size),
    };
    let second = pair.map(|rt2| Part {
        ipa: ipa + u64::from(size),
        len: size,
        value: truncate(src(regs, rt2), size),
    });
    Ok(Store {
        parts: [Some(first), second],
        writeback: wb.map(|v| (base_reg as u8, v)),
    })
}

/// What a watch traps: stores (its pages read-only at stage 2) or instruction fetches (its
/// pages execute-never at stage 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchKind {
    Write,
    Execute,
}

/// A watched physical range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watch {
    pub id: u32,
    pub base: u64,
    pub size: u64,
    pub kind: WatchKind,
}

/// The watches of one partition. A page carries watches of one kind only, so the stage-2
/// permissions of a page follow from the kind of any watch on it.
#[derive(Debug, Clone, Copy)]
pub struct WatchTable {
    watches: [Option<Watch>; MAX_WATCHES],
    next_id: u32,
}

impl Default for WatchTable {
    fn default() -> Self {
        Self::new()
    }
}

impl WatchTable {
    pub const fn new() -> Self {
        Self {
            watches: [None; MAX_WATCHES],
            next_id: 0,
        }
    }

    /// Adds a watch; `None` when the table is full or a page of the range carries a watch of
    /// the other kind.
    pub fn add(&mut self, base: u64, size: u64, kind: WatchKind) -> Option<Watch> {
        let (page, pages_len) = pages(base, size);
        let other = match kind {
            WatchKind::Write => WatchKind::Execute,
            WatchKind::Execute => WatchKind::Write,
        };
        if self.find(page, pages_len, other).is_some() {
            return None;
        }
        let slot = self.watches.iter_mut().find(|w| w.is_none())?;
        let w = Watch {
            id: self.next_id,
            base,
            size,
            kind,
        };
        self.next_id = self.next_id.wrapping_add(1);
        *slot = Some(w);
        Some(w)
    }

    /// Removes watch `id`; returns it.
    pub fn remove(&mut self, id: u32) -> Option<Watch> {
        let slot = self
            .watches
            .iter_mut()
            .find(|w| w.is_some_and(|w| w.id == id))?;
        slot.take()
    }

    pub fn clear(&mut self) {
        self.watches = [None; MAX_WATCHES];
    }

    pub fn iter(&self) -> impl Iterator<Item = Watch> + '_ {
        self.watches.iter().flatten().copied()
    }

    /// The watch of `kind` holding any byte of `[ipa, ipa + len)`.
    pub fn find(&self, ipa: u64, len: u64, kind: WatchKind) -> Option<Watch> {
        let end = ipa.saturating_add(len.max(1));
        self.iter()
            .find(|w| w.kind == kind && ipa < w.base.saturating_add(w.size) && w.base < end)
    }

    /// Whether the page holding `ipa` is protected for a watch of `kind` (stage 2 protects
    /// whole pages, so an access next to a watched range also traps).
    pub fn page_watched(&self, ipa: u64, kind: WatchKind) -> bool {
        let page = ipa & !0xFFF;
        self.find(page, 0x1000, kind).is_some()
    }
}

/// The pages to protect for `[base, base + size)`: whole 4 KiB pages around it.
pub const fn pages(base: u64, size: u64) -> (u64, u64) {
    let start = base & !0xFFF;
    let end = (base + size + 0xFFF) & !0xFFF;
    (start, end - start)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hvcore::esr::Esr;

    fn regs() -> [u64; 31] {
        let mut r = [0u64; 31];
        for (i, v) in r.iter_mut().enumerate() {
            *v = 0x1111_1111_1111_1111u64.wrapping_mul(i as u64 + 1);
        }
        r
    }

    #[test]
    fn syndrome_gives_register_and_size() {
        // Data abort, ISV, SAS=2 (4 bytes), SRT=1, WnR, permission fault level 3.
        let esr = (0x24u64 << 26) | (1 << 25) | (1 << 24) | (2 << 22) | (1 << 16) | (1 << 6) | 0x0F;
        let abort = Esr(esr).data_abort().unwrap();
        let mut r = regs();
        r[1] = 0xdead_beef_d503_201f;
        let s = from_syndrome(&abort, 0x4820_1000 >> 8, 0xffff_0000_0000_0a24, &r)
            .unwrap()
            .unwrap();
        assert_eq!(
            s.parts[0],
            Some(Part {
                ipa: 0x4820_1a24,
                len: 4,
                value: 0xd503_201f
            })
        );
        assert_eq!(s.parts[1], None);
        let cm = Esr(esr | (1 << 8)).data_abort().unwrap();
        assert_eq!(
            from_syndrome(&cm, 0, 0, &r),
            Err(DecodeError::CacheMaintenance)
        );
        let no_isv = Esr(esr & !(1 << 24)).data_abort().unwrap();
        assert_eq!(from_syndrome(&no_isv, 0, 0, &r), Ok(None));
    }

    #[test]
    fn str_forms_decode() {
        let mut r = regs();
        r[0] = 0xffff_8000_0801_0000; // base
        r[1] = 0x0123_4567_89ab_cdef;
        let fault = 0x4821_0000;
        // str w1, [x0]
        let s = decode(0xb900_0001, &r, 0, fault).unwrap();
        assert_eq!(
            s.parts[0],
            Some(Part {
                ipa: fault,
                len: 4,
                value: 0x89ab_cdef
            })
        );
        // str x1, [x0, #8]: the fault is at the access
        let s = decode(0xf900_0401, &r, 0, fault + 8).unwrap();
        assert_eq!(
            (s.parts[0].unwrap().ipa, s.parts[0].unwrap().len),
            (fault + 8, 8)
        );
        assert_eq!(s.parts[0].unwrap().value, r[1]);
        // strb w1, [x0, #3]
        let s = decode(0x3900_0c01, &r, 0, fault + 3).unwrap();
        assert_eq!(s.parts[0].unwrap().value, 0xef);
        // str x1, [x0], #16 (post-index): writes at x0, x0 += 16
        let s = decode(0xf801_0401, &r, 0, fault).unwrap();
        assert_eq!(s.writeback, Some((0, r[0] + 16)));
        // str x1, [x0, #-8]! (pre-index)
        let s = decode(0xf81f_8c01, &r, 0, fault + 0xFF8).unwrap();
        assert_eq!(
            s.parts[0].unwrap().ipa,
            fault + 0xFF8,
            "x0 - 8 is on the faulting page"
        );
        // stur x1, [x0, #-4]: 8 bytes from offset 0xffc leave the page
        let e = decode(0xf81f_c001, &r, 0, fault + 0xFFC).unwrap_err();
        assert_eq!(e, DecodeError::CrossesPage);
        let mut r2 = r;
        r2[0] += 0x10;
        let s = decode(0xf81f_8c01, &r2, 0, fault + 8).unwrap();
        assert_eq!(s.writeback, Some((0, r2[0] - 8)));
        assert_eq!(s.parts[0].unwrap().ipa, fault + 8);
        // str xzr, [sp, #8]: base 31 is sp, source 31 is zero
        let s = decode(0xf900_07ff, &r, 0x4000, 0x4820_0008).unwrap();
        assert_eq!(s.parts[0].unwrap().value, 0);
        // str w1, [x0, x2, lsl #2]
        r[2] = 3;
        let s = decode(0xb822_7801, &r, 0, fault + 12).unwrap();
        assert_eq!(s.parts[0].unwrap().ipa, fault + 12);
    }

    #[test]
    fn stp_writes_two_parts() {
        let mut r = regs();
        r[0] = 0xffff_8000_0801_0010;
        let fault = 0x4821_0010;
        // stp x1, x2, [x0]
        let s = decode(0xa900_0801, &r, 0, fault).unwrap();
        let parts: Vec<Part> = s.parts().collect();
        assert_eq!(parts.len(), 2);
        assert_eq!((parts[0].ipa, parts[0].value), (fault, r[1]));
        assert_eq!(
            (parts[1].ipa, parts[1].len, parts[1].value),
            (fault + 8, 8, r[2])
        );
        // stp w1, w2, [x0, #-16]! (pre-index, 32-bit)
        let s = decode(0x29be_0801, &r, 0, fault - 16).unwrap();
        assert_eq!(s.writeback, Some((0, r[0] - 16)));
        assert_eq!(s.parts[1].unwrap().ipa, fault - 12);
        assert_eq!(s.parts[1].unwrap().value, r[2] & 0xFFFF_FFFF);
    }

    #[test]
    fn loads_and_others_are_refused() {
        let r = regs();
        // ldr w1, [x0]; ldp x1, x2, [x0]; stxr; nop
        for insn in [0xb940_0001, 0xa940_0801, 0xc800_7c01, 0xd503_201f] {
            assert_eq!(
                decode(insn, &r, 0, 0),
                Err(DecodeError::Unknown),
                "{insn:#x}"
            );
        }
    }

    #[test]
    fn watch_table_finds_overlaps_and_pages() {
        use WatchKind::{Execute, Write};
        let mut t = WatchTable::new();
        let a = t.add(0x4821_0000, 0x1000, Write).unwrap();
        let b = t.add(0x4830_0800, 0x100, Write).unwrap();
        assert_ne!(a.id, b.id);
        assert_eq!(t.find(0x4821_0ffc, 8, Write), Some(a));
        assert_eq!(t.find(0x4821_0ffc, 8, Execute), None, "by kind");
        assert_eq!(t.find(0x4821_1000, 4, Write), None);
        assert_eq!(t.find(0x4830_08fc, 4, Write), Some(b));
        assert!(
            t.page_watched(0x4830_0000, Write),
            "same page as a watched range"
        );
        assert!(!t.page_watched(0x4830_0000, Execute));
        assert!(!t.page_watched(0x4830_1000, Write));
        assert_eq!(t.remove(a.id), Some(a));
        assert_eq!(t.find(0x4821_0000, 4, Write), None);
        for _ in 0..MAX_WATCHES - 1 {
            assert!(t.add(0, 1, Write).is_some());
        }
        assert!(t.add(0, 1, Write).is_none(), "full");
        assert_eq!(pages(0x4830_0800, 0x100), (0x4830_0000, 0x1000));
        assert_eq!(pages(0x4830_0ff0, 0x20), (0x4830_0000, 0x2000));
    }

    #[test]
    fn a_page_carries_one_kind_of_watch() {
        use WatchKind::{Execute, Write};
        let mut t = WatchTable::new();
        let w = t.add(0x4821_0000, 0x10, Write).unwrap();
        // Same page, other kind: refused (the page's permissions would have to be both).
        assert!(t.add(0x4821_0800, 0x10, Execute).is_none());
        assert!(
            t.add(0x4820_f000, 0x1001, Execute).is_none(),
            "reaches into it"
        );
        let x = t.add(0x4821_1000, 0x2000, Execute).unwrap();
        assert_eq!(t.find(0x4821_2ffc, 4, Execute), Some(x));
        assert!(t.page_watched(0x4821_2000, Execute));
        assert!(
            t.add(0x4821_0010, 0x10, Write).is_some(),
            "same kind shares a page"
        );
        t.remove(w.id);
        assert_eq!(
            t.find(0x4821_0014, 4, Write).map(|w| w.base),
            Some(0x4821_0010)
        );
    }
}
