//! The DSM's register capture: the core that runs the checkers asks the other cores of the
//! checked partition for their vCPUs' EL1 registers, kicks them, and waits (boundedly) for
//! each answer. A kicked core that finds a question it has not answered stores its registers
//! and then says which question it answered. `arch` keeps the registers themselves (under a
//! lock) and the kicks.
//!
//! Each question has a generation, so an answer left from an earlier question, or a question
//! a core was not asked, never passes for the current one. The value is stored before the
//! answer is published, and read only after the answer is seen.
//!
//! Checked with `loom` on the host, like `hold` (`RUSTFLAGS="--cfg loom"`).

#[cfg(loom)]
use loom::sync::atomic::{AtomicU64, Ordering};

#[cfg(not(loom))]
use core::sync::atomic::{AtomicU64, Ordering};

/// Questions and answers for `N` cores.
pub struct Captures<const N: usize> {
    /// The latest question's generation (0: none yet).
    generation: AtomicU64,
    /// The generation each core was last asked.
    asked: [AtomicU64; N],
    /// The generation each core last answered.
    answered: [AtomicU64; N],
}

impl<const N: usize> Captures<N> {
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self {
            generation: AtomicU64::new(0),
            asked: [const { AtomicU64::new(0) }; N],
            answered: [const { AtomicU64::new(0) }; N],
        }
    }

    #[cfg(loom)]
    pub fn new() -> Self {
        Self {
            generation: AtomicU64::new(0),
            asked: core::array::from_fn(|_| AtomicU64::new(0)),
            answered: core::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// A new question to `cores` (the caller kicks them next); returns its generation.
    pub fn ask(&self, cores: impl IntoIterator<Item = usize>) -> u64 {
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        for core in cores {
            if let Some(a) = self.asked.get(core) {
                a.store(generation, Ordering::Release);
            }
        }
        generation
    }

    /// For a kicked `core`: the question it has to answer, if any. It stores its value, then
    /// calls [`Captures::answer`] with this generation.
    pub fn pending(&self, core: usize) -> Option<u64> {
        let asked = self.asked.get(core)?.load(Ordering::Acquire);
        (asked != self.answered[core].load(Ordering::Acquire)).then_some(asked)
    }

    /// `core` stored its value for question `generation`.
    pub fn answer(&self, core: usize, generation: u64) {
        if let Some(a) = self.answered.get(core) {
            a.store(generation, Ordering::Release);
        }
    }

    /// Whether `core` answered question `generation`.
    pub fn answered(&self, core: usize, generation: u64) -> bool {
        self.answered
            .get(core)
            .is_some_and(|a| a.load(Ordering::Acquire) == generation)
    }

    /// Whether `core`'s stored value answers the latest question (its value may be read).
    pub fn current(&self, core: usize) -> bool {
        let latest = self.generation.load(Ordering::Acquire);
        latest != 0 && self.answered(core, latest)
    }
}

#[cfg(not(loom))]
impl<const N: usize> Default for Captures<N> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn an_answer_counts_only_for_its_own_question() {
        let c = Captures::<3>::new();
        assert!(!c.current(1), "nothing asked yet");
        assert_eq!(c.pending(1), None);
        let first = c.ask([1, 2]);
        assert_eq!(c.pending(1), Some(first));
        c.answer(1, first);
        assert_eq!(c.pending(1), None, "answered once is enough");
        assert!(c.current(1) && !c.current(2));
        // The next question makes the old answer stale until it is answered again.
        let second = c.ask([1]);
        assert!(!c.current(1));
        assert!(c.answered(1, first) && !c.answered(1, second));
        assert_eq!(c.pending(2), Some(first), "core 2 still owes the first");
        c.answer(1, second);
        assert!(c.current(1));
    }

    #[test]
    fn a_core_not_asked_owes_nothing_and_an_unknown_core_is_ignored() {
        let c = Captures::<2>::new();
        let g = c.ask([0, 7]);
        assert_eq!(c.pending(1), None);
        assert_eq!(c.pending(7), None);
        c.answer(7, g);
        assert!(!c.answered(7, g) && !c.current(7));
    }
}

/// Every interleaving of the asking core and an answering core, with `loom`.
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::{Arc, Mutex};
    use loom::thread;

    /// An answering core: `kicks` times, answers what it owes with `value` = the generation
    /// (so the asker can tell a stale value from a fresh one).
    fn answering_core(c: &Captures<2>, regs: &Mutex<u64>, kicks: usize) {
        for _ in 0..kicks {
            if let Some(generation) = c.pending(1) {
                *regs.lock().unwrap() = generation;
                c.answer(1, generation);
            }
            thread::yield_now();
        }
    }

    #[test]
    fn a_value_read_as_current_is_the_current_questions() {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = Some(3);
        builder.check(|| {
            let c = Arc::new(Captures::<2>::new());
            let regs = Arc::new(Mutex::new(0u64));
            let (c2, r2) = (c.clone(), regs.clone());
            let core = thread::spawn(move || answering_core(&c2, &r2, 3));
            for _ in 0..2 {
                let generation = c.ask([1]);
                for _ in 0..2 {
                    if c.answered(1, generation) {
                        break;
                    }
                    thread::yield_now();
                }
                if c.current(1) {
                    assert_eq!(*regs.lock().unwrap(), generation, "a stale value read");
                }
            }
            core.join().unwrap();
        });
    }
}
