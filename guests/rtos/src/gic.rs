//! GICv3 facts and register encodings the arch layer programs (no register access here).

/// Distributor base on QEMU `virt` (64 KiB).
pub const GICD_BASE: u64 = 0x0800_0000;
pub const GICD_SIZE: u64 = 0x1_0000;
/// First redistributor; each one is an RD frame and an SGI frame, 64 KiB apiece.
pub const GICR_BASE: u64 = 0x080A_0000;
pub const GICR_REGION_SIZE: u64 = 0xF6_0000;
pub const GICR_STRIDE: u64 = 0x2_0000;
/// Frames to look at before giving up (the region holds 123).
pub const GICR_MAX_FRAMES: u64 = GICR_REGION_SIZE / GICR_STRIDE;

pub const GICD_CTLR: u64 = 0x0000;
/// `GICD_CTLR.RWP`: a write is still taking effect.
pub const GICD_CTLR_RWP: u32 = 1 << 31;
/// `ARE_NS` and `EnableGrp1NS` (bits 4 and 1; the same bits in the single-security view).
pub const GICD_CTLR_ENABLE: u32 = (1 << 4) | (1 << 1);

pub const GICR_TYPER: u64 = 0x0008;
pub const GICR_WAKER: u64 = 0x0014;
pub const GICR_WAKER_PROCESSOR_SLEEP: u32 = 1 << 1;
pub const GICR_WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;
/// The SGI/PPI frame follows the RD frame.
pub const GICR_SGI_FRAME: u64 = 0x1_0000;
pub const GICR_IGROUPR0: u64 = 0x0080;
pub const GICR_ISENABLER0: u64 = 0x0100;
pub const GICR_ICENABLER0: u64 = 0x0180;
pub const GICR_IPRIORITYR: u64 = 0x0400;

/// The EL1 virtual timer's PPI.
pub const INTID_VTIMER: u32 = 27;
/// `ICC_IAR1_EL1` values from 1020 up mean "nothing to acknowledge".
pub const INTID_SPURIOUS_FIRST: u32 = 1020;
/// `ICC_SRE_EL1.SRE`: use the system register interface.
pub const ICC_SRE_SRE: u64 = 1 << 0;
/// `ICC_CTLR_EL1.EOImode`: 0 means EOIR both drops priority and deactivates.
pub const ICC_CTLR_EOIMODE: u64 = 1 << 1;
/// Let every priority through the CPU interface.
pub const ICC_PMR_ALL: u64 = 0xff;

/// The affinity of `MPIDR_EL1` in the layout of `GICR_TYPER[63:32]` (Aff3.Aff2.Aff1.Aff0).
pub const fn mpidr_affinity(mpidr: u64) -> u32 {
    let aff0_2 = mpidr & 0xff_ffff;
    let aff3 = (mpidr >> 32) & 0xff;
    (aff0_2 | (aff3 << 24)) as u32
}

/// `GICR_TYPER.Affinity_Value`.
pub const fn typer_affinity(typer: u64) -> u32 {
    (typer >> 32) as u32
}

/// `GICR_TYPER.Last`: the last redistributor of the region.
pub const fn typer_is_last(typer: u64) -> bool {
    typer & (1 << 4) != 0
}

/// Finds the frame index whose `GICR_TYPER` (read by `typer(index)`) carries `affinity`.
pub fn find_redistributor(affinity: u32, mut typer: impl FnMut(u64) -> u64) -> Option<u64> {
    for index in 0..GICR_MAX_FRAMES {
        let value = typer(index);
        if typer_affinity(value) == affinity {
            return Some(index);
        }
        if typer_is_last(value) {
            break;
        }
    }
    None
}

/// The 32-bit word of `GICR_IPRIORITYR`/`GICD_IPRIORITYR` holding `intid`, as (byte offset
/// of the word, `old` with the byte for `intid` replaced by `priority`).
pub const fn priority_word(intid: u32, old: u32, priority: u8) -> (u64, u32) {
    let shift = (intid % 4) * 8;
    let new = (old & !(0xff << shift)) | ((priority as u32) << shift);
    (GICR_IPRIORITYR + (intid / 4 * 4) as u64, new)
}

/// The interrupt id in an `ICC_IAR1_EL1` value.
pub const fn iar_intid(iar: u64) -> u32 {
    (iar & 0xff_ffff) as u32
}

pub const fn is_spurious(intid: u32) -> bool {
    intid >= INTID_SPURIOUS_FIRST && intid <= 1023
}

/// The bit for a private interrupt (SGI/PPI, `intid < 32`) in the `*R0` registers.
pub const fn private_bit(intid: u32) -> u32 {
    1 << (intid % 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mpidr_affinity_moves_aff3_next_to_aff2() {
        assert_eq!(mpidr_affinity(0x8000_0000), 0);
        assert_eq!(mpidr_affinity(0x8000_0003), 3);
        assert_eq!(mpidr_affinity(0x0000_0012_0080_0103), 0x1280_0103);
    }

    #[test]
    fn typer_fields() {
        let typer = (0x0000_0102u64 << 32) | (1 << 4) | (5 << 8);
        assert_eq!(typer_affinity(typer), 0x102);
        assert!(typer_is_last(typer));
        assert!(!typer_is_last(typer & !(1 << 4)));
    }

    #[test]
    fn redistributor_walk_matches_affinity_and_stops_at_last() {
        // Four frames for affinities 0..3, the last one flagged.
        let frames = |i: u64| (i << 32) | if i == 3 { 1 << 4 } else { 0 };
        assert_eq!(find_redistributor(0, frames), Some(0));
        assert_eq!(find_redistributor(2, frames), Some(2));
        assert_eq!(find_redistributor(3, frames), Some(3));
        let mut reads = 0;
        let found = find_redistributor(7, |i| {
            reads += 1;
            frames(i)
        });
        assert_eq!(found, None);
        assert_eq!(reads, 4, "the walk must stop at the Last frame");
    }

    #[test]
    fn redistributor_walk_is_bounded_without_last() {
        let mut reads = 0;
        let found = find_redistributor(0xdead, |_| {
            reads += 1;
            0
        });
        assert_eq!(found, None);
        assert_eq!(reads, GICR_MAX_FRAMES);
    }

    #[test]
    fn priority_word_replaces_one_byte() {
        assert_eq!(priority_word(27, 0xa0a0_a0a0, 0x10), (0x418, 0x10a0_a0a0));
        assert_eq!(priority_word(24, 0xffff_ffff, 0x20), (0x418, 0xffff_ff20));
        assert_eq!(priority_word(0, 0, 0xf0), (0x400, 0xf0));
        assert_eq!(priority_word(33, 0, 0x80), (0x420, 0x8000));
    }

    #[test]
    fn iar_and_spurious() {
        assert_eq!(iar_intid(0xff00_0000_001b), 27);
        assert!(is_spurious(1023));
        assert!(is_spurious(1020));
        assert!(!is_spurious(27));
        assert!(!is_spurious(1019));
        assert_eq!(private_bit(INTID_VTIMER), 0x0800_0000);
    }

    #[test]
    fn ctlr_enable_bits() {
        assert_eq!(GICD_CTLR_ENABLE, 0x12);
    }
}
