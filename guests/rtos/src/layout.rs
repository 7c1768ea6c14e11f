//! The physical addresses the RTOS knows about, and what its identity map covers.

use crate::boot::Platform;
use crate::mmu::{MemType, Region};
use crate::probe::PROBES;

/// The partition's RAM (the image is linked at its base).
pub const PARTITION_RAM_BASE: u64 = 0x4400_0000;
pub const PARTITION_RAM_SIZE: u64 = 64 << 20;

/// The board's PL011; only a bare RTOS may touch it (spumone owns it otherwise).
pub const PL011_BASE: u64 = 0x0900_0000;

const PAGE: u64 = 4096;

/// Everything the RTOS maps, identity, on `platform`.
///
/// The probe addresses are mapped as device memory so a probe access passes the RTOS's own
/// stage 1 and is stopped by spumone's stage 2, not by a translation fault of our own.
pub fn regions(platform: Platform) -> impl Iterator<Item = Region> {
    let ram = Region {
        base: PARTITION_RAM_BASE,
        size: PARTITION_RAM_SIZE,
        mem: MemType::Normal,
    };
    let uart = platform.is_bare().then_some(Region {
        base: PL011_BASE,
        size: PAGE,
        mem: MemType::Device,
    });
    let probes = PROBES.iter().map(|p| Region {
        base: p.addr & !(PAGE - 1),
        size: PAGE,
        mem: MemType::Device,
    });
    core::iter::once(ram).chain(uart).chain(probes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn covers(regions: &[Region], addr: u64) -> Option<MemType> {
        regions
            .iter()
            .find(|r| (r.base..r.base + r.size).contains(&addr))
            .map(|r| r.mem)
    }

    #[test]
    fn uart_is_mapped_only_when_bare() {
        let bare: Vec<_> = regions(Platform::Bare).collect();
        let hv: Vec<_> = regions(Platform::Spumone { vcpu: 0 }).collect();
        assert_eq!(covers(&bare, PL011_BASE + 0x18), Some(MemType::Device));
        assert_eq!(covers(&hv, PL011_BASE), None);
    }

    #[test]
    fn ram_is_normal_and_probes_are_device_everywhere() {
        for platform in [Platform::Bare, Platform::Spumone { vcpu: 1 }] {
            let all: Vec<_> = regions(platform).collect();
            assert_eq!(covers(&all, PARTITION_RAM_BASE), Some(MemType::Normal));
            assert_eq!(
                covers(&all, PARTITION_RAM_BASE + PARTITION_RAM_SIZE - 1),
                Some(MemType::Normal)
            );
            assert_eq!(covers(&all, PARTITION_RAM_BASE + PARTITION_RAM_SIZE), None);
            for probe in PROBES {
                assert_eq!(covers(&all, probe.addr), Some(MemType::Device));
            }
        }
    }

    #[test]
    fn regions_do_not_overlap() {
        let all: Vec<_> = regions(Platform::Bare).collect();
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert!(a.base + a.size <= b.base || b.base + b.size <= a.base);
            }
        }
    }
}
