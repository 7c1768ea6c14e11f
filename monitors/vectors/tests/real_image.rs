//! The checker on the real Debian kernel: Linux's own vector tables pass, a foreign VBAR and
//! flipped protection bits are reported.

use dsm_api::test_support::{MemGuest, PAGE_OFFSET, TRAMP_ALIAS_VA};
use dsm_api::{Budget, CheckError, Checker, Guest, Progress, SysReg};
use monitor_vectors::{VectorsChecker, NAME, SCTLR_M, SCTLR_WXN, TCR_HPD1};

fn pass(c: &mut VectorsChecker, g: &mut MemGuest) {
    assert_eq!(c.check(g, &mut Budget::new(100)), Ok(Progress::Done));
}

fn ready() -> (VectorsChecker, MemGuest) {
    let mut g = MemGuest::linux();
    let mut c = VectorsChecker::new();
    assert_eq!(
        c.check(&mut g, &mut Budget::new(100)),
        Err(CheckError::NoBaseline)
    );
    c.baseline(&mut g).unwrap();
    (c, g)
}

#[test]
fn linux_vector_tables_pass() {
    let (mut c, mut g) = ready();
    pass(&mut c, &mut g);
    let bp = g.symbol("__bp_harden_el1_vectors").unwrap().unwrap();
    // Spectre-BHB slot 2 on vCPU 1, the KPTI trampoline alias (slot 1) on vCPU 2.
    g.set_sysreg(1, SysReg::VbarEl1, bp + 2 * 0x800);
    g.set_sysreg(2, SysReg::VbarEl1, TRAMP_ALIAS_VA + 0x800);
    pass(&mut c, &mut g);
    assert!(g.findings.is_empty(), "{:?}", g.findings);
    assert_eq!(g.heartbeats.len(), 3);
}

#[test]
fn a_foreign_vbar_is_reported_once() {
    let (mut c, mut g) = ready();
    // Vectors a module built in vmalloc'd or linear-mapped memory.
    let evil = PAGE_OFFSET + 0x10_0000;
    g.set_sysreg(1, SysReg::VbarEl1, evil);
    pass(&mut c, &mut g);
    pass(&mut c, &mut g);
    assert_eq!(g.findings.len(), 1);
    let f = g.findings[0];
    assert_eq!((f.checker, f.at, f.found), (NAME, 1, evil));
    assert_eq!(f.expected, g.symbol("vectors").unwrap().unwrap());
    // Inside the real table but not at a slot start.
    g.set_sysreg(0, SysReg::VbarEl1, f.expected + 0x80);
    // The trampoline alias, but between two slots.
    g.set_sysreg(2, SysReg::VbarEl1, TRAMP_ALIAS_VA + 0x400);
    pass(&mut c, &mut g);
    assert_eq!(g.findings.len(), 3, "{:?}", g.findings);
}

#[test]
fn a_foreign_vbar_at_baseline_is_reported() {
    let mut g = MemGuest::linux();
    g.set_sysreg(0, SysReg::VbarEl1, 0xffff_8000_dead_0000);
    let mut c = VectorsChecker::new();
    c.baseline(&mut g).unwrap();
    assert_eq!(g.findings.len(), 1);
}

#[test]
fn flipped_protection_bits_are_reported() {
    let (mut c, mut g) = ready();
    let sctlr = g.sysreg(2, SysReg::SctlrEl1).unwrap();
    g.set_sysreg(2, SysReg::SctlrEl1, sctlr ^ SCTLR_WXN);
    pass(&mut c, &mut g);
    assert_eq!(g.findings.len(), 1);
    assert_eq!(g.findings[0].what, "SCTLR_EL1 protection bits changed");
    assert_eq!(g.findings[0].at, 2);
    assert_eq!(g.findings[0].found ^ g.findings[0].expected, SCTLR_WXN);
    g.set_sysreg(0, SysReg::SctlrEl1, sctlr & !SCTLR_M);
    let tcr = g.sysreg(1, SysReg::TcrEl1).unwrap();
    g.set_sysreg(1, SysReg::TcrEl1, tcr | TCR_HPD1);
    pass(&mut c, &mut g);
    assert_eq!(g.findings.len(), 3);
    assert_eq!(g.findings[2].what, "TCR_EL1 protection bits changed");
}

#[test]
fn bits_linux_changes_itself_are_ignored() {
    let (mut c, mut g) = ready();
    let sctlr = g.sysreg(0, SysReg::SctlrEl1).unwrap();
    // EnIA (per-task pointer-auth key enable) and TCF0 (MTE mode).
    g.set_sysreg(0, SysReg::SctlrEl1, sctlr | (1 << 31) | (1 << 38));
    let tcr = g.sysreg(0, SysReg::TcrEl1).unwrap();
    // T0SZ changes while the idmap is installed.
    g.set_sysreg(0, SysReg::TcrEl1, (tcr & !0x3f) | 25);
    pass(&mut c, &mut g);
    assert!(g.findings.is_empty(), "{:?}", g.findings);
}
