//! Decoding a guest's `ICC_SGI1R_EL1` write into the vCPUs it targets.
//!
//! vCPU n of a partition has the virtual affinity Aff0 = n, Aff1..3 = 0, so only a target list
//! in affinity 0.0.0 (range selector 0) can name a vCPU; anything else is reported and dropped.

/// Most vCPUs one partition may have (one 16-bit target list).
pub const MAX_VCPUS: usize = 16;

/// A decoded SGI request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sgi {
    /// SGI INTID (0..15).
    pub intid: u8,
    /// Bit n set: deliver to vCPU n.
    pub targets: u16,
    /// How many named targets do not exist (beyond the partition's vCPUs, or in another
    /// affinity group or range); the caller reports them.
    pub ignored: u16,
}

impl Sgi {
    /// The target vCPU numbers, lowest first.
    pub fn vcpus(&self) -> impl Iterator<Item = usize> + '_ {
        (0..MAX_VCPUS).filter(move |n| self.targets & (1 << n) != 0)
    }
}

/// Decodes `value` written by vCPU `sender` of a partition with `vcpus` vCPUs.
///
/// IRM = 1 targets every vCPU but the sender; otherwise the target list in
/// Aff3.Aff2.Aff1 with RS selects Aff0 = RS × 16 + bit.
pub fn decode(value: u64, sender: usize, vcpus: usize) -> Sgi {
    let vcpus = vcpus.min(MAX_VCPUS);
    let present: u16 = if vcpus == MAX_VCPUS {
        u16::MAX
    } else {
        (1u16 << vcpus) - 1
    };
    let intid = ((value >> 24) & 0xf) as u8;
    if value & (1 << 40) != 0 {
        let me = if sender < MAX_VCPUS {
            1u16 << sender
        } else {
            0
        };
        return Sgi {
            intid,
            targets: present & !me,
            ignored: 0,
        };
    }
    let list = (value & 0xffff) as u16;
    let aff1 = (value >> 16) & 0xff;
    let aff2 = (value >> 32) & 0xff;
    let rs = (value >> 44) & 0xf;
    let aff3 = (value >> 48) & 0xff;
    if aff1 != 0 || aff2 != 0 || aff3 != 0 || rs != 0 {
        return Sgi {
            intid,
            targets: 0,
            ignored: list.count_ones() as u16,
        };
    }
    Sgi {
        intid,
        targets: list & present,
        ignored: (list & !present).count_ones() as u16,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sgi1r(intid: u64, list: u64) -> u64 {
        (intid << 24) | list
    }

    #[test]
    fn target_list() {
        let s = decode(sgi1r(5, 0b110), 0, 3);
        assert_eq!(s.intid, 5);
        assert_eq!(s.vcpus().collect::<Vec<_>>(), [1, 2]);
        assert_eq!(s.ignored, 0);
    }

    #[test]
    fn self_is_allowed_in_a_list() {
        let s = decode(sgi1r(0, 0b1), 0, 3);
        assert_eq!(s.vcpus().collect::<Vec<_>>(), [0]);
    }

    #[test]
    fn irm_targets_all_but_self() {
        let s = decode((1 << 40) | sgi1r(15, 0xffff), 1, 3);
        assert_eq!(s.intid, 15);
        assert_eq!(s.vcpus().collect::<Vec<_>>(), [0, 2]);
        assert_eq!(s.ignored, 0);
        // Alone in its partition: nobody.
        assert_eq!(decode(1 << 40, 0, 1).targets, 0);
    }

    #[test]
    fn out_of_range_targets_are_ignored_and_counted() {
        let s = decode(sgi1r(2, 0b1_1001), 0, 3);
        assert_eq!(s.vcpus().collect::<Vec<_>>(), [0]);
        assert_eq!(s.ignored, 2);
    }

    #[test]
    fn other_affinities_and_ranges_name_no_vcpu() {
        for high in [1u64 << 16, 1 << 32, 1 << 48, 1 << 44, 0xff << 48] {
            let s = decode(high | sgi1r(3, 0b11), 0, 3);
            assert_eq!(s.targets, 0, "{high:#x}");
            assert_eq!(s.ignored, 2, "{high:#x}");
        }
    }

    #[test]
    fn intid_field_only() {
        // Bits outside the fields do not leak into INTID.
        let s = decode(0xf0_0000_0000_0000 | (0x1f << 24) | 1, 0, 2);
        assert_eq!(s.intid, 0xf);
        assert_eq!(s.targets, 0, "Aff3 = 0xf0 selects nobody");
        let s = decode((0x1f << 24) | 1, 0, 2);
        assert_eq!(s.intid, 0xf);
        assert_eq!(s.targets, 1);
    }

    #[test]
    fn sixteen_vcpus() {
        let s = decode(sgi1r(1, 0xffff), 0, 16);
        assert_eq!(s.vcpus().count(), 16);
        let s = decode(1 << 40, 15, 20);
        assert_eq!(s.targets, 0x7fff);
    }
}
