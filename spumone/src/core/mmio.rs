//! MMIO dispatch: which emulated device owns a faulting IPA, and what the access was.
//!
//! A guest access to an unmapped IPA traps as a stage-2 data abort. [`access_from_abort`]
//! turns its syndrome into an [`MmioAccess`], an [`MmioTable`] finds the handler, and
//! [`load_value`] shapes a read result the way the load instruction would have.

use core::ops::Range;

use super::esr::DataAbort;

/// Why a region cannot be registered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmioError {
    /// The range is empty.
    Empty,
    /// The range overlaps a registered one.
    Overlap,
    /// The table has no free slot.
    Full,
}

#[derive(Clone, Copy, Debug)]
struct Region<H> {
    base: u64,
    end: u64,
    handler: H,
}

/// A fixed-capacity map from IPA ranges to handlers of type `H`, at most `N` regions.
#[derive(Clone, Debug)]
pub struct MmioTable<H: Copy, const N: usize> {
    regions: [Option<Region<H>>; N],
    len: usize,
}

impl<H: Copy, const N: usize> Default for MmioTable<H, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<H: Copy, const N: usize> MmioTable<H, N> {
    /// An empty table.
    pub const fn new() -> Self {
        Self {
            regions: [None; N],
            len: 0,
        }
    }

    /// Number of registered regions.
    pub const fn len(&self) -> usize {
        self.len
    }

    /// Whether no region is registered.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Routes accesses to `range` to `handler`.
    pub fn register(&mut self, range: Range<u64>, handler: H) -> Result<(), MmioError> {
        if range.is_empty() {
            return Err(MmioError::Empty);
        }
        let overlaps = self
            .iter()
            .any(|region| region.base < range.end && range.start < region.end);
        if overlaps {
            return Err(MmioError::Overlap);
        }
        let slot = self.regions.get_mut(self.len).ok_or(MmioError::Full)?;
        *slot = Some(Region {
            base: range.start,
            end: range.end,
            handler,
        });
        self.len += 1;
        Ok(())
    }

    /// The handler owning `ipa` and the offset of `ipa` in its region.
    pub fn lookup(&self, ipa: u64) -> Option<(H, u64)> {
        self.iter()
            .find(|region| (region.base..region.end).contains(&ipa))
            .map(|region| (region.handler, ipa - region.base))
    }

    fn iter(&self) -> impl Iterator<Item = &Region<H>> {
        self.regions.iter().take(self.len).flatten()
    }
}

/// One trapped MMIO access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmioAccess {
    /// The faulting intermediate physical address.
    pub ipa: u64,
    /// Access size in bytes (1, 2, 4 or 8).
    pub size: u8,
    /// The access is a store.
    pub write: bool,
    /// For a store, the value written (truncated to `size`); 0 for a load.
    pub value: u64,
    /// The transfer register, 0..=31 (31 is xzr: loads into it are discarded).
    pub reg: u8,
    /// A load sign-extends its value.
    pub sign_extend: bool,
    /// The transfer register is 64-bit (else a W register).
    pub sf: bool,
}

/// Why a data abort cannot be emulated as an MMIO access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmioDecodeError {
    /// No instruction syndrome (ISV = 0): the access size and register are unknown.
    NoSyndrome,
    /// The fault hit a stage-1 table walk, not a device access.
    StageOneWalk,
    /// A cache maintenance or address translation instruction faulted.
    CacheMaintenance,
}

/// `HPFAR_EL2.FIPA`, bits [43:4], holding IPA bits [51:12].
const HPFAR_FIPA_MASK: u64 = 0x0000_0FFF_FFFF_FFF0;
const PAGE_OFFSET_MASK: u64 = 0xFFF;
const XZR: u8 = 31;

/// The bits an access of `size` bytes carries.
const fn size_mask(size: u8) -> u64 {
    if size >= 8 {
        u64::MAX
    } else {
        (1 << (size as u32 * 8)) - 1
    }
}

/// The faulting IPA of a stage-2 abort: the page from `HPFAR_EL2.FIPA`, the offset from `FAR_EL2`.
pub const fn fault_ipa(hpfar_el2: u64, far_el2: u64) -> u64 {
    ((hpfar_el2 & HPFAR_FIPA_MASK) << 8) | (far_el2 & PAGE_OFFSET_MASK)
}

/// Builds the access from a data abort, `HPFAR_EL2`, `FAR_EL2` and the value of the
/// abort's transfer register (ignored for xzr and for loads).
pub fn access_from_abort(
    abort: &DataAbort,
    hpfar_el2: u64,
    far_el2: u64,
    reg_value: u64,
) -> Result<MmioAccess, MmioDecodeError> {
    if abort.s1ptw {
        return Err(MmioDecodeError::StageOneWalk);
    }
    if abort.cm {
        return Err(MmioDecodeError::CacheMaintenance);
    }
    if !abort.isv {
        return Err(MmioDecodeError::NoSyndrome);
    }
    let ipa = fault_ipa(hpfar_el2, far_el2);
    let value = if abort.wnr && abort.reg != XZR {
        reg_value & size_mask(abort.size)
    } else {
        0
    };
    Ok(MmioAccess {
        ipa,
        size: abort.size,
        write: abort.wnr,
        value,
        reg: abort.reg,
        sign_extend: abort.sign_extend,
        sf: abort.sf,
    })
}

/// The register value a load of `raw` produces: truncated to the access size, sign-extended
/// if asked, and cut to 32 bits for a W register.
pub const fn load_value(access: &MmioAccess, raw: u64) -> u64 {
    let bits = access.size as u32 * 8;
    let mut value = raw & size_mask(access.size);
    if access.sign_extend && bits < 64 {
        let unused = 64 - bits;
        value = (((value << unused) as i64) >> unused) as u64;
    }
    if !access.sf {
        value &= 0xFFFF_FFFF;
    }
    value
}

#[cfg(test)]
mod tests {
    use super::super::esr::{Esr, FaultStatus};
    use super::*;

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Device {
        Gicd,
        Uart,
        Virtio(u8),
    }

    const IL: u64 = 1 << 25;
    const DABT_LOWER: u64 = 0x24 << 26;
    const ISV: u64 = 1 << 24;
    const SF: u64 = 1 << 15;
    const SSE: u64 = 1 << 21;
    const WNR: u64 = 1 << 6;
    const L3_TRANSLATION: u64 = 0x07;

    /// A data abort with syndrome: `sas` is log2(size), `reg` the transfer register.
    fn abort(sas: u64, reg: u64, flags: u64) -> DataAbort {
        Esr(DABT_LOWER | IL | ISV | (sas << 22) | (reg << 16) | flags | L3_TRANSLATION)
            .data_abort()
            .unwrap()
    }

    fn hpfar_for(ipa: u64) -> u64 {
        (ipa >> 12) << 4
    }

    fn table() -> MmioTable<Device, 4> {
        let mut t = MmioTable::new();
        t.register(0x0800_0000..0x0801_0000, Device::Gicd).unwrap();
        t.register(0x0900_0000..0x0900_1000, Device::Uart).unwrap();
        t
    }

    #[test]
    fn lookup_finds_handler_and_offset() {
        let t = table();
        assert_eq!(t.len(), 2);
        assert_eq!(t.lookup(0x0800_0000), Some((Device::Gicd, 0)));
        assert_eq!(t.lookup(0x0800_FFFF), Some((Device::Gicd, 0xFFFF)));
        assert_eq!(t.lookup(0x0900_0018), Some((Device::Uart, 0x18)));
    }

    #[test]
    fn lookup_misses_outside_every_region() {
        let t = table();
        for ipa in [
            0,
            0x07FF_FFFF,
            0x0801_0000,
            0x08FF_FFFF,
            0x0900_1000,
            u64::MAX,
        ] {
            assert_eq!(t.lookup(ipa), None, "{ipa:#x}");
        }
        let empty: MmioTable<Device, 4> = MmioTable::default();
        assert!(empty.is_empty());
        assert_eq!(empty.lookup(0x0800_0000), None);
    }

    #[test]
    fn overlapping_regions_are_rejected() {
        let mut t = table();
        let clashes = [
            0x0800_0000..0x0801_0000, // identical
            0x0800_1000..0x0800_2000, // inside
            0x07F0_0000..0x0810_0000, // around
            0x07FF_F000..0x0800_1000, // across the start
            0x0800_F000..0x0802_0000, // across the end
        ];
        for range in clashes {
            assert_eq!(
                t.register(range.clone(), Device::Virtio(0)),
                Err(MmioError::Overlap),
                "{range:#x?}"
            );
        }
        assert_eq!(t.len(), 2);
        // Touching ends are fine.
        t.register(0x0801_0000..0x0801_0200, Device::Virtio(0))
            .unwrap();
        t.register(0x07FF_FE00..0x0800_0000, Device::Virtio(1))
            .unwrap();
        assert_eq!(t.lookup(0x0801_0000), Some((Device::Virtio(0), 0)));
        assert_eq!(t.lookup(0x07FF_FFFF), Some((Device::Virtio(1), 0x1FF)));
        assert_eq!(t.lookup(0x0800_0000), Some((Device::Gicd, 0)));
    }

    #[test]
    fn full_and_empty_are_rejected() {
        let mut t: MmioTable<u8, 2> = MmioTable::new();
        assert_eq!(t.register(0x1000..0x1000, 0), Err(MmioError::Empty));
        t.register(0x1000..0x2000, 0).unwrap();
        t.register(0x3000..0x4000, 1).unwrap();
        assert_eq!(t.register(0x5000..0x6000, 2), Err(MmioError::Full));
        assert_eq!(t.lookup(0x5000), None);
        assert_eq!(t.lookup(0x3FFF), Some((1, 0xFFF)));
    }

    #[test]
    fn store_word_from_w_register() {
        // `str w1, [x0]` with x0 = a guest VA whose page offset is 0x018.
        let da = abort(0b10, 1, WNR);
        let access = access_from_abort(
            &da,
            hpfar_for(0x0900_0000),
            0xFFFF_0000_1234_5018,
            0xAAAA_BBBB_CCCC_DDDD,
        )
        .unwrap();
        assert_eq!(
            access,
            MmioAccess {
                ipa: 0x0900_0018,
                size: 4,
                write: true,
                value: 0xCCCC_DDDD,
                reg: 1,
                sign_extend: false,
                sf: false,
            }
        );
    }

    #[test]
    fn store_values_are_truncated_to_size() {
        let value = 0x1122_3344_5566_7788;
        for (sas, expected) in [
            (0, 0x88),
            (1, 0x7788),
            (2, 0x5566_7788),
            (3, 0x1122_3344_5566_7788),
        ] {
            let access =
                access_from_abort(&abort(sas, 5, WNR | SF), hpfar_for(0x1000), 0, value).unwrap();
            assert_eq!(access.value, expected, "sas {sas}");
            assert_eq!(access.size, 1 << sas);
        }
        // A store of xzr writes zero whatever the caller passes.
        let access =
            access_from_abort(&abort(3, 31, WNR | SF), hpfar_for(0x1000), 0, value).unwrap();
        assert_eq!(access.value, 0);
        // A load carries no value.
        let access = access_from_abort(&abort(3, 2, SF), hpfar_for(0x1000), 0, value).unwrap();
        assert!(!access.write);
        assert_eq!(access.value, 0);
    }

    #[test]
    fn ipa_comes_from_hpfar_and_far() {
        let da = abort(2, 0, 0);
        // FIPA holds IPA[51:12]; HPFAR bits [3:0] and the NS bit are not address bits.
        let hpfar = (1 << 63) | hpfar_for(0x000F_FFFF_FFFF_F000) | 0xF;
        let access = access_from_abort(&da, hpfar, 0xABC, 0).unwrap();
        assert_eq!(access.ipa, 0x000F_FFFF_FFFF_FABC);
        // Only the page offset of FAR is used.
        let access = access_from_abort(&da, hpfar_for(0x0800_0000), u64::MAX, 0).unwrap();
        assert_eq!(access.ipa, 0x0800_0FFF);
    }

    #[test]
    fn aborts_that_are_not_plain_accesses_are_refused() {
        let no_isv = Esr(0x9200_0046).data_abort().unwrap();
        assert_eq!(no_isv.dfsc, FaultStatus::Translation(2));
        assert_eq!(
            access_from_abort(&no_isv, 0, 0, 0),
            Err(MmioDecodeError::NoSyndrome)
        );
        let walk = abort(2, 0, 1 << 7);
        assert_eq!(
            access_from_abort(&walk, 0, 0, 0),
            Err(MmioDecodeError::StageOneWalk)
        );
        let cmo = abort(2, 0, (1 << 8) | WNR);
        assert_eq!(
            access_from_abort(&cmo, 0, 0, 0),
            Err(MmioDecodeError::CacheMaintenance)
        );
    }

    #[test]
    fn load_values_follow_size_sign_and_width() {
        let load = |sas: u64, flags: u64| {
            access_from_abort(&abort(sas, 3, flags), hpfar_for(0x1000), 0, 0).unwrap()
        };
        let raw = 0xFFFF_FFFF_8765_8180;
        // ldrb w3 / ldrsb w3 / ldrsb x3
        assert_eq!(load_value(&load(0, 0), raw), 0x80);
        assert_eq!(load_value(&load(0, SSE), raw), 0xFFFF_FF80);
        assert_eq!(load_value(&load(0, SSE | SF), raw), 0xFFFF_FFFF_FFFF_FF80);
        // ldrh w3 / ldrsh x3
        assert_eq!(load_value(&load(1, 0), raw), 0x8180);
        assert_eq!(load_value(&load(1, SSE | SF), raw), 0xFFFF_FFFF_FFFF_8180);
        // ldr w3 / ldrsw x3, with a positive value
        assert_eq!(load_value(&load(2, 0), raw), 0x8765_8180);
        assert_eq!(load_value(&load(2, SSE | SF), raw), 0xFFFF_FFFF_8765_8180);
        assert_eq!(load_value(&load(2, SSE | SF), 0x7FFF_FFFF), 0x7FFF_FFFF);
        // ldr x3 passes all bits
        assert_eq!(load_value(&load(3, SF), raw), raw);
        assert_eq!(load_value(&load(3, SF | SSE), raw), raw);
    }
}
