//! What the device tree told us about the machine, and the checks of the static config
//! against it.

use board::rt::{Config, MemRange};
use heapless::Vec;

use super::MAX_CORES;

/// Most RAM banks kept from the DTB.
pub const MAX_RAM_BANKS: usize = 4;

/// Most SMMUs kept from the DTB.
pub const MAX_SMMUS: usize = 4;

/// The hardware spumone needs, as found in the DTB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub ram: Vec<MemRange, MAX_RAM_BANKS>,
    /// MPIDR affinity values of the CPUs, in DTB order.
    pub cpus: Vec<u64, MAX_CORES>,
    pub gicd: MemRange,
    pub gicr: MemRange,
    pub uart: MemRange,
    /// The first and last virtio-mmio transports' span, if any.
    pub virtio: Option<MemRange>,
    /// Register frames of the `arm,smmu-v3` nodes.
    pub smmus: Vec<MemRange, MAX_SMMUS>,
    /// INTID of the EL2 physical timer.
    pub hyp_timer_intid: u32,
    /// CPUs the DTB listed beyond [`MAX_CORES`].
    pub cpus_ignored: usize,
}

impl Default for Platform {
    fn default() -> Self {
        let none = MemRange::new(0, 0);
        Platform {
            ram: Vec::new(),
            cpus: Vec::new(),
            gicd: none,
            gicr: none,
            uart: none,
            virtio: None,
            smmus: Vec::new(),
            hyp_timer_intid: 26,
            cpus_ignored: 0,
        }
    }
}

impl Platform {
    /// Whether the machine has an SMMU whose registers hold all of `frame` (a board SMMU).
    pub fn has_smmu(&self, frame: MemRange) -> bool {
        self.smmus.iter().any(|s| s.contains_range(&frame))
    }
}

/// A mismatch between the config and the DTB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayoutProblem {
    /// A board RAM bank from the config is not RAM in the DTB.
    BoardRamMissing(MemRange),
    /// The DTB has RAM the config's board does not describe (harmless, but a sign the board
    /// file and the machine disagree).
    DtbRamUnknown(MemRange),
    /// A partition's RAM bank is not inside the DTB's RAM.
    PartitionRamOutside { partition: usize, range: MemRange },
    /// A vCPU is placed on a core the DTB does not list.
    TooFewCpus { config: usize, dtb: usize },
}

fn inside_any(ranges: &[MemRange], range: &MemRange) -> bool {
    ranges.iter().any(|r| r.contains_range(range))
}

/// Checks `config` against the machine. Returns every problem found (up to 8).
pub fn check_layout(config: &Config, platform: &Platform) -> Vec<LayoutProblem, 8> {
    let mut problems = Vec::new();
    let mut report = |p| {
        let _ = problems.push(p);
    };
    for bank in config.board_ram {
        if !inside_any(&platform.ram, bank) {
            report(LayoutProblem::BoardRamMissing(*bank));
        }
    }
    for bank in &platform.ram {
        if !config.board_ram.contains(bank) && !inside_any(config.board_ram, bank) {
            report(LayoutProblem::DtbRamUnknown(*bank));
        }
    }
    for (index, partition) in config.partitions.iter().enumerate() {
        for range in partition.ram {
            if !inside_any(&platform.ram, range) {
                report(LayoutProblem::PartitionRamOutside {
                    partition: index,
                    range: *range,
                });
            }
        }
    }
    let needed = config
        .partitions
        .iter()
        .flat_map(|p| p.vcpus.iter())
        .map(|v| usize::from(v.core) + 1)
        .max()
        .unwrap_or(0);
    if needed > platform.cpus.len() {
        report(LayoutProblem::TooFewCpus {
            config: needed,
            dtb: platform.cpus.len(),
        });
    }
    problems
}

/// Logical core numbers: the boot core is 0, the others follow in DTB order. Returns the
/// MPIDR of each logical core, or `None` if the boot core is not in the list.
pub fn logical_cores(boot_mpidr: u64, dtb_cpus: &[u64]) -> Option<Vec<u64, MAX_CORES>> {
    if !dtb_cpus.contains(&boot_mpidr) {
        return None;
    }
    let mut order = Vec::new();
    let _ = order.push(boot_mpidr);
    for &mpidr in dtb_cpus.iter().filter(|&&m| m != boot_mpidr) {
        if order.push(mpidr).is_err() {
            break;
        }
    }
    Some(order)
}

/// The INTID of the timer interrupt at `index` of an `arm,armv8-timer` node's
/// `interrupts` (3 cells each: type, number, flags). Index 3 is the EL2 physical timer.
pub fn timer_intid(interrupt_cells: &[u32], index: usize) -> Option<u32> {
    let cells = interrupt_cells.get(index * 3..index * 3 + 3)?;
    match cells[0] {
        // A PPI: INTIDs 16..32.
        1 if cells[1] < 16 => Some(16 + cells[1]),
        // An SPI.
        0 if cells[1] < 988 => Some(32 + cells[1]),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use board::rt::{Partition, Vcpu};

    const RAM: MemRange = MemRange::new(0x4000_0000, 0x8000_0000);

    fn partition(ram: &'static [MemRange], vcpus: &'static [Vcpu]) -> Partition {
        Partition {
            name: "p",
            index: 0,
            image: "p",
            ram,
            devices: &[],
            entry: ram[0].base,
            boot_arg: 0,
            vcpus,
            console_channel: 0x10,
            preload_ns: 0,
        }
    }

    fn config(partitions: &'static [Partition]) -> Config {
        Config {
            board: "test",
            cores: 4,
            dtb_hint: 0x4000_0000,
            hypervisor_ram: MemRange::new(0x4000_0000, 0x0400_0000),
            board_ram: &[RAM],
            partitions,
            smmus: &[],
            console_intid: 33,
        }
    }

    fn platform(ram: &[MemRange], cpus: usize) -> Platform {
        Platform {
            ram: ram.iter().copied().collect(),
            cpus: (0..cpus as u64).collect(),
            ..Default::default()
        }
    }

    static GOOD_RAM: [MemRange; 1] = [MemRange::new(0x4400_0000, 0x0400_0000)];
    static OUTSIDE_RAM: [MemRange; 1] = [MemRange::new(0xbf00_0000, 0x0200_0000)];
    static CORE0: [Vcpu; 1] = [Vcpu { core: 0 }];
    static CORE5: [Vcpu; 1] = [Vcpu { core: 5 }];

    #[test]
    fn matching_layout_has_no_problems() {
        let parts: &'static [Partition] = Box::leak(Box::new([partition(&GOOD_RAM, &CORE0)]));
        assert!(check_layout(&config(parts), &platform(&[RAM], 4)).is_empty());
    }

    #[test]
    fn smaller_machine_ram_is_reported() {
        let parts: &'static [Partition] = Box::leak(Box::new([partition(&OUTSIDE_RAM, &CORE0)]));
        let small = MemRange::new(0x4000_0000, 0x4000_0000);
        let problems = check_layout(&config(parts), &platform(&[small], 4));
        assert!(problems.contains(&LayoutProblem::BoardRamMissing(RAM)));
        assert!(problems.contains(&LayoutProblem::PartitionRamOutside {
            partition: 0,
            range: OUTSIDE_RAM[0]
        }));
        assert!(!problems
            .iter()
            .any(|p| matches!(p, LayoutProblem::DtbRamUnknown(_))));
    }

    #[test]
    fn extra_dtb_ram_and_missing_cpus_are_reported() {
        let parts: &'static [Partition] = Box::leak(Box::new([partition(&GOOD_RAM, &CORE5)]));
        let extra = MemRange::new(0x1_0000_0000, 0x1000_0000);
        let problems = check_layout(&config(parts), &platform(&[RAM, extra], 4));
        assert!(problems.contains(&LayoutProblem::DtbRamUnknown(extra)));
        assert!(problems.contains(&LayoutProblem::TooFewCpus { config: 6, dtb: 4 }));
    }

    #[test]
    fn smmus_are_found_by_their_frame() {
        let mut p = platform(&[RAM], 4);
        let frame = MemRange::new(0x0905_0000, 0x2_0000);
        assert!(!p.has_smmu(frame));
        p.smmus.push(MemRange::new(0x0905_0000, 0x2_0000)).unwrap();
        assert!(p.has_smmu(frame));
        assert!(!p.has_smmu(MemRange::new(0x0906_0000, 0x2_0000)));
        assert!(!p.has_smmu(MemRange::new(0x0a05_0000, 0x2_0000)));
    }

    #[test]
    fn boot_core_comes_first() {
        let order = logical_cores(0x2, &[0x0, 0x1, 0x2, 0x3]).unwrap();
        assert_eq!(order.as_slice(), &[0x2, 0x0, 0x1, 0x3]);
        assert!(logical_cores(0x100, &[0x0, 0x1]).is_none());
        let many: std::vec::Vec<u64> = (0..20).collect();
        assert_eq!(logical_cores(0, &many).unwrap().len(), MAX_CORES);
    }

    #[test]
    fn timer_interrupts_decode() {
        // QEMU virt: secure, non-secure, virtual, hypervisor physical timers.
        let cells = [1, 13, 4, 1, 14, 4, 1, 11, 4, 1, 10, 4];
        assert_eq!(timer_intid(&cells, 3), Some(26));
        assert_eq!(timer_intid(&cells, 2), Some(27));
        assert_eq!(timer_intid(&cells, 4), None);
        assert_eq!(timer_intid(&[0, 5, 4], 0), Some(37));
        assert_eq!(timer_intid(&[1, 16, 4], 0), None);
    }
}
