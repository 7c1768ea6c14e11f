//! The checker on the real Debian kernel, clean and with injected hooks.

use dsm_api::test_support::MemGuest;
use dsm_api::walk::DESC_AP_RO;
use dsm_api::{Access, Budget, CheckError, Checker, Guest, Progress, WatchEvent, WatchId};
use monitor_syscall_table::{SyscallTableChecker, NAME};

fn full_pass(c: &mut SyscallTableChecker, g: &mut MemGuest) {
    let mut budget = Budget::new(1 << 20);
    assert_eq!(c.check(g, &mut budget), Ok(Progress::Done));
}

fn table_pa(g: &MemGuest) -> u64 {
    g.config.text_pa + g.symbols().sys_call_table.unwrap().offset
}

#[test]
fn clean_kernel_raises_nothing() {
    let mut g = MemGuest::linux();
    let mut c = SyscallTableChecker::new();
    assert_eq!(
        c.check(&mut g, &mut Budget::new(1 << 20)),
        Err(CheckError::NoBaseline)
    );
    c.baseline(&mut g).unwrap();
    full_pass(&mut c, &mut g);
    full_pass(&mut c, &mut g);
    assert!(g.findings.is_empty(), "{:?}", g.findings);
    assert_eq!(g.heartbeats, [NAME, NAME]);
    // The baseline asked for stage-2 write protection of the whole table.
    assert_eq!(g.watches.len(), 1);
    assert_eq!(g.watches[0].1.start, table_pa(&g));
    assert_eq!(g.watches[0].1.len, 451 * 8);
}

#[test]
fn a_refused_watch_is_asked_for_again() {
    let mut g = MemGuest::linux();
    let mut c = SyscallTableChecker::new();
    // The runtime could not pause Linux for the baseline's watch, nor for the first pass's.
    g.refuse_watches = 2;
    c.baseline(&mut g).unwrap();
    assert!(g.watches.is_empty());
    full_pass(&mut c, &mut g);
    assert!(g.watches.is_empty());
    full_pass(&mut c, &mut g);
    full_pass(&mut c, &mut g);
    assert_eq!(g.watches.len(), 1, "watched once, not once per pass");
    assert_eq!(g.watches[0].1.start, table_pa(&g));
}

#[test]
fn a_hooked_entry_is_reported_once() {
    let mut g = MemGuest::linux();
    let mut c = SyscallTableChecker::new();
    c.baseline(&mut g).unwrap();
    let k = g.kernel().unwrap();
    // Diamorphine hooks getdents64 (61) and kill (129).
    let evil = k.text_va + 0x1234_5678;
    let getdents = g.symbol("__arm64_sys_getdents64").unwrap().unwrap();
    g.write_u64_phys(table_pa(&g) + 61 * 8, evil).unwrap();
    full_pass(&mut c, &mut g);
    assert_eq!(g.findings.len(), 1);
    let f = g.findings[0];
    assert_eq!(f.checker, NAME);
    assert_eq!(f.what, "syscall entry changed");
    assert_eq!(
        f.at,
        k.text_va + g.symbols().sys_call_table.unwrap().offset + 61 * 8
    );
    assert_eq!((f.expected, f.found), (getdents, evil));
    full_pass(&mut c, &mut g);
    assert_eq!(g.findings.len(), 1, "not repeated while unchanged");
    // Restored, then hooked again: reported again.
    g.write_u64_phys(table_pa(&g) + 61 * 8, getdents).unwrap();
    full_pass(&mut c, &mut g);
    g.write_u64_phys(table_pa(&g) + 61 * 8, evil).unwrap();
    full_pass(&mut c, &mut g);
    assert_eq!(g.findings.len(), 2);
}

#[test]
fn a_hook_present_before_the_baseline_is_not_trusted() {
    let mut g = MemGuest::linux();
    g.write_u64_phys(table_pa(&g) + 129 * 8, 0xffff_0000_dead_0000)
        .unwrap();
    let mut c = SyscallTableChecker::new();
    c.baseline(&mut g).unwrap();
    assert_eq!(g.findings.len(), 1);
    assert_eq!(g.findings[0].found, 0xffff_0000_dead_0000);
}

#[test]
fn small_budgets_resume_where_they_stopped() {
    let mut g = MemGuest::linux();
    let mut c = SyscallTableChecker::new();
    c.baseline(&mut g).unwrap();
    g.write_u64_phys(table_pa(&g) + 450 * 8, 0x1).unwrap();
    let mut calls = 0;
    loop {
        calls += 1;
        match c.check(&mut g, &mut Budget::new(100 * 8)).unwrap() {
            Progress::More => assert!(g.findings.is_empty()),
            Progress::Done => break,
        }
    }
    assert_eq!(calls, 5);
    assert_eq!(g.findings.len(), 1);
    assert_eq!(
        c.check(&mut g, &mut Budget::new(4)),
        Err(CheckError::BudgetTooSmall)
    );
}

#[test]
fn a_writable_mapping_of_the_table_is_reported() {
    // Diamorphine's first step: make the table's page writable in swapper_pg_dir.
    let mut g = MemGuest::linux();
    let mut c = SyscallTableChecker::new();
    c.baseline(&mut g).unwrap();
    let k = g.kernel().unwrap();
    let va = k.text_va + g.symbols().sys_call_table.unwrap().offset;
    let t = g.translate(0, va).unwrap();
    assert_eq!(t.level, 3);
    // Find the leaf descriptor's slot by walking by hand.
    let mut table = g.sysreg(0, dsm_api::SysReg::Ttbr1El1).unwrap() & 0x0000_ffff_ffff_f000;
    for level in 0..3 {
        let slot = table + ((va >> (39 - 9 * level)) & 0x1ff) * 8;
        table = g.read_u64_phys(slot).unwrap() & 0x0000_ffff_ffff_f000;
    }
    let slot = table + ((va >> 12) & 0x1ff) * 8;
    g.write_u64_phys(slot, t.desc & !DESC_AP_RO).unwrap();
    full_pass(&mut c, &mut g);
    assert_eq!(g.findings.len(), 1);
    assert_eq!(g.findings[0].what, "sys_call_table mapped writable");
}

#[test]
fn a_shadow_table_behind_a_remapped_va_is_reported() {
    // Instead of writing the table, an attacker points its VA at a hooked copy.
    let mut g = MemGuest::linux();
    let mut c = SyscallTableChecker::new();
    c.baseline(&mut g).unwrap();
    let k = g.kernel().unwrap();
    let va = k.text_va + g.symbols().sys_call_table.unwrap().offset;
    let shadow = g.alloc_table();
    let root = g.sysreg(0, dsm_api::SysReg::Ttbr1El1).unwrap() & 0x0000_ffff_ffff_f000;
    let t = g.translate(0, va).unwrap();
    g.map(root, va & !0xfff, shadow, 0x1000, 3, t.desc & 0xfff & !3);
    assert_eq!(g.translate(0, va).unwrap().pa & !0xfff, shadow);
    full_pass(&mut c, &mut g);
    assert_eq!(g.findings.len(), 1, "{:?}", g.findings);
    assert_eq!(g.findings[0].what, "sys_call_table remapped");
    assert_eq!(g.findings[0].found, shadow);
    // A vCPU in EL0 (on the KPTI trampoline tables) is not used for the mapping check.
    for v in 0..g.vcpus() {
        g.set_sysreg(v, dsm_api::SysReg::Pstate, 0);
    }
    let mut c = SyscallTableChecker::new();
    c.baseline(&mut g).unwrap();
    full_pass(&mut c, &mut g);
    assert_eq!(g.findings.len(), 1);
}

#[test]
fn a_trapped_write_is_reported_at_once() {
    let mut g = MemGuest::linux();
    let mut c = SyscallTableChecker::new();
    c.baseline(&mut g).unwrap();
    let ev = |pa| WatchEvent {
        id: WatchId(0),
        pa,
        access: Access::Write,
        vcpu: 1,
        pc: 0xffff_8000_1000_0000,
        value: 0x1234,
        len: 8,
    };
    let pa = table_pa(&g);
    c.on_watch(&mut g, &ev(pa - 8)).unwrap();
    assert!(g.findings.is_empty());
    c.on_watch(&mut g, &ev(pa + 8)).unwrap();
    assert_eq!(g.findings.len(), 1);
    assert_eq!(g.findings[0].what, "write to sys_call_table");
}
