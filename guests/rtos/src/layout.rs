//! The physical addresses the RTOS knows about, and what its identity map covers.

use crate::boot::Platform;
use crate::gic::{GICD_BASE, GICD_SIZE, GICR_BASE, GICR_REGION_SIZE};
use crate::mmu::{MemType, Region};
use crate::probe::PROBES;

/// The partition's RAM (the image is linked at its base).
pub const PARTITION_RAM_BASE: u64 = 0x4400_0000;
pub const PARTITION_RAM_SIZE: u64 = 64 << 20;

/// The board's PL011; only a bare RTOS may touch it (spumone owns it otherwise).
pub const PL011_BASE: u64 = 0x0900_0000;

const PAGE: u64 = 4096;

/// Task stacks live in a fixed area of partition RAM, past the image (the linker script
/// checks that), each with an unmapped guard page below it so an overflow faults.
pub const STACKS_BASE: u64 = PARTITION_RAM_BASE + 0x0200_0000;
pub const GUARD_SIZE: u64 = PAGE;
pub const STACK_SIZE: u64 = 16 * 1024;
pub const STACK_STRIDE: u64 = GUARD_SIZE + STACK_SIZE;
/// Stack slots: one per task (at most `STACK_SLOTS - 1`) and the idle loop's, the last.
pub const STACK_SLOTS: usize = 16;
pub const IDLE_SLOT: usize = STACK_SLOTS - 1;
const STACKS_END: u64 = STACKS_BASE + STACK_SLOTS as u64 * STACK_STRIDE;
const _: () = assert!(STACKS_END <= PARTITION_RAM_BASE + PARTITION_RAM_SIZE);

/// The initial stack pointer of slot `slot` (the stack grows down from it).
pub const fn stack_top(slot: usize) -> u64 {
    STACKS_BASE + slot as u64 * STACK_STRIDE + STACK_STRIDE
}

/// The slot whose guard page holds `addr`: the stack that overflowed.
pub fn guard_slot(addr: u64) -> Option<usize> {
    let offset = addr.checked_sub(STACKS_BASE)?;
    let slot = usize::try_from(offset / STACK_STRIDE).ok()?;
    (slot < STACK_SLOTS && offset % STACK_STRIDE < GUARD_SIZE).then_some(slot)
}

/// Partition RAM minus the guard pages, in address order.
fn ram_regions() -> impl Iterator<Item = Region> {
    let normal = |base: u64, end: u64| Region {
        base,
        size: end - base,
        mem: MemType::Normal,
    };
    let below = normal(PARTITION_RAM_BASE, STACKS_BASE);
    let stacks = (0..STACK_SLOTS).map(move |slot| {
        let bottom = STACKS_BASE + slot as u64 * STACK_STRIDE + GUARD_SIZE;
        normal(bottom, bottom + STACK_SIZE)
    });
    let above = normal(STACKS_END, PARTITION_RAM_BASE + PARTITION_RAM_SIZE);
    core::iter::once(below)
        .chain(stacks)
        .chain(core::iter::once(above))
}

/// Everything the RTOS maps, identity, on `platform`.
///
/// The probe addresses are mapped as device memory so a probe access passes the RTOS's own
/// stage 1 and is stopped by spumone's stage 2, not by a translation fault of our own. The
/// GIC is mapped on both platforms: under spumone the same addresses reach its emulation.
pub fn regions(platform: Platform) -> impl Iterator<Item = Region> {
    let gic = [(GICD_BASE, GICD_SIZE), (GICR_BASE, GICR_REGION_SIZE)].map(|(base, size)| Region {
        base,
        size,
        mem: MemType::Device,
    });
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
    ram_regions().chain(gic).chain(uart).chain(probes)
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
    fn guard_pages_are_holes_below_each_stack() {
        let all: Vec<_> = regions(Platform::Bare).collect();
        for slot in 0..STACK_SLOTS {
            let top = stack_top(slot);
            let bottom = top - STACK_SIZE;
            assert_eq!(covers(&all, top - 8), Some(MemType::Normal));
            assert_eq!(covers(&all, bottom), Some(MemType::Normal));
            assert_eq!(covers(&all, bottom - 1), None, "guard of slot {slot}");
            assert_eq!(covers(&all, bottom - GUARD_SIZE), None);
            assert_eq!(guard_slot(bottom - 1), Some(slot));
            assert_eq!(guard_slot(bottom - GUARD_SIZE), Some(slot));
            assert_eq!(guard_slot(bottom), None);
            assert_eq!(guard_slot(top - 1), None);
        }
        assert_eq!(covers(&all, STACKS_END), Some(MemType::Normal));
        assert_eq!(guard_slot(STACKS_END), None);
        assert_eq!(guard_slot(STACKS_BASE - 1), None);
        assert_eq!(guard_slot(0), None);
        assert_eq!(IDLE_SLOT, STACK_SLOTS - 1);
    }

    #[test]
    fn gic_is_device_on_both_platforms() {
        for platform in [Platform::Bare, Platform::Spumone { vcpu: 0 }] {
            let all: Vec<_> = regions(platform).collect();
            assert_eq!(covers(&all, GICD_BASE), Some(MemType::Device));
            assert_eq!(
                covers(&all, GICR_BASE + 0x1_0000 + 0x100),
                Some(MemType::Device)
            );
            assert_eq!(
                covers(&all, GICR_BASE + 3 * 0x2_0000),
                Some(MemType::Device)
            );
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
