//! Reading Linux's own objects from outside, for the cross-view checkers: kernel VAs turned
//! into PAs through the kernel's page tables, and bounded walks of `list_head` lists.
//!
//! Every pointer comes from guest memory and is untrusted: it must be a TTBR1 (kernel) VA
//! that the kernel's tables map to guest RAM, and every walk has a step limit, so a looping
//! or wild list ends in a [`ListFault`], never a hang.

use crate::checker::{Budget, CheckError};
use crate::guest::{exception_level, Guest, GuestError, KernelInfo, SysReg};
use crate::walk::{self, Stage1Regs, WalkError, PAGE_SIZE};

/// Kernel VAs have the top bit set (TTBR1 half).
const KERNEL_VA_BIT: u64 = 1 << 63;

/// Reads kernel objects by VA. Built once (at a checker's baseline) from a vCPU running at
/// EL1: with KPTI, a vCPU at EL0 has the trampoline tables in TTBR1, which map no objects.
#[derive(Debug, Clone, Copy)]
pub struct KernelMemory {
    kernel: KernelInfo,
    regs: Stage1Regs,
}

impl KernelMemory {
    /// Takes the kernel's stage-1 registers from the first vCPU at EL1.
    pub fn new(guest: &dyn Guest) -> Result<Self, GuestError> {
        let kernel = guest.kernel()?;
        for vcpu in 0..guest.vcpus() {
            match guest.sysreg(vcpu, SysReg::Pstate) {
                Ok(p) if exception_level(p) == 1 => {
                    return Ok(Self {
                        kernel,
                        regs: guest.stage1(vcpu)?,
                    })
                }
                Ok(_) | Err(GuestError::RegisterUnavailable(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Err(GuestError::RegisterUnavailable(SysReg::Pstate))
    }

    /// Where the kernel image is.
    pub fn kernel(&self) -> KernelInfo {
        self.kernel
    }

    /// The PA of kernel VA `va`: the image is physically contiguous; anything else (slab
    /// objects in the linear map, vmalloc) goes through the kernel's tables.
    pub fn pa(&self, guest: &dyn Guest, va: u64) -> Result<u64, GuestError> {
        if va & KERNEL_VA_BIT == 0 {
            return Err(GuestError::Walk(WalkError::VaOutOfRange { va }));
        }
        if let Some(pa) = self.kernel.image_va_to_pa(va) {
            return Ok(pa);
        }
        let t = walk::translate(&self.regs, va, &mut |pa| {
            guest
                .read_u64_phys(pa)
                .map_err(|_| WalkError::OutsideRam { pa })
        })?;
        Ok(t.pa)
    }

    /// Copies `buf.len()` bytes at kernel VA `va`, page by page.
    pub fn read(&self, guest: &dyn Guest, va: u64, buf: &mut [u8]) -> Result<(), GuestError> {
        let mut done = 0usize;
        while done < buf.len() {
            let cur = va
                .checked_add(done as u64)
                .ok_or(GuestError::Walk(WalkError::VaOutOfRange { va }))?;
            let pa = self.pa(guest, cur)?;
            let in_page = (PAGE_SIZE - (cur & (PAGE_SIZE - 1))) as usize;
            let n = in_page.min(buf.len() - done);
            guest.read_phys(pa, &mut buf[done..done + n])?;
            done += n;
        }
        Ok(())
    }

    pub fn u64(&self, guest: &dyn Guest, va: u64) -> Result<u64, GuestError> {
        let mut b = [0u8; 8];
        self.read(guest, va, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    pub fn u32(&self, guest: &dyn Guest, va: u64) -> Result<u32, GuestError> {
        let mut b = [0u8; 4];
        self.read(guest, va, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    /// Walks the circular `list_head` list whose head is at `head`, calling `f` with the VA
    /// of each member's `list_head` (not the head's). Each link is checked both ways
    /// (`next->prev == node`), so a half-done unlink shows; at most `limit` members are
    /// visited, so a cycle that avoids the head ends in [`ListFault::TooLong`].
    pub fn walk_list<E: From<ListFault>>(
        &self,
        guest: &dyn Guest,
        head: u64,
        shape: ListShape,
        limit: usize,
        mut f: impl FnMut(u64) -> Result<(), E>,
    ) -> Result<usize, E> {
        let mut node = head;
        let mut count = 0usize;
        loop {
            let next = self
                .u64(guest, node.wrapping_add(shape.next))
                .map_err(|_| ListFault::Unreadable { at: node })?;
            let back = self
                .u64(guest, next.wrapping_add(shape.prev))
                .map_err(|_| ListFault::Unreadable { at: next })?;
            if back != node {
                return Err(ListFault::BrokenLink {
                    at: next,
                    expected: node,
                    found: back,
                }
                .into());
            }
            if next == head {
                return Ok(count);
            }
            if count == limit {
                return Err(ListFault::TooLong { head, limit }.into());
            }
            count += 1;
            f(next)?;
            node = next;
        }
    }
}

impl KernelMemory {
    /// Calls `f` with every task the task list shows: `init_task`, each process on
    /// `init_task.tasks`, and each thread on its leader's `thread_group` ring; at most `limit`
    /// tasks in all.
    pub fn walk_tasks<E: From<ListFault>>(
        &self,
        guest: &dyn Guest,
        init_task: u64,
        lists: TaskLists,
        limit: usize,
        mut f: impl FnMut(u64) -> Result<(), E>,
    ) -> Result<usize, E> {
        let mut n = 0usize;
        let mut group = |leader: u64, n: &mut usize| -> Result<(), E> {
            if *n >= limit {
                return Err(ListFault::TooLong {
                    head: init_task.wrapping_add(lists.tasks),
                    limit,
                }
                .into());
            }
            *n += 1;
            f(leader)?;
            let ring = leader.wrapping_add(lists.thread_group);
            *n += self.walk_list(guest, ring, lists.shape, limit - *n, |node| {
                f(node.wrapping_sub(lists.thread_group))
            })?;
            Ok(())
        };
        group(init_task, &mut n)?;
        let head = init_task.wrapping_add(lists.tasks);
        self.walk_list(guest, head, lists.shape, limit, |node| {
            group(node.wrapping_sub(lists.tasks), &mut n)
        })?;
        Ok(n)
    }
}

/// Where a task's lists are: `task_struct.tasks` (processes) and `.thread_group` (threads).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskLists {
    pub tasks: u64,
    pub thread_group: u64,
    pub shape: ListShape,
}

impl TaskLists {
    /// From `task_struct.tasks`, `task_struct.thread_group`, `list_head.next` and `.prev`.
    pub const fn new(tasks: u64, thread_group: u64, next: u64, prev: u64) -> Self {
        Self {
            tasks,
            thread_group,
            shape: ListShape { next, prev },
        }
    }
}

impl KernelMemory {
    /// Fills `out` with every task [`KernelMemory::walk_tasks`] finds, one budget unit
    /// each, and seals it. If the list cannot be walked, returns the finding for `checker`
    /// to report (`out` is then incomplete and no cross-view should be judged).
    pub fn collect_tasks<const N: usize>(
        &self,
        guest: &dyn Guest,
        init_task: u64,
        lists: TaskLists,
        budget: &mut Budget,
        checker: &'static str,
        out: &mut AddrSet<N>,
    ) -> Result<Option<crate::Finding>, CheckError> {
        out.clear();
        let walked = self.walk_tasks(guest, init_task, lists, N, |task| {
            step(budget)?;
            out.push(task);
            Ok::<(), Stop>(())
        });
        out.seal();
        match walked {
            Ok(_) => Ok(None),
            Err(Stop::Check(e)) => Err(e),
            Err(Stop::Fault(f)) => {
                let head = init_task.wrapping_add(lists.tasks);
                Ok(Some(crate::Finding::new(
                    checker,
                    f.what(),
                    f.at(),
                    head,
                    f.found(),
                )))
            }
        }
    }
}

/// Offsets of `next` and `prev` in `struct list_head` (from the BTF layout).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListShape {
    pub next: u64,
    pub prev: u64,
}

/// Why a guest list could not be walked. A kernel never leaves its lists like this, so
/// checkers report these as findings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListFault {
    /// A link at `at` is not a mapped kernel address in RAM.
    Unreadable { at: u64 },
    /// The node at `at` has `prev` = `found` where `expected` links to it.
    BrokenLink { at: u64, expected: u64, found: u64 },
    /// More than `limit` members: a cycle that misses the head, or an absurd count.
    TooLong { head: u64, limit: usize },
}

impl ListFault {
    /// A short description for a finding.
    pub fn what(&self) -> &'static str {
        match self {
            ListFault::Unreadable { .. } => "list link unreadable",
            ListFault::BrokenLink { .. } => "list link broken",
            ListFault::TooLong { .. } => "list too long or looping",
        }
    }

    /// The value a finding shows as found: the wrong `prev`, else the address.
    pub fn found(&self) -> u64 {
        match *self {
            ListFault::BrokenLink { found, .. } => found,
            _ => self.at(),
        }
    }

    /// The address a finding names.
    pub fn at(&self) -> u64 {
        match *self {
            ListFault::Unreadable { at } | ListFault::BrokenLink { at, .. } => at,
            ListFault::TooLong { head, .. } => head,
        }
    }
}

/// Why a bounded walk stopped early: a checker error, or a list the kernel would never leave
/// like that (which the checker reports as a finding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Check(CheckError),
    Fault(ListFault),
}

impl From<ListFault> for Stop {
    fn from(f: ListFault) -> Self {
        Stop::Fault(f)
    }
}

impl From<CheckError> for Stop {
    fn from(e: CheckError) -> Self {
        Stop::Check(e)
    }
}

impl From<GuestError> for Stop {
    fn from(e: GuestError) -> Self {
        Stop::Check(e.into())
    }
}

/// Charges one object read to `budget`. The cross-view passes are atomic (one consistent
/// snapshot), so running out is [`CheckError::BudgetTooSmall`], not a pause.
pub fn step(budget: &mut Budget) -> Result<(), CheckError> {
    if budget.take(1) {
        Ok(())
    } else {
        Err(CheckError::BudgetTooSmall)
    }
}

/// A fixed-capacity set of addresses (no allocator): fill it, [`AddrSet::seal`] it, then
/// look up by binary search.
#[derive(Debug, Clone)]
pub struct AddrSet<const N: usize> {
    items: [u64; N],
    len: usize,
}

impl<const N: usize> Default for AddrSet<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> AddrSet<N> {
    pub const fn new() -> Self {
        Self {
            items: [0; N],
            len: 0,
        }
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Adds `v`; `false` if the set is full.
    pub fn push(&mut self, v: u64) -> bool {
        if self.len == N {
            return false;
        }
        self.items[self.len] = v;
        self.len += 1;
        true
    }

    /// Sorts and removes duplicates, so [`AddrSet::contains`] works.
    pub fn seal(&mut self) {
        let s = &mut self.items[..self.len];
        s.sort_unstable();
        let mut w = 0;
        for r in 0..s.len() {
            if w == 0 || s[r] != s[w - 1] {
                s[w] = s[r];
                w += 1;
            }
        }
        self.len = w;
    }

    pub fn contains(&self, v: u64) -> bool {
        self.items[..self.len].binary_search(&v).is_ok()
    }

    pub fn as_slice(&self) -> &[u64] {
        &self.items[..self.len]
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

type Key = (&'static str, u64);

/// Raises each finding once while it persists: a finding raised in the previous pass is not
/// raised again; one that went away and comes back is. With `confirm`, a finding must also
/// be seen in two passes in a row before it is raised: the guest is paused at arbitrary
/// points, so one snapshot may catch the kernel halfway through relinking a list, which no
/// two consecutive passes do. Holds up to `N` findings per pass (beyond that, they are
/// raised every pass, or never if confirming).
#[derive(Debug, Clone)]
pub struct ReportOnce<const N: usize> {
    confirm: bool,
    /// What the previous pass saw, and whether it was raised.
    prev: [Option<(Key, bool)>; N],
    cur: [Option<(Key, bool)>; N],
}

impl<const N: usize> ReportOnce<N> {
    pub const fn new(confirm: bool) -> Self {
        Self {
            confirm,
            prev: [None; N],
            cur: [None; N],
        }
    }

    /// Raises `f` through `guest` unless the previous pass did (or, confirming, unless the
    /// previous pass did not see it).
    pub fn report(&mut self, guest: &mut dyn Guest, f: crate::Finding) {
        self.decide(f, &mut |f| guest.report(f));
    }

    fn decide(&mut self, f: crate::Finding, raise_it: &mut dyn FnMut(crate::Finding)) {
        let key = (f.what, f.at);
        let before = self.prev.iter().flatten().find(|(k, _)| *k == key);
        let raise = match before {
            Some(&(_, raised)) => !raised,
            None => !self.confirm,
        };
        if raise {
            raise_it(f);
        }
        let raised = raise || before.is_some_and(|b| b.1);
        if let Some(slot) = self.cur.iter_mut().find(|s| s.is_none()) {
            *slot = Some((key, raised));
        }
    }

    /// Ends a pass: what it saw becomes what the next pass compares with.
    pub fn end_pass(&mut self) {
        self.prev = self.cur;
        self.cur = [None; N];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addr_set_dedups_and_finds() {
        let mut s = AddrSet::<4>::new();
        for v in [9, 3, 9, 1] {
            assert!(s.push(v));
        }
        assert!(!s.push(7), "full");
        s.seal();
        assert_eq!(s.as_slice(), [1, 3, 9]);
        assert!(s.contains(3) && !s.contains(7));
    }

    #[derive(Default)]
    struct Sink(std::vec::Vec<u64>);

    fn finding(at: u64) -> crate::Finding {
        crate::Finding {
            checker: "t",
            what: "w",
            at,
            expected: 0,
            found: 0,
        }
    }

    /// Feeds passes of findings (by `at`) and returns what was raised after each.
    fn raised(confirm: bool, passes: &[&[u64]]) -> std::vec::Vec<std::vec::Vec<u64>> {
        let mut once = ReportOnce::<4>::new(confirm);
        let mut out = std::vec::Vec::new();
        for p in passes {
            let mut sink = Sink::default();
            for &at in *p {
                let f = finding(at);
                // A guest stand-in is not needed for the decision; record via a closure.
                once.decide(f, &mut |f| sink.0.push(f.at));
            }
            once.end_pass();
            out.push(sink.0);
        }
        out
    }

    #[test]
    fn report_once_and_confirm() {
        let p: &[&[u64]] = &[&[1], &[1, 2], &[2], &[1, 2], &[]];
        assert_eq!(
            raised(false, p),
            [vec![1], vec![2], vec![], vec![1], vec![]]
        );
        assert_eq!(raised(true, p), [vec![], vec![1], vec![2], vec![], vec![]]);
    }
}
