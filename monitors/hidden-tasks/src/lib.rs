//! DSM checker `hidden-tasks`: tasks the kernel knows about but the task list does not show.
//!
//! `ps` and `/proc` enumerate processes through `init_task.tasks` (and threads through each
//! leader's `thread_group` ring). DKOM task hiding unlinks a task from `tasks`, but the task
//! keeps its pid and keeps being scheduled. This checker builds the visible set from the
//! task list, then looks at two other views:
//!
//! - the pid IDR of `init_pid_ns` (an `xarray` of `struct pid`): every pid's `PIDTYPE_PID`
//!   task must be visible;
//! - the run queues: each CPU's `rq->curr` must be visible, or be that CPU's idle task, or be
//!   exiting (`PF_EXITING`: a task that reaped itself runs briefly after leaving the list).
//!
//! - the run queues' waiting tasks: each CPU's CFS trees (through task groups) and RT
//!   priority lists; a task cannot leave them and still be scheduled;
//! - the children lists: every process is on its `real_parent`'s `children` list (linked by
//!   `sibling`), which neither `ps` nor `/proc` reads, so a task unlinked from `tasks` and
//!   from its `struct pid` (and asleep) is still found there.
//!
//! A task in any of these views but not in the task list is reported: `at` is the task's VA,
//! `expected` the task-list head, `found` its pid. Lists or IDR nodes that cannot be walked
//! (pointers outside RAM, broken links, cycles, too many steps, wrong node shifts) are
//! findings too; the cross-view is skipped for that pass. Each pass runs with the guest
//! stopped, and a finding is raised once two passes in a row see it (the kernel may be
//! paused inside `__unhash_process`).
//!
//! Not covered: a task removed from every view (list, IDR, its parent's children) that is
//! neither running nor runnable when checked, such as one asleep until a timer; RT group
//! scheduling (off in the pinned kernel).
//!
//! Symbols (data, not in kallsyms): `init_task`, `init_pid_ns`, `runqueues`,
//! `__per_cpu_offset`, from [`dsm_api::xref::data_symbol`].
#![no_std]
#![forbid(unsafe_code)]

use dsm_api::kmem::{
    step, AddrSet, KernelMemory, ListFault, ListShape, ReportOnce, Stop, TaskLists,
};
use dsm_api::xref::data_symbol;
use dsm_api::{Budget, CheckError, Checker, Finding, Guest, Progress, StopTheWorld};
use dsm_btf::KernelLayout;

pub const NAME: &str = "hidden-tasks";
/// Most tasks the task list may hold.
pub const MAX_TASKS: usize = 4096;
/// Most IDR nodes visited (64 pids per leaf).
pub const MAX_IDR_NODES: usize = 256;
/// Budget units are objects read; the pass is atomic, so the budget must cover it.
pub const PASS_COST: u64 = 7 * MAX_TASKS as u64 + MAX_IDR_NODES as u64 + 8 * 100;
/// `PF_EXITING` in `task_struct.flags` (a `#define`, so not in BTF).
pub const PF_EXITING: u32 = 0x4;
/// xarray entries tagged `0b10` are internal; above this value they point at nodes.
const XA_NODE_MIN: u64 = 4096;
/// CFS queues followed per CPU: the root and the task groups' (autogroups, cgroups).
const MAX_CFS_QUEUES: usize = 64;
/// Explicit stack of a red-black tree walk: a valid tree of 4096 nodes is at most 24 deep.
const MAX_RB_DEPTH: usize = 64;
/// RT priority lists (`MAX_RT_PRIO`).
const MAX_RT_PRIO: u64 = 100;
/// Bits of index per xarray level (`XA_CHUNK_SHIFT`).
const XA_CHUNK_SHIFT: u8 = 6;

#[derive(Debug, Clone, Copy)]
struct Baseline {
    mem: KernelMemory,
    init_task: u64,
    init_pid_ns: u64,
    runqueues: u64,
    per_cpu_offset: u64,
}

pub struct HiddenTasksChecker {
    layout: KernelLayout,
    base: Option<Baseline>,
    visible: AddrSet<MAX_TASKS>,
    once: ReportOnce<32>,
}

impl HiddenTasksChecker {
    pub const fn new(layout: KernelLayout) -> Self {
        Self {
            layout,
            base: None,
            visible: AddrSet::new(),
            once: ReportOnce::new(true),
        }
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
            .collect_tasks(&*g, b.init_task, lists, budget, NAME, &mut self.visible)?;
        if let Some(f) = walk {
            self.once.report(&mut *g, f);
            self.once.end_pass();
            return Ok(());
        }

        let mut hidden = AddrSet::<8>::new();
        let idr = self.walk_idr(&*g, b, budget, &mut hidden);
        match idr {
            Ok(()) => {}
            Err(Stop::Check(e)) => return Err(e),
            Err(Stop::Fault(f)) => {
                let head = b.init_pid_ns.wrapping_add(l.pid_idr.ns_idr);
                self.once.report(
                    &mut *g,
                    Finding::new(NAME, "pid IDR malformed", f.at(), head, f.found()),
                );
            }
        }
        for &task in hidden.as_slice() {
            self.report_hidden(
                &mut *g,
                b,
                task,
                "task in the pid IDR hidden from the task list",
            )?;
        }

        let mut seen = [0u64; 16];
        let mut nseen = hidden.len();
        seen[..nseen].copy_from_slice(hidden.as_slice());
        for cpu in 0..g.vcpus() as u64 {
            step(budget)?;
            let off = b.mem.u64(&*g, b.per_cpu_offset.wrapping_add(8 * cpu))?;
            let rq = b.runqueues.wrapping_add(off);
            let curr = b.mem.u64(&*g, rq.wrapping_add(l.rq.curr))?;
            let idle = b.mem.u64(&*g, rq.wrapping_add(l.rq.idle))?;
            if curr == idle || self.visible.contains(curr) {
                continue;
            }
            let flags = b.mem.u32(&*g, curr.wrapping_add(l.task_struct.flags))?;
            if flags & PF_EXITING == 0 {
                self.report_hidden(&mut *g, b, curr, "running task hidden from the task list")?;
                if nseen < seen.len() {
                    seen[nseen] = curr;
                    nseen += 1;
                }
            }
        }
        for cpu in 0..g.vcpus() as u64 {
            let off = b.mem.u64(&*g, b.per_cpu_offset.wrapping_add(8 * cpu))?;
            let rq = b.runqueues.wrapping_add(off);
            let mut queued = AddrSet::<8>::new();
            match self.queued_tasks(&*g, b, rq, budget, &mut queued) {
                Ok(()) => {}
                Err(Stop::Check(e)) => return Err(e),
                Err(Stop::Fault(f)) => {
                    let what = "run queue malformed";
                    self.once
                        .report(&mut *g, Finding::new(NAME, what, f.at(), rq, f.found()));
                }
            }
            for &task in queued.as_slice() {
                if seen[..nseen].contains(&task) {
                    continue;
                }
                let flags = b.mem.u32(&*g, task.wrapping_add(l.task_struct.flags))?;
                if flags & PF_EXITING != 0 {
                    continue;
                }
                self.report_hidden(&mut *g, b, task, "queued task hidden from the task list")?;
                if nseen < seen.len() {
                    seen[nseen] = task;
                    nseen += 1;
                }
            }
        }
        // Last, so a task the views above found is reported once, by them.
        self.walk_children(&mut *g, b, budget, &seen[..nseen])?;
        self.once.end_pass();
        Ok(())
    }

    fn report_hidden(
        &mut self,
        g: &mut dyn Guest,
        b: Baseline,
        task: u64,
        what: &'static str,
    ) -> Result<(), CheckError> {
        let l = self.layout;
        let pid = b.mem.u32(g, task.wrapping_add(l.task_struct.pid))?;
        let head = b.init_task.wrapping_add(l.task_struct.tasks);
        self.once
            .report(g, Finding::new(NAME, what, task, head, u64::from(pid)));
        Ok(())
    }

    /// Runnable tasks of the run queue at `rq` that the task list does not show (up to 8):
    /// the CFS red-black trees (the root `cfs_rq` and, through group entities' `my_q`, the
    /// task groups' queues) and the RT priority lists. A task cannot leave these and still
    /// be scheduled. The running task is not queued; `rq->curr` covers it.
    fn queued_tasks(
        &self,
        g: &dyn Guest,
        b: Baseline,
        rq: u64,
        budget: &mut Budget,
        hidden: &mut AddrSet<8>,
    ) -> Result<(), Stop> {
        let l = self.layout;
        let mut judge = |task: u64| {
            if !self.visible.contains(task) {
                let _ = hidden.push(task);
            }
        };
        // CFS: queues to walk (the root, then groups found on the way), and per tree an
        // explicit stack of nodes still to visit. Every node costs a step, so a cycle ends.
        let mut queues = [0u64; MAX_CFS_QUEUES];
        queues[0] = rq.wrapping_add(l.rq.cfs);
        let mut nqueues = 1;
        let mut q = 0;
        while q < nqueues {
            let tree = queues[q].wrapping_add(l.rq.cfs_tasks_timeline + l.rb.root);
            q += 1;
            // `rb_root` holds only `rb_node`.
            let mut stack = [0u64; MAX_RB_DEPTH];
            let mut depth = 0;
            let root = b.mem.u64(g, tree)?;
            if root != 0 {
                stack[0] = root;
                depth = 1;
            }
            while depth > 0 {
                depth -= 1;
                let node = stack[depth];
                step(budget)?;
                let se = node.wrapping_sub(l.sched_entity.run_node);
                let my_q = b.mem.u64(g, se.wrapping_add(l.sched_entity.my_q))?;
                if my_q != 0 {
                    push_bounded(&mut queues, &mut nqueues, my_q, tree)?;
                } else {
                    judge(se.wrapping_sub(l.task_struct.se));
                }
                for side in [l.rb.right, l.rb.left] {
                    let child = b.mem.u64(g, node.wrapping_add(side))?;
                    if child != 0 {
                        push_bounded(&mut stack, &mut depth, child, tree)?;
                    }
                }
            }
        }
        // RT: one list per priority, of `sched_rt_entity.run_list` (no RT group scheduling
        // in the pinned kernel, so every entity is a task's).
        let shape = ListShape {
            next: l.list_head.next,
            prev: l.list_head.prev,
        };
        let array = rq.wrapping_add(l.rq.rt + l.rq.rt_active + l.rq.rt_queue);
        for prio in 0..l.rq.rt_queue_len.min(MAX_RT_PRIO) {
            step(budget)?;
            let head = array.wrapping_add(l.list_head.size * prio);
            b.mem.walk_list(g, head, shape, MAX_TASKS, |node| {
                step(budget)?;
                let rt = node.wrapping_sub(l.sched_entity.rt_run_list);
                judge(rt.wrapping_sub(l.task_struct.rt));
                Ok::<(), Stop>(())
            })?;
        }
        Ok(())
    }

    /// The children lists: every process but `init_task` is on its `real_parent`'s
    /// `children` list (linked by `sibling`), which `ps` never reads, so unlinking `tasks`
    /// and the pid leaves it there. A child the task list does not show is reported.
    fn walk_children(
        &mut self,
        g: &mut dyn Guest,
        b: Baseline,
        budget: &mut Budget,
        reported: &[u64],
    ) -> Result<(), CheckError> {
        let l = self.layout;
        let shape = ListShape {
            next: l.list_head.next,
            prev: l.list_head.prev,
        };
        let mut hidden = AddrSet::<8>::new();
        for i in 0..self.visible.len() {
            step(budget)?;
            let parent = self.visible.as_slice()[i];
            let head = parent.wrapping_add(l.task_struct.children);
            let visible = &self.visible;
            let walked = b.mem.walk_list(&*g, head, shape, MAX_TASKS, |node| {
                step(budget)?;
                let child = node.wrapping_sub(l.task_struct.sibling);
                if !visible.contains(child) && !reported.contains(&child) {
                    let _ = hidden.push(child);
                }
                Ok::<(), Stop>(())
            });
            match walked {
                Ok(_) => {}
                Err(Stop::Check(e)) => return Err(e),
                Err(Stop::Fault(f)) => {
                    let what = "children list malformed";
                    self.once
                        .report(g, Finding::new(NAME, what, f.at(), head, f.found()));
                }
            }
        }
        for &task in hidden.as_slice() {
            let what = "child task hidden from the task list";
            self.report_hidden(g, b, task, what)?;
        }
        Ok(())
    }

    /// Walks `init_pid_ns.idr`; collects (up to 8 per pass) tasks whose pid is allocated but
    /// which the task list does not show.
    fn walk_idr(
        &self,
        g: &dyn Guest,
        b: Baseline,
        budget: &mut Budget,
        hidden: &mut AddrSet<8>,
    ) -> Result<(), Stop> {
        let p = self.layout.pid_idr;
        let head_va = b.init_pid_ns.wrapping_add(p.ns_idr + p.idr_rt + p.xa_head);
        let head = b.mem.u64(g, head_va)?;
        let mut on_pid = |pid: u64| -> Result<(), Stop> {
            step(budget)?;
            if let Some(task) = self.pid_task(g, b, pid)? {
                if !self.visible.contains(task) {
                    let _ = hidden.push(task);
                }
            }
            Ok(())
        };
        if !is_node(head) {
            // Empty, or a single pointer at index 0.
            return if head == 0 || head & 3 != 0 {
                Ok(())
            } else {
                on_pid(head)
            };
        }
        // Depth-first with an explicit stack: (node, next slot). Shifts drop by 6 per level
        // and start at most at 60, so 11 levels hold any valid tree.
        let slots = p.node_slots_len.min(64) as usize;
        let mut stack = [(0u64, 0usize, 0u8); 11];
        let mut depth = 0usize;
        let mut nodes = 0usize;
        let root = head - 2;
        let shift = self.node_shift(g, b, root)?;
        if shift % XA_CHUNK_SHIFT != 0 || shift > 60 {
            return Err(ListFault::BrokenLink {
                at: root,
                expected: 0,
                found: u64::from(shift),
            }
            .into());
        }
        stack[0] = (root, 0, shift);
        depth += 1;
        while depth > 0 {
            let (node, slot, shift) = stack[depth - 1];
            if slot == slots {
                depth -= 1;
                continue;
            }
            stack[depth - 1].1 += 1;
            if slot == 0 {
                nodes += 1;
                if nodes > MAX_IDR_NODES {
                    return Err(ListFault::TooLong {
                        head: head_va,
                        limit: MAX_IDR_NODES,
                    }
                    .into());
                }
            }
            let at = node.wrapping_add(p.node_slots + 8 * slot as u64);
            let entry = b.mem.u64(g, at)?;
            if entry == 0 || entry & 1 != 0 {
                continue; // empty, or a value entry
            }
            if entry & 3 == 2 {
                if !is_node(entry) {
                    continue; // sibling or retry entry
                }
                let child = entry - 2;
                let cs = self.node_shift(g, b, child)?;
                if shift < XA_CHUNK_SHIFT || cs != shift - XA_CHUNK_SHIFT {
                    return Err(ListFault::BrokenLink {
                        at: child,
                        expected: u64::from(shift.wrapping_sub(XA_CHUNK_SHIFT)),
                        found: u64::from(cs),
                    }
                    .into());
                }
                stack[depth] = (child, 0, cs);
                depth += 1;
                continue;
            }
            if shift == 0 {
                on_pid(entry)?;
            }
        }
        Ok(())
    }

    fn node_shift(&self, g: &dyn Guest, b: Baseline, node: u64) -> Result<u8, Stop> {
        let mut s = [0u8; 1];
        b.mem
            .read(g, node.wrapping_add(self.layout.pid_idr.node_shift), &mut s)
            .map_err(|_| ListFault::Unreadable { at: node })?;
        Ok(s[0])
    }

    /// The task using `pid` as its `PIDTYPE_PID`, if any.
    fn pid_task(&self, g: &dyn Guest, b: Baseline, pid: u64) -> Result<Option<u64>, Stop> {
        let l = self.layout;
        let chain = pid.wrapping_add(l.pid.tasks + 8 * l.pid.type_pid);
        let first = b
            .mem
            .u64(g, chain)
            .map_err(|_| ListFault::Unreadable { at: pid })?;
        if first == 0 {
            return Ok(None);
        }
        let link = l.task_struct.pid_links + l.hlist_node.size * l.pid.type_pid;
        Ok(Some(first.wrapping_sub(link)))
    }
}

/// Appends `v` to `items[..*len]`; a full array is a structure too big to be real.
fn push_bounded(items: &mut [u64], len: &mut usize, v: u64, head: u64) -> Result<(), Stop> {
    let limit = items.len();
    let slot = items
        .get_mut(*len)
        .ok_or(ListFault::TooLong { head, limit })?;
    *slot = v;
    *len += 1;
    Ok(())
}

fn is_node(entry: u64) -> bool {
    entry & 3 == 2 && entry > XA_NODE_MIN
}

impl Checker for HiddenTasksChecker {
    fn name(&self) -> &'static str {
        NAME
    }

    /// Finds the data symbols and the kernel's page tables, then runs a first pass.
    fn baseline(&mut self, guest: &mut dyn Guest) -> Result<(), CheckError> {
        self.base = Some(Baseline {
            mem: KernelMemory::new(guest)?,
            init_task: data_symbol(guest, "init_task")?,
            init_pid_ns: data_symbol(guest, "init_pid_ns")?,
            runqueues: data_symbol(guest, "runqueues")?,
            per_cpu_offset: data_symbol(guest, "__per_cpu_offset")?,
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
