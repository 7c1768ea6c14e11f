//! The checker on the real Debian kernel, with tasks and creds built at the BTF offsets on
//! the kernel's own `init_task` list (whose creds are the `Image`'s `init_cred`).

use dsm_api::test_objects::Objects;
use dsm_api::{Budget, CheckError, Checker, Progress};
use dsm_btf::layouts::DEBIAN_6_1_0_56_ARM64 as L;
use monitor_creds::{CredsChecker, NAME, PASS_COST};

const T: dsm_btf::layout::Task = L.task_struct;
const C: dsm_btf::layout::Cred = L.cred;

/// init (1, root), a shell (20, uid 1000) with a thread (21), its child (30, uid 1000).
struct Sys {
    o: Objects,
    sh: u64,
    child: u64,
    c: CredsChecker,
}

impl Sys {
    fn new() -> Self {
        let mut o = Objects::new();
        o.spawn(1, "init", 0);
        let sh = o.spawn(20, "sh", 1000);
        o.thread(sh, 21);
        let child = o.spawn(30, "ls", 1000);
        o.g.write_u64_kva(child + T.real_parent, sh);
        let mut c = CredsChecker::new(L);
        c.baseline(&mut o.g).unwrap();
        Sys { o, sh, child, c }
    }

    /// Two checks: a finding is raised once two passes in a row see it.
    fn pass(&mut self) {
        for _ in 0..2 {
            let mut b = Budget::new(PASS_COST);
            assert_eq!(self.c.check(&mut self.o.g, &mut b), Ok(Progress::Done));
        }
    }

    fn whats(&self) -> Vec<&'static str> {
        self.o.g.findings.iter().map(|f| f.what).collect()
    }

    fn cred_of(&self, task: u64) -> u64 {
        self.o.g.read_u64_kva(task + T.cred)
    }

    fn exec(&mut self, task: u64) {
        let id = self.o.g.read_u64_kva(task + T.self_exec_id);
        self.o.g.write_u64_kva(task + T.self_exec_id, id + 1);
    }
}

#[test]
fn a_clean_system_raises_nothing() {
    let mut s = Sys::new();
    s.pass();
    assert!(s.o.g.findings.is_empty(), "{:?}", s.o.g.findings);
    assert_eq!(s.o.g.heartbeats, [NAME; 2]);
    assert!(!s.o.g.paused);
}

#[test]
fn a_uid_flipped_to_zero_in_place_is_reported_once() {
    let mut s = Sys::new();
    let cred = s.cred_of(s.sh);
    s.o.set_id(cred, C.uid, 0);
    s.o.set_id(cred, C.euid, 0);
    s.pass();
    // The shell and its thread share the cred: both gained root without exec, and the
    // cred's uid is no longer its user_struct's.
    assert_eq!(
        s.whats(),
        [
            "uid 0 without exec",
            "uid 0 without exec",
            "uid not its user_struct's"
        ]
    );
    let f = s.o.g.findings[0];
    assert_eq!(f.checker, NAME);
    assert_eq!((f.at, f.expected, f.found), (s.sh, 1000, 0));
    let f = s.o.g.findings[2];
    assert_eq!((f.at, f.expected, f.found), (cred, 1000, 0));
    s.pass();
    assert_eq!(s.o.g.findings.len(), 3, "raised once while it lasts");
}

#[test]
fn only_euid_flipped_is_enough() {
    let mut s = Sys::new();
    let cred = s.cred_of(s.child);
    s.o.set_id(cred, C.euid, 0);
    s.pass();
    assert_eq!(s.whats(), ["uid 0 without exec"]);
    assert_eq!(s.o.g.findings[0].at, s.child);
}

#[test]
fn root_after_an_exec_or_with_saved_uid_zero_is_accepted() {
    let mut s = Sys::new();
    // `su`: exec, then a fresh root cred.
    let root = s.o.cred(0, 2);
    s.o.set_creds(s.child, root, root);
    s.exec(s.child);
    // A setuid program that dropped to euid 1000 at baseline (suid 0) takes root back.
    let (o, sh) = (&mut s.o, s.sh);
    let cred = o.g.read_u64_kva(sh + T.cred);
    o.set_id(cred, C.suid, 0);
    s.pass();
    s.o.set_id(cred, C.euid, 0);
    s.pass();
    assert!(s.o.g.findings.is_empty(), "{:?}", s.o.g.findings);
}

#[test]
fn a_new_root_task_is_judged_against_its_parent() {
    let mut s = Sys::new();
    // Forked by the shell after the baseline, root, same exec count: no exec happened.
    let evil = s.o.spawn(40, "sh", 0);
    s.o.g.write_u64_kva(evil + T.real_parent, s.sh);
    let ok = s.o.spawn(41, "sudo", 0);
    s.o.g.write_u64_kva(ok + T.real_parent, s.sh);
    s.exec(ok);
    s.pass();
    assert_eq!(s.whats(), ["uid 0 without exec"]);
    assert_eq!(s.o.g.findings[0].at, evil);
}

#[test]
fn root_only_in_the_subjective_cred_is_reported() {
    let mut s = Sys::new();
    let root = s.o.cred(0, 1);
    let real = s.o.g.read_u64_kva(s.child + T.real_cred);
    s.o.set_creds(s.child, real, root);
    s.pass();
    assert_eq!(s.whats(), ["root only in the subjective cred"]);
    let f = s.o.g.findings[0];
    assert_eq!((f.at, f.expected, f.found), (s.child, real, root));
}

#[test]
fn refcounts_below_the_pointers_or_absurd_are_reported() {
    let mut s = Sys::new();
    let cred = s.cred_of(s.child);
    s.o.g.write_u64_kva(cred + C.usage, 1);
    s.pass();
    assert_eq!(s.whats(), ["cred usage below its task references"]);
    assert_eq!(
        (s.o.g.findings[0].expected, s.o.g.findings[0].found),
        (2, 1)
    );
    s.o.g.write_u64_kva(cred + C.usage, u64::MAX);
    s.pass();
    assert_eq!(s.o.g.findings.last().unwrap().what, "cred usage absurd");
}

#[test]
fn a_cred_shared_by_two_processes_is_reported() {
    let mut s = Sys::new();
    let cred = s.cred_of(s.sh);
    // The shell's cred (4 references: shell and thread) handed to the child too.
    s.o.g.write_u64_kva(cred + C.usage, 6);
    s.o.set_creds(s.child, cred, cred);
    s.pass();
    assert_eq!(s.whats(), ["cred shared across processes"]);
    assert_eq!(s.o.g.findings[0].at, cred);
    // Pointing a task at init's cred is both sharing and a uid change without exec.
    let init_cred = s.cred_of(s.o.init_task);
    s.o.set_creds(s.child, init_cred, init_cred);
    s.pass();
    let w = s.whats();
    assert!(w.contains(&"uid 0 without exec"), "{w:?}");
    assert_eq!(s.o.g.findings.last().unwrap().at, init_cred);
}

#[test]
fn wild_cred_pointers_and_small_budgets() {
    let mut s = Sys::new();
    s.o.g.write_u64_kva(s.child + T.cred, 0xffff_7000_0000_0000);
    s.pass();
    assert_eq!(s.whats(), ["cred pointer unreadable"]);
    assert_eq!(
        s.c.check(&mut s.o.g, &mut Budget::new(2)),
        Err(CheckError::BudgetTooSmall)
    );
    assert!(!s.o.g.paused);
    let mut fresh = CredsChecker::new(L);
    assert_eq!(
        fresh.check(&mut s.o.g, &mut Budget::new(PASS_COST)),
        Err(CheckError::NoBaseline)
    );
}

#[test]
fn a_cred_lent_by_override_creds_is_not_sharing() {
    let mut s = Sys::new();
    // `override_creds`: the child acts with the shell's cred (a reference taken), its own
    // `real_cred` untouched.
    let lent = s.cred_of(s.sh);
    s.o.g.write_u64_kva(lent + C.usage, 5);
    let real = s.o.g.read_u64_kva(s.child + T.real_cred);
    s.o.set_creds(s.child, real, lent);
    s.pass();
    assert!(s.o.g.findings.is_empty(), "{:?}", s.o.g.findings);
}

/// One check (one period).
fn check_once(s: &mut Sys) {
    let mut b = Budget::new(PASS_COST);
    assert_eq!(s.c.check(&mut s.o.g, &mut b), Ok(Progress::Done));
}

#[test]
fn the_cred_overwrite_attack_is_caught_in_the_first_pass_after_it() {
    // attack.sh: a root shell forks `runas`, which drops to 1000 and execs `sh`; later a
    // module writes 0 over every id of that `sh`'s cred, in place, and the shell exits
    // a moment later: one pass may be all that sees it.
    let mut s = Sys::new();
    let root_sh = s.o.spawn(40, "sh", 0);
    check_once(&mut s);
    let victim = s.o.spawn(41, "runas", 0);
    s.o.g.write_u64_kva(victim + T.real_parent, root_sh);
    let exec_id = s.o.g.read_u64_kva(root_sh + T.self_exec_id);
    s.o.g.write_u64_kva(victim + T.self_exec_id, exec_id);
    check_once(&mut s);
    let user = s.o.cred(1000, 2);
    s.o.set_creds(victim, user, user);
    s.exec(victim);
    check_once(&mut s);
    check_once(&mut s);
    assert!(s.o.g.findings.is_empty(), "{:?}", s.o.g.findings);
    for field in [
        C.uid, C.gid, C.suid, C.sgid, C.euid, C.egid, C.fsuid, C.fsgid,
    ] {
        s.o.set_id(user, field, 0);
    }
    check_once(&mut s);
    assert_eq!(
        s.whats(),
        ["uid 0 without exec", "uid not its user_struct's"]
    );
    let f = s.o.g.findings[0];
    assert_eq!((f.at, f.expected, f.found), (victim, 1000, 0));
    let f = s.o.g.findings[1];
    assert_eq!((f.at, f.expected, f.found), (user, 1000, 0));
    check_once(&mut s);
    check_once(&mut s);
    assert_eq!(s.o.g.findings.len(), 2, "raised once while it lasts");
}

#[test]
fn a_cred_overwritten_before_any_pass_saw_the_task_is_still_caught() {
    // The victim exec'd as uid 1000 and was overwritten before a pass ran: no pass saw it
    // unprivileged, and its parent is root, so only the user_struct tells.
    let mut s = Sys::new();
    let root_sh = s.o.spawn(40, "sh", 0);
    check_once(&mut s);
    let victim = s.o.spawn(41, "sh", 1000);
    s.o.g.write_u64_kva(victim + T.real_parent, root_sh);
    s.exec(victim);
    let cred = s.cred_of(victim);
    for field in [C.uid, C.euid, C.suid, C.fsuid] {
        s.o.set_id(cred, field, 0);
    }
    check_once(&mut s);
    assert_eq!(s.whats(), ["uid not its user_struct's"]);
    let f = s.o.g.findings[0];
    assert_eq!((f.at, f.expected, f.found), (cred, 1000, 0));
}

#[test]
fn a_setuid_that_moved_the_user_struct_too_is_accepted_and_a_wild_one_is_reported() {
    let mut s = Sys::new();
    // `setuid(0)` by a holder of CAP_SETUID goes through `set_user`: both move together
    // (judged by the exec rule, not this one; here the task exec'd).
    let cred = s.cred_of(s.child);
    let root_user = s.o.user_struct(0);
    s.o.set_id(cred, C.uid, 0);
    s.o.g.write_u64_kva(cred + C.user, root_user);
    s.exec(s.child);
    s.pass();
    assert!(s.o.g.findings.is_empty(), "{:?}", s.o.g.findings);
    s.o.g.write_u64_kva(cred + C.user, 0xdead_0000);
    s.pass();
    assert_eq!(s.whats(), ["cred user_struct unreadable"]);
}
