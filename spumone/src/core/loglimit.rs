//! Rate limit for the log lines a guest can cause (aborts, refused MMIO, vGIC misuse, PSCI
//! churn): a token bucket per source partition and class of line, on the EL2 counter.
//!
//! A line that finds a token is printed; one that does not is counted. The count comes out
//! as one summary line (`N similar lines suppressed (class, partition)`) just before the next
//! line that is printed, or from [`LogLimiter::flush`] once the source has been quiet for a
//! while. The arch layer keeps one limiter per core, touched by that core only, so a guest
//! flooding one core never makes another core wait, and no state is shared.

use super::MAX_PARTITIONS;

/// What kind of guest-caused line it is (each has its own bucket per source).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// A stage-2 abort: an access outside the partition's memory and devices.
    Stage2Abort,
    /// An emulated device refused an access (wrong size, offset, alignment).
    BadMmio,
    /// Misuse of the virtual GIC, and what a guest turns on in it.
    Vgic,
    /// An exception the hypervisor does not handle, answered with an undefined instruction.
    BadTrap,
    /// PSCI power calls (`CPU_ON`, `CPU_OFF`) a guest may repeat at will.
    Psci,
    /// What a guest's devices cause in an SMMU (a full event queue after a fault storm).
    Dma,
}

impl Class {
    /// Number of classes.
    pub const COUNT: usize = 6;

    /// How a summary line names it.
    pub const fn name(self) -> &'static str {
        match self {
            Class::Stage2Abort => "stage-2 abort",
            Class::BadMmio => "bad MMIO",
            Class::Vgic => "vGIC",
            Class::BadTrap => "bad trap",
            Class::Psci => "PSCI",
            Class::Dma => "DMA",
        }
    }

    const fn index(self) -> usize {
        self as usize
    }

    const ALL: [Class; Self::COUNT] = [
        Class::Stage2Abort,
        Class::BadMmio,
        Class::Vgic,
        Class::BadTrap,
        Class::Psci,
        Class::Dma,
    ];
}

/// The bucket sizes, in counter ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Lines printed in a burst before the limit bites.
    pub burst: u32,
    /// Ticks per new token (the sustained rate).
    pub refill: u64,
    /// Ticks without a suppressed line after which the count is flushed.
    pub quiet: u64,
}

impl Limits {
    /// For a counter of `hz`: bursts of 10 lines, then one line a second per source and
    /// class; a count is flushed after a quiet second.
    pub const fn for_counter(hz: u64) -> Self {
        let second = if hz == 0 { 1 } else { hz };
        Self {
            burst: 10,
            refill: second,
            quiet: second,
        }
    }
}

/// What to do with one line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Print it, after a summary of `suppressed` lines if that is not 0.
    Print { suppressed: u32 },
    /// Drop it (it is counted).
    Drop,
}

/// One source's bucket for one class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Bucket {
    tokens: u32,
    /// When the next token is due from (ticks); meaningful while `tokens < burst`.
    since: u64,
    suppressed: u32,
    last_suppressed: u64,
    used: bool,
}

impl Bucket {
    const fn new() -> Self {
        Self {
            tokens: 0,
            since: 0,
            suppressed: 0,
            last_suppressed: 0,
            used: false,
        }
    }

    fn refill(&mut self, now: u64, limits: &Limits) {
        if !self.used {
            self.used = true;
            self.tokens = limits.burst;
            self.since = now;
            return;
        }
        let refill = limits.refill.max(1);
        let elapsed = now.saturating_sub(self.since);
        let new = elapsed / refill;
        let room = u64::from(limits.burst.saturating_sub(self.tokens));
        if new >= room {
            self.tokens = limits.burst;
            self.since = now;
        } else {
            self.tokens += new as u32;
            self.since += new * refill;
        }
    }

    fn hit(&mut self, now: u64, limits: &Limits) -> Verdict {
        self.refill(now, limits);
        if self.tokens == 0 {
            self.suppressed = self.suppressed.saturating_add(1);
            self.last_suppressed = now;
            return Verdict::Drop;
        }
        self.tokens -= 1;
        Verdict::Print {
            suppressed: core::mem::take(&mut self.suppressed),
        }
    }

    fn quiet_count(&mut self, now: u64, limits: &Limits) -> Option<u32> {
        let quiet = now.saturating_sub(self.last_suppressed) >= limits.quiet;
        (self.suppressed != 0 && quiet).then(|| core::mem::take(&mut self.suppressed))
    }
}

/// A summary owed for a source and class that went quiet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    pub source: usize,
    pub class: Class,
    pub suppressed: u32,
}

/// The limiter of one core: a bucket per partition and class.
#[derive(Clone, Debug)]
pub struct LogLimiter {
    limits: Limits,
    buckets: [[Bucket; Class::COUNT]; MAX_PARTITIONS],
    /// Some bucket holds a count not yet printed.
    owed: bool,
}

impl LogLimiter {
    pub const fn new(limits: Limits) -> Self {
        Self {
            limits,
            buckets: [[Bucket::new(); Class::COUNT]; MAX_PARTITIONS],
            owed: false,
        }
    }

    /// Sets the bucket sizes (once the counter frequency is known).
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// One line of `class` caused by partition `source` at `now`. A source out of range
    /// shares the last partition's buckets, so it is limited too.
    pub fn hit(&mut self, source: usize, class: Class, now: u64) -> Verdict {
        let source = source.min(MAX_PARTITIONS - 1);
        let verdict = self.buckets[source][class.index()].hit(now, &self.limits);
        if verdict == Verdict::Drop {
            self.owed = true;
        }
        verdict
    }

    /// Whether some count waits for [`Self::flush`] (cheap: call it first).
    pub const fn owes(&self) -> bool {
        self.owed
    }

    /// The counts of sources that have been quiet for [`Limits::quiet`], taken.
    pub fn flush(&mut self, now: u64) -> heapless::Vec<Summary, { MAX_PARTITIONS * Class::COUNT }> {
        let mut out = heapless::Vec::new();
        if !self.owed {
            return out;
        }
        let mut still_owed = false;
        for (source, row) in self.buckets.iter_mut().enumerate() {
            for (bucket, class) in row.iter_mut().zip(Class::ALL) {
                if let Some(suppressed) = bucket.quiet_count(now, &self.limits) {
                    let _ = out.push(Summary {
                        source,
                        class,
                        suppressed,
                    });
                }
                still_owed |= bucket.suppressed != 0;
            }
        }
        self.owed = still_owed;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HZ: u64 = 62_500_000;

    fn limiter() -> LogLimiter {
        LogLimiter::new(Limits::for_counter(HZ))
    }

    #[test]
    fn a_flood_prints_a_burst_then_one_line_a_second_with_its_count() {
        let mut l = limiter();
        // 8,460 stage-2 aborts in 2 s, as a root loop over /dev/mem caused.
        let step = 2 * HZ / 8460;
        let printed: Vec<(u64, u32)> = (0..8460u64)
            .filter_map(|i| match l.hit(1, Class::Stage2Abort, i * step) {
                Verdict::Print { suppressed } => Some((i, suppressed)),
                Verdict::Drop => None,
            })
            .collect();
        assert_eq!(printed.len(), 10 + 1, "{printed:?}");
        assert!(printed[..10].iter().all(|&(_, s)| s == 0));
        // The line a second later carries the count of those dropped before it.
        let (i, suppressed) = printed[10];
        assert_eq!(u64::from(suppressed), i - 10);
        assert!(l.owes());
        let dropped = 8460 - 11 - u64::from(suppressed);
        // Not quiet yet: nothing flushed; a quiet second later, the rest comes out once.
        assert!(l.flush(8460 * step).is_empty());
        let out = l.flush(8460 * step + HZ);
        assert_eq!(
            out.as_slice(),
            &[Summary {
                source: 1,
                class: Class::Stage2Abort,
                suppressed: dropped as u32
            }]
        );
        assert!(!l.owes());
        assert!(l.flush(8460 * step + 5 * HZ).is_empty());
    }

    #[test]
    fn sources_and_classes_have_their_own_buckets() {
        let mut l = limiter();
        for _ in 0..10 {
            assert_eq!(
                l.hit(1, Class::BadMmio, 0),
                Verdict::Print { suppressed: 0 }
            );
        }
        assert_eq!(l.hit(1, Class::BadMmio, 0), Verdict::Drop);
        assert_eq!(
            l.hit(0, Class::BadMmio, 0),
            Verdict::Print { suppressed: 0 }
        );
        assert_eq!(l.hit(1, Class::Vgic, 0), Verdict::Print { suppressed: 0 });
        // Out-of-range sources share the last bucket, and are limited.
        let wild = (0..100)
            .filter(|&i| l.hit(usize::MAX - i, Class::Psci, 0) != Verdict::Drop)
            .count();
        assert_eq!(wild, 10);
        assert_eq!(Class::Stage2Abort.name(), "stage-2 abort");
    }

    #[test]
    fn tokens_come_back_at_the_rate_and_no_faster() {
        let mut l = limiter();
        for _ in 0..10 {
            l.hit(0, Class::Psci, 0);
        }
        assert_eq!(l.hit(0, Class::Psci, HZ - 1), Verdict::Drop);
        assert_eq!(l.hit(0, Class::Psci, HZ), Verdict::Print { suppressed: 1 });
        assert_eq!(l.hit(0, Class::Psci, HZ + 1), Verdict::Drop);
        // A long quiet spell refills up to the burst, not beyond.
        let later = 1000 * HZ;
        let printed = (0..50)
            .filter(|_| l.hit(0, Class::Psci, later) != Verdict::Drop)
            .count();
        assert_eq!(printed, 10);
        // A counter that seems to go back (never on one core) drops, it does not panic.
        assert_eq!(l.hit(0, Class::Psci, 0), Verdict::Drop);
        // A zero-frequency counter still gives a working limiter.
        let mut z = LogLimiter::new(Limits::for_counter(0));
        assert_eq!(
            (0..20)
                .filter(|&t| z.hit(0, Class::Vgic, t / 4) != Verdict::Drop)
                .count(),
            10 + 4
        );
    }

    #[test]
    fn a_count_is_flushed_once_per_quiet_spell() {
        let mut l = limiter();
        assert!(!l.owes());
        assert!(l.flush(0).is_empty());
        for t in 0..12 {
            l.hit(2, Class::BadTrap, t);
            l.hit(3, Class::Vgic, t);
        }
        let out = l.flush(11 + HZ);
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|s| s.suppressed == 2));
        assert!(!l.owes());
        // Two tokens came back; what is dropped after them waits for quiet.
        for t in 0..5 {
            l.hit(3, Class::Vgic, 2 * HZ + t);
        }
        assert_eq!(
            l.hit(2, Class::BadTrap, 2 * HZ),
            Verdict::Print { suppressed: 0 }
        );
        assert!(l.owes());
        assert!(l.flush(2 * HZ + 10).is_empty() && l.owes());
        // A flush at the end of time takes every count, quiet or not.
        let mut copy = l.clone();
        assert_eq!(copy.flush(u64::MAX).len(), 1);
        assert!(!copy.owes());
        let out = l.flush(3 * HZ + 10);
        assert_eq!(
            out.as_slice(),
            &[Summary {
                source: 3,
                class: Class::Vgic,
                suppressed: 3
            }]
        );
        assert!(!l.owes());
    }
}
