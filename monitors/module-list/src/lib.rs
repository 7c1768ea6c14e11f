//! DSM checker `module-list`: the module list against the module kobject set.
//!
//! Linux keeps every loaded module on the `modules` list (`module.list`) and, once its
//! sysfs directory exists, its kobject (`module.mkobj.kobj`) on `module_kset->list`.
//! A rootkit that unlinks itself from `modules` (to vanish from `/proc/modules` and
//! `lsmod`) stays in the kset unless it also deletes its kobject; this checker walks both
//! views and reports a module present in one and missing from the other:
//!
//! - in the kset but not on the list: the kernel never does that (a module joins the list
//!   before sysfs and leaves sysfs before the list), so it is always reported;
//! - `LIVE` on the list but not in the kset: reported. Modules still loading (`UNFORMED`,
//!   `COMING`) or unloading (`GOING`) legitimately have no kobject.
//!
//! Kset entries whose `module_kobject.mod` is NULL are built-in modules with parameters and
//! are skipped; a non-NULL `mod` must point back at the kobject it came from.
//!
//! Findings: `at` is the module's VA, `expected` the head of the list it should be on,
//! `found` its kobject's VA (0 if none). A list that cannot be walked (a pointer outside
//! RAM, a broken `prev`, a cycle or more than the step limit) is itself a finding. Each pass
//! runs with the guest stopped; a finding is raised once two passes in a row see it (one
//! snapshot may catch the kernel halfway through a `list_del`), then not again while it
//! lasts.
//!
//! Symbols: `modules` and `module_kset` are data, not in kallsyms; they come from
//! [`dsm_api::xref::data_symbol`]. Layout: [`dsm_btf::layouts::DEBIAN_6_1_0_56_ARM64`].
#![no_std]
#![forbid(unsafe_code)]

use dsm_api::kmem::{step, AddrSet, KernelMemory, ListFault, ListShape, ReportOnce, Stop};
use dsm_api::xref::data_symbol;
use dsm_api::{Budget, CheckError, Checker, Finding, Guest, Progress, StopTheWorld};
use dsm_btf::KernelLayout;

pub const NAME: &str = "module-list";
/// Most modules either view may hold (Debian loads a few dozen).
pub const MAX_MODULES: usize = 512;
/// Most kset entries (loadable modules plus built-ins with parameters, about 150).
pub const MAX_KOBJECTS: usize = 1024;
/// Budget units are objects read; a pass is atomic (one consistent snapshot), so the budget
/// must cover it: at most this many.
pub const PASS_COST: u64 = (MAX_MODULES + MAX_KOBJECTS) as u64;

#[derive(Debug, Clone, Copy)]
struct Baseline {
    mem: KernelMemory,
    /// VA of `modules` (a `list_head`).
    modules: u64,
    /// VA of `module_kset` (a pointer to the `kset`).
    module_kset: u64,
}

pub struct ModuleListChecker {
    layout: KernelLayout,
    base: Option<Baseline>,
    listed: AddrSet<MAX_MODULES>,
    kobjs: AddrSet<MAX_KOBJECTS>,
    in_kset: AddrSet<MAX_KOBJECTS>,
    once: ReportOnce<32>,
}

impl ModuleListChecker {
    /// A checker for the kernel whose struct layout is `layout`.
    pub const fn new(layout: KernelLayout) -> Self {
        Self {
            layout,
            base: None,
            listed: AddrSet::new(),
            kobjs: AddrSet::new(),
            in_kset: AddrSet::new(),
            once: ReportOnce::new(true),
        }
    }

    fn shape(&self) -> ListShape {
        ListShape {
            next: self.layout.list_head.next,
            prev: self.layout.list_head.prev,
        }
    }

    /// One full pass over both views.
    fn pass(&mut self, guest: &mut dyn Guest, budget: &mut Budget) -> Result<(), CheckError> {
        let b = self.base.ok_or(CheckError::NoBaseline)?;
        let mut g = StopTheWorld::new(guest)?;
        let l = self.layout;
        let shape = self.shape();
        self.listed.clear();
        self.kobjs.clear();
        self.in_kset.clear();

        let listed = &mut self.listed;
        let walked = b.mem.walk_list(&*g, b.modules, shape, MAX_MODULES, |node| {
            step(budget)?;
            listed.push(node.wrapping_sub(l.module.list));
            Ok::<(), Stop>(())
        });
        let list_ok = self.fault(&mut *g, walked, b.modules)?;
        self.listed.seal();

        let kset = b.mem.u64(&*g, b.module_kset)?;
        let head = kset.wrapping_add(l.kset.list);
        let kobjs = &mut self.kobjs;
        let walked = if kset == 0 {
            // Set by `param_sysfs_init` long before the baseline: NULL now means tampering.
            Err(Stop::Fault(ListFault::Unreadable { at: b.module_kset }))
        } else {
            b.mem.walk_list(&*g, head, shape, MAX_KOBJECTS, |node| {
                step(budget)?;
                kobjs.push(node.wrapping_sub(l.kobject.entry));
                Ok(())
            })
        };
        let kset_ok = self.fault(&mut *g, walked, head)?;

        for i in 0..self.kobjs.len() {
            let kobj = self.kobjs.as_slice()[i];
            step(budget)?;
            let mk = kobj.wrapping_sub(l.module_kobject.kobj);
            let module = b.mem.u64(&*g, mk.wrapping_add(l.module_kobject.module))?;
            if module == 0 {
                continue; // built in
            }
            if module.wrapping_add(l.module.mkobj_kobj) != kobj {
                self.once.report(
                    &mut *g,
                    Finding::new(NAME, "module kobject points elsewhere", kobj, kobj, module),
                );
                continue;
            }
            let _ = self.in_kset.push(module);
            if list_ok && !self.listed.contains(module) {
                self.once.report(
                    &mut *g,
                    Finding::new(
                        NAME,
                        "module hidden from the module list",
                        module,
                        b.modules,
                        kobj,
                    ),
                );
            }
        }
        self.in_kset.seal();

        if kset_ok && list_ok {
            for &module in self.listed.as_slice() {
                if self.in_kset.contains(module) {
                    continue;
                }
                let state = b.mem.u32(&*g, module.wrapping_add(l.module.state))?;
                if u64::from(state) == l.module.state_live {
                    self.once.report(
                        &mut *g,
                        Finding::new(
                            NAME,
                            "live module missing from the kobject set",
                            module,
                            head,
                            0,
                        ),
                    );
                }
            }
        }
        self.once.end_pass();
        Ok(())
    }

    /// Turns a walk's fault into a finding; `Ok(true)` if the walk completed.
    fn fault(
        &mut self,
        guest: &mut dyn Guest,
        walked: Result<usize, Stop>,
        head: u64,
    ) -> Result<bool, CheckError> {
        match walked {
            Ok(_) => Ok(true),
            Err(Stop::Check(e)) => Err(e),
            Err(Stop::Fault(f)) => {
                let found = f.found();
                self.once
                    .report(guest, Finding::new(NAME, f.what(), f.at(), head, found));
                Ok(false)
            }
        }
    }
}

impl Checker for ModuleListChecker {
    fn name(&self) -> &'static str {
        NAME
    }

    /// Finds the two data symbols and the kernel's page tables; the cross-view needs no
    /// known-good state, so the first pass runs now and reports what it finds.
    fn baseline(&mut self, guest: &mut dyn Guest) -> Result<(), CheckError> {
        self.base = Some(Baseline {
            mem: KernelMemory::new(guest)?,
            modules: data_symbol(guest, "modules")?,
            module_kset: data_symbol(guest, "module_kset")?,
        });
        self.once = ReportOnce::new(true);
        self.pass(guest, &mut Budget::new(PASS_COST))
    }

    fn check(
        &mut self,
        guest: &mut dyn Guest,
        budget: &mut Budget,
    ) -> Result<Progress, CheckError> {
        self.pass(guest, budget)?;
        guest.heartbeat(NAME);
        Ok(Progress::Done)
    }
}
