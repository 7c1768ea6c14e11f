//! Decoding of the exception syndrome register (`ESR_EL2`).
//!
//! Pure bit arithmetic: the trap handler reads `ESR_EL2` and hands the raw value to [`Esr`].

/// A raw `ESR_EL2` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Esr(pub u64);

/// The exception class, `ESR_ELx.EC` (bits [31:26]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExceptionClass {
    /// 0x00: unknown reason (also undefined instructions).
    Unknown,
    /// 0x01: trapped WFI or WFE.
    WfiWfe,
    /// 0x07: trapped SIMD or floating-point access.
    SimdFp,
    /// 0x0E: illegal execution state.
    IllegalState,
    /// 0x15: SVC from AArch64.
    Svc64,
    /// 0x16: HVC from AArch64.
    Hvc64,
    /// 0x17: SMC from AArch64.
    Smc64,
    /// 0x18: trapped MSR, MRS or system instruction from AArch64.
    SysReg64,
    /// 0x19: trapped SVE access.
    SveAccess,
    /// 0x20: instruction abort from a lower exception level.
    InstAbortLower,
    /// 0x21: instruction abort from the same exception level.
    InstAbortSame,
    /// 0x22: PC alignment fault.
    PcAlignment,
    /// 0x24: data abort from a lower exception level.
    DataAbortLower,
    /// 0x25: data abort from the same exception level.
    DataAbortSame,
    /// 0x26: SP alignment fault.
    SpAlignment,
    /// 0x2F: SError interrupt.
    SError,
    /// 0x3C: BRK instruction from AArch64.
    Brk64,
    /// Any other class, with its raw code.
    Other(u8),
}

impl ExceptionClass {
    /// Classifies a 6-bit EC code (higher bits are ignored).
    pub const fn from_code(code: u8) -> Self {
        match code & 0x3F {
            0x00 => Self::Unknown,
            0x01 => Self::WfiWfe,
            0x07 => Self::SimdFp,
            0x0E => Self::IllegalState,
            0x15 => Self::Svc64,
            0x16 => Self::Hvc64,
            0x17 => Self::Smc64,
            0x18 => Self::SysReg64,
            0x19 => Self::SveAccess,
            0x20 => Self::InstAbortLower,
            0x21 => Self::InstAbortSame,
            0x22 => Self::PcAlignment,
            0x24 => Self::DataAbortLower,
            0x25 => Self::DataAbortSame,
            0x26 => Self::SpAlignment,
            0x2F => Self::SError,
            0x3C => Self::Brk64,
            other => Self::Other(other),
        }
    }

    /// The 6-bit EC code.
    pub const fn code(self) -> u8 {
        match self {
            Self::Unknown => 0x00,
            Self::WfiWfe => 0x01,
            Self::SimdFp => 0x07,
            Self::IllegalState => 0x0E,
            Self::Svc64 => 0x15,
            Self::Hvc64 => 0x16,
            Self::Smc64 => 0x17,
            Self::SysReg64 => 0x18,
            Self::SveAccess => 0x19,
            Self::InstAbortLower => 0x20,
            Self::InstAbortSame => 0x21,
            Self::PcAlignment => 0x22,
            Self::DataAbortLower => 0x24,
            Self::DataAbortSame => 0x25,
            Self::SpAlignment => 0x26,
            Self::SError => 0x2F,
            Self::Brk64 => 0x3C,
            Self::Other(code) => code & 0x3F,
        }
    }

    /// A short human-readable name for logs.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Unknown => "unknown reason",
            Self::WfiWfe => "WFI/WFE",
            Self::SimdFp => "SIMD/FP access",
            Self::IllegalState => "illegal execution state",
            Self::Svc64 => "SVC",
            Self::Hvc64 => "HVC",
            Self::Smc64 => "SMC",
            Self::SysReg64 => "system register access",
            Self::SveAccess => "SVE access",
            Self::InstAbortLower => "instruction abort from lower EL",
            Self::InstAbortSame => "instruction abort from same EL",
            Self::PcAlignment => "PC alignment fault",
            Self::DataAbortLower => "data abort from lower EL",
            Self::DataAbortSame => "data abort from same EL",
            Self::SpAlignment => "SP alignment fault",
            Self::SError => "SError",
            Self::Brk64 => "BRK",
            Self::Other(_) => "other",
        }
    }
}

/// A data or instruction fault status code (DFSC / IFSC, ISS bits [5:0]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultStatus {
    /// Address size fault at the given level (0..=3).
    AddressSize(u8),
    /// Translation fault at the given level (0..=3).
    Translation(u8),
    /// Access flag fault at the given level (0..=3).
    AccessFlag(u8),
    /// Permission fault at the given level (0..=3).
    Permission(u8),
    /// Synchronous external abort, not on a translation table walk.
    SyncExternal,
    /// Synchronous external abort on a translation table walk at the given level (0..=3).
    SyncExternalOnWalk(u8),
    /// Alignment fault.
    Alignment,
    /// TLB conflict abort.
    TlbConflict,
    /// Any other code, raw.
    Other(u8),
}

impl FaultStatus {
    /// Synchronous external abort code, the one injected into guests.
    pub const SYNC_EXTERNAL_CODE: u8 = 0x10;

    /// Classifies a 6-bit fault status code.
    pub const fn from_code(code: u8) -> Self {
        let code = code & 0x3F;
        let level = code & 0b11;
        match code {
            0x00..=0x03 => Self::AddressSize(level),
            0x04..=0x07 => Self::Translation(level),
            0x08..=0x0B => Self::AccessFlag(level),
            0x0C..=0x0F => Self::Permission(level),
            0x10 => Self::SyncExternal,
            0x14..=0x17 => Self::SyncExternalOnWalk(level),
            0x21 => Self::Alignment,
            0x30 => Self::TlbConflict,
            other => Self::Other(other),
        }
    }

    /// The 6-bit fault status code.
    pub const fn code(self) -> u8 {
        match self {
            Self::AddressSize(l) => l & 0b11,
            Self::Translation(l) => 0x04 | (l & 0b11),
            Self::AccessFlag(l) => 0x08 | (l & 0b11),
            Self::Permission(l) => 0x0C | (l & 0b11),
            Self::SyncExternal => Self::SYNC_EXTERNAL_CODE,
            Self::SyncExternalOnWalk(l) => 0x14 | (l & 0b11),
            Self::Alignment => 0x21,
            Self::TlbConflict => 0x30,
            Self::Other(code) => code & 0x3F,
        }
    }

    /// The translation level the fault names, if it names one.
    pub const fn level(self) -> Option<u8> {
        match self {
            Self::AddressSize(l)
            | Self::Translation(l)
            | Self::AccessFlag(l)
            | Self::Permission(l)
            | Self::SyncExternalOnWalk(l) => Some(l),
            _ => None,
        }
    }

    /// A short human-readable name for logs (the level is reported by [`Self::level`]).
    pub const fn name(self) -> &'static str {
        match self {
            Self::AddressSize(_) => "address size fault",
            Self::Translation(_) => "translation fault",
            Self::AccessFlag(_) => "access flag fault",
            Self::Permission(_) => "permission fault",
            Self::SyncExternal => "synchronous external abort",
            Self::SyncExternalOnWalk(_) => "synchronous external abort on table walk",
            Self::Alignment => "alignment fault",
            Self::TlbConflict => "TLB conflict abort",
            Self::Other(_) => "other fault",
        }
    }
}

/// The syndrome of a data abort (EC 0x24 / 0x25).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataAbort {
    /// ISV: `size`, `sign_extend`, `reg`, `sf` and `acquire_release` are valid.
    pub isv: bool,
    /// Access size in bytes (1, 2, 4 or 8), from SAS.
    pub size: u8,
    /// SSE: the load sign-extends its value.
    pub sign_extend: bool,
    /// SRT: the transfer register, 0..=31 (31 is xzr).
    pub reg: u8,
    /// SF: the transfer register is 64-bit (else a W register).
    pub sf: bool,
    /// AR: the access has acquire/release semantics.
    pub acquire_release: bool,
    /// FnV: FAR is not valid.
    pub fnv: bool,
    /// EA: external abort type (implementation defined).
    pub ea: bool,
    /// CM: the fault came from a cache maintenance or address translation instruction.
    pub cm: bool,
    /// S1PTW: the fault happened on a stage-2 access made by a stage-1 table walk.
    pub s1ptw: bool,
    /// WnR: the access was a write.
    pub wnr: bool,
    /// DFSC: the fault status.
    pub dfsc: FaultStatus,
}

/// The syndrome of an instruction abort (EC 0x20 / 0x21).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InstAbort {
    /// FnV: FAR is not valid.
    pub fnv: bool,
    /// EA: external abort type (implementation defined).
    pub ea: bool,
    /// S1PTW: the fault happened on a stage-2 access made by a stage-1 table walk.
    pub s1ptw: bool,
    /// IFSC: the fault status.
    pub ifsc: FaultStatus,
}

/// A trapped MSR/MRS (EC 0x18).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SysRegAccess {
    /// Op0 (2 bits).
    pub op0: u8,
    /// Op1 (3 bits).
    pub op1: u8,
    /// CRn (4 bits).
    pub crn: u8,
    /// CRm (4 bits).
    pub crm: u8,
    /// Op2 (3 bits).
    pub op2: u8,
    /// Rt: the general-purpose register, 0..=31 (31 is xzr).
    pub rt: u8,
    /// Direction: true for MRS (read), false for MSR (write).
    pub is_read: bool,
}

impl SysRegAccess {
    /// `ICC_SGI1R_EL1` encoding as (op0, op1, crn, crm, op2).
    pub const ICC_SGI1R_EL1: (u8, u8, u8, u8, u8) = (3, 0, 12, 11, 5);

    /// The register encoding as (op0, op1, crn, crm, op2).
    pub const fn encoding(&self) -> (u8, u8, u8, u8, u8) {
        (self.op0, self.op1, self.crn, self.crm, self.op2)
    }

    /// Whether the access names `ICC_SGI1R_EL1` (SGI generation, group 1).
    pub const fn is_icc_sgi1r(&self) -> bool {
        let (op0, op1, crn, crm, op2) = Self::ICC_SGI1R_EL1;
        self.op0 == op0 && self.op1 == op1 && self.crn == crn && self.crm == crm && self.op2 == op2
    }
}

/// Which wait instruction trapped (EC 0x01).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wfx {
    /// WFI (or WFIT).
    Wfi,
    /// WFE (or WFET).
    Wfe,
}

impl Esr {
    /// The exception class.
    pub const fn ec(self) -> ExceptionClass {
        ExceptionClass::from_code(((self.0 >> 26) & 0x3F) as u8)
    }

    /// IL: the trapped instruction was 32 bits long.
    pub const fn il(self) -> bool {
        self.0 & (1 << 25) != 0
    }

    /// The instruction-specific syndrome (bits [24:0]).
    pub const fn iss(self) -> u32 {
        (self.0 & 0x01FF_FFFF) as u32
    }

    const fn bit(self, n: u32) -> bool {
        (self.0 >> n) & 1 != 0
    }

    const fn field(self, low: u32, width: u32) -> u8 {
        ((self.0 >> low) & ((1 << width) - 1)) as u8
    }

    /// The data-abort syndrome, if this is a data abort.
    pub const fn data_abort(self) -> Option<DataAbort> {
        match self.ec() {
            ExceptionClass::DataAbortLower | ExceptionClass::DataAbortSame => Some(DataAbort {
                isv: self.bit(24),
                size: 1 << self.field(22, 2),
                sign_extend: self.bit(21),
                reg: self.field(16, 5),
                sf: self.bit(15),
                acquire_release: self.bit(14),
                fnv: self.bit(10),
                ea: self.bit(9),
                cm: self.bit(8),
                s1ptw: self.bit(7),
                wnr: self.bit(6),
                dfsc: FaultStatus::from_code(self.field(0, 6)),
            }),
            _ => None,
        }
    }

    /// The instruction-abort syndrome, if this is an instruction abort.
    pub const fn inst_abort(self) -> Option<InstAbort> {
        match self.ec() {
            ExceptionClass::InstAbortLower | ExceptionClass::InstAbortSame => Some(InstAbort {
                fnv: self.bit(10),
                ea: self.bit(9),
                s1ptw: self.bit(7),
                ifsc: FaultStatus::from_code(self.field(0, 6)),
            }),
            _ => None,
        }
    }

    /// The trapped system register access, if this is EC 0x18.
    pub const fn sysreg(self) -> Option<SysRegAccess> {
        match self.ec() {
            ExceptionClass::SysReg64 => Some(SysRegAccess {
                op0: self.field(20, 2),
                op2: self.field(17, 3),
                op1: self.field(14, 3),
                crn: self.field(10, 4),
                rt: self.field(5, 5),
                crm: self.field(1, 4),
                is_read: self.bit(0),
            }),
            _ => None,
        }
    }

    /// The 16-bit immediate of a trapped HVC or SMC.
    pub const fn hvc_smc_imm(self) -> Option<u16> {
        match self.ec() {
            ExceptionClass::Hvc64 | ExceptionClass::Smc64 => Some((self.0 & 0xFFFF) as u16),
            _ => None,
        }
    }

    /// Which wait instruction trapped, if this is EC 0x01 (TI bit 0 tells WFE from WFI).
    pub const fn wfx(self) -> Option<Wfx> {
        match self.ec() {
            ExceptionClass::WfiWfe if self.bit(0) => Some(Wfx::Wfe),
            ExceptionClass::WfiWfe => Some(Wfx::Wfi),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IL: u64 = 1 << 25;

    type DataAbortFlag = (u32, fn(&DataAbort) -> bool);
    type SysRegField = (u64, fn(&SysRegAccess) -> u8, u8);

    fn ec(code: u64) -> u64 {
        code << 26
    }

    #[test]
    fn every_named_class_round_trips_through_its_code() {
        let named = [
            (0x00, ExceptionClass::Unknown),
            (0x01, ExceptionClass::WfiWfe),
            (0x07, ExceptionClass::SimdFp),
            (0x0E, ExceptionClass::IllegalState),
            (0x15, ExceptionClass::Svc64),
            (0x16, ExceptionClass::Hvc64),
            (0x17, ExceptionClass::Smc64),
            (0x18, ExceptionClass::SysReg64),
            (0x19, ExceptionClass::SveAccess),
            (0x20, ExceptionClass::InstAbortLower),
            (0x21, ExceptionClass::InstAbortSame),
            (0x22, ExceptionClass::PcAlignment),
            (0x24, ExceptionClass::DataAbortLower),
            (0x25, ExceptionClass::DataAbortSame),
            (0x26, ExceptionClass::SpAlignment),
            (0x2F, ExceptionClass::SError),
            (0x3C, ExceptionClass::Brk64),
        ];
        for (code, class) in named {
            assert_eq!(ExceptionClass::from_code(code), class);
            assert_eq!(class.code(), code);
            assert_eq!(Esr(ec(u64::from(code)) | IL).ec(), class);
            assert_ne!(class.name(), "other");
        }
        for code in 0..64u8 {
            let class = ExceptionClass::from_code(code);
            assert_eq!(class.code(), code, "code {code:#x}");
            if !named.iter().any(|&(c, _)| c == code) {
                assert_eq!(class, ExceptionClass::Other(code));
            }
        }
    }

    #[test]
    fn names_are_short_and_specific() {
        assert_eq!(
            ExceptionClass::DataAbortLower.name(),
            "data abort from lower EL"
        );
        assert_eq!(ExceptionClass::Hvc64.name(), "HVC");
        assert_eq!(ExceptionClass::Other(0x3F).name(), "other");
    }

    #[test]
    fn ec_il_and_iss_occupy_their_bits() {
        let esr = Esr(0x9200_0046);
        assert_eq!(esr.ec(), ExceptionClass::DataAbortLower);
        assert!(esr.il());
        assert_eq!(esr.iss(), 0x46);

        let esr = Esr(0x5A00_0000);
        assert_eq!(esr.ec(), ExceptionClass::Hvc64);
        assert!(esr.il());
        assert_eq!(esr.iss(), 0);
        assert_eq!(Esr(0x5E00_0000).ec(), ExceptionClass::Smc64);

        let all_iss = Esr(0x01FF_FFFF);
        assert_eq!(all_iss.ec(), ExceptionClass::Unknown);
        assert!(!all_iss.il());
        assert_eq!(all_iss.iss(), 0x01FF_FFFF);

        // Bits above 31 (ISS2) do not leak into EC, IL or ISS.
        let high = Esr(0xFFFF_FFFF_0000_0000 | ec(0x24));
        assert_eq!(high.ec(), ExceptionClass::DataAbortLower);
        assert!(!high.il());
        assert_eq!(high.iss(), 0);
    }

    #[test]
    fn known_data_abort_without_syndrome() {
        // A write that hit a level-2 translation fault, no instruction syndrome.
        let da = Esr(0x9200_0046).data_abort().unwrap();
        assert!(!da.isv);
        assert!(da.wnr);
        assert!(!da.s1ptw && !da.cm && !da.ea && !da.fnv);
        assert_eq!(da.dfsc, FaultStatus::Translation(2));
        assert_eq!(da.dfsc.level(), Some(2));
        assert_eq!(da.dfsc.name(), "translation fault");
    }

    #[test]
    fn known_data_abort_with_syndrome() {
        // `str w1, [x0]` to an unmapped device page: ISV, SAS=word, SRT=1, WnR, level-3 fault.
        let raw = ec(0x24) | IL | (1 << 24) | (0b10 << 22) | (1 << 16) | (1 << 6) | 0x07;
        assert_eq!(raw, 0x9381_0047);
        let da = Esr(raw).data_abort().unwrap();
        assert!(da.isv);
        assert_eq!(da.size, 4);
        assert_eq!(da.reg, 1);
        assert!(!da.sf && !da.sign_extend && !da.acquire_release);
        assert!(da.wnr);
        assert_eq!(da.dfsc, FaultStatus::Translation(3));

        // `ldrsh x30, [x2]`: half-word, sign-extended into a 64-bit register, a read.
        let raw =
            ec(0x24) | IL | (1 << 24) | (0b01 << 22) | (1 << 21) | (30 << 16) | (1 << 15) | 0x06;
        assert_eq!(raw, 0x937E_8006);
        let da = Esr(raw).data_abort().unwrap();
        assert_eq!(da.size, 2);
        assert!(da.sign_extend && da.sf && !da.wnr);
        assert_eq!(da.reg, 30);
    }

    #[test]
    fn each_data_abort_field_is_isolated() {
        let base = ec(0x25);
        let none = Esr(base).data_abort().unwrap();
        assert_eq!(
            none,
            DataAbort {
                isv: false,
                size: 1,
                sign_extend: false,
                reg: 0,
                sf: false,
                acquire_release: false,
                fnv: false,
                ea: false,
                cm: false,
                s1ptw: false,
                wnr: false,
                dfsc: FaultStatus::AddressSize(0),
            }
        );
        let flags: [DataAbortFlag; 9] = [
            (24, |d| d.isv),
            (21, |d| d.sign_extend),
            (15, |d| d.sf),
            (14, |d| d.acquire_release),
            (10, |d| d.fnv),
            (9, |d| d.ea),
            (8, |d| d.cm),
            (7, |d| d.s1ptw),
            (6, |d| d.wnr),
        ];
        for (bit, get) in flags {
            let da = Esr(base | (1 << bit)).data_abort().unwrap();
            assert!(get(&da), "bit {bit}");
        }
        // Setting one flag sets no other.
        let da = Esr(base | (1 << 8)).data_abort().unwrap();
        assert_eq!(da, DataAbort { cm: true, ..none });
        for (sas, size) in [(0u64, 1u8), (1, 2), (2, 4), (3, 8)] {
            assert_eq!(Esr(base | (sas << 22)).data_abort().unwrap().size, size);
        }
        for reg in 0..32u64 {
            let da = Esr(base | (reg << 16)).data_abort().unwrap();
            assert_eq!(u64::from(da.reg), reg);
            assert_eq!(
                da,
                DataAbort {
                    reg: reg as u8,
                    ..none
                }
            );
        }
    }

    #[test]
    fn data_abort_only_for_data_abort_classes() {
        assert!(Esr(ec(0x24)).data_abort().is_some());
        assert!(Esr(ec(0x25)).data_abort().is_some());
        assert!(Esr(ec(0x20)).data_abort().is_none());
        assert!(Esr(ec(0x18)).data_abort().is_none());
        assert!(Esr(ec(0x20)).inst_abort().is_some());
        assert!(Esr(ec(0x21)).inst_abort().is_some());
        assert!(Esr(ec(0x24)).inst_abort().is_none());
    }

    #[test]
    fn instruction_abort_fields() {
        // Level-3 permission fault during a stage-1 walk, FAR not valid.
        let ia = Esr(ec(0x20) | IL | (1 << 10) | (1 << 7) | 0x0F)
            .inst_abort()
            .unwrap();
        assert!(ia.fnv && ia.s1ptw && !ia.ea);
        assert_eq!(ia.ifsc, FaultStatus::Permission(3));
        let ia = Esr(ec(0x21) | (1 << 9) | 0x10).inst_abort().unwrap();
        assert!(ia.ea && !ia.fnv && !ia.s1ptw);
        assert_eq!(ia.ifsc, FaultStatus::SyncExternal);
    }

    #[test]
    fn fault_status_codes() {
        for level in 0..4u8 {
            assert_eq!(
                FaultStatus::from_code(level),
                FaultStatus::AddressSize(level)
            );
            assert_eq!(
                FaultStatus::from_code(0x04 + level),
                FaultStatus::Translation(level)
            );
            assert_eq!(
                FaultStatus::from_code(0x08 + level),
                FaultStatus::AccessFlag(level)
            );
            assert_eq!(
                FaultStatus::from_code(0x0C + level),
                FaultStatus::Permission(level)
            );
            assert_eq!(
                FaultStatus::from_code(0x14 + level),
                FaultStatus::SyncExternalOnWalk(level)
            );
        }
        assert_eq!(FaultStatus::from_code(0x10), FaultStatus::SyncExternal);
        assert_eq!(FaultStatus::from_code(0x21), FaultStatus::Alignment);
        assert_eq!(FaultStatus::from_code(0x30), FaultStatus::TlbConflict);
        assert_eq!(FaultStatus::from_code(0x11), FaultStatus::Other(0x11));
        assert_eq!(FaultStatus::SyncExternal.level(), None);
        assert_eq!(FaultStatus::Permission(1).name(), "permission fault");
        assert_eq!(FaultStatus::AccessFlag(3).name(), "access flag fault");
        for code in 0..64u8 {
            assert_eq!(FaultStatus::from_code(code).code(), code);
        }
    }

    #[test]
    fn sysreg_icc_sgi1r_write() {
        // MSR ICC_SGI1R_EL1, x3: Op0=3 Op2=5 Op1=0 CRn=12 Rt=3 CRm=11 direction=write.
        let iss = (3 << 20) | (5 << 17) | (12 << 10) | (3 << 5) | (11 << 1);
        let raw = ec(0x18) | IL | iss;
        assert_eq!(raw, 0x623A_3076);
        let access = Esr(raw).sysreg().unwrap();
        assert_eq!(
            access,
            SysRegAccess {
                op0: 3,
                op1: 0,
                crn: 12,
                crm: 11,
                op2: 5,
                rt: 3,
                is_read: false,
            }
        );
        assert!(access.is_icc_sgi1r());
        assert_eq!(access.encoding(), SysRegAccess::ICC_SGI1R_EL1);
    }

    #[test]
    fn sysreg_fields_are_isolated() {
        // MRS x30, with every field at its maximum, one at a time.
        let cases: [SysRegField; 7] = [
            (0b11 << 20, |a| a.op0, 3),
            (0b111 << 17, |a| a.op2, 7),
            (0b111 << 14, |a| a.op1, 7),
            (0b1111 << 10, |a| a.crn, 15),
            (0b11111 << 5, |a| a.rt, 31),
            (0b1111 << 1, |a| a.crm, 15),
            (1, |a| a.is_read as u8, 1),
        ];
        for (bits, get, expected) in cases {
            let access = Esr(ec(0x18) | bits).sysreg().unwrap();
            assert_eq!(get(&access), expected, "bits {bits:#x}");
            let others: u32 = u32::from(access.op0)
                + u32::from(access.op1)
                + u32::from(access.crn)
                + u32::from(access.crm)
                + u32::from(access.op2)
                + u32::from(access.rt)
                + u32::from(access.is_read);
            assert_eq!(others, u32::from(expected), "bits {bits:#x} leak");
        }
        // ICC_SGI0R_EL1 (op2 = 7) is not SGI1R.
        let sgi0r = (3 << 20) | (7 << 17) | (12 << 10) | (11 << 1);
        assert!(!Esr(ec(0x18) | sgi0r).sysreg().unwrap().is_icc_sgi1r());
        assert!(Esr(ec(0x24)).sysreg().is_none());
    }

    #[test]
    fn hvc_and_smc_immediates() {
        assert_eq!(Esr(0x5A00_0000).hvc_smc_imm(), Some(0));
        assert_eq!(Esr(ec(0x16) | IL | 0xBEEF).hvc_smc_imm(), Some(0xBEEF));
        assert_eq!(Esr(ec(0x17) | IL | 0x0001).hvc_smc_imm(), Some(1));
        assert_eq!(Esr(ec(0x15) | IL | 0x0001).hvc_smc_imm(), None);
    }

    #[test]
    fn wfi_and_wfe() {
        assert_eq!(Esr(ec(0x01) | IL).wfx(), Some(Wfx::Wfi));
        assert_eq!(Esr(ec(0x01) | IL | 1).wfx(), Some(Wfx::Wfe));
        // WFIT / WFET (TI bit 1) keep their base kind.
        assert_eq!(Esr(ec(0x01) | IL | 0b10).wfx(), Some(Wfx::Wfi));
        assert_eq!(Esr(ec(0x01) | IL | 0b11).wfx(), Some(Wfx::Wfe));
        assert_eq!(Esr(ec(0x00) | IL | 1).wfx(), None);
    }
}
