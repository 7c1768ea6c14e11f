//! A core of the shared loop with one vCPU left on it: when it may stop trapping WFI and WFE,
//! and how the RTOS's core still runs the migration policy without disturbing its RTOS.
//!
//! # Why
//!
//! A core that vCPUs may migrate to runs the shared loop (`switch.rs`) and traps WFI and WFE,
//! so the scheduler learns when a vCPU waits. Once the policy has left a single vCPU there
//! (the RTOS, after `spumone` moved Linux's vCPU away), the traps only cost: every wake of
//! the RTOS went through a scheduling decision in EL2, which about doubled its dispatch
//! latency under `-icount`. Untrapped, the vCPU sleeps in hardware and its timer interrupt
//! takes the lock-free forwarding path of a core it owns.
//!
//! # What the traps still tell, and how it is kept
//!
//! - The `load` policy measures Linux's busy time from trapped WFIs, so a Linux vCPU alone
//!   stays trapped under it ([`Here::linux_idle_counted`]).
//! - The RTOS's core runs the policy while its RTOS waits. Untrapped, it instead looks every
//!   [`LOOK_PERIOD`] from the EL2 timer, and never just before or during the RTOS's own timer
//!   deadline ([`on_tick`]).
//! - `spumone` brings displaced vCPUs back once the RTOS has been idle for `return_after`.
//!   That needs trapped WFIs, but an RTOS whose next timer deadline is nearer than that cannot
//!   stay idle so long. So a look traps again ([`worth_observing`]) only when the RTOS's timer
//!   is off or due no sooner than `return_after`; the core stays trapped until the RTOS wakes
//!   from a trapped wait, or a vCPU comes back.

use super::sched::{Class, Ticks};

/// How often the RTOS's core runs the policy while it runs untrapped (10 ms at 62.5 MHz).
pub const LOOK_PERIOD: Ticks = 625_000;

/// A look does not start when the RTOS's timer is due within this (20 µs at 62.5 MHz)...
pub const GUARD_BEFORE: Ticks = 1_250;

/// ...or passed less than this ago (50 µs: the RTOS may still be dispatching).
pub const GUARD_AFTER: Ticks = 3_125;

/// What a shared-loop core knows after a scheduling decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Here {
    /// Exactly one vCPU is placed on the core (`RunQueue::alone`).
    pub alone: bool,
    /// The class of the vCPU that runs next (`None`: the core idles).
    pub runs: Option<Class>,
    /// A policy measures Linux's busy time from its trapped WFIs (`load`).
    pub linux_idle_counted: bool,
    /// The RTOS here is being watched for a long idle (see [`worth_observing`]).
    pub observing: bool,
}

/// Whether the core may run its one vCPU with WFI and WFE untrapped.
pub fn untrapped(here: &Here) -> bool {
    if !here.alone {
        return false;
    }
    match here.runs {
        Some(Class::Rtos) => !here.observing,
        Some(Class::Linux) => !here.linux_idle_counted,
        Some(Class::Dsm) | None => false,
    }
}

/// What the EL2 timer means on an untrapped RTOS core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tick {
    /// Run the policy now.
    Look,
    /// The RTOS's timer is about due (or just fired): look at this counter value instead.
    DeferTo(Ticks),
}

/// The EL2 timer fired at `now` on an untrapped RTOS core whose virtual timer is due at
/// `rtos_deadline` (if armed).
pub fn on_tick(now: Ticks, rtos_deadline: Option<Ticks>) -> Tick {
    match rtos_deadline {
        Some(due)
            if due.saturating_sub(now) < GUARD_BEFORE && now.saturating_sub(due) < GUARD_AFTER =>
        {
            Tick::DeferTo(due.saturating_add(GUARD_AFTER))
        }
        _ => Tick::Look,
    }
}

/// Whether a look at `now` should trap the RTOS again to see whether it stays idle for
/// `return_after` (`None`: no policy brings vCPUs back): only if its timer (`rtos_deadline`)
/// is off or not due before then.
pub fn worth_observing(
    now: Ticks,
    rtos_deadline: Option<Ticks>,
    return_after: Option<Ticks>,
) -> bool {
    let Some(after) = return_after else {
        return false;
    };
    rtos_deadline.is_none_or(|due| due.saturating_sub(now) >= after)
}

/// The cores whose lock-free timer slot gets the value of vCPU `me` (a nonzero owner code),
/// as a bit mask. Placed on `home`, a core that runs its vCPU directly (not the shared
/// loop), it owns that core's slot. On shared-loop cores a slot belongs only to the vCPU
/// running there alone: `owners[core]` is that vCPU's code, 0 for none. A vCPU sharing a
/// core must never take the fast path: the slot would forward its timer while another vCPU's
/// context is loaded.
pub fn fast_path_cores(home: usize, home_shared_loop: bool, me: u32, owners: &[u32]) -> u64 {
    if !home_shared_loop {
        return 1u64.checked_shl(home as u32).unwrap_or(0);
    }
    owners
        .iter()
        .take(64)
        .enumerate()
        .filter(|&(_, &owner)| me != 0 && owner == me)
        .fold(0, |mask, (core, _)| mask | 1 << core)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn here(vcpus: usize, runs: Option<Class>) -> Here {
        Here {
            alone: vcpus == 1,
            runs,
            linux_idle_counted: false,
            observing: false,
        }
    }

    #[test]
    fn only_a_core_with_one_vcpu_runs_untrapped() {
        assert!(untrapped(&here(1, Some(Class::Rtos))));
        assert!(untrapped(&here(1, Some(Class::Linux))));
        assert!(
            !untrapped(&here(2, Some(Class::Rtos))),
            "another vCPU waits"
        );
        assert!(!untrapped(&here(0, None)));
        assert!(!untrapped(&here(1, None)), "the core idles in EL2");
        assert!(!untrapped(&here(1, Some(Class::Dsm))));
    }

    #[test]
    fn what_a_policy_needs_from_the_traps_keeps_them() {
        let counted = Here {
            linux_idle_counted: true,
            ..here(1, Some(Class::Linux))
        };
        assert!(!untrapped(&counted), "load measures Linux's idle time");
        let rtos = Here {
            linux_idle_counted: true,
            ..here(1, Some(Class::Rtos))
        };
        assert!(untrapped(&rtos), "load never needs the RTOS's idle time");
        let observed = Here {
            observing: true,
            ..rtos
        };
        assert!(!untrapped(&observed));
    }

    #[test]
    fn a_look_keeps_clear_of_the_rtos_deadline() {
        let due = 1_000_000;
        assert_eq!(on_tick(due - GUARD_BEFORE, Some(due)), Tick::Look);
        assert_eq!(
            on_tick(due - GUARD_BEFORE + 1, Some(due)),
            Tick::DeferTo(due + GUARD_AFTER)
        );
        assert_eq!(on_tick(due, Some(due)), Tick::DeferTo(due + GUARD_AFTER));
        assert_eq!(
            on_tick(due + GUARD_AFTER - 1, Some(due)),
            Tick::DeferTo(due + GUARD_AFTER)
        );
        assert_eq!(on_tick(due + GUARD_AFTER, Some(due)), Tick::Look);
        assert_eq!(on_tick(due, None), Tick::Look);
        // A deferral always lands where a look is allowed, and later than now.
        for now in due - 2 * GUARD_BEFORE..due + 2 * GUARD_AFTER {
            if let Tick::DeferTo(at) = on_tick(now, Some(due)) {
                assert!(at > now);
                assert_eq!(on_tick(at, Some(due)), Tick::Look);
            }
        }
        // No overflow at the counter's end.
        assert_eq!(on_tick(5, Some(u64::MAX)), Tick::Look);
        assert_eq!(on_tick(u64::MAX, Some(u64::MAX)), Tick::DeferTo(u64::MAX));
    }

    #[test]
    fn only_an_rtos_that_may_stay_idle_is_observed() {
        let after = Some(625_000);
        assert!(
            !worth_observing(0, None, None),
            "no policy brings vCPUs back"
        );
        assert!(worth_observing(0, None, after), "its timer is off");
        assert!(!worth_observing(0, Some(62_500), after), "due in 1 ms");
        assert!(worth_observing(0, Some(625_000), after));
        assert!(!worth_observing(10, Some(625_009), after));
        assert!(
            !worth_observing(700_000, Some(600_000), after),
            "due already"
        );
    }

    #[test]
    fn only_the_vcpu_running_alone_has_a_fast_path_on_a_shared_loop_core() {
        let (rtos, linux0) = (1, 0x101);
        // Core 0 of the shared loop, both vCPUs queued: no owner, nobody's value goes there.
        let owners = [0, 0, 0, 0];
        assert_eq!(fast_path_cores(0, true, rtos, &owners), 0);
        assert_eq!(fast_path_cores(0, true, linux0, &owners), 0);
        // Linux's vCPU 0 left: the RTOS runs alone on core 0 and owns its slot.
        let owners = [rtos, linux0, 0, 0];
        assert_eq!(fast_path_cores(0, true, rtos, &owners), 0b1);
        // A migrated vCPU owns the slot of the core it runs alone on, not its home's.
        assert_eq!(fast_path_cores(0, true, linux0, &owners), 0b10);
        // A core outside the loop is its vCPU's own.
        assert_eq!(fast_path_cores(2, false, 0x102, &owners), 0b100);
        // The "none" code owns nothing, even where no owner is set.
        assert_eq!(fast_path_cores(0, true, 0, &[0, 0]), 0);
    }
}
