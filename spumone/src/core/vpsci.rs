//! Virtual PSCI 1.1 for one partition: decides what a guest's PSCI call does.
//!
//! The caller traps the guest's `SMC`, passes the function id and arguments with a view of
//! the partition, carries out the [`PsciOutcome`] and writes its return value to `x0`.
//! vCPU `n` of a partition has MPIDR affinity `Aff0 = n` (see [`vcpu_mpidr`]).

use core::ops::Range;

/// PSCI function ids (fast calls, standard secure service range), the `smccc` crate's under
/// the names this module matches on.
pub mod id {
    pub use smccc::psci::{
        PSCI_AFFINITY_INFO_32 as AFFINITY_INFO_32, PSCI_AFFINITY_INFO_64 as AFFINITY_INFO_64,
        PSCI_CPU_OFF as CPU_OFF, PSCI_CPU_ON_32 as CPU_ON_32, PSCI_CPU_ON_64 as CPU_ON_64,
        PSCI_CPU_SUSPEND_32 as CPU_SUSPEND_32, PSCI_CPU_SUSPEND_64 as CPU_SUSPEND_64,
        PSCI_FEATURES, PSCI_MIGRATE_32 as MIGRATE_32, PSCI_MIGRATE_64 as MIGRATE_64,
        PSCI_MIGRATE_INFO_TYPE as MIGRATE_INFO_TYPE,
        PSCI_MIGRATE_INFO_UP_CPU_32 as MIGRATE_INFO_UP_CPU_32,
        PSCI_MIGRATE_INFO_UP_CPU_64 as MIGRATE_INFO_UP_CPU_64, PSCI_SYSTEM_OFF as SYSTEM_OFF,
        PSCI_SYSTEM_RESET as SYSTEM_RESET, PSCI_SYSTEM_RESET2_32 as SYSTEM_RESET2_32,
        PSCI_SYSTEM_RESET2_64 as SYSTEM_RESET2_64, PSCI_VERSION,
    };
}

/// PSCI return codes, as the 64-bit value written to `x0` (the `smccc` crate's `i32` codes,
/// sign-extended).
pub mod ret {
    use smccc::psci::error;

    /// SUCCESS (0).
    pub const SUCCESS: u64 = 0;
    /// NOT_SUPPORTED (-1).
    pub const NOT_SUPPORTED: u64 = error::NOT_SUPPORTED as i64 as u64;
    /// INVALID_PARAMETERS (-2).
    pub const INVALID_PARAMETERS: u64 = error::INVALID_PARAMETERS as i64 as u64;
    /// DENIED (-3).
    pub const DENIED: u64 = error::DENIED as i64 as u64;
    /// ALREADY_ON (-4).
    pub const ALREADY_ON: u64 = error::ALREADY_ON as i64 as u64;
    /// ON_PENDING (-5).
    pub const ON_PENDING: u64 = error::ON_PENDING as i64 as u64;
    /// INVALID_ADDRESS (-9).
    pub const INVALID_ADDRESS: u64 = error::INVALID_ADDRESS as i64 as u64;
}

/// The version reported by PSCI_VERSION: 1.1.
pub const PSCI_VERSION_1_1: u64 = 0x0001_0001;
/// MIGRATE_INFO_TYPE result: no trusted OS needs migrating.
pub const MIGRATE_INFO_NOT_NEEDED: u64 = 2;
/// AFFINITY_INFO result: the vCPU is on.
pub const AFFINITY_ON: u64 = 0;
/// AFFINITY_INFO result: the vCPU is off.
pub const AFFINITY_OFF: u64 = 1;
/// AFFINITY_INFO result: the vCPU has been asked to power on.
pub const AFFINITY_ON_PENDING: u64 = 2;

/// Bit 30 of a function id: the SMC64 calling convention.
const SMC64: u32 = 1 << 30;
/// MPIDR bit 31 is RES1.
const MPIDR_RES1: u64 = 1 << 31;

/// The `VMPIDR_EL2` value for vCPU number `vcpu` (below 256) of a partition.
pub const fn vcpu_mpidr(vcpu: u8) -> u64 {
    MPIDR_RES1 | vcpu as u64
}

/// The SMC32 PSCI range: `PSCI_VERSION`, the first id, and the 31 after it (the crate names
/// the ids, not the range SMCCC reserves for PSCI).
const PSCI_FIRST: u32 = id::PSCI_VERSION;
const PSCI_LAST: u32 = PSCI_FIRST + 0x1F;

/// Whether `function_id` lies in the PSCI range (SMC32 or SMC64).
pub const fn is_psci(function_id: u32) -> bool {
    matches!(function_id & !SMC64, PSCI_FIRST..=PSCI_LAST)
}

/// Power state of a vCPU as PSCI sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VcpuPower {
    /// Off: CPU_ON may start it.
    Off,
    /// Running (or waiting for an interrupt).
    On,
    /// CPU_ON accepted, not yet running.
    OnPending,
}

/// What PSCI needs to know about the calling partition.
#[derive(Clone, Copy, Debug)]
pub struct PartitionView<'a> {
    /// Power state of each vCPU, indexed by vCPU number.
    pub vcpus: &'a [VcpuPower],
    /// The partition's RAM ranges (entry points must lie in one).
    pub ram: &'a [Range<u64>],
}

/// A PSCI call as trapped: `w0` and `x1..x3`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PsciCall {
    /// The function id (`w0`).
    pub function_id: u32,
    /// Arguments `x1`, `x2`, `x3`.
    pub args: [u64; 3],
}

impl PsciCall {
    /// Builds a call from the guest's `x0..x3`.
    pub const fn from_regs(regs: &[u64; 4]) -> Self {
        Self {
            function_id: regs[0] as u32,
            args: [regs[1], regs[2], regs[3]],
        }
    }
}

/// What the caller must do for a PSCI call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PsciOutcome {
    /// Write this value to the caller's `x0` and resume it.
    Return(u64),
    /// Start vCPU `vcpu` at EL1h at `entry` with `x0 = context_id`; the caller gets SUCCESS.
    CpuOn {
        /// The vCPU number to start.
        vcpu: usize,
        /// Its entry point.
        entry: u64,
        /// The value for its `x0`.
        context_id: u64,
    },
    /// Power off the calling vCPU; the call does not return.
    CpuOff,
    /// Idle the calling vCPU until an interrupt (like WFI), then return SUCCESS.
    Suspend,
    /// Stop the partition (only this one).
    SystemOff,
    /// Restart the partition (only this one).
    SystemReset,
}

impl PsciOutcome {
    /// The value for the caller's `x0`, if the call returns to it.
    pub const fn return_value(&self) -> Option<u64> {
        match self {
            Self::Return(value) => Some(*value),
            Self::CpuOn { .. } | Self::Suspend => Some(ret::SUCCESS),
            Self::CpuOff | Self::SystemOff | Self::SystemReset => None,
        }
    }
}

/// Whether PSCI_FEATURES reports `function_id` as implemented.
pub const fn is_supported(function_id: u32) -> bool {
    matches!(
        function_id,
        id::PSCI_VERSION
            | id::CPU_SUSPEND_32
            | id::CPU_SUSPEND_64
            | id::CPU_OFF
            | id::CPU_ON_32
            | id::CPU_ON_64
            | id::AFFINITY_INFO_32
            | id::AFFINITY_INFO_64
            | id::MIGRATE_INFO_TYPE
            | id::SYSTEM_OFF
            | id::SYSTEM_RESET
            | id::PSCI_FEATURES
    )
}

/// Decides the outcome of a PSCI call made by a vCPU of `partition`.
pub fn handle(call: &PsciCall, partition: &PartitionView) -> PsciOutcome {
    // SMC32 calls pass 32-bit arguments; the upper halves are not the caller's data.
    let args = if call.function_id & SMC64 != 0 {
        call.args
    } else {
        call.args.map(|arg| u64::from(arg as u32))
    };
    match call.function_id {
        id::PSCI_VERSION => PsciOutcome::Return(PSCI_VERSION_1_1),
        id::CPU_SUSPEND_32 | id::CPU_SUSPEND_64 => PsciOutcome::Suspend,
        id::CPU_OFF => PsciOutcome::CpuOff,
        id::CPU_ON_32 | id::CPU_ON_64 => cpu_on(args, partition),
        id::AFFINITY_INFO_32 | id::AFFINITY_INFO_64 => affinity_info(args, partition),
        id::MIGRATE_INFO_TYPE => PsciOutcome::Return(MIGRATE_INFO_NOT_NEEDED),
        id::SYSTEM_OFF => PsciOutcome::SystemOff,
        id::SYSTEM_RESET => PsciOutcome::SystemReset,
        id::PSCI_FEATURES if is_supported(args[0] as u32) => PsciOutcome::Return(ret::SUCCESS),
        _ => PsciOutcome::Return(ret::NOT_SUPPORTED),
    }
}

/// The vCPU number an MPIDR affinity value names, if the partition has it.
fn target_vcpu(mpidr: u64, partition: &PartitionView) -> Option<usize> {
    // Only Aff0 may be non-zero: Aff1..Aff3 are 0 for every vCPU, other bits are not affinity.
    let vcpu = usize::from(u8::try_from(mpidr).ok()?);
    (vcpu < partition.vcpus.len()).then_some(vcpu)
}

fn cpu_on(args: [u64; 3], partition: &PartitionView) -> PsciOutcome {
    let [target, entry, context_id] = args;
    let Some(vcpu) = target_vcpu(target, partition) else {
        return PsciOutcome::Return(ret::INVALID_PARAMETERS);
    };
    match partition.vcpus[vcpu] {
        VcpuPower::On => return PsciOutcome::Return(ret::ALREADY_ON),
        VcpuPower::OnPending => return PsciOutcome::Return(ret::ON_PENDING),
        VcpuPower::Off => {}
    }
    let in_ram = partition.ram.iter().any(|range| range.contains(&entry));
    if !in_ram || entry % 4 != 0 {
        return PsciOutcome::Return(ret::INVALID_ADDRESS);
    }
    PsciOutcome::CpuOn {
        vcpu,
        entry,
        context_id,
    }
}

fn affinity_info(args: [u64; 3], partition: &PartitionView) -> PsciOutcome {
    let [target, lowest_level, _] = args;
    // Levels above 0 are deprecated since PSCI 1.0 and not implemented.
    if lowest_level != 0 {
        return PsciOutcome::Return(ret::INVALID_PARAMETERS);
    }
    let Some(vcpu) = target_vcpu(target, partition) else {
        return PsciOutcome::Return(ret::INVALID_PARAMETERS);
    };
    PsciOutcome::Return(match partition.vcpus[vcpu] {
        VcpuPower::On => AFFINITY_ON,
        VcpuPower::Off => AFFINITY_OFF,
        VcpuPower::OnPending => AFFINITY_ON_PENDING,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAM: [Range<u64>; 2] = [0x4400_0000..0x4800_0000, 0x5000_0000..0x5010_0000];
    const VCPUS: [VcpuPower; 3] = [VcpuPower::On, VcpuPower::Off, VcpuPower::OnPending];

    fn partition() -> PartitionView<'static> {
        PartitionView {
            vcpus: &VCPUS,
            ram: &RAM,
        }
    }

    fn call(function_id: u32, args: [u64; 3]) -> PsciOutcome {
        handle(&PsciCall { function_id, args }, &partition())
    }

    #[test]
    fn version_is_1_1() {
        let outcome = call(id::PSCI_VERSION, [0; 3]);
        assert_eq!(outcome, PsciOutcome::Return(0x0001_0001));
        assert_eq!(outcome.return_value(), Some(0x0001_0001));
    }

    #[test]
    fn features_lists_exactly_what_is_implemented() {
        let supported: [u32; 12] = [
            0x8400_0000,
            0x8400_0001,
            0xC400_0001,
            0x8400_0002,
            0x8400_0003,
            0xC400_0003,
            0x8400_0004,
            0xC400_0004,
            0x8400_0006,
            0x8400_0008,
            0x8400_0009,
            0x8400_000A,
        ];
        for fid in supported {
            let outcome = call(id::PSCI_FEATURES, [u64::from(fid), 0, 0]);
            assert_eq!(outcome, PsciOutcome::Return(ret::SUCCESS), "{fid:#x}");
            // Each advertised id is handled (never answers NOT_SUPPORTED).
            let direct = call(fid, [u64::from(id::PSCI_VERSION), 0, 0]);
            assert_ne!(direct, PsciOutcome::Return(ret::NOT_SUPPORTED), "{fid:#x}");
        }
        let unsupported: [u32; 6] = [
            smccc::arch::SMCCC_VERSION,
            0x8400_0005, // MIGRATE
            0x8400_0007, // MIGRATE_INFO_UP_CPU
            0x8400_0012, // SYSTEM_RESET2
            0xC400_0002, // CPU_OFF has no SMC64 form
            0xC600_0000, // a spumone hypercall
        ];
        for fid in unsupported {
            let outcome = call(id::PSCI_FEATURES, [u64::from(fid), 0, 0]);
            assert_eq!(outcome, PsciOutcome::Return(ret::NOT_SUPPORTED), "{fid:#x}");
        }
        // The queried id is a 32-bit argument.
        let outcome = call(id::PSCI_FEATURES, [0xFFFF_FFFF_8400_0000, 0, 0]);
        assert_eq!(outcome, PsciOutcome::Return(ret::SUCCESS));
    }

    #[test]
    fn cpu_on_starts_an_off_vcpu() {
        for fid in [id::CPU_ON_32, id::CPU_ON_64] {
            let outcome = call(fid, [1, 0x4400_1000, 0xC0FFEE]);
            assert_eq!(
                outcome,
                PsciOutcome::CpuOn {
                    vcpu: 1,
                    entry: 0x4400_1000,
                    context_id: 0xC0FFEE,
                }
            );
            assert_eq!(outcome.return_value(), Some(ret::SUCCESS));
        }
        // Entry in the second RAM range.
        assert!(matches!(
            call(id::CPU_ON_64, [1, 0x500F_FFFC, 0]),
            PsciOutcome::CpuOn { vcpu: 1, .. }
        ));
    }

    #[test]
    fn cpu_on_rejects_bad_targets() {
        for target in [3, 0x100, 0x1_0000, 0x1_0000_0001, 0x8000_0001] {
            assert_eq!(
                call(id::CPU_ON_64, [target, 0x4400_0000, 0]),
                PsciOutcome::Return(ret::INVALID_PARAMETERS),
                "{target:#x}"
            );
        }
        assert_eq!(
            call(id::CPU_ON_64, [0, 0x4400_0000, 0]),
            PsciOutcome::Return(ret::ALREADY_ON)
        );
        assert_eq!(
            call(id::CPU_ON_64, [2, 0x4400_0000, 0]),
            PsciOutcome::Return(ret::ON_PENDING)
        );
    }

    #[test]
    fn cpu_on_rejects_entry_outside_ram() {
        for entry in [0x43FF_FFFC, 0x4800_0000, 0x5010_0000, 0, 0x4400_0002] {
            assert_eq!(
                call(id::CPU_ON_64, [1, entry, 0]),
                PsciOutcome::Return(ret::INVALID_ADDRESS),
                "{entry:#x}"
            );
        }
        assert_eq!(ret::INVALID_ADDRESS, 0xFFFF_FFFF_FFFF_FFF7);
    }

    #[test]
    fn smc32_cpu_on_ignores_upper_halves() {
        let outcome = call(
            id::CPU_ON_32,
            [0xFFFF_FFFF_0000_0001, 0x1_4400_0000, 0xAAAA_AAAA_1234_5678],
        );
        assert_eq!(
            outcome,
            PsciOutcome::CpuOn {
                vcpu: 1,
                entry: 0x4400_0000,
                context_id: 0x1234_5678,
            }
        );
        // The SMC64 form keeps them, so the same target is invalid.
        assert_eq!(
            call(id::CPU_ON_64, [0xFFFF_FFFF_0000_0001, 0x4400_0000, 0]),
            PsciOutcome::Return(ret::INVALID_PARAMETERS)
        );
    }

    #[test]
    fn affinity_info_reports_each_state() {
        for fid in [id::AFFINITY_INFO_32, id::AFFINITY_INFO_64] {
            assert_eq!(call(fid, [0, 0, 0]), PsciOutcome::Return(0));
            assert_eq!(call(fid, [1, 0, 0]), PsciOutcome::Return(1));
            assert_eq!(call(fid, [2, 0, 0]), PsciOutcome::Return(2));
            assert_eq!(
                call(fid, [3, 0, 0]),
                PsciOutcome::Return(ret::INVALID_PARAMETERS)
            );
            assert_eq!(
                call(fid, [0, 1, 0]),
                PsciOutcome::Return(ret::INVALID_PARAMETERS)
            );
        }
    }

    #[test]
    fn power_calls_describe_what_to_do() {
        let cases = [
            (id::CPU_OFF, PsciOutcome::CpuOff),
            (id::SYSTEM_OFF, PsciOutcome::SystemOff),
            (id::SYSTEM_RESET, PsciOutcome::SystemReset),
        ];
        for (fid, expected) in cases {
            let outcome = call(fid, [0; 3]);
            assert_eq!(outcome, expected);
            assert_eq!(outcome.return_value(), None);
        }
        for fid in [id::CPU_SUSPEND_32, id::CPU_SUSPEND_64] {
            let outcome = call(fid, [0x0001_0000, 0x4400_0000, 0]);
            assert_eq!(outcome, PsciOutcome::Suspend);
            assert_eq!(outcome.return_value(), Some(ret::SUCCESS));
        }
    }

    #[test]
    fn migrate_info_type_says_not_needed() {
        assert_eq!(call(id::MIGRATE_INFO_TYPE, [0; 3]), PsciOutcome::Return(2));
    }

    #[test]
    fn unknown_ids_are_not_supported() {
        for fid in [
            id::MIGRATE_32,
            id::MIGRATE_64,
            id::MIGRATE_INFO_UP_CPU_32,
            id::MIGRATE_INFO_UP_CPU_64,
            id::SYSTEM_RESET2_32,
            id::SYSTEM_RESET2_64,
            0x8400_001F,
            0x8000_0000,
            0xC600_0001,
        ] {
            assert_eq!(
                call(fid, [1, 0x4400_0000, 0]),
                PsciOutcome::Return(ret::NOT_SUPPORTED),
                "{fid:#x}"
            );
        }
        assert_eq!(ret::NOT_SUPPORTED, u64::MAX);
    }

    #[test]
    fn from_regs_takes_w0() {
        let c = PsciCall::from_regs(&[0xDEAD_0000_8400_0000, 1, 2, 3]);
        assert_eq!(c.function_id, id::PSCI_VERSION);
        assert_eq!(c.args, [1, 2, 3]);
    }

    #[test]
    fn psci_range_and_mpidr() {
        assert!(is_psci(0x8400_0000) && is_psci(0xC400_001F));
        assert!(!is_psci(0x8400_0020) && !is_psci(0xC600_0000) && !is_psci(0x8000_0000));
        assert_eq!(vcpu_mpidr(0), 0x8000_0000);
        assert_eq!(vcpu_mpidr(3), 0x8000_0003);
        // The affinity a guest reads back names the same vCPU.
        let mpidr = vcpu_mpidr(2) & 0xFF_00FF_FFFF;
        assert_eq!(target_vcpu(mpidr, &partition()), Some(2));
    }
}
