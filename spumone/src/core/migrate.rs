//! Moving a vCPU from one physical core to another.
//!
//! # What
//!
//! Each vCPU has a [`Migration`], a small state machine of where it lives:
//!
//! ```text
//!   Running(a) --request(b)--> Leaving{a, b} --depart(a)--> InFlight{b} --arrive(b)--> Running(b)
//!                               |  request(c): retarget to c;  request(a): cancel
//! ```
//!
//! `Running(c)` means "placed on core c" (in c's [`RunQueue`](super::sched::RunQueue), ready
//! or waiting), not necessarily executing. What moves with the vCPU is a [`MigrationState`]:
//! its register context, its vGIC list registers, queue and priority state, its virtual timer,
//! and its scheduling state; the physical routing of its interrupts changes as a list of
//! [`Route`] effects.
//!
//! # Why
//!
//! The source core is the only one that may save the vCPU (it may be executing it), and the
//! target the only one that may load it, so the hand-over is two posted messages, each
//! followed by the kick SGI ([`super::smp::KICK_SGI`]): a request to the source, then the
//! state to the target. The state machine makes the invariants checkable on the host.
//!
//! # Invariants (tested below, also under random sequences)
//!
//! - A vCPU is runnable on at most one core: [`Migration::runnable_on`] is `Some(from)` until
//!   it departs, `None` while in flight, `Some(to)` once it arrived.
//! - One migration at a time: a request while leaving retargets (or cancels) it, a request
//!   while in flight is refused ([`Refused::InFlight`]); the policy asks again later.
//! - No interrupt is lost or duplicated: interrupts posted for the vCPU (its per-vCPU
//!   [`Posted`](super::smp::Posted) mailbox, which does not depend on the core) are taken by
//!   whichever core [`Migration::deliver_to`] names, and its pending/active list travels in
//!   [`VgicState`]. A physical interrupt that still reaches the old core after the vCPU left
//!   is handed on to the core `deliver_to` names, never dropped.
//!
//! # How the arch layer drives it
//!
//! 1. Any core (the policy, a DSM action) calls `request(to)` under the vCPU's lock; the new
//!    state is the posted request. On `Started { kick }` it sends the kick SGI to core `kick`.
//! 2. The source core, at its kick: for each vCPU leaving it, take it off its run queue
//!    (saving its context first if loaded), fill a [`MigrationState`] (list registers through
//!    [`departing_lrs`], deactivating the listed physical PPIs on this core after its virtual
//!    timer is off, so they do not fire again here; its SPIs' new routes through
//!    [`reroutes`]), call `depart(core)`, post the state to the target's mailbox and kick the
//!    target.
//! 3. The target, at its kick: take the state, `arrive(core)`, apply its routes to the
//!    distributor, add the vCPU to its run queue with its class, run state and timer
//!    deadline, keep the vGIC state for the next load, and take the vCPU's posted interrupts.
//!
//! Routes change only on arrival, so until then the vCPU's SPIs still reach the source,
//! which hands them on to `deliver_to` (the target) like any interrupt for a vCPU that is not
//! here; after it they reach the target directly.
//!
//! The virtual counter offset (`CNTVOFF_EL2`) is 0 on every core, so a timer deadline means
//! the same on the target as on the source.

use super::sched::{Class, RunState, Ticks, VcpuId};
use super::vgic::{ListReg, LrState, PendingQueue, MAX_SPIS};

/// Most list registers a GICv3 CPU interface has (`ICH_VTR_EL2.ListRegs` + 1).
pub const MAX_LRS: usize = 16;

/// Where a vCPU lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Location {
    /// Placed on this core.
    Running(u8),
    /// Still on `from` (may even execute there); `from` was asked to send it to `to`.
    Leaving { from: u8, to: u8 },
    /// Saved and posted to `to`; no core may run it.
    InFlight { to: u8 },
}

/// Answer to an accepted [`Migration::request`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requested {
    /// A new migration: send the kick SGI to core `kick` (the source).
    Started { kick: u8 },
    /// It was already leaving; now it goes to the new target (the source was kicked before).
    Retargeted,
    /// It was leaving and is asked back to where it is: it stays.
    Cancelled,
    /// The same request is already under way.
    Coalesced,
}

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// It already lives on the requested core.
    AlreadyThere,
    /// It is between cores; ask again after it arrived.
    InFlight,
}

/// A step taken by the wrong core or at the wrong time (an arch-layer bug).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Misstep {
    pub location: Location,
}

/// Migration state of one vCPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Migration {
    location: Location,
}

impl Migration {
    /// A vCPU placed on `core`.
    pub const fn new(core: u8) -> Self {
        Self {
            location: Location::Running(core),
        }
    }

    pub const fn location(&self) -> Location {
        self.location
    }

    /// The core whose run queue holds the vCPU, `None` while it is in flight.
    pub const fn runnable_on(&self) -> Option<u8> {
        match self.location {
            Location::Running(c) | Location::Leaving { from: c, .. } => Some(c),
            Location::InFlight { .. } => None,
        }
    }

    /// The core that takes interrupts posted for the vCPU and must be kicked: where it lives,
    /// or where it is going while in flight (that core takes them when it arrives).
    pub const fn deliver_to(&self) -> u8 {
        match self.location {
            Location::Running(c) | Location::Leaving { from: c, .. } => c,
            Location::InFlight { to } => to,
        }
    }

    /// Whether core `core` must send this vCPU away at its next kick.
    pub const fn leaving(&self, core: u8) -> bool {
        matches!(self.location, Location::Leaving { from, .. } if from == core)
    }

    /// Asks for the vCPU to move to core `to`.
    pub fn request(&mut self, to: u8) -> Result<Requested, Refused> {
        match self.location {
            Location::Running(c) if c == to => Err(Refused::AlreadyThere),
            Location::Running(from) => {
                self.location = Location::Leaving { from, to };
                Ok(Requested::Started { kick: from })
            }
            Location::Leaving { from, .. } if from == to => {
                self.location = Location::Running(from);
                Ok(Requested::Cancelled)
            }
            Location::Leaving { to: t, .. } if t == to => Ok(Requested::Coalesced),
            Location::Leaving { from, .. } => {
                self.location = Location::Leaving { from, to };
                Ok(Requested::Retargeted)
            }
            Location::InFlight { .. } => Err(Refused::InFlight),
        }
    }

    /// Core `core` took the vCPU off its run queue and saved it; returns the target to post
    /// its state to.
    pub fn depart(&mut self, core: u8) -> Result<u8, Misstep> {
        match self.location {
            Location::Leaving { from, to } if from == core => {
                self.location = Location::InFlight { to };
                Ok(to)
            }
            location => Err(Misstep { location }),
        }
    }

    /// Core `core` took the posted state; the vCPU now lives there.
    pub fn arrive(&mut self, core: u8) -> Result<(), Misstep> {
        match self.location {
            Location::InFlight { to } if to == core => {
                self.location = Location::Running(core);
                Ok(())
            }
            location => Err(Misstep { location }),
        }
    }
}

/// EL1 system registers a guest owns (saved and restored as they are).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct El1Regs {
    pub sctlr: u64,
    pub ttbr0: u64,
    pub ttbr1: u64,
    pub tcr: u64,
    pub mair: u64,
    pub amair: u64,
    pub vbar: u64,
    pub contextidr: u64,
    pub cpacr: u64,
    pub esr: u64,
    pub far: u64,
    pub afsr0: u64,
    pub afsr1: u64,
    pub par: u64,
    pub elr: u64,
    pub spsr: u64,
    pub sp_el0: u64,
    pub sp_el1: u64,
    pub tpidr_el0: u64,
    pub tpidrro_el0: u64,
    pub tpidr_el1: u64,
    pub cntkctl: u64,
    pub csselr: u64,
    pub mdscr: u64,
    /// What the guest reads as `MPIDR_EL1` (`VMPIDR_EL2`): it names the vCPU, not the core.
    pub vmpidr: u64,
}

/// FP/SIMD state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FpRegs {
    pub q: [u128; 32],
    pub fpsr: u64,
    pub fpcr: u64,
}

/// A vCPU's register context.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuContext {
    pub x: [u64; 31],
    /// `ELR_EL2`: where the guest resumes.
    pub pc: u64,
    /// `SPSR_EL2`: its PSTATE.
    pub pstate: u64,
    pub el1: El1Regs,
    pub fp: FpRegs,
}

/// The virtual timer (`CNTV_CTL_EL0`, `CNTV_CVAL_EL0`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VtimerState {
    pub ctl: u64,
    pub cval: u64,
}

impl VtimerState {
    const ENABLE: u64 = 1 << 0;
    const IMASK: u64 = 1 << 1;

    /// When the timer raises its interrupt, if it is enabled and unmasked: the deadline the
    /// scheduler tracks while the vCPU is not loaded.
    pub const fn deadline(&self) -> Option<Ticks> {
        if self.ctl & Self::ENABLE != 0 && self.ctl & Self::IMASK == 0 {
            Some(self.cval)
        } else {
            None
        }
    }
}

/// A vCPU's virtual CPU interface state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VgicState {
    /// Its live list registers (pending and/or active), from [`departing_lrs`].
    pub lrs: heapless::Vec<ListReg, MAX_LRS>,
    /// Interrupts waiting for a free list register.
    pub queue: PendingQueue,
    /// `ICH_VMCR_EL2`: the guest's priority mask and enables.
    pub vmcr: u64,
    /// `ICH_AP0R<n>_EL2`, `ICH_AP1R<n>_EL2`: active priorities.
    pub ap0r: [u32; 4],
    pub ap1r: [u32; 4],
}

/// A physical interrupt whose routing changes: route `intid` to `core`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    pub intid: u32,
    pub core: u8,
}

/// Routing changes for a migration (at most every SPI a partition owns).
pub type Routes = heapless::Vec<Route, MAX_SPIS>;

/// Everything that moves with a vCPU, posted from the source core to the target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MigrationState {
    pub id: VcpuId,
    /// The core it left (for the target's log).
    pub from: u8,
    pub class: Class,
    pub run_state: RunState,
    pub context: VcpuContext,
    pub vtimer: VtimerState,
    pub vgic: VgicState,
    /// Where its SPIs must be routed now (applied by the target on arrival).
    pub routes: Routes,
}

/// What the source core keeps from its list registers when a vCPU leaves.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Departure {
    /// The vCPU's live list registers, as they must be restored on the target.
    pub lrs: heapless::Vec<ListReg, MAX_LRS>,
    /// Physical private interrupts (PPIs) active on this core for the vCPU: deactivate them
    /// here (`ICC_DIR_EL1`) before it leaves, or this core never takes them again.
    pub deactivate: heapless::Vec<u32, MAX_LRS>,
}

/// Sorts out the list registers `lrs` (raw `ICH_LR<n>_EL2` values) of a departing vCPU.
///
/// An SPI's active state lives in the distributor, so a hardware-backed SPI keeps its link and
/// the guest's EOI on the target deactivates it there. A PPI's active state lives in the
/// source core's redistributor: it is deactivated on the source, and the vCPU keeps only the
/// virtual part. A still-pending hardware PPI is dropped: PPIs forwarded to guests (the
/// virtual timer) are level-sensitive, so the device raises it again on the target while its
/// condition holds (the timer's `CVAL` moves with the vCPU). An active one stays active as a
/// software interrupt, so the guest's EOI completes it without touching hardware.
pub fn departing_lrs(lrs: &[u64]) -> Departure {
    let mut out = Departure::default();
    for lr in lrs.iter().map(|&v| ListReg::decode(v)) {
        let kept = match (lr.state, lr.pintid) {
            (LrState::Invalid, _) => continue,
            (state, Some(p)) if p < 32 => {
                // Capacity: at most one entry per list register.
                let _ = out.deactivate.push(p);
                match state {
                    LrState::Pending => continue,
                    _ => ListReg {
                        pintid: None,
                        state: LrState::Active,
                        ..lr
                    },
                }
            }
            _ => lr,
        };
        let _ = out.lrs.push(kept);
    }
    out
}

/// Routing changes for a vCPU moving to core `to`: every hardware interrupt (SPI) that targets
/// it, given by `intids`, now goes to `to`.
pub fn reroutes(intids: impl Iterator<Item = u32>, to: u8) -> Routes {
    intids
        .filter(|&i| i >= super::vgic::SPI_BASE)
        .map(|intid| Route { intid, core: to })
        .take(MAX_SPIS)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::sched::{RunQueue, XorShift};
    use super::super::smp::Posted;
    use super::super::vgic::{Delivery, VTIMER_INTID};
    use super::*;

    const D: Delivery = Delivery {
        priority: 0xa0,
        group1: true,
    };

    #[test]
    fn request_depart_arrive() {
        let mut m = Migration::new(1);
        assert_eq!(m.request(1), Err(Refused::AlreadyThere));
        assert_eq!(m.request(3), Ok(Requested::Started { kick: 1 }));
        assert_eq!(m.runnable_on(), Some(1));
        assert!(m.leaving(1) && !m.leaving(3));
        assert_eq!(
            m.arrive(3),
            Err(Misstep {
                location: m.location()
            })
        );
        assert_eq!(
            m.depart(2),
            Err(Misstep {
                location: m.location()
            })
        );
        assert_eq!(m.depart(1), Ok(3));
        assert_eq!(m.runnable_on(), None);
        assert_eq!(m.deliver_to(), 3);
        assert_eq!(m.request(0), Err(Refused::InFlight));
        assert_eq!(
            m.depart(1),
            Err(Misstep {
                location: m.location()
            })
        );
        assert_eq!(m.arrive(3), Ok(()));
        assert_eq!(m.location(), Location::Running(3));
        assert_eq!(m.runnable_on(), Some(3));
    }

    #[test]
    fn requests_while_leaving_coalesce() {
        let mut m = Migration::new(0);
        assert_eq!(m.request(2), Ok(Requested::Started { kick: 0 }));
        assert_eq!(m.request(2), Ok(Requested::Coalesced));
        assert_eq!(m.request(3), Ok(Requested::Retargeted));
        assert_eq!(m.location(), Location::Leaving { from: 0, to: 3 });
        assert_eq!(m.request(0), Ok(Requested::Cancelled));
        assert_eq!(m.location(), Location::Running(0));
        // A stale kick finds nothing to send.
        assert!(!m.leaving(0));
        assert!(m.depart(0).is_err());
    }

    #[test]
    fn vtimer_deadline_needs_enable_and_no_mask() {
        let t = |ctl| VtimerState { ctl, cval: 1234 }.deadline();
        assert_eq!(t(0b001), Some(1234));
        assert_eq!(t(0b101), Some(1234), "ISTATUS is read-only, ignored");
        assert_eq!(t(0b011), None);
        assert_eq!(t(0b000), None);
    }

    #[test]
    fn departing_lrs_release_private_hardware_state() {
        let hw = |intid, state| ListReg {
            state,
            ..ListReg::hardware(intid, D)
        };
        let sw = |intid, state| ListReg {
            state,
            ..ListReg::software(intid, D)
        };
        let lrs = [
            hw(VTIMER_INTID, LrState::Active).encode(),
            hw(40, LrState::PendingActive).encode(),
            sw(3, LrState::Pending).encode(),
            0,
            hw(26, LrState::Pending).encode(),
            sw(5, LrState::Invalid).encode(),
        ];
        let d = departing_lrs(&lrs);
        assert_eq!(
            d.lrs.as_slice(),
            &[
                sw(VTIMER_INTID, LrState::Active),
                hw(40, LrState::PendingActive),
                sw(3, LrState::Pending),
            ]
        );
        assert_eq!(d.deactivate.as_slice(), &[VTIMER_INTID, 26]);
    }

    #[test]
    fn reroutes_only_spis() {
        let r = reroutes([27, 33, 40].into_iter(), 2);
        assert_eq!(
            r.as_slice(),
            &[Route { intid: 33, core: 2 }, Route { intid: 40, core: 2 }]
        );
    }

    const CORES: usize = 4;
    const VCPUS: usize = 3;

    /// A model machine: per-core run queues and per-core vGIC storage of resident vCPUs,
    /// per-vCPU migration state and posted-interrupt mailboxes, per-core mailboxes of states
    /// in flight. The guest "takes" interrupts only from the vGIC state of a loaded vCPU.
    struct Machine {
        queues: [RunQueue; CORES],
        resident: [[Option<VgicState>; VCPUS]; CORES],
        inbox: [heapless::Vec<MigrationState, VCPUS>; CORES],
        migration: [Migration; VCPUS],
        posted: [Posted; VCPUS],
        /// What the model says is pending for each vCPU (bit n: INTID n).
        truth: [u32; VCPUS],
        raised: u64,
        taken: u64,
        migrations: u64,
        /// Kick SGIs sent and not yet taken, per core.
        kicks: [bool; CORES],
    }

    fn id(v: usize) -> VcpuId {
        VcpuId::new(1, v as u8)
    }

    /// List registers the model's CPU interface has (QEMU's has 4).
    const LRS: usize = 4;
    /// Distinct INTIDs raised: as many as the list registers and the queue hold together.
    const INTIDS: u64 = (LRS + PendingQueue::CAPACITY) as u64;

    /// INTIDs pending in the list registers or queued for one.
    fn pending_bits(g: &VgicState) -> u32 {
        let mut queue = g.queue;
        let mut bits = 0;
        while let Some(l) = queue.pop() {
            bits |= 1 << l.vintid;
        }
        g.lrs
            .iter()
            .filter(|l| matches!(l.state, LrState::Pending | LrState::PendingActive))
            .fold(bits, |acc, l| acc | 1 << l.vintid)
    }

    impl Machine {
        fn new() -> Self {
            let mut m = Machine {
                queues: core::array::from_fn(|_| RunQueue::new(50, 5)),
                resident: Default::default(),
                inbox: Default::default(),
                migration: core::array::from_fn(|v| Migration::new(v as u8)),
                posted: Default::default(),
                truth: [0; VCPUS],
                raised: 0,
                taken: 0,
                migrations: 0,
                kicks: [false; CORES],
            };
            for v in 0..VCPUS {
                m.queues[v]
                    .add(id(v), Class::Linux, RunState::Ready, None)
                    .unwrap();
                m.resident[v][v] = Some(VgicState::default());
            }
            m
        }

        /// A device or another vCPU raises SGI/PPI `intid` for vCPU `v`.
        fn raise(&mut self, v: usize, intid: u32) {
            if self.truth[v] & 1 << intid != 0 {
                // Still pending: a second edge merges with it, as on a GIC.
                return;
            }
            self.raised += 1;
            self.truth[v] |= 1 << intid;
            if self.posted[v].post(1 << intid) {
                self.kicks[usize::from(self.migration[v].deliver_to())] = true;
            }
        }

        fn request(&mut self, v: usize, to: u8) {
            if let Ok(Requested::Started { kick }) = self.migration[v].request(to) {
                self.kicks[usize::from(kick)] = true;
            }
        }

        /// Core `c` takes its kick SGI, if one was sent.
        fn kicked(&mut self, c: usize, now: Ticks) {
            if core::mem::take(&mut self.kicks[c]) {
                self.service(c, now);
            }
        }

        /// Core `c` handles its kick: sends leaving vCPUs, takes arriving ones, moves posted
        /// interrupts into resident vCPUs' vGIC state, schedules.
        fn service(&mut self, c: usize, now: Ticks) {
            for v in 0..VCPUS {
                if !self.migration[v].leaving(c as u8) {
                    continue;
                }
                let removed = self.queues[c].remove(id(v)).expect("leaving vCPU is here");
                let mut vgic = self.resident[c][v].take().expect("vGIC state is here");
                let raw: heapless::Vec<u64, MAX_LRS> =
                    vgic.lrs.iter().map(|l| l.encode()).collect();
                let departure = departing_lrs(&raw);
                assert!(departure.deactivate.is_empty(), "no hardware PPIs here");
                vgic.lrs = departure.lrs;
                let to = self.migration[v].depart(c as u8).unwrap();
                self.kicks[usize::from(to)] = true;
                let state = MigrationState {
                    id: id(v),
                    from: c as u8,
                    class: removed.class,
                    run_state: removed.state,
                    context: VcpuContext::default(),
                    vtimer: VtimerState::default(),
                    vgic,
                    routes: reroutes([40 + v as u32].into_iter(), to),
                };
                self.inbox[usize::from(to)].push(state).unwrap();
                self.migrations += 1;
            }
            while let Some(s) = self.inbox[c].pop() {
                let v = usize::from(s.id.vcpu);
                self.migration[v].arrive(c as u8).unwrap();
                assert!(s.routes.iter().all(|r| usize::from(r.core) == c));
                self.queues[c]
                    .add(s.id, s.class, s.run_state, s.vtimer.deadline())
                    .unwrap();
                assert!(self.resident[c][v].replace(s.vgic).is_none());
            }
            for v in 0..VCPUS {
                if let Some(g) = self.resident[c][v].as_mut() {
                    let mut bits = self.posted[v].take();
                    while bits != 0 {
                        let intid = bits.trailing_zeros();
                        bits &= bits - 1;
                        if pending_bits(g) & 1 << intid != 0 {
                            continue;
                        }
                        let lr = ListReg::software(intid, D);
                        if g.lrs.len() < LRS {
                            g.lrs.push(lr).unwrap();
                        } else {
                            g.queue.push(lr).unwrap();
                        }
                    }
                    if pending_bits(g) != 0 {
                        self.queues[c].wake(id(v));
                    }
                }
            }
            self.queues[c].schedule(now, None);
        }

        /// The guest loaded on core `c` acknowledges and completes one interrupt.
        fn guest_takes(&mut self, c: usize) {
            let Some(loaded) = self.queues[c].loaded() else {
                return;
            };
            if self.queues[c].state(loaded) != Some(RunState::Ready) {
                // Loaded but waiting (the core idles): the guest does not run.
                return;
            }
            let v = usize::from(loaded.vcpu);
            let g = self.resident[c][v].as_mut().expect("loaded vCPU's vGIC");
            if let Some(n) = g.lrs.iter().position(|l| l.state == LrState::Pending) {
                let intid = g.lrs.swap_remove(n).vintid;
                // The maintenance interrupt refills the freed list register.
                if let Some(next) = g.queue.pop() {
                    g.lrs.push(next).unwrap();
                }
                assert_ne!(self.truth[v] & 1 << intid, 0, "duplicate interrupt {intid}");
                self.truth[v] &= !(1 << intid);
                self.taken += 1;
            } else {
                // Nothing pending: the guest sleeps in WFI until a posted interrupt wakes it.
                self.queues[c].wfi(false);
            }
        }

        fn check(&self) {
            for v in 0..VCPUS {
                let on: heapless::Vec<usize, CORES> = (0..CORES)
                    .filter(|&c| self.queues[c].contains(id(v)))
                    .collect();
                assert!(on.len() <= 1, "vCPU {v} runnable on cores {on:?}");
                assert_eq!(
                    on.first().map(|&c| c as u8),
                    self.migration[v].runnable_on()
                );
                let held = (0..CORES)
                    .filter(|&c| self.resident[c][v].is_some())
                    .count()
                    + self
                        .inbox
                        .iter()
                        .flatten()
                        .filter(|s| s.id == id(v))
                        .count();
                assert_eq!(held, 1, "vGIC state of vCPU {v} exists exactly once");
            }
        }
    }

    #[test]
    fn random_migrations_never_lose_or_duplicate_interrupts() {
        let mut total = 0;
        for seed in 1..=20u64 {
            let mut rng = XorShift::new(seed);
            let mut m = Machine::new();
            let mut now = 0;
            for _ in 0..10_000 {
                now += 1 + rng.below(20);
                let v = rng.below(VCPUS as u64) as usize;
                let c = rng.below(CORES as u64) as usize;
                match rng.below(8) {
                    0 | 1 => m.request(v, c as u8),
                    2 => m.raise(v, rng.below(INTIDS) as u32),
                    3 => m.guest_takes(c),
                    4 => {
                        // Interrupts that arrive while the vCPU is between cores.
                        if m.migration[v].runnable_on().is_none() {
                            m.raise(v, rng.below(INTIDS) as u32);
                        }
                        m.kicked(c, now);
                    }
                    // Now and then a core looks without a kick (its EL2 timer).
                    5 if rng.below(8) == 0 => m.service(c, now),
                    _ => m.kicked(c, now),
                }
                m.check();
            }
            // Drain: cores take their kicks until none is left; nothing may be left behind.
            while m.kicks.contains(&true) {
                for c in 0..CORES {
                    m.kicked(c, now);
                }
            }
            for v in 0..VCPUS {
                assert_eq!(
                    m.posted[v].take(),
                    0,
                    "posted to vCPU {v} but nobody kicked"
                );
            }
            for v in 0..VCPUS {
                assert!(matches!(m.migration[v].location(), Location::Running(_)));
                let c = usize::from(m.migration[v].runnable_on().unwrap());
                let g = m.resident[c][v].as_ref().unwrap();
                assert_eq!(pending_bits(g), m.truth[v], "lost interrupt of vCPU {v}");
            }
            assert_eq!(
                m.raised,
                m.taken
                    + m.truth
                        .iter()
                        .map(|t| u64::from(t.count_ones()))
                        .sum::<u64>()
            );
            eprintln!(
                "seed {seed}: {} migrations, {} interrupts",
                m.migrations, m.raised
            );
            assert!(m.migrations > 600, "seed {seed}: too few migrations");
            total += m.migrations;
        }
        assert!(total > 10_000);
    }
}
