//! How a vCPU is configured and entered, and where it resumes after a trap.

use board::rt::{Config, Partition};
use spumone_abi::hvc::BOOT_MAGIC;

use super::esr::{Esr, ExceptionClass};

/// `HCR_EL2` bits spumone uses.
pub mod hcr {
    /// Stage-2 translation on.
    pub const VM: u64 = 1 << 0;
    /// Set/way cache maintenance becomes clean+invalidate (guests cannot see the real sets).
    pub const SWIO: u64 = 1 << 1;
    pub const FMO: u64 = 1 << 3;
    pub const IMO: u64 = 1 << 4;
    pub const AMO: u64 = 1 << 5;
    /// Trap WFI / WFE.
    pub const TWI: u64 = 1 << 13;
    pub const TWE: u64 = 1 << 14;
    /// Trap SMC (guest PSCI).
    pub const TSC: u64 = 1 << 19;
    /// EL1 is AArch64.
    pub const RW: u64 = 1 << 31;
}

/// What a core's guest needs trapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrapPolicy {
    /// More than one vCPU may run on the core, so an idle vCPU must give it up: trap WFI/WFE.
    pub shared_core: bool,
}

/// `HCR_EL2` for a vCPU: stage 2 on, AArch64 EL1, physical interrupts and SErrors to EL2,
/// SMC trapped (PSCI is virtual), WFI/WFE trapped only on a shared core (one vCPU that owns
/// its core may sleep in hardware: the EL2 tick still wakes it).
pub const fn hcr_el2(policy: TrapPolicy) -> u64 {
    let base = hcr::VM | hcr::SWIO | hcr::FMO | hcr::IMO | hcr::AMO | hcr::TSC | hcr::RW;
    if policy.shared_core {
        base | hcr::TWI | hcr::TWE
    } else {
        base
    }
}

/// The trap policy of `core` under `config`.
pub fn trap_policy(config: &Config, core: u8) -> TrapPolicy {
    let vcpus_here = config
        .partitions
        .iter()
        .flat_map(|p| p.vcpus.iter())
        .filter(|v| v.core == core)
        .count();
    TrapPolicy {
        shared_core: vcpus_here > 1,
    }
}

/// The cores `partition`'s vCPUs are placed on by the config, bit `c` for core `c`: where its
/// migration policy may move them.
pub fn cores_of(partition: &Partition) -> u32 {
    partition
        .vcpus
        .iter()
        .filter_map(|v| 1u32.checked_shl(u32::from(v.core)))
        .fold(0, |mask, bit| mask | bit)
}

/// The cores of every partition for which `which(partition index)` holds, bit `c` for core
/// `c`. With the partitions whose vCPUs move: the cores that may receive a migrating vCPU
/// (they run the switch loop with WFI trapped even while a single vCPU is placed there);
/// with the RTOS partitions: the cores where no long hypervisor work may run for another.
pub fn cores_of_partitions(config: &Config, which: impl Fn(u8) -> bool) -> u32 {
    config
        .partitions
        .iter()
        .filter(|p| which(p.index))
        .fold(0, |mask, p| mask | cores_of(p))
}

/// Whether a core needs the EL2 tick. PSCI `CPU_ON`, posted virtual interrupts and a
/// partition stopped elsewhere all reach a core through the kick SGI, so the tick is only
/// kept where several vCPUs share the core (the hook for sharing it out).
pub fn needs_tick(config: &Config, core: u8) -> bool {
    trap_policy(config, core).shared_core
}

/// The first of `cores` no RTOS vCPU is placed on: where hypervisor work done for another
/// partition (SMMU fault reports, the integrity digest) delays no RTOS. `None` when the RTOS
/// is everywhere.
pub fn first_core_without_rtos(
    config: &Config,
    cores: usize,
    is_rtos: impl Fn(u8) -> bool,
) -> Option<u8> {
    let rtos = cores_of_partitions(config, is_rtos);
    (0..cores.min(32) as u8).find(|&c| rtos & (1 << c) == 0)
}

/// PSTATE at guest entry: EL1h with D, A, I and F masked.
pub const ENTRY_SPSR: u64 = 0x3c5;

/// `CNTHCTL_EL2`: EL1 may read the physical counter and use the physical timer registers
/// without trapping (EL1PCTEN, EL1PCEN); the virtual timer is always available.
pub const CNTHCTL_EL2: u64 = 0b11;

/// `SCTLR_EL1` at entry: MMU and caches off, little-endian, only the RES1 bits set.
pub const SCTLR_EL1_RESET: u64 = 0x30d0_0800;

/// `CPTR_EL2` (non-VHE): RES1 bits only, so FP/SIMD is not trapped to EL2 (TFP = 0).
pub const CPTR_EL2: u64 = 0x33ff;

/// VMID of a partition (0 is left unused so a stray VTTBR of 0 never aliases a guest).
pub const fn vmid(partition_index: u8) -> u8 {
    partition_index + 1
}

/// `x0..x2` at entry, per the boot protocol.
pub const fn boot_registers(partition: &Partition, vcpu: usize) -> [u64; 3] {
    [BOOT_MAGIC, partition.boot_arg, vcpu as u64]
}

/// Where the guest resumes after a trap that was handled (not injected): past the
/// trapping instruction for SMC, WFx, emulated data aborts and system registers (their
/// `ELR_EL2` points at it), unchanged for HVC (its preferred return already points past it).
pub fn resume_pc(esr: Esr, elr: u64) -> u64 {
    let width = if esr.il() { 4 } else { 2 };
    match esr.ec() {
        ExceptionClass::Smc64
        | ExceptionClass::WfiWfe
        | ExceptionClass::DataAbortLower
        | ExceptionClass::SysReg64 => elr.wrapping_add(width),
        _ => elr,
    }
}

/// Whether delivering an exception that enters the guest at `vector` would only repeat the
/// fault just taken at `fault_pc` (the guest's vector itself faults, e.g. `VBAR_EL1` was never
/// set): the partition can then only be stopped.
pub const fn injection_loops(fault_pc: u64, vector: u64) -> bool {
    fault_pc == vector
}

#[cfg(test)]
mod tests {
    use super::*;
    use board::rt::{MemRange, Vcpu};

    const IL: u64 = 1 << 25;

    fn esr(ec: u64) -> Esr {
        Esr((ec << 26) | IL)
    }

    #[test]
    fn resume_after_each_trap_kind() {
        assert_eq!(resume_pc(esr(0x17), 0x4000_1000), 0x4000_1004, "SMC");
        assert_eq!(resume_pc(esr(0x01), 0x4000_1000), 0x4000_1004, "WFI");
        assert_eq!(resume_pc(esr(0x24), 0x4000_1000), 0x4000_1004, "MMIO");
        assert_eq!(resume_pc(esr(0x16), 0x4000_1004), 0x4000_1004, "HVC");
        assert_eq!(resume_pc(esr(0x18), 0x4000_1000), 0x4000_1004, "sysreg");
        // A 16-bit instruction (IL = 0) only exists for AArch32 guests.
        assert_eq!(resume_pc(Esr(0x24 << 26), 0x1000), 0x1002);
    }

    #[test]
    fn fault_at_the_vector_is_a_loop() {
        assert!(injection_loops(0x200, 0x200));
        assert!(!injection_loops(0x4400_1000, 0x4400_0a00));
    }

    #[test]
    fn hcr_traps_follow_policy() {
        let alone = hcr_el2(TrapPolicy { shared_core: false });
        let shared = hcr_el2(TrapPolicy { shared_core: true });
        for bit in [hcr::VM, hcr::RW, hcr::IMO, hcr::FMO, hcr::AMO, hcr::TSC] {
            assert_ne!(alone & bit, 0);
            assert_ne!(shared & bit, 0);
        }
        assert_eq!(alone & (hcr::TWI | hcr::TWE), 0);
        assert_eq!(shared & (hcr::TWI | hcr::TWE), hcr::TWI | hcr::TWE);
    }

    static RAM: [MemRange; 1] = [MemRange::new(0x4400_0000, 0x0400_0000)];

    fn partition(index: u8, vcpus: &'static [Vcpu]) -> Partition {
        Partition {
            name: "p",
            index,
            image: "p",
            ram: &RAM,
            devices: &[],
            entry: 0x4400_0000,
            boot_arg: 0x77,
            vcpus,
            console_channel: 0x10 + index,
            preload_ns: 0,
        }
    }

    fn config(partitions: &'static [Partition]) -> Config {
        Config {
            board: "t",
            cores: 4,
            dtb_hint: 0,
            hypervisor_ram: MemRange::new(0x4000_0000, 0x0400_0000),
            board_ram: &RAM,
            partitions,
            smmus: &[],
            console_intid: 33,
        }
    }

    #[test]
    fn shared_core_is_detected() {
        static A: [Vcpu; 2] = [Vcpu { core: 0 }, Vcpu { core: 1 }];
        static B: [Vcpu; 1] = [Vcpu { core: 1 }];
        let parts: &'static [Partition] = Box::leak(Box::new([partition(0, &A), partition(1, &B)]));
        let config = config(parts);
        assert!(!trap_policy(&config, 0).shared_core);
        assert!(trap_policy(&config, 1).shared_core);
        assert!(!trap_policy(&config, 2).shared_core);
    }

    #[test]
    fn tick_runs_only_on_shared_cores() {
        static A: [Vcpu; 1] = [Vcpu { core: 0 }];
        static B: [Vcpu; 2] = [Vcpu { core: 1 }, Vcpu { core: 2 }];
        static C: [Vcpu; 1] = [Vcpu { core: 2 }];
        let parts: &'static [Partition] = Box::leak(Box::new([
            partition(0, &A),
            partition(1, &B),
            partition(2, &C),
        ]));
        let config = config(parts);
        assert!(!needs_tick(&config, 0), "lone vCPU");
        assert!(!needs_tick(&config, 1), "secondary vCPUs start by kick");
        assert!(needs_tick(&config, 2), "shared core");
        assert!(!needs_tick(&config, 3), "no vCPU");
    }

    #[test]
    fn cores_of_partitions_are_those_of_moving_partitions() {
        static A: [Vcpu; 1] = [Vcpu { core: 0 }];
        static B: [Vcpu; 3] = [Vcpu { core: 0 }, Vcpu { core: 1 }, Vcpu { core: 3 }];
        let parts: &'static [Partition] = Box::leak(Box::new([partition(0, &A), partition(1, &B)]));
        let config = config(parts);
        assert_eq!(cores_of(&parts[1]), 0b1011);
        assert_eq!(cores_of_partitions(&config, |p| p == 1), 0b1011);
        assert_eq!(
            cores_of_partitions(&config, |_| false),
            0,
            "pinned everywhere"
        );
        assert_eq!(cores_of_partitions(&config, |p| p == 0), 0b0001);
    }

    #[test]
    fn boot_registers_follow_protocol() {
        static A: [Vcpu; 1] = [Vcpu { core: 0 }];
        let p = partition(3, &A);
        assert_eq!(boot_registers(&p, 2), [BOOT_MAGIC, 0x77, 2]);
        assert_eq!(vmid(3), 4);
        assert_eq!(ENTRY_SPSR & 0xf, 0b0101, "EL1h");
        assert_eq!(ENTRY_SPSR & 0x3c0, 0x3c0, "DAIF masked");
    }

    /// The RTOS (partition 0) on core 0, Linux on cores 1-3, as in `demo`.
    fn two_partitions() -> Config {
        static RTOS: [Vcpu; 1] = [Vcpu { core: 0 }];
        static LINUX: [Vcpu; 3] = [Vcpu { core: 1 }, Vcpu { core: 2 }, Vcpu { core: 3 }];
        config(Box::leak(Box::new([
            partition(0, &RTOS),
            partition(1, &LINUX),
        ])))
    }

    #[test]
    fn long_work_goes_to_a_core_without_the_rtos() {
        let is_rtos = |i: u8| i == 0;
        assert_eq!(
            first_core_without_rtos(&two_partitions(), 4, is_rtos),
            Some(1)
        );
        static ALL: [Vcpu; 4] = [
            Vcpu { core: 0 },
            Vcpu { core: 1 },
            Vcpu { core: 2 },
            Vcpu { core: 3 },
        ];
        let parts: &'static [Partition] = Box::leak(Box::new([partition(0, &ALL)]));
        let config = config(parts);
        assert_eq!(first_core_without_rtos(&config, 4, is_rtos), None);
        assert_eq!(first_core_without_rtos(&config, 5, is_rtos), Some(4));
        // With no RTOS the boot core serves.
        assert_eq!(first_core_without_rtos(&config, 4, |_| false), Some(0));
        // One core the RTOS holds: nowhere.
        assert_eq!(first_core_without_rtos(&two_partitions(), 1, is_rtos), None);
    }
}
