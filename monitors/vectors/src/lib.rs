//! DSM checker `vectors`: the exception vectors and the control registers that protect the
//! kernel.
//!
//! `VBAR_EL1` must be one of the vector tables Linux installs: `vectors`, a slot of
//! `__bp_harden_el1_vectors` (Spectre-BHB variants, 2K apart) or, with KPTI, a slot of the
//! trampoline vectors through their fixmap alias. The alias VA is not slid and not in
//! kallsyms, so it is accepted by what it maps: a VBAR whose translation (with that vCPU's
//! tables) lands on a trampoline slot's PA.
//!
//! Protection bits that Linux sets once at boot must keep their baseline value. Bits Linux
//! changes at run time on its own are left out: SCTLR_EL1.EnIA/EnIB/EnDA/EnDB and TCF0 follow
//! the current task (pointer-auth keys, MTE), TCR_EL1.T0SZ changes while the idmap is live.
#![no_std]
#![forbid(unsafe_code)]

use dsm_api::{Budget, CheckError, Checker, Finding, Guest, GuestError, Progress, SysReg};

pub const NAME: &str = "vectors";
pub const MAX_VCPUS: usize = 16;
/// Slots of 2K in `__bp_harden_el1_vectors` and the trampoline (BHB loop, firmware, clearbhb,
/// and spare).
pub const VECTOR_SLOTS: u64 = 4;
const SLOT_SIZE: u64 = 0x800;

/// SCTLR_EL1.M: stage-1 translation on (off means no kernel memory protection at all).
pub const SCTLR_M: u64 = 1 << 0;
/// SCTLR_EL1.WXN: writable implies execute-never.
pub const SCTLR_WXN: u64 = 1 << 19;
/// SCTLR_EL1.SPAN: clear means PAN is set on exception entry (user memory not accessible).
pub const SCTLR_SPAN: u64 = 1 << 23;
/// SCTLR_EL1.EE: data endianness at EL1.
pub const SCTLR_EE: u64 = 1 << 25;
/// SCTLR_EL1.BT1: BTI enforced for EL1 code (ARM64_BTI_KERNEL).
pub const SCTLR_BT1: u64 = 1 << 36;
/// SCTLR_EL1.EPAN: PAN also covers execute-only user memory.
pub const SCTLR_EPAN: u64 = 1 << 57;
/// The SCTLR_EL1 bits that must not change after boot.
pub const SCTLR_WATCHED: u64 = SCTLR_M | SCTLR_WXN | SCTLR_SPAN | SCTLR_EE | SCTLR_BT1 | SCTLR_EPAN;

/// TCR_EL1.T1SZ: size of the kernel half.
pub const TCR_T1SZ: u64 = 0x3f << 16;
/// TCR_EL1.A1: ASID taken from TTBR1 (KPTI relies on it).
pub const TCR_A1: u64 = 1 << 22;
/// TCR_EL1.EPD1: kernel-half walks disabled.
pub const TCR_EPD1: u64 = 1 << 23;
/// TCR_EL1.TG1: kernel-half granule.
pub const TCR_TG1: u64 = 3 << 30;
/// TCR_EL1.TBI1: top-byte-ignore for kernel addresses.
pub const TCR_TBI1: u64 = 1 << 38;
/// TCR_EL1.HPD0/HPD1: hierarchical permissions disabled (APTable/PXNTable ignored).
pub const TCR_HPD0: u64 = 1 << 41;
pub const TCR_HPD1: u64 = 1 << 42;
/// TCR_EL1.NFD1, E0PD0, E0PD1: EL0 faults on kernel-half (or user) probing.
pub const TCR_NFD1: u64 = 1 << 54;
pub const TCR_E0PD0: u64 = 1 << 55;
pub const TCR_E0PD1: u64 = 1 << 56;
/// The TCR_EL1 bits that must not change after boot.
pub const TCR_WATCHED: u64 = TCR_T1SZ
    | TCR_A1
    | TCR_EPD1
    | TCR_TG1
    | TCR_TBI1
    | TCR_HPD0
    | TCR_HPD1
    | TCR_NFD1
    | TCR_E0PD0
    | TCR_E0PD1;

/// What is checked per vCPU, to report each change once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Vbar = 0,
    Sctlr = 1,
    Tcr = 2,
}

pub struct VectorsChecker {
    /// Allowed VBAR_EL1 values (slid VAs); unused slots are 0.
    allowed: [u64; 1 + VECTOR_SLOTS as usize],
    /// PA of the trampoline vectors, if the kernel has KPTI.
    tramp_pa: Option<u64>,
    /// Baseline (SCTLR, TCR), masked.
    base: Option<(u64, u64)>,
    reported: [[Option<u64>; 3]; MAX_VCPUS],
}

impl Default for VectorsChecker {
    fn default() -> Self {
        Self::new()
    }
}

impl VectorsChecker {
    pub const fn new() -> Self {
        Self {
            allowed: [0; 1 + VECTOR_SLOTS as usize],
            tramp_pa: None,
            base: None,
            reported: [[None; 3]; MAX_VCPUS],
        }
    }

    fn vbar_ok(&self, guest: &dyn Guest, vcpu: usize, vbar: u64) -> bool {
        if vbar != 0 && self.allowed.contains(&vbar) {
            return true;
        }
        let Some(tramp) = self.tramp_pa else {
            return false;
        };
        match guest.translate(vcpu, vbar) {
            Ok(t) => (0..VECTOR_SLOTS).any(|k| t.pa == tramp + k * SLOT_SIZE),
            Err(_) => false,
        }
    }

    /// Reports a bad value once, until it changes again; forgets it once good.
    fn verdict(&mut self, guest: &mut dyn Guest, vcpu: usize, kind: Kind, bad: Option<Finding>) {
        let slot = &mut self.reported[vcpu][kind as usize];
        match bad {
            None => *slot = None,
            Some(f) if *slot != Some(f.found) => {
                *slot = Some(f.found);
                guest.report(f);
            }
            Some(_) => {}
        }
    }

    fn check_vcpu(&mut self, guest: &mut dyn Guest, vcpu: usize) -> Result<(), GuestError> {
        let (sctlr0, tcr0) = self.base.unwrap_or_default();
        let vbar = guest.sysreg(vcpu, SysReg::VbarEl1)?;
        let bad = (!self.vbar_ok(guest, vcpu, vbar)).then_some(Finding {
            checker: NAME,
            what: "VBAR_EL1 outside the kernel's vectors",
            at: vcpu as u64,
            expected: self.allowed[0],
            found: vbar,
        });
        self.verdict(guest, vcpu, Kind::Vbar, bad);

        let what = "SCTLR_EL1 protection bits changed";
        self.check_bits(guest, vcpu, Kind::Sctlr, SCTLR_WATCHED, sctlr0, what)?;
        let what = "TCR_EL1 protection bits changed";
        self.check_bits(guest, vcpu, Kind::Tcr, TCR_WATCHED, tcr0, what)
    }

    /// Compares the `mask` bits of a control register with their baseline.
    fn check_bits(
        &mut self,
        guest: &mut dyn Guest,
        vcpu: usize,
        kind: Kind,
        mask: u64,
        expected: u64,
        what: &'static str,
    ) -> Result<(), GuestError> {
        let reg = match kind {
            Kind::Tcr => SysReg::TcrEl1,
            _ => SysReg::SctlrEl1,
        };
        let found = guest.sysreg(vcpu, reg)? & mask;
        let bad = (found != expected).then_some(Finding {
            checker: NAME,
            what,
            at: vcpu as u64,
            expected,
            found,
        });
        self.verdict(guest, vcpu, kind, bad);
        Ok(())
    }
}

impl Checker for VectorsChecker {
    fn name(&self) -> &'static str {
        NAME
    }

    /// Takes SCTLR/TCR from the first vCPU whose registers can be read; every vCPU is then
    /// held to them (Linux programs all CPUs alike).
    fn baseline(&mut self, guest: &mut dyn Guest) -> Result<(), CheckError> {
        let k = guest.kernel()?;
        let syms = guest.symbols();
        let vectors = syms
            .offset("vectors")
            .ok_or(CheckError::MissingSymbol("vectors"))?;
        self.allowed = [0; 1 + VECTOR_SLOTS as usize];
        self.allowed[0] = k.text_va + vectors;
        if let Some(bp) = syms.offset("__bp_harden_el1_vectors") {
            for i in 0..VECTOR_SLOTS {
                self.allowed[1 + i as usize] = k.text_va + bp + i * SLOT_SIZE;
            }
        }
        self.tramp_pa = syms.tramp_vectors.map(|t| k.text_pa + t);
        self.base = None;
        self.reported = [[None; 3]; MAX_VCPUS];
        for vcpu in 0..guest.vcpus().min(MAX_VCPUS) {
            let regs = (
                guest.sysreg(vcpu, SysReg::SctlrEl1),
                guest.sysreg(vcpu, SysReg::TcrEl1),
            );
            match regs {
                (Ok(s), Ok(t)) => {
                    self.base = Some((s & SCTLR_WATCHED, t & TCR_WATCHED));
                    break;
                }
                (Err(GuestError::RegisterUnavailable(_)), _)
                | (_, Err(GuestError::RegisterUnavailable(_))) => continue,
                (Err(e), _) | (_, Err(e)) => return Err(e.into()),
            }
        }
        if self.base.is_none() {
            return Err(CheckError::Guest(GuestError::RegisterUnavailable(
                SysReg::SctlrEl1,
            )));
        }
        let mut unlimited = Budget::new(u64::MAX);
        self.check(guest, &mut unlimited).map(|_| ())
    }

    /// Costs one budget unit per vCPU; vCPUs whose registers are unavailable now are skipped
    /// until the next pass.
    fn check(
        &mut self,
        guest: &mut dyn Guest,
        budget: &mut Budget,
    ) -> Result<Progress, CheckError> {
        if self.base.is_none() {
            return Err(CheckError::NoBaseline);
        }
        let n = guest.vcpus().min(MAX_VCPUS);
        if !budget.take(n as u64) {
            return Err(CheckError::BudgetTooSmall);
        }
        for vcpu in 0..n {
            match self.check_vcpu(guest, vcpu) {
                Ok(()) | Err(GuestError::RegisterUnavailable(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        guest.heartbeat(NAME);
        Ok(Progress::Done)
    }
}
