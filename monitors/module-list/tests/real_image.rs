//! The checker on the real Debian kernel, with modules built at the BTF offsets around the
//! kernel's own `modules` list and a `module_kset` allocated the way `param_sysfs_init` does.

use dsm_api::test_support::MemGuest;
use dsm_api::xref::data_symbol;
use dsm_api::{Budget, CheckError, Checker, Progress};
use dsm_btf::layouts::DEBIAN_6_1_0_56_ARM64 as L;
use monitor_module_list::{ModuleListChecker, NAME, PASS_COST};

struct System {
    g: MemGuest,
    modules: u64,
    kset_list: u64,
    /// VAs of the modules added, in order.
    mods: Vec<u64>,
}

impl System {
    /// The kernel with `n` live modules and two built-in kset entries.
    fn new(n: usize) -> Self {
        let mut g = MemGuest::linux();
        let modules = data_symbol(&g, "modules").unwrap();
        let kset_ptr = data_symbol(&g, "module_kset").unwrap();
        let (_, kset) = g.alloc_object(L.kset.size);
        g.write_u64_kva(kset_ptr, kset);
        let kset_list = kset + L.kset.list;
        g.list_init(kset_list);
        let mut s = System {
            g,
            modules,
            kset_list,
            mods: Vec::new(),
        };
        s.builtin();
        for i in 0..n {
            s.module(&format!("mod{i}"));
        }
        s.builtin();
        s
    }

    /// A built-in module with parameters: a kobject whose `mod` is NULL.
    fn builtin(&mut self) {
        let (_, mk) = self.g.alloc_object(L.module_kobject.size);
        let entry = mk + L.module_kobject.kobj + L.kobject.entry;
        self.g.list_add_tail(self.kset_list, entry);
    }

    /// A loaded module: on `modules`, and its kobject in the kset pointing back at it.
    fn module(&mut self, name: &str) -> u64 {
        let g = &mut self.g;
        let (_, m) = g.alloc_object(L.module.size);
        g.write_kva(m + L.module.name, name.as_bytes());
        g.write_kva(
            m + L.module.state,
            &(L.module.state_live as u32).to_le_bytes(),
        );
        g.list_add_tail(self.modules, m + L.module.list);
        let mk = m + L.module.mkobj;
        g.write_u64_kva(mk + L.module_kobject.module, m);
        g.list_add_tail(self.kset_list, m + L.module.mkobj_kobj + L.kobject.entry);
        self.mods.push(m);
        m
    }

    fn baseline(&mut self) -> ModuleListChecker {
        let mut c = ModuleListChecker::new(L);
        c.baseline(&mut self.g).unwrap();
        c
    }

    /// Two checks: a finding is raised once two passes in a row see it.
    fn pass(&mut self, c: &mut ModuleListChecker) {
        for _ in 0..2 {
            let mut b = Budget::new(PASS_COST);
            assert_eq!(c.check(&mut self.g, &mut b), Ok(Progress::Done));
        }
    }

    fn whats(&self) -> Vec<&'static str> {
        self.g.findings.iter().map(|f| f.what).collect()
    }
}

#[test]
fn a_clean_system_raises_nothing() {
    let mut s = System::new(4);
    let mut c = s.baseline();
    s.pass(&mut c);
    s.pass(&mut c);
    assert!(s.g.findings.is_empty(), "{:?}", s.g.findings);
    assert_eq!(s.g.heartbeats, [NAME; 4]);
    assert!(!s.g.paused, "the world is resumed after each pass");
    assert_eq!(s.g.pauses, 5);
}

#[test]
fn a_module_unlinked_from_the_list_but_in_the_kset_is_reported_once() {
    let mut s = System::new(4);
    let mut c = s.baseline();
    let hidden = s.mods[2];
    s.g.list_del(hidden + L.module.list);
    // One snapshot is not enough: the kernel may have been paused mid-relink.
    assert_eq!(
        c.check(&mut s.g, &mut Budget::new(PASS_COST)),
        Ok(Progress::Done)
    );
    assert!(s.g.findings.is_empty());
    s.pass(&mut c);
    assert_eq!(s.whats(), ["module hidden from the module list"]);
    let f = s.g.findings[0];
    assert_eq!(f.checker, NAME);
    assert_eq!((f.at, f.expected), (hidden, s.modules));
    assert_eq!(f.found, hidden + L.module.mkobj_kobj);
    s.pass(&mut c);
    assert_eq!(s.g.findings.len(), 1, "not repeated while it lasts");
}

#[test]
fn a_live_module_missing_from_the_kset_is_reported_but_a_loading_one_is_not() {
    let mut s = System::new(3);
    let mut c = s.baseline();
    let m = s.mods[1];
    s.g.list_del(m + L.module.mkobj_kobj + L.kobject.entry);
    // Still coming up: sysfs not there yet, legitimately.
    let coming = (L.module.state_coming as u32).to_le_bytes();
    s.g.write_kva(m + L.module.state, &coming);
    s.pass(&mut c);
    assert!(s.g.findings.is_empty(), "{:?}", s.g.findings);
    let live = (L.module.state_live as u32).to_le_bytes();
    s.g.write_kva(m + L.module.state, &live);
    s.pass(&mut c);
    assert_eq!(s.whats(), ["live module missing from the kobject set"]);
    assert_eq!(s.g.findings[0].at, m);
}

#[test]
fn a_kobject_pointing_at_another_module_is_reported() {
    let mut s = System::new(2);
    let mut c = s.baseline();
    let (a, b) = (s.mods[0], s.mods[1]);
    s.g.write_u64_kva(a + L.module.mkobj + L.module_kobject.module, b);
    s.pass(&mut c);
    assert!(s.whats().contains(&"module kobject points elsewhere"));
}

#[test]
fn a_cycle_that_misses_the_head_is_a_bounded_finding() {
    let mut s = System::new(3);
    let mut c = s.baseline();
    // mod2.next -> mod1 and back: the walk would never return to the head, but mod1's
    // `prev` cannot name both mod0 and mod2, so the cycle shows at its entry.
    let (m1, m2) = (s.mods[1] + L.module.list, s.mods[2] + L.module.list);
    s.g.write_u64_kva(m2, m1);
    s.g.write_u64_kva(m1 + 8, m2);
    s.pass(&mut c);
    assert_eq!(s.whats(), ["list link broken"]);
    assert_eq!(s.g.findings[0].at, m1);
}

#[test]
fn a_list_longer_than_the_step_limit_is_a_finding() {
    let mut s = System::new(1);
    let mut c = s.baseline();
    // Consistent links, absurd count: bare list nodes are enough.
    for _ in 0..monitor_module_list::MAX_MODULES + 1 {
        let (_, node) = s.g.alloc_object(16);
        s.g.list_add_tail(s.modules, node);
    }
    s.pass(&mut c);
    assert_eq!(s.whats(), ["list too long or looping"]);
    assert_eq!(s.g.findings[0].at, s.modules);
}

#[test]
fn pointers_outside_ram_and_broken_links_are_findings() {
    let mut s = System::new(3);
    let mut c = s.baseline();
    let m1 = s.mods[1] + L.module.list;
    let saved = s.g.read_u64_kva(m1);
    s.g.write_u64_kva(m1, 0xffff_7000_dead_0000);
    s.pass(&mut c);
    assert_eq!(s.whats(), ["list link unreadable"]);
    assert_eq!(s.g.findings[0].at, 0xffff_7000_dead_0000);
    // A user-space pointer is refused as well.
    s.g.write_u64_kva(m1, 0x4000_0000);
    s.pass(&mut c);
    assert_eq!(s.g.findings.len(), 2);
    // Next restored but prev of the following node wrong: a half-done unlink.
    s.g.write_u64_kva(m1, saved);
    s.g.write_u64_kva(saved + 8, s.mods[0] + L.module.list);
    s.pass(&mut c);
    assert_eq!(s.g.findings.last().unwrap().what, "list link broken");
}

#[test]
fn a_null_kset_and_a_small_budget_are_handled() {
    let mut s = System::new(1);
    let mut c = s.baseline();
    assert_eq!(
        c.check(&mut s.g, &mut Budget::new(2)),
        Err(CheckError::BudgetTooSmall)
    );
    assert!(!s.g.paused);
    let kset_ptr = data_symbol(&s.g, "module_kset").unwrap();
    s.g.write_u64_kva(kset_ptr, 0);
    s.pass(&mut c);
    assert_eq!(s.whats(), ["list link unreadable"]);
}

#[test]
fn check_before_baseline_is_an_error() {
    let mut s = System::new(0);
    let mut c = ModuleListChecker::new(L);
    assert_eq!(
        c.check(&mut s.g, &mut Budget::new(PASS_COST)),
        Err(CheckError::NoBaseline)
    );
}
