//! The fault-containment probe: accesses to addresses the partition was not given.

use crate::esr::Access;
use core::fmt;

/// One access that spumone must stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probe {
    pub addr: u64,
    pub access: Access,
    /// What lives there, for the log.
    pub what: &'static str,
}

/// A board device that exists but is not assigned, the hypervisor's own image, and an
/// address outside every region.
pub const PROBES: [Probe; 3] = [
    Probe {
        addr: 0x0903_0000,
        access: Access::Read,
        what: "unassigned GPIO",
    },
    Probe {
        addr: 0x4020_0000,
        access: Access::Write,
        what: "hypervisor memory",
    },
    Probe {
        addr: 0x1_0000_0000,
        access: Access::Read,
        what: "no region",
    },
];

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at {:#x} ({})", self.access, self.addr, self.what)
    }
}

/// How many probe accesses faulted as they should.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub contained: usize,
    pub total: usize,
}

impl Tally {
    pub fn record(&mut self, faulted: bool) {
        self.total += 1;
        if faulted {
            self.contained += 1;
        }
    }

    pub fn all_contained(&self) -> bool {
        self.total > 0 && self.contained == self.total
    }
}

/// `fault probe: 3/3 accesses contained`, with `, FAILED` appended unless every access faulted.
impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "fault probe: {}/{} accesses contained",
            self.contained, self.total
        )?;
        if !self.all_contained() {
            f.write_str(", FAILED")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_faulted_is_success() {
        let mut t = Tally::default();
        for _ in PROBES {
            t.record(true);
        }
        assert!(t.all_contained());
        assert_eq!(t.to_string(), "fault probe: 3/3 accesses contained");
    }

    #[test]
    fn a_missed_fault_is_counted_and_flagged() {
        let mut t = Tally::default();
        t.record(true);
        t.record(false);
        t.record(true);
        assert!(!t.all_contained());
        assert_eq!(t.to_string(), "fault probe: 2/3 accesses contained, FAILED");
    }

    #[test]
    fn no_probe_is_no_success() {
        assert!(!Tally::default().all_contained());
    }

    #[test]
    fn probes_are_outside_the_partition() {
        use crate::layout::{PARTITION_RAM_BASE, PARTITION_RAM_SIZE};
        for p in PROBES {
            assert!(
                !(PARTITION_RAM_BASE..PARTITION_RAM_BASE + PARTITION_RAM_SIZE).contains(&p.addr)
            );
        }
        assert_eq!(
            PROBES[1].to_string(),
            "write at 0x40200000 (hypervisor memory)"
        );
    }
}
