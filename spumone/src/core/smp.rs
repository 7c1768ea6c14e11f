//! Decisions for vCPUs of one partition on several cores: the hypervisor's kick SGI, the
//! per-vCPU set of posted virtual interrupts, where a virtual SGI goes in the list registers,
//! and the PSCI power state of a vCPU.

use core::sync::atomic::{AtomicU32, Ordering};

use super::vgic::{ListReg, LrState};
use super::vpsci::VcpuPower;

/// The physical SGI one core sends another to make it look at its mailboxes (a PSCI
/// `CPU_ON` request, virtual interrupts posted for its vCPU, its partition stopped). Guests
/// never see physical SGIs, their SGIs are virtual, so any INTID below 16 would do.
pub const KICK_SGI: u32 = 8;

/// The `ICC_SGI1R_EL1` value that sends SGI `intid` to exactly the core with `mpidr`.
pub const fn sgi1r_to(intid: u32, mpidr: u64) -> u64 {
    let aff0 = mpidr & 0xff;
    let aff1 = (mpidr >> 8) & 0xff;
    let aff2 = (mpidr >> 16) & 0xff;
    let aff3 = (mpidr >> 32) & 0xff;
    // The target list holds 16 Aff0 values; RS selects which 16.
    (aff3 << 48)
        | ((aff0 >> 4) << 44)
        | (aff2 << 32)
        | ((intid as u64 & 0xf) << 24)
        | (aff1 << 16)
        | (1 << (aff0 & 0xf))
}

/// Software-generated interrupts (SGIs, software-pending PPIs) posted to one vCPU by any
/// core, bit n for INTID n, until the core running it moves them into its vGIC.
#[derive(Debug, Default)]
pub struct Posted(AtomicU32);

impl Posted {
    pub const fn new() -> Self {
        Self(AtomicU32::new(0))
    }

    /// Posts `bits`; `true` if none was posted before (the target needs a kick).
    pub fn post(&self, bits: u32) -> bool {
        // Release: the taker sees whatever the poster did before.
        self.0.fetch_or(bits, Ordering::Release) == 0
    }

    /// Takes everything posted so far.
    pub fn take(&self) -> u32 {
        self.0.swap(0, Ordering::Acquire)
    }

    /// What is posted, left in place (whether a vCPU that is not loaded must be woken).
    pub fn peek(&self) -> u32 {
        self.0.load(Ordering::Acquire)
    }
}

/// Where a software interrupt for `vintid` goes among the list registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Already pending in a list register: nothing to do (edge interrupts coalesce).
    AlreadyPending,
    /// Active in list register `n` (software): write this value to make it pending too.
    Merge(usize, u64),
    /// Write it to free list register `n`.
    Free(usize),
    /// No room (or held active by hardware): queue it for the maintenance interrupt.
    Queue,
}

/// Decides where a software interrupt `vintid` goes, given the list registers' values and
/// `ICH_ELRSR_EL2` (bit set = empty). Two list registers must never hold the same vINTID.
pub fn place(lrs: &[u64], elrsr: u64, vintid: u32) -> Placement {
    for (n, &value) in lrs.iter().enumerate() {
        let lr = ListReg::decode(value);
        if lr.vintid != vintid || lr.state == LrState::Invalid {
            continue;
        }
        return match (lr.state, lr.pintid) {
            (LrState::Active, None) => Placement::Merge(
                n,
                ListReg {
                    state: LrState::PendingActive,
                    ..lr
                }
                .encode(),
            ),
            (LrState::Active, Some(_)) => Placement::Queue,
            _ => Placement::AlreadyPending,
        };
    }
    match super::vgic::free_lr(elrsr, lrs.len()) {
        Some(n) => Placement::Free(n),
        None => Placement::Queue,
    }
}

/// A change to a vCPU's PSCI power state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerEvent {
    /// `CPU_ON` for it was accepted; its core has been asked to start it.
    CpuOnAccepted,
    /// Its core entered it.
    Entered,
    /// It called `CPU_OFF`.
    CpuOff,
}

/// The power state after `event` (what `AFFINITY_INFO` then reports).
pub const fn next_power(current: VcpuPower, event: PowerEvent) -> VcpuPower {
    match (current, event) {
        (VcpuPower::Off, PowerEvent::CpuOnAccepted) => VcpuPower::OnPending,
        (_, PowerEvent::Entered) => VcpuPower::On,
        (_, PowerEvent::CpuOff) => VcpuPower::Off,
        // PSCI refuses CPU_ON for a vCPU that is not off, so nothing changes.
        (state, PowerEvent::CpuOnAccepted) => state,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hvcore::vgic::Delivery;
    use crate::hvcore::vpsci::{self, PartitionView, PsciCall, PsciOutcome};

    #[test]
    fn sgi1r_names_exactly_one_core() {
        assert_eq!(sgi1r_to(8, 0x8000_0000), (8 << 24) | 1);
        assert_eq!(sgi1r_to(8, 0x8000_0003), (8 << 24) | 0b1000);
        // Aff0 17 is bit 1 of range 1; Aff1, Aff2, Aff3 in their fields.
        let v = sgi1r_to(3, (0x7 << 32) | (0x5 << 16) | (0x2 << 8) | 17);
        assert_eq!(
            v,
            (0x7 << 48) | (1 << 44) | (0x5 << 32) | (3 << 24) | (0x2 << 16) | 0b10
        );
        // The guest decoder reads the same value back as that Aff0.
        let s = crate::hvcore::vsgi::decode(sgi1r_to(5, 2), 0, 4);
        assert_eq!((s.intid, s.targets), (5, 0b100));
    }

    #[test]
    fn posting_kicks_only_the_first_time() {
        let p = Posted::new();
        assert!(p.post(1 << 3));
        assert!(!p.post(1 << 5));
        assert!(!p.post(1 << 3));
        assert_eq!(p.take(), (1 << 3) | (1 << 5));
        assert_eq!(p.take(), 0);
        assert!(p.post(1));
    }

    fn sw(vintid: u32, state: LrState) -> u64 {
        ListReg {
            state,
            ..ListReg::software(
                vintid,
                Delivery {
                    priority: 0x80,
                    group1: true,
                },
            )
        }
        .encode()
    }

    #[test]
    fn placement_never_duplicates_a_vintid() {
        let lrs = [sw(1, LrState::Pending), sw(2, LrState::Active), 0, 0];
        let elrsr = 0b1100;
        assert_eq!(place(&lrs, elrsr, 1), Placement::AlreadyPending);
        assert_eq!(
            place(&lrs, elrsr, 2),
            Placement::Merge(1, sw(2, LrState::PendingActive))
        );
        assert_eq!(place(&lrs, elrsr, 3), Placement::Free(2));
        let pa = [sw(4, LrState::PendingActive)];
        assert_eq!(place(&pa, 0, 4), Placement::AlreadyPending);
        // An empty LR still holding an old vINTID is free, not a match.
        assert_eq!(place(&[sw(5, LrState::Invalid)], 1, 5), Placement::Free(0));
    }

    #[test]
    fn placement_queues_when_full_or_held_by_hardware() {
        let full = [sw(1, LrState::Pending), sw(2, LrState::Pending)];
        assert_eq!(place(&full, 0, 3), Placement::Queue);
        let hw = ListReg {
            state: LrState::Active,
            ..ListReg::hardware(
                27,
                Delivery {
                    priority: 0,
                    group1: true,
                },
            )
        }
        .encode();
        assert_eq!(place(&[hw, 0], 0b10, 27), Placement::Queue);
    }

    #[test]
    fn cpu_on_state_machine_follows_psci() {
        let ram = [0x4400_0000..0x4800_0000, 0x5000_0000..0x5000_1000];
        let mut vcpus = [VcpuPower::On, VcpuPower::Off, VcpuPower::Off];
        let affinity = |vcpus: &[VcpuPower], n: u64| {
            let view = PartitionView { vcpus, ram: &ram };
            let call = PsciCall {
                function_id: vpsci::id::AFFINITY_INFO_64,
                args: [n, 0, 0],
            };
            vpsci::handle(&call, &view)
        };
        let cpu_on = |vcpus: &[VcpuPower], n: u64| {
            let view = PartitionView { vcpus, ram: &ram };
            let call = PsciCall {
                function_id: vpsci::id::CPU_ON_64,
                args: [n, 0x4400_1000, 7],
            };
            vpsci::handle(&call, &view)
        };
        assert_eq!(
            affinity(&vcpus, 1),
            PsciOutcome::Return(vpsci::AFFINITY_OFF)
        );
        let PsciOutcome::CpuOn { vcpu, .. } = cpu_on(&vcpus, 1) else {
            panic!("CPU_ON refused");
        };
        vcpus[vcpu] = next_power(vcpus[vcpu], PowerEvent::CpuOnAccepted);
        assert_eq!(
            affinity(&vcpus, 1),
            PsciOutcome::Return(vpsci::AFFINITY_ON_PENDING)
        );
        assert_eq!(
            cpu_on(&vcpus, 1),
            PsciOutcome::Return(vpsci::ret::ON_PENDING)
        );
        vcpus[1] = next_power(vcpus[1], PowerEvent::Entered);
        assert_eq!(affinity(&vcpus, 1), PsciOutcome::Return(vpsci::AFFINITY_ON));
        assert_eq!(
            cpu_on(&vcpus, 1),
            PsciOutcome::Return(vpsci::ret::ALREADY_ON)
        );
        vcpus[1] = next_power(vcpus[1], PowerEvent::CpuOff);
        assert_eq!(
            affinity(&vcpus, 1),
            PsciOutcome::Return(vpsci::AFFINITY_OFF)
        );
        // A vCPU that is on stays on if a stale CPU_ON were applied.
        assert_eq!(
            next_power(VcpuPower::On, PowerEvent::CpuOnAccepted),
            VcpuPower::On
        );
        assert!(matches!(
            cpu_on(&vcpus, 1),
            PsciOutcome::CpuOn { vcpu: 1, .. }
        ));
    }
}
