//! DSM checker `data-exec`: the kernel image's data and bss are never executed.
//!
//! Linux maps `[_sdata, _end)` non-executable at stage 1, but an attacker who can write
//! kernel memory can write code there and clear the PXN bit of its page-table entry: no
//! stage-1 view from inside the kernel then tells it from legitimate text. At stage 2 the
//! hypervisor owns the permissions, so the checker asks for an execute watch of that range
//! at baseline: every instruction fetch from it faults to EL2 before the first instruction
//! runs, and is reported. Nothing the kernel does legitimately executes there: module text,
//! BPF programs, ftrace trampolines and kprobe slots live outside the image.
//!
//! Where `_sdata` is: it is not in kallsyms (`KALLSYMS_ALL` is off), so it is found from the
//! guest's own page tables. The init sections between `__init_begin` and `_sdata` are
//! unmapped from the kernel image by `free_initmem` before the read-only seal the baseline
//! waits for, and their pages go back to the page allocator (so they may hold user code and
//! must not be watched); the first page mapped again after them starts the data. The
//! baseline refuses a kernel whose init pages are still mapped, rather than guess.
//!
//! Where the watch ends: not at `_end`. After the bss, the linker places `init_pg_dir`, the
//! boot page tables, which `paging_init` hands back to the page allocator while they stay
//! mapped in the kernel image; their pages then hold anything, user code included (a kernel
//! build under `demo` executed from one). `init_pg_dir` is not in kallsyms either, so the
//! last [`TAIL`] bytes of the image, which hold it on the pinned kernel, are left out.
//!
//! Findings: `kernel data executed` (`at` the guest PC, `expected` the start of the watched
//! range, `found` the PA fetched from), raised once per page.
#![no_std]
#![forbid(unsafe_code)]

use dsm_api::walk::PAGE_SIZE;
use dsm_api::{
    at_el1, Access, Budget, CheckError, Checker, Finding, Guest, GuestError, PhysRange, Progress,
    SysReg, WatchEvent,
};

pub const NAME: &str = "data-exec";
/// What the watch leaves out at the end of the image: `init_pg_dir` (a page-aligned 11 pages
/// for 4K pages, 48-bit VAs and KASLR: 5 table pages and 6 for segment boundaries) and the
/// padding to `_end`'s 64 KiB alignment, at most 108 KiB together.
pub const TAIL: u64 = 128 * 1024;
/// Pages reported once each; a fetch from a page already reported raises nothing more.
const MAX_REPORTED: usize = 16;

/// The watched range: `[_sdata, _end)` of the loaded image, by PA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataRange {
    pub pa: u64,
    pub len: u64,
    /// Its VA in the kernel image mapping.
    pub va: u64,
}

pub struct DataExecChecker {
    range: Option<DataRange>,
    /// Whether the watch is armed; one refused (Linux not paused in time) is asked for again
    /// at the next pass.
    watched: bool,
    reported: [u64; MAX_REPORTED],
    nreported: usize,
}

impl Default for DataExecChecker {
    fn default() -> Self {
        Self::new()
    }
}

impl DataExecChecker {
    pub const fn new() -> Self {
        Self {
            range: None,
            watched: false,
            reported: [0; MAX_REPORTED],
            nreported: 0,
        }
    }

    /// The range the baseline watches, once found.
    pub fn range(&self) -> Option<DataRange> {
        self.range
    }

    fn watch(&mut self, guest: &mut dyn Guest, r: DataRange) {
        self.watched = guest
            .watch(PhysRange::new(r.pa, r.len), Access::Execute)
            .is_ok();
    }
}

/// A vCPU at EL1, whose TTBR1 is the kernel's own table.
fn vcpu_at_el1(guest: &dyn Guest) -> Result<usize, CheckError> {
    for vcpu in 0..guest.vcpus() {
        if at_el1(guest, vcpu)? {
            return Ok(vcpu);
        }
    }
    Err(GuestError::RegisterUnavailable(SysReg::Pstate).into())
}

/// `[_sdata, _end - TAIL)`: after the unmapped init pages, the first page of the image mapped
/// again to its own PA, up to [`TAIL`] before the end of the image.
pub fn find_data(guest: &dyn Guest) -> Result<DataRange, CheckError> {
    let k = guest.kernel()?;
    let vcpu = vcpu_at_el1(guest)?;
    let layout = guest.symbols().layout;
    let end = layout
        .image_size
        .next_multiple_of(PAGE_SIZE)
        .checked_sub(TAIL)
        .ok_or(CheckError::Unexpected("kernel image smaller than its tail"))?;
    let mut off = layout.init_begin.next_multiple_of(PAGE_SIZE);
    let mut saw_gap = false;
    while off < end {
        match guest.translate(vcpu, k.text_va + off) {
            Ok(t) if t.pa == k.text_pa + off => {
                if !saw_gap {
                    return Err(CheckError::Unexpected("init memory still mapped"));
                }
                return Ok(DataRange {
                    pa: k.text_pa + off,
                    len: end - off,
                    va: k.text_va + off,
                });
            }
            Ok(_) => return Err(CheckError::Unexpected("kernel image mapped elsewhere")),
            Err(_) => saw_gap = true,
        }
        off += PAGE_SIZE;
    }
    Err(CheckError::Unexpected("no kernel data mapped after init"))
}

impl Checker for DataExecChecker {
    fn name(&self) -> &'static str {
        NAME
    }

    fn baseline(&mut self, guest: &mut dyn Guest) -> Result<(), CheckError> {
        let r = find_data(guest)?;
        self.range = Some(r);
        self.nreported = 0;
        self.watch(guest, r);
        Ok(())
    }

    /// The work is the watch's; a pass re-arms a refused one.
    fn check(
        &mut self,
        guest: &mut dyn Guest,
        budget: &mut Budget,
    ) -> Result<Progress, CheckError> {
        let r = self.range.ok_or(CheckError::NoBaseline)?;
        if !budget.take(1) {
            return Err(CheckError::BudgetTooSmall);
        }
        if !self.watched {
            self.watch(guest, r);
        }
        guest.heartbeat(NAME);
        Ok(Progress::Done)
    }

    fn on_watch(&mut self, guest: &mut dyn Guest, e: &WatchEvent) -> Result<(), CheckError> {
        let Some(r) = self.range else {
            return Ok(());
        };
        let page = e.pa & !(PAGE_SIZE - 1);
        let inside = e.pa >= r.pa && e.pa - r.pa < r.len;
        if e.access != Access::Execute || !inside || self.reported[..self.nreported].contains(&page)
        {
            return Ok(());
        }
        if self.nreported < MAX_REPORTED {
            self.reported[self.nreported] = page;
            self.nreported += 1;
        }
        guest.report(Finding {
            checker: NAME,
            what: "kernel data executed",
            at: e.pc,
            expected: r.pa,
            found: e.pa,
        });
        Ok(())
    }
}
