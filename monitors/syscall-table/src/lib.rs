//! DSM checker `syscall-table`: every `sys_call_table` entry still points where it did.
//!
//! The table's place and its build-time targets come from [`dsm_api::KernelSymbols`] (found
//! by content in the `Image`). The baseline is the build-time targets slid by KASLR: an entry
//! already hooked when the baseline is taken is reported then, not trusted. Entries are read
//! by PA (the image is physically contiguous), so remapping the table's VA does not hide a
//! hook; the VA mapping itself is checked to stay read-only and to point at the table.
#![no_std]
#![forbid(unsafe_code)]

use dsm_api::walk::PAGE_SIZE;
use dsm_api::{
    at_el1, Access, Budget, CheckError, Checker, Finding, Guest, GuestError, PhysRange, Progress,
    WatchEvent,
};

pub const NAME: &str = "syscall-table";
/// Room for the table (Linux 6.1 arm64 has 451 entries).
pub const MAX_SYSCALLS: usize = 512;
/// Budget units are bytes read: one entry costs 8.
const ENTRY_COST: u64 = 8;

#[derive(Debug, Clone, Copy)]
struct Baseline {
    /// VA and PA of the table.
    va: u64,
    pa: u64,
    count: usize,
}

pub struct SyscallTableChecker {
    base: Option<Baseline>,
    expected: [u64; MAX_SYSCALLS],
    /// The value last reported per entry, so a hook is reported once, not every pass.
    reported: [u64; MAX_SYSCALLS],
    /// Next entry a partial pass resumes at.
    cursor: usize,
    /// Whether the table is write-protected; a refused watch (the runtime could not pause
    /// Linux in time) is asked for again at the start of each pass.
    watched: bool,
}

impl Default for SyscallTableChecker {
    fn default() -> Self {
        Self::new()
    }
}

impl SyscallTableChecker {
    pub const fn new() -> Self {
        Self {
            base: None,
            expected: [0; MAX_SYSCALLS],
            reported: [0; MAX_SYSCALLS],
            cursor: 0,
            watched: false,
        }
    }

    /// Asks the runtime to trap writes to the table (stage-2 write protection).
    fn watch(&mut self, guest: &mut dyn Guest, b: Baseline) {
        let range = PhysRange::new(b.pa, 8 * b.count as u64);
        self.watched = guest.watch(range, Access::Write).is_ok();
    }

    fn compare(&mut self, guest: &mut dyn Guest, b: Baseline, i: usize) -> Result<(), GuestError> {
        let found = guest.read_u64_phys(b.pa + 8 * i as u64)?;
        if found == self.expected[i] {
            self.reported[i] = 0;
        } else if found != self.reported[i] {
            self.reported[i] = found;
            guest.report(Finding {
                checker: NAME,
                what: "syscall entry changed",
                at: b.va + 8 * i as u64,
                expected: self.expected[i],
                found,
            });
        }
        Ok(())
    }

    /// With a vCPU at EL1 (so TTBR1 is the kernel's own table, not the KPTI trampoline's),
    /// the table's VA must map its PA read-only.
    fn check_mapping(&self, guest: &mut dyn Guest, b: Baseline) -> Result<(), GuestError> {
        for vcpu in 0..guest.vcpus() {
            if !at_el1(guest, vcpu)? {
                continue;
            }
            let first = b.va & !(PAGE_SIZE - 1);
            let end = b.va + 8 * b.count as u64;
            let mut page = first;
            while page < end {
                // VA and PA share the offset within a page.
                let expected_pa = (b.pa & !(PAGE_SIZE - 1)) + (page - first);
                let (found, writable) = match guest.translate(vcpu, page) {
                    Ok(t) => (t.pa, t.el1_writable()),
                    Err(_) => (0, false),
                };
                if found != expected_pa {
                    guest.report(Finding {
                        checker: NAME,
                        what: "sys_call_table remapped",
                        at: page,
                        expected: expected_pa,
                        found,
                    });
                } else if writable {
                    guest.report(Finding {
                        checker: NAME,
                        what: "sys_call_table mapped writable",
                        at: page,
                        expected: 0,
                        found: 1,
                    });
                }
                page += PAGE_SIZE;
            }
            return Ok(());
        }
        Ok(())
    }
}

impl Checker for SyscallTableChecker {
    fn name(&self) -> &'static str {
        NAME
    }

    fn baseline(&mut self, guest: &mut dyn Guest) -> Result<(), CheckError> {
        let k = guest.kernel()?;
        let table = guest
            .symbols()
            .sys_call_table
            .ok_or(CheckError::MissingSymbol("sys_call_table"))?;
        let count = table.entries.len().min(MAX_SYSCALLS);
        for (slot, &target) in self.expected.iter_mut().zip(table.entries) {
            *slot = k.text_va + target;
        }
        let b = Baseline {
            va: k.text_va + table.offset,
            pa: k.text_pa + table.offset,
            count,
        };
        self.base = Some(b);
        self.reported = [0; MAX_SYSCALLS];
        self.cursor = 0;
        for i in 0..count {
            self.compare(guest, b, i)?;
        }
        // Stage-2 write protection of the table, where the runtime offers it.
        self.watched = false;
        self.watch(guest, b);
        Ok(())
    }

    fn check(
        &mut self,
        guest: &mut dyn Guest,
        budget: &mut Budget,
    ) -> Result<Progress, CheckError> {
        let b = self.base.ok_or(CheckError::NoBaseline)?;
        if self.cursor == 0 {
            // Once a pass: a refused watch costs the runtime a failed pause of Linux.
            if !self.watched {
                self.watch(guest, b);
            }
            self.check_mapping(guest, b)?;
        }
        let mut cursor = self.cursor;
        let progress = budget.run(&mut cursor, b.count, ENTRY_COST, |i| {
            self.compare(guest, b, i).map_err(CheckError::from)
        });
        self.cursor = cursor;
        if progress? == Progress::Done {
            guest.heartbeat(NAME);
        }
        progress
    }

    fn on_watch(&mut self, guest: &mut dyn Guest, event: &WatchEvent) -> Result<(), CheckError> {
        let b = self.base.ok_or(CheckError::NoBaseline)?;
        let inside = event.pa >= b.pa && event.pa < b.pa + 8 * b.count as u64;
        if inside && event.access == Access::Write {
            // Nothing legitimate writes the table after boot.
            guest.report(Finding {
                checker: NAME,
                what: "write to sys_call_table",
                at: event.pa,
                expected: 0,
                found: event.pc,
            });
        }
        Ok(())
    }
}
