//! DSM checker `creds`: credential anomalies, judged from outside.
//!
//! Privilege-escalation exploits end by giving their task root credentials: they write 0
//! into the task's `cred` ids, or point `cred`/`real_cred` at another task's root `cred`
//! (or at `init_cred`). What the checker can decide from guest memory alone, for every task
//! on the task list (processes and their threads):
//!
//! - **uid 0 without exec.** A task that was not root (`uid`, `euid` and `suid` of its
//!   `real_cred` all non-zero) and now has `uid` or `euid` 0 must have exec'd (a setuid
//!   binary): `task_struct.self_exec_id` counts execs, so an unchanged count means no exec
//!   and the gain is reported. A task with saved uid 0 may legitimately `seteuid(0)`, so
//!   it is never reported for that. The reference is the task's own state at the previous
//!   clean pass (the baseline at first); a task born since is compared with its parent
//!   (`real_parent`), whose `self_exec_id` it inherits at fork.
//! - **Root only in the subjective creds.** `cred != real_cred` happens inside
//!   `override_creds` for a few microseconds; `cred` root while `real_cred` is not, for two
//!   passes in a row, is reported.
//! - **Sharing the kernel never does.** Threads of one process share a `cred`; separate
//!   processes never do (fork without `CLONE_THREAD` and every credential change allocate
//!   a fresh one), so one `real_cred` used by two thread groups is reported. Subjective
//!   `cred` pointers are left out: `override_creds` lends one `cred` to many tasks.
//! - **A uid that is not its `user_struct`'s.** `set_user` gives a cred the `user_struct` of
//!   its new real uid whenever that uid changes, so `cred->uid == cred->user->uid` for
//!   every cred the kernel built. An id written in place breaks it, and no history is
//!   needed to see that: a task first seen after its overwrite is still caught.
//! - **Refcounts.** Each task holds one reference per pointer (`cred` and `real_cred`), so
//!   `usage` must be at least the number of task pointers seen, and not absurd.
//!
//! What cannot be decided from outside: whether an exec'd binary really was setuid root
//! (the file is not inspected), so any exec is trusted to explain a uid change; and file
//! capabilities or a `CAP_SETUID` holder calling `setuid(0)` without exec look like the
//! attack (rare on the pinned Debian system, and reported).
//!
//! Findings: `at` is the task's VA (or the `cred`'s for sharing and refcounts), `expected`
//! and `found` the values compared. Each pass runs with the guest stopped; a finding is
//! raised once two passes in a row see it, except `uid 0 without exec`, which no paused
//! kernel shows in passing and is raised at once (an attacker's task may exit before the
//! next pass).
//!
//! Symbols: `init_task` from [`dsm_api::xref::data_symbol`].
#![no_std]
#![forbid(unsafe_code)]

use dsm_api::kmem::{step, AddrSet, KernelMemory, ReportOnce, TaskLists};
use dsm_api::xref::data_symbol;
use dsm_api::{Budget, CheckError, Checker, Finding, Guest, GuestError, Progress, StopTheWorld};
use dsm_btf::KernelLayout;

pub const NAME: &str = "creds";
/// Most tasks checked (each costs 32 bytes of reference state, twice).
pub const MAX_TASKS: usize = 1024;
/// Budget units are tasks and creds read; the pass is atomic, so the budget must cover it.
pub const PASS_COST: u64 = 4 * MAX_TASKS as u64;
/// `usage` is an `atomic_long_t`; beyond this it is corrupt, not busy.
pub const MAX_USAGE: u64 = 1 << 31;

/// A task's reference state: what it was at the last clean pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Snap {
    task: u64,
    exec_id: u64,
    uid: u32,
    euid: u32,
    suid: u32,
    pid: u32,
}

impl Snap {
    fn root(&self) -> bool {
        self.uid == 0 || self.euid == 0
    }
    fn may_become_root(&self) -> bool {
        self.root() || self.suid == 0
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Ids {
    uid: u32,
    euid: u32,
    suid: u32,
    fsuid: u32,
}

#[derive(Debug, Clone, Copy)]
struct Baseline {
    mem: KernelMemory,
    init_task: u64,
}

pub struct CredsChecker {
    layout: KernelLayout,
    base: Option<Baseline>,
    tasks: AddrSet<MAX_TASKS>,
    /// Reference state by task VA (sorted), and the one this pass builds.
    snaps: [Snap; MAX_TASKS],
    nsnaps: usize,
    next: [Snap; MAX_TASKS],
    nnext: usize,
    /// (cred, thread-group leader) for every `real_cred`, (cred, 0) for every `cred`.
    refs: [(u64, u64); 2 * MAX_TASKS],
    nrefs: usize,
    once: ReportOnce<32>,
    /// For findings no paused kernel shows in passing: raised the first time they are seen.
    at_once: ReportOnce<32>,
}

impl CredsChecker {
    pub const fn new(layout: KernelLayout) -> Self {
        const Z: Snap = Snap {
            task: 0,
            exec_id: 0,
            uid: 0,
            euid: 0,
            suid: 0,
            pid: 0,
        };
        Self {
            layout,
            base: None,
            tasks: AddrSet::new(),
            snaps: [Z; MAX_TASKS],
            nsnaps: 0,
            next: [Z; MAX_TASKS],
            nnext: 0,
            refs: [(0, 0); 2 * MAX_TASKS],
            nrefs: 0,
            once: ReportOnce::new(true),
            at_once: ReportOnce::new(false),
        }
    }

    fn ids(&self, g: &dyn Guest, mem: KernelMemory, cred: u64) -> Result<Ids, GuestError> {
        let c = self.layout.cred;
        Ok(Ids {
            uid: mem.u32(g, cred.wrapping_add(c.uid))?,
            euid: mem.u32(g, cred.wrapping_add(c.euid))?,
            suid: mem.u32(g, cred.wrapping_add(c.suid))?,
            fsuid: mem.u32(g, cred.wrapping_add(c.fsuid))?,
        })
    }

    /// A task's pid, exec count and real ids now.
    fn snap(&self, g: &dyn Guest, mem: KernelMemory, task: u64) -> Result<Snap, GuestError> {
        let t = self.layout.task_struct;
        let real = mem.u64(g, task.wrapping_add(t.real_cred))?;
        let ids = self.ids(g, mem, real)?;
        Ok(Snap {
            task,
            exec_id: mem.u64(g, task.wrapping_add(t.self_exec_id))?,
            uid: ids.uid,
            euid: ids.euid,
            suid: ids.suid,
            pid: mem.u32(g, task.wrapping_add(t.pid))?,
        })
    }

    fn reference(&self, task: u64, pid: u32) -> Option<Snap> {
        let s = &self.snaps[..self.nsnaps];
        let i = s.binary_search_by_key(&task, |s| s.task).ok()?;
        // A recycled task_struct with another pid is a different task.
        (s[i].pid == pid).then_some(s[i])
    }

    fn pass(&mut self, guest: &mut dyn Guest, budget: &mut Budget) -> Result<(), CheckError> {
        let b = self.base.ok_or(CheckError::NoBaseline)?;
        let mut g = StopTheWorld::new(guest)?;
        let l = self.layout;
        let lists = TaskLists::new(
            l.task_struct.tasks,
            l.task_struct.thread_group,
            l.list_head.next,
            l.list_head.prev,
        );
        let walk = b
            .mem
            .collect_tasks(&*g, b.init_task, lists, budget, NAME, &mut self.tasks)?;
        if let Some(f) = walk {
            // `hidden-tasks` judges the list; without it nothing is judged here.
            self.once.report(&mut *g, f);
            self.once.end_pass();
            self.at_once.end_pass();
            return Ok(());
        }
        self.nnext = 0;
        self.nrefs = 0;
        for i in 0..self.tasks.len() {
            step(budget)?;
            let task = self.tasks.as_slice()[i];
            self.check_task(&mut *g, b.mem, task)?;
        }
        self.check_refs(&mut *g, b.mem, budget)?;
        let n = self.nnext;
        self.next[..n].sort_unstable_by_key(|s| s.task);
        self.snaps[..n].copy_from_slice(&self.next[..n]);
        self.nsnaps = n;
        self.once.end_pass();
        self.at_once.end_pass();
        Ok(())
    }

    fn check_task(
        &mut self,
        g: &mut dyn Guest,
        mem: KernelMemory,
        task: u64,
    ) -> Result<(), CheckError> {
        let t = self.layout.task_struct;
        let real = mem.u64(g, task.wrapping_add(t.real_cred))?;
        let cred = mem.u64(g, task.wrapping_add(t.cred))?;
        let leader = mem.u64(g, task.wrapping_add(t.group_leader))?;
        let (now, subj) = match (self.snap(g, mem, task), self.ids(g, mem, cred)) {
            (Ok(now), Ok(subj)) => (now, subj),
            _ => {
                let f = Finding::new(NAME, "cred pointer unreadable", task, real, cred);
                self.once.report(g, f);
                return Ok(());
            }
        };
        // Only `real_cred` names its owner: `override_creds` (overlayfs, nfsd) lends one
        // `cred` to many processes for a moment, so subjective pointers carry leader 0.
        for (c, owner) in [(real, leader), (cred, 0)] {
            if self.nrefs < self.refs.len() {
                self.refs[self.nrefs] = (c, owner);
                self.nrefs += 1;
            }
        }

        // The reference: this task at the last clean pass, else its parent now.
        let reference = match self.reference(task, now.pid) {
            Some(r) => Some(r),
            None => {
                let parent = mem.u64(g, task.wrapping_add(t.real_parent))?;
                if parent != task && self.tasks.contains(parent) {
                    self.snap(g, mem, parent).ok()
                } else {
                    None
                }
            }
        };
        let mut keep = now;
        if let Some(r) = reference {
            if now.root() && !r.may_become_root() && now.exec_id == r.exec_id {
                let found = if now.uid == 0 { now.uid } else { now.euid };
                let what = "uid 0 without exec";
                // Not a state the kernel passes through: an exec bumps `self_exec_id`
                // before it commits the new creds, and `setuid(0)` needs saved uid 0. So
                // one pass is enough, and the attacker's task may be gone by the next.
                self.at_once.report(
                    g,
                    Finding::new(NAME, what, task, u64::from(r.uid), u64::from(found)),
                );
                // Keep judging against the pre-attack state.
                keep = Snap { task, ..r };
                keep.pid = now.pid;
            }
        }
        if cred != real && !now.root() && (subj.uid == 0 || subj.euid == 0 || subj.fsuid == 0) {
            let what = "root only in the subjective cred";
            self.once
                .report(g, Finding::new(NAME, what, task, real, cred));
        }
        if self.nnext < MAX_TASKS {
            self.next[self.nnext] = keep;
            self.nnext += 1;
        }
        Ok(())
    }

    /// Usage counts against the task pointers seen, and sharing across thread groups.
    fn check_refs(
        &mut self,
        g: &mut dyn Guest,
        mem: KernelMemory,
        budget: &mut Budget,
    ) -> Result<(), CheckError> {
        let c = self.layout.cred;
        let n = self.nrefs;
        self.refs[..n].sort_unstable();
        let mut i = 0;
        while i < n {
            let cred = self.refs[i].0;
            let mut j = i;
            let (mut leader, mut other) = (0, None);
            while j < n && self.refs[j].0 == cred {
                let owner = self.refs[j].1;
                if leader == 0 {
                    leader = owner;
                } else if owner != 0 && owner != leader {
                    other = Some(owner);
                }
                j += 1;
            }
            step(budget)?;
            let count = (j - i) as u64;
            let usage = mem.u64(g, cred.wrapping_add(c.usage))?;
            if usage < count {
                let what = "cred usage below its task references";
                self.once
                    .report(g, Finding::new(NAME, what, cred, count, usage));
            } else if usage > MAX_USAGE {
                let what = "cred usage absurd";
                self.once
                    .report(g, Finding::new(NAME, what, cred, MAX_USAGE, usage));
            }
            // `set_user` gives a cred the `user_struct` of its new real uid whenever the
            // uid changes, and creds are never changed once published: a mismatch is an
            // id written in place. Raised at once, like `uid 0 without exec`, and unlike
            // that one it needs no earlier pass to have seen the task unprivileged.
            let user = mem.u64(g, cred.wrapping_add(c.user))?;
            let uid = mem.u32(g, cred.wrapping_add(c.uid))?;
            match mem.u32(g, user.wrapping_add(c.user_uid)) {
                Ok(owner) if owner != uid => {
                    let what = "uid not its user_struct's";
                    let f = Finding::new(NAME, what, cred, u64::from(owner), u64::from(uid));
                    self.at_once.report(g, f);
                }
                Ok(_) => {}
                Err(_) => {
                    let what = "cred user_struct unreadable";
                    self.once.report(g, Finding::new(NAME, what, cred, 0, user));
                }
            }
            if let Some(other) = other {
                let what = "cred shared across processes";
                self.once
                    .report(g, Finding::new(NAME, what, cred, leader, other));
            }
            i = j;
        }
        Ok(())
    }
}

impl Checker for CredsChecker {
    fn name(&self) -> &'static str {
        NAME
    }

    /// Records every task's credentials as the reference, and checks sharing and refcounts.
    fn baseline(&mut self, guest: &mut dyn Guest) -> Result<(), CheckError> {
        self.base = Some(Baseline {
            mem: KernelMemory::new(guest)?,
            init_task: data_symbol(guest, "init_task")?,
        });
        self.nsnaps = 0;
        self.once = ReportOnce::new(true);
        self.at_once = ReportOnce::new(false);
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
