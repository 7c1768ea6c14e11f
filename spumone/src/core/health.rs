//! Whether a Linux partition is still alive, and what its `on_panic` policy does when it is
//! not. Two signs, sampled from outside while Linux is supposed to run:
//!
//! - **its own panic state**: the kernel's `panic_cpu` leaves `PANIC_CPU_INVALID` (-1) the
//!   moment `panic()` starts, whether or not it reboots afterwards (`panic=0` spins for good);
//! - **progress**: `jiffies` frozen while vCPU 0's timer interrupt is overdue (it fired and
//!   was not taken) means every CPU that could keep time has stopped taking interrupts. An idle
//!   Linux has no overdue tick (its timer is armed in the future, or off), so idleness never
//!   looks like a hang.
//!
//! Time the watchdog did not watch (Linux held by a DSM pause, booting, a gap between
//! samples) never counts as a stall.

use board::rt::OnPanic;

/// `panic_cpu` while no CPU panics.
pub const PANIC_CPU_INVALID: i32 = -1;

/// Longest gap between two samples that still counts as watched: a longer one (the sampler
/// did not run, Linux was held) restarts the stall window.
pub const MAX_GAP_MS: u64 = 1_000;

/// How late vCPU 0's timer interrupt may be before it counts as overdue: a Linux that takes
/// interrupts takes its tick within microseconds; a longer critical section is still fine.
pub const TICK_LATE_MS: u64 = 100;

/// What one sample saw of Linux.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub now_ms: u64,
    /// The kernel's `panic_cpu` (`None`: not readable now).
    pub panic_cpu: Option<i32>,
    /// The kernel's `jiffies` (`None`: not readable now).
    pub jiffies: Option<u64>,
    /// vCPU 0's timer interrupt is overdue ([`tick_overdue`]).
    pub tick_overdue: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Alive,
    /// `panic()` started on this CPU.
    Panicked {
        cpu: u32,
    },
    /// No progress for this long.
    Hung {
        stalled_ms: u64,
    },
}

/// The progress watchdog of one partition.
#[derive(Debug, Clone, Copy)]
pub struct Watchdog {
    timeout_ms: u64,
    last_sample_ms: Option<u64>,
    last_jiffies: Option<u64>,
    stalled_since_ms: Option<u64>,
}

impl Watchdog {
    pub const fn new(timeout_ms: u64) -> Self {
        Self {
            timeout_ms,
            last_sample_ms: None,
            last_jiffies: None,
            stalled_since_ms: None,
        }
    }

    pub const fn timeout_ms(&self) -> u64 {
        self.timeout_ms
    }

    /// Linux is not supposed to run now (held, booting, restarting): what was seen so far
    /// proves nothing about what comes next.
    pub fn unwatched(&mut self) {
        self.last_sample_ms = None;
        self.last_jiffies = None;
        self.stalled_since_ms = None;
    }

    /// Judges one sample.
    pub fn sample(&mut self, s: Sample) -> Verdict {
        if let Some(cpu) = s.panic_cpu.and_then(|c| u32::try_from(c).ok()) {
            return Verdict::Panicked { cpu };
        }
        let gap = self
            .last_sample_ms
            .is_none_or(|last| s.now_ms.saturating_sub(last) > MAX_GAP_MS);
        let jiffies_moved = match (self.last_jiffies, s.jiffies) {
            (Some(before), Some(now)) => before != now,
            // Nothing to compare: no evidence of a stall from jiffies.
            _ => true,
        };
        self.last_sample_ms = Some(s.now_ms);
        self.last_jiffies = s.jiffies;
        if gap || jiffies_moved || !s.tick_overdue {
            self.stalled_since_ms = None;
            return Verdict::Alive;
        }
        let since = *self.stalled_since_ms.get_or_insert(s.now_ms);
        let stalled_ms = s.now_ms - since;
        if stalled_ms >= self.timeout_ms {
            Verdict::Hung { stalled_ms }
        } else {
            Verdict::Alive
        }
    }
}

/// Whether vCPU 0's virtual timer interrupt is overdue: enabled, unmasked, its condition met,
/// and its deadline `cval` more than [`TICK_LATE_MS`] behind `now` (counter ticks at `hz`).
/// `ctl` is `CNTV_CTL_EL0` (ENABLE bit 0, IMASK bit 1, ISTATUS bit 2).
pub fn tick_overdue(ctl: u64, cval: u64, now: u64, hz: u64) -> bool {
    let enabled = ctl & 1 != 0;
    let masked = ctl & 2 != 0;
    let fired = ctl & 4 != 0;
    let late = now.saturating_sub(cval) > hz.saturating_mul(TICK_LATE_MS) / 1000;
    enabled && !masked && fired && late
}

/// What spumone does about a verdict other than [`Verdict::Alive`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Boot Linux again from its pristine copy.
    Restart,
    /// Stop it.
    Stop,
}

/// The partition's `on_panic` policy, if it can be carried out: a restart needs a pristine
/// copy to restart from (`can_restart`); without one, Linux is stopped.
pub fn action(on_panic: OnPanic, can_restart: bool) -> Action {
    match on_panic {
        OnPanic::Restart if can_restart => Action::Restart,
        OnPanic::Restart | OnPanic::Stop => Action::Stop,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 10_000;

    fn s(now_ms: u64, jiffies: u64, tick_overdue: bool) -> Sample {
        Sample {
            now_ms,
            panic_cpu: Some(PANIC_CPU_INVALID),
            jiffies: Some(jiffies),
            tick_overdue,
        }
    }

    /// Samples every `step` ms from `from` to `to` with frozen jiffies and an overdue tick;
    /// the first verdict that is not `Alive`, with its time.
    fn frozen(w: &mut Watchdog, from: u64, to: u64, step: u64) -> Option<(u64, Verdict)> {
        (from..=to)
            .step_by(step as usize)
            .map(|t| (t, w.sample(s(t, 7, true))))
            .find(|(_, v)| *v != Verdict::Alive)
    }

    #[test]
    fn a_panic_is_seen_at_once() {
        let mut w = Watchdog::new(T);
        assert_eq!(w.sample(s(0, 1, false)), Verdict::Alive);
        let panicked = Sample {
            panic_cpu: Some(2),
            ..s(10, 2, false)
        };
        assert_eq!(w.sample(panicked), Verdict::Panicked { cpu: 2 });
        // Unreadable or invalid values are not a panic.
        for panic_cpu in [None, Some(-1), Some(-7)] {
            let v = Watchdog::new(T).sample(Sample {
                panic_cpu,
                ..s(10, 2, false)
            });
            assert_eq!(v, Verdict::Alive, "{panic_cpu:?}");
        }
    }

    #[test]
    fn frozen_jiffies_with_an_overdue_tick_for_the_timeout_is_a_hang() {
        let mut w = Watchdog::new(T);
        assert_eq!(
            frozen(&mut w, 0, 20_000, 100),
            Some((T + 100, Verdict::Hung { stalled_ms: T }))
        );
    }

    #[test]
    fn progress_or_an_idle_tick_is_never_a_hang() {
        let mut w = Watchdog::new(T);
        // jiffies move: a busy Linux whose vCPU 0 is slow to take its tick.
        for (i, t) in (0..60_000).step_by(100).enumerate() {
            assert_eq!(w.sample(s(t, i as u64 / 10, true)), Verdict::Alive);
        }
        // NO_HZ idle: jiffies stand still for minutes, but no tick is overdue.
        let mut w = Watchdog::new(T);
        for t in (0..600_000).step_by(100) {
            assert_eq!(w.sample(s(t, 5, false)), Verdict::Alive);
        }
        // jiffies unreadable: no evidence.
        let mut w = Watchdog::new(T);
        for t in (0..60_000).step_by(100) {
            let v = w.sample(Sample {
                jiffies: None,
                ..s(t, 0, true)
            });
            assert_eq!(v, Verdict::Alive);
        }
    }

    #[test]
    fn one_sign_of_life_restarts_the_window() {
        let mut w = Watchdog::new(T);
        assert_eq!(frozen(&mut w, 0, 9_000, 100), None);
        assert_eq!(w.sample(s(9_100, 8, true)), Verdict::Alive, "jiffies moved");
        assert_eq!(frozen(&mut w, 9_200, 19_200, 100), None);
        assert!(frozen(&mut w, 19_300, 19_400, 100).is_some());
    }

    #[test]
    fn a_pause_or_a_gap_never_counts_as_a_stall() {
        let mut w = Watchdog::new(T);
        assert_eq!(frozen(&mut w, 0, 9_000, 100), None);
        // Held by the DSM for a minute: not sampled, and told so.
        w.unwatched();
        assert_eq!(frozen(&mut w, 69_000, 78_900, 100), None);
        // A gap longer than MAX_GAP_MS without being told: the window starts again too, at
        // the first sample after the gap.
        assert_eq!(frozen(&mut w, 80_000, 89_900, 100), None);
        assert_eq!(
            frozen(&mut w, 90_000, 100_000, 100),
            Some((90_100, Verdict::Hung { stalled_ms: T }))
        );
    }

    #[test]
    fn sparse_samples_still_see_a_hang() {
        let mut w = Watchdog::new(T);
        assert_eq!(
            frozen(&mut w, 0, 30_000, MAX_GAP_MS),
            Some((11_000, Verdict::Hung { stalled_ms: T }))
        );
    }

    #[test]
    fn the_tick_is_overdue_only_when_fired_unmasked_and_late() {
        let hz = 62_500_000;
        let late = hz / 10 + 1;
        assert!(tick_overdue(0b101, 1_000, 1_000 + late, hz));
        assert!(
            !tick_overdue(0b101, 1_000, 1_000 + late - 2, hz),
            "not late yet"
        );
        assert!(!tick_overdue(0b001, 1_000, 1_000 + late, hz), "not fired");
        assert!(!tick_overdue(0b111, 1_000, 1_000 + late, hz), "masked");
        assert!(!tick_overdue(0b100, 1_000, 1_000 + late, hz), "disabled");
        assert!(!tick_overdue(0b101, u64::MAX, 0, hz), "a future deadline");
    }

    #[test]
    fn the_policy_restarts_only_with_a_copy() {
        assert_eq!(action(OnPanic::Restart, true), Action::Restart);
        assert_eq!(action(OnPanic::Restart, false), Action::Stop);
        assert_eq!(action(OnPanic::Stop, true), Action::Stop);
        assert_eq!(action(OnPanic::Stop, false), Action::Stop);
    }
}
