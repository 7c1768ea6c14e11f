//! The DSM's hold: one core asks the other cores of the checked partition to stay in EL2
//! (to change stage 2 under them, or to pause the partition), waits until each says it
//! holds, and later lets them go. `arch` adds the kicks and the wait for interrupts.
//!
//! Two things make it more than a flag:
//!
//! - **An answer is for one request.** A core that acknowledged an earlier hold may be on its
//!   way back to the guest when the next one starts; a plain "held" flag still reads true
//!   then, and the requester changed stage 2 under a running vCPU. Here each request has a
//!   generation, and a core acknowledges the generation it saw while a hold was in force.
//! - **Holds nest.** A partition paused by the DSM stays held while a trap on another core
//!   asks for, and ends, a short hold of its own (a stage-2 change); a single flag cleared by
//!   that short hold let every core go while the pause was still on. Here every request is
//!   counted, and a core stays while any is in force.
//!
//! Checked with `loom` on the host (`RUSTFLAGS="--cfg loom"`, run by `cargo xtask test`).

#[cfg(loom)]
use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};

#[cfg(not(loom))]
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// A request in force, returned by [`Hold::request`] and given back to [`Hold::release`].
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a hold stays in force until it is released"]
pub struct Ticket {
    generation: u64,
}

impl Ticket {
    /// The generation each held core acknowledges.
    pub fn generation(&self) -> u64 {
        self.generation
    }
}

/// The hold shared by `N` cores.
pub struct Hold<const N: usize> {
    /// Requests in force.
    holders: AtomicU32,
    /// The latest request's generation (0: none yet).
    generation: AtomicU64,
    /// The generation each core last acknowledged while a hold was in force.
    acked: [AtomicU64; N],
}

impl<const N: usize> Hold<N> {
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self {
            holders: AtomicU32::new(0),
            generation: AtomicU64::new(0),
            acked: [const { AtomicU64::new(0) }; N],
        }
    }

    #[cfg(loom)]
    pub fn new() -> Self {
        Self {
            holders: AtomicU32::new(0),
            generation: AtomicU64::new(0),
            acked: core::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// Asks every core to hold (the caller kicks them next). The count goes up before the
    /// generation: a core that reads the new generation then also finds a hold in force.
    pub fn request(&self) -> Ticket {
        self.holders.fetch_add(1, Ordering::SeqCst);
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        Ticket { generation }
    }

    /// Whether `core` holds for the request of `generation` (a [`Ticket`]'s): it acknowledged
    /// this request or a later one, and stays in EL2 until every request in force, this one
    /// included, is released.
    pub fn holds(&self, core: usize, generation: u64) -> bool {
        self.acked
            .get(core)
            .is_some_and(|a| a.load(Ordering::SeqCst) >= generation)
    }

    /// Ends `ticket`'s request; the cores go back once no other is in force.
    pub fn release(&self, _ticket: Ticket) {
        let before = self.holders.fetch_sub(1, Ordering::SeqCst);
        debug_assert!(before > 0, "released more holds than were requested");
    }

    /// Whether any request is in force.
    pub fn in_force(&self) -> bool {
        self.holders.load(Ordering::SeqCst) > 0
    }

    /// For `core`, in its hold loop: whether to stay in EL2. Staying acknowledges the latest
    /// request, which was made while the count read here was already up.
    pub fn stay(&self, core: usize) -> bool {
        if self.holders.load(Ordering::SeqCst) == 0 {
            return false;
        }
        let generation = self.generation.load(Ordering::SeqCst);
        if let Some(a) = self.acked.get(core) {
            a.fetch_max(generation, Ordering::SeqCst);
        }
        true
    }
}

#[cfg(not(loom))]
impl<const N: usize> Default for Hold<N> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_core_holds_only_for_a_request_it_saw() {
        let hold = Hold::<2>::new();
        assert!(!hold.stay(1), "nothing to hold for");
        let first = hold.request();
        assert!(!hold.holds(1, first.generation()));
        assert!(hold.stay(1));
        assert!(hold.holds(1, first.generation()));
        hold.release(first);
        assert!(!hold.in_force());
        // Its answer to the first request does not count for the second.
        let second = hold.request();
        assert!(!hold.holds(1, second.generation()));
        assert!(hold.stay(1));
        assert!(hold.holds(1, second.generation()));
        hold.release(second);
        assert!(!hold.stay(1));
    }

    #[test]
    fn a_short_hold_inside_a_pause_does_not_end_the_pause() {
        let hold = Hold::<3>::new();
        let pause = hold.request();
        assert!(hold.stay(1) && hold.stay(2));
        let short = hold.request();
        assert!(hold.stay(1) && hold.holds(1, short.generation()));
        hold.release(short);
        assert!(hold.stay(1), "the pause is still in force");
        assert!(hold.holds(2, pause.generation()));
        hold.release(pause);
        assert!(!hold.stay(1) && !hold.stay(2));
    }

    #[test]
    fn an_unknown_core_never_holds() {
        let hold = Hold::<1>::new();
        let t = hold.request();
        assert!(hold.stay(5));
        assert!(!hold.holds(5, t.generation()));
        hold.release(t);
    }
}

/// Every interleaving of the requester's and the held cores' steps, with `loom`.
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::atomic::AtomicBool;
    use loom::sync::Arc;
    use loom::thread;

    /// A Linux core as the protocol sees it: `rounds` times, a kick takes it into the hold
    /// loop (it may find no hold in force and go straight back), and between rounds it runs
    /// the guest, which `in_guest` records.
    fn core(hold: &Hold<3>, me: usize, in_guest: &AtomicBool, rounds: usize) {
        for _ in 0..rounds {
            in_guest.store(false, Ordering::SeqCst);
            while hold.stay(me) {
                thread::yield_now();
            }
            in_guest.store(true, Ordering::SeqCst);
        }
    }

    /// A requester: asks, waits (boundedly) for `cores`, and while it believes them held
    /// checks that none runs the guest.
    fn request_and_check(hold: &Hold<3>, cores: &[(usize, &AtomicBool)]) {
        let ticket = hold.request();
        let mut held = false;
        for _ in 0..3 {
            if cores
                .iter()
                .all(|&(c, _)| hold.holds(c, ticket.generation()))
            {
                held = true;
                break;
            }
            thread::yield_now();
        }
        if held {
            for &(c, in_guest) in cores {
                assert!(
                    !in_guest.load(Ordering::SeqCst),
                    "core {c} runs the guest while its hold was acknowledged"
                );
            }
        }
        hold.release(ticket);
    }

    fn model(f: impl Fn() + Sync + Send + 'static) {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = Some(3);
        // The held cores spin (with `yield_now`, as `wfi` hands the turn on under QEMU).
        builder.max_branches = 20_000;
        builder.check(f);
    }

    #[test]
    fn an_acknowledged_core_stays_held_until_the_release() {
        model(|| {
            let hold = Arc::new(Hold::<3>::new());
            let in_guest = Arc::new(AtomicBool::new(true));
            let (h, g) = (hold.clone(), in_guest.clone());
            let held = thread::spawn(move || core(&h, 1, &g, 2));
            // Two requests in a row: an answer to the first must not count for the second.
            request_and_check(&hold, &[(1, &in_guest)]);
            request_and_check(&hold, &[(1, &in_guest)]);
            held.join().unwrap();
            assert!(!hold.in_force());
        });
    }

    #[test]
    fn a_second_requester_does_not_end_the_first_ones_hold() {
        model(|| {
            let hold = Arc::new(Hold::<3>::new());
            let in_guest = Arc::new(AtomicBool::new(true));
            let (h, g) = (hold.clone(), in_guest.clone());
            let held = thread::spawn(move || core(&h, 2, &g, 1));
            let (h, g) = (hold.clone(), in_guest.clone());
            let other = thread::spawn(move || request_and_check(&h, &[(2, &g)]));
            request_and_check(&hold, &[(2, &in_guest)]);
            other.join().unwrap();
            held.join().unwrap();
            assert!(!hold.in_force());
        });
    }

    #[test]
    fn a_held_core_leaves_once_the_last_of_two_holds_is_released() {
        model(|| {
            let hold = Arc::new(Hold::<3>::new());
            let first = hold.request();
            let h = hold.clone();
            let held = thread::spawn(move || {
                let in_guest = AtomicBool::new(true);
                core(&h, 1, &in_guest, 1);
                in_guest.load(Ordering::SeqCst)
            });
            let h = hold.clone();
            let second = thread::spawn(move || {
                let ticket = h.request();
                thread::yield_now();
                h.release(ticket);
            });
            hold.release(first);
            second.join().unwrap();
            // The core's loop ended (loom fails a model whose threads never finish) and it
            // went back to its guest.
            assert!(held.join().unwrap());
            assert!(!hold.in_force());
        });
    }
}
