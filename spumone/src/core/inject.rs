//! Injecting synchronous exceptions into an AArch64 EL1 guest.
//!
//! Computes the register values the hardware would have produced had the exception been
//! taken to EL1 directly; the trap handler writes them back before returning to the guest.

use super::esr::{ExceptionClass, FaultStatus};

/// PSTATE for the guest's exception handler: EL1h with D, A, I and F masked.
pub const HANDLER_SPSR: u64 = 0x3C5;

const SPSR_M_AARCH32: u64 = 1 << 4;
const SPSR_M_MASK: u64 = 0b1111;
const ESR_IL: u64 = 1 << 25;
/// ESR.ISS.WnR: the aborted data access was a write.
const ESR_WNR: u64 = 1 << 6;
/// `VBAR_EL1` bits [10:0] are RES0.
const VBAR_MASK: u64 = !0x7FF;

/// Guest state at a stage-2 fault that nothing handles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestState {
    /// `ELR_EL2`: the faulting instruction.
    pub pc: u64,
    /// `SPSR_EL2`: the guest's PSTATE at the fault.
    pub spsr: u64,
    /// The guest's `VBAR_EL1`.
    pub vbar_el1: u64,
    /// The fault was an instruction fetch (else a data access).
    pub is_instruction: bool,
    /// The data access was a write: reported to the guest as ESR.WnR.
    pub write: bool,
    /// `FAR_EL2`: the faulting virtual address.
    pub far: u64,
    /// IL for the injected syndrome (architecturally 1 for aborts without ISV).
    pub il: bool,
}

/// The register writes that deliver an exception to the guest's EL1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Injection {
    /// Value for `ESR_EL1`.
    pub esr_el1: u64,
    /// Value for `FAR_EL1`, or `None` to leave it untouched.
    pub far_el1: Option<u64>,
    /// Value for `ELR_EL1`: where the guest's handler returns to.
    pub elr_el1: u64,
    /// Value for `SPSR_EL1`: the guest's PSTATE before the exception.
    pub spsr_el1: u64,
    /// Value for `ELR_EL2`: the guest's vector entry.
    pub new_pc: u64,
    /// Value for `SPSR_EL2`: PSTATE in the guest's handler.
    pub new_spsr: u64,
}

/// Where the guest was when the exception happened, from its saved PSTATE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// AArch64 EL0.
    El0,
    /// AArch32 EL0 (user mode).
    El0Aarch32,
    /// EL1 using SP_EL0.
    El1t,
    /// EL1 using SP_EL1.
    El1h,
}

/// Why an exception cannot be injected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InjectError {
    /// The saved PSTATE does not describe guest EL0 or AArch64 EL1.
    NotFromGuest {
        /// The offending SPSR.
        spsr: u64,
    },
}

impl Origin {
    /// Decodes SPSR.M; fails for EL2, EL3 and AArch32 modes other than user.
    pub const fn from_spsr(spsr: u64) -> Result<Self, InjectError> {
        let mode = spsr & SPSR_M_MASK;
        if spsr & SPSR_M_AARCH32 != 0 {
            return match mode {
                0b0000 => Ok(Self::El0Aarch32),
                _ => Err(InjectError::NotFromGuest { spsr }),
            };
        }
        match mode {
            0b0000 => Ok(Self::El0),
            0b0100 => Ok(Self::El1t),
            0b0101 => Ok(Self::El1h),
            _ => Err(InjectError::NotFromGuest { spsr }),
        }
    }

    /// Offset of the synchronous entry in the guest's vector table.
    pub const fn vector_offset(self) -> u64 {
        match self {
            Self::El1t => 0x000,
            Self::El1h => 0x200,
            Self::El0 => 0x400,
            Self::El0Aarch32 => 0x600,
        }
    }

    /// Whether the exception is taken from EL0 (a lower EL than the handler's).
    pub const fn is_lower_el(self) -> bool {
        matches!(self, Self::El0 | Self::El0Aarch32)
    }
}

fn deliver(
    origin: Origin,
    pc: u64,
    spsr: u64,
    vbar_el1: u64,
    esr_el1: u64,
    far_el1: Option<u64>,
) -> Injection {
    Injection {
        esr_el1,
        far_el1,
        elr_el1: pc,
        spsr_el1: spsr,
        new_pc: (vbar_el1 & VBAR_MASK) + origin.vector_offset(),
        new_spsr: HANDLER_SPSR,
    }
}

/// A synchronous external abort for the faulting access in `state`.
pub fn inject_external_abort(state: &GuestState) -> Result<Injection, InjectError> {
    let origin = Origin::from_spsr(state.spsr)?;
    let class = match (state.is_instruction, origin.is_lower_el()) {
        (true, true) => ExceptionClass::InstAbortLower,
        (true, false) => ExceptionClass::InstAbortSame,
        (false, true) => ExceptionClass::DataAbortLower,
        (false, false) => ExceptionClass::DataAbortSame,
    };
    let il = if state.il { ESR_IL } else { 0 };
    let wnr = if state.write && !state.is_instruction {
        ESR_WNR
    } else {
        0
    };
    let esr =
        (u64::from(class.code()) << 26) | il | wnr | u64::from(FaultStatus::SyncExternal.code());
    Ok(deliver(
        origin,
        state.pc,
        state.spsr,
        state.vbar_el1,
        esr,
        Some(state.far),
    ))
}

/// An "unknown reason" exception (EC 0, undefined instruction) for the instruction at `pc`.
pub fn inject_undef(pc: u64, spsr: u64, vbar_el1: u64) -> Result<Injection, InjectError> {
    let origin = Origin::from_spsr(spsr)?;
    let esr = (u64::from(ExceptionClass::Unknown.code()) << 26) | ESR_IL;
    Ok(deliver(origin, pc, spsr, vbar_el1, esr, None))
}

#[cfg(test)]
mod tests {
    use super::super::esr::Esr;
    use super::*;

    const VBAR: u64 = 0xFFFF_8000_0801_0800;
    const PC: u64 = 0xFFFF_8000_0812_3454;
    const FAR: u64 = 0xFFFF_0000_DEAD_B000;
    const EL0T: u64 = 0x0000_0000;
    const EL1T_MASKED: u64 = 0x3C4;
    /// EL1h with NZCV set and interrupts unmasked: must be saved verbatim.
    const EL1H_FLAGS: u64 = 0xF000_0005;
    const USR32: u64 = 0x10;

    fn state(spsr: u64, is_instruction: bool) -> GuestState {
        GuestState {
            pc: PC,
            spsr,
            vbar_el1: VBAR,
            is_instruction,
            write: false,
            far: FAR,
            il: true,
        }
    }

    #[test]
    fn write_aborts_report_wnr_and_fetches_never_do() {
        let write = GuestState {
            write: true,
            ..state(EL1H_FLAGS, false)
        };
        let inj = inject_external_abort(&write).unwrap();
        assert_eq!(inj.esr_el1, 0x9600_0050);
        assert!(Esr(inj.esr_el1).data_abort().unwrap().wnr);
        let fetch = GuestState {
            write: true,
            ..state(EL1H_FLAGS, true)
        };
        assert_eq!(inject_external_abort(&fetch).unwrap().esr_el1, 0x8600_0010);
    }

    #[test]
    fn data_abort_from_el1h() {
        let inj = inject_external_abort(&state(EL1H_FLAGS, false)).unwrap();
        assert_eq!(
            inj,
            Injection {
                esr_el1: 0x9600_0010,
                far_el1: Some(FAR),
                elr_el1: PC,
                spsr_el1: EL1H_FLAGS,
                new_pc: VBAR + 0x200,
                new_spsr: 0x3C5,
            }
        );
        let esr = Esr(inj.esr_el1);
        assert_eq!(esr.ec(), ExceptionClass::DataAbortSame);
        assert!(esr.il());
        let da = esr.data_abort().unwrap();
        assert!(!da.isv);
        assert_eq!(da.dfsc, FaultStatus::SyncExternal);
    }

    #[test]
    fn instruction_abort_from_el1h() {
        let inj = inject_external_abort(&state(EL1H_FLAGS, true)).unwrap();
        assert_eq!(inj.esr_el1, 0x8600_0010);
        assert_eq!(Esr(inj.esr_el1).ec(), ExceptionClass::InstAbortSame);
        assert_eq!(
            Esr(inj.esr_el1).inst_abort().unwrap().ifsc,
            FaultStatus::SyncExternal
        );
        assert_eq!(inj.new_pc, VBAR + 0x200);
    }

    #[test]
    fn aborts_from_el1t_use_the_sp_el0_vector() {
        for (is_instruction, ec) in [(false, 0x25), (true, 0x21)] {
            let inj = inject_external_abort(&state(EL1T_MASKED, is_instruction)).unwrap();
            assert_eq!(inj.new_pc, VBAR);
            assert_eq!(inj.esr_el1 >> 26, ec);
            assert_eq!(inj.spsr_el1, EL1T_MASKED);
            assert_eq!(inj.new_spsr, HANDLER_SPSR);
        }
    }

    #[test]
    fn aborts_from_el0_are_lower_el() {
        let data = inject_external_abort(&state(EL0T, false)).unwrap();
        assert_eq!(data.esr_el1, 0x9200_0010);
        assert_eq!(Esr(data.esr_el1).ec(), ExceptionClass::DataAbortLower);
        assert_eq!(data.new_pc, VBAR + 0x400);
        let inst = inject_external_abort(&state(EL0T, true)).unwrap();
        assert_eq!(inst.esr_el1, 0x8200_0010);
        assert_eq!(Esr(inst.esr_el1).ec(), ExceptionClass::InstAbortLower);
        assert_eq!(inst.new_pc, VBAR + 0x400);
        assert_eq!(inst.far_el1, Some(FAR));

        let compat = inject_external_abort(&state(USR32, false)).unwrap();
        assert_eq!(compat.new_pc, VBAR + 0x600);
        assert_eq!(compat.esr_el1 >> 26, 0x24);
        assert_eq!(compat.spsr_el1, USR32);
    }

    #[test]
    fn il_comes_from_the_input() {
        let mut s = state(EL1H_FLAGS, false);
        s.il = false;
        let inj = inject_external_abort(&s).unwrap();
        assert_eq!(inj.esr_el1, 0x9400_0010);
        assert!(!Esr(inj.esr_el1).il());
    }

    #[test]
    fn vbar_low_bits_are_ignored() {
        let mut s = state(EL1H_FLAGS, false);
        s.vbar_el1 = VBAR | 0x7FF;
        assert_eq!(inject_external_abort(&s).unwrap().new_pc, VBAR + 0x200);
    }

    #[test]
    fn undef_from_each_origin() {
        for (spsr, offset) in [(EL1H_FLAGS, 0x200), (EL1T_MASKED, 0), (EL0T, 0x400)] {
            let inj = inject_undef(PC, spsr, VBAR).unwrap();
            assert_eq!(
                inj,
                Injection {
                    esr_el1: 0x0200_0000,
                    far_el1: None,
                    elr_el1: PC,
                    spsr_el1: spsr,
                    new_pc: VBAR + offset,
                    new_spsr: HANDLER_SPSR,
                }
            );
            assert_eq!(Esr(inj.esr_el1).ec(), ExceptionClass::Unknown);
        }
    }

    #[test]
    fn non_guest_modes_are_refused() {
        // EL2t, EL2h, EL3h, and AArch32 SVC mode.
        for spsr in [0x3C8, 0x3C9, 0x3CD, 0x13] {
            assert_eq!(
                inject_external_abort(&state(spsr, false)),
                Err(InjectError::NotFromGuest { spsr })
            );
            assert_eq!(
                inject_undef(PC, spsr, VBAR),
                Err(InjectError::NotFromGuest { spsr })
            );
        }
    }

    #[test]
    fn origin_decoding() {
        assert_eq!(Origin::from_spsr(0x3C5), Ok(Origin::El1h));
        assert_eq!(Origin::from_spsr(0x3C4), Ok(Origin::El1t));
        assert_eq!(Origin::from_spsr(0x3C0), Ok(Origin::El0));
        assert_eq!(Origin::from_spsr(0x10), Ok(Origin::El0Aarch32));
        assert!(Origin::El0.is_lower_el() && Origin::El0Aarch32.is_lower_el());
        assert!(!Origin::El1h.is_lower_el() && !Origin::El1t.is_lower_el());
    }
}
