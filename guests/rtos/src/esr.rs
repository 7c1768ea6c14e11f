//! Exception syndromes (ESR_EL1) and what the RTOS does about each exception.

use core::fmt;

/// Exception class: data abort taken without a change of EL.
pub const EC_DATA_ABORT_SAME_EL: u8 = 0x25;
/// Data fault status: synchronous external abort, not on a translation table walk.
/// This is what spumone injects when a stage-2 fault hits an address the partition lacks.
pub const DFSC_SYNC_EXTERNAL: u8 = 0x10;

/// Exception class: `SVC` from AArch64, a task's service call.
pub const EC_SVC64: u8 = 0x15;
/// Exception class: instruction abort taken without a change of EL.
pub const EC_INSTRUCTION_ABORT_SAME_EL: u8 = 0x21;

/// Which of the 16 vector table entries was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VectorSlot {
    pub origin: Origin,
    pub kind: Kind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    CurrentElSp0,
    CurrentElSpx,
    LowerElAarch64,
    LowerElAarch32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Sync,
    Irq,
    Fiq,
    SError,
}

impl VectorSlot {
    /// Entry `index` (0..16) of the table, in architectural order (offset = index × 0x80).
    pub fn from_index(index: u64) -> Self {
        let origin = match (index / 4) % 4 {
            0 => Origin::CurrentElSp0,
            1 => Origin::CurrentElSpx,
            2 => Origin::LowerElAarch64,
            _ => Origin::LowerElAarch32,
        };
        let kind = match index % 4 {
            0 => Kind::Sync,
            1 => Kind::Irq,
            2 => Kind::Fiq,
            _ => Kind::SError,
        };
        VectorSlot { origin, kind }
    }
}

impl fmt::Display for VectorSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let origin = match self.origin {
            Origin::CurrentElSp0 => "current EL, SP0",
            Origin::CurrentElSpx => "current EL, SPx",
            Origin::LowerElAarch64 => "lower EL, AArch64",
            Origin::LowerElAarch32 => "lower EL, AArch32",
        };
        let kind = match self.kind {
            Kind::Sync => "sync",
            Kind::Irq => "irq",
            Kind::Fiq => "fiq",
            Kind::SError => "serror",
        };
        write!(f, "{kind} from {origin}")
    }
}

/// The raw ESR_EL1 value with field accessors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Syndrome(pub u64);

impl Syndrome {
    pub fn ec(self) -> u8 {
        ((self.0 >> 26) & 0x3f) as u8
    }

    /// Data fault status code (meaningful for data aborts).
    pub fn dfsc(self) -> u8 {
        (self.0 & 0x3f) as u8
    }

    /// WnR: the abort came from a write (meaningful for data aborts).
    pub fn is_write(self) -> bool {
        self.0 & (1 << 6) != 0
    }

    pub fn is_external_data_abort_same_el(self) -> bool {
        self.ec() == EC_DATA_ABORT_SAME_EL && self.dfsc() == DFSC_SYNC_EXTERNAL
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Access::Read => "read",
            Access::Write => "write",
        })
    }
}

/// What the handler does with an exception.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// An expected external abort from a probe: report, skip the instruction, resume.
    Contained(Access),
    /// Anything else: report and power off with a failure.
    Unexpected,
}

/// Only a synchronous external data abort from the RTOS's own code (EL1, SP_EL1), while a
/// probe is waiting for one, is survivable. Everything else is a bug.
///
/// `armed` is the access of the probe in flight. The reported direction comes from it, not
/// from ESR.WnR: a hypervisor that injects the abort need not fill in WnR.
pub fn judge(slot: VectorSlot, esr: Syndrome, armed: Option<Access>) -> Verdict {
    let own_sync = slot.origin == Origin::CurrentElSpx && slot.kind == Kind::Sync;
    match armed {
        Some(access) if own_sync && esr.is_external_data_abort_same_el() => {
            Verdict::Contained(access)
        }
        _ => Verdict::Unexpected,
    }
}

/// Where the trap handler sends an exception.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// `SVC #0` from a task or the boot code: a kernel service.
    Service,
    /// An IRQ from a task or the idle loop.
    Interrupt,
    /// An abort in the guard page below stack slot `slot`.
    StackOverflow { slot: usize },
    /// Anything else: see [`judge`].
    Other,
}

/// Sorts an exception out; `guard_slot` maps a fault address to the stack whose guard page
/// holds it. IRQs are taken only from EL1 code (tasks on SP_EL0 or boot code on SP_EL1).
pub fn route(
    slot: VectorSlot,
    esr: Syndrome,
    far: u64,
    guard_slot: impl Fn(u64) -> Option<usize>,
) -> Route {
    let own = matches!(slot.origin, Origin::CurrentElSp0 | Origin::CurrentElSpx);
    match slot.kind {
        Kind::Irq if own => Route::Interrupt,
        Kind::Sync if own => match esr.ec() {
            EC_SVC64 => Route::Service,
            EC_DATA_ABORT_SAME_EL | EC_INSTRUCTION_ABORT_SAME_EL => match guard_slot(far) {
                Some(slot) => Route::StackOverflow { slot },
                None => Route::Other,
            },
            _ => Route::Other,
        },
        _ => Route::Other,
    }
}

/// `rtos: stack overflow in task 7 (guard page hit at 0x..., ELR 0x...)`
pub struct OverflowReport {
    /// The task id, `None` for the idle loop.
    pub task: Option<usize>,
    pub far: u64,
    pub elr: u64,
}

impl fmt::Display for OverflowReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.task {
            Some(task) => write!(f, "rtos: stack overflow in task {task}")?,
            None => f.write_str("rtos: stack overflow in the idle loop")?,
        }
        write!(
            f,
            " (guard page hit at {:#x}, ELR {:#x})",
            self.far, self.elr
        )
    }
}

/// `caught external abort: read at 0x9030000 (esr 0x96000010), continuing`
pub struct ContainedReport {
    pub access: Access,
    pub far: u64,
    pub esr: Syndrome,
}

impl fmt::Display for ContainedReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "caught external abort: {} at {:#x} (esr {:#x}), continuing",
            self.access, self.far, self.esr.0
        )
    }
}

/// The report for an exception the RTOS cannot handle.
pub struct UnexpectedReport {
    pub slot: VectorSlot,
    pub esr: Syndrome,
    pub far: u64,
    pub elr: u64,
}

impl fmt::Display for UnexpectedReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rtos: unexpected exception ({}): EC {:#x}, ESR {:#x}, FAR {:#x}, ELR {:#x}",
            self.slot,
            self.esr.ec(),
            self.esr.0,
            self.far,
            self.elr
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWN_SYNC: VectorSlot = VectorSlot {
        origin: Origin::CurrentElSpx,
        kind: Kind::Sync,
    };

    fn esr(ec: u8, iss: u64) -> Syndrome {
        // IL set: a 32-bit instruction.
        Syndrome((u64::from(ec) << 26) | (1 << 25) | iss)
    }

    #[test]
    fn routes() {
        let task_sync = VectorSlot::from_index(0);
        let task_irq = VectorSlot::from_index(1);
        let guard = |far: u64| (far == 0x1000).then_some(3);
        let svc = esr(EC_SVC64, 0);
        let abort = esr(EC_DATA_ABORT_SAME_EL, 0x07);
        assert_eq!(route(task_sync, svc, 0, guard), Route::Service);
        assert_eq!(route(OWN_SYNC, svc, 0, guard), Route::Service);
        assert_eq!(route(task_irq, Syndrome(0), 0, guard), Route::Interrupt);
        assert_eq!(
            route(VectorSlot::from_index(5), Syndrome(0), 0, guard),
            Route::Interrupt
        );
        assert_eq!(
            route(task_sync, abort, 0x1000, guard),
            Route::StackOverflow { slot: 3 }
        );
        assert_eq!(route(task_sync, abort, 0x2000, guard), Route::Other);
        assert_eq!(route(task_sync, esr(0x00, 0), 0x1000, guard), Route::Other);
        // From a lower EL nothing is ours.
        assert_eq!(
            route(VectorSlot::from_index(8), svc, 0, guard),
            Route::Other
        );
        assert_eq!(
            route(VectorSlot::from_index(2), Syndrome(0), 0, guard),
            Route::Other
        );
    }

    #[test]
    fn overflow_report() {
        let task = OverflowReport {
            task: Some(7),
            far: 0x4604_fff0,
            elr: 0x4400_1234,
        };
        assert_eq!(
            task.to_string(),
            "rtos: stack overflow in task 7 (guard page hit at 0x4604fff0, ELR 0x44001234)"
        );
        let idle = OverflowReport {
            task: None,
            far: 1,
            elr: 2,
        };
        assert!(idle
            .to_string()
            .starts_with("rtos: stack overflow in the idle loop ("));
    }

    #[test]
    fn vector_slots_follow_the_table_order() {
        assert_eq!(
            VectorSlot::from_index(0),
            VectorSlot {
                origin: Origin::CurrentElSp0,
                kind: Kind::Sync
            }
        );
        assert_eq!(VectorSlot::from_index(4), OWN_SYNC);
        assert_eq!(
            VectorSlot::from_index(5),
            VectorSlot {
                origin: Origin::CurrentElSpx,
                kind: Kind::Irq
            }
        );
        assert_eq!(
            VectorSlot::from_index(15),
            VectorSlot {
                origin: Origin::LowerElAarch32,
                kind: Kind::SError
            }
        );
    }

    #[test]
    fn fields_of_a_typical_injected_abort() {
        let s = Syndrome(0x9600_0010);
        assert_eq!(s.ec(), EC_DATA_ABORT_SAME_EL);
        assert_eq!(s.dfsc(), DFSC_SYNC_EXTERNAL);
        assert!(!s.is_write());
        assert!(Syndrome(0x9600_0050).is_write());
    }

    #[test]
    fn armed_external_aborts_are_contained_with_the_probe_direction() {
        let plain = esr(EC_DATA_ABORT_SAME_EL, 0x10);
        let with_wnr = esr(EC_DATA_ABORT_SAME_EL, 0x10 | 1 << 6);
        assert_eq!(
            judge(OWN_SYNC, plain, Some(Access::Read)),
            Verdict::Contained(Access::Read)
        );
        // An injected abort without WnR still belongs to the write probe in flight.
        for syndrome in [plain, with_wnr] {
            assert_eq!(
                judge(OWN_SYNC, syndrome, Some(Access::Write)),
                Verdict::Contained(Access::Write)
            );
        }
    }

    #[test]
    fn the_same_abort_without_a_probe_is_fatal() {
        let read = esr(EC_DATA_ABORT_SAME_EL, 0x10);
        assert_eq!(judge(OWN_SYNC, read, None), Verdict::Unexpected);
    }

    #[test]
    fn other_faults_classes_and_slots_are_fatal() {
        let armed = Some(Access::Read);
        // Translation fault level 3: the RTOS's own mapping is wrong, not contained.
        let translation = esr(EC_DATA_ABORT_SAME_EL, 0x07);
        assert_eq!(judge(OWN_SYNC, translation, armed), Verdict::Unexpected);
        // Data abort from a lower EL, instruction abort, undefined instruction.
        for ec in [0x24, 0x21, 0x00] {
            assert_eq!(judge(OWN_SYNC, esr(ec, 0x10), armed), Verdict::Unexpected);
        }
        // An SError or an abort on SP0 is not the probe's.
        let abort = esr(EC_DATA_ABORT_SAME_EL, 0x10);
        for index in [0, 7] {
            assert_eq!(
                judge(VectorSlot::from_index(index), abort, armed),
                Verdict::Unexpected
            );
        }
    }

    #[test]
    fn report_lines() {
        let contained = ContainedReport {
            access: Access::Read,
            far: 0x903_0000,
            esr: Syndrome(0x9600_0010),
        };
        assert_eq!(
            contained.to_string(),
            "caught external abort: read at 0x9030000 (esr 0x96000010), continuing"
        );
        let unexpected = UnexpectedReport {
            slot: OWN_SYNC,
            esr: Syndrome(0x0200_0000),
            far: 0,
            elr: 0x4400_1234,
        };
        assert_eq!(
            unexpected.to_string(),
            "rtos: unexpected exception (sync from current EL, SPx): EC 0x0, ESR 0x2000000, \
             FAR 0x0, ELR 0x44001234"
        );
    }
}
